'use strict';
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const YAML = require('yaml');
const { readSafetensorsHeader, findWeightsFile, MAX_HEADER_BYTES } = require('../dist/core/checkpoint');
const { readConfigFile, detectFamily, architectureOf, checkWeightsAgainstArchitecture, expectedTensorShapes } = require('../dist/core/config');
const { HdlmError } = require('../dist/errors');
const w = require('./helpers/safetensors-writer');

const FIX = path.join(__dirname, 'fixtures');
// Config-only fixture directories (their weights are synthesized below).
const TINY = path.join(FIX, 'tiny-epsilon');
const GAMMA = path.join(FIX, 'tiny-gamma');
// brown-epsilon: config + reference outputs here; the trained weights ship in models/.
const BROWN = path.join(FIX, 'brown-epsilon');
const BROWN_MODEL = path.join(__dirname, '..', 'models', 'brown-epsilon');
const BROWN_WEIGHTS = path.join(BROWN_MODEL, 'model.safetensors');
const BROWN_REFERENCE = path.join(BROWN, 'reference.safetensors'); // F32 + I64, written by Python safetensors

function assertBadFile(fn, ...fragments) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof HdlmError, `expected an HdlmError, got ${e && e.stack}`);
    assert.strictEqual(e.code, 'HDLM_BAD_FILE', e.message);
    for (const f of fragments) {
      const ok = f instanceof RegExp ? f.test(e.message) : e.message.includes(f);
      assert.ok(ok, `message ${JSON.stringify(e.message)} lacks ${f}`);
    }
    return true;
  });
}

function assertArgError(fn, ...fragments) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof HdlmError);
    assert.strictEqual(e.code, 'HDLM_INVALID_ARGUMENT', e.message);
    for (const f of fragments) assert.ok(e.message.includes(f), `message ${JSON.stringify(e.message)} lacks ${f}`);
    return true;
  });
}

let tmp;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-checkpoint-test-'));
});
after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/**
 * Synthetic stand-ins for the tiny fixtures' weights (not shipped in the repository): a directory
 * holding a copy of the fixture's config.json and a model.safetensors with every tensor the config
 * needs (F32, no __metadata__, like the Python-written originals), made once, on first use.
 */
let tinyDirCache = null;
function tinyEpsilonDir() {
  if (tinyDirCache) return tinyDirCache;
  const cfg = readConfigFile(path.join(TINY, 'config.json'));
  const arch = architectureOf(cfg, 'epsilon_hybrid');
  const dir = path.join(tmp, 'tiny-epsilon');
  const made = w.makeEpsilonCheckpoint(dir, {
    hiddenSize: arch.hiddenSize,
    nHeads: arch.nHeads,
    nBlocks: arch.nBlocks,
    length: arch.length,
    vocabTokens: arch.tokens,
    dtype: 'F32',
    metadata: null,
  });
  assert.strictEqual(made.vocabSize, arch.vocabSize);
  fs.copyFileSync(path.join(TINY, 'config.json'), made.configPath);
  tinyDirCache = dir;
  return dir;
}

let gammaDirCache = null;
function tinyGammaDir() {
  if (gammaDirCache) return gammaDirCache;
  const arch = architectureOf(readConfigFile(path.join(GAMMA, 'config.json')), 'gamma_hybrid');
  const tensors = {};
  for (const [name, shape] of expectedTensorShapes(arch)) tensors[name] = { dtype: 'F32', shape, data: w.defaultFill(name, shape) };
  const inv = w.rotaryInvFreq(arch.hiddenSize / arch.nHeads);
  tensors['rotary_emb.inv_freq'] = { dtype: 'F32', shape: [inv.length], data: inv };
  const dir = path.join(tmp, 'tiny-gamma');
  w.writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  fs.copyFileSync(path.join(GAMMA, 'config.json'), path.join(dir, 'config.json'));
  gammaDirCache = dir;
  return dir;
}

/** Writes a file: u64 prefix (given, or the header's length) + header text + data bytes. */
function rawFile(name, header, { data = Buffer.alloc(0), declared } = {}) {
  const text = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(declared === undefined ? BigInt(text.length) : BigInt(declared));
  const p = path.join(tmp, name);
  fs.writeFileSync(p, Buffer.concat([prefix, text, data]));
  return p;
}

function checkEntries(h) {
  for (const t of h.tensors) {
    assert.ok(t.begin >= h.dataStart && t.end <= h.fileSize && t.begin <= t.end, t.name);
    const bytes = t.shape.reduce((a, b) => a * b, 1) * (t.dtype === 'F32' ? 4 : 2);
    assert.strictEqual(t.end - t.begin, bytes, t.name);
  }
  for (let i = 1; i < h.tensors.length; i++) assert.ok(h.tensors[i].begin >= h.tensors[i - 1].end);
}

