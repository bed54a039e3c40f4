'use strict';
// Model work runs on the addon's own threads: long samples do not occupy libuv's small shared
// pool (4 threads by default), so fs, zlib and crypto work stays prompt while six samples run.
// (With the work on libuv's pool this test never finishes: the file reads would wait for a
// sample to end, and these samples only end when aborted.)
const assert = require('assert');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const { promisify } = require('util');
const { smartModelLoader, fullDiff, runtimeInfo } = require('../dist');
const { DEMO_MODEL, tempDir } = require('./helpers/reference');

describe("thread pool: sampling does not starve libuv's pool", function () {
  let cache;
  let model;

  before(async () => {
    cache = tempDir('pool');
    ({ model } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache }));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  it('reports the worker threads it owns', () => {
    assert.ok(runtimeInfo().workerThreads >= 1);
  });

  it('file reads, gzip and pbkdf2 complete while six long samples are running', async function () {
    this.timeout(60000);
    const poolSize = Number(process.env.UV_THREADPOOL_SIZE || 4);
    const n = Math.max(6, poolSize + 2);
    const controllers = Array.from({ length: n }, () => new AbortController());
    const started = new Set();
    let allStarted;
    const running = new Promise((r) => (allStarted = r));
    let settledEarly = 0;
    const samples = controllers.map((c, k) =>
      fullDiff({
        model, steps: 1_000_000, contextLength: 16, seed: k, signal: c.signal,
        onStep: () => { started.add(k); if (started.size >= Math.min(2, runtimeInfo().workerThreads ?? 2)) allStarted(); },
      }).finally(() => settledEarly++),
    );
    await running;
    const file = path.join(DEMO_MODEL, 'config.json');
    for (let i = 0; i < 20; i++) {
      const text = await fs.promises.readFile(file, 'utf8');
      assert.ok(text.length > 10);
    }
    await Promise.all(Array.from({ length: 8 }, () => promisify(zlib.gzip)(Buffer.alloc(1 << 16, 7))));
    await Promise.all(Array.from({ length: 4 }, () => promisify(crypto.pbkdf2)('pw', 'salt', 1000, 32, 'sha256')));
    // every sample was still running (none ended) while the pool work above completed
    assert.strictEqual(settledEarly, 0);
    assert.strictEqual(model.pendingCalls, n);
    for (const c of controllers) c.abort();
    const results = await Promise.allSettled(samples);
    assert.ok(results.every((r) => r.status === 'rejected' && r.reason.name === 'AbortError'));
  });
});
