#!/usr/bin/env node
'use strict';
// Step-level batching: N concurrent fast-mode fullDiff calls of one sample each (merged into the
// model's running batch, one batched forward per step) against one fullDiff call of batchSize N
// run on its own (batching: false), and N concurrent calls with batching off; plus the latency
// of one call alone in the batched sampler against the same call with batching off. Random
// weights (no download). Prints a table and JSON.
//   node bench/batching.js [--size base|brown|tiny] [--device auto|cpu|cuda] [--clients 1,8,32]
//                          [--steps 128] [--alg acs] [--length L] [--repeat 3] [--json]
// The targets of the GPU run: clients=32 batched ≥ 90 % of the one batch-32 call's tokens/s;
// batched batch-1 latency within 10 % of the lone call's.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { parseArgs } = require('util');
const { smartModelLoader, fullDiff, runtimeInfo } = require('..');
const { makeEpsilonCheckpoint } = require('../test/helpers/safetensors-writer');

const SIZES = {
  base: { hiddenSize: 768, nHeads: 12, nBlocks: 12, length: 1024 },
  brown: { hiddenSize: 128, nHeads: 4, nBlocks: 4, length: 256 },
  tiny: { hiddenSize: 32, nHeads: 2, nBlocks: 2, length: 128 },
};

async function timed(fn) {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

async function main() {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: 'base' },
      device: { type: 'string', default: 'auto' },
      clients: { type: 'string', default: '1,8,32' },
      steps: { type: 'string', default: '128' },
      alg: { type: 'string', default: 'acs' },
      length: { type: 'string' },
      repeat: { type: 'string', default: '3' },
      json: { type: 'boolean', default: false },
    },
  });
  const size = SIZES[values.size];
  if (!size) throw new Error(`--size must be one of ${Object.keys(SIZES).join(', ')}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-bench-batch-'));
  try {
    makeEpsilonCheckpoint(dir, { ...size, dtype: 'BF16' });
    const { model, device } = await smartModelLoader(dir, { device: values.device, useCache: false });
    const contextLength = values.length ? Number(values.length) : size.length;
    const steps = Number(values.steps);
    const repeat = Number(values.repeat);
    const alg = values.alg;
    const common = { model, alg, steps, contextLength };
    // best of `repeat` runs (the machine may be shared)
    const best = async (fn) => {
      let ms = Infinity;
      for (let r = 0; r < repeat; r++) ms = Math.min(ms, await timed(fn));
      return ms;
    };
    const rows = [];
    for (const n of values.clients.split(',').map(Number)) {
      // warm-up of every shape (CUDA graphs are captured per batch shape)
      await fullDiff({ ...common, steps: 4, batchSize: n, seed: 0, batching: false });
      await Promise.all(Array.from({ length: n }, (_, k) => fullDiff({ ...common, steps: 4, seed: k })));
      const oneCall = await best(() => fullDiff({ ...common, batchSize: n, seed: 1, batching: false }));
      const batched = await best(() => Promise.all(Array.from({ length: n }, (_, k) => fullDiff({ ...common, seed: 10 + k }))));
      const unbatched = await best(() => Promise.all(Array.from({ length: n }, (_, k) => fullDiff({ ...common, seed: 10 + k, batching: false }))));
      const tps = (ms) => +((n * contextLength * 1000) / ms).toFixed(1);
      rows.push({
        clients: n, oneCallMs: +oneCall.toFixed(1), batchedMs: +batched.toFixed(1), unbatchedMs: +unbatched.toFixed(1),
        oneCallTokensPerSecond: tps(oneCall), batchedTokensPerSecond: tps(batched), unbatchedTokensPerSecond: tps(unbatched),
        batchedVsOneCall: +(oneCall / batched).toFixed(3),
      });
    }
    await fullDiff({ ...common, steps: 4, seed: 0 });
    const lone1 = await best(() => fullDiff({ ...common, seed: 3, batching: false }));
    const batched1 = await best(() => fullDiff({ ...common, seed: 3 }));
    const latency = { loneMs: +lone1.toFixed(1), batchedMs: +batched1.toFixed(1), ratio: +(batched1 / lone1).toFixed(3) };
    const result = { runtime: runtimeInfo(), size: values.size, ...size, device, alg, steps, contextLength, rows, latency };
    model.dispose();
    if (!values.json) {
      console.log(`# ${values.size} model (${size.hiddenSize}/${size.nHeads}/${size.nBlocks}), ${device}, ${alg}, ${steps} steps, L ${contextLength}, best of ${repeat}`);
      console.log('| clients | one call of batch N (ms) | N batched calls (ms) | N calls, batching off (ms) | tokens/s one call | tokens/s batched | tokens/s off | batched / one call |');
      console.log('|---|---|---|---|---|---|---|---|');
      for (const r of rows) {
        console.log(`| ${r.clients} | ${r.oneCallMs} | ${r.batchedMs} | ${r.unbatchedMs} | ${r.oneCallTokensPerSecond} | ${r.batchedTokensPerSecond} | ${r.unbatchedTokensPerSecond} | ${r.batchedVsOneCall} |`);
      }
      console.log(`batch-1 latency: batched ${latency.batchedMs} ms, lone ${latency.loneMs} ms (ratio ${latency.ratio})`);
    }
    console.log(JSON.stringify(result));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e.stack || e.message);
  process.exit(1);
});
