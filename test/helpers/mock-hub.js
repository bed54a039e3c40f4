'use strict';
/**
 * A tiny in-memory Hugging Face Hub on 127.0.0.1 (random port), implementing the endpoints
 * @huggingface/hub calls for lib/hub.ts:
 *
 *   GET  /api/models/<repo>/revision/<rev>          model info (sha = commit)
 *   POST /api/models/<repo>/paths-info/<rev>        {paths, expand} -> [{type, path, oid, size, lfs?}]
 *   GET|HEAD /<repo>/resolve/<rev>/<file>           content (Range supported); LFS files 302 to /cdn/<sha256>
 *   GET|HEAD /cdn/<sha256>                          LFS content (like the CDN: no auth needed)
 *
 * and the same for dataset repos (`datasets` option): /api/datasets/<repo>/revision/<rev>,
 * /api/datasets/<repo>/paths-info/<rev>, /datasets/<repo>/resolve/<rev>/<file>, plus the tree API
 * GET /api/(models|datasets)/<repo>/tree/<rev>[/<path>] (non-recursive listing). Revisions with a
 * slash (refs/convert/parquet) arrive URL-encoded, as the Hub expects them.
 *
 * with the headers the real Hub sends (x-repo-commit, etag, x-linked-etag, x-linked-size,
 * content-range, x-error-code: RepoNotFound / RevisionNotFound / EntryNotFound).
 *
 * startMockHub({ repos, datasets, tokens }) where
 *   repos = { 'owner/name': { files: { name: string|Buffer }, branches?: { name: files }, private?: bool, lfs?: string[] } }
 *   datasets = the same for dataset repos
 *   tokens = valid bearer tokens (default ['good-token'])
 * resolves to { url, requests, close(), commitOf(repo, branch), blobEtag(repo, file, branch),
 *               interruptNext(repo, file, count, branch) } (dataset repos: 'datasets/owner/name').
 */
const http = require('node:http');
const crypto = require('node:crypto');

const LFS_EXT = /\.(safetensors|bin|pt|pth|ckpt|onnx|gguf|msgpack|h5|npz|parquet)$/;

