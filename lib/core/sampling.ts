/**
 * `fullDiff`, `semiDiff`, `fullDiffShifted`, `semiDiffShifted`: upstream's epsilon samplers
 * (hdlm/epsilon_hybrid/sample.py `full_diff`, `semi_diff`, `full_diff_shifted`,
 * `semi_diff_shifted`) with the same parameters in camelCase. The loop runs natively on a worker
 * thread; this file only validates options, applies defaults and shapes the result.
 */
import { randomBytes } from 'crypto';
import type { NativeAlgorithm, NativeJob, NativeSampleOptions, NativeStepCallback } from '../binding';
import { AbortError, HdlmArgumentError, HdlmError, invalidParameterError } from '../errors';
import { CallbackGuard } from '../callbacks';
import { HdlmModel, toHdlmError } from './model';
import { MAX_LOGITS_ELEMENTS, checkCallMemory } from './memory';
import * as v from '../validate';
import { batchable, runBatched } from './batcher';
import { BLOCK_ATTENTION, CONTEXT_ATTENTION, Metaschedule, createMetaschedule, type BlockAttention, type ContextAttention } from './metaschedule';

export const ALGORITHMS = ['original', 'acs', 'remask', 'remask_adhoc_shuffle', 'remdm'] as const;
export type Algorithm = NativeAlgorithm;

export interface StepInfo {
  /** steps done so far (1-based) */
  step: number;
  /** steps in the whole call (semiDiff: blocks × steps) */
  total: number;
  /** the current tokens, one row per sample, when `stepTokens` is true; else null */
  tokens: number[][] | null;
}

/**
 * Tokens held fixed at `at`, `at` + 1, … (infilling): never masked, selected, re-masked or
 * resampled by any algorithm. One row (for every sample) or one row per sample.
 */
export interface FixedSpan {
  at: number;
  tokens: ArrayLike<number> | ArrayLike<number>[];
}

export interface FullDiffOptions {
  /** the model from smartModelLoader */
  model: HdlmModel;
  /**
   * tokens held fixed anywhere in the context (a suffix, spans in the middle); the model
   * conditions on them and samples the rest. Spans must not overlap each other or the prompt,
   * must end within contextLength, and must not hold the mask id. Without a prompt, a span at
   * position 0 is the prompt (upstream's prompt path, same tokens as with `prompt`). semiDiff
   * sees a fixed token once its block is reached (the model sees the prefix only).
   */
  fixed?: readonly FixedSpan[] | null;
  /** token ids kept at the start of every sample: one row (repeated batchSize times) or one row per sample */
  prompt?: ArrayLike<number> | ArrayLike<number>[] | null;
  /** samples to draw (default 1; with a prompt of several rows, the number of rows) */
  batchSize?: number;
  /** 'original' | 'acs' | 'remask' | 'remask_adhoc_shuffle' | 'remdm' (default 'original') */
  alg?: Algorithm;
  /** denoising steps (default 512); semiDiff: steps per block */
  steps?: number;
  /** sampling temperature, >= 0 (0 = greedy) (default 1) */
  temperature?: number;
  /** classifier-free guidance scale (default 0 = off); > 0 needs a prompt */
  cfgScale?: number;
  /** tokens per sample, prompt included (default: the model's length, 1024 for the released models) */
  contextLength?: number;
  /** last time of the grid linspace(1, eps, steps + 1) (default 1e-5) */
  eps?: number;
  /** the mask token id (upstream `dim`; default the model's mask id) */
  dim?: number;
  /** correction rate of 'acs' / 'remask_adhoc_shuffle' and cap of 'remdm' (default 0.015; semiDiff 0.01) */
  eta?: number;
  /** random seed, as torch.manual_seed (default: a random one) */
  seed?: number | bigint;
  /** stops the call at the next step; the promise rejects with an AbortError */
  signal?: AbortSignal;
  /** called after every step (with `stepEvery`: every stepEvery-th step and the last) */
  onStep?: (info: StepInfo) => void;
  /** pass the current tokens to onStep (costs a copy at each step onStep sees) */
  stepTokens?: boolean;
  /**
   * onStep sees every stepEvery-th step and the last one only (default 1: every step). Fewer
   * steps seen cost less: no token copy at the others, and in the batched sampler (fullDiff) the
   * native loop runs the steps between two seen ones without returning to JavaScript.
   */
  stepEvery?: number;
  /** accepted for parity with upstream; must name the model's device (or 'auto') */
  device?: string;
  /**
   * true: reference mode — upstream's exact computation and random stream (on CUDA with the
   * same seed, the same tokens as upstream). false: fast mode — the same algorithms and the
   * same distribution, faster (forward skipped when nothing changed, output head only on the
   * sampled rows, bf16 and CUDA graphs on CUDA), another random stream.
   * Default: false (fast), except for TorchScript modules not built by hdlm.
   */
  reference?: boolean;
}

