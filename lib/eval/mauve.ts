/**
 * MAUVE (Pillutla et al., NeurIPS 2021), computed as the `mauve-text` 0.4.0 package does in
 * `mauve/compute_mauve.py: compute_mauve`, which upstream's `hdlm/calculate_metrics.py:
 * calculate_mauve_score` calls with p = human texts, q = generated texts.
 *
 * One file on purpose (~640 lines): the steps below are one algorithm, kept in order so they
 * read side by side with mauve-text's compute_mauve and faiss's k-means.
 *
 * Pipeline (each step follows `compute_mauve` / `cluster_feats`):
 *  1. features of q then p stacked, each row L2-normalised;
 *  2. PCA (centred, not whitened) on all rows (or `pcaMaxData` of them), keeping the fewest
 *     leading components whose cumulative explained-variance ratio reaches `kmeansExplainedVar`;
 *  3. k-means with `numBuckets` clusters ('auto': max(2, round(min(n_p, n_q) / 10))) run the way
 *     faiss.Kmeans(niter, nredo, seed + 2) runs it: random data points as initial centroids (faiss's
 *     Mersenne-Twister permutation, reproduced), Lloyd iterations (ml-kmeans), empty clusters
 *     split as faiss splits them, the lowest objective of `kmeansNumRedo` runs kept;
 *  4. histograms of the cluster labels of p and q;
 *  5. the divergence curve exp(-c·KL) at `divergenceCurveDiscretizationSize` mixture weights and
 *     MAUVE = the mean of its two trapezoidal areas; also the frontier integral and the
 *     Krichevsky–Trofimov-smoothed MAUVE* / frontier integral* that 0.4.0 reports.
 * docs/mauve.md says where this can differ from the Python package and why.
 */
import { PCA } from 'ml-pca';
import { kmeans } from 'ml-kmeans';
import { MersenneTwister19937 } from 'random-js';
import { AbortError, HdlmArgumentError, HdlmError, invalidParameterError, describe } from '../errors';
import { callbackError } from '../callbacks';
import * as v from '../validate';

/** One feature vector; a feature matrix is an array of them, all of one length. */
export type FeatureVector = Float32Array | Float64Array | readonly number[];

export interface MauveOptions {
  /** features of the reference texts (upstream: human text), one vector per text */
  pFeatures: readonly FeatureVector[];
  /** features of the texts being judged (upstream: generated text) */
  qFeatures: readonly FeatureVector[];
  /** histogram size: 'auto' (default) = max(2, round(min(n_p, n_q) / 10)), or an integer */
  numBuckets?: number | 'auto';
  /** rows used to fit the PCA: -1 (default) = all, else that many drawn as numpy's RandomState(seed + 5).choice does */
  pcaMaxData?: number;
  /** fraction of the variance the kept PCA components must explain, in (0, 1); default 0.9 */
  kmeansExplainedVar?: number;
  /** k-means runs from different initial centroids; the lowest objective is kept. Default 5 */
  kmeansNumRedo?: number;
  /** Lloyd iterations per k-means run; default 500 */
  kmeansMaxIter?: number;
  /** mixture weights on the divergence curve; default 25 */
  divergenceCurveDiscretizationSize?: number;
  /** the constant c in exp(-c·KL); default 5 */
  mauveScalingFactor?: number;
  /** seeds k-means (faiss seed = seed + 2) and the PCA subsample (seed + 5); default 25 */
  seed?: number;
}

/** The parameters a MAUVE number was computed with (resolved defaults included). */
export interface MauveParameters {
  numBuckets: number;
  pcaMaxData: number;
  kmeansExplainedVar: number;
  kmeansNumRedo: number;
  kmeansMaxIter: number;
  divergenceCurveDiscretizationSize: number;
  mauveScalingFactor: number;
  seed: number;
}

