'use strict';
// A process that exits with models loaded and work in flight exits cleanly: forked children
// (as better-sqlite3 tests it), each checked for its exit code, no signal and no native abort.
const assert = require('assert');
const { runChild, assertCleanExit } = require('./helpers/child');
const { DEMO_MODEL } = require('./helpers/reference');

const PRELUDE = `
const { smartModelLoader, fullDiff } = require('./dist');
const os = require('os'), path = require('path'), fs = require('fs');
const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-exit-'));
process.on('exit', () => fs.rmSync(cache, { recursive: true, force: true }));
const load = () => smartModelLoader(${JSON.stringify(DEMO_MODEL)}, { device: 'cpu', torchscriptCacheDir: cache });
const long = (model, seed, onStep) => fullDiff({ model, steps: 1000000, contextLength: 32, seed, onStep }).catch(() => {});
`;

describe('exit: clean with models loaded and work in flight', function () {
  this.timeout(120000);

  it('process.exit() while four samples and a forward run', async () => {
    const r = await runChild(PRELUDE + `
(async () => {
  const { model } = await load();
  const { model: second } = await load();
  let n = 0;
  for (let k = 0; k < 4; k++) long(k % 2 ? model : second, k, () => { if (++n === 3) { console.log('RESULT:"exiting"'); process.exit(0); } });
  model.forward([[1, 2, 3]]);
})();`);
    assertCleanExit(assert, r, 0);
    assert.strictEqual(r.result, 'exiting');
  });

  it('process.exit(7) from a timer while samples are queued behind running ones', async () => {
    const r = await runChild(PRELUDE + `
(async () => {
  const { model } = await load();
  for (let k = 0; k < 8; k++) long(model, k);
  setTimeout(() => process.exit(7), 200);
})();`);
    assertCleanExit(assert, r, 7);
  });

  it('an uncaught exception while sampling exits with code 1, not a crash', async () => {
    const r = await runChild(PRELUDE + `
(async () => {
  const { model } = await load();
  long(model, 1, ({ step }) => { if (step === 2) setImmediate(() => { throw new Error('boom from user code'); }); });
  long(model, 2);
})();`);
    assertCleanExit(assert, r, 1);
    assert.match(r.stderr, /boom from user code/);
  });

  it('the event loop ends naturally with models loaded and never disposed', async () => {
    const r = await runChild(PRELUDE + `
(async () => {
  const { model } = await load();
  const { model: other } = await load();
  const out = await fullDiff({ model, steps: 2, contextLength: 8, seed: 1 });
  await other.forward([[1, 2]]);
  console.log('RESULT:' + JSON.stringify(out[0].length));
})();`);
    assertCleanExit(assert, r, 0);
    assert.strictEqual(r.result, 8);
  });

  it('a worker thread with work in flight is terminated; the process carries on and exits cleanly', async () => {
    const r = await runChild(PRELUDE + `
const { Worker } = require('worker_threads');
const w = new Worker(PRELUDE_SRC + "load().then(({ model }) => { let s = 0; long(model, 1, () => { if (++s === 2) require('worker_threads').parentPort.postMessage('running'); }); long(model, 2); });", { eval: true });
w.on('message', async () => {
  await w.terminate();
  const { model } = await load();
  const out = await fullDiff({ model, steps: 2, contextLength: 8, seed: 3 });
  console.log('RESULT:' + JSON.stringify(out[0].length));
});
w.on('error', (e) => { console.error(e); process.exit(5); });
`.replace('PRELUDE_SRC', JSON.stringify(PRELUDE)));
    assertCleanExit(assert, r, 0);
    assert.strictEqual(r.result, 8);
  });
});

// process.exit() while a forward runs that takes far longer than the exit may wait: the forward
// cannot be interrupted, so the process ends without it (before, exit waited for it to finish).
describe('exit: bounded wait for native work that cannot stop', function () {
  this.timeout(300000);
  const fs = require('fs');
  const path = require('path');
  const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
  const { tempDir } = require('./helpers/reference');
  let tmp;
  let slow;
  before(() => {
    tmp = tempDir('exit-slow');
    // about 25M parameters and a 20-token vocabulary: a forward of 64 × 256 tokens takes tens of
    // seconds on a small CPU, almost all of it in the transformer blocks (no long logits copy)
    slow = makeEpsilonCheckpoint(path.join(tmp, 'slow'), { hiddenSize: 1024, nHeads: 8, nBlocks: 2, length: 256, vocabTokens: 20, fill: (name, shape) => new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.01) }).dir;
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const BOUND_MS = 10000;
  for (const [label, start] of [
    ['a forward of 64 × 256 tokens', 'model.forward(Array.from({ length: 64 }, () => Array.from({ length: 256 }, (_, i) => i % 20)))'],
    ['a reference-mode fullDiff whose every step is such a forward', "fullDiff({ model, batchSize: 64, contextLength: 256, steps: 50, seed: 1, reference: true })"],
  ]) {
    it(`process.exit(7) during ${label} ends the process within ${BOUND_MS / 1000} s, with status 7`, async () => {
      const r = await runChild(`
const { smartModelLoader, fullDiff } = require('./dist');
(async () => {
  const { model } = await smartModelLoader(${JSON.stringify(slow)}, { device: 'cpu', useCache: false });
  let settled = false;
  ${start}.then(() => { settled = true; }, () => { settled = true; });
  setTimeout(() => {
    console.log('RESULT:' + JSON.stringify({ settled, exitAt: Date.now() }));
    process.exit(7);
  }, 1500);
})();`, { timeoutMs: 240000 });
      const closedAt = Date.now();
      assertCleanExit(assert, r, 7);
      assert.strictEqual(r.result.settled, false, 'the work had finished before exit: the test proves nothing');
      const waited = closedAt - r.result.exitAt;
      assert.ok(waited < BOUND_MS, `exit took ${waited} ms`);
    });
  }
});
