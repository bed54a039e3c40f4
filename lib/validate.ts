/**
 * Every option is checked here, once, before anything reaches native code. Messages have one
 * shape (see errors.ts): "Expected <what> for <name> but received <value>".
 */
import { HdlmArgumentError, invalidParameterError } from './errors';

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

export function isDefined<T>(v: T | undefined | null): v is T {
  return v !== undefined && v !== null;
}

/** Throws on option keys this call does not know (a typo would otherwise be ignored silently). */
export function rejectUnknownKeys(what: string, options: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const camel = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    const hint = camel !== key && known.includes(camel) ? ` (did you mean ${camel}?)` : '';
    throw new HdlmArgumentError(`Unknown option ${key} for ${what}${hint}; known options: ${known.join(', ')}`);
  }
}

export function integer(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
    throw invalidParameterError(name, `an integer ${range}`, value);
  }
  return value;
}

export function finiteNumber(name: string, value: unknown, min: number, max = Infinity, minExclusive = false): number {
  const tooSmall = typeof value === 'number' && (minExclusive ? value <= min : value < min);
  if (typeof value !== 'number' || !Number.isFinite(value) || tooSmall || value > max) {
    const lower = `${minExclusive ? '>' : '>='} ${min}`;
    const range = max === Infinity ? lower : `${lower} and <= ${max}`;
    throw invalidParameterError(name, `a finite number ${range}`, value);
  }
  return value;
}

export function boolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw invalidParameterError(name, 'a boolean', value);
  return value;
}

export function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw invalidParameterError(name, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`, value);
  }
  return value as T;
}

export function nonEmptyString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw invalidParameterError(name, 'a non-empty string', value);
  return value;
}

export function fn<T extends (...args: never[]) => unknown>(name: string, value: unknown): T {
  if (typeof value !== 'function') throw invalidParameterError(name, 'a function', value);
  return value as T;
}

/** An AbortSignal (or anything with the same surface, e.g. from a polyfill). */
export function abortSignal(name: string, value: unknown): AbortSignal {
  const s = value as AbortSignal;
  if (
    typeof value !== 'object' || value === null || typeof s.aborted !== 'boolean' ||
    typeof s.addEventListener !== 'function' || typeof s.removeEventListener !== 'function'
  ) {
    throw invalidParameterError(name, 'an AbortSignal', value);
  }
  return s;
}

const MAX_SEED = (1n << 64n) - 1n;

/** A seed as torch.manual_seed takes it: an integer in [0, 2^64). */
export function seed(name: string, value: unknown): bigint {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw invalidParameterError(name, 'a non-negative safe integer or a bigint in [0, 2^64)', value);
    return BigInt(value);
  }
  if (typeof value === 'bigint') {
    if (value < 0n || value > MAX_SEED) throw invalidParameterError(name, 'a bigint in [0, 2^64)', value);
    return value;
  }
  throw invalidParameterError(name, 'a non-negative integer or bigint', value);
}

const typedArrayTag = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Int8Array.prototype), Symbol.toStringTag)!.get!;

/** The real kind of a typed array ('Int32Array', ...), or undefined (a DataView; a spoofed constructor does not count). */
export function typedArrayKind(value: unknown): string | undefined {
  return typedArrayTag.call(value) as string | undefined;
}

const ID_ARRAYS = ['Int32Array', 'Uint32Array', 'Uint16Array', 'Uint8Array', 'BigInt64Array'] as const;

/**
 * Token ids as a flat row: number[] or an integer typed array (Int32Array, Uint32Array,
 * Uint16Array, Uint8Array, BigInt64Array). Every id must be an integer in [0, vocabSize).
 */
export function tokenRow(name: string, value: unknown, vocabSize: number): Int32Array {
  let ids: ArrayLike<number | bigint>;
  if (Array.isArray(value)) {
    ids = value;
  } else if (ArrayBuffer.isView(value) && (ID_ARRAYS as readonly string[]).includes(typedArrayKind(value) ?? '')) {
    ids = value as unknown as ArrayLike<number | bigint>;
  } else {
    throw invalidParameterError(name, `an array of token ids or one of ${ID_ARRAYS.join(', ')}`, value);
  }
  const out = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const raw = ids[i];
    const id = typeof raw === 'bigint' ? Number(raw) : raw;
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw invalidParameterError(`${name}[${i}]`, `a token id (integer in [0, ${vocabSize}))`, raw);
    }
    out[i] = id;
  }
  return out;
}

/** One row or a batch of equal-length rows; returns the rows flattened. */
export function tokenRows(name: string, value: unknown, vocabSize: number): { data: Int32Array; rows: number; cols: number } {
  if (Array.isArray(value) && value.length > 0 && (Array.isArray(value[0]) || ArrayBuffer.isView(value[0]))) {
    const rows = value.map((row, r) => tokenRow(`${name}[${r}]`, row, vocabSize));
    const cols = rows[0].length;
    rows.forEach((row, r) => {
      if (row.length !== cols) throw invalidParameterError(`${name}[${r}]`, `a row of length ${cols} (all rows must have the same length)`, value[r]);
    });
    const data = new Int32Array(rows.length * cols);
    rows.forEach((row, r) => data.set(row, r * cols));
    return { data, rows: rows.length, cols };
  }
  const data = tokenRow(name, value, vocabSize);
  return { data, rows: 1, cols: data.length };
}
