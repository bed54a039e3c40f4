/**
 * `evaluateGeneration`: upstream's sample-quality evaluation (hdlm/eval_generation.py with the
 * metrics of hdlm/calculate_metrics.py): samples in upstream's batching, per-sample text
 * entropy, GPT-2 perplexity of the samples. MAUVE is not computed (it needs a GPT-2-large feature
 * extractor plus k-means/PCA quantisation that this package does not implement); the result says
 * so instead of reporting a number.
 */
import { invalidParameterError } from '../errors';
import { CallbackGuard } from '../callbacks';
import type { HubOptions } from '../hub';
import { HdlmModel } from '../core/model';
import { fullDiff, semiDiff, ALGORITHMS, type Algorithm } from '../core/sampling';
import { decode, encode } from '../core/tokenizer';
import * as v from '../validate';
import { loadGpt2, Gpt2Model } from './gpt2';
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
  device?: string;
  signal?: AbortSignal;
  onProgress?: (p: { phase: 'sampling' | 'gpt2'; done: number; total: number }) => void;
}

export interface GenerationResult {
  numSamples: number;
  samples: number[][];
  texts: string[];
  entropy: { mean: number; std: number | null; perSample: number[] };
  gpt2Perplexity: { value: number; perSample: number[]; samplesUsed: number; model: string } | null;
  /** why a metric is absent (MAUVE always; GPT-2 perplexity when skipped or impossible) */
  notComputed: Record<string, string>;
  settings: Record<string, unknown>;
  seconds: number;
}

const GEN_KEYS = [
  'model', 'numSamples', 'steps', 'samplingMethod', 'algorithm', 'eta', 'temperature', 'blockSize', 'batchSize', 'reference', 'seed', 'gpt2',
  'gpt2BatchSize', 'device', 'signal', 'onProgress', 'revision', 'token', 'endpoint', 'offline', 'cacheDir', 'fetch',
] as const;

/** upstream's eval_generation.py for one dataset (the dataset only feeds MAUVE, which is not computed). */
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
  // A failing onProgress stops the running sampler or GPT-2 batch; the call rejects with its error.
  const stop = new AbortController();
  const onProgress = v.isDefined(o.onProgress)
    ? new CallbackGuard('onProgress', v.fn<NonNullable<GenerationOptions['onProgress']>>('onProgress', o.onProgress), () => stop.abort())
    : null;
  const callSignal = onProgress ? (signal ? AbortSignal.any([signal, stop.signal]) : stop.signal) : signal;
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
      onProgress?.call({ phase: 'sampling', done: samples.length, total: numSamples });
      onProgress?.throwIfFailed();
    }

    // 2. entropy
    const perSampleEntropy = samples.map(textEntropy);
    const ent = meanStd(perSampleEntropy);

    // 3. GPT-2 perplexity: floor(N / 4) batches of 4 (remainder dropped), mean of per-sample exp(mean CE)
    const notComputed: Record<string, string> = {
      mauve: 'not computed: MAUVE needs GPT-2-large features plus PCA/k-means quantisation (mauve-text), which hdlm does not ship',
    };
    let gpt2Perplexity: GenerationResult['gpt2Perplexity'] = null;
    const used = Math.floor(numSamples / gpt2BatchSize) * gpt2BatchSize;
    if (gpt2Option === null) {
      notComputed.gpt2Perplexity = 'skipped (gpt2: null)';
    } else if (used === 0) {
      notComputed.gpt2Perplexity = `fewer than ${gpt2BatchSize} samples (upstream divides by zero here)`;
    } else if (samples.slice(0, used).some((s) => s.some((id) => id >= 50257))) {
      notComputed.gpt2Perplexity = 'a sample holds the mask id 50257, which is outside GPT-2\'s vocabulary (upstream breaks here too)';
    } else {
      const owned = typeof gpt2Option === 'string';
      const gpt2 = owned
        ? await loadGpt2(gpt2Option, {
            device: o.device ?? model.device, revision: o.revision, token: o.token, endpoint: o.endpoint, offline: o.offline, cacheDir: o.cacheDir,
            fetch: o.fetch, ...(callSignal ? { signal: callSignal } : {}),
          })
        : gpt2Option;
      try {
        const perSample: number[] = [];
        for (let s = 0; s < used; s += gpt2BatchSize) {
          const rows = samples.slice(s, s + gpt2BatchSize);
          const nll = await gpt2.sequenceNll(rows, { batchSize: gpt2BatchSize, signal: callSignal });
          for (let k = 0; k < rows.length; k++) perSample.push(Math.exp(nll[k] / (rows[k].length - 1)));
          onProgress?.call({ phase: 'gpt2', done: s + rows.length, total: used });
          onProgress?.throwIfFailed();
        }
        gpt2Perplexity = { value: perSample.reduce((a, b) => a + b, 0) / perSample.length, perSample, samplesUsed: used, model: gpt2.source };
      } finally {
        if (owned) gpt2.dispose();
      }
    }
    await onProgress?.drain();
    onProgress?.throwIfFailed();
    return {
      numSamples,
      samples,
      texts: samples.map((s) => decode(s, { skipSpecialTokens: true })),
      entropy: { mean: ent.mean, std: ent.std, perSample: perSampleEntropy },
      gpt2Perplexity,
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

