/**
 * The gamma-hybrid samplers: upstream hdlm/gamma_hybrid/sampling.py `get_sa_sampling_fn` (the
 * non-autoregressive "NAR" sampler) and hdlm/gamma_hybrid/sampling_sar.py (its semi-autoregressive
 * "SAR" variant, same name upstream). Both run the analytic (Tweedie) predictor with the model's
 * graph (QGamma or absorb) and log-linear noise (graph_lib.py, noise_lib.py), one step per
 * metaschedule step. The loop runs natively; this file validates options and holds policy
 * (defaults from the checkpoint config, as upstream's hdlm/eval_generation.py reads them).
 */
import { randomBytes } from 'crypto';
import type { NativeGammaSampleOptions } from '../binding';
import { HdlmError, invalidParameterError } from '../errors';
import { BLOCK_ATTENTION, CONTEXT_ATTENTION, Metaschedule, createMetaschedule, type BlockAttention, type ContextAttention } from './metaschedule';
import { HdlmModel } from './model';
import { checkCallMemory, checkLogitsCap } from './memory';
import { OPTION_RULES, checkDevice, runNativeJob, type StepInfo } from './sampling';
import * as v from '../validate';

export const SAMPLING_METHODS = ['NAR', 'SAR'] as const;
export type SamplingMethod = (typeof SAMPLING_METHODS)[number];

export interface GammaSampleOptions {
  /** a gamma_hybrid model from smartModelLoader */
  model: HdlmModel;
  /**
   * upstream `meta_schedule` (default: the model's, as smartModelLoader returns it: from
   * annealing.type / width / eval_tau)
   */
  metaschedule?: Metaschedule | null;
  /** 'NAR' (sampling.py, default) or 'SAR' (sampling_sar.py: the model sees only the growing window) */
  samplingMethod?: SamplingMethod;
  /** samples (upstream batch_dims[0]; default 1) */
  batchSize?: number;
  /** tokens per sample (upstream batch_dims[1]; default and maximum: the model's length) */
  contextLength?: number;
  /** upstream `eps` (default annealing.sampling_eps, else 1e-4); level ℓ sits at time 10·eps + ℓ·Δ */
  eps?: number;
  /** attention among settled tokens (default annealing.attention.context_type, else 'block_causal') */
  contextAttention?: ContextAttention;
  /** attention among active tokens (default annealing.attention.block_type, else 'full') */
  blockAttention?: BlockAttention;
  /** upstream config.sampling.predictor: only 'analytic' runs upstream (default: the config's, else 'analytic') */
  predictor?: 'analytic';
  /** seeds the limit sample (CPU generator) and the per-step draws (as torch.manual_seed; default random) */
  seed?: number | bigint;
  signal?: AbortSignal;
  /** called after every metaschedule step (total = maxStep − 1) */
  onStep?: (info: StepInfo) => void;
  /** pass the current tokens to onStep; SAR: positions beyond the window show their limit sample */
  stepTokens?: boolean;
  /** onStep sees every stepEvery-th step and the last one only (default 1: every step) */
  stepEvery?: number;
  /** accepted for parity with upstream; must name the model's device (or 'auto') */
  device?: string;
}

const KEYS = [
  'model', 'metaschedule', 'samplingMethod', 'batchSize', 'contextLength', 'eps', 'contextAttention', 'blockAttention',
  'predictor', 'seed', 'signal', 'onStep', 'stepTokens', 'stepEvery', 'device', 'fixed',
] as const;

function section(cfg: Record<string, unknown>, key: string): Record<string, unknown> {
  const s = cfg[key];
  return v.isPlainObject(s) ? s : {};
}

/**
 * Upstream's gamma sampler (get_sa_sampling_fn, NAR or SAR) run on `model`. Resolves to one row
 * of `contextLength` ids per sample. Every position ends unmasked when the schedule's last step
 * denoises everything (block / hybrid / simple annealing all end at level 0).
 */