describe('checkpoint: safetensors header', () => {
  it('parses tiny-epsilon (F32) with absolute offsets', () => {
    const p = path.join(tinyEpsilonDir(), 'model.safetensors');
    const h = readSafetensorsHeader(p);
    assert.strictEqual(h.fileSize, fs.statSync(p).size);
    // 1800 bytes: the header length of the Python-written tiny-epsilon checkpoint, which this
    // synthetic one reproduces exactly (same names, shapes, dtype, no __metadata__).
    assert.strictEqual(Number(fs.readFileSync(p).readBigUInt64LE(0)), 1800);
    assert.strictEqual(h.dataStart, 8 + 1800);
    assert.strictEqual(h.metadata, null);
    assert.strictEqual(h.path, p);
    assert.strictEqual(h.tensors.length, 5 + 8 * 2);
    assert.ok(h.tensors.every((t) => t.dtype === 'F32'));
    const attnOut = h.tensors.find((t) => t.name === 'blocks.0.attn_out.weight');
    assert.deepStrictEqual(attnOut, { name: 'blocks.0.attn_out.weight', dtype: 'F32', shape: [32, 32], begin: 1808, end: 1808 + 4096 });
    const emb = h.tensors.find((t) => t.name === 'vocab_embed.embedding');
    assert.deepStrictEqual(emb.shape, [50258, 32]);
    assert.strictEqual(emb.end, h.fileSize);
    checkEntries(h);
    // the offsets address the right bytes
    assert.deepStrictEqual(Array.from(w.readTensorAsFloat32(p, attnOut)), Array.from(w.defaultFill('blocks.0.attn_out.weight', [32, 32])));
    assert.deepStrictEqual(Array.from(w.readTensorAsFloat32(p, emb).subarray(-64)), Array.from(w.defaultFill('vocab_embed.embedding', [50258, 32]).subarray(-64)));
  });

  it('parses brown-epsilon (BF16 with an F32 inv_freq) and its metadata', () => {
    const h = readSafetensorsHeader(BROWN_WEIGHTS);
    assert.strictEqual(h.path, BROWN_WEIGHTS);
    assert.strictEqual(h.fileSize, fs.statSync(BROWN_WEIGHTS).size);
    assert.strictEqual(h.dataStart, 8 + Number(fs.readFileSync(BROWN_WEIGHTS).subarray(0, 8).readBigUInt64LE(0)));
    assert.deepStrictEqual(h.metadata, { format: 'pt' });
    assert.strictEqual(h.tensors.length, 5 + 8 * 4);
    const inv = h.tensors.find((t) => t.name === 'rotary_emb.inv_freq');
    assert.deepStrictEqual(inv, { name: 'rotary_emb.inv_freq', dtype: 'F32', shape: [16], begin: h.dataStart, end: h.dataStart + 64 });
    assert.ok(h.tensors.filter((t) => t.name !== 'rotary_emb.inv_freq').every((t) => t.dtype === 'BF16'));
    checkEntries(h);
    const invVals = w.readTensorAsFloat32(BROWN_WEIGHTS, inv);
    assert.deepStrictEqual(Array.from(invVals), Array.from(w.rotaryInvFreq(32)));
    const emb = h.tensors.find((t) => t.name === 'vocab_embed.embedding');
    assert.deepStrictEqual([emb.dtype, emb.shape, emb.end], ['BF16', [50258, 128], h.fileSize]);
    // trained norms sit near 1, unlike the zeros a bad offset into padding or another tensor would give
    const norm = w.readTensorAsFloat32(BROWN_WEIGHTS, h.tensors.find((t) => t.name === 'output_layer.norm_final.weight'));
    const mean = norm.reduce((a, b) => a + b, 0) / norm.length;
    assert.ok(mean > 0.2 && mean < 5, `norm_final mean ${mean}`);
  });

  it('parses tiny-gamma', () => {
    const h = readSafetensorsHeader(path.join(tinyGammaDir(), 'model.safetensors'));
    assert.strictEqual(h.tensors.length, 29);
    assert.ok(h.tensors.some((t) => t.name === 'sigma_map.mlp.0.weight' && t.shape.join() === '128,256'));
    checkEntries(h);
  });

  it('refuses the real reference.safetensors (I64 tensors), naming the tensor and the dtype', () => {
    assertBadFile(() => readSafetensorsHeader(BROWN_REFERENCE), BROWN_REFERENCE, 'tensor "cpu_fp32.argmax"', 'dtype "I64" is not supported');
  });

  it('does not read the data (works on a sparse 200 MB file)', () => {
    const p = rawFile('sparse.safetensors', { big: { dtype: 'F32', shape: [50, 1000, 1000], data_offsets: [0, 200e6] } });
    const header = fs.statSync(p).size;
    fs.truncateSync(p, header + 200e6);
    const h = readSafetensorsHeader(p);
    assert.strictEqual(h.tensors[0].end, h.fileSize);
  });
});

