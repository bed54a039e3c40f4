'use strict';
/**
 * A tiny Parquet writer for the tests (independent of the reader, lib/eval/parquet.ts): Thrift
 * compact-protocol footer and page headers, string (BYTE_ARRAY) and INT64 columns, REQUIRED or
 * OPTIONAL (nulls as definition levels, RLE), PLAIN or dictionary (PLAIN dictionary page + RLE_DICTIONARY indices,
 * written as bit-packed runs), data pages v1 or v2, several pages per chunk and several row groups,
 * compression none / snappy (literal-only: a valid Snappy stream that never copies) / gzip.
 *
 * writeParquet({ columns: [{ name, type: 'string'|'int64', values, optional?, dictionary? }],
 *                rowGroupSize?, pageSize?, pageVersion?: 1|2, codec?: 'none'|'snappy'|'gzip',
 *                createdBy? }) -> Buffer
 */
const zlib = require('node:zlib');

// ---- Thrift compact protocol ------------------------------------------------------------------

const T = { TRUE: 1, FALSE: 2, I32: 5, I64: 6, BINARY: 8, LIST: 9, STRUCT: 12 };

function varint(n) {
  let v = BigInt(n);
  const out = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}
function zigzag(n) {
  const v = BigInt(n);
  return varint(v >= 0n ? v << 1n : ((-v) << 1n) - 1n);
}

/** A struct: [[fieldId, kind, value], ...] with kind 'i32' | 'i64' | 'bool' | 'binary' | 'struct' | ['list', elemKind]. */
function struct(fields) {
  const out = [];
  let last = 0;
  for (const [id, kind, value] of fields.filter((f) => f[2] !== undefined).sort((a, b) => a[0] - b[0])) {
    const type = kindType(kind, value);
    const delta = id - last;
    if (delta > 0 && delta <= 15) out.push((delta << 4) | type);
    else out.push(type, ...zigzag(id));
    last = id;
    out.push(...encodeValue(kind, value));
  }
  out.push(0);
  return out;
}
function kindType(kind, value) {
  if (Array.isArray(kind)) return T.LIST;
  return { i32: T.I32, i64: T.I64, bool: value ? T.TRUE : T.FALSE, binary: T.BINARY, struct: T.STRUCT }[kind];
}
function encodeValue(kind, value) {
  if (Array.isArray(kind)) {
    const elem = kind[1];
    const et = kindType(elem, true);
    const out = value.length < 15 ? [(value.length << 4) | et] : [0xf0 | et, ...varint(value.length)];
    for (const v of value) out.push(...encodeValue(elem, v));
    return out;
  }
  switch (kind) {
    case 'i32':
    case 'i64':
      return zigzag(value);
    case 'bool':
      return []; // in the field header
    case 'binary': {
      const b = Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8');
      return [...varint(b.length), ...b];
    }
    case 'struct':
      return value; // already encoded
    default:
      throw new Error(`kind ${kind}`);
  }
}

// ---- encodings --------------------------------------------------------------------------------

/** Snappy stream of literals only (each at most 60 bytes, so every tag is one byte). */
function snappyLiteral(buf) {
  const out = [...varint(buf.length)];
  for (let i = 0; i < buf.length; i += 60) {
    const part = buf.subarray(i, Math.min(buf.length, i + 60));
    out.push((part.length - 1) << 2, ...part);
  }
  return Buffer.from(out);
}

/** RLE / bit-packed hybrid, as bit-packed runs of 8 values (padded with zeros). */
function bitPacked(values, bitWidth) {
  const groups = Math.ceil(values.length / 8);
  if (groups === 0) return Buffer.alloc(0);
  const out = [...varint((groups << 1) | 1)];
  const bytes = Buffer.alloc(groups * bitWidth);
  let bit = 0;
  for (let i = 0; i < groups * 8; i++) {
    const v = i < values.length ? values[i] : 0;
    for (let b = 0; b < bitWidth; b++, bit++) if ((v >> b) & 1) bytes[bit >> 3] |= 1 << (bit & 7);
  }
  return Buffer.concat([Buffer.from(out), bytes]);
}
/** RLE runs (used for definition levels: alternates runs of equal values). */
function rleRuns(values, bitWidth) {
  const out = [];
  const width = Math.ceil(bitWidth / 8);
  for (let i = 0; i < values.length; ) {
    let j = i;
    while (j < values.length && values[j] === values[i]) j++;
    out.push(...varint((j - i) << 1));
    for (let k = 0; k < width; k++) out.push((values[i] >> (8 * k)) & 0xff);
    i = j;
  }
  return Buffer.from(out);
}

