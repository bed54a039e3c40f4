'use strict';
// GPU suite (npm run test:gpu): the CUDA reference path against upstream's own CUDA outputs.
// Fixtures with weights come from the folder HDLM_FIXTURES names (weights too large to commit)
// or test/fixtures; the demo model's weights from models/.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { smartModelLoader, fullDiff, semiDiff, runtimeInfo } = require('../../dist');
const { DEMO_MODEL, FIXTURES, readReference, rowsOf, tempDir } = require('../helpers/reference');

const cuda = runtimeInfo().cudaDeviceCount > 0;
const report = { gpu: process.env.HDLM_GPU_NAME || null, torch: runtimeInfo().libtorchVersion, logits: {}, samples: {} };

function fixtureDir(name) {
  for (const root of [process.env.HDLM_FIXTURES, FIXTURES].filter(Boolean)) {
    const dir = path.join(root, name);
    if (fs.existsSync(path.join(dir, 'model.safetensors')) && fs.existsSync(path.join(dir, 'reference.safetensors'))) return dir;
  }
  if (name === 'brown-epsilon' && fs.existsSync(path.join(DEMO_MODEL, 'model.safetensors'))) {
    return { weights: DEMO_MODEL, refs: path.join(FIXTURES, 'brown-epsilon') };
  }
  return null;
}

function maxDiffs(logits, ref, prefix) {
  const V = logits.shape[2];
  const rows = logits.shape[0] * logits.shape[1];
  const head = ref[`${prefix}.head512`].data;
  const probe = ref[`${prefix}.probe`].data;
  const idx = Array.from(ref.probe_idx.data, Number);
  const argmax = Array.from(ref[`${prefix}.argmax`].data, Number);
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
  return { maxDiff, argmaxSame, rows };
}

for (const name of ['tiny-epsilon', 'brown-epsilon']) {
  describe(`GPU: ${name} on CUDA reproduces upstream`, function () {
    this.timeout(600000);
    const found = fixtureDir(name);
    const weightsDir = found && (typeof found === 'string' ? found : found.weights);
    const refsDir = found && (typeof found === 'string' ? found : found.refs);
    let cache;
    let ref;
    let spec;
    before(function () {
      if (!cuda) {
        console.log(`    skipped: no CUDA (libtorch ${runtimeInfo().libtorchVersion}, cudaCompiled=${runtimeInfo().cudaCompiled})`);
        this.skip();
      }
      if (!found) {
        console.log(`    skipped: no ${name} weights (set HDLM_FIXTURES)`);
        this.skip();
      }
      cache = tempDir('gpu');
      ref = readReference(path.join(refsDir, 'reference.safetensors'));
      spec = JSON.parse(fs.readFileSync(path.join(refsDir, 'reference.json'), 'utf8'));
    });
    after(() => cache && fs.rmSync(cache, { recursive: true, force: true }));

    const load = (precision) => smartModelLoader(weightsDir, { device: 'cuda', precision, torchscriptCacheDir: cache });

    for (const [precision, prefix] of [['C', 'cuda'], ['A', 'ctxA']]) {
      it(`logits in context ${precision} equal upstream's ${prefix}.* bit for bit`, async () => {
        const { model } = await load(precision);
        try {
          const logits = await model.forward(rowsOf(ref['logits_input.tokens']), rowsOf(ref['logits_input.positions']));
          const d = maxDiffs(logits, ref, prefix);
          report.logits[`${name}.${prefix}`] = d;
          assert.strictEqual(d.argmaxSame, d.rows, `argmax agrees on ${d.argmaxSame}/${d.rows}`);
          assert.strictEqual(d.maxDiff, 0, `max abs diff ${d.maxDiff}`);
        } finally {
          model.dispose();
        }
      });
    }

    for (const [precision, keyPrefix] of [['B', ''], ['A', 'ctxA_']]) {
      it(`every sampler output in context ${precision} equals upstream's ${keyPrefix || 'sample'}N`, async () => {
        const { model } = await load(precision);
        const results = [];
        try {
          for (const s of spec.samples) {
            const sample = s.fn === 'semi_diff' ? semiDiff : fullDiff;
            const opts = {
              model, prompt: s.prompt, batchSize: s.prompt ? undefined : s.batch_size, alg: s.alg, steps: s.steps,
              temperature: s.temperature, contextLength: s.context_length, eps: s.eps, eta: s.eta, seed: s.seed, reference: true,
            };
            if (s.fn === 'semi_diff') opts.blockSize = s.block_size;
            const out = await sample(opts);
            const expected = rowsOf(ref[`${keyPrefix}${s.key}`]);
            let same = 0;
            let total = 0;
            out.forEach((row, b) => row.forEach((t, j) => { total++; if (t === expected[b][j]) same++; }));
            results.push({ key: s.key, fn: s.fn, alg: s.alg, identical: same === total, tokensSame: `${same}/${total}` });
          }
        } finally {
          model.dispose();
        }
        report.samples[`${name}.${precision}`] = results;
        const bad = results.filter((r) => !r.identical);
        assert.strictEqual(bad.length, 0, `not identical: ${JSON.stringify(bad)}`);
      });
    }
  });
}

after(() => {
  if (!cuda) return;
  const out = process.env.HDLM_GPU_REPORT;
  if (out) fs.writeFileSync(out, JSON.stringify(report, null, 2));
  console.log(JSON.stringify(report, null, 1).slice(0, 6000));
});
