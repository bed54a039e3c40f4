'use strict';
// fullDiff / semiDiff: invariants on the trained demo model, and distributions on a synthetic
// checkpoint whose logits are known exactly (output weights 0, so logits = output bias).
const assert = require('assert');
const fs = require('fs');
const { smartModelLoader, fullDiff, semiDiff, AbortError, ALGORITHMS } = require('../dist');
const { makeEpsilonCheckpoint, defaultFill } = require('./helpers/safetensors-writer');
const { DEMO_MODEL, tempDir } = require('./helpers/reference');

const MASK = 50257;
const PROMPT = [464, 2003, 286, 11666, 4430];

function countMasks(rows) {
  return rows.reduce((n, row) => n + row.filter((t) => t === MASK).length, 0);
}

// Registers hooks that build and load a checkpoint whose logits are its output bias at every
// position (output weights 0): `logits` maps ids to their logit, every other id (the mask id too,
// unless given) sits at -40. The loaded model is `ctx.model` once the hooks ran.
function useBiasOnlyModel(label, logits) {
  const ctx = {};
  before(async () => {
    ctx.dir = tempDir(label);
    ctx.cache = tempDir('ts');
    makeEpsilonCheckpoint(ctx.dir, {
      hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 64,
      fill: (name, shape) => {
        if (name === 'output_layer.linear.weight') return new Float32Array(shape[0] * shape[1]);
        if (name === 'output_layer.linear.bias') {
          const b = new Float32Array(shape[0]).fill(-40);
          for (const [id, l] of Object.entries(logits)) b[Number(id)] = l;
          return b;
        }
        return defaultFill(name, shape);
      },
    });
    ({ model: ctx.model } = await smartModelLoader(ctx.dir, { device: 'cpu', torchscriptCacheDir: ctx.cache }));
  });
  after(() => {
    ctx.model?.dispose();
    fs.rmSync(ctx.dir, { recursive: true, force: true });
    fs.rmSync(ctx.cache, { recursive: true, force: true });
  });
  return ctx;
}

