/**
 * `hdlm serve`: the OpenAI-compatible HTTP server (lib/server). The server (fastify) is loaded
 * only when the command runs.
 */
import { SERVE_HELP } from '../../server/options';
import type { Command } from '../args';
import { interrupt } from '../terminal';

export const serveCommand: Command = {
  help: SERVE_HELP,
  async run(args: string[]): Promise<number> {
    const server = await import('../../server/index.js');
    return server.runServeCommand(args, { signal: interrupt.signal, markAbortable: () => { interrupt.abortable = true; } });
  },
};
