'use strict';
// Fixed tokens (infilling): every algorithm, both modes, fullDiff and semiDiff, on a random
// synthetic model and on the trained demo model, keeps them exactly; random position sets;
// the option's errors; a span at 0 is the prompt path, token for token.
const assert = require('assert');
const fs = require('fs');
const {
  smartModelLoader, fullDiff, semiDiff, fullDiffShifted, gammaSample, ALGORITHMS, HdlmArgumentError, HdlmError,
} = require('../dist');
const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
const { DEMO_MODEL, tempDir } = require('./helpers/reference');

const MASK = 50257;

const rng = require('./helpers/stats').mulberry32; // seeded uniforms in [0, 1)

// Runs of consecutive positions as spans, with tokens drawn per position.
function spansOf(positions, tokenAt) {
  const sorted = [...positions].sort((a, b) => a - b);
  const spans = [];
  for (const p of sorted) {
    const last = spans[spans.length - 1];
    // alternately merge a run or split it into adjacent spans
    if (last && last.at + last.tokens.length === p && p % 3 !== 0) last.tokens.push(tokenAt(p));
    else spans.push({ at: p, tokens: [tokenAt(p)] });
  }
  return spans;
}

function assertKept(rows, spans, label) {
  for (const [b, row] of rows.entries()) {
    for (const s of spans) {
      const tokens = Array.isArray(s.tokens[0]) ? s.tokens[b] : s.tokens;
      assert.deepStrictEqual(row.slice(s.at, s.at + tokens.length), Array.from(tokens), `${label}: sample ${b}, span at ${s.at}`);
    }
  }
}

function withModel(label, load) {
  const ctx = {};
  before(async () => {
    ctx.cache = tempDir('ts');
    ctx.model = await load(ctx);
  });
  after(() => {
    ctx.model?.dispose();
    for (const d of [ctx.cache, ctx.dir]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });
  return ctx;
}

const models = [
  ['random synthetic model', async (ctx) => {
    ctx.dir = tempDir('fixed');
    makeEpsilonCheckpoint(ctx.dir, { hiddenSize: 16, nHeads: 2, nBlocks: 1, length: 48, vocabTokens: 4095 });
    return (await smartModelLoader(ctx.dir, { device: 'cpu', torchscriptCacheDir: ctx.cache })).model;
  }],
  ['trained brown-epsilon', async (ctx) => (await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: ctx.cache })).model],
];

for (const [label, load] of models) {
  describe(`fixed tokens kept exactly: ${label}`, function () {
    this.timeout(120000);
    const ctx = withModel(label, load);
    // a middle span per sample, two adjacent spans, and a span touching the end
    const spans = [
      { at: 4, tokens: [[11, 12, 13], [21, 22, 23]] },
      { at: 12, tokens: [31, 32] },
      { at: 14, tokens: [33] },
      { at: 29, tokens: [41, 42, 43] },
    ];
    for (const reference of [true, false]) for (const [name, sample] of [['fullDiff', fullDiff], ['semiDiff', semiDiff]]) {
      for (const alg of ALGORITHMS) {
        it(`${name} ${alg} (${reference ? 'reference' : 'fast'})`, async () => {
          const opts = { model: ctx.model, prompt: [7, 8], fixed: spans, batchSize: 2, alg, steps: 5, contextLength: 32, seed: 5, reference };
          if (name === 'semiDiff') opts.blockSize = 8;
          // acs / remask / remask_adhoc_shuffle reach unmasked positions only with a large eta
          if (alg !== 'original' && alg !== 'remdm') opts.eta = 0.9;
          const rows = await sample(opts);
          assertKept(rows, spans, `${name} ${alg}`);
          for (const row of rows) assert.deepStrictEqual(row.slice(0, 2), [7, 8]);
          if (alg !== 'remdm') for (const row of rows) assert.ok(!row.includes(MASK), 'no mask left');
        });
      }
      it(`${name} with guidance keeps them (${reference ? 'reference' : 'fast'})`, async () => {
        const opts = { model: ctx.model, prompt: [7, 8], fixed: spans, batchSize: 2, alg: 'acs', eta: 0.9, cfgScale: 1.5, steps: 4, contextLength: 32, seed: 9, reference };
        const rows = await sample(opts);
        assertKept(rows, spans, name);
      });
    }
  });
}

