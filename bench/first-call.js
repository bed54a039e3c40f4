#!/usr/bin/env node
'use strict';
// The first call in a fresh process against the next ones: the quick-start's fast-mode fullDiff
// (demo model, acs, 128 steps, context 256, the quick-start's prompt) run three times in each of
// several fresh processes, with the addon's malloc tuning (default) and with glibc's defaults
// (HDLM_MALLOC_TUNING=0), plus the quick-start end to end (examples/quickstart.mjs).
//   node bench/first-call.js [--runs 3] [--mode fast|reference] [--steps 128] [--json]
const path = require('path');
const { spawnSync } = require('child_process');
const { parseArgs } = require('util');

const ROOT = path.join(__dirname, '..');

function child(env, mode, steps) {
  const code = `
const { smartModelLoader, fullDiff, tokenizer, DEMO_MODEL_PATH } = require('./dist');
(async () => {
  const t0 = Date.now();
  const { model } = await smartModelLoader(DEMO_MODEL_PATH, { device: 'cpu' });
  const load = Date.now() - t0;
  const prompt = tokenizer.encode('The future of artificial intelligence');
  const calls = [];
  for (let k = 0; k < 3; k++) {
    const t = Date.now();
    await fullDiff({ model, prompt, alg: 'acs', steps: ${steps}, contextLength: 256, seed: k, reference: ${mode === 'reference'} });
    calls.push(Date.now() - t);
  }
  model.dispose();
  console.log('RESULT:' + JSON.stringify({ load, calls }));
})();`;
  const r = spawnSync(process.execPath, ['-e', code], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8' });
  const line = (r.stdout || '').split('\n').find((l) => l.startsWith('RESULT:'));
  if (!line) throw new Error(`child failed: ${r.stderr.slice(-2000)}`);
  return JSON.parse(line.slice(7));
}

function quickstart(env) {
  const t = Date.now();
  const r = spawnSync(process.execPath, [path.join(ROOT, 'examples', 'quickstart.mjs')], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`quickstart failed: ${r.stderr.slice(-2000)}`);
  return Date.now() - t;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function main() {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, mode: { type: 'string', default: 'fast' }, steps: { type: 'string', default: '128' }, json: { type: 'boolean', default: false } } });
  const runs = Number(values.runs);
  const out = {};
  for (const [label, env] of [['tuned (default)', {}], ['glibc defaults (HDLM_MALLOC_TUNING=0)', { HDLM_MALLOC_TUNING: '0' }]]) {
    const rs = [];
    const qs = [];
    // alternate so that a busy moment of a shared machine hits both alike
    for (let i = 0; i < runs; i++) {
      rs.push(child(env, values.mode, Number(values.steps)));
      qs.push(quickstart(env));
    }
    out[label] = {
      firstCallMs: rs.map((r) => r.calls[0]),
      laterCallsMs: rs.flatMap((r) => r.calls.slice(1)),
      loadMs: rs.map((r) => r.load),
      quickstartMs: qs,
    };
    if (!values.json) {
      const o = out[label];
      console.log(`${label}: first call ${median(o.firstCallMs)} ms (${o.firstCallMs.join(', ')}), later calls ${median(o.laterCallsMs)} ms (${o.laterCallsMs.join(', ')}), load ${median(o.loadMs)} ms, quick-start end to end ${median(qs)} ms (${qs.join(', ')})`);
    }
  }
  if (values.json) console.log(JSON.stringify(out, null, 2));
}

main();
