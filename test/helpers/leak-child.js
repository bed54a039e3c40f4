'use strict';
// Child process of test/65-leaks.test.js (run with --expose-gc): repeats calls and reports the
// resident set size before, halfway and after, in MiB ('batched': 8 concurrent calls per round).
// argv: JSON { dir, cache, phase, n }.
const { smartModelLoader, fullDiff, streamDiff } = require('../../dist');

const mib = () => process.memoryUsage().rss / 1048576;
async function settle() {
  for (let i = 0; i < 3; i++) {
    global.gc();
    await new Promise((r) => setImmediate(r));
  }
}

(async () => {
  const { dir, cache, phase, n, warmup } = JSON.parse(process.argv[process.argv.length - 1]);
  const load = (useCache = true) => smartModelLoader(dir, { device: 'cpu', torchscriptCacheDir: cache, useCache, threads: 1 });
  const tokens = [Array.from({ length: 64 }, (_, i) => (i * 37) % 4096)];
  let once;
  if (phase === 'forward') {
    const { model } = await load();
    once = async () => { await model.forward(tokens); };
  } else if (phase === 'fullDiff') {
    const { model } = await load();
    let k = 0;
    once = async () => { await fullDiff({ model, steps: 2, contextLength: 32, seed: k++, alg: k % 2 ? 'acs' : 'original' }); };
  } else if (phase === 'stream') {
    const { model } = await load();
    let k = 0;
    once = async () => {
      // every fourth stream is left after its first frame (the sampling stops there)
      const stop = k % 4 === 3;
      for await (const frame of streamDiff({ model, steps: 4, contextLength: 32, seed: k++, text: true, fixed: [{ at: 20, tokens: [5, 6, 7] }] })) {
        if (stop && frame.step >= 1) break;
      }
    };
  } else if (phase === 'batched') {
    // 8 concurrent calls of two lengths and every algorithm (on the CPU original / acs in the
    // batch, the others alone), one of them aborted halfway
    const { model } = await load();
    const algs = ['acs', 'original', 'remask', 'remask_adhoc_shuffle', 'remdm'];
    let k = 0;
    once = async () => {
      const c = new AbortController();
      const calls = Array.from({ length: 8 }, (_, j) => fullDiff({
        model, steps: 4 + j, contextLength: j % 2 ? 32 : 64, seed: k++, alg: algs[(k + j) % algs.length],
        ...(j === 3 ? { signal: c.signal, onStep: ({ step }) => { if (step === 2) c.abort(); } } : {}),
      }).catch((e) => { if (e.name !== 'AbortError') throw e; }));
      await Promise.all(calls);
    };
  } else if (phase === 'abort') {
    const { model } = await load();
    once = async () => {
      const c = new AbortController();
      await fullDiff({ model, steps: 1000, contextLength: 64, signal: c.signal, onStep: () => c.abort() }).catch((e) => { if (e.name !== 'AbortError') throw e; });
    };
  } else if (phase === 'load') {
    let k = 0;
    once = async () => {
      // alternately built from the checkpoint and loaded from the TorchScript cache
      const { model } = await load(k++ % 2 === 0);
      await model.forward(tokens);
      model.dispose();
    };
  }
  for (let i = 0; i < warmup; i++) await once();
  await settle();
  const before = mib();
  for (let i = 0; i < n / 2; i++) await once();
  await settle();
  const mid = mib();
  for (let i = n / 2; i < n; i++) await once();
  await settle();
  const after = mib();
  console.log('RESULT:' + JSON.stringify({ phase, n, before, mid, after }));
})().catch((e) => {
  console.error(e);
  process.exit(3);
});
