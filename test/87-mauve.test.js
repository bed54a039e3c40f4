'use strict';
// MAUVE (lib/eval/mauve.ts) against the Python mauve-text package's own outputs on synthetic
// features (test/fixtures/mauve/reference.json, made by make-reference.js there), against direct
// computations written here (divergence frontier of hand-made histograms, the frontier integral
// as an integral, the closed-form curve of disjoint histograms), its known limits, determinism,
// the featurisation callback and the errors for bad input.
const assert = require('assert');
const m = require('../dist/eval/mauve');
const { mixtureFeatures } = require('./helpers/mauve-features');
const { CASES, caseFeatures } = require('./fixtures/mauve/cases');
const reference = require('./fixtures/mauve/reference.json');

// --- independent computations -----------------------------------------------------------------

function kl(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === 0) continue;
    if (b[i] === 0) return Infinity;
    s += a[i] * Math.log(a[i] / b[i]);
  }
  return s;
}

// trapezoids through points sorted by coordinate `by`, the other coordinate as height; among
// points with equal `by` the higher one comes first (the curve's upper envelope)
function areaBy(points, by) {
  const other = 1 - by;
  const s = points.slice().sort((u, w) => u[by] - w[by] || w[other] - u[other]);
  let area = 0;
  for (let i = 1; i < s.length; i++) area += (s[i][by] - s[i - 1][by]) * (s[i][other] + s[i - 1][other]) / 2;
  return area;
}

function weights(size) {
  if (size === 1) return [1e-6];
  return Array.from({ length: size }, (_, i) => (i === size - 1 ? 1 - 1e-6 : 1e-6 + (i * (1 - 2e-6)) / (size - 1)));
}

// MAUVE by its definition: frontier points exp(-c KL(Q||R_w)), exp(-c KL(P||R_w)) plus (1,0), (0,1)
function directMauve(p, q, { size = 25, c = 5 } = {}) {
  const points = [[1, 0], [0, 1]];
  for (const w of weights(size)) {
    const r = p.map((pi, i) => w * pi + (1 - w) * q[i]);
    points.push([Math.exp(-c * kl(q, r)), Math.exp(-c * kl(p, r))]);
  }
  return (areaBy(points, 0) + areaBy(points, 1)) / 2;
}

// frontier integral as 2 ∫_0^1 [λ KL(P||R_λ) + (1-λ) KL(Q||R_λ)] dλ, R_λ = λP + (1-λ)Q (midpoint rule)
function integralFrontier(p, q, steps = 100000) {
  let s = 0;
  for (let i = 0; i < steps; i++) {
    const l = (i + 0.5) / steps;
    const r = p.map((pi, j) => l * pi + (1 - l) * q[j]);
    s += l * kl(p, r) + (1 - l) * kl(q, r);
  }
  return (2 * s) / steps;
}

