/**
 * Command-line arguments: parsing with node:util parseArgs, usage errors with suggestions,
 * flag values handed to the library as typed (the library checks them and names the option; the
 * error is then reported with the flag the user typed), and what every command shares.
 */
import * as fs from 'fs';
import * as path from 'path';
import { parseArgs } from 'util';

export type Values = Record<string, string | boolean | undefined>;
export type OptionSpec = { type: 'string' | 'boolean'; short?: string };

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_INTERRUPTED = 130;

/** One `hdlm` command. */
export interface Command {
  /** the text of `hdlm <command> --help` */
  help: string;
  /** library option names -> this command's flags, beyond COMMON_FLAGS (error messages name the flag) */
  flags?: Record<string, string>;
  run(args: string[]): Promise<number>;
}

/** A command-line mistake: printed with a hint to --help, exit 2. */
export class UsageError extends Error {
  constructor(message: string, readonly command: string | null = null) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Library option names -> the flags that set them, for every command. */
export const COMMON_FLAGS: Readonly<Record<string, string>> = {
  modelPath: '--model', modelType: '--model-type', device: '--device', threads: '--threads', revision: '--revision',
  token: '--token', offline: '--offline', cacheDir: '--cache-dir', alg: '--alg', steps: '--steps',
  temperature: '--temperature', batchSize: '--batch', contextLength: '--context-length', blockSize: '--block-size',
  eta: '--eta', seed: '--seed', cfgScale: '--cfg-scale', outFile: '<out.pt>', repoId: '<repo-id>',
};

/** A library message "Expected ... for <option> but received ..." with the option replaced by its flag. */
export function flagNamed(message: string, flags: Readonly<Record<string, string>>): string {
  return message.replace(/ for ([A-Za-z0-9]+) but received /, (all, name: string) => (flags[name] ? ` for ${flags[name]} but received ` : all));
}

export const HUB_OPTIONS: Record<string, OptionSpec> = {
  revision: { type: 'string' },
  token: { type: 'string' },
  offline: { type: 'boolean' },
};

export const HUB_HELP = `  --revision <rev>            hub branch, tag or commit (default main)
  --token <token>             hub access token (default HF_TOKEN, or the huggingface-cli login token)
  --offline                   use only the local Hugging Face cache (also HF_HUB_OFFLINE=1)`;

export function pkgVersion(): string {
  try {
    return JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length];
}

/** " (did you mean 'x'?)" for the closest candidate, or ''. */
export function suggest(word: string, candidates: string[]): string {
  const prefixed = candidates.filter((c) => word.length >= 2 && c.startsWith(word));
  if (prefixed.length === 1) return ` (did you mean '${prefixed[0]}'?)`;
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = editDistance(word, c);
    if (dist < bestD) {
      bestD = dist;
      best = c;
    }
  }
  return best !== null && bestD <= Math.max(1, Math.floor(word.length / 3)) ? ` (did you mean '${best}'?)` : '';
}

export function parse(command: string, args: string[], options: Record<string, OptionSpec>, maxPositionals: number): { values: Values; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (e) {
    const err = e as Error & { code?: string };
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const m = /Unknown option '([^']+)'/.exec(err.message);
      const flag = m ? m[1] : '?';
      const known = Object.keys(options).map((k) => `--${k}`);
      throw new UsageError(`unknown option '${flag}' for 'hdlm ${command}'${suggest(flag, known)}`, command);
    }
    if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const m = /Option '(?:-\w, )?(--[\w-]+)/.exec(err.message);
      const flag = m ? m[1] : null;
      if (flag && options[flag.slice(2)]?.type === 'boolean') throw new UsageError(`option '${flag}' does not take a value`, command);
      if (flag) throw new UsageError(`option '${flag}' needs a value (a value starting with '-' is written ${flag}=-VALUE)`, command);
    }
    throw new UsageError(err.message, command);
  }
  const values = parsed.values as Values;
  if (parsed.positionals.length > maxPositionals) {
    const extra = parsed.positionals[maxPositionals];
    throw new UsageError(
      `unexpected argument ${JSON.stringify(extra)} for 'hdlm ${command}'` + (command === 'generate' ? ' (quote a prompt of several words)' : ''),
      command,
    );
  }
  return { values, positionals: parsed.positionals };
}

export function str(values: Values, name: string): string | undefined {
  const x = values[name];
  return typeof x === 'string' ? x : undefined;
}

const NUMBER_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$/i;

/** A numeric flag: a number when it reads as one, else the raw text (the library rejects it by name). */
export function num(values: Values, name: string): number | string | undefined {
  const raw = str(values, name);
  if (raw === undefined) return undefined;
  const t = raw.trim();
  return NUMBER_RE.test(t) ? Number(t) : raw;
}

/** --seed: an integer (a bigint beyond 2^53), else as num() reads it. */
export function seedValue(values: Values): number | bigint | string | undefined {
  const raw = str(values, 'seed');
  if (raw === undefined) return undefined;
  const t = raw.trim();
  if (/^\d+$/.test(t)) {
    const b = BigInt(t);
    return b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
  }
  return NUMBER_RE.test(t) ? Number(t) : raw;
}

/** --offline as the library option: true, or left out. */
export function offlineFlag(values: Values): true | undefined {
  return values.offline === true ? true : undefined;
}

export function helpWanted(args: string[]): boolean {
  const end = args.indexOf('--');
  const head = end === -1 ? args : args.slice(0, end);
  return head.includes('--help') || head.includes('-h');
}

/** `o` without its undefined entries. */
export function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)) as Partial<T>;
}
