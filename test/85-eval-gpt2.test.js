'use strict';
// The native GPT-2 (HF layout) used for the sample-quality metric, against a direct
// float64 JavaScript computation on a small random checkpoint this test writes.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { loadGpt2 } = require('../dist/eval/gpt2');
const { rng, makeGpt2, gpt2Reference, gpt2HiddenReference, nllReference } = require('./helpers/gpt2');
const { encode } = require('../dist/core/tokenizer');
const { tempDir } = require('./helpers/reference');

describe('eval: native GPT-2 (HF layout) against a direct computation', function () {
  let root;
  before(() => {
    root = tempDir('gpt2');
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  for (const prefix of ['', 'transformer.']) {
    it(`logits and sequence NLL match${prefix ? ' (keys with the transformer. prefix)' : ''}`, async () => {
      const ck = makeGpt2(path.join(root, `ck${prefix || 'plain'}`), { prefix, seed: prefix ? 7 : 3 });
      const model = await loadGpt2(ck.dir, { device: 'cpu' });
      try {
        const r = rng(11);
        const rows = [0, 1, 2].map(() => Array.from({ length: 12 }, () => Math.floor(r() * ck.cfg.vocab_size)));
        const out = await model.forward(rows);
        assert.deepStrictEqual(out.shape, [3, 12, ck.cfg.vocab_size]);
        let maxErr = 0;
        for (let b = 0; b < 3; b++) {
          const ref = gpt2Reference(ck, rows[b]);
          for (let l = 0; l < 12; l++) {
            for (let t = 0; t < ck.cfg.vocab_size; t++) {
              maxErr = Math.max(maxErr, Math.abs(out.data[(b * 12 + l) * ck.cfg.vocab_size + t] - ref[l][t]));
            }
          }
        }
        assert.ok(maxErr < 1e-4, `max |logit error| ${maxErr}`);
        const nll = await model.sequenceNll(rows, { batchSize: 2 });
        assert.strictEqual(nll.length, 3);
        for (let b = 0; b < 3; b++) {
          const ref = nllReference(ck, rows[b]);
          assert.ok(Math.abs(nll[b] - ref) < 1e-4 * Math.max(1, ref), `row ${b}: ${nll[b]} vs ${ref}`);
        }
        // causality: changing the last token leaves the logits of earlier positions unchanged
        const changed = rows[0].slice();
        changed[11] = (changed[11] + 1) % ck.cfg.vocab_size;
        const out2 = await model.forward([changed]);
        for (let i = 0; i < 11 * ck.cfg.vocab_size; i++) assert.strictEqual(out2.data[i], out.data[i]);
      } finally {
        model.dispose();
      }
    });
  }

  it('refuses rows longer than n_positions and a checkpoint missing a tensor', async () => {
    const ck = makeGpt2(path.join(root, 'long'), { positions: 8 });
    const model = await loadGpt2(ck.dir, { device: 'cpu' });
    try {
      await assert.rejects(model.sequenceNll([Array(9).fill(1)]), /2\.\.8 ids/);
    } finally {
      model.dispose();
    }
    const bad = path.join(root, 'bad');
    makeGpt2(bad, { layer: 1 });
    const cfg = JSON.parse(fs.readFileSync(path.join(bad, 'config.json'), 'utf8'));
    cfg.n_layer = 2;
    fs.writeFileSync(path.join(bad, 'config.json'), JSON.stringify(cfg));
    await assert.rejects(loadGpt2(bad, { device: 'cpu' }), (e) => e.code === 'HDLM_BAD_FILE' && /h\.1\.ln_1\.weight/.test(e.message));
  });
  it('last hidden states (MAUVE features) match a direct computation and hidden · wteᵀ = the logits', async () => {
    const ck = makeGpt2(path.join(root, 'hidden'), { seed: 5 });
    const model = await loadGpt2(ck.dir, { device: 'cpu' });
    try {
      const r = rng(23);
      // rows of three lengths, interleaved: grouped by length natively, returned in input order
      const lengths = [5, 12, 1, 12, 5, 7, 12];
      const rows = lengths.map((n) => Array.from({ length: n }, () => Math.floor(r() * ck.cfg.vocab_size)));
      const feats = await model.lastHiddenStates(rows, { batchSize: 2 });
      assert.strictEqual(feats.length, rows.length);
      const D = ck.cfg.n_embd, V = ck.cfg.vocab_size, wte = ck.w['wte.weight'];
      for (const [i, row] of rows.entries()) {
        assert.ok(feats[i] instanceof Float32Array && feats[i].length === D);
        const ref = gpt2HiddenReference(ck, row);
        const last = ref[row.length - 1];
        for (let j = 0; j < D; j++) assert.ok(Math.abs(feats[i][j] - last[j]) < 1e-4, `row ${i} [${j}]: ${feats[i][j]} vs ${last[j]}`);
        // the logits path: hidden · wteᵀ equals what forward returns at the last position
        const out = await model.forward([row]);
        for (let t = 0; t < V; t++) {
          let s = 0;
          for (let j = 0; j < D; j++) s += feats[i][j] * wte[t * D + j];
          const logit = out.data[(row.length - 1) * V + t];
          assert.ok(Math.abs(s - logit) < 1e-4, `row ${i} token ${t}: ${s} vs ${logit}`);
        }
      }
      await assert.rejects(model.lastHiddenStates([Array(25).fill(1)]), /1\.\.24 ids/);
      await assert.rejects(model.lastHiddenStates([[61]]), (e) => e.code === 'HDLM_INVALID_ARGUMENT');
      await assert.rejects(model.lastHiddenStates([]), /non-empty/);
    } finally {
      model.dispose();
    }
  });

  it('textFeatures: GPT-2-encoded texts cut to their first maxTextLength (default 128) tokens', async () => {
    const ck = makeGpt2(path.join(root, 'text'), { vocab: 50257, embd: 8, head: 2, layer: 1, positions: 160, seed: 13 });
    const model = await loadGpt2(ck.dir, { device: 'cpu' });
    try {
      const long = Array.from({ length: 90 }, (_, i) => `word${i}`).join(' ');
      assert.ok(encode(long).length > 128);
      const texts = ['Hello there.', long];
      const feats = await model.textFeatures(texts);
      for (const [i, t] of texts.entries()) {
        const ids = encode(t).slice(0, 128);
        const last = gpt2HiddenReference(ck, ids)[ids.length - 1];
        for (let j = 0; j < 8; j++) assert.ok(Math.abs(feats[i][j] - last[j]) < 1e-4, `text ${i} [${j}]`);
      }
      const short = await model.textFeatures([long], { maxTextLength: 3 });
      const last3 = gpt2HiddenReference(ck, encode(long).slice(0, 3))[2];
      for (let j = 0; j < 8; j++) assert.ok(Math.abs(short[0][j] - last3[j]) < 1e-4);
      await assert.rejects(model.textFeatures(['']), /non-empty string/);
      await assert.rejects(model.textFeatures(['x'], { maxTextLength: 161 }), /n_positions \(160\)/);
    } finally {
      model.dispose();
    }
  });
});
