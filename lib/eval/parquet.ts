/**
 * A small Parquet reader (issue 8: evaluation datasets from the Hugging Face Hub): reads one
 * top-level string column (BYTE_ARRAY) of a Parquet file by name, the way the Hub stores its
 * datasets. It handles what those files use:
 *
 *  - the footer (FileMetaData, RowGroup, ColumnChunk, ColumnMetaData) and page headers, in the
 *    Thrift compact protocol;
 *  - data pages v1 and v2 and dictionary pages;
 *  - PLAIN and RLE_DICTIONARY / PLAIN_DICTIONARY values;
 *  - definition levels (RLE / bit-packed hybrid) of an OPTIONAL column: nulls are returned as null;
 *  - compression UNCOMPRESSED, SNAPPY (decompressor below), GZIP and BROTLI (node:zlib), and ZSTD
 *    where node:zlib has it (Node >= 22.15).
 *
 * Anything else (other encodings such as DELTA_BYTE_ARRAY, LZ4 / LZO, nested or repeated columns,
 * encrypted files, columns in other files) is refused with an HDLM_UNSUPPORTED error naming the
 * feature; a malformed or truncated file is an HDLM_BAD_FILE error. Strings must be valid UTF-8.
 */
import * as fs from 'fs';
import * as zlib from 'zlib';
import { TextDecoder } from 'util';
import { HdlmError } from '../errors';

// ---------------------------------------------------------------------------------------------
// errors

function bad(where: string, what: string): HdlmError {
  return new HdlmError('HDLM_BAD_FILE', `${where}: not a valid Parquet file (${what})`);
}

function unsupported(where: string, what: string): HdlmError {
  return new HdlmError('HDLM_UNSUPPORTED', `${where}: ${what} is not supported by hdlm's Parquet reader`);
}

// ---------------------------------------------------------------------------------------------
// Thrift compact protocol: a generic decoder to { fieldId: value } structs

type TValue = boolean | number | bigint | Uint8Array | TValue[] | TStruct | Map<TValue, TValue>;
type TStruct = Map<number, TValue>;

const CT_STOP = 0;
const CT_TRUE = 1;
const CT_FALSE = 2;
const CT_BYTE = 3;
const CT_I16 = 4;
const CT_I32 = 5;
const CT_I64 = 6;
const CT_DOUBLE = 7;
const CT_BINARY = 8;
const CT_LIST = 9;
const CT_SET = 10;
const CT_MAP = 11;
const CT_STRUCT = 12;
const MAX_DEPTH = 32;

