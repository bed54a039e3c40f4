/**
 * Options of `serve()` and the flags of `hdlm serve`, with their defaults and checks. Bad values
 * are HdlmArgumentErrors in the library's message shape, naming the flag when they came from
 * the command line.
 */
import * as path from 'path';
import { parseArgs } from 'util';
import { ALGORITHMS, DEMO_MODEL_PATH, HdlmArgumentError, type Algorithm } from '../index';
import { expandDevices } from './replicas';

export interface ServeOptions {
  /** hub repo id, checkpoint directory or TorchScript file (default: the embedded demo model) */
  model?: string;
  /** the id clients send as `model` (default: the repo id, or the folder / file name) */
  modelName?: string;
  /** address to bind (default 127.0.0.1: this machine only) */
  host?: string;
  /** TCP port (default 8080; 0 picks a free one) */
  port?: number;
  /** 'auto' (default), 'all', or a comma list / array of 'cpu' | 'cuda' | 'cuda:N', one replica each */
  device?: string | string[];
  /** require `Authorization: Bearer <apiKey>` on /v1/* and /metrics (default: no key) */
  apiKey?: string | null;
  /** jobs (one per prompt) that may wait for a replica before requests get 429 (default 64) */
  maxQueue?: number;
  /** sample rows in flight per replica (default 32); also the largest n */
  maxBatch?: number;
  /** largest request body in bytes (default 1 MiB) */
  maxBodyBytes?: number;
  /** prompts one request may list (default 16) */
  maxPrompts?: number;
  /** default denoising steps of a request (default 128) */
  steps?: number;
  /** most denoising steps one request may run (semi-autoregressive: steps × blocks) (default 4096) */
  maxSteps?: number;
  /** default algorithm of a request (default 'acs') */
  alg?: Algorithm;
  /** default max_tokens (default 16, as OpenAI; bounded by the room the prompt leaves) */
  maxTokens?: number;
  /** how long close() waits for running requests before aborting them, in ms (default 60000) */
  drainTimeoutMs?: number;
  /** libtorch CPU threads (default HDLM_NUM_THREADS, else all cores) */
  threads?: number;
  /** smartModelLoader options */
  torchscriptCacheDir?: string;
  useCache?: boolean;
  revision?: string;
  token?: string;
  offline?: boolean;
  /** fastify's request log (JSON lines on stderr) (default false) */
  logRequests?: boolean;
  /** where server messages go (default: stderr) */
  log?: (line: string) => void;
}

export interface ResolvedServeOptions {
  model: string;
  modelName: string;
  host: string;
  port: number;
  devices: string[];
  apiKey: string | null;
  maxQueue: number;
  maxBatch: number;
  maxBodyBytes: number;
  maxPrompts: number;
  steps: number;
  maxSteps: number;
  alg: Algorithm;
  maxTokens: number;
  drainTimeoutMs: number;
  threads: number | undefined;
  torchscriptCacheDir: string | undefined;
  useCache: boolean;
  revision: string | undefined;
  token: string | undefined;
  offline: boolean | undefined;
  logRequests: boolean;
  log: (line: string) => void;
}

const KEYS = [
  'model', 'modelName', 'host', 'port', 'device', 'apiKey', 'maxQueue', 'maxBatch', 'maxBodyBytes', 'maxPrompts', 'steps', 'maxSteps',
  'alg', 'maxTokens', 'drainTimeoutMs', 'threads', 'torchscriptCacheDir', 'useCache', 'revision', 'token', 'offline', 'logRequests', 'log',
] as const;

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'object' && value !== null) return 'an object';
  return String(value);
}

function bad(name: string, expected: string, value: unknown): HdlmArgumentError {
  return new HdlmArgumentError(`Expected ${expected} for ${name} but received ${describe(value)}`);
}

