'use strict';
// Bad input becomes a clear JS error of the package's own classes — never a crash.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { smartModelLoader, fullDiff, semiDiff, HdlmError, HdlmArgumentError } = require('../dist');
const { DEMO_MODEL, FIXTURES, tempDir } = require('./helpers/reference');

function isHdlm(code, pattern) {
  return (e) => {
    assert.ok(e instanceof HdlmError, `not an HdlmError: ${e && e.stack}`);
    assert.strictEqual(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
}

describe('errors: sampler options', function () {
  let model;
  let cache;
  before(async () => {
    cache = tempDir('ts');
    ({ model } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache }));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  const cases = [
    ['unknown alg', { alg: 'greedy' }, /'original', 'acs'.* for alg .*"greedy"/],
    ['steps < 1', { steps: 0 }, /steps.*received 0/],
    ['fractional steps', { steps: 2.5 }, /integer.*steps/],
    ['steps as a string', { steps: '10' }, /steps.*"10"/],
    ['prompt longer than contextLength', { prompt: [1, 2, 3, 4, 5], contextLength: 4 }, /contextLength/],
    ['prompt longer than the model', { prompt: new Array(300).fill(1) }, /256.* for prompt /],
    ['contextLength above the model length', { contextLength: 257 }, /between 1 and 256 for contextLength but received 257/],
    ['id outside the vocabulary', { prompt: [464, 50258] }, /\[0, 50258\)\) for prompt\[1\] but received 50258/],
    ['negative id', { prompt: [-1] }, /prompt\[0\]/],
    ['non-integer id', { prompt: [1.5] }, /prompt\[0\]/],
    ['float typed array prompt', { prompt: new Float32Array([1, 2]) }, /prompt.*Float32Array/],
    ['ragged prompt rows', { prompt: [[1, 2], [3]] }, /length 2.* for prompt\[1\]/],
    ['batchSize against prompt rows', { prompt: [[1], [2]], batchSize: 3 }, /batchSize/],
    ['batchSize 0', { batchSize: 0 }, /batchSize/],
    ['batchSize whose logits could not fit in memory', { batchSize: 1000, contextLength: 256 }, /at most 166 at contextLength 256.* for batchSize but received 1000/],
    ['negative temperature', { temperature: -1 }, /temperature.*-1/],
    ['NaN temperature', { temperature: NaN }, /temperature.*NaN/],
    ['infinite temperature', { temperature: Infinity }, /temperature/],
    ['eps out of range', { eps: 1 }, /eps/],
    ['eps zero', { eps: 0 }, /eps/],
    ['dim outside the vocabulary', { dim: 50258 }, /dim/],
    ['negative eta', { eta: -0.1 }, /eta/],
    ['cfgScale without prompt', { cfgScale: 1 }, /prompt.*cfgScale/],
    ['negative seed', { seed: -1 }, /seed/],
    ['too large bigint seed', { seed: 1n << 64n }, /seed/],
    ['signal that is not an AbortSignal', { signal: {} }, /AbortSignal for signal/],
    ['onStep not a function', { onStep: 5 }, /function for onStep/],
    ['stepTokens not a boolean', { stepTokens: 'yes' }, /stepTokens/],
    ['unknown option (snake_case)', { batch_size: 2 }, /batch_size.*did you mean batchSize/],
    ['device not the model device', { device: 'cuda:3' }, /device/],
  ];
  for (const [name, bad, pattern] of cases) {
    it(`fullDiff: ${name}`, async () => {
      await assert.rejects(fullDiff({ model, steps: 2, contextLength: 8, ...bad, ...('contextLength' in bad || 'prompt' in bad ? { contextLength: bad.contextLength } : {}) }), (e) => {
        assert.ok(e instanceof HdlmArgumentError, `${name}: ${e && e.stack}`);
        assert.strictEqual(e.code, 'HDLM_INVALID_ARGUMENT');
        assert.match(e.message, pattern);
        return true;
      });
    });
  }

  it('semiDiff: blockSize must be an integer within the context', async () => {
    await assert.rejects(semiDiff({ model, steps: 1, contextLength: 8, blockSize: 0 }), isHdlm('HDLM_INVALID_ARGUMENT', /blockSize/));
    await assert.rejects(semiDiff({ model, steps: 1, contextLength: 8, blockSize: 9 }), isHdlm('HDLM_INVALID_ARGUMENT', /blockSize/));
  });

  it('fullDiff does not accept blockSize (semiDiff only)', async () => {
    await assert.rejects(fullDiff({ model, blockSize: 4 }), isHdlm('HDLM_INVALID_ARGUMENT', /blockSize/));
  });

  it('options must be an object with an HdlmModel', async () => {
    await assert.rejects(fullDiff(), isHdlm('HDLM_INVALID_ARGUMENT', /options/));
    await assert.rejects(fullDiff({ model: {} }), isHdlm('HDLM_INVALID_ARGUMENT', /HdlmModel.* for model /));
  });

  it('forward: ids outside the vocabulary, ragged rows, positions of another shape', async () => {
    await assert.rejects(model.forward([[1, 50258]]), isHdlm('HDLM_INVALID_ARGUMENT', /tokens\[0\]\[1\]/));
    await assert.rejects(model.forward([[1, 2], [3]]), isHdlm('HDLM_INVALID_ARGUMENT', /tokens\[1\]/));
    await assert.rejects(model.forward([[1, 2]], [[0]]), isHdlm('HDLM_INVALID_ARGUMENT', /shape as tokens.* for positions/));
    await assert.rejects(model.forward([]), isHdlm('HDLM_INVALID_ARGUMENT', /tokens/));
  });
});

describe('errors: loading', function () {
  let tmp;
  before(() => { tmp = tempDir('bad'); });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const opts = () => ({ device: 'cpu', torchscriptCacheDir: path.join(tmp, 'cache') });

  function copyDemo(name) {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(DEMO_MODEL, 'config.json'), path.join(dir, 'config.json'));
    return dir;
  }

  it('a path that does not exist and is no repo id', async () => {
    await assert.rejects(smartModelLoader(path.join(tmp, 'nope'), opts()), isHdlm('HDLM_BAD_FILE', /does not exist/));
  });

  it('a directory without a model', async () => {
    await assert.rejects(smartModelLoader(tmp, opts()), isHdlm('HDLM_BAD_FILE', /holds no model/));
  });

  it('a truncated model.safetensors', async () => {
    const dir = copyDemo('truncated');
    const src = fs.readFileSync(path.join(DEMO_MODEL, 'model.safetensors'));
    fs.writeFileSync(path.join(dir, 'model.safetensors'), src.subarray(0, src.length - 1000));
    await assert.rejects(smartModelLoader(dir, opts()), isHdlm('HDLM_BAD_FILE', /model\.safetensors/));
    assert.ok(!fs.existsSync(path.join(tmp, 'cache', 'torchscript')) || fs.readdirSync(path.join(tmp, 'cache', 'torchscript')).length === 0, 'no cache entry left');
  });

  it('a header that claims a huge length', async () => {
    const dir = copyDemo('huge-header');
    const buf = Buffer.alloc(64);
    buf.writeBigUInt64LE(1n << 40n, 0);
    fs.writeFileSync(path.join(dir, 'model.safetensors'), buf);
    await assert.rejects(smartModelLoader(dir, opts()), isHdlm('HDLM_BAD_FILE'));
  });

  it('a missing tensor', async () => {
    const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
    const dir = path.join(tmp, 'missing-key');
    makeEpsilonCheckpoint(dir, { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 16, omit: ['blocks.0.attn_qkv.weight'] });
    await assert.rejects(smartModelLoader(dir, opts()), isHdlm('HDLM_BAD_FILE', /blocks\.0\.attn_qkv\.weight/));
  });

  it('a config.json that is not an object', async () => {
    const dir = path.join(tmp, 'config-array');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'config.json'), '[1, 2]');
    fs.copyFileSync(path.join(DEMO_MODEL, 'model.safetensors'), path.join(dir, 'model.safetensors'));
    await assert.rejects(smartModelLoader(dir, opts()), isHdlm('HDLM_BAD_FILE', /config/));
  });

  it('a gamma config with a broken weights file is a bad file, not a crash', async () => {
    const dir = path.join(tmp, 'gamma');
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(FIXTURES, 'tiny-gamma', 'config.json'), path.join(dir, 'config.json'));
    fs.writeFileSync(path.join(dir, 'model.safetensors'), Buffer.alloc(16));
    await assert.rejects(smartModelLoader(dir, opts()), isHdlm('HDLM_BAD_FILE'));
  });

  it('a gamma checkpoint whose config lacks the sigma_map it conditions on is refused', async () => {
    const dir = path.join(tmp, 'gamma-no-temb');
    fs.mkdirSync(dir);
    const cfg = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tiny-gamma', 'config.json'), 'utf8'));
    cfg.model.use_timestep_embedding = false;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    fs.copyFileSync(path.join(FIXTURES, 'tiny-gamma', 'model.safetensors'), path.join(dir, 'model.safetensors'));
    await assert.rejects(smartModelLoader(dir, opts()), isHdlm('HDLM_UNSUPPORTED', /use_timestep_embedding/));
  });

  it('an epsilon model takes no sigma', async () => {
    const { model } = await smartModelLoader(DEMO_MODEL, opts());
    try {
      await assert.rejects(model.forward([[1, 2]], [[0, 1]], [[1, 1]]), isHdlm('HDLM_INVALID_ARGUMENT', /sigma/));
    } finally {
      model.dispose();
    }
  });

  it('pytorch_model.bin gets a convert-to-safetensors message', async () => {
    const dir = copyDemo('bin');
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), Buffer.alloc(16));
    await assert.rejects(smartModelLoader(dir, opts()), isHdlm('HDLM_UNSUPPORTED', /safetensors/));
  });

  it('a file that is not TorchScript', async () => {
    const file = path.join(tmp, 'garbage.pt');
    fs.writeFileSync(file, 'this is not a zip archive');
    await assert.rejects(smartModelLoader(file, opts()), isHdlm('HDLM_BAD_FILE', /garbage\.pt/));
  });

  it('a TorchScript file that is not an HDLM model', async () => {
    // test/fixtures/not-hdlm.pt: a scripted module with forward(x) only (see test/fixtures/README.md)
    await assert.rejects(smartModelLoader(path.join(FIXTURES, 'not-hdlm.pt'), opts()), isHdlm('HDLM_BAD_FILE', /not an hdlm TorchScript model/));
  });

  it('a symlink loop', async () => {
    const a = path.join(tmp, 'loop-a');
    const b = path.join(tmp, 'loop-b');
    fs.symlinkSync(b, a);
    fs.symlinkSync(a, b);
    await assert.rejects(smartModelLoader(a, opts()), isHdlm('HDLM_BAD_FILE', /symbolic links/));
  });

  it('bad loader options', async () => {
    await assert.rejects(smartModelLoader(DEMO_MODEL, { modelType: 'gpt' }), isHdlm('HDLM_INVALID_ARGUMENT', /modelType/));
    await assert.rejects(smartModelLoader(DEMO_MODEL, { device: 'tpu' }), isHdlm('HDLM_INVALID_ARGUMENT', /device/));
    await assert.rejects(smartModelLoader(DEMO_MODEL, { devcie: 'cpu' }), isHdlm('HDLM_INVALID_ARGUMENT', /devcie/));
    await assert.rejects(smartModelLoader(42), isHdlm('HDLM_INVALID_ARGUMENT', /model path/));
    await assert.rejects(smartModelLoader(DEMO_MODEL, { threads: 0 }), isHdlm('HDLM_INVALID_ARGUMENT', /threads/));
  });

  it('asking for CUDA on a machine without it is a clear error', async function () {
    const { runtimeInfo } = require('../dist');
    if (runtimeInfo().cudaDeviceCount > 0) this.skip();
    await assert.rejects(smartModelLoader(DEMO_MODEL, { device: 'cuda' }), isHdlm('HDLM_UNSUPPORTED', /cuda.*(CPU-only|no CUDA device)/));
  });
});
