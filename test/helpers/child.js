'use strict';
/**
 * Runs risky work in a child Node process, so that a native crash shows up as a test failure
 * (exit signal, exit code, stderr) instead of killing mocha. The child script prints one JSON
 * line prefixed with RESULT: — `runChild` parses it.
 */
const { spawn } = require('child_process');
const path = require('path');

const ROOT = path.join(__dirname, '..', '..');

/**
 * @param {string} code  JavaScript run with `node -e` in the repository root (can `require('./dist')`)
 * @param {{ args?: string[], env?: object, timeoutMs?: number, nodeArgs?: string[] }} [opts]
 * @returns {Promise<{ code: number|null, signal: string|null, stdout: string, stderr: string, result: any }>}
 */
function runChild(code, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), '-e', code, '--', ...(opts.args ?? [])], {
      cwd: ROOT,
      env: { ...process.env, ...(opts.env ?? {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 110000);
    child.on('error', reject);
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      const line = stdout.split('\n').reverse().find((l) => l.startsWith('RESULT:'));
      let result = null;
      if (line) result = JSON.parse(line.slice('RESULT:'.length));
      resolve({ code: exitCode, signal, stdout, stderr, result });
    });
  });
}

/** Asserts the child ended by itself with `expectedCode`, no signal and no native abort message. */
function assertCleanExit(assert, r, expectedCode = 0) {
  const info = `exit ${r.code} signal ${r.signal}\n--- stderr ---\n${r.stderr.slice(-3000)}\n--- stdout ---\n${r.stdout.slice(-2000)}`;
  assert.strictEqual(r.signal, null, `child killed by a signal: ${info}`);
  assert.strictEqual(r.code, expectedCode, `unexpected exit code: ${info}`);
  assert.doesNotMatch(r.stderr, /Segmentation fault|terminate called|Aborted|FATAL ERROR|double free|corrupted/, info);
}

module.exports = { runChild, assertCleanExit, ROOT };
