/**
 * Safetensors header parsing. Only the header is read here (8-byte length prefix + JSON); the
 * tensor data is read later by the native side, which trusts the absolute offsets produced here.
 * The parser treats the file as hostile: every problem is an `HdlmError('HDLM_BAD_FILE')` that
 * names the file and the problem, and nothing is allocated from an unchecked length.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { NativeTensorEntry } from '../binding';
import { HdlmError, invalidParameterError } from '../errors';

export type SafetensorsDtype = NativeTensorEntry['dtype'];

export interface SafetensorsHeader {
  /** the file the header was read from */
  path: string;
  /** size of the file in bytes when it was parsed */
  fileSize: number;
  /** absolute offset of the data section (8 + header length) */
  dataStart: number;
  /** every tensor of the file, in data order (ascending begin); offsets are absolute */
  tensors: NativeTensorEntry[];
  /** the optional `__metadata__` string map, or null */
  metadata: Record<string, string> | null;
}

/** Bytes per element of each supported dtype. */
export const DTYPE_SIZES: Readonly<Record<SafetensorsDtype, number>> = Object.freeze({ F32: 4, BF16: 2, F16: 2 });

/** Declared headers above this size are refused before anything is allocated. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

function bad(filePath: string, problem: string, cause?: unknown): HdlmError {
  return new HdlmError('HDLM_BAD_FILE', `Invalid safetensors file "${filePath}": ${problem}`, cause === undefined ? undefined : { cause });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function short(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? s.slice(0, 77) + '...' : s;
}

function fsProblem(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err && err.code) {
    case 'ENOENT':
      return 'the file does not exist';
    case 'ENOTDIR':
      return 'a component of the path is not a directory';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ELOOP':
      return 'too many levels of symbolic links (a symlink loop?)';
    case 'EISDIR':
      return 'it is a directory, not a file';
    default:
      return `it cannot be read (${err && err.message ? err.message : String(e)})`;
  }
}

/** Reads exactly `length` bytes at `position`, or throws. */
function readExactly(fd: number, filePath: string, length: number, position: number, what: string): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      n = fs.readSync(fd, buf, done, length - done, position + done);
    } catch (e) {
      throw bad(filePath, `reading the ${what} failed: ${fsProblem(e)}`, e);
    }
    if (n === 0) throw bad(filePath, `the file ended while reading the ${what} (${done} of ${length} bytes read)`);
    done += n;
  }
  return buf;
}

/**
 * Parses and validates the header of a safetensors file. Reads only the header bytes.
 * Supported dtypes: F32, BF16, F16.
 */
