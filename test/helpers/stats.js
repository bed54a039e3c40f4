'use strict';
// Small statistics helpers for the distribution tests.

/** Regularized upper incomplete gamma Q(a, x) (series / continued fraction, Numerical Recipes style). */
function gammaQ(a, x) {
  if (x <= 0) return 1;
  const lnGammaA = lnGamma(a);
  if (x < a + 1) {
    let sum = 1 / a;
    let term = sum;
    for (let n = 1; n < 500; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * 1e-15) break;
    }
    return 1 - sum * Math.exp(-x + a * Math.log(x) - lnGammaA);
  }
  let b = x + 1 - a;
  let c = 1 / 1e-300;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 500; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < 1e-300) d = 1e-300;
    c = b + an / c;
    if (Math.abs(c) < 1e-300) c = 1e-300;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return Math.exp(-x + a * Math.log(x) - lnGammaA) * h;
}

function lnGamma(z) {
  const g = 7;
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (z < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * z)) - lnGamma(1 - z);
  z -= 1;
  let x = c[0];
  for (let i = 1; i < g + 2; i++) x += c[i] / (z + i);
  const t = z + g + 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(x);
}

/** p-value of a chi-square statistic with k degrees of freedom. */
function chiSquareP(stat, k) {
  return k <= 0 ? 1 : gammaQ(k / 2, stat / 2);
}

/**
 * Two-sample chi-square test of homogeneity on two lists of category labels. Categories seen
 * fewer than `minCount` times in both samples together are merged into one.
 */
function chiSquareTwoSample(a, b, minCount = 5) {
  const counts = new Map();
  for (const x of a) counts.set(x, (counts.get(x) || [0, 0])), counts.get(x)[0]++;
  for (const x of b) counts.set(x, (counts.get(x) || [0, 0])), counts.get(x)[1]++;
  const cats = [];
  const other = [0, 0];
  for (const c of counts.values()) {
    if (c[0] + c[1] >= minCount) cats.push(c);
    else { other[0] += c[0]; other[1] += c[1]; }
  }
  if (other[0] + other[1] > 0) cats.push(other);
  const na = a.length;
  const nb = b.length;
  let stat = 0;
  for (const [ca, cb] of cats) {
    const t = ca + cb;
    const ea = (t * na) / (na + nb);
    const eb = (t * nb) / (na + nb);
    stat += (ca - ea) ** 2 / ea + (cb - eb) ** 2 / eb;
  }
  const dof = cats.length - 1;
  return { stat, dof, p: chiSquareP(stat, dof) };
}

/** Complementary error function (Numerical Recipes' erfcc; relative error < 1.2e-7). */
function erfc(x) {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? r : 2 - r;
}

/** Two-sided p-value of a standard normal statistic. */
function normalTwoSidedP(z) {
  return Number.isFinite(z) ? Math.min(1, erfc(Math.abs(z) / Math.SQRT2)) : 0;
}

/** Standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9). */
function normalQuantile(p) {
  if (!(p > 0 && p < 1)) throw new RangeError(`normalQuantile: p must lie in (0, 1), got ${p}`);
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo || p > 1 - lo) {
    const q = Math.sqrt(-2 * Math.log(p < lo ? p : 1 - p));
    const x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    return p < lo ? x : -x;
  }
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) /
    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/** Regularized incomplete beta I_x(a, b) (continued fraction, Numerical Recipes style). */
function incompleteBeta(x, a, b) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(lnGamma(a + b) - lnGamma(a) - lnGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  const cf = (x2, a2, b2) => {
    let c = 1;
    let d = 1 - ((a2 + b2) * x2) / (a2 + 1);
    if (Math.abs(d) < 1e-300) d = 1e-300;
    d = 1 / d;
    let h = d;
    for (let m = 1; m < 1000; m++) {
      const m2 = 2 * m;
      let aa = (m * (b2 - m) * x2) / ((a2 + m2 - 1) * (a2 + m2));
      d = 1 + aa * d;
      if (Math.abs(d) < 1e-300) d = 1e-300;
      c = 1 + aa / c;
      if (Math.abs(c) < 1e-300) c = 1e-300;
      d = 1 / d;
      h *= d * c;
      aa = (-(a2 + m) * (a2 + b2 + m) * x2) / ((a2 + m2) * (a2 + m2 + 1));
      d = 1 + aa * d;
      if (Math.abs(d) < 1e-300) d = 1e-300;
      c = 1 + aa / c;
      if (Math.abs(c) < 1e-300) c = 1e-300;
      d = 1 / d;
      const delta = d * c;
      h *= delta;
      if (Math.abs(delta - 1) < 1e-15) break;
    }
    return h;
  };
  return x < (a + 1) / (a + b + 2) ? (front * cf(x, a, b)) / a : 1 - (front * cf(1 - x, b, a)) / b;
}