export interface MauveResult {
  /** MAUVE in [0, 1]: 1 when P and Q quantise to the same histogram */
  mauve: number;
  /** frontier integral in [0, 1] (lower: closer) */
  frontierIntegral: number;
  /** MAUVE of the Krichevsky–Trofimov-smoothed histograms (counts + 0.5) */
  mauveStar: number;
  frontierIntegralStar: number;
  /** the divergence curve: [exp(-c·KL(Q‖R)), exp(-c·KL(P‖R))] for R = wP + (1-w)Q, extremes included */
  divergenceCurve: Array<[number, number]>;
  /** quantised distributions of P and Q (length numBuckets, each sums to 1) */
  pHist: Float64Array;
  qHist: Float64Array;
  numBuckets: number;
  /** number of feature vectors in P and Q */
  pCount: number;
  qCount: number;
  /** feature dimension, and the number of PCA components k-means ran on */
  featureDimension: number;
  pcaComponents: number;
  /** sum of squared distances to the nearest centroid of the k-means run that was kept */
  kmeansObjective: number;
  parameters: MauveParameters;
}

export const MAUVE_DEFAULTS: Readonly<Omit<MauveParameters, 'numBuckets'> & { numBuckets: 'auto' }> = Object.freeze({
  numBuckets: 'auto',
  pcaMaxData: -1,
  kmeansExplainedVar: 0.9,
  kmeansNumRedo: 5,
  kmeansMaxIter: 500,
  divergenceCurveDiscretizationSize: 25,
  mauveScalingFactor: 5,
  seed: 25,
});

/** What upstream's calculate_mauve_score passes: texts are cut to their first 128 GPT-2 tokens. */
export const UPSTREAM_MAUVE_MAX_TEXT_LENGTH = 128;

const MAUVE_KEYS = ['pFeatures', 'qFeatures', ...Object.keys(MAUVE_DEFAULTS)] as const;

// faiss ClusteringParameters::max_points_per_centroid: above k·256 points, k-means trains on a subsample
const FAISS_MAX_POINTS_PER_CENTROID = 256;
// faiss takes seed + 2 as a C int
const MAX_SEED = 2 ** 31 - 3;

// ---------------------------------------------------------------------------------------------
// input checks

/** Validates a feature matrix (rows of one length, finite numbers); returns its rows as Float64Arrays. */
function featureMatrix(name: string, value: unknown, dimension?: { value: number; from: string }): Float64Array[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw invalidParameterError(name, 'a non-empty array of feature vectors (number[] or Float32Array/Float64Array)', value);
  }
  const dim = dimension?.value ?? featureLength(`${name}[0]`, value[0]);
  const from = dimension?.from ?? `${name}[0]`;
  if (dim === 0) throw invalidParameterError(`${name}[0]`, 'a feature vector of length >= 1', value[0]);
  return value.map((row, i) => {
    const len = featureLength(`${name}[${i}]`, row);
    if (len !== dim) throw invalidParameterError(`${name}[${i}]`, `a feature vector of length ${dim} (as ${from})`, row);
    const out = new Float64Array(dim);
    for (let j = 0; j < dim; j++) {
      const x = (row as ArrayLike<unknown>)[j];
      if (typeof x !== 'number' || !Number.isFinite(x)) throw invalidParameterError(`${name}[${i}][${j}]`, 'a finite number', x);
      out[j] = x;
    }
    return out;
  });
}

function featureLength(name: string, row: unknown): number {
  if (Array.isArray(row)) return row.length;
  const kind = v.typedArrayKind(row);
  if (kind === 'Float32Array' || kind === 'Float64Array') return (row as Float32Array).length;
  throw invalidParameterError(name, 'a feature vector (number[], Float32Array or Float64Array)', row);
}

interface ResolvedOptions extends MauveParameters {
  numBucketsOption: number | 'auto';
}