describe('checkpoint: safetensors writer (test helper)', () => {
  const files = {
    'tiny-epsilon (F32, no metadata)': () => path.join(tinyEpsilonDir(), 'model.safetensors'),
    'brown-epsilon (BF16 + F32, Python-written)': () => BROWN_WEIGHTS,
  };
  for (const [name, locate] of Object.entries(files)) {
    it(`rewrites ${name} byte for byte`, () => {
      const p = locate();
      const h = readSafetensorsHeader(p);
      const file = fs.readFileSync(p);
      const tensors = {};
      for (const t of h.tensors) {
        const b = file.subarray(t.begin, t.end);
        const copy = b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
        tensors[t.name] = { dtype: t.dtype, shape: t.shape, data: t.dtype === 'F32' ? new Float32Array(copy) : new Uint16Array(copy) };
      }
      const out = path.join(tmp, `rewrite-${name.split(' ')[0]}.safetensors`);
      w.writeSafetensors(out, tensors, h.metadata || undefined);
      assert.ok(fs.readFileSync(out).equals(file));
    });
  }

  it('round-trips F32, BF16 and F16 values, header 8-byte aligned with space padding', () => {
    const vals = Float32Array.from([0, -0, 1, -2.5, 3.14159, 1 / 3, 65504, 1e-3, -7e-6, 123456]);
    const p = path.join(tmp, 'rt.safetensors');
    const info = w.writeSafetensors(
      p,
      {
        'b.f32': { dtype: 'F32', shape: [2, 5], data: vals },
        'a.bf16': { dtype: 'BF16', shape: [10], data: vals },
        'c.f16': { dtype: 'F16', shape: [5, 2], data: vals },
        empty: { dtype: 'F32', shape: [0, 3] },
      },
      { format: 'pt', note: 'x' },
    );
    assert.strictEqual(info.headerLength % 8, 0);
    const raw = fs.readFileSync(p);
    assert.strictEqual(Number(raw.readBigUInt64LE(0)), info.headerLength);
    const headerText = raw.subarray(8, 8 + info.headerLength).toString('utf8');
    assert.match(headerText, /^\{"__metadata__":\{"format":"pt","note":"x"\},"b\.f32":/);
    assert.match(headerText, /\} *$/);
    const h = readSafetensorsHeader(p);
    assert.deepStrictEqual(h.metadata, { format: 'pt', note: 'x' });
    assert.deepStrictEqual(
      h.tensors.map((t) => [t.name, t.dtype]),
      [['b.f32', 'F32'], ['empty', 'F32'], ['a.bf16', 'BF16'], ['c.f16', 'F16']],
    );
    const by = Object.fromEntries(h.tensors.map((t) => [t.name, t]));
    assert.deepStrictEqual(Array.from(w.readTensorAsFloat32(p, by['b.f32'])), Array.from(vals));
    assert.deepStrictEqual(
      Array.from(w.readTensorAsFloat32(p, by['a.bf16'])),
      Array.from(vals, (v) => w.bf16BitsToFloat32(w.float32ToBf16Bits(v))),
    );
    assert.deepStrictEqual(
      Array.from(w.readTensorAsFloat32(p, by['c.f16'])),
      Array.from(vals, (v) => w.f16BitsToFloat32(w.float32ToF16Bits(v))),
    );
    assert.strictEqual(by.empty.begin, by.empty.end);
    checkEntries(h);
  });

  it('converts to bf16 / f16 with round-to-nearest-even', () => {
    assert.strictEqual(w.float32ToBf16Bits(1), 0x3f80);
    assert.strictEqual(w.float32ToBf16Bits(1 + 2 ** -8), 0x3f80); // tie → even
    assert.strictEqual(w.float32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82); // tie → even (up)
    assert.strictEqual(w.float32ToBf16Bits(Infinity), 0x7f80);
    assert.ok(Number.isNaN(w.bf16BitsToFloat32(w.float32ToBf16Bits(NaN))));
    assert.strictEqual(w.float32ToF16Bits(1), 0x3c00);
    assert.strictEqual(w.float32ToF16Bits(65504), 0x7bff);
    assert.strictEqual(w.float32ToF16Bits(65520), 0x7c00); // rounds to inf
    assert.strictEqual(w.float32ToF16Bits(2 ** -24), 0x0001); // smallest subnormal
    assert.strictEqual(w.float32ToF16Bits(2 ** -25), 0x0000); // tie → even (zero)
    assert.strictEqual(w.float32ToF16Bits(-(2 ** -14)), 0x8400);
  });

  it('makeEpsilonCheckpoint writes a loadable checkpoint in F32, BF16 and F16', () => {
    for (const dtype of ['F32', 'BF16', 'F16']) {
      const dir = path.join(tmp, `synthetic-${dtype}`);
      const made = w.makeEpsilonCheckpoint(dir, { hiddenSize: 16, nHeads: 2, nBlocks: 3, length: 64, vocabTokens: 100, dtype });
      assert.strictEqual(made.vocabSize, 101);
      const cfg = readConfigFile(made.configPath);
      const arch = architectureOf(cfg, detectFamily(cfg, 'auto'));
      assert.deepStrictEqual(
        { ...arch },
        { family: 'epsilon_hybrid', vocabSize: 101, hiddenSize: 16, nHeads: 2, nBlocks: 3, length: 64, maskId: 100, hasMask: true, tokens: 100, condDim: 128 },
      );
      const h = readSafetensorsHeader(made.weightsPath);
      assert.strictEqual(h.tensors.length, 5 + 8 * 3);
      checkWeightsAgainstArchitecture(h, arch);
      const emb = h.tensors.find((t) => t.name === 'vocab_embed.embedding');
      assert.strictEqual(emb.dtype, dtype);
      const want = w.defaultFill('vocab_embed.embedding', [101, 16]);
      const got = w.readTensorAsFloat32(made.weightsPath, emb);
      const round = dtype === 'F32' ? (v) => v : dtype === 'BF16' ? (v) => w.bf16BitsToFloat32(w.float32ToBf16Bits(v)) : (v) => w.f16BitsToFloat32(w.float32ToF16Bits(v));
      assert.deepStrictEqual(Array.from(got), Array.from(want, round));
      assert.strictEqual(h.tensors.find((t) => t.name === 'rotary_emb.inv_freq').dtype, 'F32');
    }
  });
});

