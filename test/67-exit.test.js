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
