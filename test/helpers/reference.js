'use strict';
/**
 * Reads the upstream reference tensors (test/fixtures/<name>/reference.safetensors: I64 and F32)
 * and shared paths for the tests.
 */
const fs = require('fs');
const os = require('os');
const path = require('path');

const ROOT = path.join(__dirname, '..', '..');
const DEMO_MODEL = path.join(ROOT, 'models', 'brown-epsilon');
const FIXTURES = path.join(ROOT, 'test', 'fixtures');

/** name → { shape, data: BigInt64Array | Float32Array } */
function readReference(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [b, end] = e.data_offsets;
    const bytes = buf.buffer.slice(buf.byteOffset + 8 + n + b, buf.byteOffset + 8 + n + end);
    if (e.dtype === 'I64') out[name] = { shape: e.shape, data: new BigInt64Array(bytes) };
    else if (e.dtype === 'F32') out[name] = { shape: e.shape, data: new Float32Array(bytes) };
    else throw new Error(`unexpected dtype ${e.dtype} in ${file}`);
  }
  return out;
}

/** number[][] rows of an I64 [rows, cols] reference tensor */
function rowsOf(t) {
  const [r, c] = t.shape;
  const rows = [];
  for (let i = 0; i < r; i++) rows.push(Array.from(t.data.subarray(i * c, (i + 1) * c), Number));
  return rows;
}

function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `hdlm-${prefix}-`));
}

module.exports = { ROOT, DEMO_MODEL, FIXTURES, readReference, rowsOf, tempDir };