export interface FullDiffCallOptions extends FullDiffOptions {
  /**
   * true (default: the model's `batching`, itself true unless turned off): a fast-mode call
   * without guidance ('original' or 'acs'; on CUDA every algorithm) runs in the model's running
   * batch, one batched forward per step shared with the other such calls running at the same
   * time; it joins at the next step and leaves when it ends. Its tokens depend only on its own
   * options (same seed, same tokens, alone or batched); with 'original' or 'acs' they are another
   * random stream than a call run alone with `batching: false`, with the other algorithms the
   * same one. false: the call runs on its own.
   */
  batching?: boolean;
}

export interface SemiDiffOptions extends FullDiffOptions {
  /** tokens per semi-autoregressive block (default 16) */
  blockSize?: number;
}

export interface SemiDiffCallOptions extends SemiDiffOptions {
  /**
   * As fullDiff's: on CUDA a fast-mode call without guidance runs in the model's running batch
   * (a step's forward shared with the calls that see a prefix of the same length), with the
   * random stream of a lone call; on the CPU semiDiff calls run alone.
   */
  batching?: boolean;
}

export { MAX_LOGITS_ELEMENTS };

/** Options of `fullDiffShifted` (upstream full_diff_shifted): `eta` is not a parameter there (fixed 0.015). */
export interface FullDiffShiftedOptions extends Omit<FullDiffOptions, 'eta'> {
  /** divides each masked row's logits by 1 + (rp − 1)·freq/max(freq) from the second step on (default 1.2) */
  repetitionPenalty?: number;
  /** written at position 0 before the prompt (upstream hard-codes GPT-2's EOS, 50256) */
  bosId?: number;
}

/** Options of `semiDiffShifted` (upstream semi_diff_shifted): no `steps` (the metaschedule sets them). */
export interface SemiDiffShiftedOptions extends Omit<FullDiffShiftedOptions, 'steps' | 'dim'> {
  /** upstream `metaschedule` (default: the model's, as smartModelLoader returns it) */
  metaschedule?: Metaschedule | null;
  /** upstream annealing.attention.context_type (default: the model config's, else 'block_causal') */
  contextAttention?: ContextAttention;
  /** upstream annealing.attention.block_type (default: the model config's, else 'full') */
  blockAttention?: BlockAttention;
  /** the mask token id (upstream `mask_token_id`; default the model's mask id) */
  maskTokenId?: number;
}

