'use strict';
// GPU suite (npm run test:gpu): allocated CUDA memory returns to its starting value after
// dispose — after plain use, after aborted calls and after dispose() with calls running.
// Skips without CUDA.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { smartModelLoader, fullDiff, runtimeInfo, cudaMemory } = require('../../dist');
const { DEMO_MODEL, tempDir } = require('../helpers/reference');

const cuda = runtimeInfo().cudaDeviceCount > 0;

describe('GPU: CUDA memory returns after dispose', function () {
  let cache;
  before(async function () {
    if (!cuda) this.skip();
    if (!fs.existsSync(path.join(DEMO_MODEL, 'model.safetensors'))) {
      console.log('    skipped: no demo model weights');
      this.skip();
    }
    cache = tempDir('gpu-mem');
    // A warm-up: process-wide, one-time allocations are not the model's and stay — cuBLAS keeps
    // one workspace per (thread, stream), so every worker thread of the addon must have run once,
    // and the fast path's capture stream has its own.
    const { model } = await smartModelLoader(DEMO_MODEL, { device: 'cuda:0', torchscriptCacheDir: cache });
    const calls = 4 * runtimeInfo().workerThreads;
    for (const reference of [true, false]) {
      await Promise.all(Array.from({ length: calls }, (_, k) => fullDiff({ model, steps: 4, contextLength: 64, seed: k, batchSize: 2, reference })));
      await Promise.all(Array.from({ length: calls }, () => model.forward([[464, 2003, 286]])));
    }
    model.dispose();
  });
  after(() => cache && fs.rmSync(cache, { recursive: true, force: true }));

  const load = () => smartModelLoader(DEMO_MODEL, { device: 'cuda:0', torchscriptCacheDir: cache });

  it('load, forward, fullDiff, dispose: allocated bytes flat over 10 cycles', async () => {
    // cuBLAS gives each (thread, stream) its own workspace (33 MiB here) the first time that
    // thread uses the fast path's capture stream; with W worker threads that is at most W
    // one-time allocations, after which every cycle must end exactly where the last one did.
    const W = runtimeInfo().workerThreads;
    const start = cudaMemory(0).allocated;
    const after = [];
    for (let i = 0; i < 10; i++) {
      const { model } = await load();
      assert.ok(cudaMemory(0).allocated > start, 'the weights are on the GPU');
      await model.forward([[464, 2003, 286]]);
      await fullDiff({ model, steps: 4, contextLength: 64, seed: i, batchSize: 2 });
      model.dispose(); // no call runs: the module is freed here
      after.push(cudaMemory(0).allocated);
    }
    console.log(`      allocated at start ${start} bytes; after each cycle ${after.join(', ')}`);
    // A model leaking anything would add to every cycle: at most W steps up, each one workspace.
    let ups = 0;
    let prev = start;
    for (const [i, a] of after.entries()) {
      assert.ok(a >= prev, `cycle ${i}: allocated went down below an earlier cycle`);
      if (a > prev) {
        ups++;
        assert.ok(a - prev <= 40 * 2 ** 20, `cycle ${i}: +${a - prev} bytes`);
      }
      prev = a;
    }
    assert.ok(ups <= W, `allocated grew in ${ups} of 10 cycles (worker threads: ${W})`);
  });

  it('aborted calls and dispose() with calls running also return every byte', async () => {
    const start = cudaMemory(0).allocated;
    const { model } = await load();
    const c = new AbortController();
    await assert.rejects(fullDiff({ model, steps: 100000, contextLength: 128, signal: c.signal, onStep: ({ step }) => step === 3 && c.abort() }), { name: 'AbortError' });
    const running = Array.from({ length: 4 }, (_, k) => fullDiff({ model, steps: 100000, contextLength: 128, seed: k }).catch((e) => e.code));
    await new Promise((r) => setTimeout(r, 200));
    model.dispose();
    assert.deepStrictEqual(await Promise.all(running), ['HDLM_DISPOSED', 'HDLM_DISPOSED', 'HDLM_DISPOSED', 'HDLM_DISPOSED']);
    // a pool thread drops its model reference before its call settles: all freed by now
    assert.strictEqual(cudaMemory(0).allocated, start);
  });
});
