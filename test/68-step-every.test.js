'use strict';
// `stepEvery`: onStep (and stepTokens' copies, and streamDiff's frames) at every k-th step and the
// last only, in every sampler, lone and batched; the tokens a call returns and the tokens it sees
// at a step do not depend on it; the batched sampler's native loop returns to JavaScript only at
// steps somebody watches.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const {
  smartModelLoader, fullDiff, semiDiff, fullDiffShifted, gammaSample, streamDiff, makeBlockAnnealing, HdlmError,
} = require('../dist');
const { DEMO_MODEL, tempDir } = require('./helpers/reference');

const FIXTURES = path.join(__dirname, 'fixtures');
const PROMPT = [464, 2003, 286];

/** Steps a caller with stepEvery k sees out of total: the multiples of k and the last. */
function seen(total, k) {
  const out = [];
  for (let s = 1; s <= total; s++) if (s % k === 0 || s === total) out.push(s);
  return out;
}

/** Runs fn with an onStep that records { step, total, tokens }; returns { result, steps }. */
async function watched(fn, options) {
  const steps = [];
  const result = await fn({ ...options, onStep: (s) => steps.push(s) });
  return { result, steps };
}

describe('stepEvery: onStep at every k-th step and the last', function () {
  this.timeout(180000);
  let cache;
  let model;

  before(async () => {
    cache = tempDir('every');
    ({ model } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache }));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  const base = { alg: 'acs', steps: 11, seed: 21, contextLength: 16, batchSize: 2, prompt: PROMPT, eta: 0.1 };

  for (const [name, extra] of [['lone fast', { batching: false }], ['reference', { reference: true }], ['batched', {}]]) {
    it(`fullDiff (${name}): the steps seen, their tokens those of stepEvery 1, the result unchanged`, async () => {
      const every1 = await watched(fullDiff, { model, ...base, ...extra, stepTokens: true });
      const every4 = await watched(fullDiff, { model, ...base, ...extra, stepTokens: true, stepEvery: 4 });
      const plain = await fullDiff({ model, ...base, ...extra });
      assert.deepStrictEqual(every1.steps.map((s) => s.step), seen(11, 1));
      assert.deepStrictEqual(every4.steps.map((s) => s.step), [4, 8, 11]);
      for (const s of every4.steps) {
        assert.strictEqual(s.total, 11);
        assert.deepStrictEqual(s.tokens, every1.steps[s.step - 1].tokens, `tokens at step ${s.step}`);
      }
      assert.deepStrictEqual(every4.result, plain);
      assert.deepStrictEqual(every1.result, plain);
      assert.deepStrictEqual(every4.steps[2].tokens, plain);
    });
  }

  it('a stepEvery larger than the steps: only the last step', async () => {
    const r = await watched(fullDiff, { model, ...base, stepEvery: 100, stepTokens: true });
    assert.deepStrictEqual(r.steps.map((s) => s.step), [11]);
    assert.deepStrictEqual(r.steps[0].tokens, r.result);
  });

  it('semiDiff counts over all blocks; fullDiffShifted too; without stepTokens no tokens', async () => {
    const semi = await watched(semiDiff, { model, ...base, blockSize: 8, steps: 5, stepEvery: 3 });
    assert.deepStrictEqual(semi.steps.map((s) => s.step), seen(10, 3)); // 2 blocks × 5 steps
    assert.ok(semi.steps.every((s) => s.tokens === null));
    const shifted = await watched(fullDiffShifted, { model, alg: 'original', steps: 7, seed: 3, contextLength: 16, prompt: PROMPT, stepEvery: 2, stepTokens: true });
    assert.deepStrictEqual(shifted.steps.map((s) => s.step), seen(shifted.steps[0].total, 2));
    assert.deepStrictEqual(shifted.steps[shifted.steps.length - 1].tokens, shifted.result);
  });

  it('batched: each call sees its own steps, its tokens as alone; the native loop returns only at watched steps', async () => {
    const a = { ...base, steps: 10, seed: 5 };
    const b = { ...base, alg: 'original', steps: 7, seed: 6, batchSize: 1, prompt: undefined };
    const c = { ...base, steps: 13, seed: 7 }; // unwatched
    const aloneA = await watched(fullDiff, { model, ...a, stepTokens: true, batching: false });
    const aloneB = await watched(fullDiff, { model, ...b, stepTokens: true, batching: false });
    const aloneC = await fullDiff({ model, ...c, batching: false });
    const stepsA = [];
    const stepsB = [];
    const [ra, rb, rc] = await Promise.all([
      fullDiff({ model, ...a, stepTokens: true, stepEvery: 4, onStep: (s) => stepsA.push(s) }),
      fullDiff({ model, ...b, stepTokens: true, stepEvery: 3, onStep: (s) => stepsB.push(s) }),
      fullDiff({ model, ...c }),
    ]);
    assert.deepStrictEqual(stepsA.map((s) => s.step), [4, 8, 10]);
    assert.deepStrictEqual(stepsB.map((s) => s.step), [3, 6, 7]);
    for (const s of stepsA) assert.deepStrictEqual(s.tokens, aloneA.steps[s.step - 1].tokens, `a at ${s.step}`);
    for (const s of stepsB) assert.deepStrictEqual(s.tokens, aloneB.steps[s.step - 1].tokens, `b at ${s.step}`);
    assert.deepStrictEqual(ra, aloneA.result);
    assert.deepStrictEqual(rb, aloneB.result);
    assert.deepStrictEqual(rc, aloneC);
  });

  it('native batch: a step call runs to the next watched step, with tokens only there', async () => {
    const batch = model.native().openBatch();
    const options = (steps, seed, stepEvery, stepTokens) => ({
      mode: 'full', alg: 'acs', prompt: null, promptLength: 0, batchSize: 1, steps, temperature: 1,
      cfgScale: 0, contextLength: 16, eps: 1e-5, maskId: model.maskId, eta: 0.015, blockSize: 16, seed, stepTokens, stepEvery, reference: false,
      repetitionPenalty: 1.2, bosId: 50256, metaschedule: null, contextAttention: 'block_causal', blockAttention: 'full',
    });
    try {
      batch.add(1, options(10, 1n, 4, true), null, true);
      batch.add(2, options(20, 2n, 1, false), null, false);
      // 1 is watched every 4 steps: the call stops at step 4, 1 with its tokens, 2 without
      let events = await batch.step(16);
      assert.deepStrictEqual(events.map((e) => [e.id, e.step, e.done]), [[1, 4, false], [2, 4, false]]);
      assert.strictEqual(events[0].tokens.length, 16);
      assert.strictEqual(events[1].tokens, null);
      events = await batch.step(16);
      assert.deepStrictEqual(events.map((e) => [e.id, e.step, e.done]), [[1, 8, false], [2, 8, false]]);
      // 1's last step (10) is watched and ends it
      events = await batch.step(16);
      assert.deepStrictEqual(events.map((e) => [e.id, e.step, e.done]), [[1, 10, true], [2, 10, false]]);
      // 2 alone, unwatched: up to the cap
      events = await batch.step(6);
      assert.deepStrictEqual(events.map((e) => [e.id, e.step, e.done]), [[2, 16, false]]);
      assert.throws(() => batch.add(3, options(5, 3n, 0, false), null, true), /consistent sampling options/);
    } finally {
      batch.close();
    }
  });

  it('streamDiff: frames at every k-th step and the last; frames and skipped add up to the steps framed', async () => {
    const frames = [];
    const stream = streamDiff({ model, ...base, steps: 13, stepEvery: 5 });
    for await (const f of stream) frames.push(f);
    assert.deepStrictEqual(frames.map((f) => f.step).filter((s) => !seen(13, 5).includes(s)), []);
    assert.strictEqual(frames[frames.length - 1].step, 13);
    assert.strictEqual(frames.reduce((n, f) => n + 1 + f.skipped, 0), seen(13, 5).length);
    assert.deepStrictEqual(frames[frames.length - 1].tokens, await stream.result);
  });

  it('bad stepEvery values are clear errors', async () => {
    for (const bad of [0, -1, 1.5, '2', Number.NaN, 2 ** 60]) {
      await assert.rejects(fullDiff({ model, ...base, stepEvery: bad, onStep: () => {} }), (e) => e instanceof HdlmError && e.code === 'HDLM_INVALID_ARGUMENT' && /stepEvery/.test(e.message), String(bad));
    }
    assert.throws(() => streamDiff({ model, ...base, stepEvery: 0 }), /stepEvery/);
  });
});

describe('stepEvery in gammaSample', function () {
  this.timeout(180000);
  let cache;
  let model;
  before(async () => {
    cache = tempDir('every-gamma');
    ({ model } = await smartModelLoader(path.join(FIXTURES, 'tiny-gamma'), { device: 'cpu', torchscriptCacheDir: cache }));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  for (const samplingMethod of ['NAR', 'SAR']) {
    it(`${samplingMethod}: the steps seen and their tokens as with stepEvery 1`, async () => {
      const o = { model, metaschedule: makeBlockAnnealing(8, 4), batchSize: 1, contextLength: 24, seed: 11, samplingMethod, stepTokens: true };
      const every1 = await watched(gammaSample, o);
      const every5 = await watched(gammaSample, { ...o, stepEvery: 5 });
      const total = every1.steps[0].total;
      assert.deepStrictEqual(every5.steps.map((s) => s.step), seen(total, 5));
      for (const s of every5.steps) assert.deepStrictEqual(s.tokens, every1.steps.find((x) => x.step === s.step).tokens);
      assert.deepStrictEqual(every5.result, every1.result);
    });
  }
});
