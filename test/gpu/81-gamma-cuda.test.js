'use strict';
// GPU suite (npm run test:gpu): the gamma model's CUDA forward against upstream's own CUDA
// logits (tiny-gamma cuda.*: a bare HDLM_Gamma called outside autocast, i.e. precision context C;
// its logits are bf16, stored as float32), and the gamma samplers on CUDA. Skips without CUDA.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { smartModelLoader, gammaSample, makeBlockAnnealing, runtimeInfo } = require('../../dist');
const { FIXTURES, readReference, rowsOf, tempDir } = require('../helpers/reference');

const cuda = runtimeInfo().cudaDeviceCount > 0;

function fixtureDir(name) {
  for (const root of [process.env.HDLM_FIXTURES, FIXTURES].filter(Boolean)) {
    const dir = path.join(root, name);
    if (fs.existsSync(path.join(dir, 'model.safetensors')) && fs.existsSync(path.join(dir, 'reference.safetensors'))) return dir;
  }
  return null;
}

const floatRows = (t) => {
  const [r, c] = t.shape;
  return Array.from({ length: r }, (_, i) => Array.from(t.data.subarray(i * c, (i + 1) * c)));
};

describe('GPU: tiny-gamma on CUDA reproduces upstream', function () {
  this.timeout(600000);
  const dir = fixtureDir('tiny-gamma');
  let cache;
  let ref;
  before(function () {
    if (!cuda) {
      console.log(`    skipped: no CUDA (libtorch ${runtimeInfo().libtorchVersion}, cudaCompiled=${runtimeInfo().cudaCompiled})`);
      this.skip();
    }
    if (!dir) {
      console.log('    skipped: no tiny-gamma weights (set HDLM_FIXTURES)');
      this.skip();
    }
    cache = tempDir('gpu-gamma');
    ref = readReference(path.join(dir, 'reference.safetensors'));
  });
  after(() => cache && fs.rmSync(cache, { recursive: true, force: true }));

  it("logits in context C equal upstream's cuda.* (head512, probe columns, argmax)", async () => {
    const { model } = await smartModelLoader(dir, { device: 'cuda', precision: 'C', torchscriptCacheDir: cache });
    try {
      const logits = await model.forward(rowsOf(ref['logits_input.tokens']), floatRows(ref['logits_input.sigma']), rowsOf(ref['logits_input.positions']));
      const V = logits.shape[2];
      const rows = logits.shape[0] * logits.shape[1];
      const head = ref['cuda.head512'].data;
      const probe = ref['cuda.probe'].data;
      const idx = Array.from(ref.probe_idx.data, Number);
      const argmax = Array.from(ref['cuda.argmax'].data, Number);
      let maxDiff = 0;
      let argmaxSame = 0;
      for (let r = 0; r < rows; r++) {
        const row = logits.data.subarray(r * V, (r + 1) * V);
        for (let j = 0; j < 512; j++) maxDiff = Math.max(maxDiff, Math.abs(row[j] - head[r * 512 + j]));
        for (let j = 0; j < idx.length; j++) maxDiff = Math.max(maxDiff, Math.abs(row[idx[j]] - probe[r * idx.length + j]));
        let best = 0;
        for (let j = 1; j < V; j++) if (row[j] > row[best]) best = j;
        if (best === argmax[r]) argmaxSame++;
      }
      console.log(`      gamma context C: max abs diff ${maxDiff}, argmax ${argmaxSame}/${rows}`);
      assert.strictEqual(argmaxSame, rows, `argmax agrees on ${argmaxSame}/${rows}`);
      assert.strictEqual(maxDiff, 0, `max abs diff ${maxDiff}`);
    } finally {
      model.dispose();
    }
  });

  for (const precision of ['A', 'C']) {
    it(`gamma NAR and SAR samplers run on CUDA in context ${precision}: no mask left, seeded`, async () => {
      const { model } = await smartModelLoader(dir, { device: 'cuda', precision, torchscriptCacheDir: cache });
      try {
        for (const samplingMethod of ['NAR', 'SAR']) {
          const opts = { model, metaschedule: makeBlockAnnealing(16, 8), samplingMethod, batchSize: 2, contextLength: 64, seed: 5 };
          const a = await gammaSample(opts);
          assert.strictEqual(a.flat().filter((x) => x === 50257).length, 0);
          assert.deepStrictEqual(await gammaSample(opts), a);
        }
      } finally {
        model.dispose();
      }
    });
  }
});
