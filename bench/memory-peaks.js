#!/usr/bin/env node
'use strict';
// Peak memory per batch row: each configuration runs in a fresh child process that loads the
// model, warms up with one row, then resets the kernel's high-water mark (clear_refs 5) and runs
// the call; the peak resident set (VmHWM) minus the resident set before the call is the call's
// peak. The slope between two batch sizes is the cost of one row, also given per logit
// (contextLength × vocabulary) — the figures lib/core/memory.ts's caps are set from.
//   node bench/memory-peaks.js [--batches 1,4] [--length 256] [--json]
// Linux only (/proc/self/status, /proc/self/clear_refs).
const path = require('path');
const { spawnSync } = require('child_process');
const { parseArgs } = require('util');

const ROOT = path.join(__dirname, '..');
const DEMO = path.join(ROOT, 'models', 'brown-epsilon');
const GAMMA = path.join(ROOT, 'test', 'fixtures', 'tiny-gamma');

const CASES = {
  'fullDiff reference': { model: DEMO, call: (b, L) => `fullDiff({ model, batchSize: ${b}, contextLength: ${L}, steps: 2, seed: 1, reference: true })` },
  'fullDiff reference acs': { model: DEMO, call: (b, L) => `fullDiff({ model, batchSize: ${b}, contextLength: ${L}, steps: 2, seed: 1, reference: true, alg: 'acs' })` },
  'fullDiff reference remdm': { model: DEMO, call: (b, L) => `fullDiff({ model, batchSize: ${b}, contextLength: ${L}, steps: 2, seed: 1, reference: true, alg: 'remdm' })` },
  'fullDiff reference cfg': { model: DEMO, call: (b, L) => `fullDiff({ model, batchSize: ${b}, contextLength: ${L}, steps: 2, seed: 1, reference: true, alg: 'acs', prompt: [1, 2, 3], cfgScale: 1 })` },
  'fullDiff fast': { model: DEMO, call: (b, L) => `fullDiff({ model, batchSize: ${b}, contextLength: ${L}, steps: 2, seed: 1, reference: false, alg: 'original' })` },
  'fullDiff fast acs': { model: DEMO, call: (b, L) => `fullDiff({ model, batchSize: ${b}, contextLength: ${L}, steps: 2, seed: 1, reference: false, alg: 'acs' })` },
  'semiDiff reference': { model: DEMO, call: (b, L) => `semiDiff({ model, batchSize: ${b}, contextLength: ${L}, blockSize: ${L / 4}, steps: 1, seed: 1, reference: true })` },
  evaluatePerplexity: {
    model: DEMO,
    call: (b, L) => `require('./dist/eval').evaluatePerplexity({ model, chunks: [Array.from({ length: ${L} }, (_, i) => (i * 7919) % 50000)], batchSize: ${b}, monteCarloTimesteps: ${b}, seed: 1 })`,
  },
  gammaSample: {
    model: GAMMA,
    length: 128,
    // the first steps show the peak: the call is stopped after two
    call: (b, L) => `(() => { const ac = new AbortController(); return gammaSample({ model, batchSize: ${b}, contextLength: ${L}, seed: 1, signal: ac.signal, onStep: ({ step }) => { if (step >= 2) ac.abort(); } }).catch((e) => { if (e.code !== 'HDLM_ABORTED') throw e; }); })()`,
  },
};

function measure(model, callSource, warmSource) {
  const code = `
const fs = require('fs');
const { smartModelLoader, fullDiff, semiDiff, gammaSample } = require('./dist');
const kib = (key) => Number(new RegExp(key + ':\\\\s+(\\\\d+)').exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
(async () => {
  const { model } = await smartModelLoader(${JSON.stringify(model)}, { device: 'cpu', useCache: false });
  await ${warmSource};
  global.gc && global.gc();
  fs.writeFileSync('/proc/self/clear_refs', '5');
  const before = kib('VmRSS');
  await ${callSource};
  console.log('RESULT:' + JSON.stringify({ before, peak: kib('VmHWM') }));
})().catch((e) => { console.error(e); process.exit(1); });`;
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', code], { cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 24 });
  const line = (r.stdout || '').split('\n').find((l) => l.startsWith('RESULT:'));
  if (!line) throw new Error(`child failed (${r.status} ${r.signal}): ${r.stderr.slice(-2000)}`);
  const { before, peak } = JSON.parse(line.slice(7));
  return peak - before;
}

function main() {
  const { values } = parseArgs({ options: { batches: { type: 'string', default: '1,4' }, length: { type: 'string', default: '256' }, json: { type: 'boolean', default: false }, only: { type: 'string' } } });
  const batches = values.batches.split(',').map(Number);
  const rows = [];
  for (const [name, c] of Object.entries(CASES)) {
    if (values.only && !name.includes(values.only)) continue;
    const L = c.length ?? Number(values.length);
    const V = 50258;
    const peaks = batches.map((b) => measure(c.model, c.call(b, L), c.call(1, L)));
    const b0 = batches[0];
    const b1 = batches[batches.length - 1];
    const perRow = (peaks[peaks.length - 1] - peaks[0]) / (b1 - b0);
    const row = { name, contextLength: L, vocab: V, peaksMiB: peaks.map((p) => +(p / 2 ** 20).toFixed(1)), batches, perRowMiB: +(perRow / 2 ** 20).toFixed(1), bytesPerLogit: +(perRow / (L * V)).toFixed(1) };
    rows.push(row);
    if (!values.json) console.log(`${name.padEnd(20)} L=${L}  peaks ${row.peaksMiB.map((p, i) => `b${batches[i]}: ${p} MiB`).join(', ')}  per row ${row.perRowMiB} MiB  = ${row.bytesPerLogit} bytes/logit`);
  }
  if (values.json) console.log(JSON.stringify(rows, null, 2));
}

main();
