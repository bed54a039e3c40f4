'use strict';
// Infilling quality on the trained demo model, a reduced run of bench/infill-quality.js (the
// full one, with its figures, is in docs/api.md): middles sampled between a held-out prefix and
// suffix fit their surroundings (MC NLL bound within 10 % of the original sequences), and the
// suffix is used (middles sampled before two different suffixes differ, permutation test at 5 %).
const assert = require('assert');
const fs = require('fs');
const { infillQuality } = require('../bench/infill-quality');
const { tempDir } = require('./helpers/reference');

describe('infilling quality (demo model, held-out Brown text, reduced)', function () {
  this.timeout(900000);
  let cache;
  before(() => {
    cache = tempDir('infill-quality');
  });
  after(() => fs.rmSync(cache, { recursive: true, force: true }));

  it('fills fit their surroundings and depend on the suffix', async () => {
    // a short middle right before the suffix: there the suffix's pull is strong enough for 24 + 24 samples
    const r = await infillQuality({ chunks: 6, span: [112, 128], steps: 16, samples: 24, mc: 16, permutations: 199, seed: 5, torchscriptCacheDir: cache });
    console.log(`      NLL: original ${r.nllOriginal.toFixed(3)}, infilled ${r.nllInfilled.toFixed(3)} (×${r.infilledRatio.toFixed(3)}), prefix only ${r.nllPrefixOnly.toFixed(3)}; suffix A vs B: p = ${r.suffixTest.p.toFixed(3)}`);
    assert.ok(r.infilledRatio <= 1.1, `infilled sequences score ${r.infilledRatio.toFixed(3)} × the originals`);
    // the bench's full run rejects at 1 % (docs/api.md); this reduced one at 5 %
    assert.ok(r.suffixTest.p < 0.05, `suffix A and B give indistinguishable middles (p ${r.suffixTest.p})`);
  });
});
