'use strict';
// `hdlm serve` as a process (runServeCommand in a child): SIGTERM with requests in flight
// drains them (new requests get 503, /health says draining), then the process exits 0; the
// drain timeout and a second SIGTERM abort what still runs. In-process: flag errors, --help, a
// port in use, a model that fails to load.
const assert = require('assert');
const fs = require('fs');
const net = require('net');
const { spawn } = require('child_process');
const { runServeCommand, SERVE_HELP } = require('../dist/server');
const { ROOT, DEMO_MODEL, tempDir } = require('./helpers/reference');
const { postJson, sseReader, waitFor, MODEL_ID } = require('./helpers/server');

const CHILD = `
const { runServeCommand } = require('./dist/server');
runServeCommand(process.argv.slice(1)).then(
  (code) => { process.exitCode = code; },
  (e) => { console.error('ERROR ' + e.code + ': ' + e.message); process.exitCode = e.code === 'HDLM_INVALID_ARGUMENT' ? 2 : 1; },
);`;

/** Spawns the server; resolves once it is ready, with its URL and a promise of its exit. */
async function spawnServer(args, cache) {
  const child = spawn(process.execPath, ['-e', CHILD, '--', '--model', DEMO_MODEL, '--device', 'cpu', '--port', '0', '--steps', '4', ...args], {
    cwd: ROOT,
    env: { ...process.env, HDLM_CACHE: cache },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stderr, stdout })));
  const killer = setTimeout(() => child.kill('SIGKILL'), 100000);
  exited.then(() => clearTimeout(killer));
  const url = await new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /ready: .* at (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (m) resolve(m[1]);
    });
    exited.then((r) => reject(new Error(`the server exited before it was ready: ${r.code} ${r.signal}\n${stderr}`)));
  });
  return { child, url, exited, stderr: () => stderr };
}

function stream(url, body) {
  const controller = new AbortController();
  const res = fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }), signal: controller.signal,
  });
  return { res, abort: () => controller.abort() };
}

async function readAll(reader) {
  const events = [];
  for (let e = await reader.next(); e; e = await reader.next()) events.push(e);
  return events;
}