function plainStrings(values) {
  return Buffer.concat(
    values.flatMap((s) => {
      const b = Buffer.from(s, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(b.length);
      return [len, b];
    }),
  );
}
function plainInt64(values) {
  const b = Buffer.alloc(8 * values.length);
  values.forEach((v, i) => b.writeBigInt64LE(BigInt(v), 8 * i));
  return b;
}

const CODEC = { none: 0, snappy: 1, gzip: 2 };
function compress(codec, buf) {
  if (codec === 'none') return buf;
  if (codec === 'snappy') return snappyLiteral(buf);
  if (codec === 'gzip') return zlib.gzipSync(buf);
  throw new Error(codec);
}

// ---- file -------------------------------------------------------------------------------------

function writeParquet({ columns, rowGroupSize, pageSize, pageVersion = 1, codec = 'none', createdBy = 'hdlm test writer' }) {
  const numRows = columns[0].values.length;
  rowGroupSize = rowGroupSize || numRows || 1;
  pageSize = pageSize || rowGroupSize;
  const parts = [Buffer.from('PAR1')];
  let offset = 4;
  const rowGroups = [];
  for (let r0 = 0; r0 < Math.max(numRows, 1); r0 += rowGroupSize) {
    const r1 = Math.min(numRows, r0 + rowGroupSize);
    const chunks = [];
    let groupBytes = 0;
    for (const col of columns) {
      const values = col.values.slice(r0, r1);
      const isString = col.type !== 'int64';
      const chunkStart = offset;
      let dictOffset;
      let dict = null;
      const encodings = new Set([0, 3]);
      let uncompressedTotal = 0;
      if (col.dictionary) {
        dict = [...new Set(values.filter((v) => v !== null))];
        const raw = plainStrings(dict);
        const body = compress(codec, raw);
        const header = Buffer.from(
          struct([
            [1, 'i32', 2],
            [2, 'i32', raw.length],
            [3, 'i32', body.length],
            [7, 'struct', struct([[1, 'i32', dict.length], [2, 'i32', 0]])],
          ]),
        );
        dictOffset = offset;
        parts.push(header, body);
        offset += header.length + body.length;
        uncompressedTotal += header.length + raw.length;
        encodings.add(8);
      }
      const dataOffset = offset;
      for (let p0 = 0; p0 < values.length || (p0 === 0 && values.length === 0); p0 += pageSize) {
        const page = values.slice(p0, p0 + pageSize);
        const present = page.filter((v) => v !== null);
        const defs = col.optional ? rleRuns(page.map((v) => (v === null ? 0 : 1)), 1) : Buffer.alloc(0);
        let valueBytes;
        if (dict) {
          const width = Math.max(1, Math.ceil(Math.log2(Math.max(dict.length, 2))));
          valueBytes = Buffer.concat([Buffer.from([width]), bitPacked(present.map((v) => dict.indexOf(v)), width)]);
        } else {
          valueBytes = isString ? plainStrings(present) : plainInt64(present);
        }
        let header;
        let body;
        if (pageVersion === 1) {
          const levels = col.optional ? Buffer.concat([u32(defs.length), defs]) : Buffer.alloc(0);
          const raw = Buffer.concat([levels, valueBytes]);
          body = compress(codec, raw);
          header = struct([
            [1, 'i32', 0],
            [2, 'i32', raw.length],
            [3, 'i32', body.length],
            [5, 'struct', struct([[1, 'i32', page.length], [2, 'i32', dict ? 8 : 0], [3, 'i32', 3], [4, 'i32', 3]])],
          ]);
          uncompressedTotal += raw.length;
        } else {
          const compressedValues = compress(codec, valueBytes);
          body = Buffer.concat([defs, compressedValues]);
          header = struct([
            [1, 'i32', 3],
            [2, 'i32', defs.length + valueBytes.length],
            [3, 'i32', body.length],
            [8, 'struct', struct([
              [1, 'i32', page.length], [2, 'i32', page.length - present.length], [3, 'i32', page.length], [4, 'i32', dict ? 8 : 0],
              [5, 'i32', defs.length], [6, 'i32', 0], [7, 'bool', codec !== 'none'],
            ])],
          ]);
          uncompressedTotal += defs.length + valueBytes.length;
        }
        const hb = Buffer.from(header);
        parts.push(hb, body);
        offset += hb.length + body.length;
        uncompressedTotal += hb.length;
        if (values.length === 0) break;
      }
      const compressedTotal = offset - chunkStart;
      groupBytes += compressedTotal;
      const meta = struct([
        [1, 'i32', isString ? 6 : 2],
        [2, ['list', 'i32'], [...encodings]],
        [3, ['list', 'binary'], [col.name]],
        [4, 'i32', CODEC[codec]],
        [5, 'i64', values.length],
        [6, 'i64', uncompressedTotal],
        [7, 'i64', compressedTotal],
        [9, 'i64', dataOffset],
        [11, 'i64', dictOffset],
      ]);
      chunks.push(struct([[2, 'i64', chunkStart], [3, 'struct', meta]]));
    }
    rowGroups.push(struct([[1, ['list', 'struct'], chunks], [2, 'i64', groupBytes], [3, 'i64', r1 - r0]]));
    if (numRows === 0) break;
  }
  const schema = [
    struct([[4, 'binary', 'schema'], [5, 'i32', columns.length]]),
    ...columns.map((c) =>
      struct([
        [1, 'i32', c.type === 'int64' ? 2 : 6],
        [3, 'i32', c.optional ? 1 : 0],
        [4, 'binary', c.name],
        [6, 'i32', c.type === 'int64' ? undefined : 0], // UTF8
      ]),
    ),
  ];
  const footer = Buffer.from(
    struct([
      [1, 'i32', 1],
      [2, ['list', 'struct'], schema],
      [3, 'i64', numRows],
      [4, ['list', 'struct'], rowGroups],
      [6, 'binary', createdBy],
    ]),
  );
  parts.push(footer, u32(footer.length), Buffer.from('PAR1'));
  return Buffer.concat(parts);
}

function u32(n) {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

module.exports = { writeParquet, snappyLiteral };
