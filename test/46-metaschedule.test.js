'use strict';
// Metaschedules against values worked out by hand from upstream's hdlm/metaschedule.py and
// hdlm/metaschedule_utils.py.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const {
  makeSimpleAnnealing, makeBlockAnnealing, makeHybridAnnealing, createMetaschedule, Metaschedule, smartModelLoader, HdlmError,
} = require('../dist');
const { FIXTURES, DEMO_MODEL, tempDir } = require('./helpers/reference');

const W = 'W'; // placeholder, replaced by the schedule's worthless level in tables below
const table = (ms, n, rows) => {
  rows.forEach(([k, levels, numSettled]) => {
    const s = ms.step(k, n);
    assert.deepStrictEqual(s.levels, levels.map((x) => (x === W ? ms.worthless : x)), `levels at k=${k}`);
    assert.strictEqual(s.numSettled, numSettled, `num_settled at k=${k}`);
  });
};
const maskRows = (mask) => mask.map((r) => r.map((b) => (b ? '1' : '0')).join(''));

describe('metaschedule: simple annealing (make_simple_annealing)', () => {
  it('main diagonal = round_half_even(i·(tau−1)/(width−1)): the docstring examples', () => {
    assert.deepStrictEqual(makeSimpleAnnealing(4, 4).step(4, 4).levels, [0, 1, 2, 3]);
    assert.deepStrictEqual(makeSimpleAnnealing(4, 8).step(4, 4).levels, [0, 2, 5, 7]); // 7/3 → 2, 14/3 → 5
    assert.deepStrictEqual(makeSimpleAnnealing(4, 2).step(4, 4).levels, [0, 0, 1, 1]); // 1/3 → 0, 2/3 → 1
    // ties go to even: width 5, tau 3: i·2/4 = 0, 0.5, 1, 1.5, 2 → 0, 0, 1, 2, 2
    assert.deepStrictEqual(makeSimpleAnnealing(5, 3).step(5, 5).levels, [0, 0, 1, 2, 2]);
    assert.deepStrictEqual(makeSimpleAnnealing(1, 6).step(1, 3).levels, [5, 6, 6]);
  });

  it('bootstrap enters the diagonal from the left, then it slides by its leading zeros', () => {
    const ms = makeSimpleAnnealing(4, 8);
    assert.strictEqual(ms.worthless, 8);
    table(ms, 8, [
      [0, [W, W, W, W, W, W, W, W], 0],
      [1, [7, W, W, W, W, W, W, W], 0],
      [2, [5, 7, W, W, W, W, W, W], 0],
      [3, [2, 5, 7, W, W, W, W, W], 0],
      [4, [0, 2, 5, 7, W, W, W, W], 0],
      [5, [0, 0, 2, 5, 7, W, W, W], 1],
      [7, [0, 0, 0, 0, 2, 5, 7, W], 3],
    ]);
    // tau 2: main (0,0,1,1) has two leading zeros → two positions settle per step
    table(makeSimpleAnnealing(4, 2), 6, [[5, [0, 0, 0, 0, 1, 1], 2], [6, [0, 0, 0, 0, 0, 0], 4]]);
  });

  it('max_step(n) = first k whose levels are all zero, plus one', () => {
    // width 4, tau 8, n 8: all zero once num_settled + 1 ≥ 8 → k − 4 = 7 → k = 11 → 12
    assert.strictEqual(makeSimpleAnnealing(4, 8).maxStep(8), 12);
    // tau 2, n 6: k = 6 (above) → 7
    assert.strictEqual(makeSimpleAnnealing(4, 2).maxStep(6), 7);
  });
});