function resolveOptions(o: Record<string, unknown>, nP: number, nQ: number): ResolvedOptions {
  const get = <K extends keyof typeof MAUVE_DEFAULTS>(k: K) => (v.isDefined(o[k]) ? o[k] : MAUVE_DEFAULTS[k]);
  const nb = get('numBuckets');
  let numBuckets: number;
  if (nb === 'auto') {
    numBuckets = Math.max(2, pythonRound(Math.min(nP, nQ) / 10));
  } else if (typeof nb === 'number' && Number.isInteger(nb) && nb >= 1) {
    numBuckets = nb;
  } else {
    throw invalidParameterError('numBuckets', "'auto' or an integer >= 1", nb);
  }
  if (numBuckets > nP + nQ) {
    throw new HdlmArgumentError(
      `Expected at most ${nP + nQ} buckets (the number of feature vectors in pFeatures and qFeatures together) for numBuckets but received ${numBuckets}${nb === 'auto' ? " ('auto')" : ''}`,
    );
  }
  const pcaMaxData = v.integer('pcaMaxData', get('pcaMaxData'), -1);
  if (pcaMaxData === 0) throw invalidParameterError('pcaMaxData', 'an integer >= 1, or -1 for all rows', 0);
  const kmeansExplainedVar = v.finiteNumber('kmeansExplainedVar', get('kmeansExplainedVar'), 0, 1, true);
  if (kmeansExplainedVar >= 1) throw invalidParameterError('kmeansExplainedVar', 'a finite number > 0 and < 1', kmeansExplainedVar);
  return {
    numBucketsOption: nb as number | 'auto',
    numBuckets,
    pcaMaxData,
    kmeansExplainedVar,
    kmeansNumRedo: v.integer('kmeansNumRedo', get('kmeansNumRedo'), 1, 1000),
    kmeansMaxIter: v.integer('kmeansMaxIter', get('kmeansMaxIter'), 1, 1_000_000),
    divergenceCurveDiscretizationSize: v.integer('divergenceCurveDiscretizationSize', get('divergenceCurveDiscretizationSize'), 1, 1_000_000),
    mauveScalingFactor: v.finiteNumber('mauveScalingFactor', get('mauveScalingFactor'), 0, Infinity, true),
    seed: v.integer('seed', get('seed'), 0, MAX_SEED),
  };
}