describe('samplers: invariants on the demo model', function () {
  let model;
  let cache;
  before(async () => {
    cache = tempDir('ts');
    ({ model } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache }));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  for (const reference of [true, false]) for (const [name, sample] of [['fullDiff', fullDiff], ['semiDiff', semiDiff]]) {
    for (const alg of ALGORITHMS) {
      it(`${name} ${alg} (${reference ? 'reference' : 'fast'}): shape, prompt kept, ids in range, ${alg === 'remdm' ? 'masks allowed (upstream remdm may keep them)' : 'no mask left'}`, async () => {
        const opts = { model, prompt: PROMPT, batchSize: 2, alg, steps: 6, contextLength: 24, seed: 3, reference };
        if (name === 'semiDiff') opts.blockSize = 8;
        const out = await sample(opts);
        assert.strictEqual(out.length, 2);
        for (const row of out) {
          assert.strictEqual(row.length, 24);
          assert.deepStrictEqual(row.slice(0, 5), PROMPT);
          for (const id of row) assert.ok(Number.isInteger(id) && id >= 0 && id < 50258, `id ${id}`);
        }
        if (alg !== 'remdm') assert.strictEqual(countMasks(out), 0);
      });
    }
  }

  for (const reference of [true, false]) {
    it(`same seed gives the same tokens; another seed other tokens (${reference ? 'reference' : 'fast'})`, async () => {
      const opts = { model, prompt: PROMPT, alg: 'acs', steps: 8, contextLength: 32, reference };
      const a = await fullDiff({ ...opts, seed: 42 });
      const b = await fullDiff({ ...opts, seed: 42n });
      const c = await fullDiff({ ...opts, seed: 43 });
      assert.deepStrictEqual(a, b);
      assert.notDeepStrictEqual(a, c);
    });
  }

  it('fast logits agree with reference logits (argmax on >= 97% of positions)', async () => {
    const x = [Array.from({ length: 64 }, (_, i) => (i % 3 === 0 ? 50257 : PROMPT[i % 5]))];
    const ref = await model.forward(x);
    const fast = await model.forward(x, undefined, { reference: false });
    assert.deepStrictEqual(fast.shape, ref.shape);
    const V = ref.shape[2];
    let same = 0;
    for (let r = 0; r < 64; r++) {
      let a = 0;
      let b = 0;
      for (let j = 1; j < V; j++) {
        if (ref.data[r * V + j] > ref.data[r * V + a]) a = j;
        if (fast.data[r * V + j] > fast.data[r * V + b]) b = j;
      }
      if (a === b) same++;
    }
    assert.ok(same / 64 >= 0.97, `argmax agreement ${same}/64`);
  });

  it('fast and reference modes draw the same per-position token distribution (two-sample chi-square)', async () => {
    // Many samples of a short continuation; per position, a chi-square two-sample test on the
    // tokens both modes produced (categories seen < 5 times pooled merged). Positions are
    // dependent, so instead of one combined p-value the share of positions rejecting at 1 %
    // must stay near the nominal 1 %.
    const common = { model, prompt: PROMPT, batchSize: 48, alg: 'acs', steps: 8, contextLength: 12 };
    const runs = async (reference) => {
      const rows = [];
      for (let seed = 0; seed < 3; seed++) rows.push(...(await fullDiff({ ...common, reference, seed: 100 + seed })));
      return rows;
    };
    const [a, b] = [await runs(true), await runs(false)];
    const { chiSquareTwoSample } = require('./helpers/stats');
    let rejected = 0;
    const positions = [];
    for (let pos = 5; pos < 12; pos++) {
      const r = chiSquareTwoSample(a.map((row) => row[pos]), b.map((row) => row[pos]));
      positions.push(r.p.toFixed(3));
      if (r.p < 0.01) rejected++;
    }
    assert.ok(rejected <= 1, `positions rejecting at 1%: ${rejected}/7 (p = ${positions})`);
  });

  it('a prompt per row sets the batch; no prompt samples unconditionally', async () => {
    const rows = [[464, 2003], [11666, 4430]];
    const out = await fullDiff({ model, prompt: rows, steps: 4, contextLength: 16, seed: 1 });
    assert.deepStrictEqual(out.map((r) => r.slice(0, 2)), rows);
    const free = await fullDiff({ model, batchSize: 3, steps: 4, contextLength: 16, seed: 1 });
    assert.strictEqual(free.length, 3);
    assert.strictEqual(countMasks(free), 0);
  });

  it('contextLength defaults to the model length and temperature 0 is deterministic across seeds', async () => {
    const a = await fullDiff({ model, prompt: PROMPT, steps: 2, temperature: 0, seed: 1 });
    assert.strictEqual(a[0].length, 256);
    const b = await fullDiff({ model, prompt: PROMPT, steps: 2, temperature: 0, seed: 2, contextLength: 256 });
    // With temperature 0 the chosen token is the argmax; only which positions unmask depends on the seed.
    const c = await fullDiff({ model, prompt: PROMPT, steps: 1, temperature: 0, seed: 5, contextLength: 24 });
    const d = await fullDiff({ model, prompt: PROMPT, steps: 1, temperature: 0, seed: 6, contextLength: 24 });
    assert.deepStrictEqual(c, d);
    assert.strictEqual(b[0].length, 256);
  });

  it('cfgScale > 0 guides with the prompt (intended upstream semantics) and keeps it', async () => {
    const out = await fullDiff({ model, prompt: PROMPT, steps: 4, contextLength: 16, cfgScale: 1.5, seed: 9 });
    assert.deepStrictEqual(out[0].slice(0, 5), PROMPT);
    assert.strictEqual(countMasks(out), 0);
    const plain = await fullDiff({ model, prompt: PROMPT, steps: 4, contextLength: 16, seed: 9 });
    assert.notDeepStrictEqual(out, plain);
  });

  it('onStep reports every step, with tokens when asked; semiDiff counts blocks × steps', async () => {
    const seen = [];
    const out = await fullDiff({
      model, prompt: PROMPT, steps: 5, contextLength: 16, seed: 2, stepTokens: true,
      onStep: (s) => seen.push(s),
    });
    assert.deepStrictEqual(seen.map((s) => s.step), [1, 2, 3, 4, 5]);
    assert.ok(seen.every((s) => s.total === 5 && s.tokens.length === 1 && s.tokens[0].length === 16));
    assert.deepStrictEqual(seen[4].tokens, out);
    const masks = seen.map((s) => countMasks(s.tokens));
    for (let i = 1; i < masks.length; i++) assert.ok(masks[i] <= masks[i - 1], 'original never re-masks');
    const semi = [];
    await semiDiff({ model, steps: 3, contextLength: 16, blockSize: 4, seed: 2, onStep: (s) => semi.push(s) });
    assert.strictEqual(semi.length, 12);
    assert.ok(semi.every((s) => s.total === 12 && s.tokens === null));
  });

  it('semiDiff fills blocks left to right', async () => {
    const snapshots = [];
    await semiDiff({
      model, steps: 2, contextLength: 12, blockSize: 4, seed: 4, stepTokens: true,
      onStep: (s) => snapshots.push(s.tokens[0]),
    });
    // after block k (2 steps each) positions < 4(k+1) are filled, later ones still masked
    for (let k = 0; k < 3; k++) {
      const row = snapshots[2 * k + 1];
      assert.ok(row.slice(0, 4 * (k + 1)).every((t) => t !== MASK), `block ${k} filled`);
      assert.ok(row.slice(4 * (k + 1)).every((t) => t === MASK), `after block ${k} still masked`);
    }
  });

  it('an AbortSignal stops sampling within a step; the model stays usable', async () => {
    const controller = new AbortController();
    let steps = 0;
    // Reference mode: steps long enough that progress reaches JS before the next one ends.
    const p = fullDiff({
      model, steps: 200, contextLength: 64, seed: 1, signal: controller.signal, reference: true,
      onStep: (s) => {
        steps = s.step;
        if (s.step === 3) controller.abort(new Error('user stop'));
      },
    });
    await assert.rejects(p, (e) => {
      assert.ok(e instanceof AbortError && e.name === 'AbortError' && e.code === 'HDLM_ABORTED', e && e.stack);
      // onStep is delivered a little after the step ran; the loop counts exactly where it was
      // when abort() was called and where it stopped.
      assert.ok(e.stepsAtAbort >= 3 && e.stepsDone - e.stepsAtAbort <= 1, `abort at ${e.stepsAtAbort}, stopped after ${e.stepsDone}`);
      assert.ok(steps >= 3 && steps <= e.stepsDone, `onStep saw ${steps} steps`);
      return true;
    });
    const pre = new AbortController();
    pre.abort();
    await assert.rejects(fullDiff({ model, steps: 2, contextLength: 8, signal: pre.signal }), AbortError);
    const ok = await fullDiff({ model, steps: 2, contextLength: 8, seed: 1 });
    assert.strictEqual(ok[0].length, 8);
    // Fast mode: an abort during the run rejects too.
    const fastController = new AbortController();
    const fast = fullDiff({ model, steps: 100000, contextLength: 64, seed: 1, signal: fastController.signal });
    setTimeout(() => fastController.abort(), 50);
    await assert.rejects(fast, AbortError);
  });

  it('does not block the event loop while sampling', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    await fullDiff({ model, steps: 30, contextLength: 128, seed: 1 });
    clearInterval(timer);
    assert.ok(ticks >= 5, `only ${ticks} timer ticks ran during sampling`);
  });
});