const FULL_KEYS = [
  'model', 'prompt', 'batchSize', 'alg', 'steps', 'temperature', 'cfgScale', 'contextLength', 'eps', 'dim',
  'eta', 'seed', 'signal', 'onStep', 'stepTokens', 'stepEvery', 'device', 'reference', 'fixed',
] as const;
const SEMI_KEYS = [...FULL_KEYS, 'blockSize'] as const;
const FULL_CALL_KEYS = [...FULL_KEYS, 'batching'] as const;
const SEMI_CALL_KEYS = [...SEMI_KEYS, 'batching'] as const;
const FULL_SHIFTED_KEYS = [...FULL_KEYS.filter((k) => k !== 'eta'), 'repetitionPenalty', 'bosId'] as const;
const SEMI_SHIFTED_KEYS = [
  ...FULL_SHIFTED_KEYS.filter((k) => k !== 'steps' && k !== 'dim'), 'metaschedule', 'contextAttention', 'blockAttention', 'maskTokenId',
] as const;

/** @internal The option names of fullDiff ('full') and semiDiff ('semi'). */
export function samplerKeys(mode: 'full' | 'semi'): readonly string[] {
  return mode === 'full' ? FULL_KEYS : SEMI_KEYS;
}

/** Shifted (next-token) algorithms: semi_diff_shifted cannot run remask_adhoc_shuffle upstream (it raises a shape error). */
export const SHIFTED_ALGORITHMS = ALGORITHMS;
export const SEMI_SHIFTED_ALGORITHMS = ['original', 'acs', 'remask', 'remdm'] as const;

/** Upstream `full_diff`: every position denoised together over `steps` steps. Resolves to one row of ids per sample. */
export function fullDiff(options: FullDiffCallOptions): Promise<number[][]> {
  return run('fullDiff', 'full', options as SemiDiffOptions, FULL_CALL_KEYS);
}

/** Upstream `semi_diff`: blocks of `blockSize` tokens, left to right, `steps` steps each; the model sees the prefix only. */
export function semiDiff(options: SemiDiffCallOptions): Promise<number[][]> {
  return run('semiDiff', 'semi', options, SEMI_CALL_KEYS);
}

/**
 * Upstream `full_diff_shifted`, for next-token ("shifted", training `type: shifted`) models: the
 * model at position l predicts the token at l + 1; BOS at position 0, then the prompt; repetition
 * penalty from the second step. Algorithms as upstream: 'acs' is identical to 'original' there;
 * 'remask_adhoc_shuffle' re-draws shuffled tokens from the first rows of the masked positions'
 * logits, as upstream does.
 */
export function fullDiffShifted(options: FullDiffShiftedOptions): Promise<number[][]> {
  return run('fullDiffShifted', 'full_shifted', options as SemiDiffOptions, FULL_SHIFTED_KEYS);
}

/**
 * Upstream `semi_diff_shifted`: next-token sampling driven by a metaschedule, with the
 * autoregressive attention masks (compute_t_and_attn_autoregressive). One model call per
 * metaschedule step that has masked active positions.
 */
export function semiDiffShifted(options: SemiDiffShiftedOptions): Promise<number[][]> {
  return run('semiDiffShifted', 'semi_shifted', options as SemiDiffOptions, SEMI_SHIFTED_KEYS);
}

export type SamplerMode = NativeSampleOptions['mode'];

/**
 * The rule of each sampler option whose check needs no model (same messages wherever it runs).
 * prepareSampling applies them in its own order; checkSamplerOptions applies them before a model
 * is there, so that a caller holding options from a user (the CLI) can refuse a typo before a
 * long load.
 */