/** Python 3's round(): halves to even. */
function pythonRound(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// ---------------------------------------------------------------------------------------------
// MAUVE from feature matrices

/**
 * MAUVE between P (`pFeatures`) and Q (`qFeatures`), as `mauve.compute_mauve(p_features=…,
 * q_features=…)` with the same options (camelCase). Deterministic for a given seed.
 */
export function computeMauve(options: MauveOptions): MauveResult {
  if (!v.isPlainObject(options)) throw invalidParameterError('options', 'an object', options);
  v.rejectUnknownKeys('computeMauve', options, MAUVE_KEYS);
  const p = featureMatrix('pFeatures', options.pFeatures);
  const q = featureMatrix('qFeatures', options.qFeatures, { value: p[0].length, from: 'pFeatures[0]' });
  const o = resolveOptions(options as unknown as Record<string, unknown>, p.length, q.length);

  const quantised = quantizeFeatures(p, q, o);
  const curve = mauveFromHistograms(quantised.pHist, quantised.qHist, o);
  const smoothed = mauveFromHistograms(quantised.pHistSmoothed, quantised.qHistSmoothed, o);
  return {
    mauve: curve.mauve,
    frontierIntegral: curve.frontierIntegral,
    mauveStar: smoothed.mauve,
    frontierIntegralStar: smoothed.frontierIntegral,
    divergenceCurve: curve.divergenceCurve,
    pHist: quantised.pHist,
    qHist: quantised.qHist,
    numBuckets: o.numBuckets,
    pCount: p.length,
    qCount: q.length,
    featureDimension: p[0].length,
    pcaComponents: quantised.pcaComponents,
    kmeansObjective: quantised.kmeansObjective,
    parameters: {
      numBuckets: o.numBuckets,
      pcaMaxData: o.pcaMaxData,
      kmeansExplainedVar: o.kmeansExplainedVar,
      kmeansNumRedo: o.kmeansNumRedo,
      kmeansMaxIter: o.kmeansMaxIter,
      divergenceCurveDiscretizationSize: o.divergenceCurveDiscretizationSize,
      mauveScalingFactor: o.mauveScalingFactor,
      seed: o.seed,
    },
  };
}

interface Quantised {
  pHist: Float64Array;
  qHist: Float64Array;
  pHistSmoothed: Float64Array;
  qHistSmoothed: Float64Array;
  /** cluster of each row of [q; p] */
  labels: Int32Array;
  pcaComponents: number;
  kmeansObjective: number;
}

/** mauve-text's cluster_feats with compute_mauve's arguments (norm 'l2', no whitening). */
function quantizeFeatures(p: Float64Array[], q: Float64Array[], o: ResolvedOptions): Quantised {
  // q first: the row order decides which points seed k-means
  const rows = [...q, ...p].map(l2Normalised);
  const projected = pcaReduce(rows, o.kmeansExplainedVar, o.pcaMaxData, o.seed);
  // upstream hands faiss float32 data
  for (const row of projected.rows) for (let j = 0; j < row.length; j++) row[j] = Math.fround(row[j]);
  const clustering = faissKmeans(projected.rows, o.numBuckets, o.kmeansMaxIter, o.kmeansNumRedo, o.seed + 2);

  const k = o.numBuckets;
  const qCounts = new Float64Array(k);
  const pCounts = new Float64Array(k);
  clustering.labels.forEach((label, i) => {
    if (i < q.length) qCounts[label]++;
    else pCounts[label]++;
  });
  const normalise = (counts: Float64Array, add: number) => {
    let total = 0;
    for (const c of counts) total += c + add;
    return counts.map((c) => (c + add) / total);
  };
  return {
    pHist: normalise(pCounts, 0),
    qHist: normalise(qCounts, 0),
    pHistSmoothed: normalise(pCounts, 0.5),
    qHistSmoothed: normalise(qCounts, 0.5),
    labels: clustering.labels,
    pcaComponents: projected.components,
    kmeansObjective: clustering.objective,
  };
}

/** sklearn.preprocessing.normalize(norm='l2'): rows of norm 0 stay 0. */
function l2Normalised(row: Float64Array): Float64Array {
  let ss = 0;
  for (const x of row) ss += x * x;
  const norm = Math.sqrt(ss);
  return norm === 0 ? row.slice() : row.map((x) => x / norm);
}

/**
 * sklearn's PCA(n_components=None, whiten=False): fit (on all rows or a subsample), project all
 * rows on the leading components up to the first whose cumulative explained-variance ratio
 * reaches `explainedVariance` (numpy's argmax of `cumsum >= ev`: the first component if none does).
 */
function pcaReduce(rows: Float64Array[], explainedVariance: number, pcaMaxData: number, seed: number): { rows: Float64Array[]; components: number } {
  const all = rows.map((r) => Array.from(r));
  let fitRows = all;
  if (pcaMaxData > 0 && pcaMaxData < rows.length) {
    fitRows = numpyChoiceWithoutReplacement(rows.length, pcaMaxData, seed + 5).map((i) => all[i]);
  }
  const pca = new PCA(fitRows, { method: 'SVD', center: true, scale: false });
  const ratios = pca.getExplainedVariance();
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < ratios.length; i++) {
    cumulative += ratios[i];
    if (cumulative >= explainedVariance) {
      last = i;
      break;
    }
  }
  const components = last + 1;
  const projected = pca.predict(all, { nComponents: components });
  return { rows: projected.to2DArray().map((r) => Float64Array.from(r)), components };
}

