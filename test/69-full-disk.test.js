'use strict';
// A full disk while a TorchScript module is written is an error, never an abort: the cache write
// of smartModelLoader goes on without the cache (the model works), exportTorchScript and
// `hdlm export` fail with HDLM_IO; no temp file is left. Temp files of dead processes are removed.
// The full disk is a small tmpfs, mounted when the tests run as root (else skipped with a reason).
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync, spawnSync } = require('child_process');
const { runChild, assertCleanExit, ROOT } = require('./helpers/child');
const { DEMO_MODEL, tempDir } = require('./helpers/reference');
const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const TEMP = /\.tmp-\d+-[0-9a-f]+$/;

/** Every file under `dir`, relative. */
function filesUnder(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(path.relative(dir, p));
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out.sort();
}

/** A pid that belonged to a process which has exited. */
function deadPid() {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

/** Mounts a tmpfs of `bytes` at a new folder; null with the reason when that is not possible. */
function mountTmpfs(bytes) {
  if (!isRoot) return { dir: null, reason: 'not root: mounting a small tmpfs needs root' };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-fulldisk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (e) {
    fs.rmdirSync(dir);
    return { dir: null, reason: `mount -t tmpfs failed (${String(e.stderr || e.message).trim()})` };
  }
  return { dir, reason: null };
}

function unmount(dir) {
  if (!dir) return;
  try {
    execFileSync('umount', [dir], { stdio: 'pipe' });
  } catch {
    execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
  }
  fs.rmdirSync(dir);
}

/** Fills `dir` so that only about `free` bytes remain. */
function fillUpTo(dir, free) {
  const filler = path.join(dir, 'filler');
  fs.rmSync(filler, { force: true });
  const { bavail, bsize } = fs.statfsSync(dir);
  const size = Math.max(0, bavail * bsize - free);
  const fd = fs.openSync(filler, 'w');
  const chunk = Buffer.alloc(1 << 20, 1);
  let left = size;
  try {
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      fs.writeSync(fd, chunk, 0, n);
      left -= n;
    }
  } catch (e) {
    if (e.code !== 'ENOSPC') throw e;
  } finally {
    fs.closeSync(fd);
  }
}