describe('metaschedule: block annealing (make_block_annealing)', () => {
  const ms = makeBlockAnnealing(2, 3);
  it('each block goes through levels tau−1 .. 0; earlier blocks settled, later ones worthless', () => {
    assert.strictEqual(ms.worthless, 3);
    table(ms, 5, [
      [0, [3, 3, 3, 3, 3], 0],
      [1, [2, 2, 3, 3, 3], 0],
      [2, [1, 1, 3, 3, 3], 0],
      [3, [0, 0, 3, 3, 3], 0],
      [4, [0, 0, 2, 2, 3], 2],
      [6, [0, 0, 0, 0, 3], 2],
      [7, [0, 0, 0, 0, 2], 4],
      [9, [0, 0, 0, 0, 0], 4],
    ]);
  });
  it('max_step(n) = tau·ceil(n/width) + 1', () => {
    assert.strictEqual(ms.maxStep(5), 10);
    assert.strictEqual(ms.maxStep(4), 7);
    assert.strictEqual(makeBlockAnnealing(1024, 2048).maxStep(1024), 2049);
  });
});

describe('metaschedule: hybrid annealing (make_hybrid_annealing)', () => {
  const ms = makeHybridAnnealing(2, 2, 5); // blocks 2, 2, 1; tau + width − 1 = 3 steps per block
  it('a diagonal sweep inside each block; num_settled counts finished blocks; k clamps to [1, total]', () => {
    assert.strictEqual(ms.worthless, 2);
    table(ms, 5, [
      [0, [1, 1, 2, 2, 2], 0],
      [1, [1, 1, 2, 2, 2], 0],
      [2, [0, 1, 2, 2, 2], 0],
      [3, [0, 0, 2, 2, 2], 0],
      [4, [0, 0, 1, 1, 2], 2],
      [5, [0, 0, 0, 1, 2], 2],
      [7, [0, 0, 0, 0, 1], 4],
      [9, [0, 0, 0, 0, 0], 4],
      [50, [0, 0, 0, 0, 0], 4],
    ]);
    assert.deepStrictEqual(ms.step(4, 3).levels, [0, 0, 1], 'stop = n truncates, no padding');
  });
  it('max_step = blocks · (tau + width − 1) + 1', () => {
    assert.strictEqual(ms.maxStep(5), 10);
  });
});

describe('metaschedule: times and attention masks (metaschedule_utils.py, and its autoregressive variant)', () => {
  const eps = 1e-4;
  const f32 = (x) => Math.fround(x);
  it('block annealing, block_causal context: settled at eps, active at εa + ℓΔ, worthless at 1 − eps', () => {
    const p = makeBlockAnnealing(2, 3).plan(4, 5, { eps, contextAttention: 'block_causal', blockAttention: 'full' });
    // levels 0 0 2 2 3, num_settled 2; εa = 1e-3, Δ = (1 − 2e-3)/2
    const delta = f32((1 - 2e-3) / 2);
    const active = f32(f32(2 * delta) + f32(1e-3));
    assert.deepStrictEqual(Array.from(p.t), [f32(eps), f32(eps), active, active, f32(1 - eps)]);
    assert.ok(Math.abs(active - 0.999) < 1e-6);
    assert.deepStrictEqual(p.settled, [true, true, false, false, false]);
    assert.deepStrictEqual(p.act, [false, false, true, true, false]);
    assert.deepStrictEqual(p.den, [false, false, false, false, false]);
    // settled block 0 sees itself; actives see themselves and the settled; the worthless row is fully blocked
    assert.deepStrictEqual(maskRows(p.mask), ['00111', '00111', '00001', '00001', '11111']);
  });

  it('level-0 active tokens are the ones to denoise', () => {
    const p = makeBlockAnnealing(2, 3).plan(3, 5, { eps });
    assert.deepStrictEqual(p.den, [true, true, false, false, false]);
    assert.deepStrictEqual(p.act, [true, true, false, false, false]);
    assert.strictEqual(p.t[0], f32(1e-3));
    assert.deepStrictEqual(maskRows(p.mask), ['00111', '00111', '11111', '11111', '11111']);
  });

  it('causal context, causal block attention', () => {
    const p = makeBlockAnnealing(2, 3).plan(7, 5, { eps, contextAttention: 'causal', blockAttention: 'causal' });
    // levels 0 0 0 0 2, num_settled 4 → settled 0..3 (lower triangle), active 4
    assert.deepStrictEqual(maskRows(p.mask), ['01111', '00111', '00011', '00001', '00000']);
  });

  it('block_causal settled region with a block of width: later blocks see earlier ones', () => {
    const p = makeBlockAnnealing(2, 3).plan(7, 5, { eps, contextAttention: 'block_causal' });
    assert.deepStrictEqual(maskRows(p.mask), ['00111', '00111', '00001', '00001', '00000']);
  });

  it('autoregressive variant (semi_diff_shifted): shifted levels, first active at eps, (i, i+1) allowed', () => {
    const p = makeBlockAnnealing(2, 3).plan(4, 5, { eps, contextAttention: 'causal', blockAttention: 'causal', autoregressive: true });
    // lev = 0 ++ (0 0 2 2); num_settled 2 → positions 0,1 at eps; 2..4 active; position 2 forced to eps
    const delta = f32((1 - 2e-3) / 2);
    const active = f32(f32(2 * delta) + f32(1e-3));
    assert.deepStrictEqual(Array.from(p.t), [f32(eps), f32(eps), f32(eps), active, active]);
    assert.deepStrictEqual(p.act, [false, false, true, true, true]);
    assert.deepStrictEqual(p.den, [false, false, false, false, false]);
    assert.deepStrictEqual(p.settled, [true, true, true, false, false]); // positions <= num_settled
    // settled end 1 + 1 = 2, active 2..4 (starting at the settled end), next-token edges opened
    assert.deepStrictEqual(maskRows(p.mask), ['01111', '00111', '00001', '00000', '00000']);
  });

  it('validates its arguments', () => {
    const ms = makeBlockAnnealing(2, 3);
    assert.throws(() => makeBlockAnnealing(0, 3), (e) => e instanceof HdlmError && /Expected an integer .* for width/.test(e.message));
    assert.throws(() => makeSimpleAnnealing(2, 1.5), /for tau/);
    assert.throws(() => ms.step(-1, 3), /for k/);
    assert.throws(() => ms.plan(1, 3, { contextAttention: 'diagonal' }), /contextAttention/);
    assert.throws(() => ms.plan(1, 3, { epsilon: 1 }), /Unknown option epsilon/);
  });
});

