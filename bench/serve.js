#!/usr/bin/env node
'use strict';
// `hdlm serve` under load, next to the library: starts the server in this process (loopback,
// a free port), then for each client count N runs a bounded number of streamed completion
// requests from N concurrent clients, and times one batched fullDiff call of the same work
// (batch N) and a lone batch-1 call on the same device, in the same run. Reports aggregate
// completion tokens/s, request latency p50/p95, time to first denoising frame, and the ratio of
// the server's tokens/s to the batched call's.
//   node bench/serve.js [--model <id|dir|file> | --size base|brown|tiny] [--device auto|cpu|cuda:0|cpu,cpu]
//                       [--clients 1,8,32] [--requests R] [--repeats K] [--steps 128] [--alg acs]
//                       [--length L] [--frames every] [--json]
// --requests: requests per client count and repeat (default 4 × N, at least 4: the batch runs
// full for several rounds, as a server's does, rather than filling and draining once).
// --repeats: each client count's server run and the batched call are timed K times and the best
// counts on both sides (default 2; other load on the machine only ever slows a run down).
// --length: tokens per sample (default the model's length); requests are unconditional, so every
// position is sampled. --frames k: a denoising frame every k steps (default 1; 0 = plain
// non-streamed requests).
const fs = require('fs');
const os = require('os');
const path = require('path');
const { parseArgs } = require('util');
const { smartModelLoader, fullDiff, runtimeInfo } = require('..');
const { serve } = require('../dist/server');
const { makeEpsilonCheckpoint } = require('../test/helpers/safetensors-writer');

const SIZES = {
  base: { hiddenSize: 768, nHeads: 12, nBlocks: 12, length: 1024 },
  brown: { hiddenSize: 128, nHeads: 4, nBlocks: 4, length: 256 },
  tiny: { hiddenSize: 32, nHeads: 2, nBlocks: 2, length: 128 },
};

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** One streamed request; resolves to { ms, firstFrameMs }. */
async function streamed(url, body) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let firstFrameMs = null;
  const decoder = new TextDecoder();
  let buffer = '';
  let done = false;
  for await (const chunk of res.body) {
    buffer += decoder.decode(chunk, { stream: true });
    if (firstFrameMs === null && buffer.includes('event: denoise')) firstFrameMs = performance.now() - t0;
    if (buffer.includes('data: [DONE]')) done = true;
    if (buffer.includes('"error"')) throw new Error(buffer.slice(0, 500));
    buffer = buffer.slice(-64);
  }
  if (!done) throw new Error('the stream ended without [DONE]');
  return { ms: performance.now() - t0, firstFrameMs };
}