export const OPTION_RULES = {
  alg: (x: unknown, mode: SamplerMode): Algorithm => v.oneOf('alg', x, mode === 'semi_shifted' ? SEMI_SHIFTED_ALGORITHMS : ALGORITHMS),
  steps: (x: unknown): number => v.integer('steps', x, 1, 1_000_000),
  temperature: (x: unknown): number => {
    const t = v.finiteNumber('temperature', x, 0);
    if (t > 0 && t < MIN_TEMPERATURE) {
      throw invalidParameterError('temperature', `0 (greedy) or a finite number >= ${MIN_TEMPERATURE} (float32 logits divided by less overflow)`, x);
    }
    return t;
  },
  cfgScale: (x: unknown): number => v.finiteNumber('cfgScale', x, 0, MAX_CFG_SCALE),
  batchSize: (x: unknown): number => v.integer('batchSize', x, 1, 65536),
  eps: (x: unknown): number => {
    const eps = v.finiteNumber('eps', x, 0, 1, true);
    if (eps >= 1) throw invalidParameterError('eps', 'a finite number > 0 and < 1', x);
    return eps;
  },
  eta: (x: unknown): number => v.finiteNumber('eta', x, 0),
  repetitionPenalty: (x: unknown): number => v.finiteNumber('repetitionPenalty', x, 0),
  seed: (x: unknown): bigint => v.seed('seed', x),
};

/** Smallest positive temperature: the logits are float32, and dividing them by less overflows (any smaller one samples greedily anyway). */
export const MIN_TEMPERATURE = 1e-6;
/** Largest guidance scale: (1 + w)·cond − w·uncond must stay finite in float32. */
export const MAX_CFG_SCALE = 1e6;

/** remdm's eta caps σ, the probability of drawing the mask: above 1 its distribution has negative mass. */
export function checkEtaForAlg(alg: Algorithm, eta: number, given: unknown): void {
  if (alg === 'remdm' && eta > 1) throw invalidParameterError('eta', "a number in [0, 1] with alg 'remdm' (it caps σ, a probability)", given);
}

/**
 * Checks the options of sampler `mode` that can be checked without a model: the rules above, and
 * contextLength / blockSize as integers >= 1 (their upper bounds come from the model). Undefined
 * options are skipped. The sampler checks everything again, with the model's limits.
 */
export function checkSamplerOptions(mode: SamplerMode, options: Record<string, unknown>): void {
  const rules: Record<string, (x: unknown) => unknown> = {
    ...OPTION_RULES,
    alg: (x) => OPTION_RULES.alg(x, mode),
    contextLength: (x) => v.integer('contextLength', x, 1),
    blockSize: (x) => v.integer('blockSize', x, 1),
  };
  v.rejectUnknownKeys('checkSamplerOptions', options, Object.keys(rules));
  for (const [key, value] of Object.entries(options)) {
    if (v.isDefined(value)) rules[key](value);
  }
  if (v.isDefined(options.alg) && v.isDefined(options.eta)) checkEtaForAlg(options.alg as Algorithm, options.eta as number, options.eta);
}

interface Prepared {
  model: HdlmModel;
  native: NativeSampleOptions;
  signal: AbortSignal | null;
  onStep: ((info: StepInfo) => void) | null;
  /** fullDiff: run in the model's batch when the batched sampler can */
  batching: boolean;
}

