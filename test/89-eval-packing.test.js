'use strict';
// evaluatePerplexity packs several draws into one forward and several chunks into one native call
// (drawsPerForward). The estimator and its random streams stay those of one chunk at a time: every
// packing gives the per-draw values of the unpacked op (one chunk per call, one draw per forward,
// the chunk's own seed), up to floating-point batch effects; draws that mask nothing are still
// left out, and abort still stops a running call.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { smartModelLoader } = require('../dist');
const ev = require('../dist/eval');
const { deriveSeed } = require('../dist/eval/seeds');
const { defaultDrawsPerForward } = require('../dist/eval/perplexity');
const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
const { mulberry32 } = require('./helpers/stats');
const { tempDir } = require('./helpers/reference');

const L = 16;
const V = 61; // 60 tokens + mask

describe('eval: packed Monte-Carlo perplexity (drawsPerForward)', function () {
  this.timeout(300000);
  let root;
  let model;

  before(async () => {
    root = tempDir('pack');
    // random weights: each row's logits depend on its input, so a packing mistake shows
    const ck = makeEpsilonCheckpoint(path.join(root, 'small'), { hiddenSize: 16, nHeads: 2, nBlocks: 1, length: L, vocabTokens: V - 1 });
    ({ model } = await smartModelLoader(ck.dir, { device: 'cpu', useCache: false }));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(root, { recursive: true, force: true });
  });

  function randomChunks(n, seed) {
    const r = mulberry32(seed);
    return Array.from({ length: n }, () => Array.from({ length: L }, () => Math.floor(r() * (V - 1))));
  }

  // The unpacked op as evaluatePerplexity used it before packing: one chunk per call, its
  // generator seeded with deriveSeed(seed, i), one draw per forward.
  async function unpacked(chunks, { batchSize, repetitions, samplingEps, seed }) {
    const out = [];
    for (const [i, c] of chunks.entries()) {
      const r = await model.native().evaluate({
        op: 'mc_loglik', tokens: Int32Array.from(c), rows: 1, length: L, batchSize, repetitions, samplingEps,
        maskId: model.maskId, sigma: 0, seed: deriveSeed(BigInt(seed), i),
      }).promise;
      out.push({ values: Array.from(r.values), empty: Array.from(r.emptyDraws) });
    }
    return out;
  }

  const close = (a, b, what) => assert.ok(Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

  it('the native op: rows with their own seeds and D draws per forward give each row\'s unpacked draws', async () => {
    const chunks = randomChunks(5, 11);
    const opts = { batchSize: 4, repetitions: 5, samplingEps: 1e-3, seed: 21 };
    const ref = await unpacked(chunks, opts);
    const rowSeeds = BigUint64Array.from(chunks.map((_, i) => deriveSeed(21n, i)));
    const tokens = Int32Array.from(chunks.flat());
    for (const D of [1, 3, 7, 25, 40]) {
      const r = await model.native().evaluate({
        op: 'mc_loglik', tokens, rows: 5, length: L, batchSize: 4, repetitions: 5, samplingEps: 1e-3, maskId: model.maskId, sigma: 0, seed: 0n, rowSeeds, drawsPerForward: D,
      }).promise;
      assert.strictEqual(r.rows, 5);
      assert.strictEqual(r.cols, 5);
      assert.deepStrictEqual(Array.from(r.emptyDraws), ref.flatMap((x, i) => x.empty.map((d) => i * 5 + d)));
      for (let i = 0; i < 5; i++) for (let d = 0; d < 5; d++) close(r.values[i * 5 + d], ref[i].values[d], `D ${D}, row ${i}, draw ${d}`);
    }
    // the draws do differ between rows and seeds: the comparison above can fail
    assert.notStrictEqual(ref[0].values[0], ref[1].values[0]);
    // the native side refuses what TypeScript never sends
    assert.throws(() => model.native().evaluate({
      op: 'mc_loglik', tokens, rows: 5, length: L, batchSize: 4, repetitions: 5, samplingEps: 1e-3, maskId: model.maskId, sigma: 0, seed: 0n, rowSeeds: rowSeeds.subarray(0, 4),
    }), /rowSeeds absent or one per row/);
    assert.throws(() => model.native().evaluate({
      op: 'mc_loglik', tokens, rows: 5, length: L, batchSize: 4, repetitions: 5, samplingEps: 1e-3, maskId: model.maskId, sigma: 0, seed: 0n, drawsPerForward: 0,
    }), /drawsPerForward ≥ 1/);
    assert.throws(() => model.native().evaluate({
      op: 'mc_loglik', tokens, rows: 5, length: L, batchSize: 4, repetitions: 5, samplingEps: 1e-3, maskId: model.maskId, sigma: 0, seed: 0n, rowSeeds: [1n, 2n, 3n, 4n, 5n],
    }), /a BigUint64Array for rowSeeds/);
  });

  it('evaluatePerplexity: the same per-chunk bounds for D = 1, 3, 7 and the default, repetitions not a multiple of D', async () => {
    const chunks = randomChunks(9, 5);
    const B = 3;
    const reps = 8; // floor(25 / 3)
    const ref = await unpacked(chunks, { batchSize: B, repetitions: reps, samplingEps: 1e-3, seed: 7 });
    const refChunk = ref.map((x) => {
      const kept = x.values.filter((_, d) => !x.empty.includes(d));
      const mean = kept.reduce((a, b) => a + b, 0) / kept.length;
      return { nll: mean / (L - 1), variance: kept.reduce((a, b) => a + (b - mean) ** 2, 0) / (kept.length - 1) / kept.length / (L - 1) ** 2 };
    });
    const results = [];
    for (const D of [1, 3, 7, undefined]) {
      const progress = [];
      const r = await ev.evaluatePerplexity({
        model, chunks, batchSize: B, monteCarloTimesteps: 25, seed: 7, ...(D === undefined ? {} : { drawsPerForward: D }), onProgress: (p) => progress.push(p.done),
      });
      results.push(r);
      if (D !== undefined) assert.strictEqual(r.drawsPerForward, D);
      assert.strictEqual(r.drawsPerChunk, reps);
      assert.strictEqual(r.chunkNll.length, 9);
      assert.deepStrictEqual(progress, [1, 2, 3, 4, 5, 6, 7, 8, 9], 'progress per chunk, in order');
      for (let i = 0; i < 9; i++) {
        close(r.chunkNll[i], refChunk[i].nll, `D ${D ?? 'auto'}, chunk ${i}`);
        close(r.chunkNllVariance[i], refChunk[i].variance, `D ${D ?? 'auto'}, chunk ${i} variance`);
      }
      const mean = r.chunkNll.reduce((a, b) => a + b, 0) / 9;
      close(r.nll, mean, `D ${D ?? 'auto'}: nll is the mean of chunkNll`);
      const se = Math.sqrt(r.chunkNllVariance.reduce((a, b) => a + b, 0)) / 9;
      close(r.nllStandardError, se, `D ${D ?? 'auto'}: standard error from chunkNllVariance`);
    }
    // the default packs on this small model (several draws per forward, several chunks per call)
    assert.ok(results[3].drawsPerForward > reps, `default drawsPerForward ${results[3].drawsPerForward}`);
    assert.strictEqual(results[3].drawsPerForward, defaultDrawsPerForward('cpu', B, L, V, 9 * reps));
  });

  it('results do not depend on how chunks are grouped: a chunk scores the same alone as among others', async () => {
    const chunks = randomChunks(6, 3);
    const all = await ev.evaluatePerplexity({ model, chunks, batchSize: 2, monteCarloTimesteps: 12, seed: 5, drawsPerForward: 4 });
    // chunk i is seeded with deriveSeed(seed, i): chunk 0 alone gets the same seed
    const first = await ev.evaluatePerplexity({ model, chunks: chunks.slice(0, 1), batchSize: 2, monteCarloTimesteps: 12, seed: 5, drawsPerForward: 5 });
    close(first.chunkNll[0], all.chunkNll[0], 'chunk 0');
    const again = await ev.evaluatePerplexity({ model, chunks, batchSize: 2, monteCarloTimesteps: 12, seed: 5, drawsPerForward: 11 });
    for (let i = 0; i < 6; i++) close(again.chunkNll[i], all.chunkNll[i], `chunk ${i}`);
    const other = await ev.evaluatePerplexity({ model, chunks, batchSize: 2, monteCarloTimesteps: 12, seed: 6, drawsPerForward: 4 });
    assert.notStrictEqual(other.chunkNll[0], all.chunkNll[0]);
  });

  it('draws that mask nothing are left out in every packing, as unpacked', async () => {
    // one copy per draw and ε = 0: a draw masks nothing with probability ∫(1 − u)^16 du = 1/17
    const chunks = randomChunks(4, 9);
    const ref = await unpacked(chunks, { batchSize: 1, repetitions: 64, samplingEps: 0, seed: 2 });
    const emptyCount = ref.reduce((a, x) => a + x.empty.length, 0);
    assert.ok(emptyCount > 0, 'some draw masked nothing');
    for (const D of [1, 5, 64, 256]) {
      const r = await ev.evaluatePerplexity({ model, chunks, batchSize: 1, monteCarloTimesteps: 64, samplingEps: 0, seed: 2, drawsPerForward: D });
      assert.strictEqual(r.skippedDraws, emptyCount, `D ${D}`);
      for (let i = 0; i < 4; i++) {
        const kept = ref[i].values.filter((_, d) => !ref[i].empty.includes(d));
        close(r.chunkNll[i], kept.reduce((a, b) => a + b, 0) / kept.length / (L - 1), `D ${D}, chunk ${i}`);
      }
    }
  });

  it('a bad drawsPerForward is a clear error', async () => {
    const chunks = randomChunks(1, 1);
    for (const bad of [0, -1, 1.5, '2', true, Infinity, 65537]) {
      await assert.rejects(ev.evaluatePerplexity({ model, chunks, batchSize: 2, monteCarloTimesteps: 4, drawsPerForward: bad }), (e) => {
        assert.strictEqual(e.code, 'HDLM_INVALID_ARGUMENT');
        assert.match(e.message, /drawsPerForward/);
        assert.match(e.message, /an integer between 1 and 65536/);
        return true;
      });
    }
    // logits of drawsPerForward × batchSize × length × vocabulary beyond the cap (2^31 floats:
    // at most 34379 draws here), or beyond the memory available now
    await assert.rejects(ev.evaluatePerplexity({ model, chunks, batchSize: 64, monteCarloTimesteps: 64, drawsPerForward: 65536 }), (e) => {
      assert.strictEqual(e.code, 'HDLM_INVALID_ARGUMENT');
      const most = /at most (\d+) with batchSize 64 at contextLength 16 .*for drawsPerForward but received 65536/.exec(e.message);
      assert.ok(most && Number(most[1]) >= 1 && Number(most[1]) <= 34379, e.message);
      return true;
    });
    // the memory a call may use (HDLM_MEMORY_LIMIT) bounds both the default and an asked drawsPerForward
    const perRow = L * V * 11; // evaluatePerplexity's bytes per logit at its peak (core/memory.ts)
    const saved = process.env.HDLM_MEMORY_LIMIT;
    process.env.HDLM_MEMORY_LIMIT = String(perRow * 2 * 10);
    try {
      await assert.rejects(ev.evaluatePerplexity({ model, chunks, batchSize: 2, monteCarloTimesteps: 64, drawsPerForward: 11 }), /at most 10 with batchSize 2 .*memory available now.*for drawsPerForward/);
      const r = await ev.evaluatePerplexity({ model, chunks, batchSize: 2, monteCarloTimesteps: 64, drawsPerForward: 10, seed: 1 });
      assert.strictEqual(r.drawsPerForward, 10);
      const auto = await ev.evaluatePerplexity({ model, chunks, batchSize: 2, monteCarloTimesteps: 64, seed: 1 });
      assert.strictEqual(auto.drawsPerForward, 10);
    } finally {
      if (saved === undefined) delete process.env.HDLM_MEMORY_LIMIT;
      else process.env.HDLM_MEMORY_LIMIT = saved;
    }
  });

  it('abort during a packed call rejects with AbortError', async () => {
    // one call of 8 chunks (4001 draws each, 8 per forward: 8 / gcd(8, 4001) chunks per call),
    // long enough to be running when the signal fires
    const chunks = randomChunks(8, 4);
    const ac = new AbortController();
    const done = [];
    const p = ev.evaluatePerplexity({ model, chunks, batchSize: 8, monteCarloTimesteps: 8 * 4001, seed: 1, drawsPerForward: 8, signal: ac.signal, onProgress: (x) => done.push(x.done) });
    setTimeout(() => ac.abort(), 300);
    await assert.rejects(p, (e) => e.name === 'AbortError');
    assert.ok(done.length < 8, `aborted before the end (${done.length} chunks reported)`);
    assert.strictEqual(model.native().pendingCalls(), 0);
    // the model still works
    const r = await ev.evaluatePerplexity({ model, chunks: chunks.slice(0, 1), batchSize: 2, monteCarloTimesteps: 4, seed: 1 });
    assert.ok(Number.isFinite(r.nll));
  });
});