export async function gammaSample(options: GammaSampleOptions): Promise<number[][]> {
  const fnName = 'gammaSample';
  if (!v.isPlainObject(options)) throw invalidParameterError(`${fnName} options`, 'an object', options);
  v.rejectUnknownKeys(fnName, options, KEYS);
  const fixed = (options as { fixed?: unknown }).fixed;
  if (v.isDefined(fixed) && !(Array.isArray(fixed) && fixed.length === 0)) {
    // The analytic predictor of a gamma model updates every active position of a block from the
    // transition kernel; holding some of them would need a conditioned kernel upstream lacks.
    throw new HdlmError('HDLM_UNSUPPORTED', `${fnName} does not take fixed tokens (infilling needs an epsilon_hybrid model and fullDiff / semiDiff)`);
  }
  const o = options as GammaSampleOptions;
  if (!(o.model instanceof HdlmModel)) throw invalidParameterError('model', 'an HdlmModel from smartModelLoader', o.model);
  const model = o.model;
  model.native();
  if (model.family !== 'gamma_hybrid') {
    throw new HdlmError('HDLM_UNSUPPORTED', `${fnName} needs a gamma_hybrid model; this is a ${model.family} model (use fullDiff / semiDiff)`);
  }
  const cfg = model.config;
  const graphCfg = section(cfg, 'graph');
  const annealing = section(cfg, 'annealing');
  const attention = v.isPlainObject(annealing.attention) ? annealing.attention : {};

  // policy from the checkpoint config (upstream get_graph / get_noise / config.sampling.predictor)
  const graphType = graphCfg.type;
  if (graphType !== 'QGamma' && graphType !== 'absorb') {
    throw new HdlmError('HDLM_UNSUPPORTED', `${fnName}: graph.type ${JSON.stringify(graphType)} is not supported (QGamma and absorb are)`);
  }
  const gamma = graphType === 'QGamma' ? (typeof graphCfg.gamma === 'number' ? graphCfg.gamma : 0.01) : 0;
  if (!(gamma >= 0 && gamma <= 1)) throw new HdlmError('HDLM_BAD_FILE', `Invalid model config: graph.gamma must be in [0, 1], got ${graphCfg.gamma}`);
  const noiseType = section(cfg, 'noise').type ?? 'loglinear';
  if (noiseType !== 'loglinear') {
    throw new HdlmError('HDLM_UNSUPPORTED', `${fnName}: noise.type ${JSON.stringify(noiseType)} is not supported (loglinear is, as in every released config)`);
  }
  const cfgPredictor = section(cfg, 'sampling').predictor ?? 'analytic';
  const predictor = v.isDefined(o.predictor) ? v.oneOf('predictor', o.predictor, ['analytic'] as const) : cfgPredictor;
  if (predictor !== 'analytic') {
    // upstream registers 'euler' and 'none' but their update_fn cannot take the arguments both sampler files pass (den, act)
    throw new HdlmError('HDLM_UNSUPPORTED', `${fnName}: predictor ${JSON.stringify(predictor)} cannot run (upstream too); only 'analytic' works`);
  }

  let metaschedule: Metaschedule | null;
  if (v.isDefined(o.metaschedule)) {
    if (!(o.metaschedule instanceof Metaschedule)) throw invalidParameterError('metaschedule', 'a Metaschedule (smartModelLoader, makeBlockAnnealing, ...)', o.metaschedule);
    metaschedule = o.metaschedule;
  } else {
    metaschedule = createMetaschedule(cfg, model.length);
  }
  if (!metaschedule) throw invalidParameterError('metaschedule', "a Metaschedule (the model's config names none: annealing.type is not simple, block or hybrid)", o.metaschedule);
  if (metaschedule.tau < 2) throw invalidParameterError('metaschedule', 'a schedule with tau >= 2 (upstream divides by worthless − 1)', metaschedule.toString());

  const samplingMethod = v.isDefined(o.samplingMethod) ? v.oneOf('samplingMethod', o.samplingMethod, SAMPLING_METHODS) : 'NAR';
  const batchSize = v.isDefined(o.batchSize) ? OPTION_RULES.batchSize(o.batchSize) : 1;
  const contextLength = v.isDefined(o.contextLength) ? v.integer('contextLength', o.contextLength, 1, model.length) : model.length;
  checkLogitsCap(batchSize, contextLength, model.vocabSize);
  checkCallMemory(fnName, model.device, 'gamma', batchSize, contextLength, model.vocabSize);
  if (metaschedule.type === 'hybrid' && metaschedule.length < contextLength) {
    throw invalidParameterError('contextLength', `at most the hybrid metaschedule's length (${metaschedule.length})`, o.contextLength);
  }
  const cfgEps = annealing.sampling_eps;
  const eps = v.isDefined(o.eps)
    ? v.finiteNumber('eps', o.eps, 0, 0.045, true)
    : typeof cfgEps === 'number' && cfgEps > 0 && cfgEps < 0.045 ? cfgEps : 1e-4;
  const cfgCtx = attention.context_type;
  const cfgBlk = attention.block_type;
  const contextAttention = v.isDefined(o.contextAttention)
    ? v.oneOf('contextAttention', o.contextAttention, CONTEXT_ATTENTION)
    : (CONTEXT_ATTENTION as readonly unknown[]).includes(cfgCtx) ? (cfgCtx as ContextAttention) : 'block_causal';
  const blockAttention = v.isDefined(o.blockAttention)
    ? v.oneOf('blockAttention', o.blockAttention, BLOCK_ATTENTION)
    : (BLOCK_ATTENTION as readonly unknown[]).includes(cfgBlk) ? (cfgBlk as BlockAttention) : 'full';
  const seed = v.isDefined(o.seed) ? OPTION_RULES.seed(o.seed) : randomBytes(8).readBigUInt64LE();
  const signal = v.isDefined(o.signal) ? v.abortSignal('signal', o.signal) : null;
  const onStep = v.isDefined(o.onStep) ? v.fn<(info: StepInfo) => void>('onStep', o.onStep) : null;
  const stepTokens = v.isDefined(o.stepTokens) ? v.boolean('stepTokens', o.stepTokens) : false;
  const stepEvery = v.isDefined(o.stepEvery) ? v.integer('stepEvery', o.stepEvery, 1) : 1;
  if (v.isDefined(o.device)) checkDevice(o.device, model);

  const native: NativeGammaSampleOptions = {
    mode: samplingMethod === 'SAR' ? 'sar' : 'nar',
    metaschedule: metaschedule.nativeSpec(),
    contextAttention,
    blockAttention,
    graph: graphType,
    gamma,
    vocabSize: model.vocabSize,
    batchSize,
    contextLength,
    eps,
    seed,
    stepTokens: stepTokens && onStep !== null,
    stepEvery,
  };
  return runNativeJob(fnName, model, (step) => model.native().sampleGamma(native, step), batchSize, contextLength, signal, onStep);
}

export interface SaSamplingFnOptions extends Omit<GammaSampleOptions, 'model' | 'batchSize' | 'contextLength'> {
  /** upstream batch_dims: [batchSize, contextLength] */
  batchDims?: [number, number];
}

/**
 * Upstream's factory shape: `get_sa_sampling_fn(config, graph, noise, meta_schedule, batch_dims,
 * eps, device)` returns `sampler(model)`. Here the config, graph and noise come from the model;
 * the options are validated when the sampler runs.
 */
export function getSaSamplingFn(options: SaSamplingFnOptions = {}): (model: HdlmModel) => Promise<number[][]> {
  if (!v.isPlainObject(options)) throw invalidParameterError('getSaSamplingFn options', 'an object', options);
  const { batchDims, ...rest } = options;
  let dims: { batchSize?: number; contextLength?: number } = {};
  if (v.isDefined(batchDims)) {
    if (!Array.isArray(batchDims) || batchDims.length !== 2) throw invalidParameterError('batchDims', 'a [batchSize, contextLength] pair', batchDims);
    dims = { batchSize: batchDims[0], contextLength: batchDims[1] };
  }
  return (model: HdlmModel) => gammaSample({ ...rest, ...dims, model } as GammaSampleOptions);
}
