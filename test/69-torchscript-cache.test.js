'use strict';
// The TorchScript cache loads only what it wrote: entries are sealed (HMAC under the folder's
// key) and checked before libtorch sees them; planted, tampered, linked and non-regular entries
// are refused without being loaded; the folder is 0700 and ours, else the model is built without
// it; the entry name follows the weights' content, so weights rewritten in place (mtime restored)
// are not served from a stale entry.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { smartModelLoader } = require('../dist');
const { makeEpsilonCheckpoint, defaultFill } = require('./helpers/safetensors-writer');
const { runChild, assertCleanExit } = require('./helpers/child');
const { tempDir } = require('./helpers/reference');

const ARCH = { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 16, vocabTokens: 20 };
const X = [[3, 1, 4, 1, 5, 9, 2, 6]];
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

async function logitsOf(dir, cache, extra = {}) {
  const { model } = await smartModelLoader(dir, { device: 'cpu', torchscriptCacheDir: cache, ...extra });
  try {
    return Buffer.from((await model.forward(X)).data.buffer);
  } finally {
    model.dispose();
  }
}
const modulesIn = (cache) => fs.readdirSync(path.join(cache, 'torchscript')).filter((e) => e.endsWith('.pt'));
const listing = (dir) => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);

describe('TorchScript cache: sealed entries, checked folder, content keys', function () {
  this.timeout(240000);
  let tmp;
  let A;
  let B;
  let LA;
  let LB;
  before(async () => {
    tmp = tempDir('tscache');
    A = makeEpsilonCheckpoint(path.join(tmp, 'A'), ARCH).dir;
    // same architecture and config, other weights: a module of B under A's name would load fine
    B = makeEpsilonCheckpoint(path.join(tmp, 'B'), { ...ARCH, fill: (name, shape) => defaultFill(name, shape).map((x) => -x * 1.5 + 0.01) }).dir;
    LA = await logitsOf(A, null, { useCache: false });
    LB = await logitsOf(B, null, { useCache: false });
    assert.ok(!LA.equals(LB));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('creates the folder 0700 with a 0600 key; a sealed entry is reused with identical results', async () => {
    const cache = path.join(tmp, 'c-fresh', 'nested');
    assert.ok((await logitsOf(A, cache)).equals(LA));
    const dir = path.join(cache, 'torchscript');
    assert.strictEqual(fs.statSync(dir).mode & 0o777, 0o700);
    assert.strictEqual(fs.statSync(path.join(dir, '.key')).mode & 0o777, 0o600);
    const [entry] = modulesIn(cache);
    const seal = JSON.parse(fs.readFileSync(path.join(dir, `${entry}.seal`), 'utf8'));
    assert.strictEqual(seal.size, fs.statSync(path.join(dir, entry)).size);
    const before = fs.statSync(path.join(dir, entry));
    assert.ok((await logitsOf(A, cache)).equals(LA));
    const after = fs.statSync(path.join(dir, entry));
    assert.strictEqual(after.ino, before.ino, 'the sealed entry was loaded, not rebuilt');
  });

  it('a planted module under an entry name is refused and rebuilt: without a seal, with a stale seal, with a seal from another cache', async () => {
    const cacheA = path.join(tmp, 'c-plant');
    const cacheB = path.join(tmp, 'c-other');
    await logitsOf(A, cacheA);
    await logitsOf(B, cacheB);
    const [entry] = modulesIn(cacheA);
    const target = path.join(cacheA, 'torchscript', entry);
    const [other] = modulesIn(cacheB);
    const planted = fs.readFileSync(path.join(cacheB, 'torchscript', other));
    const plants = [
      ['B\'s module, A\'s seal kept', () => fs.writeFileSync(target, planted)],
      ['B\'s module, no seal', () => { fs.writeFileSync(target, planted); fs.rmSync(`${target}.seal`, { force: true }); }],
      ['B\'s module with its own seal from another cache folder (another key)', () => {
        fs.writeFileSync(target, planted);
        fs.copyFileSync(path.join(cacheB, 'torchscript', `${other}.seal`), `${target}.seal`);
      }],
      ['A\'s module with one byte changed (same size)', () => {
        const buf = fs.readFileSync(target);
        buf[buf.length >> 1] ^= 0x01;
        fs.writeFileSync(target, buf);
      }],
    ];
    for (const [label, plant] of plants) {
      plant();
      assert.ok((await logitsOf(A, cacheA)).equals(LA), `${label}: the planted module was used`);
      assert.ok(!fs.readFileSync(target).equals(planted), `${label}: the planted file is still there`);
      // the rebuilt entry is sealed again and reused
      const ino = fs.statSync(target).ino;
      assert.ok((await logitsOf(A, cacheA)).equals(LA));
      assert.strictEqual(fs.statSync(target).ino, ino, `${label}: the rebuilt entry is not reused`);
    }
  });

  it('weights rewritten in place at the same size, mtime restored (cp -p, rsync -t, a fine-tune), load the new weights', async () => {
    const cache = path.join(tmp, 'c-stale');
    const D = path.join(tmp, 'D');
    fs.cpSync(A, D, { recursive: true, preserveTimestamps: true });
    const w = path.join(D, 'model.safetensors');
    assert.ok((await logitsOf(D, cache)).equals(LA));
    const st = fs.statSync(w);
    // in place, same inode
    const fd = fs.openSync(w, 'r+');
    fs.writeSync(fd, fs.readFileSync(path.join(B, 'model.safetensors')), 0, st.size, 0);
    fs.closeSync(fd);
    fs.utimesSync(w, st.atime, st.mtime);
    assert.strictEqual(fs.statSync(w).mtimeMs, st.mtimeMs);
    assert.strictEqual(fs.statSync(w).size, st.size);
    assert.ok((await logitsOf(D, cache)).equals(LB), 'in-place rewrite served the stale module');
    // a new file renamed over it (cp -p / rsync -t), mtime restored
    const tmpw = `${w}.new`;
    fs.copyFileSync(path.join(A, 'model.safetensors'), tmpw);
    fs.utimesSync(tmpw, st.atime, st.mtime);
    fs.renameSync(tmpw, w);
    assert.ok((await logitsOf(D, cache)).equals(LA), 'replaced file served the stale module');
    assert.strictEqual(modulesIn(cache).length, 3);
  });

  it('a cache folder open to others is tightened to 0700 and used', async () => {
    const cache = path.join(tmp, 'c-open');
    fs.mkdirSync(path.join(cache, 'torchscript'), { recursive: true });
    fs.chmodSync(path.join(cache, 'torchscript'), 0o777);
    assert.ok((await logitsOf(A, cache)).equals(LA));
    assert.strictEqual(fs.statSync(path.join(cache, 'torchscript')).mode & 0o777, 0o700);
    assert.strictEqual(modulesIn(cache).length, 1);
  });

  it(`a folder that is not ours or cannot be written (${isRoot ? 'owned by another user: ~/.cache/hdlm after sudo' : 'mode 0500'}) means building without the cache, touching nothing`, async () => {
    const cache = path.join(tmp, 'c-foreign');
    const dir = path.join(cache, 'torchscript');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // a module that would be wrong if used
    const [other] = (await logitsOf(B, path.join(tmp, 'c-b2')), modulesIn(path.join(tmp, 'c-b2')));
    fs.copyFileSync(path.join(tmp, 'c-b2', 'torchscript', other), path.join(dir, 'planted.pt'));
    if (isRoot) fs.chownSync(dir, 65534, 65534);
    else fs.chmodSync(dir, 0o500);
    try {
      const before = listing(dir);
      assert.ok((await logitsOf(A, cache)).equals(LA));
      assert.ok((await logitsOf(A, cache)).equals(LA));
      assert.deepStrictEqual(listing(dir), before, 'the folder was written to');
      if (isRoot) {
        assert.strictEqual(fs.statSync(dir).uid, 65534);
        // nor a folder that is a link to one of ours
        const link = path.join(tmp, 'c-link');
        fs.mkdirSync(link);
        fs.symlinkSync(path.join(tmp, 'c-b2', 'torchscript'), path.join(link, 'torchscript'));
        const was = listing(path.join(tmp, 'c-b2', 'torchscript'));
        assert.ok((await logitsOf(A, link)).equals(LA));
        assert.deepStrictEqual(listing(path.join(tmp, 'c-b2', 'torchscript')), was);
      }
    } finally {
      if (!isRoot) fs.chmodSync(dir, 0o700);
    }
  });

  it('FIFOs, symbolic links and folders at an entry name are refused without blocking, then replaced', async function () {
    const cache = path.join(tmp, 'c-special');
    await logitsOf(A, cache);
    const [entry] = modulesIn(cache);
    const target = path.join(cache, 'torchscript', entry);
    const sealed = path.join(tmp, 'sealed-copy.pt');
    fs.copyFileSync(target, sealed);
    const code = `
      const fs = require('fs');
      const { smartModelLoader } = require('./dist');
      const [dir, cache, target, sealed] = process.argv.slice(1);
      const out = [];
      (async () => {
        for (const kind of ['fifo', 'symlink', 'symlink-dangling', 'socket-like dir']) {
          fs.rmSync(target, { force: true });
          if (kind === 'fifo') require('child_process').execFileSync('mkfifo', [target]);
          if (kind === 'symlink') fs.symlinkSync(sealed, target);
          if (kind === 'symlink-dangling') fs.symlinkSync(target + '.nowhere', target);
          if (kind === 'socket-like dir') fs.mkdirSync(target);
          const t0 = Date.now();
          const { model } = await smartModelLoader(dir, { device: 'cpu', torchscriptCacheDir: cache });
          await model.forward([[1, 2]]);
          model.dispose();
          const st = fs.lstatSync(target);
          out.push({ kind, ms: Date.now() - t0, regular: st.isFile(), dir: st.isDirectory() });
          if (st.isDirectory()) fs.rmdirSync(target);
        }
        console.log('RESULT:' + JSON.stringify(out));
      })();`;
    const r = await runChild(code, { args: [A, cache, target, sealed], timeoutMs: 120000 });
    assertCleanExit(assert, r);
    const byKind = Object.fromEntries(r.result.map((x) => [x.kind, x]));
    assert.ok(byKind.fifo.regular, 'the FIFO was replaced by a module');
    assert.ok(byKind.symlink.regular, 'the link was replaced by a module');
    assert.ok(byKind['symlink-dangling'].regular);
    assert.ok(byKind['socket-like dir'].dir, 'a folder at the entry name is left alone (built without the cache)');
    assert.ok(fs.readFileSync(sealed).length > 0);
  });

  it('the entry check refuses what it must, directly (openVerifiedEntry)', async () => {
    const { openCacheFolder, openVerifiedEntry, sealEntry } = require('../dist/core/torchscript-cache');
    const folder = openCacheFolder(path.join(tmp, 'c-unit'));
    assert.ok(folder.key && folder.writable);
    const e = path.join(folder.dir, 'x.pt');
    fs.writeFileSync(e, 'module bytes');
    assert.deepStrictEqual(await openVerifiedEntry(folder, e), { ok: false, reason: 'no seal' });
    assert.strictEqual(await sealEntry(folder, e), true);
    const v = await openVerifiedEntry(folder, e);
    assert.strictEqual(v.ok, true);
    if (process.platform === 'linux') assert.match(v.loadPath, /^\/proc\/self\/fd\/\d+$/);
    assert.strictEqual(fs.readFileSync(v.loadPath, 'utf8'), 'module bytes');
    await v.close();
    fs.writeFileSync(e, 'module bytez');
    assert.match((await openVerifiedEntry(folder, e)).reason, /content differs/);
    fs.writeFileSync(e, 'module byte');
    assert.match((await openVerifiedEntry(folder, e)).reason, /size differs/);
    fs.rmSync(e);
    fs.symlinkSync(path.join(tmp, 'sealed-copy.pt'), e);
    assert.match((await openVerifiedEntry(folder, e)).reason, /symbolic link/);
    fs.rmSync(e);
    execFileSync('mkfifo', [e]);
    assert.match((await openVerifiedEntry(folder, e)).reason, /not a regular file/);
    fs.rmSync(e);
    // another folder's key does not verify this folder's seals
    const other = openCacheFolder(path.join(tmp, 'c-unit2'));
    assert.ok(!other.key.equals(folder.key));
  });
});
