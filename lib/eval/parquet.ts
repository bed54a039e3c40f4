/**
 * One top-level string column of a Parquet file (how the Hugging Face Hub stores datasets), read
 * with hyparquet and hyparquet-compressors: every page version, encoding (dictionary, PLAIN,
 * DELTA_BYTE_ARRAY, ...) and codec (Snappy, gzip, Brotli, ZSTD, LZ4) they read. This file adds
 * the checks and errors of the rest of hdlm: a missing or non-string column is an HDLM_BAD_FILE
 * error naming the columns; nested or repeated columns are HDLM_UNSUPPORTED; a malformed or
 * truncated file, or a string that is not valid UTF-8, is HDLM_BAD_FILE (never replacement
 * characters, never a crash). Null values are returned as null.
 */
import * as fsp from 'fs/promises';
import type * as Hyparquet from 'hyparquet' with { 'resolution-mode': 'import' };
import type * as Compressors from 'hyparquet-compressors' with { 'resolution-mode': 'import' };
import { HdlmError } from '../errors';

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

interface Libraries {
  hyparquet: typeof Hyparquet;
  compressors: typeof Compressors.compressors;
}

let libraries: Promise<Libraries> | undefined;

/** hyparquet and its compressors are ES modules: loaded on first use. */
function load(): Promise<Libraries> {
  libraries ??= Promise.all([import('hyparquet'), import('hyparquet-compressors')]).then(([hyparquet, c]) => ({ hyparquet, compressors: c.compressors }));
  return libraries;
}

function bad(where: string, what: string, cause?: unknown): HdlmError {
  return new HdlmError('HDLM_BAD_FILE', `${where}: not a valid Parquet file (${what})`, cause === undefined ? undefined : { cause });
}

/** A whole file in memory as the ArrayBuffer hyparquet reads (a copy when `data` is a view of a larger buffer). */
function arrayBufferOf(data: Uint8Array): ArrayBuffer {
  if (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer) return data.buffer;
  const copy = new Uint8Array(data.byteLength); // not data.slice(): a Buffer's slice shares its pool
  copy.set(data);
  return copy.buffer;
}

/** hyparquet's footer, after the checks that give a clear message for files that are not Parquet at all. */
function footer(hp: typeof Hyparquet, file: ArrayBuffer, where: string): Hyparquet.FileMetaData {
  if (file.byteLength < 12) throw bad(where, `only ${file.byteLength} bytes`);
  const view = new DataView(file);
  const magic = 0x31524150; // 'PAR1'
  if (view.getUint32(0, true) !== magic) throw bad(where, 'no PAR1 magic at the start');
  const tail = view.getUint32(file.byteLength - 4, true);
  if (tail === 0x45524150) throw new HdlmError('HDLM_UNSUPPORTED', `${where}: an encrypted Parquet file (PARE footer) is not supported`);
  if (tail !== magic) throw bad(where, 'no PAR1 magic at the end: truncated or not Parquet');
  try {
    return hp.parquetMetadata(file);
  } catch (e) {
    throw bad(where, e instanceof Error ? e.message : String(e), e);
  }
}

function topLevelColumns(hp: typeof Hyparquet, meta: Hyparquet.FileMetaData, where: string): ParquetColumnInfo[] {
  let tree: Hyparquet.SchemaTree;
  try {
    tree = hp.parquetSchema(meta);
  } catch (e) {
    throw bad(where, e instanceof Error ? e.message : String(e), e);
  }
  return tree.children.map((c) => ({
    name: c.element.name,
    type: c.children.length > 0 || c.element.type === undefined ? 'group' : c.element.type,
    repetition: c.element.repetition_type === 'OPTIONAL' ? 'optional' : c.element.repetition_type === 'REPEATED' ? 'repeated' : 'required',
  }));
}

function rowCount(n: bigint | number, where: string): number {
  const rows = Number(n);
  if (!Number.isSafeInteger(rows) || rows < 0) throw bad(where, `row count ${n}`);
  return rows;
}

/** The footer's summary: rows, row groups, writer, top-level columns. */
export async function parquetMetadata(data: Uint8Array, where = 'Parquet data'): Promise<ParquetMetadata> {
  const { hyparquet } = await load();
  const meta = footer(hyparquet, arrayBufferOf(data), where);
  return {
    numRows: rowCount(meta.num_rows, where),
    rowGroups: meta.row_groups.length,
    createdBy: meta.created_by ?? null,
    columns: topLevelColumns(hyparquet, meta, where),
  };
}

/**
 * The values of the top-level string column `column`, row by row (null where the column is null),
 * in row-group order. `where` names the data in error messages (a file path).
 */
export async function readParquetStringColumn(data: Uint8Array, column: string, where = 'Parquet data'): Promise<(string | null)[]> {
  const { hyparquet, compressors } = await load();
  const file = arrayBufferOf(data);
  const meta = footer(hyparquet, file, where);
  const columns = topLevelColumns(hyparquet, meta, where);
  const info = columns.find((c) => c.name === column);
  if (info === undefined) {
    throw new HdlmError('HDLM_BAD_FILE', `${where} has no column '${column}' (columns: ${columns.map((c) => c.name).join(', ') || 'none'})`);
  }
  if (info.type === 'group') throw new HdlmError('HDLM_UNSUPPORTED', `${where}: column '${column}' is nested (a group), which is not supported`);
  if (info.repetition === 'repeated') throw new HdlmError('HDLM_UNSUPPORTED', `${where}: column '${column}' is repeated (a list), which is not supported`);
  if (info.type !== 'BYTE_ARRAY') throw new HdlmError('HDLM_BAD_FILE', `${where}: column '${column}' holds ${info.type} values, not strings`);
  const numRows = rowCount(meta.num_rows, where);

  // hyparquet's own decoder replaces invalid UTF-8 silently; this one refuses it.
  const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let rows: unknown[][] = [];
  try {
    await hyparquet.parquetRead({
      file, metadata: meta, columns: [column], compressors,
      parsers: { stringFromBytes: (bytes: Uint8Array | undefined) => (bytes === undefined ? undefined : utf8.decode(bytes)) },
      onComplete: (r: unknown[][]) => {
        rows = r;
      },
    });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (e instanceof TypeError && /encoded data was not valid/i.test(message)) throw bad(where, `column '${column}' holds a string that is not valid UTF-8`, e);
    if (/unsupported|not supported/i.test(message)) throw new HdlmError('HDLM_UNSUPPORTED', `${where}: ${message}`, { cause: e });
    throw bad(where, message, e);
  }
  if (rows.length !== numRows) throw bad(where, `${rows.length} values read where the footer says ${numRows} rows`);
  return rows.map((row, i) => {
    const value = row[0];
    if (value === null || value === undefined) return null;
    if (typeof value !== 'string') throw bad(where, `row ${i} of column '${column}' is not a string`);
    return value;
  });
}

/** readParquetStringColumn on a file. */
export async function readParquetFileStrings(file: string, column: string): Promise<(string | null)[]> {
  let data: Buffer;
  try {
    data = await fsp.readFile(file);
  } catch (e) {
    throw new HdlmError('HDLM_BAD_FILE', `${file}: ${(e as Error).message}`, { cause: e });
  }
  return readParquetStringColumn(data, column, file);
}