const close = (a, b, tol, what) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b} (tolerance ${tol})`);

// --- tests ------------------------------------------------------------------------------------

describe('MAUVE: the divergence frontier of given histograms', () => {
  it('matches the direct computation on hand-made histograms', () => {
    const cases = [
      [[0.5, 0.5, 0], [0.25, 0.25, 0.5], {}],
      [[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], {}],
      [[0.7, 0.1, 0.1, 0.1, 0], [0.1, 0.1, 0.1, 0.1, 0.6], { size: 7, c: 2 }],
      [[0.2, 0.8], [0.3, 0.7], { size: 3, c: 1 }],
    ];
    for (const [p, q, o] of cases) {
      const r = m.mauveFromHistograms(p, q, { divergenceCurveDiscretizationSize: o.size ?? 25, mauveScalingFactor: o.c ?? 5 });
      close(r.mauve, directMauve(p, q, o), 1e-12, `mauve of ${p} vs ${q}`);
      assert.strictEqual(r.divergenceCurve.length, (o.size ?? 25) + 2);
      close(r.frontierIntegral, integralFrontier(p, q), 1e-7, `frontier integral of ${p} vs ${q}`);
    }
  });

  it('gives 1/2 for disjoint histograms with one mixture weight and c = 1 (worked by hand)', () => {
    // one curve point (1 - w, w) between (1, 0) and (0, 1): both trapezoid sums are (a + b) / 2 = 1/2
    const r = m.mauveFromHistograms([1, 0], [0, 1], { divergenceCurveDiscretizationSize: 1, mauveScalingFactor: 1 });
    close(r.mauve, 0.5, 1e-15, 'mauve');
    close(r.divergenceCurve[1][0], 1 - 1e-6, 1e-15, 'curve x');
    close(r.divergenceCurve[1][1], 1e-6, 1e-15, 'curve y');
    // each bucket contributes 1/4 to the frontier integral, times the factor 2
    close(r.frontierIntegral, 1, 1e-15, 'frontier integral');
  });

  it('is 1 with frontier integral 0 for equal histograms, whatever the curve size', () => {
    for (const size of [1, 5, 25, 40]) {
      const r = m.mauveFromHistograms([0.3, 0.7], [0.3, 0.7], { divergenceCurveDiscretizationSize: size });
      close(r.mauve, 1, 1e-12, `size ${size}`);
      assert.strictEqual(r.frontierIntegral, 0);
    }
  });
});

describe('MAUVE: the Python mauve-text package on the same features', () => {
  it(`reference outputs recorded with ${reference.versions['mauve-text']}, faiss ${reference.versions.faiss}, scikit-learn ${reference.versions['scikit-learn']}`, () => {
    assert.strictEqual(reference.cases.length, CASES.length);
  });

  CASES.forEach((c, i) => {
    it(`${c.name}: same histograms, MAUVE, MAUVE*, frontier integrals and curve`, function () {
      this.timeout(60000);
      const want = reference.cases[i];
      assert.strictEqual(want.name, c.name);
      const got = m.computeMauve({ ...caseFeatures(c), ...c.options });
      assert.strictEqual(got.numBuckets, want.numBuckets);
      assert.deepStrictEqual(Array.from(got.pHist), want.pHist, 'pHist');
      assert.deepStrictEqual(Array.from(got.qHist), want.qHist, 'qHist');
      close(got.mauve, want.mauve, 1e-12, 'mauve');
      close(got.mauveStar, want.mauveStar, 1e-12, 'mauveStar');
      close(got.frontierIntegral, want.frontierIntegral, 1e-12, 'frontierIntegral');
      close(got.frontierIntegralStar, want.frontierIntegralStar, 1e-12, 'frontierIntegralStar');
      assert.strictEqual(got.divergenceCurve.length, want.divergenceCurve.length);
      got.divergenceCurve.forEach(([x, y], j) => {
        close(x, want.divergenceCurve[j][0], 1e-12, `curve[${j}].x`);
        close(y, want.divergenceCurve[j][1], 1e-12, `curve[${j}].y`);
      });
    });
  });

  it("draws faiss's k-means initial points and numpy's PCA subsample as they do", () => {
    for (const { n, k, seed, points } of reference.faissInitialPoints) {
      assert.deepStrictEqual(Array.from(m.faissRandPerm(n, seed).slice(0, k)), points, `rand_perm(${n}, ${seed})`);
    }
    for (const { n, size, seed, indices } of reference.numpyChoice) {
      assert.deepStrictEqual(m.numpyChoiceWithoutReplacement(n, size, seed), indices, `RandomState(${seed}).choice(${n}, ${size})`);
    }
  });
});

describe('MAUVE: known limits on synthetic features', () => {
  const p = mixtureFeatures({ n: 100, dim: 16, components: 4, centreSeed: 5, seed: 6 });

  it('identical sets: MAUVE 1, frontier integral 0, equal histograms', () => {
    const r = m.computeMauve({ pFeatures: p, qFeatures: p.map((x) => Array.from(x)) });
    close(r.mauve, 1, 1e-12, 'mauve');
    close(r.mauveStar, 1, 1e-12, 'mauveStar');
    assert.strictEqual(r.frontierIntegral, 0);
    assert.deepStrictEqual(r.pHist, r.qHist);
    assert.strictEqual(r.numBuckets, 10);
  });

  it('disjoint sets: MAUVE equals the closed-form curve of disjoint histograms (near 0)', () => {
    const q = mixtureFeatures({ n: 100, dim: 16, components: 4, centreSeed: 5, seed: 7, shift: 50 });
    const r = m.computeMauve({ pFeatures: p, qFeatures: q });
    // disjoint supports: KL(Q||R_w) = -log(1 - w), KL(P||R_w) = -log(w), so the points are ((1-w)^5, w^5)
    const points = [[1, 0], [0, 1], ...weights(25).map((w) => [(1 - w) ** 5, w ** 5])];
    const expected = (areaBy(points, 0) + areaBy(points, 1)) / 2;
    for (let i = 0; i < r.numBuckets; i++) assert.ok(r.pHist[i] === 0 || r.qHist[i] === 0, 'histograms are disjoint');
    close(r.mauve, expected, 1e-12, 'mauve');
    assert.ok(r.mauve < 0.01);
    close(r.frontierIntegral, 1, 1e-12, 'frontier integral');
  });

  it('decreases as Q drifts away from P, down to the disjoint value', () => {
    const shifts = [0, 0.5, 1, 2, 8];
    const scores = shifts.map((shift) => m.computeMauve({ pFeatures: p, qFeatures: mixtureFeatures({ n: 100, dim: 16, components: 4, centreSeed: 5, seed: 7, shift }) }).mauve);
    for (let i = 1; i < scores.length; i++) assert.ok(scores[i] < scores[i - 1], `MAUVE ${scores.join(', ')} for shifts ${shifts.join(', ')}`);
    assert.ok(scores[0] > 0.9, `same distribution: ${scores[0]}`);
    assert.ok(scores[scores.length - 1] < 0.01);
  });

  it("'auto' buckets: max(2, round(min(n_p, n_q) / 10)) with Python's round (halves to even)", () => {
    const q = (n) => mixtureFeatures({ n, dim: 4, components: 2, centreSeed: 8, seed: 9 });
    const buckets = (np, nq) => m.computeMauve({ pFeatures: q(np), qFeatures: q(nq), kmeansNumRedo: 1 }).numBuckets;
    assert.strictEqual(buckets(45, 100), 4); // round(4.5) = 4
    assert.strictEqual(buckets(100, 35), 4); // round(3.5) = 4
    assert.strictEqual(buckets(12, 12), 2); // round(1.2) = 1, at least 2
    assert.strictEqual(buckets(1, 1), 2); // two points, two buckets: each its own
  });

  it('is deterministic for a seed and reports the parameters it used', () => {
    const q = mixtureFeatures({ n: 100, dim: 16, components: 4, centreSeed: 5, seed: 7, shift: 1 });
    const a = m.computeMauve({ pFeatures: p, qFeatures: q, seed: 3 });
    const b = m.computeMauve({ pFeatures: p, qFeatures: q, seed: 3 });
    assert.deepStrictEqual(a, b);
    assert.deepStrictEqual(a.parameters, {
      numBuckets: 10, pcaMaxData: -1, kmeansExplainedVar: 0.9, kmeansNumRedo: 5, kmeansMaxIter: 500,
      divergenceCurveDiscretizationSize: 25, mauveScalingFactor: 5, seed: 3,
    });
    assert.strictEqual(m.computeMauve({ pFeatures: p, qFeatures: q }).parameters.seed, 25);
    assert.strictEqual(a.pCount, 100);
    assert.strictEqual(a.featureDimension, 16);
    assert.ok(a.pcaComponents >= 1 && a.pcaComponents <= 16);
  });
});

describe('MAUVE: features of texts', () => {
  // a toy featuriser: letter counts
  const letters = (text) => Array.from({ length: 26 }, (_, i) => [...text.toLowerCase()].filter((ch) => ch.charCodeAt(0) === 97 + i).length);

  it('calls the featuriser once per non-empty text, in order, and copies its vectors', async () => {
    const calls = [];
    const out = await m.featurizeTexts(['ab', '', 'c'], (text, i) => {
      calls.push([text, i]);
      return Promise.resolve(new Float64Array([text.length, i]));
    });
    assert.deepStrictEqual(calls, [['ab', 0], ['c', 1]]);
    assert.deepStrictEqual(out, [new Float32Array([2, 0]), new Float32Array([1, 1])]);
  });

  it('computeMauveFromTexts equals computeMauve on the same features', async () => {
    const human = Array.from({ length: 30 }, (_, i) => `the ${i} quick brown fox ${'x'.repeat(i % 7)} jumps`);
    const generated = Array.from({ length: 30 }, (_, i) => `a ${i} lazy dog ${'z'.repeat(i % 5)} sleeps`);
    const fromTexts = await m.computeMauveFromTexts({ pTexts: human, qTexts: generated, featurize: letters, kmeansNumRedo: 2 });
    const direct = m.computeMauve({ pFeatures: human.map(letters), qFeatures: generated.map(letters), kmeansNumRedo: 2 });
    assert.deepStrictEqual(fromTexts, direct);
    const same = await m.computeMauveFromTexts({ pTexts: human, qTexts: human, featurize: letters });
    close(same.mauve, 1, 1e-12, 'same texts');
  });

  it('rejects bad featuriser output and stops on abort', async () => {
    await assert.rejects(m.featurizeTexts(['', ''], letters), { code: 'HDLM_INVALID_ARGUMENT', message: /at least one non-empty string for texts/ });
    await assert.rejects(m.featurizeTexts(['a', 'bb'], (t) => new Array(t.length).fill(0.5)), {
      name: 'HdlmArgumentError', message: /Expected a feature vector of length 1 \(as the first\) for the feature vector of texts text 1 \("bb"\) but received an array of length 2/,
    });
    await assert.rejects(m.featurizeTexts(['a'], () => [1, NaN]), { message: /Expected a finite number for the feature vector of texts text 0 \("a"\)\[1\] but received NaN/ });
    await assert.rejects(m.featurizeTexts(['a'], () => 'nope'), { message: /Expected a feature vector/ });
    await assert.rejects(m.featurizeTexts(['a', 3], letters), { message: /Expected a string for texts\[1\] but received 3/ });
    await assert.rejects(m.featurizeTexts(['a'], null), { message: /Expected a function for featurize/ });
    const controller = new AbortController();
    let calls = 0;
    const run = m.featurizeTexts(['a', 'b', 'c'], (t) => {
      calls++;
      controller.abort();
      return letters(t);
    }, { signal: controller.signal });
    await assert.rejects(run, { name: 'AbortError', code: 'HDLM_ABORTED' });
    assert.strictEqual(calls, 1);
    // options are checked before any text is featurised
    let featurised = 0;
    await assert.rejects(m.computeMauveFromTexts({ pTexts: ['a'], qTexts: ['b'], featurize: () => { featurised++; return [1]; }, kmeansExplainedVar: 2 }), { message: /kmeansExplainedVar/ });
    assert.strictEqual(featurised, 0);
  });
});

describe('MAUVE: bad input', () => {
  const p = [[1, 2, 3], [3, 2, 1], [0, 1, 0]];
  const q = [[1, 1, 1], [2, 0, 2]];
  const bad = (options, pattern) => assert.throws(() => m.computeMauve(options), (e) => {
    assert.strictEqual(e.name, 'HdlmArgumentError');
    assert.strictEqual(e.code, 'HDLM_INVALID_ARGUMENT');
    assert.match(e.message, pattern);
    return true;
  });

  it('empty sets, ragged or mismatched dimensions, NaN and Infinity', () => {
    bad({ pFeatures: [], qFeatures: q }, /^Expected a non-empty array of feature vectors .* for pFeatures but received an array of length 0$/);
    bad({ pFeatures: p, qFeatures: [] }, /for qFeatures but received an array of length 0/);
    bad({ pFeatures: p }, /for qFeatures but received undefined/);
    bad({ pFeatures: p, qFeatures: [[1, 2]] }, /^Expected a feature vector of length 3 \(as pFeatures\[0\]\) for qFeatures\[0\] but received an array of length 2$/);
    bad({ pFeatures: [[1, 2, 3], new Float32Array(4)], qFeatures: q }, /length 3 \(as pFeatures\[0\]\) for pFeatures\[1\] but received a Float32Array of length 4/);
    bad({ pFeatures: [[], []], qFeatures: [[], []] }, /a feature vector of length >= 1 for pFeatures\[0\]/);
    bad({ pFeatures: p, qFeatures: [[1, NaN, 1], [0, 0, 0]] }, /^Expected a finite number for qFeatures\[0\]\[1\] but received NaN$/);
    bad({ pFeatures: [[1, 2, Infinity], [0, 0, 0]], qFeatures: q }, /finite number for pFeatures\[0\]\[2\] but received Infinity/);
    bad({ pFeatures: [[1, '2', 3]], qFeatures: q }, /finite number for pFeatures\[0\]\[1\] but received "2"/);
    bad({ pFeatures: [new Int32Array(3)], qFeatures: q }, /Expected a feature vector \(number\[\], Float32Array or Float64Array\) for pFeatures\[0\]/);
  });

  it('bad options', () => {
    bad({ pFeatures: p, qFeatures: q, num_buckets: 2 }, /Unknown option num_buckets for computeMauve \(did you mean numBuckets\?\)/);
    bad({ pFeatures: p, qFeatures: q, numBuckets: 6 }, /at most 5 buckets .* for numBuckets but received 6/);
    bad({ pFeatures: p, qFeatures: q, numBuckets: 0 }, /'auto' or an integer >= 1 for numBuckets but received 0/);
    bad({ pFeatures: p, qFeatures: q, numBuckets: 'many' }, /for numBuckets but received "many"/);
    bad({ pFeatures: p, qFeatures: q, kmeansExplainedVar: 1 }, /> 0 and < 1 for kmeansExplainedVar but received 1/);
    bad({ pFeatures: p, qFeatures: q, kmeansExplainedVar: 0 }, /for kmeansExplainedVar but received 0/);
    bad({ pFeatures: p, qFeatures: q, pcaMaxData: 0 }, /-1 for all rows for pcaMaxData but received 0/);
    bad({ pFeatures: p, qFeatures: q, kmeansNumRedo: 0 }, /kmeansNumRedo/);
    bad({ pFeatures: p, qFeatures: q, kmeansMaxIter: 1.5 }, /kmeansMaxIter/);
    bad({ pFeatures: p, qFeatures: q, divergenceCurveDiscretizationSize: 0 }, /divergenceCurveDiscretizationSize/);
    bad({ pFeatures: p, qFeatures: q, mauveScalingFactor: 0 }, /a finite number > 0 for mauveScalingFactor but received 0/);
    bad({ pFeatures: p, qFeatures: q, seed: -1 }, /seed/);
    bad({ pFeatures: p, qFeatures: q, seed: 2 ** 31 - 2 }, /an integer between 0 and 2147483645 for seed/);
    assert.throws(() => m.computeMauve(null), /Expected an object for options but received null/);
  });

  it('bad histograms', () => {
    assert.throws(() => m.mauveFromHistograms([0.5, 0.5], [1]), /a histogram of length 2 \(as pHist\) for qHist/);
    assert.throws(() => m.mauveFromHistograms([0.5, 0.6], [0.5, 0.5]), /Expected a histogram summing to 1 for pHist but received one summing to 1.1$/);
    assert.throws(() => m.mauveFromHistograms([1.5, -0.5], [0.5, 0.5]), /a finite number >= 0 for pHist\[1\] but received -0.5/);
    assert.throws(() => m.mauveFromHistograms([], []), /a non-empty histogram for pHist/);
    assert.throws(() => m.mauveFromHistograms([1], [1], { mauveScalingFactor: NaN }), /mauveScalingFactor/);
  });
});
