#!/usr/bin/env node
/**
 * The `hdlm` command: generate text, export TorchScript modules, download models, show the runtime.
 *
 * Exit codes: 0 ok, 1 runtime failure (model / file / hub / native error), 2 usage error (unknown
 * command or flag, bad flag value), 130 interrupted (SIGINT).
 *
 * The library is loaded lazily, so `--help` and `--version` work without touching the native addon.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { randomBytes } from 'crypto';
import { parseArgs } from 'util';
import { createProgress, formatBytes, formatDuration, type Progress } from './progress';
import * as v from './validate';
import type * as Lib from './index';
import { evalCommand, EVAL_HELP } from './cli-eval'; // evaluation (issue 8)

type Values = Record<string, string | boolean | undefined>;
type OptionSpec = { type: 'string' | 'boolean'; short?: string };

// ---------------------------------------------------------------------------------------------
// errors and exit codes

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const EXIT_INTERRUPTED = 130;

/** A command-line mistake: printed with a hint to --help, exit 2. */
class UsageError extends Error {
  constructor(message: string, readonly command: string | null = null) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Library option names → the flags that set them, so library messages name what the user typed. */
const FLAG_OF: Record<string, string> = {
  modelPath: '--model', modelType: '--model-type', device: '--device', threads: '--threads', revision: '--revision',
  token: '--token', offline: '--offline', cacheDir: '--cache-dir', alg: '--alg', steps: '--steps',
  temperature: '--temperature', batchSize: '--batch', contextLength: '--context-length', blockSize: '--block-size',
  eta: '--eta', seed: '--seed', cfgScale: '--cfg-scale', outFile: '<out.pt>', repoId: '<repo-id>',
};

function flagNamed(message: string): string {
  return message.replace(/ for ([A-Za-z]+) but received /, (all, name: string) => (FLAG_OF[name] ? ` for ${FLAG_OF[name]} but received ` : all));
}

// ---------------------------------------------------------------------------------------------
// terminal state: everything drawn on a TTY is cleared before other output, errors, or exit

const cleanups = new Set<() => void>();

function clearTerminal(): void {
  for (const fn of [...cleanups]) {
    try {
      fn();
    } catch {
      // best effort
    }
  }
  cleanups.clear();
}

/** SIGINT: abort the running operation; exit at once if nothing abortable runs, or on a second Ctrl-C. */
const interrupt = {
  controller: new AbortController(),
  abortable: false,
  count: 0,
  install(): void {
    process.on('SIGINT', this.handler);
  },
  uninstall(): void {
    process.removeListener('SIGINT', this.handler);
  },
  handler: (): void => {
    interrupt.count++;
    interrupt.controller.abort(new Error('SIGINT'));
    if (!interrupt.abortable || interrupt.count > 1) {
      clearTerminal();
      process.stderr.write('hdlm: interrupted\n');
      process.exit(EXIT_INTERRUPTED);
    }
  },
};

function stderrStatus(text: string): () => void {
  if (!process.stderr.isTTY) return () => {};
  process.stderr.write(`\r${text}\x1b[K`);
  const clear = () => {
    process.stderr.write('\r\x1b[K');
    cleanups.delete(clear);
  };
  cleanups.add(clear);
  return clear;
}

function trackProgress(p: Progress): Progress {
  const clear = () => p.clear();
  cleanups.add(clear);
  return {
    active: p.active,
    update: (d, e, t) => p.update(d, e, t),
    clear: () => p.clear(),
    done: (keep) => {
      cleanups.delete(clear);
      p.done(keep);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// argument helpers

function pkgVersion(): string {
  try {
    return JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')).version;
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

function suggest(word: string, candidates: string[]): string {
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

function parse(command: string, args: string[], options: Record<string, OptionSpec>, maxPositionals: number): { values: Values; positionals: string[] } {
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

function str(values: Values, name: string): string | undefined {
  const x = values[name];
  return typeof x === 'string' ? x : undefined;
}

const NUMBER_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?$/i;

/** A numeric flag: a number when it reads as one, else the raw text (the validators reject it by name). */
function num(values: Values, name: string): number | string | undefined {
  const raw = str(values, name);
  if (raw === undefined) return undefined;
  const t = raw.trim();
  return NUMBER_RE.test(t) ? Number(t) : raw;
}

function seedValue(values: Values): number | bigint | string | undefined {
  const raw = str(values, 'seed');
  if (raw === undefined) return undefined;
  const t = raw.trim();
  if (/^\d+$/.test(t)) {
    const b = BigInt(t);
    return b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
  }
  return NUMBER_RE.test(t) ? Number(t) : raw;
}

function helpWanted(args: string[]): boolean {
  const end = args.indexOf('--');
  const head = end === -1 ? args : args.slice(0, end);
  return head.includes('--help') || head.includes('-h');
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY && process.stderr.isTTY) process.stderr.write('(reading the prompt from stdin; end it with Ctrl-D)\n');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function out(text: string): void {
  process.stdout.write(text);
}

// ---------------------------------------------------------------------------------------------
// help

const HUB_HELP = `  --revision <rev>            hub branch, tag or commit (default main)
  --token <token>             hub access token (default HF_TOKEN, or the huggingface-cli login token)
  --offline                   use only the local Hugging Face cache (also HF_HUB_OFFLINE=1)`;

const HELP: Record<string, string> = {
  main: `hdlm ${'$VERSION'} — hybrid diffusion language models (HDLM) on libtorch

Usage: hdlm <command> [options]

Commands:
  generate [prompt]          sample text (default model: the embedded demo model)
  export <model> <out.pt>    build a model's TorchScript module and save it
  download <repo-id>         fetch a model into the Hugging Face cache
  info                       libtorch, devices, caches and cached models
  eval ppl|generation        zero-shot perplexity / sample quality (upstream's eval scripts)

Options:
  -h, --help                 show help (also: hdlm <command> --help)
  -v, --version              print the version

Exit codes: 0 ok, 1 runtime failure, 2 usage error, 130 interrupted.
Environment: HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, HDLM_CACHE (TorchScript cache),
HDLM_NUM_THREADS, HDLM_DEBUG=1 (stack traces on errors).`,

  generate: `Usage: hdlm generate [prompt] [options]

Samples text with a diffusion sampler and prints it to stdout (samples separated by a '---' line).
The prompt is kept at the start of every sample; '-' reads it from stdin (one trailing newline
dropped); no prompt samples unconditionally.

Model:
  -m, --model <id|dir|file>   hub repo id, checkpoint directory, or TorchScript file
                              (default: the embedded demo model)
  --model-type <type>         auto | epsilon_hybrid | gamma_hybrid (default auto)
  --device <dev>              auto | cpu | cuda | cuda:N (default auto)
  --threads <n>               libtorch CPU threads (default HDLM_NUM_THREADS, else all cores)
  --no-cache                  rebuild the TorchScript module instead of using HDLM_CACHE
${HUB_HELP}

Sampling:
  --sampler <name>            epsilon models: full (every position at once, default), semi (left-to-right
                              blocks), full-shifted / semi-shifted (next-token models; semi-shifted follows
                              the model's metaschedule); gamma models: nar (default) or sar, unconditional
                              (upstream get_sa_sampling_fn, the model's metaschedule; --steps etc. do not apply)
  --alg <alg>                 original | acs | remask | remask_adhoc_shuffle | remdm (default acs)
  --steps <n>                 denoising steps; semi: per block (default min(512, context length))
  --context-length <n>        tokens per sample, prompt included (default and maximum: the model's length)
  --block-size <n>            semi only: tokens per block (default 16)
  --temperature <t>           >= 0, 0 = greedy (default 1)
  --eta <x>                   correction rate of acs / remask_adhoc_shuffle, cap of remdm
                              (default 0.015; semi 0.01)
  --cfg-scale <s>             classifier-free guidance scale, needs a prompt (default 0 = off)
  --batch <n>                 number of samples (default 1)
  --seed <n>                  random seed, integer in [0, 2^64) (default: random; --json reports it)

Output:
  --json                      print one JSON object: {model, source, device, seed, alg, sampler, steps,
                              contextLength, temperature, samples: [{ids, text}], ms, loadMs}
  --special                   keep <|endoftext|> in the text (default --no-special: drop it)
  --show-steps                on a terminal, redraw sample 0 as it denoises (masks shown as ░)
  -h, --help                  show this help

A progress bar goes to stderr when stderr is a terminal; nothing extra is printed otherwise.`,

  export: `Usage: hdlm export <model> <out.pt> [options]

Builds the TorchScript module of a checkpoint (hub repo id or directory) and writes it to
<out.pt>; prints the absolute path. The file loads with 'hdlm generate --model <out.pt>'.

Options:
  --model-type <type>         auto | epsilon_hybrid | gamma_hybrid (default auto)
  --device <dev>              auto | cpu | cuda | cuda:N: where the module's weights live (default auto)
  --threads <n>               libtorch CPU threads
${HUB_HELP}
  -h, --help                  show this help`,

  download: `Usage: hdlm download <repo-id> [options]

Downloads a model's files (config.yaml / config.json and model.safetensors or pytorch_model.bin)
into the Hugging Face cache (shared with Python's huggingface_hub) and prints the snapshot folder.
Files already in the cache are not downloaded again.

Options:
${HUB_HELP}
  --cache-dir <dir>           cache folder (default HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)
  --json                      print {repoId, revision, commit, snapshotDir, files}
  -h, --help                  show this help`,

  info: `Usage: hdlm info [--json]

Shows the libtorch in use (its version and the library file this process loaded), whether the
addon is a prebuilt binary (and the libtorch it was built for) or built from source, CUDA support
and devices, CPU threads, the Hugging Face cache and the models in it, and the TorchScript cache
(HDLM_CACHE, else ~/.cache/hdlm). A prebuilt binary that does not match the libtorch found is
refused with an error saying how to build from source.

Options:
  --json                      print one JSON object
  -h, --help                  show this help`,
};

function helpText(topic: string): string {
  return HELP[topic].replace('$VERSION', pkgVersion()) + '\n';
}

// ---------------------------------------------------------------------------------------------
// commands

const HUB_OPTIONS: Record<string, OptionSpec> = {
  revision: { type: 'string' },
  token: { type: 'string' },
  offline: { type: 'boolean' },
};

const GENERATE_OPTIONS: Record<string, OptionSpec> = {
  model: { type: 'string', short: 'm' },
  'model-type': { type: 'string' },
  device: { type: 'string' },
  threads: { type: 'string' },
  'no-cache': { type: 'boolean' },
  ...HUB_OPTIONS,
  sampler: { type: 'string' },
  alg: { type: 'string' },
  steps: { type: 'string' },
  'context-length': { type: 'string' },
  'block-size': { type: 'string' },
  temperature: { type: 'string' },
  eta: { type: 'string' },
  'cfg-scale': { type: 'string' },
  batch: { type: 'string' },
  seed: { type: 'string' },
  json: { type: 'boolean' },
  special: { type: 'boolean' },
  'no-special': { type: 'boolean' },
  'show-steps': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

const EXPORT_OPTIONS: Record<string, OptionSpec> = {
  'model-type': { type: 'string' },
  device: { type: 'string' },
  threads: { type: 'string' },
  ...HUB_OPTIONS,
  help: { type: 'boolean', short: 'h' },
};

const DOWNLOAD_OPTIONS: Record<string, OptionSpec> = {
  ...HUB_OPTIONS,
  'cache-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

const INFO_OPTIONS: Record<string, OptionSpec> = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

function lib(): typeof Lib {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('./index') as typeof Lib;
}

/** Hub download bars, one per file actually downloaded (TTY only). */
function downloadProgress(): { onProgress: (e: { file: string; loaded: number; total: number | null }) => void; finish(): void } {
  const bars = new Map<string, Progress>();
  const finished = new Set<string>();
  const width = 24;
  return {
    onProgress(e) {
      if (!process.stderr.isTTY || finished.has(e.file)) return;
      let bar = bars.get(e.file);
      if (!bar) {
        const label = e.file.length > width ? '…' + e.file.slice(-(width - 1)) : e.file.padEnd(width);
        bar = trackProgress(createProgress(process.stderr, label, e.total, { unit: 'byte' }));
        bars.set(e.file, bar);
      }
      bar.update(e.loaded, '', e.total);
      if (e.total !== null && e.loaded >= e.total) {
        bar.done(true);
        bars.delete(e.file);
        finished.add(e.file);
      }
    },
    finish() {
      for (const bar of bars.values()) bar.done(true);
      bars.clear();
    },
  };
}

/** Token ids of one sample as text, masks drawn as ░ (control characters made visible-safe). */
function liveText(ids: number[], maskId: number, decode: typeof Lib.decode, special: boolean): string {
  let s = '';
  let run: number[] = [];
  const flush = () => {
    if (run.length > 0) s += decode(run, { skipSpecialTokens: !special });
    run = [];
  };
  for (const id of ids) {
    if (id === maskId) {
      flush();
      s += '░';
    } else {
      run.push(id);
    }
  }
  flush();
  return s.replace(/\t/g, ' ').replace(/\r\n?/g, '\n').replace(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/g, ' ');
}

/** Redraws a block of text in place at the bottom of a terminal. */
class LiveView {
  private rows = 0;
  private last = 0;
  constructor(private readonly stream: NodeJS.WriteStream) {}

  draw(text: string, status: string, force = false): void {
    const now = Date.now();
    if (!force && now - this.last < 40) return;
    this.last = now;
    const columns = Math.max(20, (this.stream.columns || 80) - 1);
    const maxRows = Math.max(3, (this.stream.rows || 24) - 2);
    const lines: string[] = [];
    for (const logical of text.split('\n')) {
      const chars = Array.from(logical);
      if (chars.length === 0) lines.push('');
      for (let i = 0; i < chars.length; i += columns) lines.push(chars.slice(i, i + columns).join(''));
    }
    if (lines.length > maxRows) {
      const hidden = lines.length - (maxRows - 1);
      lines.length = maxRows - 1;
      lines.push(`\x1b[2m… ${hidden} more line${hidden === 1 ? '' : 's'}\x1b[0m`);
    }
    lines.push(`\x1b[2m${Array.from(status).slice(0, columns).join('')}\x1b[0m`);
    this.stream.write(this.erase() + lines.join('\n'));
    this.rows = lines.length;
  }

  private erase(): string {
    if (this.rows === 0) return '';
    return '\r' + (this.rows > 1 ? `\x1b[${this.rows - 1}A` : '') + '\x1b[J';
  }

  clear(): void {
    if (this.rows > 0) this.stream.write(this.erase());
    this.rows = 0;
  }
}

async function generate(args: string[]): Promise<number> {
  const { values, positionals } = parse('generate', args, GENERATE_OPTIONS, 1);
  if (values.help) {
    out(helpText('generate'));
    return EXIT_OK;
  }
  if (values.special && values['no-special']) throw new UsageError("--special and --no-special contradict each other", 'generate');
  const SAMPLERS = ['full', 'semi', 'full-shifted', 'semi-shifted', 'nar', 'sar'];
  const samplerArg = str(values, 'sampler');
  if (samplerArg !== undefined && !SAMPLERS.includes(samplerArg)) {
    throw new UsageError(`Expected one of ${SAMPLERS.map((x) => `'${x}'`).join(', ')} for --sampler but received ${JSON.stringify(samplerArg)}`, 'generate');
  }
  if (samplerArg !== 'semi' && values['block-size'] !== undefined) {
    throw new UsageError('--block-size applies only to --sampler semi', 'generate');
  }
  if (samplerArg === 'nar' || samplerArg === 'sar') {
    for (const flag of ['steps', 'alg', 'eta', 'cfg-scale', 'temperature']) {
      if (values[flag] !== undefined) throw new UsageError(`--${flag} does not apply to --sampler ${samplerArg} (the metaschedule sets the steps)`, 'generate');
    }
  }

  // Checks that need no model, so a typo fails before a (possibly long) load or download. The
  // samplers check everything again, with the model's limits, after loading.
  const { ALGORITHMS } = require('./sampling') as typeof import('./sampling');
  const alg = str(values, 'alg') ?? 'acs';
  v.oneOf('--alg', alg, ALGORITHMS);
  const modelType = str(values, 'model-type');
  if (modelType !== undefined) v.oneOf('--model-type', modelType, ['auto', 'epsilon_hybrid', 'gamma_hybrid']);
  const steps = num(values, 'steps');
  const contextLength = num(values, 'context-length');
  const blockSize = num(values, 'block-size');
  const temperature = num(values, 'temperature');
  const eta = num(values, 'eta');
  const cfgScale = num(values, 'cfg-scale');
  const batch = num(values, 'batch');
  const threads = num(values, 'threads');
  if (steps !== undefined) v.integer('--steps', steps, 1);
  if (contextLength !== undefined) v.integer('--context-length', contextLength, 1);
  if (blockSize !== undefined) v.integer('--block-size', blockSize, 1);
  if (temperature !== undefined) v.finiteNumber('--temperature', temperature, 0);
  if (eta !== undefined) v.finiteNumber('--eta', eta, 0);
  if (cfgScale !== undefined) v.finiteNumber('--cfg-scale', cfgScale, 0);
  if (batch !== undefined) v.integer('--batch', batch, 1, 65536);
  if (threads !== undefined) v.integer('--threads', threads, 1, 4096);
  const seedArg = seedValue(values);
  const seed = seedArg !== undefined ? v.seed('--seed', seedArg) : BigInt(randomBytes(6).readUIntLE(0, 6));
  const special = values.special === true;
  const json = values.json === true;

  let promptText = positionals[0] ?? '';
  if (promptText === '-') promptText = (await readStdin()).replace(/\r?\n$/, '');

  const hdlm = lib();
  const modelPath = str(values, 'model') ?? hdlm.DEMO_MODEL_PATH;
  const downloads = downloadProgress();
  const t0 = Date.now();
  const clearStatus = stderrStatus(`loading ${values.model === undefined ? 'the demo model' : modelPath}…`);
  let loaded: Lib.LoadedModel;
  try {
    loaded = await hdlm.smartModelLoader(modelPath, {
      modelType: modelType as Lib.ModelType | undefined,
      device: str(values, 'device'),
      threads: threads as number | undefined,
      useCache: values['no-cache'] ? false : undefined,
      revision: str(values, 'revision'),
      token: str(values, 'token'),
      offline: values.offline ? true : undefined,
      onProgress: downloads.onProgress,
    });
  } finally {
    downloads.finish();
    clearStatus();
  }
  const loadMs = Date.now() - t0;
  const { model } = loaded;
  try {
    const gamma = model.family === 'gamma_hybrid';
    const sampler = samplerArg ?? (gamma ? 'nar' : 'full');
    if (gamma !== (sampler === 'nar' || sampler === 'sar')) {
      throw new hdlm.HdlmArgumentError(
        `Expected ${gamma ? "'nar' or 'sar' (the gamma samplers)" : "'full', 'semi', 'full-shifted' or 'semi-shifted'"} for --sampler ` +
          `with this ${model.family} model but received "${sampler}"`,
      );
    }
    if (gamma && promptText !== '') {
      throw new hdlm.HdlmArgumentError('Expected no prompt for --sampler nar/sar (upstream\'s gamma samplers are unconditional) but received ' + JSON.stringify(promptText));
    }
    const promptIds = hdlm.tokenizer.encode(promptText);
    // Numeric flags passed the checks above, so they are numbers (or absent) here.
    const ctx = (contextLength as number | undefined) ?? model.length;
    const stepCount = gamma
      ? (loaded.metaschedule ? loaded.metaschedule.maxStep(ctx) - 1 : 0)
      : sampler === 'semi-shifted'
        ? (loaded.metaschedule ? loaded.metaschedule.maxStep(ctx) - 1 : 0)
        : (steps as number | undefined) ?? Math.max(1, Math.min(512, ctx));

    const live = values['show-steps'] && process.stdout.isTTY ? new LiveView(process.stdout) : null;
    if (live) cleanups.add(() => live.clear());
    const bar = live ? null : trackProgress(createProgress(process.stderr, 'denoising', null, { unit: 'step' }));
    const started = Date.now();
    const onStep = (info: Lib.StepInfo): void => {
      if (live && info.tokens) {
        const elapsed = Date.now() - started;
        const status = `step ${info.step}/${info.total}  ${formatDuration(elapsed)}  ${(elapsed / info.step).toFixed(1)} ms/step`;
        live.draw(liveText(info.tokens[0], model.maskId, hdlm.decode, special), status, info.step === info.total);
      } else if (bar) {
        bar.update(info.step, '', info.total);
      }
    };
    const options: Lib.SemiDiffOptions = {
      model,
      prompt: promptIds,
      alg: alg as Lib.Algorithm,
      steps: stepCount,
      contextLength: contextLength as number | undefined,
      temperature: temperature as number | undefined,
      eta: eta as number | undefined,
      cfgScale: cfgScale as number | undefined,
      batchSize: batch as number | undefined,
      seed,
      signal: interrupt.controller.signal,
      onStep: live || bar?.active ? onStep : undefined,
      stepTokens: live ? true : undefined,
    };
    if (sampler === 'semi') options.blockSize = blockSize as number | undefined;
    if (interrupt.controller.signal.aborted) throw new hdlm.AbortError('interrupted while loading the model');
    const shiftedOptions = (): Lib.FullDiffShiftedOptions => {
      const { eta: _eta, blockSize: _bs, ...rest } = options;
      if (eta !== undefined) throw new hdlm.HdlmArgumentError(`--eta does not apply to --sampler ${sampler} (upstream fixes it at 0.015)`);
      return rest;
    };

    interrupt.abortable = true;
    let rows: number[][];
    try {
      if (sampler === 'semi') rows = await hdlm.semiDiff(options);
      else if (sampler === 'full') rows = await hdlm.fullDiff(options);
      else if (sampler === 'full-shifted') rows = await hdlm.fullDiffShifted(shiftedOptions());
      else if (sampler === 'semi-shifted') {
        if (steps !== undefined) throw new hdlm.HdlmArgumentError('--steps does not apply to --sampler semi-shifted (the metaschedule sets the steps)');
        const { steps: _steps, ...rest } = shiftedOptions();
        rows = await hdlm.semiDiffShifted(rest);
      } else {
        rows = await hdlm.gammaSample({
          model, samplingMethod: sampler === 'sar' ? 'SAR' : 'NAR', contextLength: contextLength as number | undefined,
          batchSize: batch as number | undefined, seed, signal: interrupt.controller.signal,
          onStep: live || bar?.active ? onStep : undefined, stepTokens: live ? true : undefined,
        });
      }
    } finally {
      interrupt.abortable = false;
      bar?.done();
      live?.clear();
    }
    const ms = Date.now() - started;
    const texts = rows.map((ids) => hdlm.decode(ids, { skipSpecialTokens: !special }));

    if (json) {
      const result = {
        model: modelPath,
        source: model.source,
        device: model.device,
        seed: seed <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(seed) : seed.toString(),
        alg: gamma ? 'analytic' : alg,
        sampler,
        steps: stepCount,
        contextLength: rows[0]?.length ?? model.length,
        temperature: temperature ?? 1,
        samples: rows.map((ids, i) => ({ ids, text: texts[i] })),
        ms,
        loadMs,
      };
      out(JSON.stringify(result) + '\n');
    } else {
      out(texts.map((t) => t + '\n').join('---\n'));
      if (process.stderr.isTTY) {
        process.stderr.write(
          `\x1b[2m${rows.length} sample${rows.length === 1 ? '' : 's'} · ${stepCount} steps · ${formatDuration(ms)} · ` +
            `seed ${seed} · ${model.device}\x1b[0m\n`,
        );
      }
    }
    return EXIT_OK;
  } finally {
    model.dispose();
  }
}

async function exportCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse('export', args, EXPORT_OPTIONS, 2);
  if (values.help) {
    out(helpText('export'));
    return EXIT_OK;
  }
  if (positionals.length < 2) throw new UsageError('expected <model> and <out.pt>', 'export');
  const modelType = str(values, 'model-type');
  if (modelType !== undefined) v.oneOf('--model-type', modelType, ['auto', 'epsilon_hybrid', 'gamma_hybrid']);
  const threads = num(values, 'threads');
  if (threads !== undefined) v.integer('--threads', threads, 1, 4096);
  const hdlm = lib();
  const downloads = downloadProgress();
  const clearStatus = stderrStatus(`building the TorchScript module of ${positionals[0]}…`);
  let file: string;
  try {
    file = await hdlm.exportTorchScript(positionals[0], positionals[1], {
      modelType: modelType as Lib.ModelType | undefined,
      device: str(values, 'device'),
      threads: threads as number | undefined,
      revision: str(values, 'revision'),
      token: str(values, 'token'),
      offline: values.offline ? true : undefined,
      onProgress: downloads.onProgress,
    });
  } finally {
    downloads.finish();
    clearStatus();
  }
  out(file + '\n');
  return EXIT_OK;
}

async function downloadCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse('download', args, DOWNLOAD_OPTIONS, 1);
  if (values.help) {
    out(helpText('download'));
    return EXIT_OK;
  }
  if (positionals.length < 1) throw new UsageError('expected a <repo-id> such as owner/name', 'download');
  const repoId = positionals[0];
  const { resolveRepoFiles } = require('./hub') as typeof import('./hub');
  const downloads = downloadProgress();
  let resolved;
  try {
    resolved = await resolveRepoFiles(
      repoId,
      [{ names: ['config.yaml'], optional: true }, { names: ['config.json'], optional: true }, { names: ['model.safetensors', 'pytorch_model.bin'] }],
      {
        revision: str(values, 'revision'),
        token: str(values, 'token'),
        offline: values.offline ? true : undefined,
        cacheDir: str(values, 'cache-dir'),
        onProgress: downloads.onProgress,
      },
    );
  } finally {
    downloads.finish();
  }
  if (values.json) {
    out(JSON.stringify({ repoId, revision: str(values, 'revision') ?? 'main', commit: resolved.commit, snapshotDir: resolved.snapshotDir, files: resolved.files }) + '\n');
  } else {
    out(resolved.snapshotDir + '\n');
  }
  return EXIT_OK;
}

function dirSize(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        try {
          bytes += fs.statSync(p).size;
          files++;
        } catch {
          // vanished
        }
      }
    }
  };
  walk(dir);
  return { files, bytes };
}

function defaultThreads(): number {
  const env = process.env.HDLM_NUM_THREADS;
  const n = env ? Number(env) : NaN;
  return Number.isInteger(n) && n >= 1 ? n : os.availableParallelism();
}

async function infoCommand(args: string[]): Promise<number> {
  const { values } = parse('info', args, INFO_OPTIONS, 0);
  if (values.help) {
    out(helpText('info'));
    return EXIT_OK;
  }
  const hdlm = lib();
  const rt = hdlm.runtimeInfo();
  const native = hdlm.nativeInfo();
  const hubDir = hdlm.hubCacheDir();
  const tsDir = process.env.HDLM_CACHE || path.join(os.homedir(), '.cache', 'hdlm');
  const ts = dirSize(path.join(tsDir, 'torchscript'));
  const models = hdlm.listCachedModels();
  const info = {
    version: pkgVersion(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    libtorchVersion: rt.libtorchVersion,
    // the libtorch library loaded by this process, and the addon binary that loaded it
    libtorch: native.libtorch,
    binary: native.binary,
    cudaCompiled: rt.cudaCompiled,
    cudaDeviceCount: rt.cudaDeviceCount,
    cudaDeviceName: rt.cudaDeviceName,
    // fast mode's NVRTC-compiled CUDA kernels on device 0 (else ATen kernels, and why)
    fusedKernels: hdlm.fusedKernelStatus(0),
    defaultDevice: rt.cudaDeviceCount > 0 ? 'cuda:0' : 'cpu',
    // what a model load sets (lib/loader.ts): HDLM_NUM_THREADS, else every core
    threads: defaultThreads(),
    libtorchThreads: rt.threads,
    demoModel: hdlm.DEMO_MODEL_PATH,
    hubCacheDir: hubDir,
    torchscriptCacheDir: tsDir,
    torchscriptCache: { modules: ts.files, sizeBytes: ts.bytes },
    cachedModels: models,
  };
  if (values.json) {
    out(JSON.stringify(info, null, 2) + '\n');
    return EXIT_OK;
  }
  const cuda = rt.cudaCompiled
    ? `compiled in, ${rt.cudaDeviceCount} device${rt.cudaDeviceCount === 1 ? '' : 's'} visible`
    : 'not compiled in (CPU-only libtorch)';
  const lines = [
    `hdlm ${info.version} (node ${info.node}, ${info.platform})`,
    `libtorch           ${rt.libtorchVersion}${native.libtorch ? ` (${native.libtorch.file}${native.libtorch.cuda ? ', CUDA' : ', CPU'}${native.libtorch.cxx11Abi === false ? ', pre-C++11 ABI' : ''})` : ''}`,
    `addon              ${native.binary.kind === 'prebuild' ? `prebuilt binary for libtorch ${native.binary.builtFor?.version ?? '?'}` : 'built from source'} (${native.binary.path})`,
    `CUDA               ${cuda}`,
    `default device     ${info.defaultDevice}`,
    `CPU threads        ${info.threads}${process.env.HDLM_NUM_THREADS ? ' (HDLM_NUM_THREADS)' : ''}`,
    `demo model         ${info.demoModel}`,
    `TorchScript cache  ${tsDir} (${ts.files} file${ts.files === 1 ? '' : 's'}, ${formatBytes(ts.bytes)})`,
    `hub cache          ${hubDir}`,
  ];
  if (models.length === 0) {
    lines.push('cached models      none');
  } else {
    lines.push(`cached models      ${models.length}`);
    const w = Math.max(...models.map((m) => m.repoId.length));
    for (const m of models) {
      const refs = Object.entries(m.refs).map(([r, c]) => `${r}→${c.slice(0, 7)}`).join(', ');
      lines.push(`  ${m.repoId.padEnd(w)}  ${formatBytes(m.sizeBytes).padStart(8)}  ${refs || `${m.snapshots.length} snapshot(s)`}`);
    }
  }
  out(lines.join('\n') + '\n');
  return EXIT_OK;
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  generate,
  export: exportCommand,
  download: downloadCommand,
  info: infoCommand,
  // evaluation (issue 8): lib/cli-eval.ts
  eval: (args: string[]) => evalCommand(args, { signal: interrupt.controller.signal, markAbortable: () => (interrupt.abortable = true) }),
};
HELP.eval = EVAL_HELP;

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    process.stderr.write(helpText('main'));
    return EXIT_USAGE;
  }
  if (first === '--help' || first === '-h') {
    out(helpText('main'));
    return EXIT_OK;
  }
  if (first === '--version' || first === '-v' || first === '-V') {
    out(pkgVersion() + '\n');
    return EXIT_OK;
  }
  if (first === 'help') {
    const topic = rest[0];
    if (topic === undefined) {
      out(helpText('main'));
      return EXIT_OK;
    }
    if (!COMMANDS[topic]) throw new UsageError(`unknown command '${topic}'${suggest(topic, Object.keys(COMMANDS))}`);
    out(helpText(topic));
    return EXIT_OK;
  }
  if (first.startsWith('-')) throw new UsageError(`unknown option '${first}' (options go after the command)`);
  const command = COMMANDS[first];
  if (!command) throw new UsageError(`unknown command '${first}'${suggest(first, Object.keys(COMMANDS))}`);
  if (helpWanted(rest)) {
    out(helpText(first));
    return EXIT_OK;
  }
  return command(rest);
}

function report(e: unknown): number {
  clearTerminal();
  const debug = process.env.HDLM_DEBUG === '1';
  const err = e as Error & { code?: string; command?: string | null };
  if (e instanceof UsageError || err?.code === 'HDLM_INVALID_ARGUMENT') {
    const command = e instanceof UsageError ? err.command : process.argv[2] in COMMANDS ? process.argv[2] : null;
    process.stderr.write(`hdlm: ${flagNamed(err.message)}\n`);
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