/** Two-sided p-value of Student's t with `dof` degrees of freedom. */
function studentTwoSidedP(t, dof) {
  if (!Number.isFinite(t)) return 0;
  if (!(dof > 0) || dof > 1e7) return normalTwoSidedP(t);
  return incompleteBeta(dof / (dof + t * t), dof / 2, 0.5);
}

/** Mean and unbiased variance of a list of numbers. */
function meanVar(xs) {
  const n = xs.length;
  let mean = 0;
  for (const x of xs) mean += x;
  mean /= n;
  let ss = 0;
  for (const x of xs) ss += (x - mean) ** 2;
  return { n, mean, variance: n > 1 ? ss / (n - 1) : NaN };
}

/**
 * Welch's two-sample t-test on independent samples `a` and `b` (lists of numbers): the
 * difference of means b − a, its standard error, Welch–Satterthwaite degrees of freedom and the
 * two-sided p-value. With both variances zero, p is 1 for equal means and 0 otherwise.
 */
function welchTest(a, b) {
  const A = meanVar(a);
  const B = meanVar(b);
  const va = A.variance / A.n;
  const vb = B.variance / B.n;
  const diff = B.mean - A.mean;
  const se = Math.sqrt(va + vb);
  if (!(se > 0)) return { meanA: A.mean, meanB: B.mean, diff, se: 0, dof: NaN, t: NaN, p: diff === 0 ? 1 : 0 };
  const dof = (va + vb) ** 2 / ((va * va) / (A.n - 1) + (vb * vb) / (B.n - 1));
  const t = diff / se;
  return { meanA: A.mean, meanB: B.mean, diff, se, dof, t, p: studentTwoSidedP(t, dof) };
}

/**
 * Paired t-test of b − a over pairs (a[i], b[i]): the mean difference, its standard error and the
 * two-sided p (Student, n − 1 degrees of freedom); also each group's mean.
 */
function pairedTest(a, b) {
  if (a.length !== b.length || a.length < 2) throw new Error('pairedTest needs two lists of the same length (at least 2)');
  const d = meanVar(b.map((x, i) => x - a[i]));
  const se = Math.sqrt(d.variance / d.n);
  const meanA = meanVar(a).mean;
  const meanB = meanVar(b).mean;
  if (!(se > 0)) return { meanA, meanB, diff: d.mean, se: 0, dof: d.n - 1, t: NaN, p: d.mean === 0 ? 1 : 0 };
  const t = d.mean / se;
  return { meanA, meanB, diff: d.mean, se, dof: d.n - 1, t, p: studentTwoSidedP(t, d.n - 1) };
}

/** Holm's step-down adjustment of a list of p-values (same order; family-wise error control). */
function holm(ps) {
  const order = ps.map((p, i) => [p, i]).sort((x, y) => x[0] - y[0]);
  const out = new Array(ps.length);
  let running = 0;
  order.forEach(([p, i], rank) => {
    running = Math.max(running, Math.min(1, (ps.length - rank) * p));
    out[i] = running;
  });
  return out;
}