describe('checkpoint: hostile safetensors files', () => {
  const good = { t: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };
  const data16 = Buffer.alloc(16);

  it('missing file', () => {
    const p = path.join(tmp, 'nope.safetensors');
    assertBadFile(() => readSafetensorsHeader(p), p, 'does not exist');
  });

  it('a directory', () => {
    assertBadFile(() => readSafetensorsHeader(tmp), tmp, 'directory');
  });

  it('a symlink loop', () => {
    const a = path.join(tmp, 'loop-a');
    const b = path.join(tmp, 'loop-b');
    fs.symlinkSync(b, a);
    fs.symlinkSync(a, b);
    assertBadFile(() => readSafetensorsHeader(a), a, /symbolic links|loop/);
  });

  it('follows a valid symlink', () => {
    const target = rawFile('target.safetensors', good, { data: data16 });
    const link = path.join(tmp, 'link.safetensors');
    fs.symlinkSync(target, link);
    assert.strictEqual(readSafetensorsHeader(link).tensors.length, 1);
  });

  it('a FIFO is refused without blocking', function () {
    if (process.platform === 'win32') this.skip();
    const p = path.join(tmp, 'fifo');
    try {
      require('child_process').execFileSync('mkfifo', [p]);
    } catch {
      this.skip();
    }
    assertBadFile(() => readSafetensorsHeader(p), 'not a regular file');
  });

  it('an unreadable file', function () {
    if (process.getuid && process.getuid() === 0) this.skip(); // root reads anything
    const p = rawFile('noperm.safetensors', good, { data: data16 });
    fs.chmodSync(p, 0o000);
    assertBadFile(() => readSafetensorsHeader(p), 'permission denied');
  });

  it('shorter than 8 bytes', () => {
    const p = path.join(tmp, 'short.safetensors');
    fs.writeFileSync(p, Buffer.from([1, 2, 3, 4, 5]));
    assertBadFile(() => readSafetensorsHeader(p), p, 'shorter than the 8-byte');
    fs.writeFileSync(p, Buffer.alloc(0));
    assertBadFile(() => readSafetensorsHeader(p), '0 bytes');
  });

  it('truncated inside the header', () => {
    const full = rawFile('trunc-h.safetensors', good, { data: data16 });
    fs.truncateSync(full, 20);
    assertBadFile(() => readSafetensorsHeader(full), 'declares', 'only 12 bytes follow');
  });

  it('truncated inside the data', () => {
    const full = rawFile('trunc-d.safetensors', good, { data: data16 });
    fs.truncateSync(full, fs.statSync(full).size - 4);
    assertBadFile(() => readSafetensorsHeader(full), 'tensor "t"', 'ends at byte', 'truncated');
  });

  it('a bit-flipped header length', () => {
    const p = rawFile('flip.safetensors', good, { data: data16 });
    const buf = fs.readFileSync(p);
    buf[5] ^= 0x04; // bit 42
    fs.writeFileSync(p, buf);
    assertBadFile(() => readSafetensorsHeader(p), 'header length prefix declares');
    const buf2 = fs.readFileSync(p);
    buf2[5] ^= 0x04;
    buf2[0] ^= 0x01; // off by one: the JSON loses its last byte or gains one
    fs.writeFileSync(p, buf2);
    assertBadFile(() => readSafetensorsHeader(p), p);
  });

  it('a huge declared header (2^40) is refused before allocating', () => {
    const p = rawFile('huge.safetensors', good, { data: data16, declared: 2 ** 40 });
    assertBadFile(() => readSafetensorsHeader(p), '1099511627776');
    const p2 = rawFile('huge2.safetensors', good, { data: data16, declared: 2n ** 64n - 1n });
    assertBadFile(() => readSafetensorsHeader(p2), '18446744073709551615');
  });

  it('a declared header over the 100 MB limit, inside a large (sparse) file', () => {
    const p = rawFile('limit.safetensors', good, { data: data16, declared: MAX_HEADER_BYTES + 1 });
    fs.truncateSync(p, MAX_HEADER_BYTES + 4096);
    assertBadFile(() => readSafetensorsHeader(p), 'limit');
  });

  it('a zero header length', () => {
    const p = rawFile('zero.safetensors', '', { data: data16 });
    assertBadFile(() => readSafetensorsHeader(p), 'is 0');
  });

  it('header JSON garbage', () => {
    assertBadFile(() => readSafetensorsHeader(rawFile('garbage.safetensors', 'this is not json at all!')), 'not valid JSON');
    assertBadFile(() => readSafetensorsHeader(rawFile('garbage2.safetensors', '{"t": {"dtype": "F32"')), 'not valid JSON');
    assertBadFile(() => readSafetensorsHeader(rawFile('garbage3.safetensors', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))), 'UTF-8');
  });

  it('header JSON not an object', () => {
    assertBadFile(() => readSafetensorsHeader(rawFile('arr.safetensors', '[1, 2, 3]')), 'not an object', 'array');
    assertBadFile(() => readSafetensorsHeader(rawFile('num.safetensors', '42')), 'not an object');
    assertBadFile(() => readSafetensorsHeader(rawFile('null.safetensors', 'null    ')), 'not an object', 'null');
  });

  it('an entry that is not an object', () => {
    assertBadFile(() => readSafetensorsHeader(rawFile('entry.safetensors', { t: 5 })), 'tensor "t"', 'not an object');
    assertBadFile(() => readSafetensorsHeader(rawFile('entry2.safetensors', { t: [1, 2] })), 'tensor "t"', 'not an object');
  });

  it('bad __metadata__', () => {
    assertBadFile(() => readSafetensorsHeader(rawFile('meta.safetensors', { __metadata__: { a: 1 }, ...good }, { data: data16 })), '__metadata__', '"a"');
    assertBadFile(() => readSafetensorsHeader(rawFile('meta2.safetensors', { __metadata__: 'x', ...good }, { data: data16 })), '__metadata__');
  });

  it("an unknown dtype ('I8') and other unsupported dtypes", () => {
    const p = rawFile('i8.safetensors', { t: { dtype: 'I8', shape: [4], data_offsets: [0, 4] } }, { data: Buffer.alloc(4) });
    assertBadFile(() => readSafetensorsHeader(p), 'tensor "t"', '"I8"', 'F32, BF16 and F16', 'unsupported');
    const p2 = rawFile('f64.safetensors', { t: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } }, { data: data16 });
    assertBadFile(() => readSafetensorsHeader(p2), '"F64"');
    const p3 = rawFile('nodtype.safetensors', { t: { shape: [4], data_offsets: [0, 16] } }, { data: data16 });
    assertBadFile(() => readSafetensorsHeader(p3), 'dtype is missing');
  });

  it('bad shapes', () => {
    for (const [i, shape] of [[-1], [1.5], '4', [2, null], null, [2 ** 53]].entries()) {
      const p = rawFile(`shape${i}.safetensors`, { t: { dtype: 'F32', shape, data_offsets: [0, 16] } }, { data: data16 });
      assertBadFile(() => readSafetensorsHeader(p), 'tensor "t"', 'shape must be an array of non-negative integers');
    }
  });

  it('bad data_offsets', () => {
    for (const [i, offsets] of [[16, 0], [0], [0, 16, 32], [-16, 0], [0, 1.5], '0,16', null, [0, 2 ** 53]].entries()) {
      const p = rawFile(`off${i}.safetensors`, { t: { dtype: 'F32', shape: [4], data_offsets: offsets } }, { data: data16 });
      assertBadFile(() => readSafetensorsHeader(p), 'tensor "t"', 'data_offsets must be two ordered non-negative integers');
    }
  });

  it('shape / offsets mismatch', () => {
    const p = rawFile('mismatch.safetensors', { t: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 16] } }, { data: Buffer.alloc(24) });
    assertBadFile(() => readSafetensorsHeader(p), 'tensor "t"', 'hold 16 bytes', 'needs 24 bytes');
    const p2 = rawFile('mismatch2.safetensors', { t: { dtype: 'BF16', shape: [4], data_offsets: [0, 16] } }, { data: data16 });
    assertBadFile(() => readSafetensorsHeader(p2), 'needs 8 bytes');
    // a shape whose element count overflows doubles still compares exactly
    const p3 = rawFile('mismatch3.safetensors', { t: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 16] } }, { data: data16 });
    assertBadFile(() => readSafetensorsHeader(p3), 'needs');
  });

  it('offsets past the end of the file', () => {
    const p = rawFile('eof.safetensors', { t: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }, { data: data16 });
    assertBadFile(() => readSafetensorsHeader(p), 'tensor "t"', 'ends at byte', 'bytes long');
  });

  it('overlapping tensors', () => {
    const p = rawFile(
      'overlap.safetensors',
      {
        a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
        b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] },
      },
      { data: Buffer.alloc(24) },
    );
    assertBadFile(() => readSafetensorsHeader(p), '"a"', '"b"', 'overlap');
    const p2 = rawFile(
      'overlap2.safetensors',
      {
        a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
        same: { dtype: 'BF16', shape: [8], data_offsets: [0, 16] },
      },
      { data: data16 },
    );
    assertBadFile(() => readSafetensorsHeader(p2), 'overlap');
  });

  it('accepts empty tensors at any offset and a "__proto__" metadata key', () => {
    const p = rawFile(
      'empty.safetensors',
      {
        __metadata__: JSON.parse('{"__proto__": "x"}'),
        a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
        e: { dtype: 'F16', shape: [0], data_offsets: [8, 8] },
      },
      { data: data16 },
    );
    const h = readSafetensorsHeader(p);
    assert.strictEqual(h.tensors.length, 2);
    assert.strictEqual(Object.keys(h.metadata)[0], '__proto__');
  });

  it('rejects a non-string path as an argument error', () => {
    assertArgError(() => readSafetensorsHeader(undefined), 'filePath');
    assertArgError(() => readSafetensorsHeader(''), 'filePath');
  });
});

