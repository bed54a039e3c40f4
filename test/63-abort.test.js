'use strict';
// Cancellation: an AbortSignal stops a running fullDiff within one step (measured natively:
// the steps that had run when abort() was called vs. when the loop stopped), the promise
// rejects with an AbortError, and the model stays usable with unchanged results.
const assert = require('assert');
const fs = require('fs');
const { smartModelLoader, fullDiff, semiDiff, AbortError } = require('../dist');
const { DEMO_MODEL, tempDir } = require('./helpers/reference');

describe('cancellation: AbortSignal', function () {
  let cache;
  let model;
  let reference;
  const latencies = [];

  before(async () => {
    cache = tempDir('abort');
    ({ model } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache }));
    reference = await fullDiff({ model, steps: 4, contextLength: 16, seed: 42, alg: 'acs' });
  });
  after(() => {
    console.log(`      abort latency (steps run after abort() was called): ${JSON.stringify(latencies)}; max ${Math.max(...latencies)}`);
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  function checkAbortError(e) {
    assert.ok(e instanceof AbortError, e && e.stack);
    assert.strictEqual(e.name, 'AbortError');
    assert.strictEqual(e.code, 'HDLM_ABORTED');
    assert.ok(Number.isInteger(e.stepsDone) && Number.isInteger(e.stepsAtAbort), `${e.stepsDone} ${e.stepsAtAbort}`);
    const latency = e.stepsDone - e.stepsAtAbort;
    latencies.push(latency);
    assert.ok(latency >= 0 && latency <= 1, `abort asked after ${e.stepsAtAbort} steps, the loop stopped after ${e.stepsDone}`);
    return true;
  }

  for (const at of [1, 2, 7]) {
    it(`abort from onStep after step ${at}: rejects with AbortError within one step`, async () => {
      const c = new AbortController();
      const p = fullDiff({
        model, steps: 10000, contextLength: 32, seed: 1, signal: c.signal,
        onStep: ({ step }) => { if (step === at) c.abort(); },
      });
      await assert.rejects(p, (e) => checkAbortError(e) && e.stepsAtAbort >= at);
    });
  }

  for (const ms of [0, 15, 60]) {
    it(`abort from a timer after ${ms} ms (no onStep): within one step`, async () => {
      const c = new AbortController();
      const p = fullDiff({ model, steps: 10000, contextLength: 32, seed: 2, alg: 'remdm', signal: c.signal });
      setTimeout(() => c.abort(new Error('stop')), ms);
      await assert.rejects(p, (e) => checkAbortError(e) && e.cause instanceof Error);
    });
  }

  it('AbortSignal.timeout and semiDiff', async () => {
    await assert.rejects(semiDiff({ model, steps: 10000, contextLength: 32, blockSize: 8, signal: AbortSignal.timeout(30) }), checkAbortError);
  });

  it('an already-aborted signal rejects before any native work', async () => {
    const c = new AbortController();
    c.abort();
    const p = fullDiff({ model, steps: 2, contextLength: 8, signal: c.signal });
    assert.strictEqual(model.pendingCalls, 0);
    await assert.rejects(p, (e) => e instanceof AbortError);
  });

  it('aborting calls still queued behind running ones (more calls than worker threads)', async () => {
    const controllers = Array.from({ length: 6 }, () => new AbortController());
    // batching off: batched calls all start together; this is about calls waiting for a thread
    const calls = controllers.map((c, k) => fullDiff({ model, steps: 10000, contextLength: 32, seed: k, signal: c.signal, batching: false }));
    await new Promise((r) => setTimeout(r, 20));
    for (const c of controllers.reverse()) c.abort();
    const settled = await Promise.allSettled(calls);
    for (const s of settled) {
      assert.strictEqual(s.status, 'rejected');
      checkAbortError(s.reason);
    }
    assert.ok(settled.some((s) => s.reason.stepsDone === 0), 'some calls were aborted before they started');
    assert.strictEqual(model.pendingCalls, 0);
  });

  it('the model stays usable: the same seed gives the same tokens as before the aborts', async () => {
    const again = await fullDiff({ model, steps: 4, contextLength: 16, seed: 42, alg: 'acs' });
    assert.deepStrictEqual(again, reference);
  });
});
