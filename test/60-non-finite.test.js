'use strict';
// NaN or infinity in a model's output is an error naming where it appeared, never a silently
// dropped draw or a token picked from garbage: evaluatePerplexity, fullDiff and semiDiff in both
// modes agree (HDLM_NON_FINITE). Models: small checkpoints whose weights make the output
// non-finite (an embedding row set to NaN, an output bias set to +inf).
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { smartModelLoader, fullDiff, semiDiff, HdlmError } = require('../dist');
const { evaluatePerplexity } = require('../dist/eval');
const { makeEpsilonCheckpoint, defaultFill } = require('./helpers/safetensors-writer');
const { tempDir } = require('./helpers/reference');

const ARCH = { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 16, vocabTokens: 20 };
const MASK = 20;
const D = ARCH.hiddenSize;

/** The default weights with the embedding rows `rows` set to `value` and the output bias entries `bias` set to `biasValue`. */
function poisoned({ rows = [], value = NaN, bias = [], biasValue = Infinity }) {
  return (name, shape) => {
    const data = defaultFill(name, shape);
    if (name === 'vocab_embed.embedding') for (const r of rows) data.fill(value, r * D, (r + 1) * D);
    if (name === 'output_layer.linear.bias') for (const b of bias) data[b] = biasValue;
    return data;
  };
}

async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail('the call resolved');
}

function assertNonFinite(err, pattern) {
  assert.ok(err instanceof HdlmError, `not an HdlmError: ${err && err.stack}`);
  assert.strictEqual(err.code, 'HDLM_NON_FINITE', err.message);
  assert.match(err.message, pattern);
}

describe('non-finite model output is an error naming where', function () {
  this.timeout(120000);
  let tmp;
  const models = {};
  const load = async (key, opts) => {
    if (!models[key]) {
      const dir = makeEpsilonCheckpoint(path.join(tmp, key), { ...ARCH, fill: poisoned(opts) }).dir;
      models[key] = (await smartModelLoader(dir, { device: 'cpu', useCache: false })).model;
    }
    return models[key];
  };
  before(() => {
    tmp = tempDir('nonfinite');
  });
  after(() => {
    for (const m of Object.values(models)) m.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('evaluatePerplexity: a NaN embedding row of a token in the text fails, naming chunk, draw and position (no draw is dropped silently)', async () => {
    const model = await load('nan-token-7', { rows: [7] });
    const clean = [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17];
    const dirty = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17];
    // a chunk without the poisoned token evaluates
    const ok = await evaluatePerplexity({ model, chunks: [clean], batchSize: 4, monteCarloTimesteps: 40, seed: 1 });
    assert.ok(Number.isFinite(ok.perplexity) && ok.perplexity > 1);
    // the poisoned token visible in some draws (masked in others): an error, not a perplexity of the rest
    const err = await rejection(evaluatePerplexity({ model, chunks: [clean, dirty], batchSize: 4, monteCarloTimesteps: 40, seed: 1 }));
    assertNonFinite(err, /evaluatePerplexity: chunk 1: the model's output holds NaN at draw \d+ \(sample \d+ of the batch, position \d+\)/);
  });

  it('evaluatePerplexity: a NaN mask-token row fails at the first draw', async () => {
    const model = await load('nan-mask', { rows: [MASK] });
    const err = await rejection(evaluatePerplexity({ model, chunks: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]], batchSize: 2, monteCarloTimesteps: 8, seed: 3 }));
    assertNonFinite(err, /chunk 0: .*NaN at draw 0 /);
  });

  for (const reference of [true, false]) {
    const mode = reference ? 'reference' : 'fast';
    it(`fullDiff (${mode}): NaN logits fail at step 1 in both modes (reference mode used to return token 0)`, async () => {
      const model = await load('nan-mask', { rows: [MASK] });
      const err = await rejection(fullDiff({ model, steps: 4, contextLength: 8, seed: 1, reference }));
      assertNonFinite(err, /the model's output holds NaN in the logits of a position being sampled \(row \d+ of the \d+ sampled this step\), at step 1$/);
    });

    it(`semiDiff (${mode}): a NaN prompt token's row fails, and +infinity in the output too`, async () => {
      const nanPrompt = await load('nan-token-7', { rows: [7] });
      const err = await rejection(semiDiff({ model: nanPrompt, prompt: [3, 7], steps: 2, contextLength: 8, blockSize: 4, seed: 2, reference }));
      assertNonFinite(err, /NaN .* at step \d+$/);
      const posInf = await load('inf-bias-5', { bias: [5] });
      const err2 = await rejection(fullDiff({ model: posInf, steps: 3, contextLength: 8, seed: 4, reference, alg: 'acs' }));
      assertNonFinite(err2, /holds \+infinity .* at step \d+$/);
    });
  }

  it('a -infinity logit alone is probability zero, not an error; a clean model is unaffected', async () => {
    const model = await load('neg-inf-bias', { bias: [5, 6], biasValue: -Infinity });
    for (const reference of [true, false]) {
      const out = await fullDiff({ model, steps: 8, contextLength: 8, seed: 5, reference, temperature: 1 });
      assert.ok(out[0].every((t) => t !== 5 && t !== 6), `sampled a token of probability zero: ${out[0]}`);
    }
  });
});