/** Library option → the flag that sets it, so messages name what the user typed. */
export const FLAG_OF: Record<string, string> = {
  model: '--model', modelName: '--model-name', host: '--host', port: '--port', device: '--device', apiKey: '--api-key',
  maxQueue: '--max-queue', maxBatch: '--max-batch', maxBodyBytes: '--max-body', maxPrompts: '--max-prompts', steps: '--steps',
  maxSteps: '--max-steps', alg: '--alg', maxTokens: '--max-tokens', drainTimeoutMs: '--drain-timeout', threads: '--threads',
  revision: '--revision', token: '--token',
};

/** Checks `serve()` options and fills in defaults. `label` names an option in messages. */
export function resolveServeOptions(options: ServeOptions = {}, label: (name: string) => string = (n) => n): ResolvedServeOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw bad('serve options', 'an object', options);
  for (const key of Object.keys(options)) {
    if (!(KEYS as readonly string[]).includes(key)) throw new HdlmArgumentError(`Unknown option ${key} for serve; known options: ${KEYS.join(', ')}`);
  }
  const o = options as Record<string, unknown>;
  const has = (k: string) => o[k] !== undefined && o[k] !== null;
  const int = (k: string, def: number, min: number, max: number): number => {
    if (!has(k)) return def;
    const x = o[k];
    if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) throw bad(label(k), `an integer between ${min} and ${max}`, x);
    return x;
  };
  const str = (k: string): string | undefined => {
    if (!has(k)) return undefined;
    if (typeof o[k] !== 'string' || (o[k] as string).length === 0) throw bad(label(k), 'a non-empty string', o[k]);
    return o[k] as string;
  };
  const bool = (k: string): boolean | undefined => {
    if (!has(k)) return undefined;
    if (typeof o[k] !== 'boolean') throw bad(label(k), 'a boolean', o[k]);
    return o[k] as boolean;
  };

  const model = str('model') ?? DEMO_MODEL_PATH;
  const modelName = str('modelName') ?? defaultModelName(model);
  if (/[\s\p{Cc}]/u.test(modelName) || modelName.length > 256) throw bad(label('modelName'), 'a name without spaces or control characters, at most 256 long', modelName);
  const host = str('host') ?? '127.0.0.1';
  const port = int('port', 8080, 0, 65535);
  let devices: string[];
  try {
    devices = expandDevices(has('device') ? (o.device as string | string[]) : 'auto');
  } catch (e) {
    throw new HdlmArgumentError((e as Error).message.replace(/ for device /, ` for ${label('device')} `));
  }
  let apiKey: string | null = null;
  if (has('apiKey')) {
    const k = o.apiKey;
    if (typeof k !== 'string' || k.trim().length === 0 || /[\s\p{Cc}]/u.test(k)) {
      // never echo a secret into a log
      throw new HdlmArgumentError(`Expected a non-empty key without spaces or control characters for ${label('apiKey')} but received ${typeof k === 'string' ? 'a string that is not one' : describe(k)}`);
    }
    apiKey = k;
  }
  const maxBatch = int('maxBatch', 32, 1, 4096);
  const alg = has('alg') ? o.alg : 'acs';
  if (typeof alg !== 'string' || !(ALGORITHMS as readonly string[]).includes(alg)) {
    throw bad(label('alg'), `one of ${ALGORITHMS.map((a) => `'${a}'`).join(', ')}`, alg);
  }
  const maxSteps = int('maxSteps', 4096, 1, 1_000_000);
  const steps = int('steps', Math.min(128, maxSteps), 1, maxSteps);
  const log = has('log') ? o.log : (line: string) => process.stderr.write(line + '\n');
  if (typeof log !== 'function') throw bad(label('log'), 'a function', log);
  return {
    model,
    modelName,
    host,
    port,
    devices,
    apiKey,
    maxQueue: int('maxQueue', 64, 0, 1_000_000),
    maxBatch,
    maxBodyBytes: int('maxBodyBytes', 1 << 20, 1024, 1 << 30),
    maxPrompts: int('maxPrompts', 16, 1, 4096),
    steps,
    maxSteps,
    alg: alg as Algorithm,
    maxTokens: int('maxTokens', 16, 1, 1_000_000),
    drainTimeoutMs: int('drainTimeoutMs', 60_000, 0, 24 * 3600_000),
    threads: has('threads') ? int('threads', 0, 1, 1024) : undefined,
    torchscriptCacheDir: str('torchscriptCacheDir'),
    useCache: bool('useCache') ?? true,
    revision: str('revision'),
    token: str('token'),
    offline: bool('offline'),
    logRequests: bool('logRequests') ?? false,
    log: log as (line: string) => void,
  };
}

