'use strict';
// Hostile files: every one is a clear HdlmError (or, for corruption nothing can detect, such as
// a flipped bit in the weights, a model that loads and runs); never a crash, nothing written
// outside the cache directory, no partial cache entry. The loads run in a child process, so a
// native crash shows as a failure here instead of killing mocha.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
const { FIXTURES, tempDir } = require('./helpers/reference');
const { runChild, assertCleanExit } = require('./helpers/child');

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every regular file under dir (except `skip`) → size:mtime, to prove nothing else was written. */
function snapshot(dir, skip) {
  const out = {};
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (p === skip) continue;
      if (e.isDirectory()) walk(p);
      else {
        const st = fs.lstatSync(p);
        out[p] = `${st.size}:${st.mtimeMs}`;
      }
    }
  };
  walk(dir);
  return out;
}

describe('hostile files: clear errors, no crash, no stray or partial files', function () {
  this.timeout(300000);
  let tmp;
  let cacheDir;
  const cases = []; // { name, path, expect: 'error' | 'load' | 'either', code? }
  let results;
  let filesBefore;

  before(async () => {
    tmp = tempDir('hostile');
    cacheDir = path.join(tmp, 'cache');
    const base = makeEpsilonCheckpoint(path.join(tmp, 'base'), { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 16, vocabTokens: 64 });
    const config = fs.readFileSync(base.configPath);
    const weights = fs.readFileSync(base.weightsPath);
    const n = Number(weights.readBigUInt64LE(0));
    const header = JSON.parse(weights.subarray(8, 8 + n).toString('utf8'));
    const data = weights.subarray(8 + n);
    let i = 0;
    const add = (name, files, expect = 'error', code = 'HDLM_BAD_FILE') => {
      const dir = path.join(tmp, `c${String(i++).padStart(3, '0')}`);
      fs.mkdirSync(dir);
      for (const [f, content] of Object.entries({ 'config.json': config, ...files })) {
        if (content === null) continue;
        if (typeof content === 'function') content(path.join(dir, f));
        else fs.writeFileSync(path.join(dir, f), content);
      }
      cases.push({ name, path: dir, expect, code });
    };
    const withHeader = (h, dataPart = data) => {
      const json = Buffer.from(JSON.stringify(h));
      const prefix = Buffer.alloc(8);
      prefix.writeBigUInt64LE(BigInt(json.length));
      return Buffer.concat([prefix, json, dataPart]);
    };
    const edit = (fn) => {
      const h = JSON.parse(JSON.stringify(header));
      fn(h);
      return withHeader(h);
    };
    const keys = Object.keys(header).filter((k) => k !== '__metadata__');
    const anyMatrix = keys.find((k) => header[k].shape.length === 2 && header[k].shape[0] !== header[k].shape[1]);

    add('control: the intact checkpoint', { 'model.safetensors': weights }, 'load');
    // truncated
    for (const len of [0, 1, 7, 8, 9, 8 + (n >> 1), 8 + n - 1, 8 + n, 8 + n + 1, 8 + n + (data.length >> 1), weights.length - 4, weights.length - 1]) {
      add(`truncated to ${len} bytes`, { 'model.safetensors': weights.subarray(0, len) });
    }
    // header length prefix claims more than the file has / absurd values
    for (const claim of [BigInt(weights.length), BigInt(weights.length - 7), 1n << 32n, 1n << 40n, (1n << 63n) + 5n, (1n << 64n) - 1n, 0n]) {
      const b = Buffer.from(weights);
      b.writeBigUInt64LE(claim);
      add(`header length prefix ${claim}`, { 'model.safetensors': b });
    }
    // a huge declared header that the file really has (over the 100 MiB limit: sparse file)
    add('a 101 MiB declared header in a sparse file', {
      'model.safetensors': (p) => {
        const fd = fs.openSync(p, 'w');
        const prefix = Buffer.alloc(8);
        prefix.writeBigUInt64LE(101n * 1024n * 1024n);
        fs.writeSync(fd, prefix, 0, 8, 0);
        fs.ftruncateSync(fd, 8 + 101 * 1024 * 1024 + 16);
        fs.closeSync(fd);
      },
    });
    // bit flips: prefix, header (must be detected or harmless), data (undetectable: loads)
    const r = rng(7);
    for (let k = 0; k < 8; k++) {
      const b = Buffer.from(weights);
      b[k] ^= 0x80;
      add(`bit flip in prefix byte ${k}`, { 'model.safetensors': b });
    }
    for (let k = 0; k < 40; k++) {
      const b = Buffer.from(weights);
      const at = 8 + Math.floor(r() * n);
      b[at] ^= 1 << Math.floor(r() * 8);
      add(`bit flip in header byte ${at}`, { 'model.safetensors': b }, 'either');
    }
    for (let k = 0; k < 6; k++) {
      const b = Buffer.from(weights);
      const at = 8 + n + Math.floor(r() * data.length);
      b[at] ^= 1 << Math.floor(r() * 8);
      add(`bit flip in data byte ${at}`, { 'model.safetensors': b }, 'load');
    }
    // header JSON
    add('header is not JSON', { 'model.safetensors': withHeader('x').fill(0x7b, 8, 9) });
    add('header is a JSON array', { 'model.safetensors': (() => { const j = Buffer.from('[1,2,3]'); const p = Buffer.alloc(8); p.writeBigUInt64LE(BigInt(j.length)); return Buffer.concat([p, j, data]); })() });
    add('header is invalid UTF-8', { 'model.safetensors': (() => { const b = Buffer.from(weights); b[9] = 0xff; b[10] = 0xfe; return b; })() });
    add('__metadata__ is not an object', { 'model.safetensors': edit((h) => { h.__metadata__ = 5; }) });
    add('a tensor entry that is not an object', { 'model.safetensors': edit((h) => { h[keys[0]] = [1]; }) });
    add('a __proto__ tensor key', { 'model.safetensors': withHeader(JSON.parse(JSON.stringify(header).replace('{', '{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'))) });
    // wrong dtypes
    for (const dt of ['F64', 'I64', 'I32', 'BOOL', 'U8', 'XYZ', 7]) {
      add(`dtype ${dt} for ${keys[1]}`, { 'model.safetensors': edit((h) => { h[keys[1]].dtype = dt; }) });
    }
    add(`dtype F16 (size mismatch) for ${keys[2]}`, { 'model.safetensors': edit((h) => { h[keys[2]].dtype = 'F16'; }) });
    // wrong shapes (same byte count, so only the architecture check can catch them)
    add(`transposed shape for ${anyMatrix}`, { 'model.safetensors': edit((h) => { h[anyMatrix].shape.reverse(); }) });
    add(`flattened shape for ${anyMatrix}`, { 'model.safetensors': edit((h) => { h[anyMatrix].shape = [h[anyMatrix].shape[0] * h[anyMatrix].shape[1]]; }) });
    add(`extra leading dimension for ${anyMatrix}`, { 'model.safetensors': edit((h) => { h[anyMatrix].shape.unshift(1); }) });
    add('negative dimension', { 'model.safetensors': edit((h) => { h[keys[3]].shape[0] = -h[keys[3]].shape[0]; }) });
    add('fractional dimension', { 'model.safetensors': edit((h) => { h[keys[3]].shape[0] += 0.5; }) });
    add('shape as a string', { 'model.safetensors': edit((h) => { h[keys[3]].shape = '8'; }) });
    // offsets
    add('data offsets past the end', { 'model.safetensors': edit((h) => { h[keys[0]].data_offsets = h[keys[0]].data_offsets.map((o) => o + data.length); }) });
    add('reversed data offsets', { 'model.safetensors': edit((h) => { h[keys[0]].data_offsets.reverse(); }) });
    add('overlapping tensors', { 'model.safetensors': edit((h) => { const a = h[keys[0]].data_offsets; const len = a[1] - a[0]; h[keys[1]].data_offsets = [a[0], a[0] + (h[keys[1]].data_offsets[1] - h[keys[1]].data_offsets[0])]; void len; }) });
    add('negative data offset', { 'model.safetensors': edit((h) => { h[keys[0]].data_offsets[0] = -4; }) });
    add('huge data offsets', { 'model.safetensors': edit((h) => { h[keys[0]].data_offsets = [2 ** 60, 2 ** 60 + 4]; }) });
    // missing keys: every one
    // (rotary_emb.inv_freq is optional: upstream recomputes it, so a file without it loads)
    for (const k of keys) add(`missing ${k}`, { 'model.safetensors': edit((h) => { delete h[k]; }) }, k === 'rotary_emb.inv_freq' ? 'load' : 'error');
    // config.json
    for (const [what, text] of [['an array', '[1,2]'], ['a string', '"config"'], ['a number', '42'], ['null', 'null'], ['invalid JSON', '{"model": '], ['empty', ''], ['binary', Buffer.from([0, 255, 1, 2])]]) {
      add(`config.json is ${what}`, { 'config.json': text, 'model.safetensors': weights });
    }
    const cfg = JSON.parse(config);
    add('config.json without a model section', { 'config.json': JSON.stringify({ ...cfg, model: undefined }), 'model.safetensors': weights });
    add('config.json with a negative hidden size', { 'config.json': JSON.stringify({ ...cfg, model: { ...cfg.model, hidden_size: -8 } }), 'model.safetensors': weights });
    add('config.json whose hidden size disagrees with the weights', { 'config.json': JSON.stringify({ ...cfg, model: { ...cfg.model, hidden_size: 16, n_heads: 2 } }), 'model.safetensors': weights });
    add('config.json with heads not dividing the hidden size', { 'config.json': JSON.stringify({ ...cfg, model: { ...cfg.model, n_heads: 3 } }), 'model.safetensors': weights });
    add('config.json with a huge length', { 'config.json': JSON.stringify({ ...cfg, model: { ...cfg.model, length: 1e300 } }), 'model.safetensors': weights });
    add('config.json with an unknown model_type', { 'config.json': JSON.stringify({ ...cfg, model_type: 'rnn' }), 'model.safetensors': weights });
    add('config.json is a directory', { 'config.json': (p) => fs.mkdirSync(p), 'model.safetensors': weights });
    add('deeply nested config.json', { 'config.json': '['.repeat(100000) + ']'.repeat(100000), 'model.safetensors': weights });
    // the weights file is not a regular file
    add('model.safetensors is a directory', { 'model.safetensors': (p) => fs.mkdirSync(p) });
    add('model.safetensors is a symlink loop', { 'model.safetensors': (p) => { fs.symlinkSync(p + '.b', p); fs.symlinkSync(p, p + '.b'); } });
    add('model.safetensors is a dangling symlink', { 'model.safetensors': (p) => fs.symlinkSync(p + '.nowhere', p) });
    add('model.safetensors links to /dev/zero', { 'model.safetensors': (p) => fs.symlinkSync('/dev/zero', p) });
    add('model.safetensors is a FIFO', { 'model.safetensors': (p) => require('child_process').execFileSync('mkfifo', [p]) });
    // model paths
    const loopA = path.join(tmp, 'loop-a');
    fs.symlinkSync(path.join(tmp, 'loop-b'), loopA);
    fs.symlinkSync(loopA, path.join(tmp, 'loop-b'));
    cases.push({ name: 'model path is a symlink loop', path: loopA, expect: 'error', code: 'HDLM_BAD_FILE' });
    cases.push({ name: 'model path is an empty directory', path: fs.mkdtempSync(path.join(tmp, 'empty-')), expect: 'error', code: 'HDLM_BAD_FILE' });
    // TorchScript files
    const ts = (name, content, expect = 'error') => {
      const f = path.join(tmp, `ts${String(i++).padStart(3, '0')}.pt`);
      if (typeof content === 'function') content(f);
      else fs.writeFileSync(f, content);
      cases.push({ name, path: f, expect, code: 'HDLM_BAD_FILE' });
    };
    ts('a TorchScript file that is not an hdlm model', fs.readFileSync(path.join(FIXTURES, 'not-hdlm.pt')));
    ts('an empty .pt file', Buffer.alloc(0));
    ts('a text file as .pt', 'definitely not a zip archive');
    ts('a safetensors file as .pt', weights);
    const notHdlm = fs.readFileSync(path.join(FIXTURES, 'not-hdlm.pt'));
    ts('a truncated TorchScript file', notHdlm.subarray(0, notHdlm.length >> 1));
    ts('zip end record only', Buffer.concat([Buffer.from([0x50, 0x4b, 0x05, 0x06]), Buffer.alloc(18)]));
    for (let k = 0; k < 6; k++) {
      const b = Buffer.from(notHdlm);
      const at = Math.floor(r() * b.length);
      b[at] ^= 0xff;
      ts(`a TorchScript file with byte ${at} flipped`, b, 'error');
    }

    filesBefore = snapshot(tmp, cacheDir);
    const r0 = await runChild(fs.readFileSync(path.join(__dirname, 'helpers', 'load-each.js'), 'utf8').replace("'../../dist'", "'./dist'"), {
      args: [JSON.stringify({ cases: cases.map((c) => ({ name: c.name, path: c.path })), cacheDir })],
      timeoutMs: 280000,
    });
    assertCleanExit(assert, r0, 0);
    results = r0.result;
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('tries at least 100 hostile files and paths, all in one child that exits cleanly', () => {
    assert.ok(cases.length >= 100, `${cases.length} cases`);
    assert.strictEqual(results.length, cases.length);
    console.log(`      (${cases.length} hostile files and paths tried)`);
  });

  it('each is an HdlmError with a clear message, or (undetectable corruption) loads and runs', () => {
    const problems = [];
    let errors = 0;
    cases.forEach((c, k) => {
      const res = results[k];
      if (res.ok) {
        if (c.expect === 'error') problems.push(`${c.name}: loaded, expected an error`);
        return;
      }
      errors++;
      if (c.expect === 'load') problems.push(`${c.name}: expected to load, got ${res.code}: ${res.message}`);
      if (!res.hdlm) problems.push(`${c.name}: not an HdlmError (${res.errorClass}): ${res.message}`);
      else if (!['HDLM_BAD_FILE', 'HDLM_UNSUPPORTED'].includes(res.code)) problems.push(`${c.name}: code ${res.code}: ${res.message}`);
      if (!res.message || res.message.length < 20) problems.push(`${c.name}: message too short: ${res.message}`);
    });
    assert.deepStrictEqual(problems, []);
    assert.ok(errors >= cases.length * 0.8, `${errors} errors`);
  });

  it('nothing was written outside the cache directory', () => {
    assert.deepStrictEqual(snapshot(tmp, cacheDir), filesBefore);
  });

  it('the cache holds only complete entries (no temp files), one per distinct model that loaded', () => {
    const dir = path.join(cacheDir, 'torchscript');
    const all = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
    // modules, each with its seal, and the folder's key
    for (const e of all) assert.match(e, /^([0-9a-f]{32}\.pt(\.seal)?|\.key)$/, `stray file ${e} in the cache`);
    const entries = all.filter((e) => e.endsWith('.pt'));
    for (const e of entries) assert.ok(all.includes(`${e}.seal`), `${e} has no seal`);
    const loadedCheckpoints = cases.filter((c, k) => results[k].ok && !c.path.endsWith('.pt')).length;
    assert.strictEqual(entries.length, loadedCheckpoints);
  });

  it('an unusable cache folder (a file, or a directory where an entry should be) means loading without the cache', async () => {
    const { smartModelLoader } = require('../dist');
    const dir = path.join(tmp, 'base');
    const notADir = path.join(tmp, 'cache-is-a-file');
    fs.writeFileSync(notADir, 'x');
    const { model } = await smartModelLoader(dir, { device: 'cpu', torchscriptCacheDir: notADir });
    await model.forward([[1, 2]]);
    model.dispose();
    assert.strictEqual(fs.readFileSync(notADir, 'utf8'), 'x');
    // a directory squatting on the cache entry's name: loads, and leaves the directory alone
    const cache2 = path.join(tmp, 'cache2');
    const { model: m1 } = await smartModelLoader(dir, { device: 'cpu', torchscriptCacheDir: cache2 });
    m1.dispose();
    const entry = fs.readdirSync(path.join(cache2, 'torchscript')).find((e) => e.endsWith('.pt'));
    fs.rmSync(path.join(cache2, 'torchscript', entry));
    fs.mkdirSync(path.join(cache2, 'torchscript', entry, 'inside'), { recursive: true });
    const { model: m2 } = await smartModelLoader(dir, { device: 'cpu', torchscriptCacheDir: cache2 });
    await m2.forward([[1, 2]]);
    m2.dispose();
    assert.ok(fs.statSync(path.join(cache2, 'torchscript', entry)).isDirectory());
  });
});
