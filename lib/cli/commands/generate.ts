/**
 * `hdlm generate`: loads a model, samples with the sampler the flags name, prints the text (or
 * JSON). The flags become library options as typed; the library checks them (those that need no
 * model before the load, so that a typo fails at once) and its messages are reported with the
 * flag names. What is checked here is the command's own policy: which flags apply to which
 * --sampler, and which samplers a model's family has.
 */
import { randomBytes } from 'crypto';
import type * as Lib from '../../index';
import type { SamplerMode } from '../../core/sampling';
import {
  EXIT_OK, HUB_HELP, HUB_OPTIONS, UsageError, num, offlineFlag, parse, seedValue, str,
  type Command, type OptionSpec, type Values,
} from '../args';
import { formatDuration } from '../progress';
import { LiveView, downloadProgress, interrupt, liveText, onClear, out, readStdin, stderrProgress, stderrStatus } from '../terminal';

const HELP = `Usage: hdlm generate [prompt] [options]

Samples text with a diffusion sampler and prints it to stdout (samples separated by a '---' line).
The prompt is kept at the start of every sample; '-' reads it from stdin (one trailing newline
dropped; at most 1 MiB); no prompt samples unconditionally.

Infilling (--sampler full or semi, epsilon models):
  --suffix <text>             keep <text> at the end of every sample (it ends at --context-length);
                              the tokens between the prompt and the suffix are sampled
  --template <text>           fill the gaps of <text>: {{N}} is a gap of N tokens, the rest is kept,
                              e.g. 'The city{{8}} in 1961.' (no prompt, no --suffix; the context is
                              the template's length)

Model:
  -m, --model <id|dir|file>   hub repo id, checkpoint directory, or TorchScript file
                              (default: the embedded demo model)
  --model-type <type>         auto | epsilon_hybrid | gamma_hybrid (default auto)
  --device <dev>              auto | cpu | cuda | cuda:N (default auto)
  --threads <n>               libtorch CPU threads, 1 to the cores (default HDLM_NUM_THREADS, else all cores)
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

A progress bar goes to stderr when stderr is a terminal; nothing extra is printed otherwise.`;