export function readSafetensorsHeader(filePath: string): SafetensorsHeader {
  if (typeof filePath !== 'string' || filePath.length === 0) {
    throw invalidParameterError('filePath', 'a non-empty string', filePath);
  }
  // stat first so a directory or a FIFO is never opened (opening a FIFO would block)
  let st: fs.Stats;
  try {
    st = fs.statSync(filePath);
  } catch (e) {
    throw bad(filePath, fsProblem(e), e);
  }
  if (st.isDirectory()) throw bad(filePath, 'it is a directory, not a file');
  if (!st.isFile()) throw bad(filePath, 'it is not a regular file');

  let fd: number;
  try {
    fd = fs.openSync(filePath, 'r');
  } catch (e) {
    throw bad(filePath, fsProblem(e), e);
  }
  try {
    const fileSize = fs.fstatSync(fd).size;
    if (fileSize < 8) {
      throw bad(filePath, `the file is ${fileSize} bytes long, shorter than the 8-byte header length prefix`);
    }
    const prefix = readExactly(fd, filePath, 8, 0, 'header length prefix');
    const declared = prefix.readBigUInt64LE(0);
    if (declared === 0n) throw bad(filePath, 'the header length prefix is 0 (empty header)');
    if (declared > BigInt(fileSize - 8)) {
      throw bad(
        filePath,
        `the header length prefix declares ${declared} bytes but only ${fileSize - 8} bytes follow it ` +
          '(truncated file, or not a safetensors file)',
      );
    }
    if (declared > BigInt(MAX_HEADER_BYTES)) {
      throw bad(filePath, `the header length prefix declares ${declared} bytes, more than the ${MAX_HEADER_BYTES}-byte limit`);
    }
    const headerLength = Number(declared);
    const dataStart = 8 + headerLength;
    const raw = readExactly(fd, filePath, headerLength, 8, 'header');
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
    } catch (e) {
      throw bad(filePath, 'the header is not valid UTF-8', e);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw bad(filePath, `the header is not valid JSON (${(e as Error).message})`, e);
    }
    if (!isPlainObject(json)) {
      throw bad(filePath, `the header JSON is not an object (got ${Array.isArray(json) ? 'an array' : json === null ? 'null' : typeof json})`);
    }

    let metadata: Record<string, string> | null = null;
    const tensors: NativeTensorEntry[] = [];
    for (const name of Object.keys(json)) {
      const entry = json[name];
      if (name === '__metadata__') {
        if (!isPlainObject(entry)) throw bad(filePath, `"__metadata__" is not an object: ${short(entry)}`);
        const m: Record<string, string> = {};
        for (const k of Object.keys(entry)) {
          if (typeof entry[k] !== 'string') throw bad(filePath, `"__metadata__" value of ${JSON.stringify(k)} is not a string: ${short(entry[k])}`);
          // defineProperty: a key named "__proto__" stays an ordinary entry
          Object.defineProperty(m, k, { value: entry[k], enumerable: true, writable: true, configurable: true });
        }
        metadata = m;
        continue;
      }
      const t = `tensor ${JSON.stringify(name)}`;
      if (!isPlainObject(entry)) throw bad(filePath, `${t}: the entry is not an object: ${short(entry)}`);
      const dtype = entry.dtype;
      if (typeof dtype !== 'string') throw bad(filePath, `${t}: dtype is missing or not a string: ${short(dtype)}`);
      if (!Object.prototype.hasOwnProperty.call(DTYPE_SIZES, dtype)) {
        throw bad(
          filePath,
          `${t}: dtype ${JSON.stringify(dtype)} is not supported; only F32, BF16 and F16 are ` +
            '(other safetensors dtypes such as F64, I64, I8 or BOOL are unsupported)',
        );
      }
      const shape = entry.shape;
      if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
        throw bad(filePath, `${t}: shape must be an array of non-negative integers, got ${short(shape)}`);
      }
      const offsets = entry.data_offsets;
      if (
        !Array.isArray(offsets) ||
        offsets.length !== 2 ||
        !offsets.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0) ||
        offsets[0] > offsets[1]
      ) {
        throw bad(filePath, `${t}: data_offsets must be two ordered non-negative integers [begin, end], got ${short(offsets)}`);
      }
      const [rb, re] = offsets as [number, number];
      let elements = 1n;
      for (const d of shape as number[]) elements *= BigInt(d);
      const expectedBytes = elements * BigInt(DTYPE_SIZES[dtype as SafetensorsDtype]);
      if (expectedBytes !== BigInt(re - rb)) {
        throw bad(
          filePath,
          `${t}: data_offsets [${rb}, ${re}] hold ${re - rb} bytes but dtype ${dtype} with shape [${(shape as number[]).join(', ')}] ` +
            `needs ${expectedBytes} bytes`,
        );
      }
      const begin = dataStart + rb;
      const end = dataStart + re;
      if (!Number.isSafeInteger(end) || end > fileSize) {
        throw bad(filePath, `${t}: its data ends at byte ${end} but the file is only ${fileSize} bytes long (truncated file?)`);
      }
      tensors.push({ name, dtype: dtype as SafetensorsDtype, shape: (shape as number[]).slice(), begin, end });
    }

    tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
    let prev: NativeTensorEntry | null = null;
    for (const t of tensors) {
      if (t.end === t.begin) continue; // empty tensors occupy no bytes
      if (prev && t.begin < prev.end) {
        throw bad(
          filePath,
          `tensors ${JSON.stringify(prev.name)} (bytes ${prev.begin - dataStart}..${prev.end - dataStart}) and ` +
            `${JSON.stringify(t.name)} (bytes ${t.begin - dataStart}..${t.end - dataStart}) overlap`,
        );
      }
      prev = t;
    }
    return { path: filePath, fileSize, dataStart, tensors, metadata };
  } finally {
    fs.closeSync(fd);
  }
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * The weights file of a checkpoint directory: `model.safetensors` (preferred) or
 * `pytorch_model.bin` (what `from_pretrained` falls back to), or null if neither is a file.
 */
export function findWeightsFile(dir: string): { path: string; format: 'safetensors' | 'pytorch' } | null {
  if (typeof dir !== 'string' || dir.length === 0) throw invalidParameterError('dir', 'a non-empty string', dir);
  const st = path.join(dir, 'model.safetensors');
  if (isFile(st)) return { path: st, format: 'safetensors' };
  const pt = path.join(dir, 'pytorch_model.bin');
  if (isFile(pt)) return { path: pt, format: 'pytorch' };
  return null;
}
