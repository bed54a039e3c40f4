/**
 * `hdlm serve`: the OpenAI-compatible HTTP server (lib/server). Loaded only when the command
 * runs (or its help is asked for), so the other commands never load fastify.
 */
import type { Command } from '../args';
import { interrupt } from '../terminal';

export const serveCommand: Command = {
  get help(): string {
    return (require('../../server/options') as typeof import('../../server/options')).SERVE_HELP;
  },
  async run(args: string[]): Promise<number> {
    const server = require('../../server') as typeof import('../../server');
    return server.runServeCommand(args, { signal: interrupt.signal, markAbortable: () => { interrupt.abortable = true; } });
  },
};