describe('metaschedule: from the checkpoint config (create_metaschedule)', () => {
  const read = (p) => JSON.parse(fs.readFileSync(p, 'utf8'));
  it('annealing.type block/simple/hybrid with width and eval_tau; anything else → null', () => {
    const g = createMetaschedule(read(path.join(FIXTURES, 'tiny-gamma', 'config.json')), 128);
    assert.ok(g instanceof Metaschedule);
    assert.deepStrictEqual([g.type, g.width, g.tau], ['block', 128, 256]);
    assert.strictEqual(createMetaschedule({ annealing: { type: 'simple', width: 4, tau: 9, eval_tau: 8 } }, 16).tau, 8);
    const h = createMetaschedule({ annealing: { type: 'hybrid', width: 4, tau: 8 } }, 64);
    assert.deepStrictEqual([h.type, h.width, h.tau, h.length], ['hybrid', 4, 8, 64]);
    assert.strictEqual(createMetaschedule({ annealing: { type: 'none', width: 4, tau: 8 } }, 64), null);
    assert.strictEqual(createMetaschedule({}, 64), null);
    assert.throws(() => createMetaschedule({ annealing: { type: 'block', width: 0, tau: 8 } }, 64), (e) => e.code === 'HDLM_BAD_FILE');
  });

  it('smartModelLoader returns it as `metaschedule` (gamma and epsilon checkpoints)', async () => {
    const cache = tempDir('ms');
    try {
      const g = await smartModelLoader(path.join(FIXTURES, 'tiny-gamma'), { device: 'cpu', torchscriptCacheDir: cache });
      assert.strictEqual(String(g.metaschedule), 'Metaschedule(block, width 128, tau 256)');
      assert.strictEqual(g.metaschedule.maxStep(128), 257);
      g.model.dispose();
      const e = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache });
      assert.deepStrictEqual([e.metaschedule.type, e.metaschedule.width, e.metaschedule.tau], ['block', 256, 256]);
      e.model.dispose();
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });
});
