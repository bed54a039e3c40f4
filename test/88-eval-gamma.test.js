'use strict';
// Zero-shot perplexity of a gamma_hybrid model (upstream's hdlm/zeroshot_ppl.py as
// hdlm/eval_modeling.py runs it: ZeroShot_calculator, mode aligned, nll_type mc, the model
// called with sigma = 1e-3 at every position) against a direct JavaScript computation: the same
// draws (torch's CPU MT19937 stream, reproduced with random-js), the model's own forward for the
// logits, and the estimator written out here in float64.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { MersenneTwister19937 } = require('random-js');
const { smartModelLoader } = require('../dist');
const ev = require('../dist/eval');
const { deriveSeed } = require('../dist/eval/seeds');
const { FIXTURES, tempDir } = require('./helpers/reference');

const GAMMA = path.join(FIXTURES, 'tiny-gamma');

// torch CPU uniform_ on float32 (at::uniform_real_distribution<float>): the low 24 bits of one
// 32-bit MT19937 output each, scaled by 2^-24; the generator is seeded with the seed's low 32 bits.
function torchCpuUniform(seed) {
  const mt = MersenneTwister19937.seed(Number(BigInt.asUintN(32, seed)) | 0);
  return () => ((mt.next() >>> 0) & 0xffffff) / 16777216;
}

// One chunk's draws as the estimator makes them: per repetition u0 (1 value), then [B, L] uniforms.
async function directDraws(model, chunk, { batchSize: B, repetitions, samplingEps, seed }) {
  const L = chunk.length;
  const f = Math.fround;
  const rand = torchCpuUniform(seed);
  const values = [];
  for (let rep = 0; rep < repetitions; rep++) {
    const u0 = f(rand());
    const pMask = [];
    for (let b = 0; b < B; b++) {
      const t = f(f(u0 + f(b / B)) % 1);
      pMask.push(f(f(f(1 - samplingEps) * t) + f(samplingEps)));
    }
    const masked = [];
    for (let b = 0; b < B; b++) masked.push(Array.from({ length: L }, () => f(rand()) < pMask[b]));
    if (!masked.some((row) => row.some(Boolean))) {
      values.push(NaN);
      continue;
    }
    const noisy = masked.map((row) => row.map((m, l) => (m ? model.maskId : chunk[l])));
    const out = await model.forward(noisy, 1e-3);
    const V = out.shape[2];
    let loss = 0;
    for (let b = 0; b < B; b++) {
      for (let l = 0; l < L; l++) {
        if (!masked[b][l]) continue;
        const row = out.data.subarray((b * L + l) * V, (b * L + l + 1) * V);
        let m = -Infinity;
        for (const x of row) m = Math.max(m, x);
        let z = 0;
        for (const x of row) z += Math.exp(x - m);
        loss += (m + Math.log(z) - row[chunk[l]]) / pMask[b];
      }
    }
    values.push(loss / B);
  }
  return values;
}

describe('eval: gamma_hybrid zero-shot perplexity (tiny gamma fixture)', function () {
  this.timeout(300000);
  let cache;
  let model;

  before(async () => {
    cache = tempDir('gammappl');
    ({ model } = await smartModelLoader(GAMMA, { device: 'cpu', torchscriptCacheDir: cache }));
    assert.strictEqual(model.family, 'gamma_hybrid');
  });
  after(() => {
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  function randomChunks(n, seed) {
    let s = seed;
    const r = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
    return Array.from({ length: n }, () => Array.from({ length: model.length }, () => Math.floor(r() * Math.min(model.maskId, 5000))));
  }

  it('equals the estimator computed directly from the model\'s forward with the same draws', async () => {
    const chunks = randomChunks(1, 31);
    const opts = { batchSize: 4, monteCarloTimesteps: 8, samplingEps: 1e-3 };
    const r = await ev.evaluatePerplexity({ model, chunks, ...opts, seed: 9 });
    assert.strictEqual(r.sigma, 1e-3);
    assert.strictEqual(r.drawsPerChunk, 2);
    let total = 0;
    for (let i = 0; i < chunks.length; i++) {
      const draws = await directDraws(model, chunks[i], { batchSize: 4, repetitions: 2, samplingEps: 1e-3, seed: deriveSeed(9n, i) });
      const kept = draws.filter((x) => !Number.isNaN(x));
      total += kept.reduce((a, b) => a + b, 0) / kept.length;
    }
    const nll = total / (chunks.length * (model.length - 1));
    assert.ok(Math.abs(r.nll - nll) < 1e-5 * Math.max(1, nll), `native ${r.nll} vs direct ${nll}`);
    assert.ok(Math.abs(r.perplexity - Math.exp(nll)) < 1e-4 * Math.exp(nll));
    assert.ok(r.nll > 0 && Number.isFinite(r.perplexity));
    // a different seed gives different draws
    const other = await ev.evaluatePerplexity({ model, chunks, ...opts, seed: 10 });
    assert.notStrictEqual(other.nll, r.nll);
  });

  it('hdlm eval ppl runs on a gamma model', () => {
    const { execFileSync } = require('child_process');
    const { ROOT } = require('./helpers/reference');
    const out = execFileSync(process.execPath, [path.join(ROOT, 'dist', 'cli', 'main.js'), 'eval', 'ppl', '-m', GAMMA, '--device', 'cpu', '--dataset', 'brown',
      '--end', '1', '--batch-size', '2', '--mc-timesteps', '4', '--seed', '3'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HDLM_CACHE: cache } });
    const r = JSON.parse(out);
    assert.strictEqual(r.chunks, 1);
    assert.strictEqual(r.sigma, 1e-3);
    assert.ok(r.perplexity > 1 && Number.isFinite(r.perplexity), String(r.perplexity));
  });
});
