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
