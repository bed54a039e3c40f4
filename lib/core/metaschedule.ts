/**
 * Metaschedules (upstream hdlm/metaschedule.py: make_simple_annealing, make_block_annealing,
 * make_hybrid_annealing, and hf_utils.create_metaschedule). A `Metaschedule` is a small value
 * (type, width, tau, length); its arithmetic (levels per step, max_step, per-step times and
 * attention masks: upstream hdlm/metaschedule_utils.py) runs in native/metaschedule.cc — the same code the samplers
 * use — so what you inspect here is what the samplers do.
 */
import { addon } from '../binding';
import { HdlmError, invalidParameterError } from '../errors';
import * as v from '../validate';

export type MetascheduleType = 'simple' | 'block' | 'hybrid';
export type ContextAttention = 'full' | 'causal' | 'block_causal';
export type BlockAttention = 'full' | 'causal';

export interface MetascheduleStep {
  /** the noise level of each of the first n positions (upstream `ms(k)(stop=n)`); `worthless` = full noise */
  levels: number[];
  /** upstream `num_settled`: leading positions already clean */
  numSettled: number;
  /** upstream `len(relevant)` */
  relevantLength: number;
}

export interface StepPlan {
  /** per-token time (float32), upstream compute_t_and_attn's `t` */
  t: Float32Array;
  /** tokens to denoise at this step (active, level 0) */
  den: boolean[];
  /** active tokens */
  act: boolean[];
  /** settled tokens */
  settled: boolean[];
  /** n rows of n booleans, true = query row may NOT attend to key column */
  mask: boolean[][];
}

const SPEC = Symbol('spec');

interface Spec {
  type: MetascheduleType;
  width: number;
  tau: number;
  length: number;
}

export class Metaschedule {
  readonly [SPEC]: Spec;
  /** 'simple' | 'block' | 'hybrid' (upstream annealing.type) */
  readonly type: MetascheduleType;
  /** upstream `width` argument */
  readonly width: number;
  /** number of noise levels (upstream `tau`; the loader uses annealing.eval_tau) */
  readonly tau: number;
  /** hybrid: the sequence length the schedule was built for; else 0 */
  readonly length: number;

  /** @internal use makeSimpleAnnealing / makeBlockAnnealing / makeHybridAnnealing */
  constructor(spec: Spec) {
    this[SPEC] = spec;
    this.type = spec.type;
    this.width = spec.width;
    this.tau = spec.tau;
    this.length = spec.length;
    Object.freeze(this);
  }

  /** upstream `worthless`: the full-noise level (max level + 1) */
  get worthless(): number {
    return addon().metascheduleQuery(this[SPEC], { kind: 'info', n: 1 }).worthless;
  }

  /** upstream `max_step(n)`: the gamma samplers run steps 1 .. maxStep(n) − 1 */
  maxStep(n: number): number {
    return addon().metascheduleQuery(this[SPEC], { kind: 'info', n: v.integer('n', n, 1, 1 << 20) }).maxStep;
  }

  /** upstream `ms(k)` evaluated to length n */
  step(k: number, n: number): MetascheduleStep {
    const r = addon().metascheduleQuery(this[SPEC], { kind: 'step', k: v.integer('k', k, 0), n: v.integer('n', n, 0, 1 << 20) });
    return { levels: Array.from(r.levels), numSettled: r.numSettled, relevantLength: r.relevantLength };
  }

  /**
   * Times and attention mask of step k for n tokens: upstream compute_t_and_attn (gamma samplers),
   * or with `autoregressive` compute_t_and_attn_autoregressive (semi_diff_shifted).
   */
  plan(k: number, n: number, options: { eps?: number; contextAttention?: ContextAttention; blockAttention?: BlockAttention; autoregressive?: boolean } = {}): StepPlan {
    if (!v.isPlainObject(options)) throw invalidParameterError('plan options', 'an object', options);
    v.rejectUnknownKeys('Metaschedule.plan', options, ['eps', 'contextAttention', 'blockAttention', 'autoregressive']);
    const eps = v.isDefined(options.eps) ? v.finiteNumber('eps', options.eps, 0, 0.05, true) : 1e-4;
    const contextAttention = v.isDefined(options.contextAttention) ? v.oneOf('contextAttention', options.contextAttention, CONTEXT_ATTENTION) : 'causal';
    const blockAttention = v.isDefined(options.blockAttention) ? v.oneOf('blockAttention', options.blockAttention, BLOCK_ATTENTION) : 'full';
    const autoregressive = v.isDefined(options.autoregressive) ? v.boolean('autoregressive', options.autoregressive) : false;
    const nn = v.integer('n', n, autoregressive ? 1 : 0, 8192);
    const r = addon().metascheduleQuery(this[SPEC], { kind: 'plan', k: v.integer('k', k, 0), n: nn, eps, contextAttention, blockAttention, autoregressive });
    const mask: boolean[][] = [];
    for (let i = 0; i < nn; i++) mask.push(Array.from(r.mask.subarray(i * nn, (i + 1) * nn), (b) => b !== 0));
    const bools = (a: Uint8Array) => Array.from(a, (b) => b !== 0);
    return { t: r.t, den: bools(r.den), act: bools(r.act), settled: bools(r.settled), mask };
  }

