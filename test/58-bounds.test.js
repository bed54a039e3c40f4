'use strict';
// Values that used to be accepted and then failed natively (or not as an HdlmError) are refused
// up front with a clear message, and every value accepted at the edge really runs: threads,
// temperature, cfgScale, eta with remdm; fake HdlmModel objects; the prompt against the model's
// length; the shifted samplers' default BOS on a small vocabulary; `hdlm generate -` on an
// endless stdin.
const assert = require('assert');
const os = require('os');
const path = require('path');
const fs = require('fs');
const { spawn } = require('child_process');
const {
  smartModelLoader, fullDiff, semiDiff, fullDiffShifted, gammaSample, HdlmModel, HdlmError, runtimeInfo, DEMO_MODEL_PATH,
} = require('../dist');
const { evaluatePerplexity } = require('../dist/eval');
const { MIN_TEMPERATURE, MAX_CFG_SCALE } = require('../dist/core/sampling');
const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
const { ROOT } = require('./helpers/child');
const { tempDir } = require('./helpers/reference');

const argError = (re) => (e) => e instanceof HdlmError && e.code === 'HDLM_INVALID_ARGUMENT' && re.test(e.message);

describe('bounds: refused up front, or they run', function () {
  this.timeout(180000);
  let model;
  let tmp;
  before(async () => {
    tmp = tempDir('bounds');
    ({ model } = await smartModelLoader(DEMO_MODEL_PATH, { device: 'cpu', torchscriptCacheDir: tmp }));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('threads: 1 to the CPU cores; more is refused and the process-wide setting is left as it was', async () => {
    const cores = os.availableParallelism();
    const before = runtimeInfo().threads;
    for (const bad of [cores + 1, 4096, 0, 1.5]) {
      await assert.rejects(smartModelLoader(DEMO_MODEL_PATH, { device: 'cpu', torchscriptCacheDir: tmp, threads: bad }), argError(/for threads/));
      assert.strictEqual(runtimeInfo().threads, before);
    }
    const { model: m } = await smartModelLoader(DEMO_MODEL_PATH, { device: 'cpu', torchscriptCacheDir: tmp, threads: cores });
    assert.strictEqual(runtimeInfo().threads, cores);
    m.dispose();
    // HDLM_NUM_THREADS above the cores is clamped (hdlm info reports what a load would set)
    const r = await new Promise((resolve) => {
      const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'main.js'), 'info', '--json'], { env: { ...process.env, HDLM_NUM_THREADS: '4096' } });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.on('close', () => resolve(JSON.parse(out)));
    });
    assert.strictEqual(r.threads, cores);
  });

  it('temperature: 0 or >= MIN_TEMPERATURE (5e-324 failed natively in fast mode); the edge runs in both modes', async () => {
    for (const t of [5e-324, 1e-45, 1e-38, MIN_TEMPERATURE / 2]) {
      await assert.rejects(fullDiff({ model, steps: 2, contextLength: 8, temperature: t }), argError(/0 \(greedy\) or a finite number >= 0.000001 .* for temperature/));
      await assert.rejects(semiDiff({ model, steps: 2, contextLength: 8, blockSize: 4, temperature: t }), argError(/for temperature/));
    }
    for (const reference of [false, true]) {
      for (const t of [0, MIN_TEMPERATURE, 1e30]) {
        const rows = await fullDiff({ model, steps: 2, contextLength: 8, temperature: t, reference, seed: 1 });
        assert.strictEqual(rows[0].length, 8);
      }
      const semi = await semiDiff({ model, steps: 2, contextLength: 8, blockSize: 4, temperature: MIN_TEMPERATURE, reference, seed: 1 });
      assert.strictEqual(semi[0].length, 8);
    }
  });

  it(`cfgScale: at most ${MAX_CFG_SCALE} (1e308 failed natively); the edge runs`, async () => {
    for (const w of [1e308, 1e39, MAX_CFG_SCALE * 2]) {
      await assert.rejects(fullDiff({ model, steps: 2, contextLength: 8, prompt: [464], cfgScale: w }), argError(/for cfgScale/));
    }
    for (const reference of [false, true]) {
      const rows = await fullDiff({ model, steps: 2, contextLength: 8, prompt: [464], cfgScale: MAX_CFG_SCALE, reference, seed: 2 });
      assert.strictEqual(rows[0][0], 464);
    }
  });

  it("eta with remdm: at most 1 (it caps σ, a probability; 1e308 failed natively); other algorithms keep any finite eta", async () => {
    for (const eta of [1e308, 100, 1.0001]) {
      await assert.rejects(fullDiff({ model, steps: 2, contextLength: 8, alg: 'remdm', eta }), argError(/in \[0, 1\] with alg 'remdm' .* for eta/));
    }
    for (const reference of [false, true]) {
      assert.strictEqual((await fullDiff({ model, steps: 2, contextLength: 8, alg: 'remdm', eta: 1, reference, seed: 3 }))[0].length, 8);
      assert.strictEqual((await fullDiff({ model, steps: 2, contextLength: 8, alg: 'acs', eta: 100, reference, seed: 3 }))[0].length, 8);
    }
    const { checkSamplerOptions } = require('../dist/core/sampling');
    assert.throws(() => checkSamplerOptions('full', { alg: 'remdm', eta: 2 }), argError(/for eta/));
    checkSamplerOptions('full', { alg: 'acs', eta: 2 });
  });

  it('a fake HdlmModel (the prototype without the private state) is an HdlmArgumentError everywhere, not a TypeError', async () => {
    const fake = Object.create(HdlmModel.prototype);
    assert.strictEqual(fake instanceof HdlmModel, false);
    assert.strictEqual(model instanceof HdlmModel, true);
    const calls = [
      () => fullDiff({ model: fake, steps: 1 }),
      () => fullDiffShifted({ model: fake, steps: 1 }),
      () => gammaSample({ model: fake }),
      () => evaluatePerplexity({ model: fake, chunks: [[1]] }),
      () => fake.forward([[1]]),
      () => HdlmModel.prototype.forward.call({}, [[1]]),
    ];
    for (const call of calls) await assert.rejects(Promise.resolve().then(call), argError(/HdlmModel from smartModelLoader/));
    for (const sync of [() => fake.dispose(), () => fake.disposed, () => fake.pendingCalls]) {
      assert.throws(sync, argError(/HdlmModel from smartModelLoader/));
    }
  });

  it("a prompt longer than the model is blamed on the prompt, not on contextLength ('between 375 and 256')", async () => {
    const long = Array.from({ length: model.length + 119 }, (_, i) => 464 + (i % 50));
    for (const extra of [{}, { contextLength: model.length }, { contextLength: 16 }]) {
      await assert.rejects(fullDiff({ model, steps: 1, prompt: long, ...extra }), (e) => {
        assert.ok(e instanceof HdlmError && e.code === 'HDLM_INVALID_ARGUMENT', String(e));
        assert.match(e.message, new RegExp(`at most ${model.length} tokens \\(the model's length\\) for prompt but received "${long.length} tokens"`));
        return true;
      });
    }
    // a prompt that fits the model but not the asked contextLength names both
    await assert.rejects(fullDiff({ model, steps: 1, prompt: long.slice(0, 20), contextLength: 16 }), argError(/between 20 and 256 for contextLength/));
  });

  it("the shifted samplers on a small vocabulary say that the default BOS 50256 does not fit, and run with one that does", async () => {
    const made = makeEpsilonCheckpoint(path.join(tmp, 'small'), { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 16, vocabTokens: 20 });
    const { model: small } = await smartModelLoader(made.dir, { device: 'cpu', torchscriptCacheDir: tmp });
    try {
      await assert.rejects(fullDiffShifted({ model: small, steps: 2 }), (e) => {
        assert.ok(e instanceof HdlmError && e.code === 'HDLM_INVALID_ARGUMENT');
        assert.match(e.message, /below the model's vocabulary size 21 for bosId/);
        assert.match(e.message, /50256/);
        assert.doesNotMatch(e.message, /undefined/);
        return true;
      });
      const rows = await fullDiffShifted({ model: small, steps: 2, bosId: 0, seed: 1 });
      assert.strictEqual(rows[0][0], 0);
    } finally {
      small.dispose();
    }
  });

  it('`hdlm generate -` refuses more than 1 MiB on stdin (an endless pipe) without reading on', async () => {
    const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'cli', 'main.js'), 'generate', '-', '--steps', '1'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    let written = 0;
    const chunk = Buffer.alloc(64 * 1024, 'a');
    let open = true;
    child.stdin.on('error', () => { open = false; });
    const pump = () => {
      while (open && written < 64 * 1024 * 1024) {
        written += chunk.length;
        if (!child.stdin.write(chunk)) return child.stdin.once('drain', pump);
      }
    };
    pump();
    const code = await new Promise((resolve) => child.on('close', resolve));
    open = false;
    assert.strictEqual(code, 2, stderr);
    assert.match(stderr, /at most 1048576 bytes for stdin/);
    assert.ok(written < 64 * 1024 * 1024, 'it read the whole endless input');
  });
});
