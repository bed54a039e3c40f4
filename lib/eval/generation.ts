/**
 * `evaluateGeneration`: upstream's sample-quality evaluation (hdlm/eval_generation.py with the
 * metrics of hdlm/calculate_metrics.py): samples in upstream's batching, per-sample text
 * entropy, GPT-2 perplexity of the samples, and MAUVE (calculate_mauve_score: p = human
 * reference texts, q = generated texts, GPT-2 features of texts cut to 128 tokens) when
 * reference texts are given.
 */
import { invalidParameterError } from '../errors';
import { CallbackGuard } from '../callbacks';
import type { HubOptions } from '../hub';
import { HdlmModel } from '../core/model';
import { fullDiff, semiDiff, ALGORITHMS, type Algorithm } from '../core/sampling';
import { decode, encode } from '../core/tokenizer';
import * as v from '../validate';
import { loadGpt2, Gpt2Model } from './gpt2';
import { computeMauve, MAUVE_DEFAULTS, UPSTREAM_MAUVE_MAX_TEXT_LENGTH, type MauveOptions, type MauveParameters } from './mauve';
import { deriveSeed, randomSeed } from './seeds';

/**
 * Upstream's per-sample text entropy (calculate_metrics.py): decode (special tokens skipped),
 * re-encode with GPT-2, H = −Σ_k p_k ln(p_k + 1e−8) over the distinct tokens' frequencies.
 */
export function textEntropy(ids: ArrayLike<number>): number {
  const reencoded = encode(decode(Array.from(ids), { skipSpecialTokens: true }), { allowSpecial: false });
  if (reencoded.length === 0) return 0;
  const counts = new Map<number, number>();
  for (const t of reencoded) counts.set(t, (counts.get(t) ?? 0) + 1);
  let h = 0;
  for (const c of counts.values()) {
    const p = c / reencoded.length;
    h -= p * Math.log(p + 1e-8);
  }
  return h;
}

function meanStd(xs: number[]): { mean: number; std: number | null } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = xs.length >= 2 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : null;
  return { mean, std };
}

export interface GenerationOptions extends Omit<HubOptions, 'onProgress'> {
  model: HdlmModel;
  /** samples to draw (upstream --num_samples, default 100) */
  numSamples?: number;
  /** denoising steps (upstream --steps, default 128) */
  steps?: number;
  /** 'full_diff' (default, upstream's only working choice) or 'semi_diff' */
  samplingMethod?: 'full_diff' | 'semi_diff';
  /** upstream --algorithm (default 'original') */
  algorithm?: Algorithm;
  /** upstream --eta (default 0.01) */
  eta?: number;
  temperature?: number;
  /** semi_diff block size (default 16) */
  blockSize?: number;
  /** samples per sampler call (default min(16, numSamples), as upstream) */
  batchSize?: number;
  /** sampler reference mode (default false: fast mode) */
  reference?: boolean;
  seed?: number | bigint;
  /**
   * GPT-2 for the perplexity metric: a hub repo id or a checkpoint directory (default
   * 'openai-community/gpt2-large', upstream's gpt2-large), a loaded Gpt2Model, or null to skip.
   */
  gpt2?: string | Gpt2Model | null;
  /** samples per GPT-2 forward (upstream: 4, remainder samples dropped) */
  gpt2BatchSize?: number;
  /**
   * human texts for MAUVE (upstream: the dataset's validation texts). MAUVE compares the first
   * min(numSamples, 128) generated texts with as many of these (the first ones); without them
   * MAUVE is not computed and `notComputed.mauve` says why.
   */
  referenceTexts?: readonly string[];
  /** mauve-text options (camelCase; defaults as mauve-text's) and maxTextLength (default 128) */
  mauve?: Omit<MauveOptions, 'pFeatures' | 'qFeatures'> & { maxTextLength?: number };
  device?: string;
  signal?: AbortSignal;
  onProgress?: (p: { phase: 'sampling' | 'gpt2' | 'mauve'; done: number; total: number }) => void;
}

