'use strict';
// GPU suite: step-level batching on CUDA (lib/core/batcher.ts, native/engine/samplers/batched.cc).
// There every fast fullDiff algorithm and semiDiff join the model's batch, the remask family and
// semiDiff through the lone sampler's own step on their rows of the batched forward. On CUDA a row's bf16 forward may depend
// on the batch shape (and which calls share a step depends on timing), so batched calls are
// checked for what must hold exactly (every call in the batch, prompt and fixed tokens kept,
// nothing left masked) and, against lone calls, in distribution (per-position chi-square on the
// demo model).
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { smartModelLoader, fullDiff, semiDiff, runtimeInfo } = require('../../dist');
const { batchedCalls } = require('../../dist/core/batcher');
const { DEMO_MODEL, tempDir } = require('../helpers/reference');
const { chiSquareTwoSample } = require('../helpers/stats');

const cuda = runtimeInfo().cudaDeviceCount > 0;
const PROMPT = [464, 2003, 286, 11666, 4430];
const MASK = 50257;

describe('GPU: batched fast sampling on CUDA (brown-epsilon)', function () {
  this.timeout(600000);
  let cache;
  let model;
  before(async function () {
    if (!cuda) {
      console.log('    skipped: no CUDA');
      this.skip();
    }
    if (!fs.existsSync(path.join(DEMO_MODEL, 'model.safetensors'))) {
      console.log('    skipped: no demo model weights');
      this.skip();
    }
    cache = tempDir('gpu-batch');
    ({ model } = await smartModelLoader(DEMO_MODEL, { device: 'cuda', torchscriptCacheDir: cache }));
  });
  after(() => {
    model?.dispose();
    if (cache) fs.rmSync(cache, { recursive: true, force: true });
  });

  const calls = [
    { alg: 'acs', steps: 16, seed: 1, contextLength: 64, batchSize: 2, prompt: PROMPT },
    { alg: 'original', steps: 12, seed: 2, contextLength: 64 },
    { alg: 'remask', steps: 10, seed: 3, contextLength: 64, batchSize: 3, prompt: PROMPT },
    { alg: 'remask_adhoc_shuffle', steps: 14, seed: 4, contextLength: 48, eta: 0.2, fixed: [{ at: 30, tokens: [1000, 1001, 1002] }] },
    { alg: 'remdm', steps: 9, seed: 5, contextLength: 64, eta: 0.05, temperature: 0.8 },
    { alg: 'remask', steps: 20, seed: 6, contextLength: 48, temperature: 0 },
    // semiDiff: prefixes of 16, 32, 48 and 64 tokens, sharing forwards with the calls above
    { alg: 'acs', steps: 4, seed: 10, contextLength: 64, blockSize: 16, prompt: PROMPT },
    { alg: 'remdm', steps: 3, seed: 11, contextLength: 48, blockSize: 16, batchSize: 2 },
  ];
  const sample = (c, extra) => (c.blockSize ? semiDiff : fullDiff)({ model, ...c, ...extra });

  it('every algorithm joins the batch; prompts and fixed tokens are kept, nothing is left masked', async () => {
    const inBatch = calls.map(() => 0);
    const out = await Promise.all(calls.map((c, k) => sample(c, {
      onStep: ({ step }) => step === 1 && (inBatch[k] = batchedCalls(model)),
    })));
    for (let k = 0; k < calls.length; k++) {
      assert.strictEqual(inBatch[k], calls.length, `${calls[k].alg} (${k}) ran beside ${inBatch[k] - 1} others in the batch`);
      const rows = out[k];
      assert.strictEqual(rows.length, calls[k].batchSize ?? 1);
      for (const row of rows) {
        assert.strictEqual(row.length, calls[k].contextLength);
        if (calls[k].prompt) assert.deepStrictEqual(row.slice(0, PROMPT.length), PROMPT);
        if (calls[k].alg !== 'remdm') assert.ok(!row.includes(MASK), `${calls[k].alg} (${k}) left a mask`);
      }
    }
    assert.deepStrictEqual(out[3][0].slice(30, 33), [1000, 1001, 1002]);
    assert.strictEqual(batchedCalls(model), 0);
    assert.strictEqual(model.pendingCalls, 0);
  });

  for (const [alg, blockSize] of [['acs', undefined], ['remask', undefined], ['remdm', undefined], ['acs', 8]]) {
    const what = blockSize ? `semiDiff ${alg}` : alg;
    it(`${what}: 16 concurrent batched calls draw the per-position marginals of lone calls (two-sample chi-square)`, async () => {
      const common = { prompt: PROMPT, alg, steps: blockSize ? 8 : 32, contextLength: 32, batchSize: 16, ...(blockSize ? { blockSize } : {}) };
      const lone = [];
      for (let s = 0; s < 16; s++) lone.push(...(await sample(common, { batching: false, seed: 300 + s })));
      const batched = (await Promise.all(Array.from({ length: 16 }, (_, s) => sample(common, { seed: 400 + s })))).flat();
      const ps = [];
      for (let pos = PROMPT.length; pos < 32; pos++) ps.push(chiSquareTwoSample(lone.map((r) => r[pos]), batched.map((r) => r[pos])).p);
      const rejected = ps.filter((p) => p < 0.01).length;
      console.log(`      ${what}: ${rejected}/${ps.length} positions reject at 1%; min p ${Math.min(...ps).toFixed(4)}`);
      // positions are dependent: the rejection share must stay near the nominal 1 %
      assert.ok(rejected <= 2, `${rejected}/${ps.length} positions reject at 1%`);
    });
  }

  it('aborting a remask call of a batch leaves the others to finish', async () => {
    const ctrl = new AbortController();
    const running = [
      fullDiff({ model, alg: 'remask', steps: 200, contextLength: 64, seed: 7, signal: ctrl.signal, onStep: ({ step }) => step === 5 && ctrl.abort() }),
      fullDiff({ model, alg: 'remdm', steps: 20, contextLength: 64, seed: 8 }),
      fullDiff({ model, alg: 'acs', steps: 20, contextLength: 64, seed: 9 }),
    ];
    const settled = await Promise.allSettled(running);
    assert.strictEqual(settled[0].status, 'rejected');
    assert.strictEqual(settled[0].reason.name, 'AbortError');
    assert.strictEqual(settled[0].reason.stepsDone, 5);
    assert.strictEqual(settled[1].status, 'fulfilled');
    assert.strictEqual(settled[2].status, 'fulfilled');
    assert.ok(!settled[2].value[0].includes(MASK));
    assert.strictEqual(model.pendingCalls, 0);
  });
});
