'use strict';
// Generated malformed options: every one must be rejected in TypeScript, before anything
// reaches native code, with an HdlmArgumentError whose message names the option, the expected
// and the received value.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { smartModelLoader, fullDiff, semiDiff, HdlmArgumentError } = require('../dist');
const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
const { tempDir } = require('./helpers/reference');

// Tiny synthetic model: vocab 65 (mask id 64), length 16.
const VOCAB = 65;
const LENGTH = 16;

// Deterministic PRNG (mulberry32), so a failure names a case that reproduces.
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const notANumber = ['8', false, true, {}, [], () => 1, Symbol('x'), 8n, new Number(8)];
// Bad values per sampler option. `null`/`undefined` mean "use the default" and are not bad.
const BAD = {
  prompt: [
    [1, VOCAB], [-1], [1.5], [NaN], [Infinity], ['1'], [1n << 40n], [[1, 2], [3]], [[1], [VOCAB]], Object.assign(new Array(3), { 0: 1, 2: 2 }), // [1, <hole>, 2]
    new Float32Array([1]), new Float64Array([1]), new Int8Array([1]), new BigUint64Array([1n]), new Int32Array([VOCAB]),
    new Uint16Array([VOCAB + 1]), new BigInt64Array([-1n]), new DataView(new ArrayBuffer(4)), Buffer.from('abc').toString(),
    'hello', 42, true, {}, { length: 2, 0: 1, 1: 2 }, new Array(LENGTH + 1).fill(1), [new Float32Array([1])], [[1], 'x'],
    Object.assign(new Float32Array([1]), { constructor: Int32Array }),
  ],
  batchSize: [0, -1, 1.5, NaN, Infinity, 65537, 2 ** 53, ...notANumber],
  alg: ['greedy', 'ACS', '', 'original ', 0, false, ['acs'], {}, 1n],
  steps: [0, -1, 2.5, NaN, Infinity, -Infinity, 1_000_001, ...notANumber],
  temperature: [-1, -1e-9, NaN, Infinity, -Infinity, '1', true, [], {}, 1n],
  cfgScale: [-0.5, NaN, Infinity, '2', [], {}],
  contextLength: [0, -1, LENGTH + 1, 1.5, NaN, Infinity, 1e9, ...notANumber],
  eps: [0, 1, 2, -1e-5, NaN, Infinity, '1e-5', []],
  dim: [VOCAB, -1, 2.5, NaN, 'mask', [], {}],
  eta: [-0.1, NaN, Infinity, '0.1', []],
  seed: [-1, 1.5, NaN, Infinity, 2 ** 53, (1n << 64n), -1n, '7', {}, []],
  signal: [{}, { aborted: false }, true, 'signal', 1, () => {}],
  onStep: [1, 'fn', {}, [], true],
  stepTokens: ['yes', 1, 0, {}, []],
  device: ['', 'tpu', 'cuda:1', 'CPU', 1, {}, []],
  blockSize: [0, -1, LENGTH + 1, 1.5, NaN, '4', []],
};
const UNKNOWN = ['batch_size', 'context_length', 'cfg_scale', 'block_size', 'temprature', 'model_', 'Steps', 'seeds'];

// A valid base (randomly varied), so bad values are tried against different surroundings.
function validBase(r, semi) {
  const base = { steps: 1 + Math.floor(r() * 3), contextLength: 4 + Math.floor(r() * (LENGTH - 4)), seed: Math.floor(r() * 1000) };
  if (r() < 0.5) base.prompt = [1, 2];
  if (r() < 0.5) base.alg = ['original', 'acs', 'remask', 'remask_adhoc_shuffle', 'remdm'][Math.floor(r() * 5)];
  if (r() < 0.3) base.temperature = r() < 0.5 ? 0 : 0.7;
  if (r() < 0.3) base.batchSize = 2;
  if (semi && r() < 0.5) base.blockSize = 2;
  return base;
}

// The names an error may be about when `key` holds a bad value (prompt problems can be reported as
// contextLength, and the other way round; a bad batchSize may be reported against the prompt rows).
const RELATED = { prompt: ['prompt', 'contextLength'], contextLength: ['contextLength', 'prompt', 'blockSize'], batchSize: ['batchSize'] };

