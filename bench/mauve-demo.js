#!/usr/bin/env node
'use strict';
// MAUVE of the demo model (models/brown-epsilon): N samples (upstream's eval_generation.py
// batching, full_diff) against as many held-out Brown texts (the last 5 % of the corpus's
// model-length chunks, decoded), GPT-2 features as upstream's calculate_mauve_score (texts cut
// to 128 tokens). Prints MAUVE, its parameters and the runtime of each phase as JSON.
//   node bench/mauve-demo.js [--device auto|cpu|cuda[:N]] [--samples N] [--steps N]
//                            [--gpt2 <checkpoint dir or hub id>] [--seed N]
// Without --gpt2 a small random GPT-2 (HF layout, vocab 50257) is written to a temporary
// directory: the pipeline and its runtime are real, the number only compares random features.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { parseArgs } = require('util');
const { smartModelLoader, DEMO_MODEL_PATH, decode, runtimeInfo } = require('..');
const { evaluateGeneration, loadGpt2, perplexityChunks } = require('../dist/eval');

async function main() {
  const { values } = parseArgs({
    options: {
      device: { type: 'string', default: 'auto' },
      samples: { type: 'string', default: '100' },
      steps: { type: 'string', default: '128' },
      gpt2: { type: 'string' },
      seed: { type: 'string', default: '1' },
    },
  });
  const numSamples = Number(values.samples);
  const steps = Number(values.steps);
  const t0 = Date.now();
  const { model } = await smartModelLoader(DEMO_MODEL_PATH, { device: values.device });
  let tmp = null;
  let gpt2Path = values.gpt2;
  if (!gpt2Path) {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-mauve-gpt2-'));
    const { makeGpt2 } = require('../test/helpers/gpt2');
    makeGpt2(tmp, { vocab: 50257, embd: 64, head: 4, layer: 2, positions: Math.max(1024, model.length), seed: 1 });
    gpt2Path = tmp;
  }
  try {
    const gpt2 = await loadGpt2(gpt2Path, { device: model.device });
    const human = perplexityChunks({ dataset: 'brown', lastFraction: 0.05 }, model.length).map((ids) => decode(ids, { skipSpecialTokens: true }));
    const tLoad = Date.now();
    let samplingDone = null;
    const r = await evaluateGeneration({
      model, numSamples, steps, seed: Number(values.seed), gpt2, referenceTexts: human,
      onProgress: (p) => {
        if (p.phase !== 'sampling' && samplingDone === null) samplingDone = Date.now();
      },
    });
    const tEnd = Date.now();
    gpt2.dispose();
    console.log(JSON.stringify({
      device: model.device,
      cuda: runtimeInfo().cudaDeviceName || null,
      model: model.source,
      gpt2: gpt2.source + (tmp ? ' (random tiny GPT-2 made for this run)' : ''),
      numSamples, steps, heldOutTexts: human.length,
      mauve: r.mauve,
      notComputed: r.notComputed,
      gpt2Perplexity: r.gpt2Perplexity ? r.gpt2Perplexity.value : null,
      entropy: r.entropy.mean,
      seconds: {
        load: (tLoad - t0) / 1000,
        sampling: ((samplingDone ?? tEnd) - tLoad) / 1000,
        mauve: r.mauve ? r.mauve.seconds : null,
        total: (tEnd - t0) / 1000,
      },
    }, null, 1));
  } finally {
    model.dispose();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }
}
main().catch((e) => { console.error(e.stack || e.message); process.exit(1); });