function assertCleanExit(r, code = 0) {
  const info = `exit ${r.code} signal ${r.signal}\n${r.stderr}`;
  assert.strictEqual(r.signal, null, info);
  assert.strictEqual(r.code, code, info);
  assert.doesNotMatch(r.stderr, /Segmentation fault|terminate called|Aborted \(core|FATAL ERROR|UnhandledPromiseRejection|at .*\.js:\d+/, info);
}

describe('server: shutdown (child process)', function () {
  let cache;
  before(() => {
    cache = tempDir('serve-exit');
  });
  after(() => fs.rmSync(cache, { recursive: true, force: true }));

  it('SIGTERM: requests in flight finish, new ones get 503, /health says draining, then exit 0', async () => {
    const srv = await spawnServer([], cache);
    const body = { model: MODEL_ID, prompt: 'The city of', max_tokens: 8, steps: 250, seed: 4 };
    const s = stream(srv.url, { ...body, denoise: { every: 1 } });
    const reader = sseReader(await s.res);
    assert.strictEqual((await reader.next()).event, 'denoise');
    const plain = postJson(`${srv.url}/v1/completions`, body);
    await new Promise((r) => setTimeout(r, 50));
    srv.child.kill('SIGTERM');
    await waitFor(async () => (await fetch(`${srv.url}/health`)).status === 503, 10000, '/health to say draining');
    const health = await fetch(`${srv.url}/health`);
    assert.strictEqual((await health.json()).status, 'draining');
    assert.ok(Number(health.headers.get('retry-after')) >= 1);
    const refused = await postJson(`${srv.url}/v1/completions`, body);
    assert.strictEqual(refused.status, 503);
    assert.strictEqual(refused.body.error.code, 'server_shutting_down');
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    // both in-flight requests complete normally
    const events = await readAll(reader);
    assert.strictEqual(events[events.length - 1].data, '[DONE]');
    const text = events.filter((e) => e.event === null && e.data !== '[DONE]').map((e) => e.data.choices[0].text).join('');
    const done = await plain;
    assert.strictEqual(done.status, 200);
    assert.strictEqual(done.body.choices[0].text, text, 'the same request streamed and not');
    const r = await srv.exited;
    assertCleanExit(r);
    assert.match(r.stderr, /SIGTERM: draining \(2 running, 0 queued\)/);
    assert.match(r.stderr, /stopped/);
    await assert.rejects(fetch(`${srv.url}/health`), /fetch failed/);
  });

  it('the drain timeout aborts what still runs (the stream ends with a 503 error event), then exit 0', async () => {
    const srv = await spawnServer(['--drain-timeout', '1'], cache);
    const s = stream(srv.url, { model: MODEL_ID, prompt: 'x', max_tokens: 8, steps: 4000, denoise: { every: 1 } });
    const reader = sseReader(await s.res);
    await reader.next();
    const t0 = Date.now();
    srv.child.kill('SIGTERM');
    const events = await readAll(reader);
    const last = events[events.length - 1];
    assert.strictEqual(last.data.error.code, 'server_shutting_down');
    assert.strictEqual(last.data.error.type, 'unavailable_error');
    const r = await srv.exited;
    assertCleanExit(r);
    assert.ok(Date.now() - t0 < 15000);
    assert.match(r.stderr, /drain timeout/);
  });

  it('a second SIGTERM aborts at once', async () => {
    const srv = await spawnServer([], cache);
    const s = stream(srv.url, { model: MODEL_ID, prompt: 'x', max_tokens: 8, steps: 4000, denoise: { every: 1 } });
    const reader = sseReader(await s.res);
    await reader.next();
    srv.child.kill('SIGTERM');
    await waitFor(() => /draining/.test(srv.stderr()), 10000, 'draining');
    srv.child.kill('SIGTERM');
    const events = await readAll(reader);
    assert.strictEqual(events[events.length - 1].data.error.code, 'server_shutting_down');
    const r = await srv.exited;
    assertCleanExit(r);
    assert.match(r.stderr, /SIGTERM again: aborting/);
  });

  it('a usage error exits 2 with a message naming the flag, before listening', async () => {
    const child = spawn(process.execPath, ['-e', CHILD, '--', '--port', 'http'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.strictEqual(code, 2, stderr);
    assert.match(stderr, /ERROR HDLM_INVALID_ARGUMENT: Expected a non-negative integer for --port but received "http"/);
  });
});

describe('server: runServeCommand in process', function () {
  it('--help prints the usage and returns 0 without starting anything', async () => {
    let out = '';
    assert.strictEqual(await runServeCommand(['--help'], { stdout: (t) => (out += t) }), 0);
    assert.strictEqual(out, SERVE_HELP + '\n');
    assert.match(out, /--api-key <key>/);
    assert.match(out, /default 127\.0\.0\.1/);
  });

  it('a port in use and a model that fails to load are clear errors (and nothing is left listening)', async () => {
    const sigterm = process.listenerCount('SIGTERM');
    const blocker = net.createServer();
    await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
    const port = blocker.address().port;
    try {
      await assert.rejects(runServeCommand(['--port', String(port), '--device', 'cpu']), /cannot listen on 127\.0\.0\.1:\d+: the port is in use/);
    } finally {
      blocker.close();
    }
    const cache = tempDir('serve-bad');
    try {
      const missing = '/nonexistent/hdlm-model-dir';
      await assert.rejects(runServeCommand(['--model', missing, '--port', String(port), '--device', 'cpu']), (e) => e.code && e.code.startsWith('HDLM_'));
      // the port is free again
      const again = net.createServer();
      await new Promise((resolve, reject) => again.once('error', reject).listen(port, '127.0.0.1', resolve));
      again.close();
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
    assert.strictEqual(process.listenerCount('SIGTERM'), sigterm, 'signal handlers removed');
  });
});
