#!/usr/bin/env node
'use strict';
// Zero-shot perplexity of one model on the CPU and on CUDA, same chunks and seed: the two
// estimates must agree within their Monte-Carlo error (the GPU check of the evaluation).
//   node bench/ppl-devices.js <model dir> [chunks] [monteCarloTimesteps]
const { smartModelLoader, runtimeInfo } = require('..');
const { evaluatePerplexity } = require('../dist/eval');

const TEXT = [
  'The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, deserves the praise and thanks of the City of Atlanta for the manner in which the election was conducted.',
  'The future of artificial intelligence will be decided by the people who build it, and by the people who use it every day in their work and in their homes.',
  'It was a bright cold day in April, and the clocks were striking thirteen. Winston Smith slipped quickly through the glass doors of Victory Mansions.',
];

async function main() {
  const dir = process.argv[2];
  const nChunks = Number(process.argv[3] || 8);
  const mc = Number(process.argv[4] || 64);
  const texts = Array.from({ length: 40 }, (_, i) => TEXT[i % TEXT.length]);
  const devices = runtimeInfo().cudaDeviceCount > 0 ? ['cpu', 'cuda'] : ['cpu'];
  const out = {};
  for (const device of devices) {
    const { model } = await smartModelLoader(dir, { device, useCache: false });
    const r = await evaluatePerplexity({ model, texts, end: nChunks, batchSize: 16, monteCarloTimesteps: mc, seed: 1 });
    out[device] = { precision: model.precision, nll: r.nll, nllStandardError: r.nllStandardError, perplexity: r.perplexity, chunks: r.chunks };
    model.dispose();
  }
  if (out.cuda) {
    const se = Math.hypot(out.cpu.nllStandardError, out.cuda.nllStandardError);
    out.differenceInStandardErrors = (out.cuda.nll - out.cpu.nll) / se;
  }
  console.log(JSON.stringify(out, null, 1));
}
main().catch((e) => { console.error(e.stack || e.message); process.exit(1); });
