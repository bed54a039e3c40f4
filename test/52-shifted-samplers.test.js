'use strict';
// fullDiffShifted / semiDiffShifted (upstream full_diff_shifted / semi_diff_shifted): invariants on
// the demo model, and the repetition penalty on a checkpoint whose logits are known exactly.
const assert = require('assert');
const fs = require('fs');
const {
  smartModelLoader, fullDiffShifted, semiDiffShifted, makeBlockAnnealing, ALGORITHMS, SEMI_SHIFTED_ALGORITHMS, AbortError,
} = require('../dist');
const { makeEpsilonCheckpoint, defaultFill } = require('./helpers/safetensors-writer');
const { DEMO_MODEL, tempDir } = require('./helpers/reference');

const MASK = 50257;
const BOS = 50256;
const PROMPT = [464, 2003, 286, 11666, 4430];
const countMasks = (rows) => rows.flat().filter((t) => t === MASK).length;

describe('samplers: shifted (next-token) samplers on the demo model', function () {
  this.timeout(120000);
  let model;
  let cache;
  before(async () => {
    cache = tempDir('sh');
    ({ model } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache }));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  for (const alg of ALGORITHMS) {
    it(`fullDiffShifted ${alg}: shape, ids in range, ${alg === 'remask_adhoc_shuffle' ? 'may rewrite existing tokens' : 'prompt kept'}, ${['remdm', 'remask_adhoc_shuffle'].includes(alg) ? '' : 'no mask left'}`, async () => {
      const out = await fullDiffShifted({ model, prompt: PROMPT, batchSize: 2, alg, steps: 6, contextLength: 24, seed: 3 });
      assert.strictEqual(out.length, 2);
      for (const row of out) {
        assert.strictEqual(row.length, 24);
        if (alg !== 'remask_adhoc_shuffle') assert.deepStrictEqual(row.slice(0, 5), PROMPT);
        for (const id of row) assert.ok(Number.isInteger(id) && id >= 0 && id < 50258, `id ${id}`);
      }
      // the last step has p = 1: every masked position is drawn and none remasked
      if (!['remdm', 'remask_adhoc_shuffle'].includes(alg)) assert.strictEqual(countMasks(out), 0);
    });
  }

  it("fullDiffShifted: BOS at position 0 without a prompt; 'acs' is upstream's 'original'", async () => {
    const a = await fullDiffShifted({ model, batchSize: 2, steps: 4, contextLength: 16, seed: 9 });
    assert.ok(a.every((row) => row[0] === BOS));
    const b = await fullDiffShifted({ model, batchSize: 2, steps: 4, contextLength: 16, seed: 9, alg: 'acs' });
    assert.deepStrictEqual(a, b);
    const c = await fullDiffShifted({ model, batchSize: 2, steps: 4, contextLength: 16, seed: 10 });
    assert.notDeepStrictEqual(a, c);
    assert.deepStrictEqual(await fullDiffShifted({ model, batchSize: 2, steps: 4, contextLength: 16, seed: 9 }), a);
  });

  const ms = makeBlockAnnealing(8, 4);
  for (const alg of SEMI_SHIFTED_ALGORITHMS) {
    it(`semiDiffShifted ${alg}: shape, prompt kept, seeded, ${alg === 'remdm' ? 'masks allowed' : 'no mask left'}`, async () => {
      const opts = { model, prompt: PROMPT, batchSize: 2, alg, metaschedule: ms, contextLength: 25, seed: 4 };
      const out = await semiDiffShifted(opts);
      for (const row of out) {
        assert.strictEqual(row.length, 25);
        assert.deepStrictEqual(row.slice(0, 5), PROMPT);
      }
      if (alg !== 'remdm') assert.strictEqual(countMasks(out), 0);
      assert.deepStrictEqual(await semiDiffShifted(opts), out);
    });
  }

  it('semiDiffShifted follows the metaschedule: max_step − 1 steps; later blocks stay masked until active', async () => {
    const snaps = [];
    const out = await semiDiffShifted({
      model, metaschedule: ms, contextLength: 25, seed: 2, stepTokens: true, onStep: (s) => snaps.push(s),
    });
    assert.strictEqual(out[0][0], BOS);
    // block annealing width 8, tau 4 over 25 tokens: 4·ceil(25/8) + 1 = 17 → steps 1..16
    assert.deepStrictEqual(snaps.map((s) => s.step), Array.from({ length: 16 }, (_, i) => i + 1));
    assert.ok(snaps.every((s) => s.total === 16));
    // shifted positions: block b covers positions 8b+1 .. 8b+8; steps 4b+1 .. 4b+4
    for (const { step, tokens } of snaps) {
      const block = Math.floor((step - 1) / 4);
      const firstLater = 8 * (block + 1) + 1;
      assert.ok(tokens[0].slice(firstLater).every((t) => t === MASK), `step ${step}: positions >= ${firstLater} masked`);
      if (step % 4 === 0) assert.ok(tokens[0].slice(1, firstLater).every((t) => t !== MASK), `step ${step}: block ${block} done`);
    }
  });

  it('semiDiffShifted: the attention types reach the model (context full vs causal differ)', async () => {
    // same seed, same draws: only the attention masks differ (temperature 0 would overflow exp here: upstream
    // divides by max(T, 1e-5) before the Gumbel-max, so greedy semi_diff_shifted degenerates, as upstream)
    const base = { model, prompt: PROMPT, metaschedule: ms, contextLength: 25, seed: 4 };
    const a = await semiDiffShifted({ ...base, contextAttention: 'full', blockAttention: 'full' });
    const b = await semiDiffShifted({ ...base, contextAttention: 'causal', blockAttention: 'causal' });
    assert.notDeepStrictEqual(a, b);
  });

  it('validates its options', async () => {
    const bad = (re) => (e) => e.code === 'HDLM_INVALID_ARGUMENT' && re.test(e.message);
    await assert.rejects(fullDiffShifted({ model, eta: 0.1 }), bad(/Unknown option eta/));
    await assert.rejects(fullDiffShifted({ model, repetitionPenalty: -1 }), bad(/repetitionPenalty/));
    await assert.rejects(fullDiffShifted({ model, bosId: 50258 }), bad(/bosId/));
    await assert.rejects(semiDiffShifted({ model, steps: 4 }), bad(/Unknown option steps/));
    await assert.rejects(semiDiffShifted({ model, alg: 'remask_adhoc_shuffle' }), bad(/Expected one of .* for alg/));
    await assert.rejects(semiDiffShifted({ model, metaschedule: {} }), bad(/metaschedule/));
    await assert.rejects(semiDiffShifted({ model, blockAttention: 'block_causal' }), bad(/blockAttention/));
  });

  it('an AbortSignal stops semiDiffShifted', async () => {
    const ac = new AbortController();
    const p = semiDiffShifted({ model, metaschedule: ms, contextLength: 25, signal: ac.signal, onStep: (s) => s.step === 2 && ac.abort() });
    await assert.rejects(p, (e) => e instanceof AbortError);
  });
});