/** The id a model is served under: a hub repo id as is, a path by its last component. */
export function defaultModelName(model: string): string {
  if (/^[\w.-]+\/[\w.-]+$/.test(model) && !model.startsWith('.')) return model;
  return path.basename(path.resolve(model)).replace(/\.(pt|torchscript)$/, '') || 'model';
}

export const SERVE_HELP = `Usage: hdlm serve [options]

Serves a model over HTTP: an OpenAI-compatible POST /v1/completions (with streaming and a
stream of the denoising), GET /v1/models, GET /health, GET /metrics (Prometheus) and a page at /
to watch text denoise. SIGTERM or Ctrl-C stops taking requests, finishes those in flight, then
exits. See docs/server.md.

Model:
  -m, --model <id|dir|file>   hub repo id, checkpoint directory, or TorchScript file
                              (default: the embedded demo model)
  --model-name <name>         the id clients send as "model" (default: repo id or folder name)
  --device <list>             auto | all | cpu | cuda | cuda:N, comma-separated for several
                              replicas (one model copy each; 'all' = every CUDA device;
                              'cpu,cpu' = two CPU replicas) (default auto)
  --threads <n>               libtorch CPU threads (default HDLM_NUM_THREADS, else all cores)
  --no-cache                  rebuild the TorchScript module instead of using HDLM_CACHE
  --revision <rev>            hub branch, tag or commit (default main)
  --token <token>             hub access token (default HF_TOKEN, or the huggingface-cli login token)
  --offline                   use only the local Hugging Face cache (also HF_HUB_OFFLINE=1)

Network and safety:
  --host <addr>               address to listen on (default 127.0.0.1: this machine only, and
                              only requests for localhost / 127.0.0.1 / [::1] are answered;
                              0.0.0.0 exposes the server to the network)
  --port <n>                  TCP port (default 8080; 0 = any free port, printed at start)
  --api-key <key>             require "Authorization: Bearer <key>" on /v1/* and /metrics
                              (also HDLM_API_KEY, or --api-key-file <file>: on the command line
                              the key is visible to other users of the machine)
  --api-key-file <file>       read the key from the first line of a file
  --max-body <size>           largest request body, bytes or with k / m (KiB / MiB) (default 1m)
  --max-queue <n>             jobs (one per prompt) waiting for a replica before requests get
                              429 with Retry-After (default 64)
  --max-batch <n>             sample rows in flight per replica; also the largest n (default 32)
  --max-prompts <n>           prompts one request may list (default 16)
  --max-steps <n>             most denoising steps per request (semi: steps × blocks) (default 4096)
  --drain-timeout <s>         on shutdown, seconds to let running requests finish before
                              aborting them (default 60)

Request defaults:
  --steps <n>                 denoising steps when a request sets none (default 128)
  --alg <alg>                 original | acs | remask | remask_adhoc_shuffle | remdm (default acs)
  --max-tokens <n>            max_tokens when a request sets none (default 16)

Output:
  --log-requests              log every request (JSON lines on stderr)
  -h, --help                  show this help`;

