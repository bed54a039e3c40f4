'use strict';
// Step-level batching of concurrent fast-mode fullDiff calls (lib/core/batcher.ts,
// native/engine/samplers/batched.cc): a call's tokens do not depend on what it was batched with
// (on the CPU, exactly the same tokens), calls join a running batch and leave it, one aborted call
// leaves the others intact, the distribution is fast mode's, dispose() rejects every call of the
// batch, fixed tokens are kept; 'remask', 'remask_adhoc_shuffle' and 'remdm' requests share the
// native batch with 'original' / 'acs' ones and draw what they draw alone with batching: false.
const assert = require('assert');
const fs = require('fs');
const { smartModelLoader, fullDiff, semiDiff, HdlmError } = require('../dist');
const { DEMO_MODEL, tempDir } = require('./helpers/reference');
const { batchable, batchedCalls } = require('../dist/core/batcher');
const { prepareSampling, samplerKeys } = require('../dist/core/sampling');
const { chiSquareTwoSample } = require('./helpers/stats');

const PROMPT = [464, 2003, 286];

describe('batched fast sampling', function () {
  this.timeout(120000);
  let cache;
  let model;

  before(async () => {
    cache = tempDir('batch');
    ({ model } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache }));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  // eight different requests: algorithms, steps, temperatures, seeds, lengths, batch sizes, prompts
  const others = (k) => ({
    alg: k % 2 ? 'acs' : 'original', steps: 3 + k, temperature: [1, 0.7, 0, 1.3][k % 4], seed: 500 + k,
    contextLength: [12, 16, 24][k % 3], batchSize: 1 + (k % 3), prompt: k % 2 ? PROMPT : undefined, eta: k % 4 === 1 ? 0.2 : undefined,
  });
  const subject = { alg: 'acs', steps: 10, temperature: 1, seed: 42, contextLength: 16, batchSize: 2, prompt: PROMPT, eta: 0.1 };

  it('a seeded call gives the same tokens alone and inside a batch of 8 others', async () => {
    const alone = await fullDiff({ model, ...subject });
    const alone8 = [];
    for (let k = 0; k < 8; k++) alone8.push(await fullDiff({ model, ...others(k) }));
    const batched = await Promise.all([
      ...Array.from({ length: 4 }, (_, k) => fullDiff({ model, ...others(k) })),
      fullDiff({ model, ...subject }),
      ...Array.from({ length: 4 }, (_, k) => fullDiff({ model, ...others(k + 4) })),
    ]);
    assert.deepStrictEqual(batched[4], alone);
    for (let k = 0; k < 8; k++) assert.deepStrictEqual(batched[k < 4 ? k : k + 1], alone8[k], `other ${k}`);
    assert.strictEqual(model.pendingCalls, 0);
    // the prompt is kept and nothing stays masked
    for (const row of alone) {
      assert.deepStrictEqual(row.slice(0, 3), PROMPT);
      assert.ok(!row.includes(model.maskId));
    }
  });

  it('a call joins a running batch mid-run and leaves it when done; both get their lone tokens', async () => {
    const long = { ...subject, steps: 40, seed: 7 };
    const short = { ...others(2), steps: 5, seed: 8 };
    const longAlone = await fullDiff({ model, ...long });
    const shortAlone = await fullDiff({ model, ...short });
    const longSteps = [];
    let shortCall = null;
    let shortDoneAtLongStep = -1;
    const longCall = fullDiff({
      model, ...long,
      onStep: ({ step }) => {
        longSteps.push(step);
        if (step === 10) {
          shortCall = fullDiff({ model, ...short }).then((r) => {
            shortDoneAtLongStep = longSteps.length;
            return r;
          });
        }
      },
    });
    const longOut = await longCall;
    const shortOut = await shortCall;
    assert.deepStrictEqual(longOut, longAlone);
    assert.deepStrictEqual(shortOut, shortAlone);
    assert.deepStrictEqual(longSteps, Array.from({ length: 40 }, (_, i) => i + 1));
    // it ran inside the long call's batch: done well before the long call's end
    assert.ok(shortDoneAtLongStep > 10 && shortDoneAtLongStep < 40, `short call done at long step ${shortDoneAtLongStep}`);
  });

  it('aborting one call of a batch rejects it at once and leaves the others intact', async () => {
    const calls = [0, 1, 2].map((k) => ({ ...others(k), steps: 12 }));
    const alone = [];
    for (const c of calls) alone.push(await fullDiff({ model, ...c }));
    const ctrl = new AbortController();
    let stepsAfterAbort = 0;
    let aborted = false;
    const running = calls.map((c, k) => fullDiff({
      model, ...c,
      ...(k === 1 ? {
        signal: ctrl.signal,
        onStep: ({ step }) => {
          if (aborted) stepsAfterAbort++;
          if (step === 4) {
            aborted = true;
            ctrl.abort();
          }
        },
      } : {}),
    }));
    const settled = await Promise.allSettled(running);
    assert.strictEqual(settled[1].status, 'rejected');
    assert.strictEqual(settled[1].reason.name, 'AbortError');
    assert.strictEqual(settled[1].reason.stepsDone, 4);
    assert.strictEqual(stepsAfterAbort, 0);
    assert.deepStrictEqual(settled[0].value, alone[0]);
    assert.deepStrictEqual(settled[2].value, alone[2]);
    assert.strictEqual(model.pendingCalls, 0);
    // an already aborted signal: rejected before anything starts
    await assert.rejects(fullDiff({ model, ...calls[0], signal: AbortSignal.abort() }), { name: 'AbortError' });
  });

  it('onStep carries each call its own steps and tokens', async () => {
    const seen = [[], []];
    const opts = [{ ...others(0), steps: 3 }, { ...others(1), steps: 6 }];
    const outs = await Promise.all(opts.map((o, k) => fullDiff({
      model, ...o, stepTokens: true,
      onStep: ({ step, total, tokens }) => seen[k].push({ step, total, rows: tokens.length, len: tokens[0].length }),
    })));
    for (let k = 0; k < 2; k++) {
      assert.deepStrictEqual(seen[k].map((s) => s.step), Array.from({ length: opts[k].steps }, (_, i) => i + 1));
      for (const s of seen[k]) {
        assert.strictEqual(s.total, opts[k].steps);
        assert.strictEqual(s.rows, opts[k].batchSize);
        assert.strictEqual(s.len, opts[k].contextLength);
      }
      assert.strictEqual(outs[k].length, opts[k].batchSize);
    }
  });

  it('batched and lone fast mode draw the same per-position token distribution (two-sample chi-square)', async () => {
    // as the fast/reference check in 50-samplers: per position, the share rejecting at 1 % stays near 1 %
    const common = { model, prompt: PROMPT, batchSize: 24, alg: 'acs', steps: 8, contextLength: 12 };
    const lone = [];
    for (let seed = 0; seed < 6; seed++) lone.push(...(await fullDiff({ ...common, batching: false, seed: 100 + seed })));
    const batched = (await Promise.all(Array.from({ length: 6 }, (_, s) => fullDiff({ ...common, seed: 200 + s })))).flat();
    let rejected = 0;
    const ps = [];
    for (let pos = 3; pos < 12; pos++) {
      const r = chiSquareTwoSample(lone.map((row) => row[pos]), batched.map((row) => row[pos]));
      ps.push(r.p.toFixed(3));
      if (r.p < 0.01) rejected++;
    }
    assert.ok(rejected <= 1, `positions rejecting at 1%: ${rejected}/9 (p = ${ps})`);
  });

  // The batched sampler steps fullDiff's 'remask', 'remask_adhoc_shuffle' and 'remdm' requests, and
  // semiDiff ones (a call with a blockSize here), with the lone fast sampler's own step on their
  // rows of its forward. fullDiff and semiDiff put them in the batch on CUDA only (batchable), so on
  // the CPU the native batch is driven directly, with the options those functions would send.
  const nativeOf = (c) => (c.blockSize
    ? prepareSampling('semiDiff', 'semi', { model, ...c }, samplerKeys('semi')).native
    : prepareSampling('fullDiff', 'full', { model, ...c }, samplerKeys('full')).native);
  // a call alone: the remask family and semiDiff in the lone fast sampler (the same stream), original / acs in a batch of their own
  const aloneOf = (c) => (c.blockSize
    ? semiDiff({ model, ...c, batching: false })
    : fullDiff({ model, ...c, ...(c.alg === 'acs' || c.alg === 'original' ? {} : { batching: false }) }));
  async function runNativeBatch(calls, { removeAt = null } = {}) {
    const batch = model.native().openBatch();
    const out = new Map();
    try {
      calls.forEach((c, k) => batch.add(k + 1, nativeOf(c), null, false));
      for (let step = 1; out.size < calls.length - (removeAt ? 1 : 0); step++) {
        if (removeAt && step === removeAt.step) batch.remove(removeAt.id);
        for (const e of await batch.step(1)) {
          assert.strictEqual(e.step, step);
          if (e.done) out.set(e.id, e.tokens);
        }
      }
      assert.deepStrictEqual(await batch.step(1), []);
    } finally {
      batch.close();
    }
    return calls.map((c, k) => (out.has(k + 1) ? rowsOf(out.get(k + 1), nativeOf(c)) : null));
  }
  const rowsOf = (flat, n) => Array.from({ length: n.batchSize }, (_, b) => Array.from(flat.subarray(b * n.contextLength, (b + 1) * n.contextLength)));

  it('remask-family and semiDiff requests share the native batch with original / acs ones, each drawing its lone tokens', async () => {
    const calls = [
      { alg: 'remask', steps: 6, seed: 61, contextLength: 16, batchSize: 2, prompt: PROMPT },
      { alg: 'remask_adhoc_shuffle', steps: 9, seed: 62, contextLength: 24, eta: 0.3, temperature: 0.8 },
      { alg: 'remdm', steps: 7, seed: 63, contextLength: 16, batchSize: 3, eta: 0.05, prompt: PROMPT },
      { alg: 'remask', steps: 5, seed: 64, contextLength: 16, fixed: [{ at: 10, tokens: [1000, 1001] }] },
      { alg: 'remask_adhoc_shuffle', steps: 8, seed: 65, contextLength: 16, temperature: 0 },
      { alg: 'acs', steps: 8, seed: 66, contextLength: 16, batchSize: 2 },
      { alg: 'original', steps: 4, seed: 67, contextLength: 24, prompt: PROMPT },
      // semiDiff: prefixes of 8, 16, 24 (sharing forwards with the calls above) and 32 tokens
      { alg: 'acs', steps: 3, seed: 68, contextLength: 32, blockSize: 8, batchSize: 2, prompt: PROMPT, eta: 0.2 },
      { alg: 'remask', steps: 2, seed: 69, contextLength: 20, blockSize: 8, fixed: [{ at: 17, tokens: [1002] }] },
      { alg: 'original', steps: 4, seed: 70, contextLength: 24, blockSize: 16 },
    ];
    const alone = [];
    for (const c of calls) alone.push(await aloneOf(c));
    const together = await runNativeBatch(calls);
    for (let k = 0; k < calls.length; k++) assert.deepStrictEqual(together[k], alone[k], `${calls[k].alg} ${k} batched with the others`);
    // the prompt and the fixed tokens are kept; nothing left masked but what remdm may leave
    for (const row of together[0]) assert.deepStrictEqual(row.slice(0, 3), PROMPT);
    assert.deepStrictEqual(together[3][0].slice(10, 12), [1000, 1001]);
    assert.strictEqual(together[8][0][17], 1002);
    for (const k of [0, 1, 3, 4, 7, 8, 9]) for (const row of together[k]) assert.ok(!row.includes(model.maskId), `call ${k} left a mask`);
    // one removed halfway: the others are untouched
    const rest = await runNativeBatch([calls[0], calls[1], calls[7]], { removeAt: { id: 1, step: 3 } });
    assert.strictEqual(rest[0], null);
    assert.deepStrictEqual(rest.slice(1), [alone[1], alone[7]]);
  });

  it('the remask family and semiDiff are batched on CUDA only; fullDiff original / acs everywhere', async () => {
    const remask = nativeOf({ alg: 'remask', contextLength: 16 });
    const acs = nativeOf({ alg: 'acs', contextLength: 16 });
    assert.strictEqual(batchable(remask, 'cpu'), false);
    assert.strictEqual(batchable(remask, 'cuda:0'), true);
    assert.strictEqual(batchable(acs, 'cpu'), true);
    const semi = nativeOf({ alg: 'acs', contextLength: 16, blockSize: 8 });
    assert.strictEqual(batchable(semi, 'cpu'), false);
    assert.strictEqual(batchable(semi, 'cuda:1'), true);
    assert.strictEqual(batchable(nativeOf({ alg: 'remdm', contextLength: 16, reference: true }), 'cuda:0'), false);
    assert.strictEqual(batchable(nativeOf({ alg: 'remdm', contextLength: 16, cfgScale: 0.5, prompt: PROMPT }), 'cuda:0'), false);
    // on this CPU: concurrent remask calls run alone, the acs call beside them in the batch
    const seen = [];
    await Promise.all(['remask', 'acs', 'remdm'].map((alg, k) => fullDiff({
      model, alg, steps: 4, contextLength: 16, seed: k, onStep: ({ step }) => step === 1 && seen.push([alg, batchedCalls(model)]),
    })));
    for (const [alg, n] of seen) assert.ok(n <= 1, `${alg}: ${n} calls in the batch`);
    assert.strictEqual(model.pendingCalls, 0);
  });

  it('batching: false and model.batching = false run calls alone; reference mode and guided calls are not batched', async () => {
    const opts = { ...subject };
    const lone = await fullDiff({ model, ...opts, batching: false });
    model.batching = false;
    try {
      assert.deepStrictEqual(await fullDiff({ model, ...opts }), lone);
      assert.deepStrictEqual(await fullDiff({ model, ...opts, batching: false }), lone);
    } finally {
      model.batching = true;
    }
    // reference mode and guidance: the lone samplers, with or without batching (never in the batch)
    for (const extra of [{ reference: true }, { cfgScale: 0.5 }]) {
      let seen = -1;
      const batched = await fullDiff({ model, ...opts, ...extra, onStep: () => (seen = Math.max(seen, batchedCalls(model))) });
      assert.strictEqual(seen, 0, JSON.stringify(extra));
      assert.deepStrictEqual(batched, await fullDiff({ model, ...opts, ...extra, batching: false }), JSON.stringify(extra));
    }
    await assert.rejects(fullDiff({ model, ...opts, batching: 'yes' }), (e) => e instanceof HdlmError && /batching/.test(e.message));
    await assert.rejects(smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache, batching: 1 }), /batching/);
  });

  it('fixed tokens of a row are never selected and kept (native batch)', async () => {
    const native = model.native();
    const batch = native.openBatch();
    const L = 16;
    const fixed = new Int32Array(2 * L).fill(-1);
    fixed[5] = 1000; fixed[6] = 1001; fixed[L + 15] = 1002;
    const options = {
      mode: 'full', alg: 'acs', prompt: new Int32Array([464, 2003, 464, 2003]), promptLength: 2, batchSize: 2, steps: 6, temperature: 1,
      cfgScale: 0, contextLength: L, eps: 1e-5, maskId: model.maskId, eta: 0.5, blockSize: 16, seed: 3n, stepTokens: true, reference: false,
      repetitionPenalty: 1.2, bosId: 50256, metaschedule: null, contextAttention: 'block_causal', blockAttention: 'full',
    };
    batch.add(1, options, fixed, true);
    let last = null;
    for (let i = 0; i < 6; i++) {
      const events = await batch.step(16); // watched: one step per call
      assert.strictEqual(events.length, 1);
      const t = events[0].tokens;
      assert.deepStrictEqual([t[5], t[6], t[L + 15], t[0], t[1], t[L], t[L + 1]], [1000, 1001, 1002, 464, 2003, 464, 2003]);
      last = events[0];
    }
    assert.ok(last.done);
    assert.ok(!Array.from(last.tokens).includes(model.maskId));
    assert.deepStrictEqual(await batch.step(1), []);
    assert.throws(() => batch.step(0), /maxSteps must be at least 1/);
    batch.close();
    assert.throws(() => batch.step(1), /closed/);
    // misshaped fixed tokens: a clear error, nothing added
    const b2 = native.openBatch();
    assert.throws(() => b2.add(2, options, new Int32Array(3), false), (e) => e.code === 'HDLM_INVALID_ARGUMENT');
    assert.deepStrictEqual(await b2.step(1), []);
    b2.close();
  });

  it('a native step call runs up to maxSteps steps of unwatched requests and returns when one finishes', async () => {
    const batch = model.native().openBatch();
    const options = (steps, seed) => ({
      mode: 'full', alg: 'acs', prompt: null, promptLength: 0, batchSize: 1, steps, temperature: 1,
      cfgScale: 0, contextLength: 16, eps: 1e-5, maskId: model.maskId, eta: 0.015, blockSize: 16, seed, stepTokens: false, reference: false,
      repetitionPenalty: 1.2, bosId: 50256, metaschedule: null, contextAttention: 'block_causal', blockAttention: 'full',
    });
    batch.add(1, options(5, 1n), null, false);
    batch.add(2, options(12, 2n), null, false);
    // 1 finishes at step 5: the call stops there; both report where they are, 1 with its tokens
    let events = await batch.step(8);
    assert.deepStrictEqual(events.map((e) => [e.id, e.step, e.done]), [[1, 5, true], [2, 5, false]]);
    assert.strictEqual(events[0].tokens.length, 16);
    assert.strictEqual(events[1].tokens, null);
    // 2 alone: 4 more steps in one call (the cap), then the last 3
    events = await batch.step(4);
    assert.deepStrictEqual(events.map((e) => [e.id, e.step, e.done]), [[2, 9, false]]);
    events = await batch.step(16);
    assert.deepStrictEqual(events.map((e) => [e.id, e.step, e.done]), [[2, 12, true]]);
    batch.close();
  });

  it('dispose() while a batch runs rejects all of its calls with HDLM_DISPOSED; later calls are a clear error', async () => {
    const { model: m } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache });
    let started;
    const firstStep = new Promise((r) => (started = r));
    const calls = Array.from({ length: 6 }, (_, k) => fullDiff({ model: m, steps: 100000, contextLength: 16 + 8 * (k % 2), seed: k, onStep: () => started() }));
    await firstStep;
    m.dispose();
    const settled = await Promise.allSettled(calls);
    for (const s of settled) {
      assert.strictEqual(s.status, 'rejected');
      assert.strictEqual(s.reason.code, 'HDLM_DISPOSED');
    }
    assert.strictEqual(m.pendingCalls, 0);
    await assert.rejects(fullDiff({ model: m, steps: 2, contextLength: 8 }), (e) => e.code === 'HDLM_DISPOSED');
  });
});