const OPTIONS: Record<string, OptionSpec> = {
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
  suffix: { type: 'string' },
  template: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const SAMPLERS = ['full', 'semi', 'full-shifted', 'semi-shifted', 'nar', 'sar'] as const;
type Sampler = (typeof SAMPLERS)[number];
const GAMMA_SAMPLERS: readonly Sampler[] = ['nar', 'sar'];
/** The library's sampler mode of each epsilon --sampler (the gamma samplers share its option rules with 'full'). */
const MODE: Record<Sampler, SamplerMode> = { full: 'full', semi: 'semi', 'full-shifted': 'full_shifted', 'semi-shifted': 'semi_shifted', nar: 'full', sar: 'full' };

/**
 * Sampler options from the flags, as typed (numbers where they read as numbers): the library
 * checks them. contextLength etc. are typed as the library takes them; a value that is not (a
 * string a user typed) is refused by the library's checks before any use.
 */
interface SamplingFlags {
  alg: Lib.Algorithm;
  steps?: number;
  contextLength?: number;
  blockSize?: number;
  temperature?: number;
  eta?: number;
  cfgScale?: number;
  batchSize?: number;
  seed: bigint;
}

/** The command's own rules (which flags go with which --sampler), then the library's checks that need no model. */
async function samplingFlags(values: Values): Promise<{ sampler: Sampler | undefined; flags: SamplingFlags }> {
  if (values.special && values['no-special']) throw new UsageError('--special and --no-special contradict each other', 'generate');
  const samplerArg = str(values, 'sampler');
  if (samplerArg !== undefined && !(SAMPLERS as readonly string[]).includes(samplerArg)) {
    throw new UsageError(`Expected one of ${SAMPLERS.map((x) => `'${x}'`).join(', ')} for --sampler but received ${JSON.stringify(samplerArg)}`, 'generate');
  }
  const sampler = samplerArg as Sampler | undefined;
  if (sampler !== 'semi' && values['block-size'] !== undefined) throw new UsageError('--block-size applies only to --sampler semi', 'generate');
  for (const flag of ['suffix', 'template']) {
    if (values[flag] !== undefined && sampler !== undefined && sampler !== 'full' && sampler !== 'semi') {
      throw new UsageError(`--${flag} applies only to --sampler full or semi (fixed tokens need the epsilon full_diff / semi_diff samplers)`, 'generate');
    }
  }
  if (values.template !== undefined && values.suffix !== undefined) throw new UsageError('--template and --suffix cannot go together (put the suffix in the template)', 'generate');
  if (values.template !== undefined && values['context-length'] !== undefined) throw new UsageError("--template sets the context length itself (the template's length)", 'generate');
  if (sampler !== undefined && GAMMA_SAMPLERS.includes(sampler)) {
    for (const flag of ['steps', 'alg', 'eta', 'cfg-scale', 'temperature']) {
      if (values[flag] !== undefined) throw new UsageError(`--${flag} does not apply to --sampler ${sampler} (the metaschedule sets the steps)`, 'generate');
    }
  }
  const given = {
    alg: str(values, 'alg') ?? 'acs', steps: num(values, 'steps'), contextLength: num(values, 'context-length'),
    blockSize: num(values, 'block-size'), temperature: num(values, 'temperature'), eta: num(values, 'eta'),
    cfgScale: num(values, 'cfg-scale'), batchSize: num(values, 'batch'), seed: seedValue(values),
  };
  const { checkSamplerOptions } = await import('../../core/sampling.js');
  checkSamplerOptions(MODE[sampler ?? 'full'], given);
  // checked: the numbers are numbers, the seed an integer in [0, 2^64)
  const seed = given.seed === undefined ? BigInt(randomBytes(6).readUIntLE(0, 6)) : BigInt(given.seed as number | bigint);
  return { sampler, flags: { ...(given as Omit<SamplingFlags, 'seed'>), seed } };
}

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse('generate', args, OPTIONS, 1);
  if (values.help) {
    out(HELP + '\n');
    return EXIT_OK;
  }
  const { sampler: samplerArg, flags } = await samplingFlags(values);
  let promptText = positionals[0] ?? '';
  if (promptText === '-') promptText = (await readStdin()).replace(/\r?\n$/, '');
  if (values.template !== undefined && promptText !== '') throw new UsageError('--template takes no prompt (put it in the template)', 'generate');

  const hdlm = await import('../../index.js');
  const modelPath = str(values, 'model') ?? hdlm.DEMO_MODEL_PATH;
  const downloads = downloadProgress();
  const t0 = Date.now();
  const clearStatus = stderrStatus(`loading ${values.model === undefined ? 'the demo model' : modelPath}…`);
  let loaded: Lib.LoadedModel;
  try {
    loaded = await hdlm.smartModelLoader(modelPath, {
      modelType: str(values, 'model-type') as Lib.ModelType | undefined,
      device: str(values, 'device'),
      threads: num(values, 'threads') as number | undefined,
      useCache: values['no-cache'] ? false : undefined,
      revision: str(values, 'revision'),
      token: str(values, 'token'),
      offline: offlineFlag(values),
      onProgress: downloads.onProgress,
    });
  } finally {
    downloads.finish();
    clearStatus();
  }
  const loadMs = Date.now() - t0;
  const { model } = loaded;
  try {
    const sampler = samplerFor(hdlm, model, samplerArg, promptText);
    const started = Date.now();
    const layout = infillLayout(hdlm, model, sampler, promptText, flags, values);
    const { rows, steps } = await sample(hdlm, loaded, sampler, layout, flags, values);
    const ms = Date.now() - started;
    const special = values.special === true;
    const texts = rows.map((ids) => hdlm.decode(ids, { skipSpecialTokens: !special }));
    const gamma = model.family === 'gamma_hybrid';
    if (values.json === true) {
      const { seed } = flags;
      const result = {
        model: modelPath,
        source: model.source,
        device: model.device,
        seed: seed <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(seed) : seed.toString(),
        alg: gamma ? 'analytic' : flags.alg,
        sampler,
        steps,
        contextLength: rows[0]?.length ?? model.length,
        temperature: flags.temperature ?? 1,
        samples: rows.map((ids, i) => ({ ids, text: texts[i] })),
        ms,
        loadMs,
      };
      out(JSON.stringify(result) + '\n');
    } else {
      out(texts.map((t) => t + '\n').join('---\n'));
      if (process.stderr.isTTY) {
        process.stderr.write(
          `\x1b[2m${rows.length} sample${rows.length === 1 ? '' : 's'} · ${steps} steps · ${formatDuration(ms)} · ` +
            `seed ${flags.seed} · ${model.device}\x1b[0m\n`,
        );
      }
    }
    return EXIT_OK;
  } finally {
    model.dispose();
  }
}