const FLAGS = {
  model: { type: 'string', short: 'm' },
  'model-name': { type: 'string' },
  device: { type: 'string' },
  threads: { type: 'string' },
  'no-cache': { type: 'boolean' },
  revision: { type: 'string' },
  token: { type: 'string' },
  offline: { type: 'boolean' },
  host: { type: 'string' },
  port: { type: 'string' },
  'api-key': { type: 'string' },
  'api-key-file': { type: 'string' },
  'max-body': { type: 'string' },
  'max-queue': { type: 'string' },
  'max-batch': { type: 'string' },
  'max-prompts': { type: 'string' },
  'max-steps': { type: 'string' },
  'drain-timeout': { type: 'string' },
  steps: { type: 'string' },
  alg: { type: 'string' },
  'max-tokens': { type: 'string' },
  'log-requests': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export interface ParsedServeArgs {
  help: boolean;
  options: ServeOptions;
  /** the file --api-key-file names (read by the caller) */
  apiKeyFile: string | null;
}

function integerFlag(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const t = raw.trim();
  if (!/^\d+$/.test(t) || !Number.isSafeInteger(Number(t))) throw bad(flag, 'a non-negative integer', raw);
  return Number(t);
}

function sizeFlag(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const m = /^(\d+)\s*([kKmMgG]i?[bB]?|[bB])?$/.exec(raw.trim());
  if (!m) throw bad(flag, 'a size in bytes, optionally with k, m or g (KiB, MiB, GiB)', raw);
  const unit = (m[2] ?? 'b')[0].toLowerCase();
  const bytes = Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1 << 20 : unit === 'g' ? 1 << 30 : 1);
  if (!Number.isSafeInteger(bytes)) throw bad(flag, 'a size in bytes', raw);
  return bytes;
}

/** Parses `hdlm serve` flags into serve() options (not yet checked for range: resolveServeOptions does). */
export function parseServeArgs(argv: readonly string[]): ParsedServeArgs {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: FLAGS, strict: true, allowPositionals: true });
  } catch (e) {
    const err = e as Error & { code?: string };
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const m = /Unknown option '([^']+)'/.exec(err.message);
      throw new HdlmArgumentError(`unknown option '${m ? m[1] : '?'}' for 'hdlm serve'`);
    }
    if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const m = /Option '(?:-\w, )?(--[\w-]+)/.exec(err.message);
      const flag = m ? m[1] : null;
      if (flag && (FLAGS as Record<string, { type: string }>)[flag.slice(2)]?.type === 'boolean') throw new HdlmArgumentError(`option '${flag}' does not take a value`);
      if (flag) throw new HdlmArgumentError(`option '${flag}' needs a value (a value starting with '-' is written ${flag}=-VALUE)`);
    }
    throw new HdlmArgumentError(err.message);
  }
  if (parsed.positionals.length > 0) {
    throw new HdlmArgumentError(`unexpected argument ${JSON.stringify(parsed.positionals[0])} for 'hdlm serve' (the model goes after --model)`);
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  const s = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  if (s('api-key') !== undefined && s('api-key-file') !== undefined) throw new HdlmArgumentError('give --api-key or --api-key-file, not both');
  const drain = integerFlag('--drain-timeout', s('drain-timeout'));
  if (drain !== undefined && drain > 86400) throw bad('--drain-timeout', 'seconds between 0 and 86400', s('drain-timeout'));
  const options: ServeOptions = {
    model: s('model'),
    modelName: s('model-name'),
    device: s('device'),
    threads: integerFlag('--threads', s('threads')),
    useCache: v['no-cache'] ? false : undefined,
    revision: s('revision'),
    token: s('token'),
    offline: v.offline ? true : undefined,
    host: s('host'),
    port: integerFlag('--port', s('port')),
    apiKey: s('api-key'),
    maxBodyBytes: sizeFlag('--max-body', s('max-body')),
    maxQueue: integerFlag('--max-queue', s('max-queue')),
    maxBatch: integerFlag('--max-batch', s('max-batch')),
    maxPrompts: integerFlag('--max-prompts', s('max-prompts')),
    maxSteps: integerFlag('--max-steps', s('max-steps')),
    drainTimeoutMs: drain === undefined ? undefined : drain * 1000,
    steps: integerFlag('--steps', s('steps')),
    alg: s('alg') as Algorithm | undefined,
    maxTokens: integerFlag('--max-tokens', s('max-tokens')),
    logRequests: v['log-requests'] ? true : undefined,
  };
  for (const k of Object.keys(options) as (keyof ServeOptions)[]) if (options[k] === undefined) delete options[k];
  return { help: v.help === true, options, apiKeyFile: s('api-key-file') ?? null };
}
