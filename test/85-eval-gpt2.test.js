'use strict';
// The native GPT-2 (HF layout) used for the sample-quality metric, against a direct
// float64 JavaScript computation on a small random checkpoint this test writes.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { loadGpt2 } = require('../dist/eval/gpt2');
const { rng, makeGpt2, gpt2Reference, nllReference } = require('./helpers/gpt2');
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
});