async function plain(url, body) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${text}`);
  return { ms: performance.now() - t0, firstFrameMs: null };
}

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      size: { type: 'string', default: 'base' },
      device: { type: 'string', default: 'auto' },
      clients: { type: 'string', default: '1,8,32' },
      requests: { type: 'string' },
      repeats: { type: 'string', default: '2' },
      steps: { type: 'string', default: '128' },
      alg: { type: 'string', default: 'acs' },
      length: { type: 'string' },
      frames: { type: 'string', default: '1' },
      json: { type: 'boolean', default: false },
    },
  });
  const clientCounts = values.clients.split(',').map(Number);
  const steps = Number(values.steps);
  const every = Number(values.frames);
  let dir = null;
  let modelPath = values.model;
  if (!modelPath) {
    const size = SIZES[values.size];
    if (!size) throw new Error(`--size must be one of ${Object.keys(SIZES).join(', ')}`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-bench-serve-'));
    makeEpsilonCheckpoint(dir, { ...size, dtype: 'BF16' });
    modelPath = dir;
  }
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-bench-serve-ts-'));
  const maxClients = Math.max(...clientCounts);
  const requestsFor = (n) => (values.requests ? Number(values.requests) : Math.max(4, 4 * n));
  const repeats = Number(values.repeats);
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error('--repeats must be a positive integer');
  const server = await serve({
    model: modelPath, modelName: 'bench', device: values.device, port: 0, torchscriptCacheDir: cache,
    maxBatch: Math.max(32, maxClients), maxQueue: Math.max(...clientCounts.map(requestsFor)), maxSteps: Math.max(4096, steps), log: () => {},
  });
  try {
    await server.ready;
    const devices = server.options.devices;
    const { model, device } = await smartModelLoader(modelPath, { device: devices[0], torchscriptCacheDir: cache });
    const length = values.length ? Number(values.length) : model.length;
    const body = (i) => ({
      model: 'bench', prompt: '', max_tokens: length, steps, alg: values.alg, seed: i,
      ...(every > 0 ? { stream: true, denoise: { every } } : {}),
    });
    const call = every > 0 ? streamed : plain;
    // warm-up: the server's replicas and the baseline model (CUDA graphs, caches)
    await Promise.all(devices.map((_, i) => call(server.url, { ...body(i), steps: 2 })));
    await fullDiff({ model, batchSize: maxClients, steps: 2, contextLength: length, alg: values.alg, seed: 0, batching: false });

    // the library alone, timed before each server run and after the last (the fastest counts, as
    // the fastest server run does: other load on the machine only ever slows a run down)
    const timeFullDiff = async (batchSize) => {
      const t0 = performance.now();
      await fullDiff({ model, batchSize, steps, contextLength: length, alg: values.alg, seed: 2, batching: false });
      return performance.now() - t0;
    };
    let loneMs = await timeFullDiff(1);
    const rows = [];
    const serverRun = async (n, total) => {
      let next = 0;
      const results = [];
      const t = performance.now();
      await Promise.all(Array.from({ length: n }, async () => {
        while (next < total) {
          const i = next++;
          results.push(await call(server.url, body(1000 + i)));
        }
      }));
      return { wallMs: performance.now() - t, results };
    };
    for (const n of clientCounts) {
      const total = requestsFor(n);
      let best = null;
      let batchMs = Infinity;
      for (let k = 0; k < repeats; k++) {
        batchMs = Math.min(batchMs, await timeFullDiff(n));
        const run = await serverRun(n, total);
        if (!best || run.wallMs < best.wallMs) best = run;
      }
      batchMs = Math.min(batchMs, await timeFullDiff(n));
      const { wallMs, results } = best;
      const latencies = results.map((r) => r.ms).sort((a, b) => a - b);
      const firstFrames = results.map((r) => r.firstFrameMs).filter((x) => x !== null).sort((a, b) => a - b);
      const serverTps = (total * length) / (wallMs / 1000);
      const batchTps = (n * length) / (batchMs / 1000);
      rows.push({
        clients: n, requests: total, wallMs, serverTokensPerS: serverTps, p50Ms: percentile(latencies, 50), p95Ms: percentile(latencies, 95),
        firstFrameP50Ms: percentile(firstFrames, 50), firstFrameP95Ms: percentile(firstFrames, 95),
        fullDiffBatchMs: batchMs, fullDiffTokensPerS: batchTps, ratio: serverTps / batchTps,
      });
    }
    loneMs = Math.min(loneMs, await timeFullDiff(1));
    model.dispose();
    const rt = runtimeInfo();
    const report = {
      model: values.model ?? `random ${values.size}`, device, devices, replicas: devices.length, steps, alg: values.alg, length, frameEvery: every, repeats,
      libtorch: rt.libtorchVersion, cudaDevice: rt.cudaDeviceName || null, cpuThreads: rt.threads, loneFullDiffMs: loneMs, rows,
    };
    if (values.json) {
      process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      return;
    }
    const f = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
    console.log(`hdlm serve bench: ${report.model} on ${devices.join(', ')}${rt.cudaDeviceName ? ` (${rt.cudaDeviceName})` : ''}, L = ${length}, ${values.alg}, ${steps} steps, ` +
      `${every > 0 ? `streamed, a frame every ${every} step(s)` : 'not streamed'}; lone fullDiff (batch 1): ${f(loneMs)} ms`);
    console.log('clients  requests   server tok/s   p50 ms   p95 ms   1st frame p50/p95 ms   fullDiff batch=N: ms   tok/s   server/batched');
    for (const r of rows) {
      console.log(
        `${String(r.clients).padStart(7)}  ${String(r.requests).padStart(8)}   ${f(r.serverTokensPerS).padStart(12)}   ${f(r.p50Ms).padStart(6)}   ${f(r.p95Ms).padStart(6)}   ` +
          `${`${f(r.firstFrameP50Ms)} / ${f(r.firstFrameP95Ms)}`.padStart(20)}   ${f(r.fullDiffBatchMs).padStart(20)}   ${f(r.fullDiffTokensPerS).padStart(5)}   ${f(100 * r.ratio)} %`,
      );
    }
  } finally {
    await server.close({ abort: true });
    fs.rmSync(cache, { recursive: true, force: true });
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
