'use strict';
// Gamma samplers (upstream get_sa_sampling_fn, NAR and SAR): invariants on the tiny-gamma fixture.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const {
  smartModelLoader, gammaSample, getSaSamplingFn, fullDiff, makeBlockAnnealing, makeSimpleAnnealing, makeHybridAnnealing,
  AbortError, HdlmError,
} = require('../dist');
const { FIXTURES, DEMO_MODEL, tempDir } = require('./helpers/reference');

const MASK = 50257;

describe('samplers: gamma NAR / SAR (tiny-gamma)', function () {
  this.timeout(300000);
  let cache;
  let model;
  before(async () => {
    cache = tempDir('gs');
    ({ model } = await smartModelLoader(path.join(FIXTURES, 'tiny-gamma'), { device: 'cpu', torchscriptCacheDir: cache }));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  const ms = makeBlockAnnealing(8, 4); // 3 blocks of 8 for L = 24: 12 model calls
  const base = { metaschedule: ms, batchSize: 2, contextLength: 24, seed: 11 };

  for (const samplingMethod of ['NAR', 'SAR']) {
    describe(samplingMethod, () => {
      let out;
      let steps;
      before(async () => {
        steps = [];
        out = await gammaSample({ model, ...base, samplingMethod, onStep: (s) => steps.push(s) });
      });

      it('returns batchSize rows of contextLength ids in [0, V)', () => {
        assert.strictEqual(out.length, 2);
        for (const row of out) {
          assert.strictEqual(row.length, 24);
          for (const id of row) assert.ok(Number.isInteger(id) && id >= 0 && id < 50258, String(id));
        }
      });

      it('leaves no mask: every block ends at level 0, where the mask state gets probability 0', () => {
        assert.strictEqual(out.flat().filter((x) => x === MASK).length, 0);
      });

      it('runs max_step(L) − 1 metaschedule steps and reports each', () => {
        assert.strictEqual(ms.maxStep(24), 13);
        assert.deepStrictEqual(steps.map((s) => s.step), Array.from({ length: 12 }, (_, i) => i + 1));
        assert.ok(steps.every((s) => s.total === 12 && s.tokens === null));
      });

      it('is deterministic for a seed, and the seed matters', async () => {
        const again = await gammaSample({ model, ...base, samplingMethod });
        assert.deepStrictEqual(again, out);
        const other = await gammaSample({ model, ...base, samplingMethod, seed: 12 });
        assert.notDeepStrictEqual(other, out);
      });
    });
  }

  it('NAR: settled blocks never change; the block in progress is the only one moving (stepTokens)', async () => {
    const snaps = [];
    await gammaSample({ model, ...base, batchSize: 1, stepTokens: true, onStep: (s) => snaps.push(s.tokens[0]) });
    assert.strictEqual(snaps.length, 12);
    // block b (positions 8b..8b+7) is active on steps 4b+1 .. 4b+4 and settled afterwards
    for (let k = 5; k <= 12; k++) {
      const settledEnd = 8 * Math.floor((k - 1) / 4);
      assert.deepStrictEqual(snaps[k - 1].slice(0, settledEnd), snaps[3 + 4 * Math.floor((settledEnd - 8) / 8)].slice(0, settledEnd), `step ${k}`);
    }
    // worthless positions keep their limit sample until their block starts
    assert.deepStrictEqual(snaps[0].slice(8), snaps[3].slice(8));
    assert.ok(snaps[3].slice(0, 8).every((x) => x !== MASK), 'block 0 is clean after its level-0 step');
  });

  it('SAR differs from NAR (0.9 vs 0.99 step factors and the growing window), both valid', async () => {
    const nar = await gammaSample({ model, ...base, samplingMethod: 'NAR' });
    const sar = await gammaSample({ model, ...base, samplingMethod: 'SAR' });
    assert.notDeepStrictEqual(nar, sar);
  });

  it('runs simple and hybrid annealing schedules too, ending unmasked', async () => {
    for (const schedule of [makeSimpleAnnealing(4, 4), makeHybridAnnealing(4, 3, 128)]) {
      const rows = await gammaSample({ model, metaschedule: schedule, contextLength: 12, seed: 3 });
      assert.strictEqual(rows[0].length, 12, String(schedule));
      assert.strictEqual(rows[0].filter((x) => x === MASK).length, 0, String(schedule));
    }
  });

  it("getSaSamplingFn: upstream's factory shape (batch_dims) gives the same samples", async () => {
    const sampler = getSaSamplingFn({ metaschedule: ms, batchDims: [2, 24], seed: 11 });
    assert.deepStrictEqual(await sampler(model), await gammaSample({ model, ...base }));
  });

  it('an absorb-graph gamma model: the limit is all masks, and every position ends unmasked', async () => {
    const dir = path.join(cache, 'absorb');
    fs.mkdirSync(dir);
    const cfg = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tiny-gamma', 'config.json'), 'utf8'));
    cfg.graph.type = 'absorb';
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    fs.symlinkSync(path.join(FIXTURES, 'tiny-gamma', 'model.safetensors'), path.join(dir, 'model.safetensors'));
    const { model: absorb } = await smartModelLoader(dir, { device: 'cpu', useCache: false });
    try {
      const snaps = [];
      const rows = await gammaSample({ model: absorb, ...base, batchSize: 1, stepTokens: true, onStep: (s) => snaps.push(s.tokens[0]) });
      // before block 1 starts (steps 1..4 touch block 0 only) its positions still hold the limit: the mask
      assert.ok(snaps[3].slice(8).every((x) => x === MASK));
      assert.strictEqual(rows[0].filter((x) => x === MASK).length, 0);
    } finally {
      absorb.dispose();
    }
  });

  it('analytic QGamma step on known logits: tokens follow stag(exp(ls), Δσ)·r(x, Δσ) (chi-square)', async () => {
    // tiny-gamma with output weights 0: logits = output bias b, then scale_by_sigma shifts them
    const { readSafetensorsHeader } = require('../dist/core/checkpoint');
    const { writeSafetensors, readTensorAsFloat32 } = require('./helpers/safetensors-writer');
    const CHOICES = [100, 200, 300, 400];
    const LOGITS = [2, 1.5, 1, 0.5];
    const MASK_LOGIT = 6; // large enough that staying masked has positive mass
    const src = path.join(FIXTURES, 'tiny-gamma');
    const dir = path.join(cache, 'known-gamma');
    const header = readSafetensorsHeader(path.join(src, 'model.safetensors'));
    const tensors = {};
    for (const e of header.tensors) {
      let data = readTensorAsFloat32(path.join(src, 'model.safetensors'), e);
      if (e.name === 'output_layer.linear.weight') data = new Float32Array(data.length);
      if (e.name === 'output_layer.linear.bias') {
        data = new Float32Array(data.length).fill(-40);
        CHOICES.forEach((id, i) => { data[id] = LOGITS[i]; });
        data[MASK] = MASK_LOGIT;
      }
      tensors[e.name] = { dtype: 'F32', shape: e.shape, data };
    }
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    fs.copyFileSync(path.join(src, 'config.json'), path.join(dir, 'config.json'));
    const { model: known } = await smartModelLoader(dir, { device: 'cpu', useCache: false });

    // expected distribution after step 1 of block annealing (width 8, tau 8): level 7 → t = 1 − εa,
    // step Δ = (1 − 2εa)/7, from the limit sample (masks, up to a 0.08 % uniform share)
    const V = 50258;
    const N = V - 1;
    const gamma = 0.01;
    const eps = 1e-4;
    const ea = 10 * eps;
    const delta = (1 - 2 * ea) / 7;
    const sig = (t) => -Math.log1p(-(1 - 0.005) * t);
    const t = ea + 7 * delta;
    const sNow = sig(t);
    const dsig = sNow - sig(t - delta);
    const shift = Math.log(Math.expm1(sNow)) + Math.log(V - 1);
    const score = (b) => Math.exp(b - shift);
    const sChoices = LOGITS.map(score);
    const sMask = score(MASK_LOGIT);
    const sOther = score(-40);
    const sumNonMask = sChoices.reduce((a, b) => a + b, 0) + (N - CHOICES.length) * sOther;
    const sumAll = sumNonMask + sMask;
    const eP = Math.exp(dsig);
    const eN = Math.exp(-dsig);
    const uniShare = ((eN - 1) / (N * eN)) * sumNonMask;
    const A = Math.exp(-(1 - gamma) * dsig);
    const pChoice = sChoices.map((sj) => ((1 - gamma) * sj * eP + gamma * (uniShare + sj / eN)) * (1 - A));
    const pMask = (1 - gamma) * (sMask * eP + (1 - eP) * sumAll) + gamma * sMask;
    const pOther = ((1 - gamma) * sOther * eP + gamma * (uniShare + sOther / eN)) * (1 - A);
    assert.ok(pMask > 0 && pChoice.every((p) => p > 0), 'the categories compared have positive mass');
    assert.ok(pOther < 0, 'other tokens have negative mass here (never drawn)');
    const z = pChoice.reduce((a, b) => a + b, 0) + pMask;
    const expected = [...pChoice, pMask].map((p) => p / z);

    const counts = [0, 0, 0, 0, 0];
    let outside = 0;
    try {
      for (let seed = 0; seed < 6; seed++) {
        const ac = new AbortController();
        let first = null;
        await gammaSample({
          model: known, metaschedule: makeBlockAnnealing(8, 8), batchSize: 24, contextLength: 8, seed, stepTokens: true, signal: ac.signal,
          onStep: (s) => { if (s.step === 1) { first = s.tokens; ac.abort(); } },
        }).catch((e) => { if (!(e instanceof AbortError)) throw e; });
        for (const row of first) for (const id of row) {
          const k = id === MASK ? 4 : CHOICES.indexOf(id);
          if (k < 0) outside++;
          else counts[k]++;
        }
      }
    } finally {
      known.dispose();
    }
    assert.ok(outside <= 3, `${outside} draws outside the support (only a non-mask limit token can do that)`);
    const n = counts.reduce((a, b) => a + b, 0);
    const chi2 = counts.reduce((acc, c, i) => acc + (c - n * expected[i]) ** 2 / (n * expected[i]), 0);
    assert.ok(chi2 < 18.47, `chi2 ${chi2.toFixed(2)} >= 18.47 (4 dof, p < 0.001); counts ${counts}, expected ${expected.map((p) => (p * n).toFixed(1))}`);
  });

  it('an AbortSignal stops it', async () => {
    const ac = new AbortController();
    const p = gammaSample({ model, ...base, signal: ac.signal, onStep: (s) => s.step === 2 && ac.abort() });
    await assert.rejects(p, (e) => e instanceof AbortError && e.code === 'HDLM_ABORTED');
  });

  it('validates its options', async () => {
    const bad = (re) => (e) => e instanceof HdlmError && e.code === 'HDLM_INVALID_ARGUMENT' && re.test(e.message);
    await assert.rejects(gammaSample({ model, ...base, samplingMethod: 'AR' }), bad(/Expected .* for samplingMethod/));
    await assert.rejects(gammaSample({ model, ...base, contextLength: 129 }), bad(/contextLength/));
    await assert.rejects(gammaSample({ model, ...base, metaschedule: { type: 'block' } }), bad(/metaschedule/));
    await assert.rejects(gammaSample({ model, ...base, metaschedule: makeBlockAnnealing(8, 1) }), bad(/tau >= 2/));
    await assert.rejects(gammaSample({ model, ...base, eps: 0 }), bad(/eps/));
    await assert.rejects(gammaSample({ model, ...base, contextAttention: 'diagonal' }), bad(/contextAttention/));
    await assert.rejects(gammaSample({ model, ...base, steps: 10 }), bad(/Unknown option steps/));
    await assert.rejects(gammaSample({ model, ...base, predictor: 'euler' }), bad(/predictor/));
  });

  it('the families do not mix: fullDiff refuses a gamma model, gammaSample an epsilon one', async () => {
    await assert.rejects(fullDiff({ model, steps: 2 }), (e) => e.code === 'HDLM_UNSUPPORTED' && /gammaSample/.test(e.message));
    const { model: eps } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache });
    try {
      await assert.rejects(gammaSample({ model: eps, metaschedule: ms }), (e) => e.code === 'HDLM_UNSUPPORTED' && /gamma_hybrid/.test(e.message));
    } finally {
      eps.dispose();
    }
  });
});