describe('fixed tokens: random position sets, errors, the prefix path', function () {
  this.timeout(120000);
  const ctx = withModel('random', models[0][1]);

  it('random sets of positions (adjacent, touching the end, empty) are kept, in both modes and for every algorithm', async () => {
    const r = rng(1234);
    for (let trial = 0; trial < 24; trial++) {
      const L = 8 + Math.floor(r() * 40);
      const density = [0, 0.1, 0.5, 0.95][trial % 4];
      const positions = [];
      for (let p = 0; p < L; p++) if (r() < density) positions.push(p);
      if (trial % 5 === 1 && !positions.includes(L - 1)) positions.push(L - 1);
      const spans = spansOf(positions, (p) => 100 + ((p * 7919) % 3000));
      const alg = ALGORITHMS[trial % ALGORITHMS.length];
      const reference = trial % 2 === 0;
      const sample = trial % 3 === 0 ? semiDiff : fullDiff;
      const opts = { model: ctx.model, fixed: spans, alg, eta: 0.8, steps: 3, contextLength: L, seed: trial, reference };
      if (sample === semiDiff) opts.blockSize = 4;
      const rows = await sample(opts);
      assertKept(rows, spans, `trial ${trial} (${alg}, L ${L}, ${spans.length} spans)`);
    }
  });

  it('overlapping spans and spans beyond the context are clear errors', async () => {
    const r = rng(99);
    for (let trial = 0; trial < 30; trial++) {
      const L = 16 + Math.floor(r() * 16);
      const a = Math.floor(r() * (L - 4));
      const len = 2 + Math.floor(r() * 3);
      const overlapping = [{ at: a, tokens: Array(len).fill(5) }, { at: a + Math.floor(r() * len), tokens: [6, 6] }];
      await assert.rejects(() => fullDiff({ model: ctx.model, fixed: overlapping, steps: 1, contextLength: L }),
        (e) => e instanceof HdlmArgumentError && /must not overlap/.test(e.message));
      const beyond = [{ at: L - 1 - Math.floor(r() * 3), tokens: [5, 5, 5, 5] }];
      await assert.rejects(() => fullDiff({ model: ctx.model, fixed: beyond, steps: 1, contextLength: L }),
        (e) => e instanceof HdlmArgumentError && /within contextLength/.test(e.message));
    }
    await assert.rejects(() => fullDiff({ model: ctx.model, prompt: [1, 2, 3], fixed: [{ at: 2, tokens: [4] }], steps: 1, contextLength: 8 }),
      (e) => e instanceof HdlmArgumentError && /overlap the prompt/.test(e.message));
    await assert.rejects(() => fullDiff({ model: ctx.model, fixed: [{ at: 3, tokens: [ctx.model.maskId] }], steps: 1, contextLength: 8 }),
      (e) => e instanceof HdlmArgumentError && /mask id/.test(e.message));
    await assert.rejects(() => fullDiff({ model: ctx.model, fixed: [{ at: -1, tokens: [4] }], steps: 1, contextLength: 8 }), HdlmArgumentError);
    await assert.rejects(() => fullDiff({ model: ctx.model, fixed: [{ at: 1, tokens: [4], where: 2 }], steps: 1, contextLength: 8 }), HdlmArgumentError);
    await assert.rejects(() => fullDiff({ model: ctx.model, fixed: { at: 1, tokens: [4] }, steps: 1, contextLength: 8 }), HdlmArgumentError);
    await assert.rejects(() => fullDiff({ model: ctx.model, fixed: [{ at: 1, tokens: [[4], [5], [6]] }], batchSize: 2, steps: 1, contextLength: 8 }), HdlmArgumentError);
  });

  it('an empty list, and empty spans, change nothing (same tokens as without)', async () => {
    for (const reference of [true, false]) {
      const base = { model: ctx.model, prompt: [3, 4], alg: 'acs', steps: 4, contextLength: 24, seed: 17, reference };
      const plain = await fullDiff(base);
      assert.deepStrictEqual(await fullDiff({ ...base, fixed: [] }), plain);
      assert.deepStrictEqual(await fullDiff({ ...base, fixed: [{ at: 9, tokens: [] }] }), plain);
    }
  });

  it('a span at 0 is the prompt: the same tokens as `prompt`, in both modes, every algorithm', async () => {
    for (const reference of [true, false]) for (const alg of ALGORITHMS) {
      const base = { model: ctx.model, alg, steps: 4, contextLength: 24, seed: 23, batchSize: 2, reference };
      const viaPrompt = await fullDiff({ ...base, prompt: [3, 4, 5] });
      const viaFixed = await fullDiff({ ...base, fixed: [{ at: 0, tokens: [3, 4, 5] }] });
      assert.deepStrictEqual(viaFixed, viaPrompt, `${alg} ${reference ? 'reference' : 'fast'}`);
    }
  });

  it('the fixed tokens condition the rest (a suffix changes the samples)', async () => {
    const base = { model: ctx.model, steps: 4, contextLength: 24, seed: 31, reference: true };
    const a = await fullDiff({ ...base, fixed: [{ at: 20, tokens: [1, 2, 3, 4] }] });
    const b = await fullDiff({ ...base, fixed: [{ at: 20, tokens: [900, 901, 902, 903] }] });
    assert.notDeepStrictEqual(a[0].slice(0, 20), b[0].slice(0, 20));
  });

  it('the shifted samplers and gamma models refuse fixed tokens with a clear error', async () => {
    await assert.rejects(() => fullDiffShifted({ model: ctx.model, fixed: [{ at: 3, tokens: [1] }], steps: 1, contextLength: 8 }),
      (e) => e instanceof HdlmError && e.code === 'HDLM_UNSUPPORTED' && /fixed tokens/.test(e.message));
    await assert.rejects(() => gammaSample({ model: ctx.model, fixed: [{ at: 3, tokens: [1] }] }),
      (e) => e instanceof HdlmError && e.code === 'HDLM_UNSUPPORTED' && /fixed tokens/.test(e.message));
  });
});