describe('samplers: distributions on a model with known logits', function () {
  // logits = output bias for every position: a handful of tokens with chosen logits,
  // everything else (mask included) far below.
  const CHOICES = [10, 11, 12, 13, 14, 15, 16, 17];
  const LOGITS = [2.0, 1.0, 0.5, 0.0, -0.5, -1.0, 1.5, 0.2];
  const ctx = useBiasOnlyModel('known', Object.fromEntries(CHOICES.map((id, i) => [id, LOGITS[i]])));
  let model;
  before(() => { model = ctx.model; });

  function chiSquare(counts, probs) {
    const n = counts.reduce((a, b) => a + b, 0);
    return counts.reduce((s, c, i) => s + (c - n * probs[i]) ** 2 / (n * probs[i]), 0);
  }

  for (const reference of [true, false]) for (const T of [1.0, 0.7]) {
    it(`sampled tokens follow softmax(logits / ${T}) (chi-square, 7 dof; ${reference ? 'reference' : 'fast'})`, async () => {
      const counts = new Array(CHOICES.length).fill(0);
      for (let seed = 0; seed < 4; seed++) {
        // steps: 1 → every position is sampled at the single (last) step
        const out = await fullDiff({ model, batchSize: 8, steps: 1, contextLength: 64, temperature: T, seed, reference });
        for (const row of out) for (const id of row) {
          const k = CHOICES.indexOf(id);
          assert.ok(k >= 0, `sampled id ${id} outside the support`);
          counts[k]++;
        }
      }
      const w = LOGITS.map((l) => Math.exp(l / T));
      const z = w.reduce((a, b) => a + b, 0);
      const chi2 = chiSquare(counts, w.map((x) => x / z));
      assert.ok(chi2 < 24.32, `chi2 ${chi2.toFixed(2)} >= 24.32 (p < 0.001); counts ${counts}`);
    });
  }

  it('temperature 0 is greedy (both modes)', async () => {
    for (const reference of [true, false]) {
      const out = await fullDiff({ model, batchSize: 2, steps: 3, contextLength: 32, temperature: 0, seed: 7, reference });
      for (const row of out) for (const id of row) assert.strictEqual(id, 10);
    }
  });

  for (const reference of [true, false]) it(`positions unmask at the rate 1 - s/t of the time grid (original, ${reference ? 'reference' : 'fast'})`, async () => {
    const S = 8;
    const perStep = new Array(S).fill(0);
    for (let seed = 0; seed < 2; seed++) {
      let masked = 8 * 64;
      await fullDiff({
        model, batchSize: 8, steps: S, contextLength: 64, seed, stepTokens: true, reference,
        onStep: ({ step, tokens }) => {
          const now = countMasks(tokens);
          perStep[step - 1] += masked - now;
          masked = now;
        },
      });
    }
    // τ = linspace(1, eps, S + 1): each step unmasks the same expected share 1/S of the positions.
    const chi2 = chiSquare(perStep, new Array(S).fill(1 / S));
    assert.ok(chi2 < 24.32, `chi2 ${chi2.toFixed(2)} over ${S} steps: ${perStep}`);
    assert.strictEqual(perStep.reduce((a, b) => a + b, 0), 2 * 8 * 64);
  });

  for (const reference of [true, false]) it(`remask re-masks a share 1 - p of the positions after every non-final step (${reference ? 'reference' : 'fast'})`, async () => {
    const S = 4;
    const maskedAfter = new Array(S).fill(0);
    for (let seed = 0; seed < 2; seed++) {
      await fullDiff({
        model, alg: 'remask', batchSize: 8, steps: S, contextLength: 64, seed, stepTokens: true, reference,
        onStep: ({ step, tokens }) => { maskedAfter[step - 1] += countMasks(tokens); },
      });
    }
    const n = 2 * 8 * 64;
    // τ[k] = 1 - k(1 - eps)/S; after step i the share masked is 1 - p_i = τ[i+1] / τ[i]
    const tau = (k) => 1 - (k * (1 - 1e-5)) / S;
    for (let i = 0; i < S - 1; i++) {
      const q = tau(i + 1) / tau(i);
      const sd = Math.sqrt(n * q * (1 - q));
      assert.ok(Math.abs(maskedAfter[i] - n * q) < 5 * sd, `step ${i + 1}: ${maskedAfter[i]} masked, expected ${n * q}`);
    }
    assert.strictEqual(maskedAfter[S - 1], 0);
  });
});