class ThriftReader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
    readonly where: string,
  ) {
    this.pos = start;
  }

  private fail(what: string): never {
    throw bad(this.where, `${what} at byte ${this.pos}`);
  }

  byte(): number {
    if (this.pos >= this.end) this.fail('truncated metadata');
    return this.buf[this.pos++];
  }

  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.byte();
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 63n) this.fail('varint too long');
    }
  }

  zigzag(): bigint {
    const u = this.varint();
    return (u >> 1n) ^ -(u & 1n);
  }

  smallInt(): number {
    const v = this.zigzag();
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) return Number.NaN;
    return Number(v);
  }

  value(type: number, depth: number): TValue {
    if (depth > MAX_DEPTH) this.fail('metadata nested too deeply');
    switch (type) {
      case CT_TRUE:
        return true;
      case CT_FALSE:
        return false;
      case CT_BYTE: {
        const b = this.byte();
        return b > 127 ? b - 256 : b;
      }
      case CT_I16:
      case CT_I32:
        return this.smallInt();
      case CT_I64:
        return this.zigzag();
      case CT_DOUBLE: {
        if (this.pos + 8 > this.end) this.fail('truncated metadata');
        const v = Buffer.from(this.buf.buffer, this.buf.byteOffset + this.pos, 8).readDoubleLE(0);
        this.pos += 8;
        return v;
      }
      case CT_BINARY: {
        const n = this.varint();
        if (n > BigInt(this.end - this.pos)) this.fail('string longer than the metadata');
        const out = this.buf.subarray(this.pos, this.pos + Number(n));
        this.pos += Number(n);
        return out;
      }
      case CT_LIST:
      case CT_SET: {
        const h = this.byte();
        let size = h >> 4;
        const elem = h & 0x0f;
        if (size === 15) {
          const n = this.varint();
          if (n > BigInt(this.end - this.pos)) this.fail('list longer than the metadata');
          size = Number(n);
        }
        const out: TValue[] = [];
        for (let i = 0; i < size; i++) {
          // booleans inside containers are one byte each (1 = true, 2 = false)
          out.push(elem === CT_TRUE || elem === CT_FALSE ? this.byte() === CT_TRUE : this.value(elem, depth + 1));
        }
        return out;
      }
      case CT_MAP: {
        const n = this.varint();
        if (n > BigInt(this.end - this.pos)) this.fail('map longer than the metadata');
        const out = new Map<TValue, TValue>();
        if (n === 0n) return out;
        const kv = this.byte();
        for (let i = 0; i < Number(n); i++) {
          const read = (t: number): TValue => (t === CT_TRUE || t === CT_FALSE ? this.byte() === CT_TRUE : this.value(t, depth + 1));
          out.set(read(kv >> 4), read(kv & 0x0f));
        }
        return out;
      }
      case CT_STRUCT:
        return this.struct(depth + 1);
      default:
        return this.fail(`unknown Thrift type ${type}`);
    }
  }

  struct(depth = 0): TStruct {
    const out: TStruct = new Map();
    let last = 0;
    for (;;) {
      const h = this.byte();
      const type = h & 0x0f;
      if (type === CT_STOP) return out;
      const delta = h >> 4;
      const id = delta === 0 ? this.smallInt() : last + delta;
      if (!Number.isInteger(id)) this.fail('bad field id');
      out.set(id, this.value(type, depth));
      last = id;
    }
  }
}

// typed access to decoded structs

function num(s: TStruct, id: number, where: string, what: string, required: true): number;
function num(s: TStruct, id: number, where: string, what: string, required?: false): number | undefined;
function num(s: TStruct, id: number, where: string, what: string, required = false): number | undefined {
  const v = s.get(id);
  if (v === undefined) {
    if (required) throw bad(where, `${what} is missing`);
    return undefined;
  }
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < 0n) throw bad(where, `${what} is out of range (${v})`);
    return Number(v);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(where, `${what} is not a number`);
  return v;
}

function struct(s: TStruct, id: number): TStruct | undefined {
  const v = s.get(id);
  return v instanceof Map ? (v as TStruct) : undefined;
}

function list(s: TStruct, id: number): TValue[] {
  const v = s.get(id);
  return Array.isArray(v) ? v : [];
}

function str(v: TValue | undefined): string | undefined {
  return v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('utf8') : undefined;
}

// ---------------------------------------------------------------------------------------------
// format constants

const TYPE_NAMES = ['BOOLEAN', 'INT32', 'INT64', 'INT96', 'FLOAT', 'DOUBLE', 'BYTE_ARRAY', 'FIXED_LEN_BYTE_ARRAY'];
const BYTE_ARRAY = 6;
const REQUIRED = 0;
const OPTIONAL = 1;
const CODEC_NAMES = ['UNCOMPRESSED', 'SNAPPY', 'GZIP', 'LZO', 'BROTLI', 'LZ4', 'ZSTD', 'LZ4_RAW'];
const ENCODING_NAMES: Record<number, string> = {
  0: 'PLAIN', 2: 'PLAIN_DICTIONARY', 3: 'RLE', 4: 'BIT_PACKED', 5: 'DELTA_BINARY_PACKED', 6: 'DELTA_LENGTH_BYTE_ARRAY',
  7: 'DELTA_BYTE_ARRAY', 8: 'RLE_DICTIONARY', 9: 'BYTE_STREAM_SPLIT',
};
const PLAIN = 0;
const PLAIN_DICTIONARY = 2;
const RLE = 3;
const RLE_DICTIONARY = 8;
const DATA_PAGE = 0;
const DICTIONARY_PAGE = 2;
const DATA_PAGE_V2 = 3;
const PAGE_TYPE_NAMES = ['DATA_PAGE', 'INDEX_PAGE', 'DICTIONARY_PAGE', 'DATA_PAGE_V2'];
const MAGIC = 0x31524150; // 'PAR1' little-endian