/** Validates and fills defaults; throws HdlmArgumentError naming the first bad option. */
export function prepareSampling(fnName: string, mode: SamplerMode, options: unknown, keys: readonly string[]): Prepared {
  if (!v.isPlainObject(options)) throw invalidParameterError(`${fnName} options`, 'an object', options);
  v.rejectUnknownKeys(fnName, options, keys);
  const o = options as unknown as SemiDiffCallOptions & SemiDiffShiftedOptions;
  const shifted = mode === 'full_shifted' || mode === 'semi_shifted';
  if (!(o.model instanceof HdlmModel)) throw invalidParameterError('model', 'an HdlmModel from smartModelLoader', o.model);
  const model = o.model;
  model.native(); // throws if disposed
  if (model.family !== 'epsilon_hybrid') {
    throw new HdlmError('HDLM_UNSUPPORTED', `${fnName} is an epsilon_hybrid sampler; this is a ${model.family} model (use gammaSample)`);
  }

  if (shifted && v.isDefined(o.fixed) && !(Array.isArray(o.fixed) && o.fixed.length === 0)) {
    throw new HdlmError('HDLM_UNSUPPORTED', `${fnName} does not take fixed tokens: a next-token sampler writes position l + 1 from l, so only a prefix (prompt) fits it; use fullDiff or semiDiff to infill`);
  }
  const spans = v.isDefined(o.fixed) ? readFixedSpans(o.fixed, model.vocabSize) : [];
  let promptSource: unknown = o.prompt;
  let promptName = 'prompt';
  // Without a prompt, a span at 0 is the prompt: upstream's prompt path, token for token.
  if (!v.isDefined(o.prompt) && spans.length > 0 && spans[0].at === 0) {
    promptSource = spans[0].source;
    promptName = 'fixed[0].tokens';
    spans.shift();
  }
  let prompt: Int32Array | null = null;
  let promptRows = 0;
  let promptLength = 0;
  if (v.isDefined(promptSource)) {
    const rows = v.tokenRows(promptName, promptSource, model.vocabSize);
    if (rows.cols > 0) {
      prompt = rows.data;
      promptRows = rows.rows;
      promptLength = rows.cols;
    }
  }
  const batchSize = v.isDefined(o.batchSize) ? OPTION_RULES.batchSize(o.batchSize) : promptRows > 1 ? promptRows : 1;
  if (promptRows > 1 && batchSize !== promptRows) {
    throw invalidParameterError('batchSize', `${promptRows} (the number of prompt rows) or nothing`, o.batchSize);
  }
  if (prompt && promptRows === 1 && batchSize > 1) {
    const repeated = new Int32Array(batchSize * promptLength);
    for (let b = 0; b < batchSize; b++) repeated.set(prompt, b * promptLength);
    prompt = repeated;
  }
  const alg = v.isDefined(o.alg) ? OPTION_RULES.alg(o.alg, mode) : 'original';
  const steps = v.isDefined(o.steps) ? OPTION_RULES.steps(o.steps) : 512;
  const temperature = v.isDefined(o.temperature) ? OPTION_RULES.temperature(o.temperature) : 1.0;
  const cfgScale = v.isDefined(o.cfgScale) ? OPTION_RULES.cfgScale(o.cfgScale) : 0;
  // upstream's shifted samplers run guidance without a prompt too (the two halves are then equal)
  if (cfgScale > 0 && !prompt && !shifted) throw invalidParameterError('prompt', 'a non-empty prompt when cfgScale > 0 (guidance contrasts with and without it)', o.prompt);
  // the prompt against the model first: "an integer between 375 and 256 for contextLength" helps nobody
  if (promptLength > model.length) {
    throw invalidParameterError('prompt', `at most ${model.length} tokens (the model's length)`, `${promptLength} tokens`);
  }
  const contextLength = v.isDefined(o.contextLength)
    ? v.integer('contextLength', o.contextLength, Math.max(1, promptLength), model.length)
    : model.length;
  if (promptLength > contextLength) {
    throw invalidParameterError('prompt', `at most contextLength (${contextLength}) tokens`, o.prompt);
  }
  const fixed = layFixedSpans(spans, batchSize, contextLength, promptLength);
  // One step's logits are batch × contextLength × vocab floats (twice that with guidance): refuse
  // what could only end in an out-of-memory kill instead of an error.
  const logitsElements = batchSize * (cfgScale > 0 ? 2 : 1) * contextLength * model.vocabSize;
  if (logitsElements > MAX_LOGITS_ELEMENTS) {
    throw invalidParameterError(
      'batchSize',
      `at most ${Math.max(1, Math.floor(MAX_LOGITS_ELEMENTS / ((cfgScale > 0 ? 2 : 1) * contextLength * model.vocabSize)))} at contextLength ${contextLength} ` +
        `(batchSize × contextLength × vocabSize logits must stay within ${MAX_LOGITS_ELEMENTS} floats)`,
      batchSize,
    );
  }
  const eps = v.isDefined(o.eps) ? OPTION_RULES.eps(o.eps) : 1e-5;
  const maskId = mode === 'semi_shifted'
    ? v.isDefined(o.maskTokenId) ? v.integer('maskTokenId', o.maskTokenId, 0, model.vocabSize - 1) : model.maskId
    : v.isDefined(o.dim) ? v.integer('dim', o.dim, 0, model.vocabSize - 1) : model.maskId;
  if (fixed) {
    const at = fixed.indexOf(maskId);
    if (at >= 0) throw invalidParameterError('fixed', `tokens other than the mask id ${maskId} (sample ${Math.floor(at / contextLength)}, position ${at % contextLength})`, maskId);
  }
  const repetitionPenalty = v.isDefined(o.repetitionPenalty) ? OPTION_RULES.repetitionPenalty(o.repetitionPenalty) : 1.2;
  const bosId = v.isDefined(o.bosId) ? v.integer('bosId', o.bosId, 0, model.vocabSize - 1) : 50256;
  if (shifted && bosId >= model.vocabSize) {
    throw new HdlmArgumentError(
      `Expected a bosId below the model's vocabulary size ${model.vocabSize} for bosId but received none: its default, 50256 ` +
        "(GPT-2's <|endoftext|>, which upstream hard-codes), is not in this model's vocabulary; pass this model's BOS id",
    );
  }
  let metaschedule: Metaschedule | null = null;
  let contextAttention: ContextAttention = 'block_causal';
  let blockAttention: BlockAttention = 'full';
  if (mode === 'semi_shifted') {
    if (v.isDefined(o.metaschedule)) {
      if (!(o.metaschedule instanceof Metaschedule)) throw invalidParameterError('metaschedule', 'a Metaschedule (smartModelLoader, makeBlockAnnealing, ...)', o.metaschedule);
      metaschedule = o.metaschedule;
    } else {
      metaschedule = createMetaschedule(model.config, model.length);
    }
    if (!metaschedule) throw invalidParameterError('metaschedule', "a Metaschedule (the model's config names none)", o.metaschedule);
    if (metaschedule.tau < 2) throw invalidParameterError('metaschedule', 'a schedule with tau >= 2', metaschedule.toString());
    const annealing = v.isPlainObject(model.config.annealing) ? model.config.annealing : {};
    const attention = v.isPlainObject(annealing.attention) ? annealing.attention : {};
    contextAttention = v.isDefined(o.contextAttention)
      ? v.oneOf('contextAttention', o.contextAttention, CONTEXT_ATTENTION)
      : (CONTEXT_ATTENTION as readonly unknown[]).includes(attention.context_type) ? (attention.context_type as ContextAttention) : 'block_causal';
    blockAttention = v.isDefined(o.blockAttention)
      ? v.oneOf('blockAttention', o.blockAttention, BLOCK_ATTENTION)
      : (BLOCK_ATTENTION as readonly unknown[]).includes(attention.block_type) ? (attention.block_type as BlockAttention) : 'full';
    if (metaschedule.type === 'hybrid' && metaschedule.length < contextLength - 1) {
      throw invalidParameterError('contextLength', `at most the hybrid metaschedule's length + 1 (${metaschedule.length + 1})`, o.contextLength);
    }
  }
  const eta = v.isDefined(o.eta) ? OPTION_RULES.eta(o.eta) : mode === 'semi' ? 0.01 : 0.015;
  checkEtaForAlg(alg, eta, o.eta);
  const blockSize = mode === 'semi' && v.isDefined(o.blockSize) ? v.integer('blockSize', o.blockSize, 1, contextLength) : 16;
  const seed = v.isDefined(o.seed) ? OPTION_RULES.seed(o.seed) : randomBytes(8).readBigUInt64LE();
  const signal = v.isDefined(o.signal) ? v.abortSignal('signal', o.signal) : null;
  const onStep = v.isDefined(o.onStep) ? v.fn<(info: StepInfo) => void>('onStep', o.onStep) : null;
  const stepTokens = v.isDefined(o.stepTokens) ? v.boolean('stepTokens', o.stepTokens) : false;
  const stepEvery = v.isDefined(o.stepEvery) ? v.integer('stepEvery', o.stepEvery, 1) : 1;
  if (v.isDefined(o.device)) checkDevice(o.device, model);
  // Fast mode needs hdlm's own module layout; the shifted samplers run in reference mode only.
  const foreign = model.precision === 'module';
  const reference = v.isDefined(o.reference) ? v.boolean('reference', o.reference) : foreign || shifted;
  if (!reference && foreign) {
    throw invalidParameterError('reference', 'true for a TorchScript module not built by hdlm (fast mode needs the hdlm layout)', o.reference);
  }
  if (!reference && shifted) throw invalidParameterError('reference', 'true (or nothing) for the shifted samplers, which have no fast mode', o.reference);

  const batching = v.isDefined(o.batching) ? v.boolean('batching', o.batching) : model.batching;
  // the peak measured per row (guidance included) for this mode; refused before anything is allocated
  const remaskFamily = alg === 'remask' || alg === 'remask_adhoc_shuffle' || alg === 'remdm';
  checkCallMemory(fnName, model.device, !reference ? 'fast' : remaskFamily ? 'referenceRemask' : 'reference', batchSize, contextLength, model.vocabSize);

  return {
    model,
    signal,
    onStep,
    batching,
    native: {
      mode, alg, prompt, promptLength, fixed, batchSize, steps, temperature, cfgScale, contextLength, eps, maskId, eta,
      blockSize, seed, stepTokens: stepTokens && onStep !== null, stepEvery, reference, repetitionPenalty, bosId,
      metaschedule: metaschedule ? metaschedule.nativeSpec() : null, contextAttention, blockAttention,
    },
  };
}

