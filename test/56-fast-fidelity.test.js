'use strict';
// Fast mode samples from the same distribution as reference mode: for every algorithm of fullDiff
// and semiDiff, seeded samples of both modes are compared with per-sample two-sample tests (the
// model's own NLL bound, token entropy, repetition, first EOS, masks left; unigram and bigram
// frequencies by permutation over samples), Holm-adjusted over all of them. The model is the
// trained demo model restricted to 256 of its tokens (the same network, a small vocabulary, so
// that a few hundred samples per algorithm fit the CPU suite). A negative control (fast mode at
// a lower temperature) shows that the comparison rejects a changed distribution.
// The full-size version is bench/fidelity.js; method and results: docs/fast-mode-fidelity.md.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { smartModelLoader, ALGORITHMS, DEMO_MODEL_PATH } = require('../dist');
const { prepareModelDir, runSpec, compareGroups, adjust, formatTable, nllPairs } = require('../bench/fidelity');
const { mulberry32, normalQuantile, pairedTest, welchTest } = require('./helpers/stats');

const SPECS = [...ALGORITHMS.map((a) => `fullDiff:${a}`), ...ALGORITHMS.map((a) => `semiDiff:${a}`)];
const OPTIONS = {
  length: 16, steps: 6, semiSteps: 3, blockSize: 8, batch: 128, samples: 128, temperature: 1, mc: 2, mcBatch: 2, seed: 20261127n,
};
// Family-wise level of the whole comparison: a loose bound, so that only a real change fails.
const ALPHA = 1e-3;

describe('fast mode: same sample distribution as reference mode, every algorithm (demo model, 256-token vocabulary)', function () {
  this.timeout(300000);
  let info;
  let model;
  let ctx;
  before(async function () {
    if (!fs.existsSync(path.join(DEMO_MODEL_PATH, 'model.safetensors'))) this.skip();
    info = prepareModelDir({ modelDir: DEMO_MODEL_PATH, length: OPTIONS.length, vocab: 256 });
    ({ model } = await smartModelLoader(info.dir, { device: 'cpu', torchscriptCacheDir: path.join(info.dir, 'ts') }));
    ctx = { eos: info.eos, mask: info.mask, vocabSize: info.vocabSize, topK: 32, permutations: 999, seed: 1, textEntropy: null };
  });
  after(() => {
    model?.dispose();
    if (info) fs.rmSync(info.dir, { recursive: true, force: true });
  });

  it(`no statistic of any algorithm differs (Holm over all tests, family-wise ${ALPHA})`, async () => {
    const comparisons = [];
    for (const [i, spec] of SPECS.entries()) {
      const r = await runSpec(model, spec, i, OPTIONS, Infinity);
      comparisons.push({ name: spec, n: [r.groups.reference.length, r.groups.fast.length], rows: compareGroups(r.groups.reference, r.groups.fast, ctx) });
    }
    adjust(comparisons);
    const failed = comparisons.flatMap((c) => c.rows.filter((r) => r.pHolm !== null && r.pHolm < ALPHA).map((r) => `${c.name} ${r.stat}: p(Holm) ${r.pHolm.toExponential(2)}`));
    const nll = comparisons.map((c) => c.rows.find((r) => r.key === 'nll'));
    console.log(`      NLL differences (fast − reference): ${nll.map((r, i) => `${SPECS[i]} ${r.diff.toFixed(3)}±${r.se.toFixed(3)}`).join(', ')}`);
    assert.deepStrictEqual(failed, [], `\n${formatTable(comparisons)}`);
  });

  it('the NLL is compared pair by pair (samples scored with the same draws), by key; unpaired runs fall back', async () => {
    // a run's pairs: the k-th reference and fast sample of each round share their scoring draws
    const r = await runSpec(model, 'fullDiff:acs', 200, { ...OPTIONS, batch: 8, samples: 16 }, Infinity);
    const pairs = nllPairs(r.groups.reference, r.groups.fast);
    assert.strictEqual(pairs.length, 16);
    assert.deepStrictEqual(r.groups.fast.map((s) => s.pair), r.groups.reference.map((s) => s.pair));
    assert.match(compareGroups(r.groups.reference, r.groups.fast, ctx).find((x) => x.key === 'nll').stat, /paired/);
    // synthetic: a large noise shared within pairs hides a shift of 0.3 from Welch's test, not
    // from the paired one; pairs are matched by key, whatever the order
    const rand = mulberry32(5);
    const normal = () => normalQuantile(Math.min(1 - 1e-12, Math.max(1e-12, rand())));
    const ref = [];
    const fast = [];
    for (let i = 0; i < 200; i++) {
      const shared = 3 * normal();
      ref.push({ pair: `k${i}`, nll: shared + 0.3 * normal() });
      fast.push({ pair: `k${i}`, nll: shared + 0.3 * normal() + 0.3 });
    }
    const shuffled = [...fast].reverse();
    const p = nllPairs(ref, shuffled);
    const paired = pairedTest(p.map((x) => x[0]), p.map((x) => x[1]));
    assert.ok(paired.p < 1e-6 && Math.abs(paired.diff - 0.3) < 0.1, JSON.stringify(paired));
    assert.ok(welchTest(ref.map((s) => s.nll), fast.map((s) => s.nll)).p > 0.05);
    // no pairing: keys missing, repeated, unmatched, or groups of different sizes
    assert.strictEqual(nllPairs(ref.map(({ nll }) => ({ nll })), fast), null);
    assert.strictEqual(nllPairs(ref.map((s) => ({ ...s, pair: 'same' })), fast), null);
    assert.strictEqual(nllPairs(ref, fast.map((s, i) => ({ ...s, pair: `other${i}` }))), null);
    assert.strictEqual(nllPairs(ref.slice(1), fast), null);
  });

  it('negative control: fast mode at temperature 0.8 against reference mode at 1 is rejected', async () => {
    const comparisons = [];
    for (const [i, spec] of ['fullDiff:acs', 'semiDiff:remask'].entries()) {
      const r = await runSpec(model, spec, 100 + i, { ...OPTIONS, fastTemperature: 0.8 }, Infinity);
      comparisons.push({ name: spec, n: [r.groups.reference.length, r.groups.fast.length], rows: compareGroups(r.groups.reference, r.groups.fast, ctx) });
    }
    adjust(comparisons);
    for (const c of comparisons) {
      const best = Math.min(...c.rows.filter((r) => r.pHolm !== null).map((r) => r.pHolm));
      console.log(`      ${c.name}: smallest Holm-adjusted p ${best.toExponential(1)} (${c.rows.filter((r) => r.pHolm !== null && r.pHolm < ALPHA).map((r) => r.key).join(', ')})`);
      assert.ok(best < ALPHA, `${c.name}: a lower temperature was not rejected (smallest p(Holm) ${best})\n${formatTable([c])}`);
    }
  });
});