export interface GenerationResult {
  numSamples: number;
  samples: number[][];
  texts: string[];
  entropy: { mean: number; std: number | null; perSample: number[] };
  gpt2Perplexity: { value: number; perSample: number[]; samplesUsed: number; model: string } | null;
  /** MAUVE(p = reference texts, q = generated texts), null when not computed (see notComputed) */
  mauve: GenerationMauve | null;
  /** why a metric is absent (MAUVE without reference texts or GPT-2; GPT-2 perplexity when skipped or impossible) */
  notComputed: Record<string, string>;
  settings: Record<string, unknown>;
  seconds: number;
}

export interface GenerationMauve {
  value: number;
  frontierIntegral: number;
  mauveStar: number;
  frontierIntegralStar: number;
  /** texts featurised (empty texts are dropped, as mauve-text drops them) */
  pCount: number;
  qCount: number;
  featureDimension: number;
  pcaComponents: number;
  parameters: MauveParameters & { maxTextLength: number; featurizer: string };
  seconds: number;
}

/** upstream's calculate_mauve_score takes at most this many generated texts */
const UPSTREAM_MAUVE_MAX_SAMPLES = 128;

const GEN_KEYS = [
  'model', 'numSamples', 'steps', 'samplingMethod', 'algorithm', 'eta', 'temperature', 'blockSize', 'batchSize', 'reference', 'seed', 'gpt2',
  'gpt2BatchSize', 'referenceTexts', 'mauve', 'device', 'signal', 'onProgress', 'revision', 'token', 'endpoint', 'offline', 'cacheDir', 'fetch',
] as const;

