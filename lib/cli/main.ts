#!/usr/bin/env node
/**
 * The `hdlm` command: generate text, export TorchScript modules, download models, show the
 * runtime, run upstream's evaluations. One file per command in commands/.
 *
 * Exit codes: 0 ok, 1 runtime failure (model / file / hub / native error), 2 usage error (unknown
 * command or flag, bad flag value), 130 interrupted (SIGINT).
 *
 * The commands load the library when they run, so `--help` and `--version` work without loading
 * it (or the native addon).
 */
import {
  COMMON_FLAGS, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, flagNamed, helpWanted, pkgVersion, suggest, type Command,
} from './args';
import { downloadCommand } from './commands/download';
import { evalCommand } from './commands/eval';
import { exportCommand } from './commands/export';
import { generateCommand } from './commands/generate';
import { infoCommand } from './commands/info';
import { serveCommand } from './commands/serve';
import { clearTerminal, interrupt, out } from './terminal';

const COMMANDS: Readonly<Record<string, Command>> = {
  generate: generateCommand,
  export: exportCommand,
  download: downloadCommand,
  info: infoCommand,
  eval: evalCommand,
  serve: serveCommand,
};

const HELP = `hdlm $VERSION — hybrid diffusion language models (HDLM) on libtorch

Usage: hdlm <command> [options]

Commands:
  generate [prompt]          sample text (default model: the embedded demo model)
  export <model> <out.pt>    build a model's TorchScript module and save it
  download <repo-id>         fetch a model into the Hugging Face cache
  info                       libtorch, devices, caches and cached models
  eval ppl|generation        zero-shot perplexity / sample quality (upstream's eval scripts)
  serve                      an OpenAI-compatible HTTP server with a live denoising page

Options:
  -h, --help                 show help (also: hdlm <command> --help)
  -v, --version              print the version

Exit codes: 0 ok, 1 runtime failure, 2 usage error, 130 interrupted.
Environment: HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, HDLM_CACHE (TorchScript cache),
HDLM_NUM_THREADS, HDLM_DEBUG=1 (stack traces on errors).`;

function commandNamed(name: string | undefined): Command | undefined {
  return name !== undefined && Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
}

function helpText(topic: string | undefined): string {
  return (topic === undefined ? HELP.replace('$VERSION', pkgVersion()) : COMMANDS[topic].help) + '\n';
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    process.stderr.write(helpText(undefined));
    return EXIT_USAGE;
  }
  if (first === '--help' || first === '-h') {
    out(helpText(undefined));
    return EXIT_OK;
  }
  if (first === '--version' || first === '-v' || first === '-V') {
    out(pkgVersion() + '\n');
    return EXIT_OK;
  }
  if (first === 'help') {
    const topic = rest[0];
    if (topic !== undefined && !commandNamed(topic)) throw new UsageError(`unknown command '${topic}'${suggest(topic, Object.keys(COMMANDS))}`);
    out(helpText(topic));
    return EXIT_OK;
  }
  if (first.startsWith('-')) throw new UsageError(`unknown option '${first}' (options go after the command)`);
  const command = commandNamed(first);
  if (!command) throw new UsageError(`unknown command '${first}'${suggest(first, Object.keys(COMMANDS))}`);
  if (helpWanted(rest)) {
    out(helpText(first));
    return EXIT_OK;
  }
  return command.run(rest);
}

/** Prints an error the way a user can act on it; returns the exit code. */
function report(e: unknown): number {
  clearTerminal();
  const debug = process.env.HDLM_DEBUG === '1';
  const err = e as Error & { code?: string; command?: string | null };
  const named = commandNamed(process.argv[2]) ? process.argv[2] : null;
  if (e instanceof UsageError || err?.code === 'HDLM_INVALID_ARGUMENT') {
    const command = e instanceof UsageError ? err.command : named;
    const flags = { ...COMMON_FLAGS, ...commandNamed(process.argv[2])?.flags };
    process.stderr.write(`hdlm: ${flagNamed(err.message, flags)}\n`);
    process.stderr.write(`Run 'hdlm ${command ? command + ' ' : ''}--help' for usage.\n`);
    if (debug && err.stack) process.stderr.write(err.stack + '\n');
    return EXIT_USAGE;
  }
  if (err?.code === 'HDLM_ABORTED') {
    process.stderr.write('hdlm: interrupted\n');
    return EXIT_INTERRUPTED;
  }
  const message = err instanceof Error ? err.message : String(e);
  process.stderr.write(`hdlm: ${message}\n`);
  if (debug) {
    if (err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    let cause = (err as { cause?: unknown })?.cause;
    while (cause) {
      process.stderr.write(`caused by: ${cause instanceof Error ? cause.stack ?? cause.message : String(cause)}\n`);
      cause = (cause as { cause?: unknown }).cause;
    }
  }
  return EXIT_FAILURE;
}

if (require.main === module) {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    // `hdlm generate | head -c 10`: the reader went away; that is not an error of ours.
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? EXIT_OK);
    throw e;
  });
  interrupt.install();
  main(process.argv.slice(2))
    .then((code) => code, report)
    .then((code) => {
      interrupt.uninstall();
      process.exitCode = code;
    });
}

export { main, UsageError };
