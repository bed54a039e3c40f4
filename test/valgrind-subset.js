'use strict';
// The subset run under valgrind (see README, "Robustness"): load, a short fullDiff, forward, an
// abort, dispose with a call running, and exit with the pool idle. Run:
//   npm run test:valgrind   (valgrind with test/valgrind.supp: only findings outside hdlm are suppressed)
const path = require('path');
const { smartModelLoader, fullDiff } = require('../dist');
const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
const os = require('os');
const fs = require('fs');

(async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-vg-'));
  try {
    makeEpsilonCheckpoint(path.join(tmp, 'm'), { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 16, vocabTokens: 64 });
    const { model } = await smartModelLoader(path.join(tmp, 'm'), { device: 'cpu', torchscriptCacheDir: path.join(tmp, 'cache'), threads: 1 });
    const out = await fullDiff({ model, steps: 3, contextLength: 16, seed: 1, alg: 'acs', onStep: () => {} });
    const logits = await model.forward([[1, 2, 3, 4]]);
    const c = new AbortController();
    const aborted = await fullDiff({ model, steps: 100000, contextLength: 16, signal: c.signal, onStep: ({ step }) => { if (step === 2) c.abort(); } }).catch((e) => e.name);
    const running = fullDiff({ model, steps: 100000, contextLength: 16, onStep: () => {} }).catch((e) => e.code);
    await new Promise((r) => setTimeout(r, 50));
    model.dispose();
    const disposed = await running;
    const { model: again } = await smartModelLoader(path.join(tmp, 'm'), { device: 'cpu', torchscriptCacheDir: path.join(tmp, 'cache') });
    await again.forward([[5, 6]]);
    again.dispose();
    console.log(JSON.stringify({ tokens: out[0].length, logits: logits.shape, aborted, disposed }));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
})();