describe('samplers: repetition penalty of the shifted samplers (known logits)', function () {
  // output weights 0 → logits = output bias: A = 5, B = 4, everything else −40; temperature 0 = greedy
  const A = 100;
  const B = 200;
  let dir;
  let cache;
  let model;
  before(async () => {
    dir = tempDir('pen');
    cache = tempDir('ts');
    makeEpsilonCheckpoint(dir, {
      hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 16,
      fill: (name, shape) => {
        if (name === 'output_layer.linear.weight') return new Float32Array(shape[0] * shape[1]);
        if (name === 'output_layer.linear.bias') {
          const b = new Float32Array(shape[0]).fill(-40);
          b[A] = 5;
          b[B] = 4;
          return b;
        }
        return defaultFill(name, shape);
      },
    });
    ({ model } = await smartModelLoader(dir, { device: 'cpu', torchscriptCacheDir: cache }));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(cache, { recursive: true, force: true });
  });

  it('divides by 1 + (rp − 1)·freq/max(freq) from the second step: 5/1.2 > 4 keeps A, 5/1.3 < 4 gives B', async () => {
    // prompt [A, A], one position to fill over 2 steps: drawn at step 0 (p = 1/2, no penalty) → A;
    // otherwise at step 1 with freq(A) = 2 = max → A's logit is divided by rp
    const seen = { 1.2: new Set(), 1.3: new Set() };
    for (let seed = 0; seed < 12; seed++) {
      for (const rp of [1.2, 1.3]) {
        const out = await fullDiffShifted({ model, prompt: [A, A], steps: 2, contextLength: 3, temperature: 0, repetitionPenalty: rp, seed });
        seen[rp].add(out[0][2]);
      }
    }
    assert.deepStrictEqual([...seen[1.2]], [A]);
    assert.deepStrictEqual([...seen[1.3]].sort(), [A, B].sort(), 'both paths happen over 12 seeds');
  });

  it('repetitionPenalty 1 never changes a choice', async () => {
    for (let seed = 0; seed < 4; seed++) {
      const out = await fullDiffShifted({ model, prompt: [A, A], steps: 2, contextLength: 3, temperature: 0, repetitionPenalty: 1, seed });
      assert.strictEqual(out[0][2], A);
    }
  });
});
