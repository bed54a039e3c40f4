'use strict';
// The Hub against a hostile or broken server: the token never leaves the endpoint's origin (also
// across a CDN redirect that answers with a CloudFront header), never appears in an error or its
// causes, and downloads are bounded (the declared size, idle and total timeouts, the call's
// signal, stale temp files of dead processes cleaned). A proxy in front of the mock Hub injects
// the misbehaviour.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const util = require('node:util');
const crypto = require('node:crypto');
const { spawnSync } = require('node:child_process');

const { resolveRepoFiles, resolveDatasetFiles } = require('../dist/hub');
const { HdlmError, AbortError, smartModelLoader } = require('../dist');
const { loadHubDataset } = require('../dist/eval');
const { startMockHub } = require('./helpers/mock-hub');
const { ROOT } = require('./helpers/child');

const REPO = 'test-org/lfs-model';
const SECRET = 'hf_SeCrEtToKeN0123456789';
const MIRROR_SECRET = 'mirror-SeCrEt-42';
const WEIGHTS = crypto.randomBytes(5000);
const GROUPS = [{ names: ['config.json'] }, { names: ['model.safetensors'] }];
const ENV_VARS = ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH', 'HF_HUB_OFFLINE', 'HF_ENDPOINT', 'HF_HUB_CACHE', 'HF_HOME',
  'HF_HUB_DOWNLOAD_TIMEOUT', 'HF_HUB_ETAG_TIMEOUT'];

