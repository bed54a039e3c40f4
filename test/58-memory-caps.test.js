'use strict';
// Memory caps: a CPU call whose measured peak per row (lib/core/memory.ts, from
// bench/memory-peaks.js) times its batch does not fit in the memory available is refused before
// anything is allocated — fullDiff / semiDiff in both modes, evaluatePerplexity and gammaSample.
// HDLM_MEMORY_LIMIT lowers the figure; without it, the machine's own (MemAvailable, cgroup) counts.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { smartModelLoader, fullDiff, semiDiff, gammaSample, HdlmError } = require('../dist');
const { evaluatePerplexity } = require('../dist/eval');
const { PEAK_BYTES_PER_LOGIT, MAX_LOGITS_ELEMENTS, availableMemory, memoryForCalls } = require('../dist/core/memory');
const { DEMO_MODEL, FIXTURES } = require('./helpers/reference');

const MiB = 2 ** 20;
const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);

async function refusal(fn) {
  const rss = rssKiB();
  const t0 = Date.now();
  let err = null;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err, 'the call was not refused');
  // refused up front: no forward ran, nothing sizeable was allocated
  assert.ok(Date.now() - t0 < 2000, `refused only after ${Date.now() - t0} ms`);
  assert.ok(rssKiB() - rss < 64 * 1024, `RSS grew by ${(rssKiB() - rss) / 1024} MiB before the refusal`);
  return err;
}

function assertMemoryRefusal(err, { what, fits, perRowMiB }) {
  assert.ok(err instanceof HdlmError, String(err && err.stack));
  assert.strictEqual(err.code, 'HDLM_INVALID_ARGUMENT');
  assert.match(err.message, /batchSize/);
  assert.ok(err.message.includes(fits >= 1 ? `at most ${fits} for ${what}` : `not even 1 row fits`), err.message);
  assert.ok(err.message.includes(`each row needs about ${perRowMiB} MiB`), err.message);
}

describe('memory caps: refused before allocating, from the measured peak per row', function () {
  this.timeout(120000);
  let demo;
  let gamma;
  const saved = process.env.HDLM_MEMORY_LIMIT;
  before(async () => {
    demo = (await smartModelLoader(DEMO_MODEL, { device: 'cpu', useCache: false })).model;
    gamma = (await smartModelLoader(path.join(FIXTURES, 'tiny-gamma'), { device: 'cpu', useCache: false })).model;
  });
  after(() => {
    demo.dispose();
    gamma.dispose();
    if (saved === undefined) delete process.env.HDLM_MEMORY_LIMIT;
    else process.env.HDLM_MEMORY_LIMIT = saved;
  });
  afterEach(() => delete process.env.HDLM_MEMORY_LIMIT);

  const perRow = (kind, L, V) => L * V * PEAK_BYTES_PER_LOGIT[kind];
  const expect = (kind, L, V, limit) => ({ fits: Math.floor(limit / perRow(kind, L, V)), perRowMiB: Math.ceil(perRow(kind, L, V) / MiB) });

  const limits = [200 * MiB, 700 * MiB, 3000 * MiB];
  for (const limit of limits) {
    it(`with HDLM_MEMORY_LIMIT = ${limit / MiB} MiB: each entry point refuses a batch over its cap and names the batch that fits`, async () => {
      process.env.HDLM_MEMORY_LIMIT = String(limit);
      const L = 128;
      const V = demo.vocabSize;
      const cases = [
        ['fullDiff', 'reference', () => fullDiff({ model: demo, batchSize: 40, contextLength: L, steps: 2, reference: true })],
        ['fullDiff', 'referenceRemask', () => fullDiff({ model: demo, batchSize: 40, contextLength: L, steps: 2, reference: true, alg: 'remdm', eta: 0.01 })],
        ['fullDiff', 'fast', () => fullDiff({ model: demo, batchSize: 160, contextLength: L, steps: 2, reference: false })],
        ['semiDiff', 'reference', () => semiDiff({ model: demo, batchSize: 40, contextLength: L, steps: 2, blockSize: 32, reference: true })],
      ];
      for (const [what, kind, call] of cases) {
        const err = await refusal(call);
        assertMemoryRefusal(err, { what, ...expect(kind, L, V, Math.min(limit, availableMemory())) });
      }
      const ppl = await refusal(() => evaluatePerplexity({ model: demo, chunks: [Array.from({ length: demo.length }, (_, i) => i + 1)], batchSize: 128, monteCarloTimesteps: 128 }));
      assertMemoryRefusal(ppl, { what: 'evaluatePerplexity', ...expect('perplexity', demo.length, V, Math.min(limit, availableMemory())) });
      const g = await refusal(() => gammaSample({ model: gamma, batchSize: 64, seed: 1 }));
      assertMemoryRefusal(g, { what: 'gammaSample', ...expect('gamma', gamma.length, gamma.vocabSize, Math.min(limit, availableMemory())) });
    });
  }

  it('a batch within the cap runs (the refusal is not a blanket one)', async () => {
    const L = 64;
    process.env.HDLM_MEMORY_LIMIT = String(3 * perRow('reference', L, demo.vocabSize));
    const out = await fullDiff({ model: demo, batchSize: 2, contextLength: L, steps: 2, reference: true, seed: 1 });
    assert.strictEqual(out.length, 2);
    process.env.HDLM_MEMORY_LIMIT = String(3 * perRow('perplexity', demo.length, demo.vocabSize));
    const r = await evaluatePerplexity({ model: demo, chunks: [Array.from({ length: demo.length }, (_, i) => i + 1)], batchSize: 2, monteCarloTimesteps: 2, seed: 1 });
    assert.ok(Number.isFinite(r.perplexity));
  });

  it("without HDLM_MEMORY_LIMIT the machine's available memory counts: reference fullDiff at the logits cap is refused when it cannot fit", async function () {
    const L = 256;
    const batch = Math.floor(MAX_LOGITS_ELEMENTS / (L * demo.vocabSize)); // allowed by the logits cap alone
    const need = batch * perRow('reference', L, demo.vocabSize);
    const free = memoryForCalls();
    if (need <= free) {
      console.log(`      skipped: this machine has ${Math.round(free / MiB)} MiB available, enough for ${Math.round(need / MiB)} MiB`);
      this.skip();
    }
    const err = await refusal(() => fullDiff({ model: demo, batchSize: batch, contextLength: L, steps: 2, reference: true }));
    assert.strictEqual(err.code, 'HDLM_INVALID_ARGUMENT');
    assert.match(err.message, /MiB of memory are available/);
  });

  it('evaluatePerplexity and gammaSample have the logits cap too; a bad HDLM_MEMORY_LIMIT is a clear error', async () => {
    const err = await refusal(() => evaluatePerplexity({ model: demo, chunks: [[1, 2]], batchSize: 65536, monteCarloTimesteps: 65536 }));
    assert.match(err.message, /logits must stay within 2147483648 floats/);
    process.env.HDLM_MEMORY_LIMIT = '2GB';
    const bad = await refusal(() => gammaSample({ model: gamma, batchSize: 1, seed: 1 }));
    assert.strictEqual(bad.code, 'HDLM_INVALID_ARGUMENT');
    assert.match(bad.message, /HDLM_MEMORY_LIMIT/);
  });
});