function buildCases() {
  const r = rng(20261127);
  const cases = [];
  for (const [key, values] of Object.entries(BAD)) {
    for (const value of values) {
      const semi = key === 'blockSize' || r() < 0.3;
      const base = validBase(r, semi);
      if (key === 'contextLength' || key === 'prompt') delete base.contextLength;
      if (key === 'blockSize') base.contextLength = LENGTH;
      if (key === 'batchSize' && Array.isArray(base.prompt)) delete base.prompt;
      cases.push({ fn: semi ? 'semiDiff' : 'fullDiff', options: { ...base, [key]: value }, names: RELATED[key] ?? [key] });
    }
  }
  for (const key of UNKNOWN) cases.push({ fn: 'fullDiff', options: { ...validBase(r, false), [key]: 1 }, names: [key], unknown: true });
  // Two bad options at once: the error names one of them.
  const keys = Object.keys(BAD).filter((k) => k !== 'blockSize');
  for (let i = 0; i < 60; i++) {
    const a = keys[Math.floor(r() * keys.length)];
    let b = keys[Math.floor(r() * keys.length)];
    if (b === a) b = 'steps';
    const options = { ...validBase(r, false) };
    delete options.contextLength;
    delete options.prompt;
    options[a] = BAD[a][Math.floor(r() * BAD[a].length)];
    options[b] = BAD[b][Math.floor(r() * BAD[b].length)];
    cases.push({ fn: 'fullDiff', options, names: [...new Set([...(RELATED[a] ?? [a]), ...(RELATED[b] ?? [b])])] });
  }
  // blockSize is semiDiff's only; the options argument itself; a model that is not one.
  cases.push({ fn: 'fullDiff', options: { blockSize: 4 }, names: ['blockSize'], unknown: true });
  for (const bad of [undefined, null, 1, 'x', [], () => {}]) cases.push({ fn: 'fullDiff', whole: bad, names: ['fullDiff options'] });
  for (const m of [undefined, null, {}, 'model', 1, { forward() {} }]) cases.push({ fn: 'semiDiff', options: { steps: 1 }, model: m, names: ['model'] });
  return cases;
}

function describeCase(c) {
  const seen = new WeakSet();
  const s = JSON.stringify(c.whole !== undefined || !c.options ? c.whole : c.options, (k, v) => {
    if (typeof v === 'bigint') return `${v}n`;
    if (typeof v === 'function') return 'fn';
    if (typeof v === 'symbol') return v.toString();
    if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
    if (ArrayBuffer.isView(v)) return `${Object.prototype.toString.call(v)}`;
    if (v && typeof v === 'object') { if (seen.has(v)) return '[cycle]'; seen.add(v); }
    return v;
  });
  return `${c.fn}(${s})`;
}

function assertNamesOption(e, c) {
  assert.ok(e instanceof HdlmArgumentError, `${describeCase(c)}: not an HdlmArgumentError: ${e && e.stack}`);
  assert.strictEqual(e.code, 'HDLM_INVALID_ARGUMENT');
  if (c.unknown) {
    assert.match(e.message, /^Unknown option /, describeCase(c));
  } else {
    // "Expected <what> for <name> but received <value>"
    const m = /^Expected (.+) for (.+) but received (.+)$/s.exec(e.message);
    assert.ok(m, `${describeCase(c)}: message does not have the expected shape: ${e.message}`);
    const named = m[2].replace(/\[\d+\]/g, '');
    assert.ok(c.names.includes(named), `${describeCase(c)}: the message names ${m[2]}, expected one of ${c.names.join(', ')}: ${e.message}`);
  }
}