/** upstream's eval_generation.py for one dataset (whose validation texts are `referenceTexts`, MAUVE's p). */
export async function evaluateGeneration(options: GenerationOptions): Promise<GenerationResult> {
  if (!v.isPlainObject(options)) throw invalidParameterError('evaluateGeneration options', 'an object', options);
  v.rejectUnknownKeys('evaluateGeneration', options, GEN_KEYS);
  const o = options as GenerationOptions;
  if (!(o.model instanceof HdlmModel)) throw invalidParameterError('model', 'an HdlmModel from smartModelLoader', o.model);
  const model = o.model;
  const numSamples = v.isDefined(o.numSamples) ? v.integer('numSamples', o.numSamples, 1) : 100;
  const steps = v.isDefined(o.steps) ? v.integer('steps', o.steps, 1) : 128;
  const method = v.isDefined(o.samplingMethod) ? v.oneOf('samplingMethod', o.samplingMethod, ['full_diff', 'semi_diff'] as const) : 'full_diff';
  const algorithm = v.isDefined(o.algorithm) ? v.oneOf('algorithm', o.algorithm, ALGORITHMS) : 'original';
  const eta = v.isDefined(o.eta) ? v.finiteNumber('eta', o.eta, 0) : 0.01;
  const temperature = v.isDefined(o.temperature) ? v.finiteNumber('temperature', o.temperature, 0) : 1.0;
  const blockSize = v.isDefined(o.blockSize) ? v.integer('blockSize', o.blockSize, 1) : 16;
  const batchSize = v.isDefined(o.batchSize) ? v.integer('batchSize', o.batchSize, 1) : Math.min(16, numSamples);
  const reference = v.isDefined(o.reference) ? v.boolean('reference', o.reference) : false;
  const seed = v.isDefined(o.seed) ? v.seed('seed', o.seed) : randomSeed();
  const gpt2BatchSize = v.isDefined(o.gpt2BatchSize) ? v.integer('gpt2BatchSize', o.gpt2BatchSize, 1) : 4;
  const signal = v.isDefined(o.signal) ? v.abortSignal('signal', o.signal) : undefined;
  const gpt2Option = o.gpt2 === undefined ? 'openai-community/gpt2-large' : o.gpt2;
  if (gpt2Option !== null && typeof gpt2Option !== 'string' && !(gpt2Option instanceof Gpt2Model)) {
    throw invalidParameterError('gpt2', 'a hub repo id, a checkpoint directory, a Gpt2Model or null', gpt2Option);
  }
  let referenceTexts: string[] | null = null;
  if (v.isDefined(o.referenceTexts)) {
    if (!Array.isArray(o.referenceTexts)) throw invalidParameterError('referenceTexts', 'an array of strings', o.referenceTexts);
    o.referenceTexts.forEach((t, i) => {
      if (typeof t !== 'string') throw invalidParameterError(`referenceTexts[${i}]`, 'a string', t);
    });
    const wanted = Math.min(numSamples, UPSTREAM_MAUVE_MAX_SAMPLES);
    if (o.referenceTexts.length < wanted) {
      throw invalidParameterError('referenceTexts', `at least min(numSamples, ${UPSTREAM_MAUVE_MAX_SAMPLES}) = ${wanted} texts`, `${o.referenceTexts.length} texts`);
    }
    referenceTexts = o.referenceTexts.slice(0, wanted);
  }
  let mauveOptions: Omit<MauveOptions, 'pFeatures' | 'qFeatures'> = {};
  let maxTextLength = UPSTREAM_MAUVE_MAX_TEXT_LENGTH;
  if (v.isDefined(o.mauve)) {
    if (!v.isPlainObject(o.mauve)) throw invalidParameterError('mauve', 'an object of MAUVE options', o.mauve);
    v.rejectUnknownKeys('mauve', o.mauve, [...Object.keys(MAUVE_DEFAULTS), 'maxTextLength']);
    const { maxTextLength: m, ...rest } = o.mauve;
    if (v.isDefined(m)) maxTextLength = v.integer('mauve.maxTextLength', m, 1);
    mauveOptions = rest;
  }
  // A failing onProgress stops the running sampler or GPT-2 batch; the call rejects with its error.
  const stop = new AbortController();
  const onProgress = v.isDefined(o.onProgress)
    ? new CallbackGuard('onProgress', v.fn<NonNullable<GenerationOptions['onProgress']>>('onProgress', o.onProgress), () => stop.abort())
    : null;
  const callSignal = onProgress ? (signal ? AbortSignal.any([signal, stop.signal]) : stop.signal) : signal;
  const progress = (p: Parameters<NonNullable<GenerationOptions['onProgress']>>[0]): void => {
    onProgress?.call(p);
    onProgress?.throwIfFailed();
  };
  try {
    const t0 = Date.now();

    // 1. samples: batches of min(16, N) (last batch smaller), no prompt, context = model.length
    const samples: number[][] = [];
    for (let b = 0; samples.length < numSamples; b++) {
      const n = Math.min(batchSize, numSamples - samples.length);
      const common = {
        model, batchSize: n, alg: algorithm, steps, temperature, eta, contextLength: model.length, seed: deriveSeed(seed, b), reference,
        ...(callSignal ? { signal: callSignal } : {}),
      };
      const rows = method === 'semi_diff' ? await semiDiff({ ...common, blockSize }) : await fullDiff(common);
      samples.push(...rows);
      progress({ phase: 'sampling', done: samples.length, total: numSamples });
    }

    // 2. entropy
    const perSampleEntropy = samples.map(textEntropy);
    const ent = meanStd(perSampleEntropy);

    // 3. GPT-2 perplexity: floor(N / 4) batches of 4 (remainder dropped), mean of per-sample exp(mean CE)
    const notComputed: Record<string, string> = {};
    let gpt2Perplexity: GenerationResult['gpt2Perplexity'] = null;
    let mauve: GenerationMauve | null = null;
    const texts = samples.map((s) => decode(s, { skipSpecialTokens: true }));
    const used = Math.floor(numSamples / gpt2BatchSize) * gpt2BatchSize;
    const wantPpl = gpt2Option !== null && used > 0 && !samples.slice(0, used).some((s) => s.some((id) => id >= 50257));
    const wantMauve = gpt2Option !== null && referenceTexts !== null;
    if (gpt2Option === null) {
      notComputed.gpt2Perplexity = 'skipped (gpt2: null)';
    } else if (used === 0) {
      notComputed.gpt2Perplexity = `fewer than ${gpt2BatchSize} samples (upstream divides by zero here)`;
    } else if (!wantPpl) {
      notComputed.gpt2Perplexity = 'a sample holds the mask id 50257, which is outside GPT-2\'s vocabulary (upstream breaks here too)';
    }
    if (gpt2Option === null) {
      notComputed.mauve = 'skipped (gpt2: null): MAUVE needs a GPT-2 for its features (upstream: gpt2-large)';
    } else if (referenceTexts === null) {
      notComputed.mauve = 'needs referenceTexts: human texts to compare the samples with (upstream: the dataset\'s validation texts)';
    }
    if (wantPpl || wantMauve) {
      const owned = typeof gpt2Option === 'string';
      const gpt2 = owned
        ? await loadGpt2(gpt2Option, {
            device: o.device ?? model.device, revision: o.revision, token: o.token, endpoint: o.endpoint, offline: o.offline, cacheDir: o.cacheDir,
            fetch: o.fetch, ...(callSignal ? { signal: callSignal } : {}),
          })
        : (gpt2Option as Gpt2Model);
      try {
        if (wantPpl) {
          const perSample: number[] = [];
          for (let s = 0; s < used; s += gpt2BatchSize) {
            const rows = samples.slice(s, s + gpt2BatchSize);
            const nll = await gpt2.sequenceNll(rows, { batchSize: gpt2BatchSize, signal: callSignal });
            for (let k = 0; k < rows.length; k++) perSample.push(Math.exp(nll[k] / (rows[k].length - 1)));
            progress({ phase: 'gpt2', done: s + rows.length, total: used });
          }
          gpt2Perplexity = { value: perSample.reduce((a, b) => a + b, 0) / perSample.length, perSample, samplesUsed: used, model: gpt2.source };
        }
        if (wantMauve && referenceTexts) {
          // calculate_mauve_score: q = the first min(N, 128) generated texts, p = as many human texts;
          // mauve-text drops empty texts, cuts each to max_text_length tokens, featurises 8 at a time
          const t1 = Date.now();
          const qTexts = texts.slice(0, UPSTREAM_MAUVE_MAX_SAMPLES).filter((t) => t.length > 0);
          const pTexts = referenceTexts.filter((t) => t.length > 0);
          if (qTexts.length === 0 || pTexts.length === 0) {
            notComputed.mauve = `no non-empty ${qTexts.length === 0 ? 'generated' : 'reference'} text to featurise`;
          } else {
            progress({ phase: 'mauve', done: 0, total: pTexts.length + qTexts.length });
            const pFeatures = await gpt2.textFeatures(pTexts, { maxTextLength, batchSize: 8, signal: callSignal });
            progress({ phase: 'mauve', done: pTexts.length, total: pTexts.length + qTexts.length });
            const qFeatures = await gpt2.textFeatures(qTexts, { maxTextLength, batchSize: 8, signal: callSignal });
            progress({ phase: 'mauve', done: pTexts.length + qTexts.length, total: pTexts.length + qTexts.length });
            const r = computeMauve({ ...mauveOptions, pFeatures, qFeatures });
            mauve = {
              value: r.mauve, frontierIntegral: r.frontierIntegral, mauveStar: r.mauveStar, frontierIntegralStar: r.frontierIntegralStar,
              pCount: r.pCount, qCount: r.qCount, featureDimension: r.featureDimension, pcaComponents: r.pcaComponents,
              parameters: { ...r.parameters, maxTextLength, featurizer: gpt2.source }, seconds: (Date.now() - t1) / 1000,
            };
          }
        }
      } finally {
        if (owned) gpt2.dispose();
      }
    }
    await onProgress?.drain();
    onProgress?.throwIfFailed();
    return {
      numSamples,
      samples,
      texts,
      entropy: { mean: ent.mean, std: ent.std, perSample: perSampleEntropy },
      gpt2Perplexity,
      mauve,
      notComputed,
      settings: {
        model: model.source, samplingMethod: method, algorithm, steps, eta, temperature, batchSize, contextLength: model.length, reference,
        seed: seed.toString(), ...(method === 'semi_diff' ? { blockSize } : {}),
      },
      seconds: (Date.now() - t0) / 1000,
    };
  } catch (e) {
    onProgress?.throwIfFailed();
    throw e;
  }
}

