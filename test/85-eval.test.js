'use strict';
// Evaluation. The MC perplexity estimator on a synthetic model with a known likelihood,
// upstream's chunking and detokenisers on hand-checked examples, the text entropy against a
// hand-computed value, the GPT-2 perplexity of samples against a direct computation, the Brown
// held-out perplexity of the demo model on a small subset, and the CLI.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { smartModelLoader, DEMO_MODEL_PATH, encode } = require('../dist');
const ev = require('../dist/eval');
const ds = require('../dist/eval/datasets');
const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
const { ROOT, tempDir } = require('./helpers/reference');
const { makeGpt2, nllReference, gpt2HiddenReference } = require('./helpers/gpt2');

const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');

describe('eval: chunking and detokenisers (hand-checked)', () => {
  it('encodes each text, appends EOS, concatenates and cuts into chunks (remainder dropped)', () => {
    // 'Hello world' = [15496, 995], 'Hi' = [17250]; EOS 50256
    assert.deepStrictEqual(encode('Hello world'), [15496, 995]);
    assert.deepStrictEqual(ds.chunkTexts(['Hello world', 'Hi'], 2), [[15496, 995], [50256, 17250]]);
    assert.deepStrictEqual(ds.chunkTexts(['Hello world', 'Hi'], 5), [[15496, 995, 50256, 17250, 50256]]);
    assert.deepStrictEqual(ds.chunkTexts(['Hello world', 'Hi'], 6), []);
    // the detokeniser runs before encoding; '<|endoftext|>' inside a text is plain text
    const upper = encode('HELLO WORLD');
    assert.deepStrictEqual(ds.chunkTexts(['Hello world'], upper.length + 1, (s) => s.toUpperCase()), [[...upper, 50256]]);
    assert.ok(ds.chunkTexts(['<|endoftext|>'], 1).length > 2);
  });

  it('WikiText, PTB, LAMBADA and Brown rules', () => {
    assert.strictEqual(ds.wikitextDetokenizer("The game 's score was 1 @,@ 000 @.@ 5 , and = = Title = = \n"), "The game's score was 1,000.5, and == Title ==\n");
    assert.strictEqual(ds.wikitextDetokenizer('a ( b c ) d [ e ] 3 @-@ 4'), 'a (b c) d [e] 3-4');
    assert.strictEqual(ds.ptbDetokenizer("the company 's shares rose N % to $ N a share ; it did n't <unk>"), "the company's shares rose 1 % to $1 a share ; it didn't ?");
    assert.strictEqual(ds.lambadaDetokenizer('  \u201cHi,\u201d she said.  '), '\n"Hi," she said.');
    assert.strictEqual(
      ds.brownDetokenizer("The/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, it/pps did/dod n't/* go/vb ./."),
      'The jury said "no evidence", it didn\'t go.',
    );
    assert.throws(() => ds.detokenizer('nope'), /detokenizer/);
  });

  it('reads the Brown corpus (500 documents) and local text / JSONL files', () => {
    const brown = ds.readBrownCorpus();
    assert.strictEqual(brown.length, 500);
    assert.ok(brown[0].startsWith('The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence"'));
    assert.ok(!/\/[a-z]/.test(brown[0].slice(0, 2000)), 'tags stripped');
    // paragraphs (runs of non-blank lines) joined with a blank line, sentences with a space
    assert.strictEqual(ds.brownDocument('\n\n\tA/at b/nn ./.\nC/np d/vb ./.\n\n\n\tE/np !/.\n'), 'A b. C d.\n\nE!');
    // the same text as the fixture's training data: test/fixtures/brown-epsilon/training.json
    // counts 1,299,619 corpus tokens (EOS after each document) and 253 held-out chunks
    const training = JSON.parse(fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'brown-epsilon', 'training.json'), 'utf8'));
    const chunks = ds.chunkTexts(brown, 256);
    assert.ok(Math.abs(chunks.length * 256 / training.corpus_tokens - 1) < 0.002, `${chunks.length} chunks`);
    assert.strictEqual(Math.floor(chunks.length * 0.05), training.val_chunks);
    const dir = tempDir('ds');
    try {
      fs.writeFileSync(path.join(dir, 'a.txt'), 'first line\n\nsecond line\n');
      fs.writeFileSync(path.join(dir, 'b.jsonl'), '{"text":"one"}\n{"text":"two","x":1}\n');
      fs.writeFileSync(path.join(dir, 'c.jsonl'), '{"sentence":"s"}\n');
      assert.deepStrictEqual(ds.readTextFile(path.join(dir, 'a.txt')), ['first line', 'second line']);
      assert.deepStrictEqual(ds.readTextFile(path.join(dir, 'b.jsonl')), ['one', 'two']);
      assert.deepStrictEqual(ds.readTextFile(path.join(dir, 'c.jsonl'), { field: 'sentence' }), ['s']);
      assert.throws(() => ds.readTextFile(path.join(dir, 'c.jsonl')), /no string field 'text'/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('eval: text entropy', () => {
  it('matches a hand-computed value', () => {
    // "the the the cat" → GPT-2 ids [1169, 262, 262, 3797]: p = 1/4, 1/2, 1/4 → H = 1.5 ln 2
    const ids = encode('the the the cat');
    assert.deepStrictEqual(ids, [1169, 262, 262, 3797]);
    const expected = -(2 * 0.25 * Math.log(0.25 + 1e-8) + 0.5 * Math.log(0.5 + 1e-8));
    assert.ok(Math.abs(expected - 1.5 * Math.LN2) < 1e-7);
    assert.ok(Math.abs(ev.textEntropy(ids) - expected) < 1e-12);
    // special tokens (EOS, mask) are skipped before re-encoding
    assert.ok(Math.abs(ev.textEntropy([50256, ...ids, 50257, 50256]) - expected) < 1e-12);
    assert.strictEqual(ev.textEntropy([50256]), 0);
  });
});

describe('eval: Monte-Carlo perplexity estimator', function () {
  this.timeout(300000);
  let root;
  let model;
  let logq; // log-probabilities of the synthetic model (same for every position and context)
  const V = 41; // 40 tokens + mask
  const L = 32;

  before(async () => {
    root = tempDir('mc');
    // Every weight zero except the output bias: logits = bias at every position, whatever the
    // input, so log p(x) = Σ_l log softmax(bias)[x_l] is known exactly.
    const bias = new Float32Array(V);
    for (let i = 0; i < V; i++) bias[i] = Math.sin(i * 1.7) * 2;
    const ck = makeEpsilonCheckpoint(path.join(root, 'unigram'), {
      hiddenSize: 8, nHeads: 2, nBlocks: 1, length: L, vocabTokens: V - 1,
      fill: (name, shape) => (name === 'output_layer.linear.bias' ? bias : new Float32Array(shape.reduce((a, b) => a * b, 1))),
    });
    ({ model } = await smartModelLoader(ck.dir, { device: 'cpu', useCache: false }));
    const m = Math.max(...bias);
    const lse = m + Math.log(bias.reduce((a, b) => a + Math.exp(b - m), 0));
    logq = Array.from(bias, (b) => b - lse);
  });
  after(() => {
    model?.dispose();
    fs.rmSync(root, { recursive: true, force: true });
  });

  function randomChunks(n, seed) {
    let s = seed;
    const r = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
    return Array.from({ length: n }, () => Array.from({ length: L }, () => Math.floor(r() * (V - 1))));
  }

  it('recovers a known likelihood within its Monte-Carlo error', async () => {
    const chunks = randomChunks(6, 17);
    // The bound's expectation: every position (the first one too) masked with probability p and
    // weighted 1/p → E = Σ_x Σ_l −log q(x_l); upstream divides by Σ_x (L − 1).
    const exact = chunks.reduce((a, c) => a + c.reduce((b, t) => b - logq[t], 0), 0) / (chunks.length * (L - 1));
    const r = await ev.evaluatePerplexity({ model, chunks, batchSize: 16, monteCarloTimesteps: 1024, seed: 3 });
    assert.strictEqual(r.chunks, 6);
    assert.strictEqual(r.tokens, 6 * (L - 1));
    assert.strictEqual(r.drawsPerChunk, 64);
    // precise enough to tell the right normalisation (L − 1 targets, every position masked)
    // from dividing by L: those differ by exact / L ≈ 0.15 nats here
    assert.ok(r.nllStandardError > 0 && r.nllStandardError < exact / L / 4.5, `standard error ${r.nllStandardError}`);
    const z = (r.nll - exact) / r.nllStandardError;
    assert.ok(Math.abs(z) < 4, `nll ${r.nll} vs exact ${exact} (z = ${z.toFixed(2)}, se ${r.nllStandardError})`);
    assert.ok(Math.abs(r.perplexity - Math.exp(r.nll)) < 1e-9);
    // seeded: the same seed gives the same numbers, another seed other numbers
    const again = await ev.evaluatePerplexity({ model, chunks, batchSize: 16, monteCarloTimesteps: 1024, seed: 3 });
    assert.strictEqual(again.nll, r.nll);
    const other = await ev.evaluatePerplexity({ model, chunks, batchSize: 16, monteCarloTimesteps: 1024, seed: 4 });
    assert.notStrictEqual(other.nll, r.nll);
  });

  it('is unbiased over many seeds (mean of 12 independent estimates)', async () => {
    const chunks = randomChunks(2, 5);
    const exact = chunks.reduce((a, c) => a + c.reduce((b, t) => b - logq[t], 0), 0) / (chunks.length * (L - 1));
    const est = [];
    for (let s = 0; s < 12; s++) est.push((await ev.evaluatePerplexity({ model, chunks, batchSize: 4, monteCarloTimesteps: 8, seed: 100 + s })).nll);
    const mean = est.reduce((a, b) => a + b, 0) / est.length;
    const sd = Math.sqrt(est.reduce((a, b) => a + (b - mean) ** 2, 0) / (est.length - 1));
    assert.ok(sd > 0);
    assert.ok(Math.abs(mean - exact) < 4 * (sd / Math.sqrt(est.length)), `mean ${mean} vs exact ${exact} (sd ${sd})`);
  });

  it('validates its options', async () => {
    const chunks = randomChunks(1, 1);
    await assert.rejects(ev.evaluatePerplexity({ model, chunks, batchSize: 8, monteCarloTimesteps: 4 }), /monteCarloTimesteps/);
    await assert.rejects(ev.evaluatePerplexity({ model, chunks: [[1, 2, 3]] }), /32 ids/);
    await assert.rejects(ev.evaluatePerplexity({ model, chunks, texts: ['x'] }), /exactly one/);
    await assert.rejects(ev.evaluatePerplexity({ model, chunks, bogus: 1 }), /bogus/);
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(ev.evaluatePerplexity({ model, chunks, batchSize: 4, monteCarloTimesteps: 4, signal: ac.signal }), (e) => e.name === 'AbortError');
  });
});

describe('eval: the demo model on the Brown corpus', function () {
  this.timeout(600000);
  let model;
  before(async () => {
    ({ model } = await smartModelLoader(DEMO_MODEL_PATH, { device: 'cpu' }));
  });
  after(() => model?.dispose());

  it('the held-out split (sorted documents, last 5 % of chunks) is the one the demo model was trained without', () => {
    // AdamW only ever pushes down the output bias of a token that never occurs in a training
    // batch, so such tokens all keep one value (that of tokens absent from the corpus). Tokens
    // found only in our held-out chunks must have it; tokens found only in the other chunks not.
    const { readSafetensorsHeader } = require('../dist/core/checkpoint');
    const { readTensorAsFloat32 } = require('./helpers/safetensors-writer');
    const file = path.join(DEMO_MODEL_PATH, 'model.safetensors');
    const entry = readSafetensorsHeader(file).tensors.find((t) => t.name === 'output_layer.linear.bias');
    const bias = readTensorAsFloat32(file, entry);
    const chunks = ev.perplexityChunks({ dataset: 'brown' }, 256);
    const held = ev.perplexityChunks({ dataset: 'brown', lastFraction: 0.05 }, 256);
    assert.strictEqual(held.length, 253);
    const split = chunks.length - held.length;
    const only = (a, b) => {
      const inB = new Set(b.flat());
      return [...new Set(a.flat())].filter((t) => !inB.has(t));
    };
    const inCorpus = new Set(chunks.flat());
    const absent = [];
    for (let t = 0; t < 50257; t++) if (!inCorpus.has(t)) absent.push(bias[t]);
    const counts = new Map();
    for (const b of absent) counts.set(b, (counts.get(b) ?? 0) + 1);
    const untrained = [...counts.entries()].sort((x, y) => y[1] - x[1])[0][0];
    assert.ok(counts.get(untrained) > 0.95 * absent.length, 'tokens absent from the corpus share one bias value');
    const heldOnly = only(chunks.slice(split), chunks.slice(0, split));
    const trainOnly = only(chunks.slice(0, split), chunks.slice(split));
    assert.ok(heldOnly.length > 200 && trainOnly.length > 10000, `${heldOnly.length} / ${trainOnly.length} tokens`);
    assert.ok(heldOnly.every((t) => bias[t] === untrained), 'every token found only in the held-out chunks is untrained');
    assert.ok(trainOnly.filter((t) => bias[t] === untrained).length < 0.01 * trainOnly.length, 'tokens of the other chunks are trained');
    // the first 5 % (held out before the others) was trained on
    const firstOnly = only(chunks.slice(0, held.length), chunks.slice(held.length));
    assert.ok(firstOnly.filter((t) => bias[t] === untrained).length < 0.05 * firstOnly.length);
  });

  it('held-out perplexity bound on a subset is in the fixture\'s range', async () => {
    // 6 held-out chunks (last 5 %), 2 draws of 4 copies each: a small subset, so the check is
    // wide; the full held-out set is the opt-in HDLM_SLOW=1 test below. (Measured on the full
    // held-out set, CPU fp32: 281 ± 5 (95 %), against training.json's 225 — see README.)
    const r = await ev.evaluatePerplexity({ model, dataset: 'brown', lastFraction: 0.05, end: 6, batchSize: 4, monteCarloTimesteps: 8, seed: 1 });
    assert.strictEqual(r.chunks, 6);
    assert.ok(r.perplexity > 120 && r.perplexity < 420, `perplexity ${r.perplexity} (se of nll ${r.nllStandardError})`);
  });

  // The fixture reports 225 (bf16 weights) / 215 (fp32); on the same held-out documents (test
  // below) upstream's estimator (hdlm/zeroshot_ppl.py, mode aligned, nll_type mc) gives 281 ± 5 here and 282–284 in two independent PyTorch
  // re-implementations (README, "Measured"): the check is "same range" (within 30 %), not agreement.
  (process.env.HDLM_SLOW === '1' ? it : it.skip)('full held-out set (HDLM_SLOW=1): within 30 % of 225', async () => {
    const r = await ev.evaluatePerplexity({ model, dataset: 'brown', lastFraction: 0.05, batchSize: 8, monteCarloTimesteps: 16, seed: 1 });
    console.log(JSON.stringify(r));
    assert.strictEqual(r.chunks, 253);
    assert.ok(Math.abs(r.perplexity / 225 - 1) < 0.3, `perplexity ${r.perplexity}`);
  });

  it('evaluateGeneration: entropy per sample and GPT-2 perplexity against a direct computation', async () => {
    const root = tempDir('gen');
    try {
      const ck = makeGpt2(path.join(root, 'gpt2'), { vocab: 50257, embd: 8, head: 2, layer: 1, positions: 256, seed: 9 });
      const r = await ev.evaluateGeneration({ model, numSamples: 5, steps: 8, algorithm: 'acs', seed: 2, gpt2: ck.dir, batchSize: 3 });
      assert.strictEqual(r.samples.length, 5);
      assert.ok(r.samples.every((s) => s.length === 256));
      assert.deepStrictEqual(r.entropy.perSample, r.samples.map(ev.textEntropy));
      const mean = r.entropy.perSample.reduce((a, b) => a + b, 0) / 5;
      assert.ok(Math.abs(r.entropy.mean - mean) < 1e-12);
      assert.ok(r.entropy.std > 0);
      // upstream: floor(5 / 4) = 1 batch of 4 → 4 samples scored
      assert.strictEqual(r.gpt2Perplexity.samplesUsed, 4);
      for (let i = 0; i < 4; i++) {
        const direct = Math.exp(nllReference(ck, r.samples[i]) / 255);
        assert.ok(Math.abs(r.gpt2Perplexity.perSample[i] / direct - 1) < 1e-4, `sample ${i}: ${r.gpt2Perplexity.perSample[i]} vs ${direct}`);
      }
      const avg = r.gpt2Perplexity.perSample.reduce((a, b) => a + b, 0) / 4;
      assert.ok(Math.abs(r.gpt2Perplexity.value - avg) < 1e-9);
      assert.strictEqual(r.mauve, null);
      assert.match(r.notComputed.mauve, /needs referenceTexts/);
      // seeded: same seed, same samples
      const again = await ev.evaluateGeneration({ model, numSamples: 3, steps: 8, algorithm: 'acs', seed: 2, gpt2: null, batchSize: 3 });
      assert.deepStrictEqual(again.samples, r.samples.slice(0, 3));
      assert.strictEqual(again.gpt2Perplexity, null);
      assert.match(again.notComputed.mauve, /needs a GPT-2/);

      // MAUVE: p = the first min(N, 128) reference texts, q = the generated texts; features from
      // a direct float64 GPT-2 forward of each text's first 128 tokens give the same numbers
      const human = ds.readBrownCorpus().slice(0, 7).map((d) => d.slice(0, 300));
      const m = await ev.evaluateGeneration({ model, numSamples: 5, steps: 8, algorithm: 'acs', seed: 2, gpt2: ck.dir, batchSize: 3, referenceTexts: human });
      assert.deepStrictEqual(m.samples, r.samples);
      assert.strictEqual(m.notComputed.mauve, undefined);
      const feats = (texts) => texts.map((t) => {
        const ids = encode(t).slice(0, 128);
        return gpt2HiddenReference(ck, ids)[ids.length - 1];
      });
      const direct = ev.computeMauve({ pFeatures: feats(human.slice(0, 5)), qFeatures: feats(m.texts.filter((t) => t.length > 0)) });
      assert.ok(Math.abs(m.mauve.value - direct.mauve) < 1e-6, `${m.mauve.value} vs ${direct.mauve}`);
      assert.ok(Math.abs(m.mauve.frontierIntegral - direct.frontierIntegral) < 1e-6);
      assert.ok(m.mauve.value > 0 && m.mauve.value <= 1);
      assert.strictEqual(m.mauve.pCount, 5);
      assert.strictEqual(m.mauve.parameters.numBuckets, 2);
      assert.strictEqual(m.mauve.parameters.maxTextLength, 128);
      assert.strictEqual(m.mauve.parameters.seed, 25);
      assert.strictEqual(m.mauve.parameters.featurizer, path.resolve(ck.dir));
      await assert.rejects(ev.evaluateGeneration({ model, numSamples: 5, gpt2: ck.dir, referenceTexts: human.slice(0, 4) }), /at least min\(numSamples, 128\) = 5 texts/);
      await assert.rejects(ev.evaluateGeneration({ model, numSamples: 5, gpt2: ck.dir, referenceTexts: human, mauve: { bogus: 1 } }), /bogus/);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('eval: CLI (hdlm eval ppl | generation)', function () {
  this.timeout(600000);
  let root;
  before(() => {
    root = tempDir('evcli');
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  const run = (args) => execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HDLM_CACHE: path.join(root, 'ts') } });

  it('eval ppl on the Brown corpus writes the JSON result', () => {
    const file = path.join(root, 'ppl.json');
    const stdout = run(['eval', 'ppl', '--dataset', 'brown', '--last-fraction', '0.05', '--end', '2', '--batch-size', '4', '--mc-timesteps', '8', '--seed', '7', '--output', file]);
    const printed = JSON.parse(stdout);
    const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.deepStrictEqual({ ...printed, seconds: 0 }, { ...saved, seconds: 0 });
    assert.strictEqual(printed.chunks, 2);
    assert.strictEqual(printed.seed, '7');
    assert.ok(printed.perplexity > 50 && printed.perplexity < 1000, String(printed.perplexity));
  });

  it('eval ppl on a local JSONL file; usage errors exit 2', () => {
    const file = path.join(root, 'texts.jsonl');
    const brown = ds.readBrownCorpus().slice(0, 3);
    fs.writeFileSync(file, brown.map((t) => JSON.stringify({ text: t })).join('\n'));
    const r = JSON.parse(run(['eval', 'ppl', '--dataset', file, '--end', '1', '--batch-size', '2', '--mc-timesteps', '2', '--seed', '1']));
    assert.strictEqual(r.chunks, 1);
    assert.strictEqual(r.drawsPerChunk, 1);
    assert.strictEqual(r.nllStandardError, null);
    assert.throws(() => run(['eval', 'ppl']), (e) => e.status === 2 && /--dataset/.test(e.stderr));
    assert.throws(() => run(['eval', 'nope']), (e) => e.status === 2);
  });

  it('eval generation writes the results JSON and the samples', () => {
    const ck = makeGpt2(path.join(root, 'gpt2'), { vocab: 50257, embd: 8, head: 2, layer: 1, positions: 256, seed: 4 });
    const out = path.join(root, 'gen');
    const stdout = run(['eval', 'generation', '--num-samples', '4', '--steps', '4', '--seed', '1', '--gpt2', ck.dir, '--output-dir', out, '--save-samples']);
    const printed = JSON.parse(stdout);
    const saved = JSON.parse(fs.readFileSync(path.join(out, 'generation_evaluation_results.json'), 'utf8'));
    assert.deepStrictEqual(printed, saved);
    assert.strictEqual(printed.numSamples, 4);
    assert.strictEqual(printed.entropy.perSample.length, 4);
    assert.strictEqual(printed.gpt2Perplexity.samplesUsed, 4);
    assert.ok(printed.gpt2Perplexity.value > 1);
    assert.strictEqual(printed.mauve, null);
    assert.match(printed.notComputed.mauve, /needs referenceTexts/);
    const samples = fs.readFileSync(path.join(out, 'samples.txt'), 'utf8');
    assert.strictEqual((samples.match(/=== sample \d+ ===/g) || []).length, 4);
  });

  it('eval generation --mauve-reference brown reports MAUVE with its parameters', () => {
    const ck = makeGpt2(path.join(root, 'gpt2m'), { vocab: 50257, embd: 8, head: 2, layer: 1, positions: 256, seed: 6 });
    const out = path.join(root, 'genm');
    const printed = JSON.parse(run(['eval', 'generation', '--num-samples', '4', '--steps', '4', '--seed', '1', '--gpt2', ck.dir, '--output-dir', out,
      '--mauve-reference', 'brown', '--mauve-last-fraction', '0.05']));
    assert.ok(printed.mauve.value > 0 && printed.mauve.value <= 1, JSON.stringify(printed.mauve));
    assert.strictEqual(printed.mauve.pCount, 4);
    assert.strictEqual(printed.mauve.parameters.maxTextLength, 128);
    assert.strictEqual(printed.mauve.parameters.numBuckets, 2);
    assert.strictEqual(printed.notComputed.mauve, undefined);
  });
});
