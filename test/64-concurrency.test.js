'use strict';
// Concurrency: many calls at once on one model give exactly what the same calls give one at a
// time; dispose() while calls run rejects them cleanly (HDLM_DISPOSED) and later use is a clear
// error.
const assert = require('assert');
const fs = require('fs');
const { smartModelLoader, fullDiff, semiDiff, HdlmError } = require('../dist');
const { DEMO_MODEL, tempDir } = require('./helpers/reference');

const ALGS = ['original', 'acs', 'remask', 'remask_adhoc_shuffle', 'remdm'];

describe('concurrency', function () {
  let cache;
  let model;

  before(async () => {
    cache = tempDir('conc');
    ({ model } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache }));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  const callOptions = (k) => ({
    steps: 2 + (k % 3), contextLength: 8 + (k % 4) * 4, seed: 1000 + k, alg: ALGS[k % ALGS.length],
    temperature: k % 7 === 0 ? 0 : 1, batchSize: 1 + (k % 2), prompt: k % 3 === 0 ? [464, 2003] : undefined,
  });

  it('50 concurrent fullDiff calls give the same tokens as the same calls one at a time', async () => {
    const sequential = [];
    for (let k = 0; k < 50; k++) sequential.push(await fullDiff({ model, ...callOptions(k) }));
    const concurrent = await Promise.all(Array.from({ length: 50 }, (_, k) => fullDiff({ model, ...callOptions(k) })));
    assert.strictEqual(model.pendingCalls, 0);
    for (let k = 0; k < 50; k++) assert.deepStrictEqual(concurrent[k], sequential[k], `call ${k}`);
  });

  it('concurrent forward and semiDiff calls mixed in: identical results', async () => {
    const x = [[464, 2003, 286, 50257, 50257, 4430]];
    const one = await model.forward(x);
    const semi = await semiDiff({ model, steps: 2, contextLength: 16, blockSize: 4, seed: 5 });
    const mixed = await Promise.all([
      ...Array.from({ length: 8 }, () => model.forward(x)),
      ...Array.from({ length: 4 }, () => semiDiff({ model, steps: 2, contextLength: 16, blockSize: 4, seed: 5 })),
    ]);
    for (const out of mixed.slice(0, 8)) assert.ok(Buffer.from(out.data.buffer).equals(Buffer.from(one.data.buffer)));
    for (const out of mixed.slice(8)) assert.deepStrictEqual(out, semi);
  });

  it('dispose() while calls run: every call settles; queued and running samples reject with HDLM_DISPOSED', async () => {
    const { model: m } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache });
    let started;
    const firstStep = new Promise((r) => (started = r));
    const calls = [
      ...Array.from({ length: 8 }, (_, k) => fullDiff({ model: m, steps: 100000, contextLength: 32, seed: k, onStep: () => started() })),
      m.forward([[1, 2, 3]]),
      m.forward([[4, 5, 6]]),
    ];
    await firstStep;
    assert.strictEqual(m.pendingCalls, 10);
    m.dispose();
    m.dispose(); // idempotent
    const settled = await Promise.allSettled(calls);
    const codes = settled.map((s) => (s.status === 'fulfilled' ? 'ok' : s.reason.code));
    for (const s of settled.slice(0, 8)) {
      assert.strictEqual(s.status, 'rejected');
      assert.ok(s.reason instanceof HdlmError, s.reason && s.reason.stack);
      assert.strictEqual(s.reason.code, 'HDLM_DISPOSED');
      assert.match(s.reason.message, /disposed (before this call started|while this call was running)/);
    }
    for (const s of settled.slice(8)) {
      // queued behind the samples: rejected; a forward already running would have finished
      if (s.status === 'fulfilled') assert.deepStrictEqual(s.value.shape, [1, 3, 50258]);
      else assert.strictEqual(s.reason.code, 'HDLM_DISPOSED');
    }
    assert.ok(codes.includes('HDLM_DISPOSED'), codes.join());
    assert.strictEqual(m.pendingCalls, 0);
    assert.strictEqual(m.disposed, true);
  });

  it('use after dispose is a clear HDLM_DISPOSED error, and other models are not affected', async () => {
    const { model: m } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache });
    const other = fullDiff({ model, steps: 3, contextLength: 16, seed: 9 });
    m.dispose();
    const isDisposed = (e) => e instanceof HdlmError && e.code === 'HDLM_DISPOSED' && /disposed/.test(e.message);
    await assert.rejects(fullDiff({ model: m, steps: 2, contextLength: 8 }), isDisposed);
    await assert.rejects(semiDiff({ model: m, steps: 2, contextLength: 8 }), isDisposed);
    await assert.rejects(m.forward([[1, 2]]), isDisposed);
    const out = await other;
    assert.strictEqual(out[0].length, 16);
  });
});
