'use strict';
// Child process of test/91-prebuild-equivalence.test.js: loads the native addon the command line
// names, runs the samplers on tiny CPU models with fixed seeds, and prints
// RESULT:{ binary, cases: { name: tokens | { error } } }.
//
//   node test/helpers/sampler-outputs.js source      the build from source (build/Release)
//   node test/helpers/sampler-outputs.js prebuild    the package's prebuild that fits the libtorch
//                                                    found (HDLM_PREBUILD pointed at the package:
//                                                    chosen, checked and loaded as when installed)
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');

const which = process.argv[2];
if (which !== 'source' && which !== 'prebuild') throw new Error('usage: sampler-outputs.js source|prebuild');
if (which === 'prebuild') process.env.HDLM_PREBUILD = path.resolve(__dirname, '..', '..');
else delete process.env.HDLM_PREBUILD;

const hdlm = require('../../dist');
const { makeEpsilonCheckpoint } = require('./safetensors-writer');
const { FIXTURES } = require('./reference');

const digest = (floats) => crypto.createHash('sha256').update(Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength)).digest('hex');

async function record(cases, name, run) {
  try {
    cases[name] = await run();
  } catch (e) {
    cases[name] = { error: e.code || e.name, message: String(e.message) };
  }
}

(async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-equivalence-'));
  const cases = {};
  try {
    const eps = makeEpsilonCheckpoint(path.join(tmp, 'epsilon'), { hiddenSize: 16, nHeads: 2, nBlocks: 2, length: 64 });
    const load = (dir) => hdlm.smartModelLoader(dir, { device: 'cpu', torchscriptCacheDir: path.join(tmp, 'ts'), useCache: false });
    const { model } = await load(eps.dir);
    const { model: gamma } = await load(path.join(FIXTURES, 'tiny-gamma'));
    const prompt = [[464, 2003, 286], [11666, 4430, 13]];
    const x = [[5, 50257, 7, 50257, 9, 11], [50257, 50257, 3, 2, 1, 0]];

    await record(cases, 'forward reference', async () => digest((await model.forward(x)).data));
    await record(cases, 'forward fast', async () => digest((await model.forward(x, undefined, { reference: false })).data));
    await record(cases, 'forward gamma', async () => digest((await gamma.forward(x, 0.5)).data));

    const common = { model, batchSize: 2, steps: 6, contextLength: 24, eta: 0.3 };
    for (const reference of [true, false]) {
      const mode = reference ? 'reference' : 'fast';
      for (const alg of hdlm.ALGORITHMS) {
        await record(cases, `fullDiff ${alg} ${mode}`, () => hdlm.fullDiff({ ...common, alg, prompt, seed: 7, reference }));
        await record(cases, `semiDiff ${alg} ${mode}`, () => hdlm.semiDiff({ ...common, alg, blockSize: 8, seed: 8, reference }));
      }
      await record(cases, `fullDiff cfg ${mode}`, () => hdlm.fullDiff({ ...common, prompt, cfgScale: 1.5, temperature: 0.7, seed: 9, reference }));
    }
    for (const alg of hdlm.ALGORITHMS) {
      await record(cases, `fullDiffShifted ${alg}`, () =>
        hdlm.fullDiffShifted({ model, batchSize: 2, steps: 6, contextLength: 24, alg, prompt, repetitionPenalty: 1.5, seed: 10 }));
    }
    const ms = hdlm.makeBlockAnnealing(8, 4);
    for (const alg of hdlm.SEMI_SHIFTED_ALGORITHMS) {
      await record(cases, `semiDiffShifted ${alg}`, () => hdlm.semiDiffShifted({ model, batchSize: 2, alg, prompt, metaschedule: ms, contextLength: 25, seed: 11 }));
    }
    for (const samplingMethod of ['NAR', 'SAR']) {
      await record(cases, `gamma ${samplingMethod}`, () =>
        hdlm.gammaSample({ model: gamma, metaschedule: ms, batchSize: 2, contextLength: 24, samplingMethod, seed: 12 }));
    }
    model.dispose();
    gamma.dispose();
    const binary = hdlm.nativeInfo().binary;
    console.log('RESULT:' + JSON.stringify({ binary, cases }));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
})().catch((e) => {
  console.error(e);
  process.exit(3);
});