function sha1(buf) {
  return crypto.createHash('sha1').update(buf).digest('hex');
}
function sha256(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}
function gitBlobOid(buf) {
  return sha1(Buffer.concat([Buffer.from(`blob ${buf.length}\0`), buf]));
}
function lfsPointer(buf) {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(buf)}\nsize ${buf.length}\n`);
}

function buildRepo(id, spec) {
  const branches = { main: spec.files || {}, ...(spec.branches || {}) };
  const lfsNames = spec.lfs ? new Set(spec.lfs) : null;
  const isLfs = (name) => (lfsNames ? lfsNames.has(name) : LFS_EXT.test(name));
  const commits = new Map(); // sha -> { files: Map(name -> entry) }
  const refs = new Map(); // branch -> sha
  for (const [branch, files] of Object.entries(branches)) {
    const entries = new Map();
    for (const [name, content] of Object.entries(files)) {
      const buf = Buffer.isBuffer(content) ? content : Buffer.from(String(content));
      const lfs = isLfs(name);
      const pointer = lfs ? lfsPointer(buf) : null;
      entries.set(name, {
        name,
        content: buf,
        lfs,
        sha256: sha256(buf),
        oid: gitBlobOid(lfs ? pointer : buf),
        pointerSize: pointer ? pointer.length : undefined,
      });
    }
    const fingerprint = [...entries.values()].map((e) => `${e.name}:${e.oid}`).sort().join('\n');
    const sha = sha1(`${id}\n${branch}\n${fingerprint}`);
    commits.set(sha, { files: entries });
    refs.set(branch, sha);
  }
  return { id, private: !!spec.private, commits, refs };
}

async function startMockHub({ repos = {}, datasets = {}, tokens = ['good-token'] } = {}) {
  const state = new Map(); // 'owner/name' for models, 'datasets/owner/name' for datasets
  for (const [id, spec] of Object.entries(repos)) state.set(id, buildRepo(id, spec));
  for (const [id, spec] of Object.entries(datasets)) state.set(`datasets/${id}`, buildRepo(id, spec));
  const keyOf = (kind, id) => (kind === 'datasets' ? `datasets/${id}` : id);
  const validTokens = new Set(tokens);
  const requests = [];
  const interrupts = new Map(); // sha256 of content -> remaining count
  let base = '';

  function sendJson(res, status, body, headers = {}) {
    const data = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': data.length, ...headers });
    res.end(data);
  }
  function sendError(res, status, code, message) {
    sendJson(res, status, { error: message }, code ? { 'x-error-code': code } : {});
  }

  /** Auth + repo lookup; sends the error and returns null on failure. */
  function repoFor(req, res, id) {
    const auth = req.headers.authorization;
    let authed = false;
    if (auth !== undefined) {
      const m = /^Bearer (.+)$/.exec(auth);
      if (!m || !validTokens.has(m[1])) {
        sendError(res, 401, null, 'Invalid credentials in Authorization header');
        return null;
      }
      authed = true;
    }
    const repo = state.get(id);
    if (!repo) {
      sendError(res, 404, 'RepoNotFound', 'Repository not found');
      return null;
    }
    if (repo.private && !authed) {
      sendError(res, 401, 'RepoNotFound', 'Repository not found');
      return null;
    }
    return repo;
  }

  function commitFor(res, repo, rev) {
    const sha = repo.commits.has(rev) ? rev : repo.refs.get(rev);
    if (!sha) {
      sendError(res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      return null;
    }
    return sha;
  }

  function sendContent(req, res, entry, headers) {
    const buf = entry.content;
    const common = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes', ...headers };
    const range = req.headers.range;
    const m = range && /^bytes=(\d+)-(\d*)$/.exec(range);
    if (m) {
      const start = Number(m[1]);
      const end = m[2] === '' ? buf.length - 1 : Math.min(Number(m[2]), buf.length - 1);
      if (start >= buf.length || start > end) {
        res.writeHead(416, { ...common, 'content-range': `bytes */${buf.length}` });
        res.end();
        return;
      }
      const part = buf.subarray(start, end + 1);
      res.writeHead(206, { ...common, 'content-range': `bytes ${start}-${end}/${buf.length}`, 'content-length': part.length });
      res.end(req.method === 'HEAD' ? undefined : part);
      return;
    }
    res.writeHead(200, { ...common, 'content-length': buf.length });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const left = interrupts.get(entry.sha256) || 0;
    if (left > 0) {
      interrupts.set(entry.sha256, left - 1);
      // Half the body, then the connection dies (content-length promised more).
      res.write(buf.subarray(0, Math.floor(buf.length / 2)), () => {
        setTimeout(() => res.socket && res.socket.destroy(), 10);
      });
      return;
    }
    res.end(buf);
  }

  function findBySha256(hash) {
    for (const repo of state.values()) {
      for (const c of repo.commits.values()) {
        for (const e of c.files.values()) if (e.sha256 === hash) return e;
      }
    }
    return null;
  }

  async function readBody(req) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    return Buffer.concat(chunks).toString('utf8');
  }

  async function handle(req, res) {
    const u = new URL(req.url, base);
    const p = u.pathname;
    requests.push({
      method: req.method,
      path: p,
      url: req.url,
      range: req.headers.range,
      authorization: req.headers.authorization,
    });
    let m;
    if ((m = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/tree\/([^/]+)(?:\/(.*))?$/.exec(p)) && req.method === 'GET') {
      const repo = repoFor(req, res, keyOf(m[1], decodeURIComponent(m[2])));
      if (!repo) return;
      const sha = commitFor(res, repo, decodeURIComponent(m[3]));
      if (!sha) return;
      const dir = m[4] ? decodeURIComponent(m[4]).replace(/\/+$/, '') : '';
      const prefix = dir === '' ? '' : `${dir}/`;
      const files = repo.commits.get(sha).files;
      const out = [];
      const dirs = new Set();
      for (const e of files.values()) {
        if (!e.name.startsWith(prefix)) continue;
        const rest = e.name.slice(prefix.length);
        if (rest.includes('/')) {
          dirs.add(prefix + rest.split('/')[0]);
          continue;
        }
        out.push({
          type: 'file',
          path: e.name,
          oid: e.oid,
          size: e.lfs ? e.content.length : e.content.length,
          ...(e.lfs ? { lfs: { oid: e.sha256, size: e.content.length, pointerSize: e.pointerSize } } : {}),
        });
      }
      if (out.length === 0 && dirs.size === 0 && dir !== '') {
        sendError(res, 404, 'EntryNotFound', `${dir} does not exist on "${m[3]}"`);
        return;
      }
      sendJson(res, 200, [...[...dirs].sort().map((d) => ({ type: 'directory', path: d, oid: sha1(d), size: 0 })), ...out]);
      return;
    }
    if ((m = /^\/api\/(models|datasets)\/(.+)\/revision\/([^/]+)$/.exec(p)) && (req.method === 'GET' || req.method === 'HEAD')) {
      const repo = repoFor(req, res, keyOf(m[1], decodeURIComponent(m[2])));
      if (!repo) return;
      const sha = commitFor(res, repo, decodeURIComponent(m[3]));
      if (!sha) return;
      const files = repo.commits.get(sha).files;
      sendJson(res, 200, {
        _id: sha1(repo.id).slice(0, 24),
        id: repo.id,
        modelId: repo.id,
        private: repo.private,
        gated: false,
        disabled: false,
        downloads: 0,
        likes: 0,
        lastModified: '2024-01-01T00:00:00.000Z',
        sha,
        siblings: [...files.keys()].map((rfilename) => ({ rfilename })),
      });
      return;
    }
    if ((m = /^\/api\/(models|datasets)\/(.+)\/paths-info\/([^/]+)$/.exec(p)) && req.method === 'POST') {
      const body = await readBody(req);
      const repo = repoFor(req, res, keyOf(m[1], decodeURIComponent(m[2])));
      if (!repo) return;
      const sha = commitFor(res, repo, decodeURIComponent(m[3]));
      if (!sha) return;
      let paths;
      try {
        paths = JSON.parse(body).paths;
      } catch {
        sendError(res, 400, null, 'Bad request body');
        return;
      }
      const files = repo.commits.get(sha).files;
      const out = [];
      for (const name of Array.isArray(paths) ? paths : [paths]) {
        const e = files.get(name);
        if (!e) continue;
        out.push({
          type: 'file',
          path: e.name,
          oid: e.oid,
          size: e.lfs ? e.pointerSize : e.content.length,
          ...(e.lfs ? { lfs: { oid: e.sha256, size: e.content.length, pointerSize: e.pointerSize } } : {}),
        });
      }
      sendJson(res, 200, out);
      return;
    }
    if ((m = /^\/(datasets\/)?([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(p)) && (req.method === 'GET' || req.method === 'HEAD')) {
      const repo = repoFor(req, res, keyOf(m[1] ? 'datasets' : 'models', decodeURIComponent(m[2])));
      if (!repo) return;
      const sha = commitFor(res, repo, decodeURIComponent(m[3]));
      if (!sha) return;
      const entry = repo.commits.get(sha).files.get(decodeURIComponent(m[4]));
      if (!entry) {
        sendError(res, 404, 'EntryNotFound', 'Entry not found');
        return;
      }
      if (entry.lfs) {
        res.writeHead(302, {
          location: `${base}/cdn/${entry.sha256}`,
          'x-repo-commit': sha,
          etag: `"${entry.oid}"`,
          'x-linked-etag': `"${entry.sha256}"`,
          'x-linked-size': String(entry.content.length),
          'content-length': 0,
        });
        res.end();
        return;
      }
      sendContent(req, res, entry, { 'x-repo-commit': sha, etag: `"${entry.oid}"` });
      return;
    }
    if ((m = /^\/cdn\/([0-9a-f]{64})$/.exec(p)) && (req.method === 'GET' || req.method === 'HEAD')) {
      const entry = findBySha256(m[1]);
      if (!entry) {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('NoSuchKey');
        return;
      }
      sendContent(req, res, entry, { etag: `"${entry.sha256}"` });
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('Not found');
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) sendError(res, 500, null, String(err && err.message));
      else res.destroy();
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  base = `http://127.0.0.1:${server.address().port}`;

  function entryOf(repoId, file, branch = 'main') {
    const repo = state.get(repoId);
    if (!repo) throw new Error(`mock hub: no repo ${repoId}`);
    const e = repo.commits.get(repo.refs.get(branch) || branch)?.files.get(file);
    if (!e) throw new Error(`mock hub: no file ${file} in ${repoId}@${branch}`);
    return e;
  }

  let closed = false;
  return {
    url: base,
    requests,
    /** commit sha a branch of a repo points at */
    commitOf(repoId, branch = 'main') {
      return state.get(repoId).refs.get(branch);
    },
    /** the etag Python's cache names the blob by: sha256 for LFS files, git blob id otherwise */
    blobEtag(repoId, file, branch = 'main') {
      const e = entryOf(repoId, file, branch);
      return e.lfs ? e.sha256 : e.oid;
    },
    /** the next `count` full downloads of that file send half the body, then drop the connection */
    interruptNext(repoId, file, count = 1, branch = 'main') {
      interrupts.set(entryOf(repoId, file, branch).sha256, count);
    },
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

module.exports = { startMockHub, gitBlobOid, sha256 };