interface ReadSpan {
  at: number;
  source: unknown;
  rows: Int32Array[];
  index: number;
}

/** Reads `fixed` into spans sorted by position (shape checks against the context come later). */
function readFixedSpans(value: unknown, vocabSize: number): ReadSpan[] {
  if (!Array.isArray(value)) throw invalidParameterError('fixed', 'an array of { at, tokens } spans', value);
  const spans = value.map((span: unknown, i): ReadSpan => {
    if (!v.isPlainObject(span)) throw invalidParameterError(`fixed[${i}]`, 'an object { at, tokens }', span);
    v.rejectUnknownKeys(`fixed[${i}]`, span, ['at', 'tokens']);
    const at = v.integer(`fixed[${i}].at`, span.at, 0);
    const t = v.tokenRows(`fixed[${i}].tokens`, span.tokens, vocabSize);
    const rows: Int32Array[] = [];
    for (let r = 0; r < t.rows; r++) rows.push(t.data.subarray(r * t.cols, (r + 1) * t.cols));
    return { at, source: span.tokens, rows, index: i };
  });
  const nonEmpty = spans.filter((s) => s.rows[0].length > 0).sort((a, b) => a.at - b.at);
  for (let k = 1; k < nonEmpty.length; k++) {
    const prev = nonEmpty[k - 1];
    const end = prev.at + prev.rows[0].length;
    if (nonEmpty[k].at < end) {
      throw invalidParameterError(`fixed[${nonEmpty[k].index}].at`, `a position not inside fixed[${prev.index}] (positions ${prev.at} to ${end - 1}): spans must not overlap`, nonEmpty[k].at);
    }
  }
  return nonEmpty;
}

