'use strict';
// The epsilon model built natively from a checkpoint computes what upstream computes:
// CPU fp32 logits against upstream's own (test/fixtures/brown-epsilon/reference.safetensors).
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { smartModelLoader, HdlmModel } = require('../dist');
const { DEMO_MODEL, FIXTURES, readReference, rowsOf, tempDir } = require('./helpers/reference');

describe('model: epsilon forward parity with upstream (CPU fp32)', function () {
  let cache;
  let model;
  let ref;
  let logits;

  before(async () => {
    cache = tempDir('ts');
    ref = readReference(path.join(FIXTURES, 'brown-epsilon', 'reference.safetensors'));
    ({ model } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache }));
    logits = await model.forward(rowsOf(ref['logits_input.tokens']), rowsOf(ref['logits_input.positions']));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  it('loads as an epsilon_hybrid model with the checkpoint config', () => {
    assert.ok(model instanceof HdlmModel);
    assert.strictEqual(model.family, 'epsilon_hybrid');
    assert.strictEqual(model.device, 'cpu');
    assert.strictEqual(model.vocabSize, 50258);
    assert.strictEqual(model.maskId, 50257);
    assert.strictEqual(model.length, 256);
    assert.strictEqual(model.config.model.hidden_size, 128);
  });

  it('returns [B, L, V] float32 logits', () => {
    assert.deepStrictEqual(logits.shape, [2, 48, 50258]);
    assert.ok(logits.data instanceof Float32Array);
    assert.strictEqual(logits.data.length, 2 * 48 * 50258);
  });

  it('matches upstream logits within 1e-4 (head512 and probe columns) and logsumexp', () => {
    const V = 50258;
    const head = ref['cpu_fp32.head512'].data;
    const probe = ref['cpu_fp32.probe'].data;
    const idx = Array.from(ref.probe_idx.data, Number);
    const lse = ref['cpu_fp32.logsumexp'].data;
    let maxDiff = 0;
    for (let r = 0; r < 96; r++) {
      const row = logits.data.subarray(r * V, (r + 1) * V);
      for (let j = 0; j < 512; j++) maxDiff = Math.max(maxDiff, Math.abs(row[j] - head[r * 512 + j]));
      for (let j = 0; j < 256; j++) maxDiff = Math.max(maxDiff, Math.abs(row[idx[j]] - probe[r * 256 + j]));
      let m = -Infinity;
      for (let j = 0; j < V; j++) m = Math.max(m, row[j]);
      let s = 0;
      for (let j = 0; j < V; j++) s += Math.exp(row[j] - m);
      maxDiff = Math.max(maxDiff, Math.abs(m + Math.log(s) - lse[r]));
    }
    assert.ok(maxDiff <= 1e-4, `max abs diff ${maxDiff}`);
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

  it('writes a TorchScript cache entry that the next load uses, with identical logits', async () => {
    // one module, its seal and the folder's key (see lib/core/torchscript-cache.ts)
    const entries = fs.readdirSync(path.join(cache, 'torchscript')).sort();
    assert.strictEqual(entries.length, 3, entries.join(' '));
    assert.strictEqual(entries[0], '.key');
    assert.match(entries[1], /^[0-9a-f]{32}\.pt$/);
    assert.strictEqual(entries[2], `${entries[1]}.seal`);
    const { model: again } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache });
    try {
      const out = await again.forward(rowsOf(ref['logits_input.tokens']), rowsOf(ref['logits_input.positions']));
      assert.ok(Buffer.from(out.data.buffer).equals(Buffer.from(logits.data.buffer)));
    } finally {
      again.dispose();
    }
    assert.deepStrictEqual(fs.readdirSync(path.join(cache, 'torchscript')).sort(), entries, 'no temp files left behind');
  });

  it('loads the cached module as an exported TorchScript file (the documented interface)', async () => {
    const file = path.join(cache, 'torchscript', fs.readdirSync(path.join(cache, 'torchscript')).find((e) => e.endsWith('.pt')));
    const { model: ts, cfg } = await smartModelLoader(file, { device: 'cpu' });
    try {
      assert.strictEqual(ts.family, 'epsilon_hybrid');
      assert.strictEqual(cfg.model.length, 256);
      const out = await ts.forward([[50257, 464, 2003]]);
      const ref3 = await model.forward([[50257, 464, 2003]]);
      assert.deepStrictEqual(out.shape, [1, 3, 50258]);
      assert.ok(Buffer.from(out.data.buffer).equals(Buffer.from(ref3.data.buffer)));
    } finally {
      ts.dispose();
    }
  });

  it('uses positions[0] for the rotary table (upstream semantics), default 0..L-1', async () => {
    const x = [[464, 2003, 286, 50257, 50257, 4430]];
    const a = await model.forward(x);
    const b = await model.forward(x, [[0, 1, 2, 3, 4, 5]]);
    const c = await model.forward(x, [[5, 6, 7, 8, 9, 10]]);
    assert.ok(Buffer.from(a.data.buffer).equals(Buffer.from(b.data.buffer)));
    assert.ok(!Buffer.from(a.data.buffer).equals(Buffer.from(c.data.buffer)));
  });

  it('dispose() is idempotent and later calls fail clearly', async () => {
    const { model: m } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache });
    m.dispose();
    m.dispose();
    assert.strictEqual(m.disposed, true);
    await assert.rejects(m.forward([[1, 2, 3]]), (e) => e.code === 'HDLM_DISPOSED' && /disposed/.test(e.message));
  });
});