  /** @internal what the native samplers take */
  nativeSpec(): Spec {
    return { ...this[SPEC] };
  }

  toString(): string {
    return `Metaschedule(${this.type}, width ${this.width}, tau ${this.tau}${this.type === 'hybrid' ? `, length ${this.length}` : ''})`;
  }
}

export const CONTEXT_ATTENTION = ['full', 'causal', 'block_causal'] as const;
export const BLOCK_ATTENTION = ['full', 'causal'] as const;

/** Upstream make_simple_annealing(width, tau): a diagonal of levels 0..tau−1 sliding right. */
export function makeSimpleAnnealing(width: number, tau: number): Metaschedule {
  return new Metaschedule({ type: 'simple', width: v.integer('width', width, 1, 1 << 20), tau: v.integer('tau', tau, 1, 1 << 20), length: 0 });
}

/** Upstream make_block_annealing(width, tau): blocks of `width` tokens, each through levels tau−1 .. 0. */
export function makeBlockAnnealing(width: number, tau: number): Metaschedule {
  return new Metaschedule({ type: 'block', width: v.integer('width', width, 1, 1 << 20), tau: v.integer('tau', tau, 1, 1 << 20), length: 0 });
}

/** Upstream make_hybrid_annealing(width, tau, seq_len): a diagonal sweep inside each block of `width`, blocks left to right. */
export function makeHybridAnnealing(width: number, tau: number, seqLen: number): Metaschedule {
  const w = v.integer('width', width, 1, 1 << 20);
  const t = v.integer('tau', tau, 1, 1 << 20);
  const n = v.integer('seqLen', seqLen, 1, 1 << 20);
  // upstream stores n_blocks · (tau + width − 1) vectors; computed on the fly here, but keep the
  // step count bounded so max_step stays a safe integer loop
  if (Math.ceil(n / w) * (t + w - 1) > 2 ** 31 - 1) throw invalidParameterError('tau', 'a value giving fewer than 2^31 hybrid steps', tau);
  return new Metaschedule({ type: 'hybrid', width: w, tau: t, length: n });
}

/**
 * Upstream create_metaschedule(cfg) (smart_model_loader's 5th result): `annealing.type` simple /
 * block → make_*_annealing(width, eval_tau); hybrid → make_hybrid_annealing(width, eval_tau,
 * model.length); anything else, or no `annealing` → null. `eval_tau` falls back to `tau`
 * (the configs write `eval_tau: ${tau}`). Bad numbers are HDLM_BAD_FILE.
 */
export function createMetaschedule(cfg: Record<string, unknown>, modelLength: number): Metaschedule | null {
  const a = cfg.annealing;
  if (!v.isPlainObject(a)) return null;
  const type = a.type;
  if (type !== 'simple' && type !== 'block' && type !== 'hybrid') return null;
  const num = (key: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > 1 << 20) {
      throw new HdlmError('HDLM_BAD_FILE', `Invalid model config: annealing.${key} must be a positive integer for a ${type} metaschedule, got ${JSON.stringify(value)}`);
    }
    return value;
  };
  const width = num('width', a.width);
  const tau = num(v.isDefined(a.eval_tau) ? 'eval_tau' : 'tau', v.isDefined(a.eval_tau) ? a.eval_tau : a.tau);
  if (type === 'simple') return makeSimpleAnnealing(width, tau);
  if (type === 'block') return makeBlockAnnealing(width, tau);
  return makeHybridAnnealing(width, tau, modelLength);
}
