'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { resolveRepoFiles, hubCacheDir, looksLikeRepoId, listCachedModels } = require('../dist/hub');
const { HdlmError } = require('../dist/errors');
const { startMockHub } = require('./helpers/mock-hub');

function fakeSafetensors(seed) {
  const n = 32;
  const header = Buffer.from(JSON.stringify({ w: { dtype: 'F32', shape: [4, 8], data_offsets: [0, n * 4] } }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  const data = Buffer.alloc(n * 4);
  for (let i = 0; i < n; i++) data.writeFloatLE(seed + i / 10, i * 4);
  return Buffer.concat([len, header, data]);
}

const TINY = 'test-org/tiny-model';
const YAML = 'test-org/yaml-model';
const PRIVATE = 'test-org/private-model';
const CONFIG_MAIN = JSON.stringify({ vocab_size: 50258, hidden_size: 64 }, null, 2);
const CONFIG_V1 = JSON.stringify({ vocab_size: 50258, hidden_size: 32 }, null, 2);
const WEIGHTS = fakeSafetensors(1);
const WEIGHTS_V1 = fakeSafetensors(2);
const REPOS = {
  [TINY]: {
    files: { 'config.json': CONFIG_MAIN, 'model.safetensors': WEIGHTS },
    branches: { v1: { 'config.json': CONFIG_V1, 'model.safetensors': WEIGHTS_V1 } },
  },
  [YAML]: { files: { 'config.yaml': 'model:\n  hidden_size: 64\n', 'config.json': '{}', 'model.safetensors': fakeSafetensors(3) } },
  [PRIVATE]: { private: true, files: { 'config.json': CONFIG_MAIN, 'model.safetensors': fakeSafetensors(4) } },
};
const GROUPS = [{ names: ['config.json'] }, { names: ['model.safetensors', 'pytorch_model.bin'] }];

const ENV_VARS = [
  'HF_TOKEN',
  'HUGGING_FACE_HUB_TOKEN',
  'HF_TOKEN_PATH',
  'HF_HUB_OFFLINE',
  'HF_ENDPOINT',
  'HF_HUB_CACHE',
  'HUGGINGFACE_HUB_CACHE',
  'HF_HOME',
  'XDG_CACHE_HOME',
];

async function rejectsHub(promise, ...patterns) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, 'expected a rejection');
  assert.ok(err instanceof HdlmError, `expected an HdlmError, got ${err && err.stack}`);
  assert.equal(err.code, 'HDLM_HUB', err.message);
  for (const p of patterns) assert.match(err.message, p);
  return err;
}

function contentGets(hub, since = 0) {
  return hub.requests
    .slice(since)
    .filter((r) => r.method === 'GET' && r.range === undefined && (r.path.includes('/resolve/') || r.path.startsWith('/cdn/')));
}