/** The sampler to run: the one asked for, if the model's family has it; else the family's default. */
function samplerFor(hdlm: typeof Lib, model: Lib.HdlmModel, asked: Sampler | undefined, promptText: string): Sampler {
  const gamma = model.family === 'gamma_hybrid';
  const sampler = asked ?? (gamma ? 'nar' : 'full');
  if (gamma !== GAMMA_SAMPLERS.includes(sampler)) {
    throw new hdlm.HdlmArgumentError(
      `Expected ${gamma ? "'nar' or 'sar' (the gamma samplers)" : "'full', 'semi', 'full-shifted' or 'semi-shifted'"} for --sampler ` +
        `with this ${model.family} model but received "${sampler}"`,
    );
  }
  if (gamma && promptText !== '') {
    throw new hdlm.HdlmArgumentError("Expected no prompt for --sampler nar/sar (upstream's gamma samplers are unconditional) but received " + JSON.stringify(promptText));
  }
  return sampler;
}

interface Layout {
  prompt: number[];
  fixed: Lib.FixedSpan[];
  /** set by --template (its length); else the flag's or the model's */
  contextLength: number | undefined;
}

/** The prompt and the fixed spans of --suffix / --template, in tokens. */
function infillLayout(hdlm: typeof Lib, model: Lib.HdlmModel, sampler: Sampler, promptText: string, flags: SamplingFlags, values: Values): Layout {
  const prompt = hdlm.tokenizer.encode(promptText);
  const suffix = str(values, 'suffix');
  const template = str(values, 'template');
  if ((suffix !== undefined || template !== undefined) && sampler !== 'full' && sampler !== 'semi') {
    throw new hdlm.HdlmArgumentError(`Expected --sampler full or semi with --${template !== undefined ? 'template' : 'suffix'} (fixed tokens need an epsilon model's full_diff / semi_diff) but the sampler is ${sampler}`);
  }
  if (template !== undefined) {
    const parts = hdlm.parseTemplate(template);
    if (!parts.some((p) => typeof p === 'number')) throw new hdlm.HdlmArgumentError('Expected at least one {{N}} gap in --template but received ' + JSON.stringify(template));
    const fixed: Lib.FixedSpan[] = [];
    let at = 0;
    for (const p of parts) {
      if (typeof p === 'number') {
        at += p;
      } else {
        const ids = hdlm.tokenizer.encode(p);
        if (ids.length > 0) fixed.push({ at, tokens: ids });
        at += ids.length;
      }
    }
    if (at > model.length) throw new hdlm.HdlmArgumentError(`Expected a --template of at most ${model.length} tokens (the model's length) but received ${at}`);
    return { prompt: [], fixed, contextLength: at };
  }
  if (suffix !== undefined && suffix !== '') {
    const ids = hdlm.tokenizer.encode(suffix);
    const contextLength = flags.contextLength ?? model.length;
    if (prompt.length + ids.length > contextLength) {
      throw new hdlm.HdlmArgumentError(`Expected a prompt and --suffix within the context length (${contextLength} tokens) but received ${prompt.length} + ${ids.length} tokens`);
    }
    return { prompt, fixed: [{ at: contextLength - ids.length, tokens: ids }], contextLength: flags.contextLength };
  }
  return { prompt, fixed: [], contextLength: flags.contextLength };
}

