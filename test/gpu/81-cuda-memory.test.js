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
    // One warm-up cycle: process-wide, one-time allocations (cuBLAS workspaces of the streams
    // in use, the fast path's capture stream) are not the model's and stay.
    const { model } = await smartModelLoader(DEMO_MODEL, { device: 'cuda:0', torchscriptCacheDir: cache });
    await model.forward([[464, 2003, 286]]);
    for (const reference of [true, false]) {
      for (let k = 0; k < 4; k++) await fullDiff({ model, steps: 4, contextLength: 64, seed: k, batchSize: 2, reference });
    }
    model.dispose();
  });
  after(() => cache && fs.rmSync(cache, { recursive: true, force: true }));

  const load = () => smartModelLoader(DEMO_MODEL, { device: 'cuda:0', torchscriptCacheDir: cache });

  it('load, forward, fullDiff, dispose: allocated bytes back to the start (10 cycles)', async () => {
    const start = cudaMemory(0).allocated;
    for (let i = 0; i < 10; i++) {
      const { model } = await load();
      assert.ok(cudaMemory(0).allocated > start, 'the weights are on the GPU');
      await model.forward([[464, 2003, 286]]);
      await fullDiff({ model, steps: 4, contextLength: 64, seed: i, batchSize: 2 });
      model.dispose(); // no call runs: the module is freed here
      assert.strictEqual(cudaMemory(0).allocated, start, `cycle ${i}`);
    }
    console.log(`      allocated at start and after 10 cycles: ${start} bytes`);
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