describe('hub', function () {
  this.timeout(20000);
  let hub;
  let tmp;
  let cacheDir;
  let savedEnv;

  before(async () => {
    hub = await startMockHub({ repos: REPOS });
  });
  after(async () => {
    await hub.close();
  });

  beforeEach(() => {
    savedEnv = {};
    for (const k of ENV_VARS) {
      savedEnv[k] = process.env[k];
      delete process.env[k];
    }
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-hub-'));
    cacheDir = path.join(tmp, 'cache');
    // keep a real ~/.cache/huggingface/token out of the tests
    process.env.HF_HOME = path.join(tmp, 'hf-home');
  });
  afterEach(() => {
    for (const k of ENV_VARS) {
      if (savedEnv[k] === undefined) delete process.env[k];
      else process.env[k] = savedEnv[k];
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const opts = (extra = {}) => ({ endpoint: hub.url, cacheDir, ...extra });

  it('downloads into the Python huggingface_hub cache layout', async () => {
    const progress = [];
    const res = await resolveRepoFiles(TINY, GROUPS, opts({ onProgress: (e) => progress.push(e) }));
    const commit = hub.commitOf(TINY);
    const storage = path.join(cacheDir, 'models--test-org--tiny-model');
    assert.equal(res.commit, commit);
    assert.equal(res.snapshotDir, path.join(storage, 'snapshots', commit));
    assert.deepEqual(Object.keys(res.files).sort(), ['config.json', 'model.safetensors']);
    assert.equal(fs.readFileSync(path.join(storage, 'refs', 'main'), 'utf8'), commit);

    for (const [name, content] of [
      ['config.json', Buffer.from(CONFIG_MAIN)],
      ['model.safetensors', WEIGHTS],
    ]) {
      const p = res.files[name];
      assert.equal(p, path.join(res.snapshotDir, name));
      assert.ok(fs.lstatSync(p).isSymbolicLink(), `${name} is a symlink`);
      const etag = hub.blobEtag(TINY, name);
      assert.equal(fs.readlinkSync(p), path.join('..', '..', 'blobs', etag));
      assert.deepEqual(fs.readFileSync(p), content);
      assert.deepEqual(fs.readFileSync(path.join(storage, 'blobs', etag)), content);
    }
    assert.match(hub.blobEtag(TINY, 'model.safetensors'), /^[0-9a-f]{64}$/); // LFS: sha256
    assert.match(hub.blobEtag(TINY, 'config.json'), /^[0-9a-f]{40}$/); // git blob id
    assert.deepEqual(fs.readdirSync(path.join(storage, 'blobs')).sort(), [hub.blobEtag(TINY, 'config.json'), hub.blobEtag(TINY, 'model.safetensors')].sort());

    const last = progress.filter((e) => e.file === 'model.safetensors').pop();
    assert.deepEqual(last, { file: 'model.safetensors', loaded: WEIGHTS.length, total: WEIGHTS.length });

    const listed = await listCachedModels({ cacheDir });
    assert.equal(listed.length, 1);
    assert.equal(listed[0].repoId, TINY);
    assert.deepEqual(listed[0].refs, { main: commit });
    assert.deepEqual(listed[0].snapshots, [commit]);
    assert.equal(listed[0].sizeBytes, WEIGHTS.length + Buffer.byteLength(CONFIG_MAIN));
  });

  it('resolves groups to their first existing name, optional groups to none', async () => {
    const yaml = await resolveRepoFiles(YAML, [{ names: ['config.yaml', 'config.json'] }, { names: ['model.safetensors'] }], opts());
    assert.deepEqual(Object.keys(yaml.files).sort(), ['config.yaml', 'model.safetensors']);
    assert.equal(fs.readFileSync(yaml.files['config.yaml'], 'utf8'), REPOS[YAML].files['config.yaml']);

    const groups = [{ names: ['config.yaml'], optional: true }, { names: ['config.json'], optional: true }, { names: ['model.safetensors', 'pytorch_model.bin'] }];
    const tiny = await resolveRepoFiles(TINY, groups, opts());
    assert.deepEqual(Object.keys(tiny.files).sort(), ['config.json', 'model.safetensors']);
    // Python's marker for "not in the repo at this commit"
    assert.ok(fs.existsSync(path.join(cacheDir, 'models--test-org--tiny-model', '.no_exist', tiny.commit, 'config.yaml')));
    // ... which lets an offline run decide the same way
    const offline = await resolveRepoFiles(TINY, groups, opts({ offline: true }));
    assert.deepEqual(offline, tiny);
  });

  it('reuses the cache: a second resolve downloads no file content', async () => {
    const first = await resolveRepoFiles(TINY, GROUPS, opts());
    const mark = hub.requests.length;
    const second = await resolveRepoFiles(TINY, GROUPS, opts());
    assert.deepEqual(second, first);
    assert.equal(contentGets(hub, mark).length, 0);
    // a branch is re-checked (one small API call), a commit sha needs no request at all
    assert.ok(hub.requests.length - mark <= 1, `requests: ${JSON.stringify(hub.requests.slice(mark))}`);
    const mark2 = hub.requests.length;
    const bySha = await resolveRepoFiles(TINY, GROUPS, opts({ revision: first.commit }));
    assert.deepEqual(bySha, first);
    assert.equal(hub.requests.length, mark2);
  });

  it('resolves a revision given as a branch name or as a commit sha', async () => {
    const v1 = await resolveRepoFiles(TINY, GROUPS, opts({ revision: 'v1' }));
    const v1Commit = hub.commitOf(TINY, 'v1');
    const storage = path.join(cacheDir, 'models--test-org--tiny-model');
    assert.equal(v1.commit, v1Commit);
    assert.notEqual(v1Commit, hub.commitOf(TINY, 'main'));
    assert.equal(fs.readFileSync(v1.files['config.json'], 'utf8'), CONFIG_V1);
    assert.deepEqual(fs.readFileSync(v1.files['model.safetensors']), WEIGHTS_V1);
    assert.equal(fs.readFileSync(path.join(storage, 'refs', 'v1'), 'utf8'), v1Commit);

    const mainCommit = hub.commitOf(TINY, 'main');
    const bySha = await resolveRepoFiles(TINY, GROUPS, opts({ revision: mainCommit }));
    assert.equal(bySha.commit, mainCommit);
    assert.equal(bySha.snapshotDir, path.join(storage, 'snapshots', mainCommit));
    assert.equal(fs.readFileSync(bySha.files['config.json'], 'utf8'), CONFIG_MAIN);
    assert.deepEqual(fs.readdirSync(path.join(storage, 'refs')).sort(), ['v1']); // no ref for a sha

    await rejectsHub(resolveRepoFiles(TINY, GROUPS, opts({ revision: 'no-such-branch' })), /Revision "no-such-branch" was not found/, /test-org\/tiny-model/);
  });

  it('offline: resolves from the cache only, and says what is missing', async () => {
    const local = await startMockHub({ repos: REPOS });
    const online = await resolveRepoFiles(TINY, GROUPS, { endpoint: local.url, cacheDir });
    await local.close();

    assert.deepEqual(await resolveRepoFiles(TINY, GROUPS, { endpoint: local.url, cacheDir, offline: true }), online);
    process.env.HF_HUB_OFFLINE = '1';
    assert.deepEqual(await resolveRepoFiles(TINY, GROUPS, { endpoint: local.url, cacheDir }), online);
    process.env.HF_HUB_OFFLINE = 'true';
    assert.deepEqual(await resolveRepoFiles(TINY, GROUPS, { endpoint: local.url, cacheDir, revision: online.commit }), online);

    // a file never downloaded
    await rejectsHub(
      resolveRepoFiles(TINY, [{ names: ['tokenizer.json'] }], { endpoint: local.url, cacheDir }),
      /Offline mode is on \(HF_HUB_OFFLINE\)/,
      /"tokenizer\.json"/,
      new RegExp(cacheDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')),
    );
    delete process.env.HF_HUB_OFFLINE;

    // an empty cache: the revision is missing
    const empty = path.join(tmp, 'empty-cache');
    await rejectsHub(
      resolveRepoFiles(TINY, GROUPS, { endpoint: local.url, cacheDir: empty, offline: true }),
      /Offline mode is on \(the offline option\)/,
      /revision "main"/,
      /test-org\/tiny-model/,
      new RegExp(empty.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')),
    );
  });

  it('network failure: falls back to a complete cache, else says to use HF_HUB_OFFLINE', async () => {
    const local = await startMockHub({ repos: REPOS });
    const online = await resolveRepoFiles(TINY, GROUPS, { endpoint: local.url, cacheDir });
    await local.close();
    // the Hub is down but the cache has the revision: used, as Python does
    assert.deepEqual(await resolveRepoFiles(TINY, GROUPS, { endpoint: local.url, cacheDir }), online);
    const err = await rejectsHub(
      resolveRepoFiles(TINY, GROUPS, { endpoint: local.url, cacheDir: path.join(tmp, 'empty-cache') }),
      /Could not reach the Hugging Face Hub/,
      /HF_HUB_OFFLINE=1/,
    );
    assert.ok(err.cause, 'keeps the cause');
  });

  it('errors: unknown repo, missing required file, bad arguments', async () => {
    await rejectsHub(resolveRepoFiles('test-org/does-not-exist', GROUPS, opts()), /Repository test-org\/does-not-exist was not found/, /404/, /token/);
    const err = await rejectsHub(
      resolveRepoFiles(TINY, [{ names: ['config.json'] }, { names: ['pytorch_model.bin', 'model.ckpt'] }], opts()),
      /"pytorch_model\.bin"/,
      /"model\.ckpt"/,
      /test-org\/tiny-model/,
    );
    assert.doesNotMatch(err.message, /config\.json/);
    // nothing downloaded when a required group fails
    assert.equal(contentGets(hub).filter((r) => r.path.includes('does-not-exist')).length, 0);

    const bad = async (p, re) => {
      await assert.rejects(p, (e) => e instanceof HdlmError && e.code === 'HDLM_INVALID_ARGUMENT' && re.test(e.message));
    };
    await bad(resolveRepoFiles('../x', GROUPS, opts()), /repoId/);
    await bad(resolveRepoFiles('a/b/c', GROUPS, opts()), /repoId/);
    await bad(resolveRepoFiles(42, GROUPS, opts()), /repoId/);
    await bad(resolveRepoFiles(TINY, 'config.json', opts()), /groups/);
    await bad(resolveRepoFiles(TINY, [{ names: [] }], opts()), /groups\[0\]\.names/);
    await bad(resolveRepoFiles(TINY, [{ names: ['../etc/passwd'] }], opts()), /groups\[0\]\.names\[0\]/);
    await bad(resolveRepoFiles(TINY, GROUPS, opts({ revision: '' })), /revision/);
    await bad(resolveRepoFiles(TINY, GROUPS, opts({ revision: '../../x' })), /revision/);
    await bad(resolveRepoFiles(TINY, GROUPS, opts({ offline: 'yes' })), /offline/);
    await bad(resolveRepoFiles(TINY, GROUPS, opts({ endpoint: 'ftp://x' })), /endpoint/);

    assert.equal(looksLikeRepoId('hdlm-group/hdlm-base-epsilon-0.01'), true);
    assert.equal(looksLikeRepoId('owner/name_1.2'), true);
    for (const s of ['gpt2', 'a/b/c', './a', '../a/b', '/a/b', 'a/', '/a', 'a//b', 'a/b c', 'a--b/c', 'a/b..c', 'C:/x', 'a\\b', '', 'a/.b']) {
      assert.equal(looksLikeRepoId(s), false, s);
    }
  });

  it('private repo: needs a good token, never prints it', async () => {
    await rejectsHub(resolveRepoFiles(PRIVATE, GROUPS, opts()), /401/, /private or gated/, /HF_TOKEN/);

    const secret = 'hf_bad-secret-123456';
    const err = await rejectsHub(resolveRepoFiles(PRIVATE, GROUPS, opts({ token: secret })), /rejected the token/, /401/);
    assert.ok(!err.message.includes(secret));
    assert.ok(!String(err.stack).includes(secret));

    process.env.HF_TOKEN = 'not-good';
    const envErr = await rejectsHub(resolveRepoFiles(PRIVATE, GROUPS, opts()), /rejected the token from HF_TOKEN/);
    assert.ok(!envErr.message.includes('not-good'));

    process.env.HF_TOKEN = 'good-token';
    const viaEnv = await resolveRepoFiles(PRIVATE, GROUPS, opts());
    assert.deepEqual(fs.readFileSync(viaEnv.files['model.safetensors']), REPOS[PRIVATE].files['model.safetensors']);
    delete process.env.HF_TOKEN;

    fs.rmSync(cacheDir, { recursive: true, force: true });
    const mark = hub.requests.length;
    const viaOption = await resolveRepoFiles(PRIVATE, GROUPS, opts({ token: 'good-token' }));
    assert.deepEqual(Object.keys(viaOption.files).sort(), ['config.json', 'model.safetensors']);
    const sent = hub.requests.slice(mark).filter((r) => !r.path.startsWith('/cdn/'));
    assert.ok(sent.length > 0 && sent.every((r) => r.authorization === 'Bearer good-token'));

    // the token file written by `huggingface-cli login` ($HF_HOME/token)
    fs.rmSync(cacheDir, { recursive: true, force: true });
    fs.mkdirSync(process.env.HF_HOME, { recursive: true });
    fs.writeFileSync(path.join(process.env.HF_HOME, 'token'), 'good-token\n');
    await resolveRepoFiles(PRIVATE, GROUPS, opts());
  });

  it('hubCacheDir honours HF_HUB_CACHE, HF_HOME and XDG_CACHE_HOME', async () => {
    delete process.env.HF_HOME;
    assert.equal(hubCacheDir(), path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
    process.env.XDG_CACHE_HOME = path.join(tmp, 'xdg');
    assert.equal(hubCacheDir(), path.join(tmp, 'xdg', 'huggingface', 'hub'));
    process.env.HF_HOME = path.join(tmp, 'home');
    assert.equal(hubCacheDir(), path.join(tmp, 'home', 'hub'));
    process.env.HF_HUB_CACHE = path.join(tmp, 'hub-cache');
    assert.equal(hubCacheDir(), path.join(tmp, 'hub-cache'));
    assert.equal(hubCacheDir({ cacheDir: path.join(tmp, 'explicit') }), path.join(tmp, 'explicit'));
    assert.equal(hubCacheDir({ cacheDir: 'rel' }), path.resolve('rel'));
    assert.deepEqual(await listCachedModels(), []); // absent cache
  });

  it('uses HF_HUB_CACHE and HF_ENDPOINT when no options are given', async () => {
    process.env.HF_HUB_CACHE = cacheDir;
    process.env.HF_ENDPOINT = hub.url;
    const res = await resolveRepoFiles(TINY, GROUPS);
    assert.ok(res.snapshotDir.startsWith(cacheDir + path.sep));
  });

  it('an interrupted download leaves no blob and no snapshot entry; a retry succeeds', async () => {
    const commit = hub.commitOf(TINY);
    const storage = path.join(cacheDir, 'models--test-org--tiny-model');
    const etag = hub.blobEtag(TINY, 'model.safetensors');
    hub.interruptNext(TINY, 'model.safetensors');
    await rejectsHub(resolveRepoFiles(TINY, GROUPS, opts()), /interrupted/, /model\.safetensors/);

    assert.ok(!fs.existsSync(path.join(storage, 'snapshots', commit, 'model.safetensors')));
    assert.throws(() => fs.lstatSync(path.join(storage, 'snapshots', commit, 'model.safetensors')));
    const blobs = fs.readdirSync(path.join(storage, 'blobs'));
    assert.ok(!blobs.includes(etag), 'no blob for the interrupted file');
    assert.deepEqual(blobs.filter((b) => b.includes('.incomplete')), [], 'temp file removed');
    assert.ok(!fs.existsSync(path.join(storage, 'refs', 'main')), 'ref written only once complete');
    // offline cannot use the half-done revision
    await rejectsHub(resolveRepoFiles(TINY, GROUPS, opts({ offline: true })), /Offline mode is on/);

    // a temp file left by a killed process long ago is cleaned up by the next download of that blob
    const stale = path.join(storage, 'blobs', `${etag}.12345-deadbeef.incomplete`);
    fs.writeFileSync(stale, 'partial');
    const old = new Date(Date.now() - 2 * 3600 * 1000);
    fs.utimesSync(stale, old, old);

    const res = await resolveRepoFiles(TINY, GROUPS, opts());
    assert.deepEqual(fs.readFileSync(res.files['model.safetensors']), WEIGHTS);
    assert.equal(fs.readFileSync(path.join(storage, 'refs', 'main'), 'utf8'), commit);
    assert.ok(!fs.existsSync(stale));
  });
});