/** Runs the sampler with a progress bar (or the live view, drawn from streamDiff); resolves to the rows and the number of steps run. */
async function sample(
  hdlm: typeof Lib, loaded: Lib.LoadedModel, sampler: Sampler, layout: Layout, flags: SamplingFlags, values: Values,
): Promise<{ rows: number[][]; steps: number }> {
  const { model, metaschedule } = loaded;
  const { prompt, fixed } = layout;
  const contextLength = layout.contextLength ?? model.length;
  // The gamma samplers and semi-shifted take their steps from the metaschedule.
  const fromSchedule = GAMMA_SAMPLERS.includes(sampler) || sampler === 'semi-shifted';
  const steps = fromSchedule ? (metaschedule ? metaschedule.maxStep(contextLength) - 1 : 0) : flags.steps ?? Math.max(1, Math.min(512, contextLength));

  const special = values.special === true;
  const live = values['show-steps'] && process.stdout.isTTY ? new LiveView(process.stdout) : null;
  if (live) onClear(() => live.clear());
  const bar = live ? null : stderrProgress('denoising', null, 'step');
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
  const common = {
    model, contextLength: layout.contextLength, batchSize: flags.batchSize, seed: flags.seed, signal: interrupt.signal,
    onStep: live || bar?.active ? onStep : undefined, stepTokens: live ? true : undefined,
  };
  const epsilon = { ...common, prompt, alg: flags.alg, steps, temperature: flags.temperature, cfgScale: flags.cfgScale };
  if (interrupt.signal.aborted) throw new hdlm.AbortError('interrupted while loading the model');
  if (sampler === 'semi-shifted' && flags.steps !== undefined) {
    throw new hdlm.HdlmArgumentError('--steps does not apply to --sampler semi-shifted (the metaschedule sets the steps)');
  }
  if ((sampler === 'full-shifted' || sampler === 'semi-shifted') && flags.eta !== undefined) {
    throw new hdlm.HdlmArgumentError(`--eta does not apply to --sampler ${sampler} (upstream fixes it at 0.015)`);
  }

  interrupt.abortable = true;
  try {
    let rows: number[][];
    if ((sampler === 'full' || sampler === 'semi') && live) {
      // the live view draws the denoising from the stream (frames coalesce if drawing lags)
      const { onStep: _drop, stepTokens: _tokens, ...rest } = epsilon;
      void _drop;
      void _tokens;
      const stream = hdlm.streamDiff({
        ...rest, fixed, eta: flags.eta, sampler: sampler === 'full' ? 'fullDiff' : 'semiDiff', blockSize: sampler === 'semi' ? flags.blockSize : undefined,
      });
      for await (const frame of stream) onStep({ step: frame.step, total: frame.total, tokens: frame.tokens });
      rows = await stream.result;
    } else if (sampler === 'full') rows = await hdlm.fullDiff({ ...epsilon, fixed, eta: flags.eta });
    else if (sampler === 'semi') rows = await hdlm.semiDiff({ ...epsilon, fixed, eta: flags.eta, blockSize: flags.blockSize });
    else if (sampler === 'full-shifted') rows = await hdlm.fullDiffShifted(epsilon);
    else if (sampler === 'semi-shifted') rows = await hdlm.semiDiffShifted({ ...common, prompt, alg: flags.alg, temperature: flags.temperature, cfgScale: flags.cfgScale });
    else rows = await hdlm.gammaSample({ ...common, samplingMethod: sampler === 'sar' ? 'SAR' : 'NAR' });
    return { rows, steps };
  } finally {
    interrupt.abortable = false;
    bar?.done();
    live?.clear();
  }
}

export const generateCommand: Command = { help: HELP, run };