// ---------------------------------------------------------------------------------------------
// random streams as upstream's libraries draw them (Mersenne Twister from random-js)

/** std::mt19937 seeded as faiss's RandomGenerator(int64 seed) seeds it: (unsigned int)seed. */
function mt19937(seed: number): () => number {
  const engine = MersenneTwister19937.seed(Number(BigInt.asUintN(32, BigInt(seed))) | 0);
  return () => engine.next() >>> 0;
}

/** faiss/utils/random.cpp: rand_perm (RandomGenerator::rand_int(max) = mt() % max). */
export function faissRandPerm(n: number, seed: number): Int32Array {
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  const next = mt19937(seed);
  for (let i = 0; i + 1 < n; i++) {
    const j = i + (next() % (n - i));
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}

/**
 * numpy's legacy RandomState(seed).choice(n, size, replace=False): permutation(n)[:size]. numpy
 * shuffles from the last element down, drawing each index in [0, i] by masked rejection sampling.
 */
export function numpyChoiceWithoutReplacement(n: number, size: number, seed: number): number[] {
  const next = mt19937(seed);
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i >= 1; i--) {
    let mask = i;
    mask |= mask >>> 1;
    mask |= mask >>> 2;
    mask |= mask >>> 4;
    mask |= mask >>> 8;
    mask |= mask >>> 16;
    let j: number;
    do j = (next() & mask) >>> 0; while (j > i);
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm.slice(0, size);
}

// ---------------------------------------------------------------------------------------------
// k-means as faiss.Kmeans runs it

function squaredDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let j = 0; j < a.length; j++) {
    const d = a[j] - b[j];
    s += d * d;
  }
  return s;
}

/** Nearest centroid of each row (the first on ties) and its squared distance. */
function assign(rows: Float64Array[], centroids: ArrayLike<number>[]): { labels: Int32Array; objective: number } {
  const labels = new Int32Array(rows.length);
  let objective = 0;
  rows.forEach((row, i) => {
    let best = Infinity;
    for (let c = 0; c < centroids.length; c++) {
      const d = squaredDistance(row, centroids[c]);
      if (d < best) {
        best = d;
        labels[i] = c;
      }
    }
    objective += best;
  });
  return { labels, objective };
}

/**
 * faiss Clustering::train with faiss.Kmeans(d, k, niter, nredo, seed) as mauve-text builds it:
 * subsample to k·256 points when there are more (rand_perm(n, seed)), then per run r initial
 * centroids = the points at rand_perm(n, seed + 1 + r·15486557)[0..k), `niter` Lloyd steps (each an
 * ml-kmeans iteration) with faiss's split of empty clusters; the run of lowest objective is kept
 * and every point labelled with its nearest final centroid.
 */
function faissKmeans(rows: Float64Array[], k: number, niter: number, nredo: number, seed: number): { labels: Int32Array; objective: number } {
  if (rows.length === k) {
    // faiss's corner case: the points are the centroids
    return assign(rows, rows);
  }
  let train = rows;
  if (rows.length > k * FAISS_MAX_POINTS_PER_CENTROID) {
    const perm = faissRandPerm(rows.length, seed);
    train = Array.from({ length: k * FAISS_MAX_POINTS_PER_CENTROID }, (_, i) => rows[perm[i]]);
  }
  const data = train.map((r) => Array.from(r));
  let bestObjective = Infinity;
  let bestCentroids: number[][] | undefined;
  for (let redo = 0; redo < nredo; redo++) {
    const perm = faissRandPerm(data.length, seed + 1 + redo * 15486557);
    let centroids = Array.from({ length: k }, (_, i) => data[perm[i]].slice());
    let objective = Infinity;
    for (let iter = 0; iter < niter; iter++) {
      // one Lloyd step: assignment to `centroids`, then the means of the clusters
      const step = kmeans(data, k, { initialization: centroids, maxIterations: 1, tolerance: 0 });
      const sizes = new Float64Array(k);
      objective = 0;
      step.clusters.forEach((c, i) => {
        sizes[c]++;
        objective += squaredDistance(data[i], centroids[c]);
      });
      const next = step.centroids.map((c) => c.slice());
      splitEmptyClusters(next, sizes, data.length);
      const fixedPoint = next.every((c, i) => c.every((x, j) => x === centroids[i][j]));
      centroids = next;
      // Lloyd from a fixed point repeats it: the remaining iterations change nothing
      if (fixedPoint) break;
    }
    // faiss keeps a run only if its objective is strictly lower
    if (objective < bestObjective || bestCentroids === undefined) {
      bestObjective = objective;
      bestCentroids = centroids;
    }
  }
  const result = assign(rows, bestCentroids!);
  return { labels: result.labels, objective: result.objective };
}

