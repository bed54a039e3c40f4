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

module.exports = { chiSquareP, chiSquareTwoSample };
