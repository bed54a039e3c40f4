'use strict';
// User callbacks that fail: a throwing onStep / onProgress / featurize, an async one that
// rejects, a thenable that rejects, a thrown non-Error. Each must make its call reject with
// HDLM_CALLBACK (the callback's error as cause) and stop the work at the next step, for every
// sampler and evaluation entry point; the process must not see an uncaught exception or an
// unhandled rejection. Runs in a child process with Node's default handlers (either would end it).
const assert = require('assert');
const { runChild, assertCleanExit } = require('./helpers/child');

const CHILD = String.raw`
const path = require('path');
const { smartModelLoader, fullDiff, semiDiff, fullDiffShifted, semiDiffShifted, gammaSample, makeBlockAnnealing, HdlmError, DEMO_MODEL_PATH } = require('./dist');
const { evaluatePerplexity, evaluateGeneration } = require('./dist/eval');
const { computeMauveFromTexts } = require('./dist/eval/mauve');
const cache = process.argv[1];
const failures = {
  throws: (e) => () => { throw e; },
  throwsString: () => () => { throw 'plain string'; },
  asyncRejects: (e) => async () => { await null; throw e; },
  thenableRejects: (e) => () => ({ then: (_ok, fail) => setTimeout(() => fail(e), 1) }),
};
let lastTotal = 0;
async function expectCallbackError(label, run, failAt, kind, calls) {
  lastTotal = 0;
  const e = new Error('boom from ' + label);
  try {
    await run(failures[kind](e));
  } catch (err) {
    const causeOk = kind === 'throwsString' ? err.cause === 'plain string' : err.cause === e;
    return {
      label, kind, ok: err instanceof HdlmError && err.code === 'HDLM_CALLBACK' && causeOk,
      message: err.message, callsAfterFailure: calls() - failAt, total: lastTotal,
    };
  }
  return { label, kind, ok: false, message: 'resolved' };
}
(async () => {
  const out = [];
  const { model } = await smartModelLoader(DEMO_MODEL_PATH, { device: 'cpu', torchscriptCacheDir: cache });
  const { model: gamma } = await smartModelLoader(path.join('test', 'fixtures', 'tiny-gamma'), { device: 'cpu', torchscriptCacheDir: cache });
  const ms = makeBlockAnnealing(8, 4);
  const samplers = {
    fullDiff: (onStep) => fullDiff({ model, steps: 1000, contextLength: 16, seed: 1, onStep }),
    fullDiffAlone: (onStep) => fullDiff({ model, steps: 1000, contextLength: 16, seed: 1, alg: 'acs', batching: false, onStep }),
    fullDiffReference: (onStep) => fullDiff({ model, steps: 1000, contextLength: 16, seed: 1, reference: true, onStep }),
    semiDiff: (onStep) => semiDiff({ model, steps: 200, contextLength: 16, blockSize: 4, seed: 1, onStep, stepTokens: true }),
    fullDiffShifted: (onStep) => fullDiffShifted({ model, steps: 500, contextLength: 16, seed: 1, onStep }),
    semiDiffShifted: (onStep) => semiDiffShifted({ model, metaschedule: makeBlockAnnealing(2, 8), contextLength: 25, seed: 1, onStep }),
    gammaNAR: (onStep) => gammaSample({ model: gamma, metaschedule: ms, contextLength: 24, seed: 1, onStep }),
    gammaSAR: (onStep) => gammaSample({ model: gamma, metaschedule: ms, samplingMethod: 'SAR', contextLength: 24, seed: 1, onStep }),
  };
  const kinds = Object.keys(failures);
  let k = 0;
  for (const [name, start] of Object.entries(samplers)) {
    for (const failAt of [1, 3]) {
      const kind = kinds[k++ % kinds.length];
      let calls = 0;
      out.push(await expectCallbackError(name + '@' + failAt,
        (fail) => start((info) => { calls++; lastTotal = info.total; if (info.step === failAt) return fail(); }), failAt, kind, () => calls));
    }
  }
  // still usable after all that
  const after = await fullDiff({ model, steps: 2, contextLength: 8, seed: 3 });
  out.push({ label: 'model usable after', ok: after.length === 1 && after[0].length === 8 });

  const chunks = [1, 2, 3].map((c) => Array.from({ length: model.length }, (_, i) => (i * 7 + c) % 50257));
  for (const kind of kinds) {
    let calls = 0;
    out.push(await expectCallbackError('evaluatePerplexity', (fail) => {
      return evaluatePerplexity({ model, chunks, batchSize: 2, monteCarloTimesteps: 2, seed: 1,
        onProgress: () => { calls++; return fail(); } });
    }, 1, kind, () => calls));
    let gcalls = 0;
    out.push(await expectCallbackError('evaluateGeneration', (fail) => {
      return evaluateGeneration({ model, numSamples: 3, batchSize: 1, steps: 2, gpt2: null, seed: 1,
        onProgress: () => { gcalls++; return fail(); } });
    }, 1, kind, () => gcalls));
    let fcalls = 0;
    out.push(await expectCallbackError('computeMauveFromTexts', (fail) => {
      return computeMauveFromTexts({ pTexts: ['a', 'b'], qTexts: ['c', 'd'], featurize: (t, i) => { fcalls++; return i === 1 ? fail() : [1, 2]; } });
    }, 2, kind, () => fcalls));
  }
  model.dispose();
  gamma.dispose();
  console.log('RESULT:' + JSON.stringify(out));
})().catch((e) => { console.log('RESULT:' + JSON.stringify([{ label: 'setup', ok: false, message: String(e && e.stack) }])); });
`;

describe('user callbacks that throw or reject', function () {
  this.timeout(300000);

  it('reject the call with HDLM_CALLBACK and stop the work, for every sampler and evaluation entry point; never crash', async () => {
    const fs = require('fs');
    const { tempDir } = require('./helpers/reference');
    const cache = tempDir('cb');
    try {
      const r = await runChild(CHILD, { args: [cache], timeoutMs: 280000 });
      assertCleanExit(assert, r);
      assert.ok(Array.isArray(r.result), r.stdout + r.stderr);
      const bad = r.result.filter((x) => !x.ok);
      assert.deepStrictEqual(bad, [], JSON.stringify(bad, null, 1));
      for (const x of r.result.filter((y) => y.callsAfterFailure !== undefined)) {
        // the loop stops at the next step: the callback is not called again once its failure is known
        // (a thenable that rejects on a timer is only known to have failed some steps later: the loop
        // still stops before its end)
        if (x.kind === 'thenableRejects' && x.total > 0) {
          assert.ok(x.callsAfterFailure + 3 < x.total, `${x.label} (${x.kind}): ${x.callsAfterFailure} calls after the failure, of ${x.total}`);
        } else if (x.kind !== 'thenableRejects') {
          assert.strictEqual(x.callsAfterFailure, 0, `${x.label} (${x.kind}): ${x.callsAfterFailure} calls after the failure`);
        }
        assert.match(x.message, /^(onStep|onProgress|featurize) threw: /);
      }
      assert.ok(r.result.length >= 12 + 1 + 12);
      assert.doesNotMatch(r.stderr, /Unhandled|uncaught/i);
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });
});