/**
 * faiss Clustering.cpp split_clusters: an empty cluster takes a copy of a cluster cj drawn with
 * probability (size_j - 1) / (n - k) (RandomGenerator(1234), a fresh one per call); the two
 * centroids are pushed apart by a relative 1/1024 and the size of cj halved between them.
 */
function splitEmptyClusters(centroids: number[][], sizes: Float64Array, n: number): void {
  const k = centroids.length;
  if (!sizes.some((s) => s === 0)) return;
  const next = mt19937(1234);
  const maxUint32 = Math.fround(4294967295);
  const EPS = 1 / 1024;
  for (let ci = 0; ci < k; ci++) {
    if (sizes[ci] !== 0) continue;
    let cj = 0;
    for (;; cj = (cj + 1) % k) {
      const prob = Math.fround((sizes[cj] - 1) / Math.fround(n - k));
      const r = Math.fround(Math.fround(next()) / maxUint32);
      if (r < prob) break;
    }
    centroids[ci] = centroids[cj].slice();
    for (let j = 0; j < centroids[ci].length; j++) {
      const even = j % 2 === 0;
      centroids[ci][j] *= even ? 1 + EPS : 1 - EPS;
      centroids[cj][j] *= even ? 1 - EPS : 1 + EPS;
    }
    sizes[ci] = Math.fround(sizes[cj] / 2);
    sizes[cj] -= sizes[ci];
  }
}

// ---------------------------------------------------------------------------------------------
// the divergence frontier

export interface HistogramMauveOptions {
  divergenceCurveDiscretizationSize?: number;
  mauveScalingFactor?: number;
}

/** Σ p log(p/q) over p > 0, +Infinity where q = 0 < p (mauve-text's kl_multinomial). */
function klMultinomial(p: ArrayLike<number>, q: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i] !== 0 && q[i] === 0) return Infinity;
    if (p[i] !== 0) total += p[i] * Math.log(p[i] / q[i]);
  }
  return total;
}

/** numpy.linspace(start, stop, num) */
function linspace(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out = Array.from({ length: num }, (_, i) => i * step + start);
  out[num - 1] = stop;
  return out;
}

/** numpy.trapz(y, x) */
function trapezoid(x: number[], y: number[]): number {
  let area = 0;
  for (let i = 0; i + 1 < x.length; i++) area += ((x[i + 1] - x[i]) * (y[i + 1] + y[i])) / 2;
  return area;
}

/**
 * Area under the curve through `points` taken in increasing order of coordinate `a`; ties (which
 * only occur when P = Q, so that every point is (1, 1)) are ordered by the other coordinate
 * decreasing, which gives the area of the region under the frontier.
 */
function areaSortedBy(points: Array<[number, number]>, a: 0 | 1): number {
  const b = a === 0 ? 1 : 0;
  const sorted = [...points].sort((u, w) => u[a] - w[a] || w[b] - u[b]);
  return trapezoid(sorted.map((pt) => pt[a]), sorted.map((pt) => pt[b]));
}

