#!/usr/bin/env node
'use strict';
// Sampling speed: builds a model of the given size with random weights (no download), then
// times fullDiff in reference and fast mode, per algorithm and batch size, in one process.
// Prints a table (ms/step, samples/s, peak GPU memory, fast/reference speed-up) and JSON.
//   node bench/sampling.js [--size base|brown|tiny] [--device auto|cpu|cuda] [--precision A|B|C|fp32]
//                          [--batch 1,8,32] [--steps 512] [--algs acs,original] [--modes reference,fast]
//                          [--length L] [--json]
const fs = require('fs');
const os = require('os');
const path = require('path');
const { parseArgs } = require('util');
const { smartModelLoader, fullDiff, runtimeInfo, cudaMemory } = require('..');
const { makeEpsilonCheckpoint } = require('../test/helpers/safetensors-writer');

const SIZES = {
  base: { hiddenSize: 768, nHeads: 12, nBlocks: 12, length: 1024 },
  brown: { hiddenSize: 128, nHeads: 4, nBlocks: 4, length: 256 },
  tiny: { hiddenSize: 32, nHeads: 2, nBlocks: 2, length: 128 },
};

async function main() {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: 'base' },
      device: { type: 'string', default: 'auto' },
      precision: { type: 'string', default: 'auto' },
      batch: { type: 'string', default: '1,8,32' },
      steps: { type: 'string', default: '512' },
      modes: { type: 'string', default: 'reference,fast' },
      algs: { type: 'string', default: 'acs,original' },
      length: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const size = SIZES[values.size];
  if (!size) throw new Error(`--size must be one of ${Object.keys(SIZES).join(', ')}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-bench-'));
  try {
    let t = Date.now();
    // Small random weights (bf16 on disk to halve the file), deterministic per tensor name.
    makeEpsilonCheckpoint(dir, { ...size, dtype: 'BF16' });
    const writeMs = Date.now() - t;
    t = Date.now();
    const { model, device } = await smartModelLoader(dir, { device: values.device, precision: values.precision, useCache: false });
    const loadMs = Date.now() - t;
    const contextLength = values.length ? Number(values.length) : size.length;
    const steps = Number(values.steps);
    const rows = [];
    const cudaIndex = device.startsWith('cuda') ? Number(device.split(':')[1] || 0) : -1;
    for (const alg of values.algs.split(',')) {
      for (const batchSize of values.batch.split(',').map(Number)) {
        for (const mode of values.modes.split(',')) {
          const reference = mode === 'reference';
          // one call on its own (bench/batching.js measures the batched sampler)
          await fullDiff({ model, alg, batchSize, steps: 4, contextLength, seed: 0, reference, batching: false }); // warm-up (and CUDA graph capture)
          if (cudaIndex >= 0) cudaMemory(cudaIndex, true);
          t = process.hrtime.bigint();
          await fullDiff({ model, alg, batchSize, steps, contextLength, seed: 1, reference, batching: false });
          const ms = Number(process.hrtime.bigint() - t) / 1e6;
          const peak = cudaIndex >= 0 ? cudaMemory(cudaIndex, false).peakAllocated : null;
          rows.push({
            alg, mode, batchSize, contextLength, steps, msPerStep: +(ms / steps).toFixed(3),
            samplesPerSecond: +((batchSize * 1000) / ms).toFixed(3), peakGiB: peak === null ? null : +(peak / 2 ** 30).toFixed(2),
          });
        }
      }
    }
    for (const r of rows) {
      const refRow = rows.find((q) => q.alg === r.alg && q.batchSize === r.batchSize && q.mode === 'reference');
      r.speedup = refRow ? +(refRow.msPerStep / r.msPerStep).toFixed(2) : null;
    }
    const result = { runtime: runtimeInfo(), size: values.size, ...size, device, precision: model.precision, writeMs, loadMs, rows };
    model.dispose();
    if (values.json) console.log(JSON.stringify(result));
    else {
      console.log(`# ${values.size} model (${size.hiddenSize}/${size.nHeads}/${size.nBlocks}), ${device}${result.runtime.cudaDeviceName ? ` (${result.runtime.cudaDeviceName})` : ''}, precision ${result.precision}, libtorch ${result.runtime.libtorchVersion}, load ${loadMs} ms`);
      console.log('| alg | mode | batch | L | steps | ms/step | samples/s | peak GPU GiB | speed-up vs reference |\n|---|---|---|---|---|---|---|---|---|');
      for (const r of rows) {
        console.log(`| ${r.alg} | ${r.mode} | ${r.batchSize} | ${r.contextLength} | ${r.steps} | ${r.msPerStep} | ${r.samplesPerSecond} | ${r.peakGiB ?? '-'} | ${r.speedup ?? '-'} |`);
      }
      console.log(JSON.stringify(result));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e.stack || e.message);
  process.exit(1);
});