describe('validation: generated malformed options never reach native code', function () {
  let tmp;
  let model;
  const cases = buildCases();

  before(async () => {
    tmp = tempDir('fuzz');
    makeEpsilonCheckpoint(path.join(tmp, 'm'), { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: LENGTH, vocabTokens: VOCAB - 1 });
    ({ model } = await smartModelLoader(path.join(tmp, 'm'), { device: 'cpu', torchscriptCacheDir: path.join(tmp, 'cache') }));
    assert.strictEqual(model.vocabSize, VOCAB);
    assert.strictEqual(model.length, LENGTH);
  });
  after(() => {
    model?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it(`has at least 200 generated malformed sampler option sets (${cases.length})`, () => {
    assert.ok(cases.length >= 200, `${cases.length}`);
  });

  it('the valid bases the cases start from are accepted and run', async () => {
    const r = rng(1);
    for (let i = 0; i < 6; i++) {
      const semi = i % 2 === 1;
      const out = await (semi ? semiDiff : fullDiff)({ model, ...validBase(r, semi) });
      assert.ok(Array.isArray(out) && out.length >= 1);
    }
  });

  it('every malformed option set rejects with an HdlmArgumentError naming the option, and no native call starts', async () => {
    let rejected = 0;
    for (const c of cases) {
      const fn = c.fn === 'semiDiff' ? semiDiff : fullDiff;
      const arg = 'whole' in c ? c.whole : { model: 'model' in c ? c.model : model, ...c.options };
      let p;
      try {
        p = fn(arg);
      } catch (e) {
        assert.fail(`${describeCase(c)} threw synchronously instead of rejecting: ${e}`);
      }
      assert.strictEqual(model.pendingCalls, 0, `${describeCase(c)} reached native code`);
      await assert.rejects(p, (e) => {
        assertNamesOption(e, c);
        return true;
      });
      rejected++;
    }
    assert.strictEqual(rejected, cases.length);
    assert.strictEqual(model.pendingCalls, 0);
  });

  const forwardCases = [
    [[]], [[[]]], ['abc'], [42], [null], [{}], [[VOCAB]], [[-1]], [[0.5]], [[[1, 2], [3]]], [new Float32Array([1])],
    [new Array(LENGTH + 1).fill(0)], [[1, 2], [[0]]], [[1, 2], [0, -1]], [[1, 2], [0, 1.5]], [[1, 2], 'pos'], [[1, 2], [[0, 1], [2, 3]]],
    [[1, 2], new Float64Array([0, 1])], [[1n, BigInt(VOCAB)]],
  ];
  it(`forward: ${forwardCases.length} malformed token / position arguments`, async () => {
    for (const args of forwardCases) {
      const p = model.forward(...args);
      assert.strictEqual(model.pendingCalls, 0, `forward(${String(args[0])}) reached native code`);
      await assert.rejects(p, (e) => {
        assert.ok(e instanceof HdlmArgumentError, `${String(args[0])}: ${e && e.stack}`);
        assert.match(e.message, /^Expected .+ for (tokens|positions)(\[\d+\])* but received /);
        return true;
      });
      assert.strictEqual(model.pendingCalls, 0);
    }
  });

  const loaderCases = [
    [{ modelType: 'gpt' }, 'modelType'], [{ modelType: 1 }, 'modelType'], [{ device: 'tpu' }, 'device'], [{ device: '' }, 'device'],
    [{ device: 1 }, 'device'], [{ precision: 'fp16' }, 'precision'], [{ precision: 'A' }, 'precision'], [{ threads: 0 }, 'threads'],
    [{ threads: 1.5 }, 'threads'], [{ threads: '4' }, 'threads'], [{ threads: 5000 }, 'threads'], [{ useCache: 'yes' }, 'useCache'],
    [{ torchscriptCacheDir: '' }, 'torchscriptCacheDir'], [{ torchscriptCacheDir: 5 }, 'torchscriptCacheDir'], [{ model_type: 'auto' }, 'model_type'],
    [{ modelPath: 'x' }, 'modelPath'],
  ];
  it(`smartModelLoader: ${loaderCases.length} malformed option sets`, async () => {
    for (const [opts, name] of loaderCases) {
      await assert.rejects(smartModelLoader(path.join(tmp, 'm'), { device: 'cpu', ...opts }), (e) => {
        assert.ok(e instanceof HdlmArgumentError, `${JSON.stringify(opts)}: ${e && e.stack}`);
        assert.ok(e.message.includes(name), `${JSON.stringify(opts)}: ${e.message}`);
        return true;
      });
    }
    for (const bad of [undefined, null, 42, '', [], {}]) {
      await assert.rejects(smartModelLoader(bad), (e) => e instanceof HdlmArgumentError);
    }
  });
});