/** mauve-text's get_fronter_integral (scaling factor 2). */
function frontierIntegral(p: ArrayLike<number>, q: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < p.length; i++) {
    const p1 = p[i];
    const q1 = q[i];
    if (p1 === 0 && q1 === 0) continue;
    if (p1 === 0) total += q1 / 4;
    else if (q1 === 0) total += p1 / 4;
    else if (Math.abs(p1 - q1) > 1e-8) {
      const t1 = p1 + q1;
      const t2 = (p1 * q1 * (Math.log(p1) - Math.log(q1))) / (p1 - q1);
      total += 0.25 * t1 - 0.5 * t2;
    }
  }
  return total * 2;
}

function histogram(name: string, value: unknown): Float64Array {
  if (!Array.isArray(value) && !(v.typedArrayKind(value) === 'Float64Array' || v.typedArrayKind(value) === 'Float32Array')) {
    throw invalidParameterError(name, 'a histogram (number[], Float32Array or Float64Array)', value);
  }
  const h = value as ArrayLike<unknown>;
  if (h.length === 0) throw invalidParameterError(name, 'a non-empty histogram', value);
  const out = new Float64Array(h.length);
  let total = 0;
  for (let i = 0; i < h.length; i++) {
    const x = h[i];
    if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw invalidParameterError(`${name}[${i}]`, 'a finite number >= 0', x);
    out[i] = x;
    total += x;
  }
  if (Math.abs(total - 1) > 1e-6) throw new HdlmArgumentError(`Expected a histogram summing to 1 for ${name} but received one summing to ${total}`);
  return out;
}

/**
 * MAUVE of two histograms over the same buckets (compute_mauve's steps after quantisation):
 * the divergence curve at numpy.linspace(1e-6, 1 - 1e-6, size) mixture weights plus the two
 * extreme points, the mean of its two trapezoidal areas, and the frontier integral.
 */
export function mauveFromHistograms(
  pHist: ArrayLike<number>,
  qHist: ArrayLike<number>,
  options: HistogramMauveOptions = {},
): { mauve: number; frontierIntegral: number; divergenceCurve: Array<[number, number]> } {
  const p = histogram('pHist', pHist);
  const q = histogram('qHist', qHist);
  if (p.length !== q.length) throw invalidParameterError('qHist', `a histogram of length ${p.length} (as pHist)`, qHist);
  if (!v.isPlainObject(options)) throw invalidParameterError('options', 'an object', options);
  const size = v.integer('divergenceCurveDiscretizationSize', options.divergenceCurveDiscretizationSize ?? MAUVE_DEFAULTS.divergenceCurveDiscretizationSize, 1, 1_000_000);
  const c = v.finiteNumber('mauveScalingFactor', options.mauveScalingFactor ?? MAUVE_DEFAULTS.mauveScalingFactor, 0, Infinity, true);

  const divergences: Array<[number, number]> = [[0, Infinity]];
  for (const w of linspace(1e-6, 1 - 1e-6, size).sort((a, b) => a - b)) {
    const r = p.map((pi, i) => w * pi + (1 - w) * q[i]);
    divergences.push([klMultinomial(q, r), klMultinomial(p, r)]);
  }
  divergences.push([Infinity, 0]);
  const divergenceCurve = divergences.map(([a, b]) => [Math.exp(-c * a), Math.exp(-c * b)] as [number, number]);
  const mauve = 0.5 * (areaSortedBy(divergenceCurve, 0) + areaSortedBy(divergenceCurve, 1));
  return { mauve, frontierIntegral: frontierIntegral(p, q), divergenceCurve };
}

// ---------------------------------------------------------------------------------------------
// features of texts

/**
 * Returns one feature vector for one text. For MAUVE as upstream computes it: the final hidden
 * state (after ln_f) of GPT-2 (upstream: gpt2-large) at the last token of the text's first
 * UPSTREAM_MAUVE_MAX_TEXT_LENGTH tokens (mauve-text's featurize_tokens_from_model).
 */