/** The native layout of the fixed spans: batchSize × contextLength, −1 where free; null if none. */
function layFixedSpans(spans: ReadSpan[], batchSize: number, contextLength: number, promptLength: number): Int32Array | null {
  if (spans.length === 0) return null;
  const out = new Int32Array(batchSize * contextLength).fill(-1);
  for (const span of spans) {
    const len = span.rows[0].length;
    if (span.at < promptLength) {
      throw invalidParameterError(`fixed[${span.index}].at`, `a position at or after the prompt's end (${promptLength}): spans must not overlap the prompt`, span.at);
    }
    if (span.at + len > contextLength) {
      throw invalidParameterError(`fixed[${span.index}]`, `a span within contextLength (${contextLength}), ending at position ${contextLength - 1} at the latest`, `${len} tokens at ${span.at}`);
    }
    if (span.rows.length !== 1 && span.rows.length !== batchSize) {
      throw invalidParameterError(`fixed[${span.index}].tokens`, `one row or batchSize (${batchSize}) rows`, `${span.rows.length} rows`);
    }
    for (let b = 0; b < batchSize; b++) out.set(span.rows[span.rows.length === 1 ? 0 : b], b * contextLength + span.at);
  }
  return out;
}

export function checkDevice(device: unknown, model: HdlmModel): void {
  const name = v.nonEmptyString('device', device);
  const ok = name === 'auto' || name === model.device || (name === 'cuda' && model.device.startsWith('cuda:'));
  if (!ok) throw invalidParameterError('device', `'auto' or the model's device ('${model.device}')`, device);
}