function encodingName(e: number): string {
  return ENCODING_NAMES[e] ?? `encoding ${e}`;
}

// ---------------------------------------------------------------------------------------------
// Snappy (raw block format, as Parquet uses it)

/** Decompresses a raw Snappy block; `expected` (when known) must equal its declared length. */
export function snappyDecompress(input: Uint8Array, expected?: number, where = 'snappy data'): Uint8Array {
  let pos = 0;
  let length = 0;
  for (let shift = 0; ; shift += 7) {
    if (pos >= input.length || shift > 28) throw bad(where, 'bad Snappy length header');
    const b = input[pos++];
    length += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) break;
  }
  if (length > 0x7fffffff) throw bad(where, 'Snappy block too large');
  if (expected !== undefined && length !== expected) throw bad(where, `Snappy block of ${length} bytes where the page header says ${expected}`);
  const out = new Uint8Array(length);
  let o = 0;
  while (pos < input.length) {
    const tag = input[pos++];
    const kind = tag & 3;
    if (kind === 0) {
      let len = tag >> 2;
      if (len >= 60) {
        const extra = len - 59;
        if (pos + extra > input.length) throw bad(where, 'truncated Snappy literal');
        len = 0;
        for (let i = 0; i < extra; i++) len += input[pos + i] * 2 ** (8 * i);
        pos += extra;
      }
      len += 1;
      if (pos + len > input.length || o + len > length) throw bad(where, 'Snappy literal out of bounds');
      out.set(input.subarray(pos, pos + len), o);
      pos += len;
      o += len;
    } else {
      let len: number;
      let offset: number;
      if (kind === 1) {
        if (pos + 1 > input.length) throw bad(where, 'truncated Snappy copy');
        len = 4 + ((tag >> 2) & 7);
        offset = ((tag >> 5) << 8) | input[pos++];
      } else if (kind === 2) {
        if (pos + 2 > input.length) throw bad(where, 'truncated Snappy copy');
        len = (tag >> 2) + 1;
        offset = input[pos] | (input[pos + 1] << 8);
        pos += 2;
      } else {
        if (pos + 4 > input.length) throw bad(where, 'truncated Snappy copy');
        len = (tag >> 2) + 1;
        offset = (input[pos] | (input[pos + 1] << 8) | (input[pos + 2] << 16)) + input[pos + 3] * 2 ** 24;
        pos += 4;
      }
      if (offset === 0 || offset > o || o + len > length) throw bad(where, 'Snappy copy out of bounds');
      if (offset >= len) {
        out.copyWithin(o, o - offset, o - offset + len);
        o += len;
      } else {
        for (let i = 0; i < len; i++, o++) out[o] = out[o - offset]; // overlapping copy: byte by byte
      }
    }
  }
  if (o !== length) throw bad(where, `Snappy block ends after ${o} of ${length} bytes`);
  return out;
}