export type TextFeaturizer = (text: string, index: number) => FeatureVector | Promise<FeatureVector>;

/**
 * Feature vectors of `texts`, one call of `featurize` at a time, in order. Empty strings are
 * dropped first, as mauve-text drops them; it is an error if none is left. Every vector is
 * checked (same length, finite numbers) and copied into a Float32Array.
 */
export async function featurizeTexts(
  texts: readonly string[],
  featurize: TextFeaturizer,
  options: { name?: string; signal?: AbortSignal } = {},
): Promise<Float32Array[]> {
  if (!v.isPlainObject(options)) throw invalidParameterError('options', 'an object', options);
  v.rejectUnknownKeys('featurizeTexts', options, ['name', 'signal']);
  const name = v.isDefined(options.name) ? v.nonEmptyString('name', options.name) : 'texts';
  const signal = v.isDefined(options.signal) ? v.abortSignal('signal', options.signal) : undefined;
  if (!Array.isArray(texts)) throw invalidParameterError(name, 'an array of strings', texts);
  texts.forEach((t, i) => {
    if (typeof t !== 'string') throw invalidParameterError(`${name}[${i}]`, 'a string', t);
  });
  v.fn('featurize', featurize);
  const kept = texts.filter((t) => t.length > 0);
  if (kept.length === 0) throw invalidParameterError(name, 'at least one non-empty string', texts);

  const out: Float32Array[] = [];
  for (let i = 0; i < kept.length; i++) {
    if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
    let vector: unknown;
    try {
      vector = await featurize(kept[i], i);
    } catch (e) {
      // hdlm's own featurizers fail with HdlmErrors (an abort stays an AbortError); the user's become HDLM_CALLBACK
      throw e instanceof HdlmError ? e : callbackError('featurize', e);
    }
    const where = `the feature vector of ${name} text ${i} (${describe(kept[i])})`;
    const len = featureLength(where, vector);
    if (len === 0) throw invalidParameterError(where, 'a feature vector of length >= 1', vector);
    if (out.length > 0 && len !== out[0].length) throw invalidParameterError(where, `a feature vector of length ${out[0].length} (as the first)`, vector);
    const row = new Float32Array(len);
    for (let j = 0; j < len; j++) {
      const x = (vector as ArrayLike<unknown>)[j];
      if (typeof x !== 'number' || !Number.isFinite(x)) throw invalidParameterError(`${where}[${j}]`, 'a finite number', x);
      row[j] = x;
    }
    out.push(row);
  }
  return out;
}

export interface MauveTextOptions extends Omit<MauveOptions, 'pFeatures' | 'qFeatures'> {
  /** reference texts (upstream: human text) */
  pTexts: readonly string[];
  /** texts being judged (upstream: generated samples) */
  qTexts: readonly string[];
  featurize: TextFeaturizer;
  signal?: AbortSignal;
}

/**
 * compute_mauve(p_text=…, q_text=…): featurises P then Q with `featurize` (empty texts dropped)
 * and computes MAUVE on the features.
 */
export async function computeMauveFromTexts(options: MauveTextOptions): Promise<MauveResult> {
  if (!v.isPlainObject(options)) throw invalidParameterError('options', 'an object', options);
  const { pTexts, qTexts, featurize, signal, ...mauveOptions } = options;
  v.rejectUnknownKeys('computeMauveFromTexts', mauveOptions, Object.keys(MAUVE_DEFAULTS));
  // check the numeric options before the (slow) featurisation
  resolveOptions(mauveOptions as Record<string, unknown>, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  const pFeatures = await featurizeTexts(pTexts, featurize, { name: 'pTexts', signal });
  const qFeatures = await featurizeTexts(qTexts, featurize, { name: 'qTexts', signal });
  return computeMauve({ ...mauveOptions, pFeatures, qFeatures });
}
