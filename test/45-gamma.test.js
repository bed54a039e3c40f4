'use strict';
// The gamma-hybrid model built natively from a checkpoint computes what upstream computes:
// CPU fp32 logits against upstream's own (test/fixtures/tiny-gamma/reference.safetensors).
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { smartModelLoader, HdlmModel } = require('../dist');
const { FIXTURES, readReference, rowsOf, tempDir } = require('./helpers/reference');

const GAMMA = path.join(FIXTURES, 'tiny-gamma');

function floatRows(t) {
  const [r, c] = t.shape;
  const rows = [];
  for (let i = 0; i < r; i++) rows.push(Array.from(t.data.subarray(i * c, (i + 1) * c)));
  return rows;
}

describe('model: gamma forward parity with upstream (CPU fp32)', function () {
  let cache;
  let model;
  let loaded;
  let ref;
  let logits;

  before(async () => {
    cache = tempDir('gamma');
    ref = readReference(path.join(GAMMA, 'reference.safetensors'));
    loaded = await smartModelLoader(GAMMA, { device: 'cpu', torchscriptCacheDir: cache });
    model = loaded.model;
    logits = await model.forward(rowsOf(ref['logits_input.tokens']), floatRows(ref['logits_input.sigma']), rowsOf(ref['logits_input.positions']));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  it("loads with modelType 'auto' as a gamma_hybrid model", () => {
    assert.ok(model instanceof HdlmModel);
    assert.strictEqual(model.family, 'gamma_hybrid');
    assert.strictEqual(model.device, 'cpu');
    assert.strictEqual(model.vocabSize, 50258);
    assert.strictEqual(model.maskId, 50257);
    assert.strictEqual(model.length, 128);
    assert.strictEqual(loaded.cfg.graph.type, 'QGamma');
  });

  it('returns [B, L, V] float32 logits', () => {
    assert.deepStrictEqual(logits.shape, [2, 48, 50258]);
    assert.ok(logits.data instanceof Float32Array);
  });

  it('matches upstream CPU fp32 logits within 1e-4 (head512, probe columns, logsumexp)', () => {
    const V = 50258;
    const head = ref['cpu_fp32.head512'].data;
    const probe = ref['cpu_fp32.probe'].data;
    const idx = Array.from(ref.probe_idx.data, Number);
    const lse = ref['cpu_fp32.logsumexp'].data;
    let maxDiff = 0;
    let lseDiff = 0;
    for (let r = 0; r < 96; r++) {
      const row = logits.data.subarray(r * V, (r + 1) * V);
      for (let j = 0; j < 512; j++) maxDiff = Math.max(maxDiff, Math.abs(row[j] - head[r * 512 + j]));
      for (let j = 0; j < 256; j++) maxDiff = Math.max(maxDiff, Math.abs(row[idx[j]] - probe[r * 256 + j]));
      let m = -Infinity;
      for (let j = 0; j < V; j++) m = Math.max(m, row[j]);
      let s = 0;
      for (let j = 0; j < V; j++) s += Math.exp(row[j] - m);
      // logsumexp is of magnitude ~10 here (scale_by_sigma shifts every logit): relative bound
      lseDiff = Math.max(lseDiff, Math.abs(m + Math.log(s) - lse[r]) / Math.max(1, Math.abs(lse[r])));
    }
    assert.ok(maxDiff <= 1e-4, `max abs diff ${maxDiff}`);
    assert.ok(lseDiff <= 1e-5, `logsumexp rel diff ${lseDiff}`);
  });

  it('has the same argmax as upstream on every position', () => {
    const V = 50258;
    const expected = Array.from(ref['cpu_fp32.argmax'].data, Number);
    for (let r = 0; r < 96; r++) {
      let best = 0;
      for (let j = 1; j < V; j++) if (logits.data[r * V + j] > logits.data[r * V + best]) best = j;
      assert.strictEqual(best, expected[r], `position ${r}`);
    }
  });

  it('depends on sigma (conditioning) and shifts by log(expm1 σ) (scale_by_sigma)', async () => {
    const x = [[464, 2003, 50257, 50257]];
    const a = await model.forward(x, [[0.5, 0.5, 0.5, 0.5]]);
    const b = await model.forward(x, [[2, 2, 2, 2]]);
    const c = await model.forward(x, 0.5);
    assert.ok(Buffer.from(a.data.buffer).equals(Buffer.from(c.data.buffer)), 'a number is the same sigma everywhere');
    assert.ok(!Buffer.from(a.data.buffer).equals(Buffer.from(b.data.buffer)));
    // the shift alone: logits + log(expm1 σ) + ln(V-1) is the unshifted head; its softmax is shift-free,
    // so a softmax difference proves the network itself is conditioned on sigma
    const V = 50258;
    const lse = (d, off) => {
      let m = -Infinity;
      for (let j = 0; j < V; j++) m = Math.max(m, d[off + j]);
      let s = 0;
      for (let j = 0; j < V; j++) s += Math.exp(d[off + j] - m);
      return m + Math.log(s);
    };
    const pa = a.data[5] - lse(a.data, 0);
    const pb = b.data[5] - lse(b.data, 0);
    assert.ok(Math.abs(pa - pb) > 1e-4, 'log-probabilities change with sigma');
  });

  it("post_process_logits with an AR sampling_method zeroes the next input token's logit (upstream post_process_logits)", async () => {
    const dir = path.join(cache, 'ar');
    fs.mkdirSync(dir);
    const cfg = JSON.parse(fs.readFileSync(path.join(GAMMA, 'config.json'), 'utf8'));
    cfg.annealing.sampling_method = 'AR';
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    fs.symlinkSync(path.join(GAMMA, 'model.safetensors'), path.join(dir, 'model.safetensors'));
    const { model: ar } = await smartModelLoader(dir, { device: 'cpu', useCache: false });
    try {
      const x = [[464, 2003, 286, 11666], [50257, 50257, 4430, 13]];
      const sigma = [[0.3, 0.3, 1, 1], [2, 2, 0.1, 0.1]];
      const a = await ar.forward(x, sigma);
      const b = await model.forward(x, sigma);
      const V = 50258;
      let changed = 0;
      for (let r = 0; r < 2; r++) {
        for (let l = 0; l < 4; l++) {
          for (let j = 0; j < V; j++) {
            const i = (r * 4 + l) * V + j;
            if (l < 3 && j === x[r][l + 1]) {
              assert.strictEqual(a.data[i], 0);
              changed++;
            } else {
              assert.strictEqual(a.data[i], b.data[i]);
            }
          }
        }
      }
      assert.strictEqual(changed, 6);
    } finally {
      ar.dispose();
    }
  });

  it('validates sigma', async () => {
    const x = [[1, 2, 3]];
    const bad = (e) => e.code === 'HDLM_INVALID_ARGUMENT' && /sigma/.test(e.message) && /Expected/.test(e.message);
    await assert.rejects(model.forward(x), bad);
    await assert.rejects(model.forward(x, [[1, 2]]), bad);
    await assert.rejects(model.forward(x, [[1, -2, 3]]), bad);
    await assert.rejects(model.forward(x, [[1, NaN, 3]]), bad);
    await assert.rejects(model.forward(x, 'big'), bad);
  });

  it('round-trips through the TorchScript cache (the documented interface), identical logits', async () => {
    const dir = path.join(cache, 'torchscript');
    const entries = fs.readdirSync(dir).filter((e) => e.endsWith('.pt'));
    assert.strictEqual(entries.length, 1);
    const { model: ts } = await smartModelLoader(path.join(dir, entries[0]), { device: 'cpu' });
    try {
      assert.strictEqual(ts.family, 'gamma_hybrid');
      const x = [[50257, 464, 2003]];
      const out = await ts.forward(x, [[1, 0.1, 0.1]]);
      const want = await model.forward(x, [[1, 0.1, 0.1]]);
      assert.ok(Buffer.from(out.data.buffer).equals(Buffer.from(want.data.buffer)));
    } finally {
      ts.dispose();
    }
  });
});