/** mulberry32: a small seeded generator of uniforms in [0, 1). */
function mulberry32(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Two-sample test on per-sample frequency vectors, with the sample as the unit (so dependence
 * between the tokens of one sample cannot inflate it). `a` and `b` are lists of samples, each a
 * list of category keys (numbers: token ids, bigram keys, …), one per occurrence. Each sample
 * becomes its vector of relative frequencies over the `topK` most frequent categories of both
 * groups together plus one "other". Statistic S: the sum over categories of the squared
 * standardized difference of the two groups' mean vectors (pooled per-sample variance). The
 * labels are permuted `permutations` times (seeded): `pPermutation` counts permuted S at least
 * the observed one; `p` fits c·χ²(ν) to the permutation mean and variance of S (the categories
 * are correlated, so S is not χ²(K) itself) and reads the tail there, which resolves p-values
 * below 1 / (permutations + 1). Also returned: the total-variation distance between the two mean
 * frequency vectors, and its mean under permutation (what sampling noise alone gives).
 */
function permutationFrequencyTest(a, b, { topK = 64, permutations = 999, seed = 1 } = {}) {
  const all = a.concat(b);
  const na = a.length;
  const n = all.length;
  const nb = n - na;
  const total = new Map();
  for (const s of all) {
    const w = s.length ? 1 / s.length : 0;
    for (const k of s) total.set(k, (total.get(k) || 0) + w);
  }
  const cats = [...total.entries()].sort((x, y) => y[1] - x[1] || x[0] - y[0]).slice(0, topK).map((e) => e[0]);
  const index = new Map(cats.map((c, i) => [c, i]));
  const K = cats.length + 1;
  const rows = new Float64Array(n * K); // sample i's relative frequencies at [i·K, (i+1)·K)
  all.forEach((s, i) => {
    const w = s.length ? 1 / s.length : 0;
    for (const k of s) {
      const j = index.get(k);
      rows[i * K + (j === undefined ? K - 1 : j)] += w;
    }
  });
  const sums = new Float64Array(K);
  const sq = new Float64Array(K);
  for (let i = 0; i < n; i++) for (let k = 0; k < K; k++) { const v = rows[i * K + k]; sums[k] += v; sq[k] += v * v; }
  const scale = new Float64Array(K); // 1 / (pooled variance · (1/na + 1/nb)); 0 for a constant category
  for (let k = 0; k < K; k++) {
    const variance = (sq[k] - (sums[k] * sums[k]) / n) / (n - 1);
    scale[k] = variance > 1e-15 ? 1 / (variance * (1 / na + 1 / nb)) : 0;
  }
  const g = new Float64Array(K);
  const stat = (members) => {
    g.fill(0);
    for (const i of members) for (let k = 0; k < K; k++) g[k] += rows[i * K + k];
    let s = 0;
    let tv = 0;
    for (let k = 0; k < K; k++) {
      const d = g[k] / na - (sums[k] - g[k]) / nb;
      s += d * d * scale[k];
      tv += Math.abs(d);
    }
    return { s, tv: tv / 2 };
  };
  const observed = stat(Array.from({ length: na }, (_, i) => i));
  const rand = mulberry32(seed);
  const perm = Array.from({ length: n }, (_, i) => i);
  let atLeast = 0;
  let tvNull = 0;
  let m1 = 0;
  let m2 = 0;
  for (let r = 0; r < permutations; r++) {
    for (let i = 0; i < na; i++) { // partial Fisher–Yates: the first na entries are a uniform random subset
      const j = i + Math.floor(rand() * (n - i));
      const t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    const x = stat(perm.slice(0, na));
    if (x.s >= observed.s) atLeast++;
    tvNull += x.tv;
    m1 += x.s;
    m2 += x.s * x.s;
  }
  m1 /= permutations;
  const v = m2 / permutations - m1 * m1;
  let p = (atLeast + 1) / (permutations + 1);
  if (m1 > 0 && v > 0) {
    const c = v / (2 * m1);
    p = chiSquareP(observed.s / c, (2 * m1 * m1) / v);
  }
  return {
    categories: K, statistic: observed.s, nullMean: m1, p, pPermutation: (atLeast + 1) / (permutations + 1), tv: observed.tv,
    tvNull: tvNull / permutations,
  };
}

module.exports = {
  chiSquareP, chiSquareTwoSample, erfc, normalTwoSidedP, normalQuantile, incompleteBeta, studentTwoSidedP, meanVar, welchTest,
  pairedTest, holm,
  mulberry32, permutationFrequencyTest,
};
