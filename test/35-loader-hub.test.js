'use strict';
// smartModelLoader with a Hugging Face repo id, against a mock hub on 127.0.0.1.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { smartModelLoader, fullDiff, HdlmError } = require('../dist');
const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
const { startMockHub } = require('./helpers/mock-hub');
const { tempDir } = require('./helpers/reference');

describe('loader: Hugging Face repo ids (mock hub)', function () {
  let tmp;
  let hub;
  let files;

  before(async () => {
    tmp = tempDir('hubload');
    const ckpt = makeEpsilonCheckpoint(path.join(tmp, 'src'), { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 64 });
    files = {
      'config.json': fs.readFileSync(ckpt.configPath),
      'model.safetensors': fs.readFileSync(ckpt.weightsPath),
    };
    // Upstream reads config.yaml before config.json: this repo's yaml says length 32.
    const yamlConfig = { ...ckpt.config, model: { ...ckpt.config.model, length: 32 } };
    hub = await startMockHub({
      repos: {
        'hdlm-test/tiny-epsilon': { files },
        'hdlm-test/with-yaml': { files: { ...files, 'config.yaml': require('yaml').stringify(yamlConfig) } },
        'hdlm-test/private': { files, private: true },
      },
    });
  });
  after(async () => {
    await hub?.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const options = (extra = {}) => ({
    device: 'cpu', endpoint: hub.url, cacheDir: path.join(tmp, 'hf'), torchscriptCacheDir: path.join(tmp, 'ts'), ...extra,
  });

  it('downloads into the Python cache layout, builds the model and samples', async () => {
    const { model, cfg, device, metaschedule } = await smartModelLoader('hdlm-test/tiny-epsilon', options());
    try {
      assert.strictEqual(device, 'cpu');
      // upstream create_metaschedule: annealing block, width 64, eval_tau 64 in the synthetic config
      assert.strictEqual(String(metaschedule), 'Metaschedule(block, width 64, tau 64)');
      assert.strictEqual(cfg.model.length, 64);
      assert.match(model.source, /^hdlm-test\/tiny-epsilon@[0-9a-f]{40}$/);
      const repoDir = path.join(tmp, 'hf', 'models--hdlm-test--tiny-epsilon');
      const commit = fs.readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8');
      const snap = path.join(repoDir, 'snapshots', commit);
      assert.ok(fs.lstatSync(path.join(snap, 'model.safetensors')).isSymbolicLink());
      assert.ok(fs.readFileSync(path.join(snap, 'model.safetensors')).equals(files['model.safetensors']));
      const out = await fullDiff({ model, steps: 2, contextLength: 16, seed: 1 });
      assert.strictEqual(out[0].length, 16);
    } finally {
      model.dispose();
    }
  });

  it('config.yaml wins over config.json, as upstream reads it first', async () => {
    const { model, cfg } = await smartModelLoader('hdlm-test/with-yaml', options());
    model.dispose();
    assert.strictEqual(cfg.model.length, 32);
    assert.strictEqual(model.length, 32);
  });

  it('re-loads offline from the cache with the server stopped', async () => {
    const offlineHub = await startMockHub({ repos: { 'hdlm-test/offline': { files } } });
    const opts = options({ endpoint: offlineHub.url, cacheDir: path.join(tmp, 'hf-offline') });
    (await smartModelLoader('hdlm-test/offline', opts)).model.dispose();
    await offlineHub.close();
    const saved = process.env.HF_HUB_OFFLINE;
    process.env.HF_HUB_OFFLINE = '1';
    try {
      const { model } = await smartModelLoader('hdlm-test/offline', opts);
      model.dispose();
    } finally {
      if (saved === undefined) delete process.env.HF_HUB_OFFLINE;
      else process.env.HF_HUB_OFFLINE = saved;
    }
    const { model } = await smartModelLoader('hdlm-test/offline', { ...opts, offline: true });
    model.dispose();
    await assert.rejects(
      smartModelLoader('hdlm-test/never-downloaded', { ...opts, offline: true }),
      (e) => e instanceof HdlmError && e.code === 'HDLM_HUB' && /offline/i.test(e.message),
    );
  });

  it('a repo that does not exist is a clear hub error', async () => {
    await assert.rejects(
      smartModelLoader('hdlm-test/missing', options()),
      (e) => e instanceof HdlmError && e.code === 'HDLM_HUB' && /hdlm-test\/missing/.test(e.message),
    );
  });

  it('a private repo needs a good token, and a bad one is never echoed', async () => {
    await assert.rejects(
      smartModelLoader('hdlm-test/private', options({ token: 'wrong-token-123' })),
      (e) => e instanceof HdlmError && e.code === 'HDLM_HUB' && !e.message.includes('wrong-token-123'),
    );
    const { model } = await smartModelLoader('hdlm-test/private', options({ token: 'good-token' }));
    model.dispose();
  });
});