function rowsOf(flat: Int32Array, batch: number, length: number): number[][] {
  const rows: number[][] = [];
  for (let b = 0; b < batch; b++) rows.push(Array.from(flat.subarray(b * length, (b + 1) * length)));
  return rows;
}

async function run(fnName: string, mode: SamplerMode, options: SemiDiffOptions, keys: readonly string[]): Promise<number[][]> {
  const { model, native, signal, onStep, batching } = prepareSampling(fnName, mode, options, keys);
  if (batching && batchable(native, model.device)) return runBatched(fnName, model, native, signal, onStep);
  return runNativeJob(fnName, model, (step) => model.native().sample(native, step), native.batchSize, native.contextLength, signal, onStep);
}

/**
 * @internal Starts a native sampling job and turns it into a promise of rows: wires onStep and
 * the AbortSignal, and maps native failures to HdlmError (HDLM_ABORTED → AbortError). An onStep
 * that throws or rejects stops the loop at its next step; the call rejects with HDLM_CALLBACK.
 */
export async function runNativeJob(
  fnName: string,
  model: HdlmModel,
  start: (step: NativeStepCallback | null) => NativeJob<Int32Array>,
  batchSize: number,
  contextLength: number,
  signal: AbortSignal | null,
  onStep: ((info: StepInfo) => void) | null,
): Promise<number[][]> {
  if (signal?.aborted) throw new AbortError(`${fnName} was aborted before it started`, { cause: signal.reason });
  // A failing onStep stops the loop at its next step and the call rejects with the callback's error.
  let job: NativeJob<Int32Array> | null = null;
  const guard = onStep ? new CallbackGuard('onStep', onStep, () => job?.abort()) : null;
  const step = guard
    ? (done: number, total: number, tokens: Int32Array | null) =>
        guard.call({ step: done, total, tokens: tokens ? rowsOf(tokens, batchSize, contextLength) : null })
    : null;
  try {
    job = start(step);
  } catch (e) {
    throw toHdlmError(e);
  }
  const started = job;
  const onAbort = () => started.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const flat = await model.track(started.promise);
    await guard?.drain();
    guard?.throwIfFailed();
    return rowsOf(flat, batchSize, contextLength);
  } catch (e) {
    guard?.throwIfFailed();
    const err = toHdlmError(e);
    if (err.code === 'HDLM_ABORTED') {
      const { stepsDone, stepsAtAbort } = e as { stepsDone?: number; stepsAtAbort?: number };
      throw new AbortError(`${fnName} was aborted after ${stepsDone ?? 0} of its steps`, { cause: signal?.reason ?? e, stepsDone, stepsAtAbort });
    }
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