describe('samplers: a model that samples the mask id (fast mode tracks the mask state it cannot see)', function () {
  // logits = output bias: the mask id is as likely as the best real token, so sampled positions often
  // stay masked, and fast mode's host-side mirror of the mask state must catch up with the device.
  const ctx = useBiasOnlyModel('mask-heavy', { 10: 1.0, 11: 0.0, [MASK]: 1.0 });
  let model;
  before(() => { model = ctx.model; });

  for (const alg of ['original', 'acs']) {
    it(`${alg}: fast and reference modes leave the same share of masks`, async () => {
      const share = {};
      for (const reference of [true, false]) {
        let masks = 0;
        let total = 0;
        for (let seed = 0; seed < 6; seed++) {
          const out = await fullDiff({ model, alg, eta: 0.3, batchSize: 4, steps: 8, contextLength: 64, seed, reference });
          masks += countMasks(out);
          total += 4 * 64;
        }
        share[reference ? 'reference' : 'fast'] = { p: masks / total, n: total };
      }
      const { reference: r, fast: f } = share;
      const pooled = (r.p * r.n + f.p * f.n) / (r.n + f.n);
      const z = (f.p - r.p) / Math.sqrt(pooled * (1 - pooled) * (1 / r.n + 1 / f.n));
      // P(mask) per draw is e / (2e + 1) ≈ 0.42: a good share stays masked after the last step
      assert.ok(r.p > 0.05 && f.p > 0.05, `shares ${r.p}, ${f.p}`);
      if (process.env.HDLM_TEST_VERBOSE) console.log(`      mask share: reference ${r.p.toFixed(4)}, fast ${f.p.toFixed(4)}`);
      assert.ok(Math.abs(z) < 4, `mask share reference ${r.p.toFixed(4)} vs fast ${f.p.toFixed(4)} (z = ${z.toFixed(2)})`);
    });
  }

  for (const reference of [true, false]) it(`a prompt holding the mask id keeps it: upstream re-imposes the prompt (${reference ? 'reference' : 'fast'})`, async () => {
    for (const alg of ['original', 'acs']) {
      const prompt = [10, MASK, 11];
      const out = await fullDiff({ model, alg, prompt, steps: 4, contextLength: 16, seed: 5, reference });
      assert.deepStrictEqual(out[0].slice(0, 3), prompt, alg);
    }
  });
});