describe('full disk: TorchScript writes fail cleanly', function () {
  this.timeout(300000);
  let mnt = null;
  let skipReason = null;
  let tmp;
  before(function () {
    tmp = tempDir('fulldisk');
    // the demo model's module is about 27 MB: it cannot fit
    const m = mountTmpfs(8 * 1024 * 1024);
    mnt = m.dir;
    skipReason = m.reason;
  });
  after(() => {
    unmount(mnt);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  const needsTmpfs = (ctx) => {
    if (!mnt) {
      console.log(`      skipped: ${skipReason}`);
      ctx.skip();
    }
  };

  it('smartModelLoader on a full cache disk loads without the cache (for several amounts of free space), leaving no temp file', async function () {
    needsTmpfs(this);
    for (const free of [0, 4096, 300 * 1024, 3 * 1024 * 1024]) {
      const cache = path.join(mnt, `c${free}`);
      fs.mkdirSync(cache);
      fillUpTo(mnt, free);
      const r = await runChild(`
const { smartModelLoader } = require('./dist');
(async () => {
  const { model } = await smartModelLoader(${JSON.stringify(DEMO_MODEL)}, { device: 'cpu', torchscriptCacheDir: ${JSON.stringify(cache)} });
  const out = await model.forward([[1, 2, 3]]);
  console.log('RESULT:' + JSON.stringify({ shape: out.shape, finite: out.data.every(Number.isFinite) }));
})();`);
      assertCleanExit(assert, r, 0);
      assert.deepStrictEqual(r.result.shape, [1, 3, 50258], `free ${free}`);
      assert.ok(r.result.finite);
      const files = filesUnder(cache);
      assert.deepStrictEqual(files.filter((f) => TEMP.test(f)), [], `temp files left with ${free} bytes free: ${files}`);
      assert.deepStrictEqual(files.filter((f) => f.endsWith('.pt') || f.endsWith('.seal')), [], `no entry without room: ${files}`);
      fs.rmSync(cache, { recursive: true, force: true });
    }
    fs.rmSync(path.join(mnt, 'filler'), { force: true });
  });

  it('exportTorchScript to a full disk rejects with HDLM_IO and leaves nothing; `hdlm export` exits with an error, not an abort', async function () {
    needsTmpfs(this);
    fs.rmSync(path.join(mnt, 'filler'), { force: true });
    const target = path.join(mnt, 'out', 'demo.pt');
    const r = await runChild(`
const { exportTorchScript } = require('./dist');
exportTorchScript(${JSON.stringify(DEMO_MODEL)}, ${JSON.stringify(target)}, { device: 'cpu' }).then(
  () => console.log('RESULT:' + JSON.stringify({ ok: true })),
  (e) => console.log('RESULT:' + JSON.stringify({ name: e.name, code: e.code, message: e.message })),
);`);
    assertCleanExit(assert, r, 0);
    assert.strictEqual(r.result.name, 'HdlmError', JSON.stringify(r.result));
    assert.strictEqual(r.result.code, 'HDLM_IO');
    assert.match(r.result.message, /demo\.pt/);
    assert.match(r.result.message, /No space left on device/);
    assert.deepStrictEqual(filesUnder(path.join(mnt, 'out')), []);

    const cli = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli', 'main.js'), 'export', DEMO_MODEL, target, '--device', 'cpu'], { encoding: 'utf8', timeout: 240000 });
    assert.strictEqual(cli.signal, null, cli.stderr);
    assert.notStrictEqual(cli.status, 0);
    assert.notStrictEqual(cli.status, 134, cli.stderr);
    assert.doesNotMatch(cli.stderr, /terminate called|Aborted/);
    assert.match(cli.stderr, /No space left on device/);
    assert.deepStrictEqual(filesUnder(path.join(mnt, 'out')), []);
  });

  it('removes the temp files of dead processes (cache folder and export target), keeps those of live ones', async () => {
    const ckpt = makeEpsilonCheckpoint(path.join(tmp, 'ckpt'), { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 16, vocabTokens: 20 }).dir;
    const cache = path.join(tmp, 'cache');
    const dir = path.join(cache, 'torchscript');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const dead = deadPid();
    const live = process.pid; // the test runner: alive while the child runs
    const names = {
      deadEntry: `0123456789abcdef0123456789abcdef.pt.tmp-${dead}-1a2b3c4d5e6f`,
      deadSeal: `0123456789abcdef0123456789abcdef.pt.seal.tmp-${dead}-00ff00ff00ff`,
      deadOld: `fedcba9876543210fedcba9876543210.pt.tmp-${dead}-3141592653`,
      liveEntry: `0123456789abcdef0123456789abcdef.pt.tmp-${live}-abcdefabcdef`,
      unrelated: 'notes.txt',
    };
    for (const n of Object.values(names)) fs.writeFileSync(path.join(dir, n), 'partial');
    const outDir = path.join(tmp, 'export');
    fs.mkdirSync(outDir);
    const exportNames = {
      dead: `m.pt.tmp-${dead}-abcdef012345`,
      live: `m.pt.tmp-${live}-abcdef012345`,
      otherTarget: `other.pt.tmp-${dead}-abcdef012345`,
    };
    for (const n of Object.values(exportNames)) fs.writeFileSync(path.join(outDir, n), 'partial');
    const r = await runChild(`
const { smartModelLoader, exportTorchScript } = require('./dist');
(async () => {
  const { model } = await smartModelLoader(${JSON.stringify(ckpt)}, { device: 'cpu', torchscriptCacheDir: ${JSON.stringify(cache)} });
  await model.forward([[1, 2]]);
  model.dispose();
  await exportTorchScript(${JSON.stringify(ckpt)}, ${JSON.stringify(path.join(outDir, 'm.pt'))}, { device: 'cpu' });
  console.log('RESULT:true');
})();`);
    assertCleanExit(assert, r, 0);
    const left = fs.readdirSync(dir);
    assert.ok(!left.includes(names.deadEntry) && !left.includes(names.deadSeal) && !left.includes(names.deadOld), `dead temps left: ${left}`);
    assert.ok(left.includes(names.liveEntry), `a live process's temp file was removed: ${left}`);
    assert.ok(left.includes(names.unrelated));
    assert.strictEqual(left.filter((f) => f.endsWith('.pt')).length, 1, `the entry was written: ${left}`);
    const outLeft = fs.readdirSync(outDir).sort();
    assert.deepStrictEqual(outLeft, ['m.pt', exportNames.live, exportNames.otherTarget].sort());
  });
});