describe('checkpoint: findWeightsFile', () => {
  it('prefers model.safetensors, then pytorch_model.bin, else null', () => {
    const tiny = tinyEpsilonDir();
    assert.deepStrictEqual(findWeightsFile(tiny), { path: path.join(tiny, 'model.safetensors'), format: 'safetensors' });
    assert.deepStrictEqual(findWeightsFile(BROWN_MODEL), { path: BROWN_WEIGHTS, format: 'safetensors' });
    assert.strictEqual(findWeightsFile(TINY), null); // a config-only fixture directory
    const dir = path.join(tmp, 'weights');
    fs.mkdirSync(dir);
    assert.strictEqual(findWeightsFile(dir), null);
    fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), 'x');
    assert.deepStrictEqual(findWeightsFile(dir), { path: path.join(dir, 'pytorch_model.bin'), format: 'pytorch' });
    fs.writeFileSync(path.join(dir, 'model.safetensors'), 'x');
    assert.deepStrictEqual(findWeightsFile(dir), { path: path.join(dir, 'model.safetensors'), format: 'safetensors' });
    assert.strictEqual(findWeightsFile(path.join(tmp, 'no-such-dir')), null);
    const dir2 = path.join(tmp, 'weights-dir');
    fs.mkdirSync(path.join(dir2, 'model.safetensors'), { recursive: true }); // a directory is not a weights file
    assert.strictEqual(findWeightsFile(dir2), null);
  });
});