function decompress(codec: number, data: Uint8Array, size: number, where: string): Uint8Array {
  let out: Uint8Array;
  switch (codec) {
    case 0:
      out = data;
      break;
    case 1:
      return snappyDecompress(data, size, where);
    case 2:
    case 4:
    case 6: {
      const z = zlib as unknown as { zstdDecompressSync?: (b: Uint8Array) => Buffer };
      if (codec === 6 && typeof z.zstdDecompressSync !== 'function') {
        throw unsupported(where, `ZSTD compression on Node ${process.versions.node} (node:zlib has ZSTD from Node 22.15)`);
      }
      try {
        out = codec === 2 ? zlib.gunzipSync(data) : codec === 4 ? zlib.brotliDecompressSync(data) : (z.zstdDecompressSync as (b: Uint8Array) => Buffer)(data);
      } catch (e) {
        throw bad(where, `${CODEC_NAMES[codec]} data does not decompress: ${(e as Error).message}`);
      }
      break;
    }
    default:
      throw unsupported(where, `${CODEC_NAMES[codec] ?? `compression codec ${codec}`} compression`);
  }
  if (out.length !== size) throw bad(where, `page decompresses to ${out.length} bytes where its header says ${size}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// levels and values

/** Decodes `count` values of the RLE / bit-packed hybrid encoding from data[pos, end). */
function readHybrid(data: Uint8Array, pos: number, end: number, bitWidth: number, count: number, where: string): Uint32Array {
  if (bitWidth < 0 || bitWidth > 32) throw bad(where, `bit width ${bitWidth}`);
  const out = new Uint32Array(count);
  let n = 0;
  const byteWidth = (bitWidth + 7) >> 3;
  while (n < count) {
    let header = 0;
    for (let shift = 0; ; shift += 7) {
      if (pos >= end || shift > 28) throw bad(where, 'truncated RLE / bit-packed run');
      const b = data[pos++];
      header += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) break;
    }
    if (header % 2 === 0) {
      const run = header / 2;
      if (pos + byteWidth > end) throw bad(where, 'truncated RLE run');
      let v = 0;
      for (let i = 0; i < byteWidth; i++) v += data[pos + i] * 2 ** (8 * i);
      pos += byteWidth;
      const take = Math.min(run, count - n);
      out.fill(v, n, n + take);
      n += take;
    } else {
      const values = ((header - 1) / 2) * 8;
      const bytes = (values * bitWidth) / 8;
      if (pos + bytes > end) {
        // the last run may be cut short where the values it pads are not needed
        if (pos + Math.ceil(((count - n) * bitWidth) / 8) > end) throw bad(where, 'truncated bit-packed run');
      }
      const take = Math.min(values, count - n);
      let bit = 0;
      for (let i = 0; i < take; i++) {
        let v = 0;
        for (let b = 0; b < bitWidth; b++, bit++) {
          if ((data[pos + (bit >> 3)] >> (bit & 7)) & 1) v += 2 ** b;
        }
        out[n++] = v;
      }
      pos += bytes;
    }
  }
  return out;
}

/** PLAIN BYTE_ARRAY values: 4-byte little-endian length, then the bytes. */
function readPlainStrings(data: Uint8Array, pos: number, end: number, count: number, where: string, decoder: TextDecoder): string[] {
  const out = new Array<string>(count);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < count; i++) {
    if (pos + 4 > end) throw bad(where, 'truncated PLAIN value');
    const len = view.getUint32(pos, true);
    pos += 4;
    if (pos + len > end) throw bad(where, 'PLAIN value runs past the page');
    out[i] = utf8(decoder, data.subarray(pos, pos + len), where);
    pos += len;
  }
  return out;
}

function utf8(decoder: TextDecoder, bytes: Uint8Array, where: string): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw bad(where, 'a string value is not valid UTF-8');
  }
}

// ---------------------------------------------------------------------------------------------
// the file

export interface ParquetColumnInfo {
  name: string;
  /** physical type (BYTE_ARRAY, INT64, ...), or 'group' for nested columns */
  type: string;
  repetition: 'required' | 'optional' | 'repeated';
}

export interface ParquetMetadata {
  numRows: number;
  rowGroups: number;
  createdBy: string | null;
  /** top-level columns */
  columns: ParquetColumnInfo[];
}

interface Footer {
  meta: TStruct;
  schema: TStruct[];
}

function readFooter(buf: Uint8Array, where: string): Footer {
  if (buf.length < 12) throw bad(where, `only ${buf.length} bytes`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw bad(where, 'no PAR1 magic at the start');
  const tail = view.getUint32(buf.length - 4, true);
  if (tail === 0x45524150) throw unsupported(where, 'an encrypted file (PARE footer)');
  if (tail !== MAGIC) throw bad(where, 'no PAR1 magic at the end: truncated or not Parquet');
  const len = view.getUint32(buf.length - 8, true);
  if (len > buf.length - 12) throw bad(where, `footer length ${len} larger than the file`);
  const start = buf.length - 8 - len;
  const meta = new ThriftReader(buf, start, buf.length - 8, where).struct();
  const schema = list(meta, 2).filter((s): s is TStruct => s instanceof Map);
  if (schema.length === 0) throw bad(where, 'no schema in the footer');
  return { meta, schema };
}

/** Top-level columns: the schema's root children (skipping the subtrees of nested groups). */
function topLevel(schema: TStruct[], where: string): { el: TStruct; name: string; isGroup: boolean }[] {
  const out: { el: TStruct; name: string; isGroup: boolean }[] = [];
  const rootChildren = num(schema[0], 5, where, 'the root schema element\'s num_children') ?? 0;
  let i = 1;
  const skip = (): void => {
    // skips the element at i and its subtree
    if (i >= schema.length) throw bad(where, 'schema ends early');
    const children = num(schema[i], 5, where, 'num_children') ?? 0;
    i++;
    for (let c = 0; c < children; c++) skip();
  };
  for (let c = 0; c < rootChildren; c++) {
    if (i >= schema.length) throw bad(where, 'schema ends early');
    const el = schema[i];
    const name = str(el.get(4)) ?? '';
    const isGroup = (num(el, 5, where, 'num_children') ?? 0) > 0 || el.get(1) === undefined;
    out.push({ el, name, isGroup });
    skip();
  }
  return out;
}

function columnInfo(c: { el: TStruct; name: string; isGroup: boolean }, where: string): ParquetColumnInfo {
  const rep = num(c.el, 3, where, 'repetition_type') ?? REQUIRED;
  const t = num(c.el, 1, where, 'type');
  return {
    name: c.name,
    type: c.isGroup ? 'group' : (TYPE_NAMES[t ?? -1] ?? `type ${t}`),
    repetition: rep === OPTIONAL ? 'optional' : rep === REQUIRED ? 'required' : 'repeated',
  };
}

/** The footer's summary: rows, row groups, writer, top-level columns. */
export function parquetMetadata(data: Uint8Array, where = 'Parquet data'): ParquetMetadata {
  const { meta, schema } = readFooter(data, where);
  const createdBy = str(meta.get(6)) ?? null;
  return {
    numRows: num(meta, 3, where, 'num_rows', true),
    rowGroups: list(meta, 4).length,
    createdBy,
    columns: topLevel(schema, where).map((c) => columnInfo(c, where)),
  };
}

/**
 * The values of the top-level string column `column`, row by row (null where the column is null),
 * over every row group. `where` names the file in error messages.
 */
export function readParquetStringColumn(data: Uint8Array, column: string, where = 'Parquet data'): (string | null)[] {
  const { meta, schema } = readFooter(data, where);
  const cols = topLevel(schema, where);
  const idx = cols.findIndex((c) => c.name === column);
  if (idx < 0) {
    throw new HdlmError('HDLM_BAD_FILE', `${where} has no column '${column}' (columns: ${cols.map((c) => c.name).join(', ') || 'none'})`);
  }
  const info = columnInfo(cols[idx], where);
  if (info.type === 'group') throw unsupported(where, `column '${column}' is nested (a group), which`);
  if (info.repetition === 'repeated') throw unsupported(where, `column '${column}' is repeated (a list), which`);
  if (info.type !== 'BYTE_ARRAY') {
    throw new HdlmError('HDLM_BAD_FILE', `${where}: column '${column}' holds ${info.type} values, not strings`);
  }
  const maxDef = info.repetition === 'optional' ? 1 : 0;
  // leaf index: count leaves before this column
  let leaf = 0;
  {
    let i = 1;
    const countLeaves = (): number => {
      const children = num(schema[i], 5, where, 'num_children') ?? 0;
      i++;
      if (children === 0) return 1;
      let n = 0;
      for (let c = 0; c < children; c++) n += countLeaves();
      return n;
    };
    for (let c = 0; c < idx; c++) leaf += countLeaves();
  }
  const numRows = num(meta, 3, where, 'num_rows', true);
  const out: (string | null)[] = [];
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  const rowGroups = list(meta, 4);
  for (let g = 0; g < rowGroups.length; g++) {
    const rg = rowGroups[g];
    if (!(rg instanceof Map)) throw bad(where, `row group ${g} is not a struct`);
    const rgWhere = `${where} (row group ${g}, column '${column}')`;
    const rgRows = num(rg as TStruct, 3, rgWhere, 'num_rows', true);
    const chunk = list(rg as TStruct, 1)[leaf];
    if (!(chunk instanceof Map)) throw bad(rgWhere, 'the column chunk is missing');
    readChunk(data, chunk as TStruct, rgRows, maxDef, rgWhere, decoder, out);
  }
  if (out.length !== numRows) throw bad(where, `${out.length} values read where the footer says ${numRows} rows`);
  return out;
}

function readChunk(
  data: Uint8Array, chunk: TStruct, rows: number, maxDef: number, where: string, decoder: TextDecoder, out: (string | null)[],
): void {
  if (chunk.get(1) !== undefined) throw unsupported(where, 'a column stored in another file (file_path)');
  if (chunk.get(8) !== undefined || chunk.get(9) !== undefined) throw unsupported(where, 'an encrypted column');
  const md = struct(chunk, 3);
  if (!md) throw bad(where, 'no column metadata');
  const type = num(md, 1, where, 'type', true);
  if (type !== BYTE_ARRAY) throw bad(where, `column chunk of type ${TYPE_NAMES[type] ?? type}, expected BYTE_ARRAY`);
  const codec = num(md, 4, where, 'codec', true);
  const numValues = num(md, 5, where, 'num_values', true);
  const compressedSize = num(md, 7, where, 'total_compressed_size', true);
  const dataOffset = num(md, 9, where, 'data_page_offset', true);
  const dictOffset = num(md, 11, where, 'dictionary_page_offset');
  const start = dictOffset !== undefined && dictOffset > 0 && dictOffset < dataOffset ? dictOffset : dataOffset;
  const end = start + compressedSize;
  if (end > data.length - 8 || start < 4) throw bad(where, `column chunk [${start}, ${end}) outside the file`);
  if (numValues !== rows) throw bad(where, `${numValues} values for ${rows} rows`);

  let dict: string[] | null = null;
  let read = 0;
  let pos = start;
  while (read < numValues) {
    if (pos >= end) throw bad(where, `column chunk ends after ${read} of ${numValues} values`);
    const th = new ThriftReader(data, pos, end, where);
    const header = th.struct();
    pos = th.pos;
    const pageType = num(header, 1, where, 'page type', true);
    const uncompressed = num(header, 2, where, 'uncompressed_page_size', true);
    const compressed = num(header, 3, where, 'compressed_page_size', true);
    if (pos + compressed > end) throw bad(where, 'page runs past its column chunk');
    const body = data.subarray(pos, pos + compressed);
    pos += compressed;
    const pageWhere = `${where}, page at byte ${pos - compressed}`;

    if (pageType === DICTIONARY_PAGE) {
      const dh = struct(header, 7);
      if (!dh) throw bad(pageWhere, 'dictionary page without its header');
      if (dict !== null) throw bad(pageWhere, 'a second dictionary page');
      const enc = num(dh, 2, pageWhere, 'dictionary encoding', true);
      if (enc !== PLAIN && enc !== PLAIN_DICTIONARY) throw unsupported(pageWhere, `a dictionary page in ${encodingName(enc)} encoding`);
      const n = num(dh, 1, pageWhere, 'dictionary num_values', true);
      const raw = decompress(codec, body, uncompressed, pageWhere);
      dict = readPlainStrings(raw, 0, raw.length, n, pageWhere, decoder);
      continue;
    }
    if (pageType !== DATA_PAGE && pageType !== DATA_PAGE_V2) {
      if (pageType === 1) continue; // index pages carry nothing we need
      throw bad(pageWhere, `unknown page type ${PAGE_TYPE_NAMES[pageType] ?? pageType}`);
    }

    let count: number;
    let encoding: number;
    let defs: Uint32Array | null = null;
    let values: Uint8Array;
    if (pageType === DATA_PAGE) {
      const dh = struct(header, 5);
      if (!dh) throw bad(pageWhere, 'data page without its header');
      count = num(dh, 1, pageWhere, 'num_values', true);
      encoding = num(dh, 2, pageWhere, 'encoding', true);
      const raw = decompress(codec, body, uncompressed, pageWhere);
      let p = 0;
      if (maxDef > 0) {
        const defEnc = num(dh, 3, pageWhere, 'definition_level_encoding', true);
        if (defEnc !== RLE) throw unsupported(pageWhere, `definition levels in ${encodingName(defEnc)} encoding`);
        if (p + 4 > raw.length) throw bad(pageWhere, 'truncated definition levels');
        const len = new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getUint32(p, true);
        p += 4;
        if (p + len > raw.length) throw bad(pageWhere, 'definition levels run past the page');
        defs = readHybrid(raw, p, p + len, 1, count, pageWhere);
        p += len;
      }
      values = raw.subarray(p);
    } else {
      const dh = struct(header, 8);
      if (!dh) throw bad(pageWhere, 'data page v2 without its header');
      count = num(dh, 1, pageWhere, 'num_values', true);
      encoding = num(dh, 4, pageWhere, 'encoding', true);
      const defLen = num(dh, 5, pageWhere, 'definition_levels_byte_length', true);
      const repLen = num(dh, 6, pageWhere, 'repetition_levels_byte_length', true);
      if (repLen !== 0) throw bad(pageWhere, 'repetition levels in a non-repeated column');
      if (defLen > body.length) throw bad(pageWhere, 'definition levels run past the page');
      if (maxDef > 0) defs = readHybrid(body, 0, defLen, 1, count, pageWhere);
      else if (defLen !== 0) throw bad(pageWhere, 'definition levels in a required column');
      const isCompressed = dh.get(7) !== false;
      const rest = body.subarray(defLen);
      values = isCompressed ? decompress(codec, rest, uncompressed - defLen, pageWhere) : rest;
      if (!isCompressed && rest.length !== uncompressed - defLen) throw bad(pageWhere, 'uncompressed page size mismatch');
    }
    if (read + count > numValues) throw bad(pageWhere, `more values than the column chunk's ${numValues}`);
    let present = count;
    if (defs !== null) {
      present = 0;
      for (let i = 0; i < count; i++) {
        if (defs[i] > maxDef) throw bad(pageWhere, `definition level ${defs[i]} above the maximum ${maxDef}`);
        if (defs[i] === maxDef) present++;
      }
    }
    let strings: string[];
    if (encoding === PLAIN) {
      strings = readPlainStrings(values, 0, values.length, present, pageWhere, decoder);
    } else if (encoding === RLE_DICTIONARY || encoding === PLAIN_DICTIONARY) {
      if (dict === null) throw bad(pageWhere, 'dictionary-encoded page without a dictionary page');
      if (present > 0 && values.length < 1) throw bad(pageWhere, 'missing dictionary index bit width');
      const bitWidth = present > 0 ? values[0] : 0;
      const ids = present > 0 ? readHybrid(values, 1, values.length, bitWidth, present, pageWhere) : new Uint32Array(0);
      strings = new Array<string>(present);
      for (let i = 0; i < present; i++) {
        if (ids[i] >= dict.length) throw bad(pageWhere, `dictionary index ${ids[i]} out of range (${dict.length} entries)`);
        strings[i] = dict[ids[i]];
      }
    } else {
      throw unsupported(pageWhere, `${encodingName(encoding)} encoding of string values`);
    }
    if (defs === null) {
      for (const s of strings) out.push(s);
    } else {
      let k = 0;
      for (let i = 0; i < count; i++) out.push(defs[i] === maxDef ? strings[k++] : null);
    }
    read += count;
  }
}

/** readParquetStringColumn for a file on disk. */
export function readParquetFileStrings(file: string, column: string): (string | null)[] {
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch (e) {
    throw new HdlmError('HDLM_BAD_FILE', `${file}: ${(e as Error).message}`, { cause: e });
  }
  return readParquetStringColumn(data, column, file);
}