/** An HTTP server whose `handle(req, res, body)` answers or returns false to forward to `target`. */
async function startFront(target, handle) {
  const requests = [];
  let sent = 0;
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    requests.push({ method: req.method, path: req.url, authorization: req.headers.authorization, range: req.headers.range });
    const origWrite = res.write.bind(res);
    res.write = (c, ...rest) => {
      sent += Buffer.byteLength(c);
      return origWrite(c, ...rest);
    };
    if (await handle(req, res, body)) return;
    const up = http.request(target + req.url, { method: req.method, headers: { ...req.headers, host: new URL(target).host } }, (r) => {
      const headers = { ...r.headers };
      if (front.rewrite && headers.location) headers.location = front.rewrite(headers.location, r);
      if (front.extraHeaders && r.statusCode >= 300 && r.statusCode < 400) Object.assign(headers, front.extraHeaders);
      if (front.responseHeaders) Object.assign(headers, front.responseHeaders);
      res.writeHead(r.statusCode, headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    up.end(body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const front = {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    get sent() { return sent; },
    rewrite: null,
    extraHeaders: null,
    responseHeaders: null,
    close: () => new Promise((r) => { server.close(() => r()); server.closeAllConnections(); }),
  };
  return front;
}

async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail('expected a rejection');
}

describe('hub: hostile servers (token origin, redaction, bounded downloads, signal)', function () {
  this.timeout(60000);
  let hub;
  let tmp;
  let cacheDir;
  let savedEnv;
  const fronts = [];
  const front = async (handle) => {
    const f = await startFront(hub.url, handle);
    fronts.push(f);
    return f;
  };

  before(async () => {
    hub = await startMockHub({
      repos: { [REPO]: { private: true, files: { 'config.json': '{"a": 1}', 'model.safetensors': WEIGHTS } } },
      datasets: { 'test-org/ds': { files: { 'data/train.parquet': Buffer.from('not really parquet') } } },
      tokens: [SECRET, MIRROR_SECRET],
    });
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
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-hubr-'));
    cacheDir = path.join(tmp, 'cache');
    process.env.HF_HOME = path.join(tmp, 'hf-home');
  });
  afterEach(async () => {
    for (const k of ENV_VARS) {
      if (savedEnv[k] === undefined) delete process.env[k];
      else process.env[k] = savedEnv[k];
    }
    while (fronts.length) await fronts.pop().close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const blobsDir = () => path.join(cacheDir, 'models--test-org--lfs-model', 'blobs');
  const incomplete = () => (fs.existsSync(blobsDir()) ? fs.readdirSync(blobsDir()).filter((n) => n.endsWith('.incomplete')) : []);

  for (const token of [SECRET, MIRROR_SECRET]) {
    it(`the token (${token.startsWith('hf_') ? "an 'hf_' one, which the library would forward" : 'a mirror\'s'}) never reaches another origin: a CDN redirect with a CloudFront header`, async () => {
      // the CDN answers as CloudFront does: @huggingface/hub then sends its requests there with the token
      const cdn = await front(async () => false);
      cdn.responseHeaders = { 'x-cache': 'Hit from cloudfront' };
      const endpoint = await front(async () => false);
      // LFS files: the endpoint redirects to another origin that says it is CloudFront
      endpoint.rewrite = (loc) => loc.replace(hub.url, cdn.url);
      endpoint.extraHeaders = { 'x-cache': 'Hit from cloudfront' };
      const res = await resolveRepoFiles(REPO, GROUPS, { endpoint: endpoint.url, cacheDir, token });
      assert.deepEqual(fs.readFileSync(res.files['model.safetensors']), WEIGHTS);
      assert.ok(cdn.requests.length > 0, 'the CDN was used');
      assert.deepEqual(cdn.requests.filter((r) => r.authorization !== undefined), [], 'the CDN saw an Authorization header');
      assert.ok(endpoint.requests.some((r) => r.authorization === `Bearer ${token}`), 'the endpoint got the token');
    });
  }

  it('a redirect chain endpoint -> other origin -> endpoint: the token only on the endpoint\'s hops, credentials dropped across origins', async () => {
    const other = await front(async (req, res) => {
      // bounce back to the endpoint, keeping the path
      res.writeHead(307, { location: `${endpointUrl}${req.url.replace('/bounce', '')}` });
      res.end();
      return true;
    });
    let endpointUrl = '';
    const endpoint = await front(async (req, res) => {
      if (req.url.includes('/resolve/') && !req.url.startsWith('/back')) {
        res.writeHead(302, { location: `${other.url}/bounce/back${req.url}`, 'x-cache': 'Hit from cloudfront' });
        res.end();
        return true;
      }
      if (req.url.startsWith('/back')) req.url = req.url.slice('/back'.length);
      return false;
    });
    endpointUrl = endpoint.url;
    endpoint.rewrite = (loc) => loc.replace(hub.url, endpoint.url);
    const res = await resolveRepoFiles(REPO, GROUPS, { endpoint: endpoint.url, cacheDir, token: SECRET });
    assert.deepEqual(fs.readFileSync(res.files['model.safetensors']), WEIGHTS);
    assert.ok(other.requests.length >= 2);
    assert.deepEqual(other.requests.filter((r) => r.authorization !== undefined), []);
  });

  it('the token appears in no error, message or cause, even when the server echoes it (inspect, JSON, HDLM_DEBUG)', async () => {
    const echo = await front(async (req, res) => {
      const said = `token ${SECRET} (${encodeURIComponent(SECRET)}) is not allowed; auth was ${req.headers.authorization}`;
      const status = req.url.includes('paths-info') ? 401 : req.url.includes('/revision/') && req.url.includes('main') ? 500 : 403;
      res.writeHead(status, { 'content-type': 'application/json', 'x-error-code': 'Whatever', 'x-echo': said });
      res.end(JSON.stringify({ error: said, detail: { nested: [said] } }));
      return true;
    });
    const failing = [
      () => resolveRepoFiles(REPO, GROUPS, { endpoint: echo.url, cacheDir, token: SECRET }),
      () => resolveRepoFiles(REPO, GROUPS, { endpoint: echo.url, cacheDir, token: SECRET, revision: 'other' }),
      // a transport failure whose cause holds the header value (as an invalid-header error would)
      () => resolveRepoFiles(REPO, GROUPS, {
        endpoint: echo.url, cacheDir, token: SECRET,
        fetch: async (url, init) => { throw new TypeError('fetch failed', { cause: Object.assign(new Error(`bad header ${new Headers(init.headers).get('authorization')}`), { code: 'ECONNRESET', header: SECRET }) }); },
      }),
    ];
    for (const start of failing) {
      const err = await rejection(start());
      assert.ok(err instanceof HdlmError, String(err));
      const everything = [util.inspect(err, { showHidden: true, depth: 30 }), JSON.stringify(err), String(err.stack)];
      for (let c = err.cause; c; c = c.cause) everything.push(util.inspect(c, { showHidden: true, depth: 30 }), String(c.stack), JSON.stringify(c) ?? '');
      for (const text of everything) {
        assert.ok(!text.includes(SECRET) && !text.includes(encodeURIComponent(SECRET)), `token in: ${text.slice(0, 2000)}`);
      }
    }
    // the command line with HDLM_DEBUG=1 prints stacks and causes
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli', 'main.js'), 'download', REPO, '--token', SECRET], {
      env: { ...process.env, HDLM_DEBUG: '1', HF_ENDPOINT: echo.url, HF_HUB_CACHE: cacheDir }, encoding: 'utf8', timeout: 30000,
    });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /caused by|HTTP/);
    assert.ok(!r.stderr.includes(SECRET) && !r.stdout.includes(SECRET), r.stderr);
  });

  it('a body longer than the declared size is cut off at that size; nothing is left in the cache', async () => {
    const endless = await front(async (req, res) => {
      if (!req.url.startsWith('/cdn/') || req.headers.range) return false;
      res.writeHead(200, { 'content-type': 'application/octet-stream' }); // no length: it never ends
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = () => { while (!res.destroyed && res.write(chunk)); if (!res.destroyed) res.once('drain', pump); };
      pump();
      return true;
    });
    endless.rewrite = (loc) => loc.replace(hub.url, endless.url);
    const t0 = Date.now();
    const err = await rejection(resolveRepoFiles(REPO, GROUPS, { endpoint: endless.url, cacheDir, token: SECRET }));
    assert.equal(err.code, 'HDLM_HUB', err.message);
    assert.match(err.message, /more than the 5000 bytes/);
    assert.ok(Date.now() - t0 < 10000);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(endless.sent < 16 * 1024 * 1024, `the server could send ${endless.sent} bytes`);
    assert.deepEqual(incomplete(), []);
    assert.ok(!fs.existsSync(path.join(blobsDir(), hub.blobEtag(REPO, 'model.safetensors'))));
  });

  const trickle = (everyMs) => async (req, res) => {
    if (!req.url.startsWith('/cdn/') || req.headers.range) return false;
    res.writeHead(200, { 'content-length': String(WEIGHTS.length) });
    let i = 0;
    const timer = setInterval(() => {
      if (res.destroyed || i >= WEIGHTS.length) return clearInterval(timer);
      res.write(WEIGHTS.subarray(i, i + 1));
      i++;
    }, everyMs);
    res.on('close', () => clearInterval(timer));
    return true;
  };

  it('a body that stalls (a byte every 300 ms, HF_HUB_DOWNLOAD_TIMEOUT=0.2) stops at the idle timeout', async () => {
    process.env.HF_HUB_DOWNLOAD_TIMEOUT = '0.2';
    const slow = await front(trickle(300));
    slow.rewrite = (loc) => loc.replace(hub.url, slow.url);
    const t0 = Date.now();
    const err = await rejection(resolveRepoFiles(REPO, GROUPS, { endpoint: slow.url, cacheDir, token: SECRET }));
    assert.equal(err.code, 'HDLM_HUB', err.message);
    assert.match(err.message, /HF_HUB_DOWNLOAD_TIMEOUT/);
    assert.ok(Date.now() - t0 < 5000, `${Date.now() - t0} ms`);
    assert.deepEqual(incomplete(), []);
  });

  it('a body that trickles just fast enough to never be idle stops at the total limit', async () => {
    process.env.HF_HUB_DOWNLOAD_TIMEOUT = '0.4'; // limit: 6 × 0.4 s + 5000 B at 32 KiB/s ≈ 2.55 s
    const slow = await front(trickle(50));
    slow.rewrite = (loc) => loc.replace(hub.url, slow.url);
    const t0 = Date.now();
    const err = await rejection(resolveRepoFiles(REPO, GROUPS, { endpoint: slow.url, cacheDir, token: SECRET }));
    const ms = Date.now() - t0;
    assert.equal(err.code, 'HDLM_HUB', err.message);
    assert.match(err.message, /took more than 3 s/);
    assert.ok(ms >= 2400 && ms < 8000, `${ms} ms`);
    assert.deepEqual(incomplete(), []);
  });

  it('an API answer that never comes, or never ends, is bounded (HF_HUB_ETAG_TIMEOUT, size cap)', async () => {
    process.env.HF_HUB_ETAG_TIMEOUT = '0.3';
    const silent = await front(async (req) => req.url.startsWith('/api/'));
    const t0 = Date.now();
    let err = await rejection(resolveRepoFiles(REPO, GROUPS, { endpoint: silent.url, cacheDir, token: SECRET }));
    assert.equal(err.code, 'HDLM_HUB');
    assert.match(err.message, /timeout|HF_HUB_ETAG_TIMEOUT/);
    assert.ok(Date.now() - t0 < 5000);
    delete process.env.HF_HUB_ETAG_TIMEOUT;
    const endlessJson = await front(async (req, res) => {
      if (!req.url.includes('/paths-info/')) return false;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('[');
      const chunk = Buffer.from('{"type":"file","path":"x","oid":"0","size":1},'.repeat(1000));
      const pump = () => { while (!res.destroyed && res.write(chunk)); if (!res.destroyed) res.once('drain', pump); };
      pump();
      return true;
    });
    err = await rejection(resolveRepoFiles(REPO, GROUPS, { endpoint: endlessJson.url, cacheDir, token: SECRET }));
    assert.equal(err.code, 'HDLM_HUB');
    assert.match(err.message, /larger than 33554432 bytes/);
    assert.ok(endlessJson.sent < 64 * 1024 * 1024);
  });

  it('signal: a download, smartModelLoader and a Hub dataset load stop with an AbortError, leaving no partial file', async () => {
    const slow = await front(trickle(20));
    slow.rewrite = (loc) => loc.replace(hub.url, slow.url);
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('user stop')), 300);
    const t0 = Date.now();
    let err = await rejection(resolveRepoFiles(REPO, GROUPS, { endpoint: slow.url, cacheDir, token: SECRET, signal: ac.signal }));
    assert.ok(err instanceof AbortError, String(err && err.stack));
    assert.equal(err.code, 'HDLM_ABORTED');
    assert.ok(Date.now() - t0 < 3000);
    assert.deepEqual(incomplete(), []);

    const ac2 = new AbortController();
    setTimeout(() => ac2.abort(), 300);
    err = await rejection(smartModelLoader(REPO, { endpoint: slow.url, cacheDir, token: SECRET, signal: ac2.signal, device: 'cpu' }));
    assert.ok(err instanceof AbortError, String(err && err.stack));
    assert.deepEqual(incomplete(), []);

    err = await rejection(loadHubDataset('hf:test-org/ds/data/train.parquet', { endpoint: hub.url, cacheDir, signal: AbortSignal.abort() }));
    assert.ok(err instanceof AbortError, String(err && err.stack));
    err = await rejection(resolveDatasetFiles('test-org/ds', [{ names: ['data/train.parquet'] }], { endpoint: hub.url, cacheDir, signal: 'no' }));
    assert.equal(err.code, 'HDLM_INVALID_ARGUMENT');
  });

  it('onProgress that throws stops the download with HDLM_CALLBACK and leaves nothing behind', async () => {
    const err = await rejection(resolveRepoFiles(REPO, GROUPS, {
      endpoint: hub.url, cacheDir, token: SECRET, onProgress: (e) => { if (e.loaded > 0) throw new Error('progress bar broke'); },
    }));
    assert.equal(err.code, 'HDLM_CALLBACK', err.message);
    assert.equal(err.cause.message, 'progress bar broke');
    assert.deepEqual(incomplete(), []);
  });

  it('temp files of interrupted downloads: a dead process\'s are removed at once, a live one\'s kept, an old one\'s removed', async () => {
    const etag = hub.blobEtag(REPO, 'model.safetensors');
    fs.mkdirSync(blobsDir(), { recursive: true });
    const host = crypto.createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const deadPid = Number(dead.stdout.trim());
    const names = {
      dead: `other.${host}-${deadPid}-aaaaaaaaaaaa.incomplete`,
      live: `other.${host}-${process.ppid}-bbbbbbbbbbbb.incomplete`,
      otherHost: `other.0000abcd-${deadPid}-cccccccccccc.incomplete`,
      old: `${etag}.12345-deadbeef.incomplete`,
    };
    for (const n of Object.values(names)) fs.writeFileSync(path.join(blobsDir(), n), 'partial');
    const old = new Date(Date.now() - 2 * 3600 * 1000);
    fs.utimesSync(path.join(blobsDir(), names.old), old, old);
    await resolveRepoFiles(REPO, GROUPS, { endpoint: hub.url, cacheDir, token: SECRET });
    assert.deepEqual(incomplete().sort(), [names.live, names.otherHost].sort());
  });
});