describe('config', () => {
  describe('readConfigFile', () => {
    it('reads JSON and the same config as YAML (.yaml and .yml)', () => {
      const json = readConfigFile(path.join(TINY, 'config.json'));
      assert.strictEqual(json.model_type, 'epsilon_hybrid');
      assert.strictEqual(json.model.hidden_size, 32);
      const y = path.join(tmp, 'config.yaml');
      fs.writeFileSync(y, YAML.stringify(json));
      assert.deepStrictEqual(readConfigFile(y), json);
      const y2 = path.join(tmp, 'config.yml');
      fs.writeFileSync(y2, '# hydra style\nmodel_type: gamma_hybrid\nmodel:\n  hidden_size: 64\n  n_heads: 4\ngraph:\n  type: QGamma\n');
      assert.deepStrictEqual(readConfigFile(y2), { model_type: 'gamma_hybrid', model: { hidden_size: 64, n_heads: 4 }, graph: { type: 'QGamma' } });
    });

    it('uses a top-level "config" object (PyTorchModelHubMixin)', () => {
      const p = path.join(tmp, 'mixin.json');
      fs.writeFileSync(p, JSON.stringify({ config: { model_type: 'epsilon_hybrid', model: { hidden_size: 64 } } }));
      assert.deepStrictEqual(readConfigFile(p), { model_type: 'epsilon_hybrid', model: { hidden_size: 64 } });
      const p2 = path.join(tmp, 'mixin2.json');
      fs.writeFileSync(p2, JSON.stringify({ config: 'not an object', model_type: 'epsilon_hybrid' }));
      assert.deepStrictEqual(readConfigFile(p2), { config: 'not an object', model_type: 'epsilon_hybrid' });
    });

    it('refuses non-object configs, bad syntax, missing files and directories', () => {
      const cases = [
        ['arr.json', '[1, 2]', 'array'],
        ['num.json', '42', 'number'],
        ['null.json', 'null', 'null'],
        ['str.json', '"hello"', 'string'],
        ['scalar.yaml', 'just a string\n', 'string'],
        ['list.yaml', '- a\n- b\n', 'array'],
        ['empty.yaml', '', 'null'],
      ];
      for (const [name, text, kind] of cases) {
        const p = path.join(tmp, name);
        fs.writeFileSync(p, text);
        assertBadFile(() => readConfigFile(p), p, 'top level must be an object', kind);
      }
      const bad = path.join(tmp, 'bad.json');
      fs.writeFileSync(bad, '{"model": ');
      assertBadFile(() => readConfigFile(bad), 'not valid JSON');
      const badY = path.join(tmp, 'bad.yaml');
      fs.writeFileSync(badY, 'model: [1, 2\n  x: }');
      assertBadFile(() => readConfigFile(badY), 'not valid YAML');
      assertBadFile(() => readConfigFile(path.join(tmp, 'missing.json')), 'does not exist');
      assertBadFile(() => readConfigFile(tmp), 'directory');
    });
  });

  describe('detectFamily', () => {
    it('uses model_type, then graph.type, else epsilon', () => {
      assert.strictEqual(detectFamily({ model_type: 'gamma_hybrid' }, 'auto'), 'gamma_hybrid');
      assert.strictEqual(detectFamily({ model_type: 'epsilon_hybrid', graph: { type: 'QGamma' } }, 'auto'), 'epsilon_hybrid');
      assert.strictEqual(detectFamily({ graph: { type: 'QGamma' } }, 'auto'), 'gamma_hybrid');
      assert.strictEqual(detectFamily({ graph: { type: 'gamma' } }, 'auto'), 'gamma_hybrid');
      assert.strictEqual(detectFamily({ model_type: 'something_else', graph: { type: 'QGamma' } }, 'auto'), 'gamma_hybrid');
      assert.strictEqual(detectFamily({ graph: { type: 'absorb' } }, 'auto'), 'epsilon_hybrid');
      assert.strictEqual(detectFamily({}, 'auto'), 'epsilon_hybrid');
      assert.strictEqual(detectFamily(readConfigFile(path.join(GAMMA, 'config.json')), 'auto'), 'gamma_hybrid');
      assert.strictEqual(detectFamily(readConfigFile(path.join(BROWN, 'config.json')), 'auto'), 'epsilon_hybrid');
    });

    it('a requested family wins over the config', () => {
      assert.strictEqual(detectFamily({ model_type: 'gamma_hybrid' }, 'epsilon_hybrid'), 'epsilon_hybrid');
      assert.strictEqual(detectFamily({ model_type: 'epsilon_hybrid' }, 'gamma_hybrid'), 'gamma_hybrid');
      assertArgError(() => detectFamily({}, 'delta_hybrid'), 'family', 'delta_hybrid');
    });
  });

  describe('architectureOf', () => {
    it('tiny-epsilon', () => {
      const cfg = readConfigFile(path.join(TINY, 'config.json'));
      const a = architectureOf(cfg, 'epsilon_hybrid');
      assert.deepStrictEqual(
        { ...a },
        { family: 'epsilon_hybrid', vocabSize: 50258, hiddenSize: 32, nHeads: 2, nBlocks: 2, length: 128, maskId: 50257, hasMask: true, tokens: 50257, condDim: 128 },
      );
    });

    it('brown-epsilon', () => {
      const a = architectureOf(readConfigFile(path.join(BROWN, 'config.json')), 'epsilon_hybrid');
      assert.strictEqual(a.vocabSize, 50258);
      assert.strictEqual(a.hiddenSize, 128);
      assert.strictEqual(a.nHeads, 4);
      assert.strictEqual(a.nBlocks, 4);
      assert.strictEqual(a.length, 256);
    });

    it('tiny-gamma (QGamma graph: has a mask state)', () => {
      const cfg = readConfigFile(path.join(GAMMA, 'config.json'));
      const a = architectureOf(cfg, detectFamily(cfg, 'auto'));
      assert.deepStrictEqual(
        { ...a },
        { family: 'gamma_hybrid', vocabSize: 50258, hiddenSize: 32, nHeads: 2, nBlocks: 2, length: 128, maskId: 50257, hasMask: true, tokens: 50257, condDim: 128 },
      );
    });

    it('defaults and the vocabulary rule', () => {
      const a = architectureOf({ model_type: 'epsilon_hybrid' }, 'epsilon_hybrid');
      assert.deepStrictEqual([a.hiddenSize, a.nHeads, a.nBlocks, a.length, a.vocabSize, a.maskId], [768, 12, 12, 1024, 50258, 50257]);
      const u = architectureOf({ model_type: 'gamma_hybrid', graph: { type: 'uniform' } }, 'gamma_hybrid');
      assert.deepStrictEqual([u.vocabSize, u.hasMask, u.maskId], [50257, false, -1]);
      for (const gt of ['absorb', 'hybrid', 'QGamma']) {
        assert.strictEqual(architectureOf({ graph: { type: gt } }, 'gamma_hybrid').vocabSize, 50258, gt);
      }
      assert.strictEqual(architectureOf({ tokens: 100, model_type: 'epsilon_hybrid' }, 'epsilon_hybrid').vocabSize, 101);
      assert.strictEqual(architectureOf({ tokens: 100, tokenizer: { tokens: 200 }, model_type: 'epsilon_hybrid' }, 'epsilon_hybrid').vocabSize, 201);
    });

    it('refuses bad sizes, naming the key and value', () => {
      const base = (model) => ({ model_type: 'epsilon_hybrid', model });
      assertBadFile(() => architectureOf(base({ hidden_size: 0 }), 'epsilon_hybrid'), 'model.hidden_size', '0');
      assertBadFile(() => architectureOf(base({ hidden_size: '768' }), 'epsilon_hybrid'), 'model.hidden_size', '"768"');
      assertBadFile(() => architectureOf(base({ n_heads: -2 }), 'epsilon_hybrid'), 'model.n_heads', '-2');
      assertBadFile(() => architectureOf(base({ n_blocks: 1.5 }), 'epsilon_hybrid'), 'model.n_blocks', '1.5');
      assertBadFile(() => architectureOf(base({ length: 'long' }), 'epsilon_hybrid'), 'model.length');
      assertBadFile(() => architectureOf(base({ hidden_size: 770, n_heads: 12 }), 'epsilon_hybrid'), 'model.hidden_size (770)', 'model.n_heads (12)');
      assertBadFile(() => architectureOf(base({ hidden_size: 36, n_heads: 4 }), 'epsilon_hybrid'), 'head dimension', '9', 'even');
      assertBadFile(() => architectureOf({ model: 5 }, 'epsilon_hybrid'), 'model', '5');
      assertBadFile(() => architectureOf({ tokenizer: { tokens: 0 } }, 'epsilon_hybrid'), 'tokenizer.tokens', '0');
      assertBadFile(() => architectureOf({ tokens: 'x' }, 'epsilon_hybrid'), 'tokens', '"x"');
    });
  });

  describe('checkWeightsAgainstArchitecture', () => {
    it('passes on the fixtures', () => {
      const pairs = [
        [path.join(TINY, 'config.json'), path.join(tinyEpsilonDir(), 'model.safetensors')],
        [path.join(BROWN, 'config.json'), BROWN_WEIGHTS],
        [path.join(BROWN_MODEL, 'config.json'), BROWN_WEIGHTS],
        [path.join(GAMMA, 'config.json'), path.join(tinyGammaDir(), 'model.safetensors')],
      ];
      for (const [configPath, weightsPath] of pairs) {
        const cfg = readConfigFile(configPath);
        const arch = architectureOf(cfg, detectFamily(cfg, 'auto'));
        checkWeightsAgainstArchitecture(readSafetensorsHeader(weightsPath), arch);
      }
      // the gamma checkpoint also holds every epsilon key
      const g = architectureOf(readConfigFile(path.join(GAMMA, 'config.json')), 'epsilon_hybrid');
      checkWeightsAgainstArchitecture(readSafetensorsHeader(path.join(tinyGammaDir(), 'model.safetensors')), g);
    });

    it('an epsilon checkpoint is not a gamma one', () => {
      const a = architectureOf(readConfigFile(path.join(TINY, 'config.json')), 'gamma_hybrid');
      assertBadFile(() => checkWeightsAgainstArchitecture(readSafetensorsHeader(path.join(tinyEpsilonDir(), 'model.safetensors')), a), 'adaLN_modulation', 'missing');
      // nor is the real brown-epsilon one
      const b = architectureOf(readConfigFile(path.join(BROWN, 'config.json')), 'gamma_hybrid');
      assertBadFile(() => checkWeightsAgainstArchitecture(readSafetensorsHeader(BROWN_WEIGHTS), b), BROWN_WEIGHTS, '12 tensors are missing', 'blocks.0.adaLN_modulation.weight', 'and 7 more');
    });

    it('reports missing keys (first few and the count)', () => {
      const made = w.makeEpsilonCheckpoint(path.join(tmp, 'missing-one'), { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 16, vocabTokens: 20, omit: ['blocks.0.attn_out.weight'] });
      const arch = architectureOf(readConfigFile(made.configPath), 'epsilon_hybrid');
      const h = readSafetensorsHeader(made.weightsPath);
      assertBadFile(() => checkWeightsAgainstArchitecture(h, arch), made.weightsPath, '1 tensor is missing', 'blocks.0.attn_out.weight');
      // the config says 3 blocks, the file has 2: 16 missing
      const tiny = readSafetensorsHeader(path.join(tinyEpsilonDir(), 'model.safetensors'));
      const arch3 = { ...architectureOf(readConfigFile(path.join(TINY, 'config.json')), 'epsilon_hybrid'), nBlocks: 4 };
      assertBadFile(() => checkWeightsAgainstArchitecture(tiny, arch3), '16 tensors are missing', 'blocks.2.norm1.weight', 'and 11 more');
    });

    it('inv_freq is optional, but checked when present', () => {
      const made = w.makeEpsilonCheckpoint(path.join(tmp, 'no-inv'), { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 16, vocabTokens: 20, invFreq: false });
      const arch = architectureOf(readConfigFile(made.configPath), 'epsilon_hybrid');
      checkWeightsAgainstArchitecture(readSafetensorsHeader(made.weightsPath), arch);
      const p = path.join(tmp, 'bad-inv.safetensors');
      const tensors = {};
      for (const [name, shape] of w.epsilonShapes({ hiddenSize: 8, nBlocks: 1, vocabSize: 21 })) tensors[name] = { dtype: 'F32', shape };
      tensors['rotary_emb.inv_freq'] = { dtype: 'F32', shape: [4] };
      w.writeSafetensors(p, tensors);
      assertBadFile(() => checkWeightsAgainstArchitecture(readSafetensorsHeader(p), arch), 'rotary_emb.inv_freq', '[4]', 'expected [2]');
    });

    it('reports the first wrong shape, with expected and actual', () => {
      const tiny = readSafetensorsHeader(path.join(tinyEpsilonDir(), 'model.safetensors'));
      const arch = architectureOf(readConfigFile(path.join(TINY, 'config.json')), 'epsilon_hybrid');
      assertBadFile(
        () => checkWeightsAgainstArchitecture(tiny, { ...arch, hiddenSize: 64 }),
        'vocab_embed.embedding',
        'shape [50258, 32]',
        'expected [50258, 64]',
      );
      assertBadFile(
        () => checkWeightsAgainstArchitecture(tiny, { ...arch, vocabSize: 50257 }),
        'vocab_embed.embedding',
        'expected [50257, 32]',
      );
      const p = path.join(tmp, 'bad-shape.safetensors');
      const tensors = {};
      for (const [name, shape] of w.epsilonShapes({ hiddenSize: 8, nBlocks: 2, vocabSize: 21 })) tensors[name] = { dtype: 'BF16', shape };
      tensors['blocks.1.mlp.0.weight'] = { dtype: 'BF16', shape: [8, 32] }; // transposed
      w.writeSafetensors(p, tensors);
      const arch2 = { family: 'epsilon_hybrid', vocabSize: 21, hiddenSize: 8, nHeads: 2, nBlocks: 2 };
      assertBadFile(() => checkWeightsAgainstArchitecture(readSafetensorsHeader(p), arch2), 'blocks.1.mlp.0.weight', 'shape [8, 32]', 'expected [32, 8]');
    });

    it('extra keys are fine', () => {
      const p = path.join(tmp, 'extra.safetensors');
      const tensors = {};
      for (const [name, shape] of w.epsilonShapes({ hiddenSize: 8, nBlocks: 1, vocabSize: 21 })) tensors[name] = { dtype: 'F32', shape };
      tensors['something.else'] = { dtype: 'F16', shape: [3] };
      w.writeSafetensors(p, tensors);
      checkWeightsAgainstArchitecture(readSafetensorsHeader(p), { family: 'epsilon_hybrid', vocabSize: 21, hiddenSize: 8, nHeads: 2, nBlocks: 1 });
    });
  });
});
