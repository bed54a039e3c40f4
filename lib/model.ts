/**
 * `HdlmModel`: a loaded model (the Python `model` of the quick-start). Wraps the native
 * TorchScript module; `forward` is upstream's `model(x, positions)`.
 */
import type { NativeLogits, NativeModel } from './binding';
import { HdlmError, invalidParameterError } from './errors';
import { tokenRows } from './validate';
import type { ModelFamily } from './config';

export interface ModelDescription {
  family: ModelFamily;
  /** 'cpu' or 'cuda:N' */
  device: string;
  /** how the model computes ('fp32', or upstream's CUDA precision context 'A', 'B', 'C'; 'module' for a foreign TorchScript file) */
  precision: string;
  /** the checkpoint's training config (what upstream calls `cfg`) */
  config: Record<string, unknown>;
  /** rows of the embedding table, mask state included (50258 for the released models) */
  vocabSize: number;
  /** the absorbing mask token id (vocabSize - 1) */
  maskId: number;
  /** sequence length the model was trained with (`model.length`): the default and maximum contextLength */
  length: number;
  /** where the weights came from (a directory, a TorchScript file, or hub repo@commit) */
  source: string;
}

export interface Logits {
  /** float32 logits, row-major [batch, length, vocab] */
  data: Float32Array;
  shape: [number, number, number];
}

export class HdlmModel {
  #native: NativeModel | null;
  readonly family: ModelFamily;
  readonly device: string;
  readonly precision: string;
  readonly config: Record<string, unknown>;
  readonly vocabSize: number;
  readonly maskId: number;
  readonly length: number;
  readonly source: string;

  /** @internal created by smartModelLoader */
  constructor(native: NativeModel, description: ModelDescription) {
    this.#native = native;
    this.family = description.family;
    this.device = description.device;
    this.precision = description.precision;
    this.config = description.config;
    this.vocabSize = description.vocabSize;
    this.maskId = description.maskId;
    this.length = description.length;
    this.source = description.source;
  }

  get disposed(): boolean {
    return this.#native === null;
  }

  /** @internal the native module, or a clear error after dispose() */
  native(): NativeModel {
    if (!this.#native) throw new HdlmError('HDLM_DISPOSED', 'This HdlmModel has been disposed; load it again with smartModelLoader');
    return this.#native;
  }

  /**
   * Logits for token ids. Epsilon models: `forward(tokens, positions?)` (upstream
   * `model(x, positions)`). Gamma models: `forward(tokens, sigma, positions?)` (upstream
   * `model(indices, sigma, positions)`), `sigma` = per-token total noise σ̄ ≥ 0, same shape as
   * tokens (or one number for every token). `tokens` is one row or a batch of equal-length rows
   * of ids in [0, vocabSize); `positions` (same shape, default 0..L-1) sets the rotary positions
   * (upstream uses only the first row).
   */
  async forward(tokens: unknown, second?: unknown, third?: unknown): Promise<Logits> {
    const native = this.native();
    const x = tokenRows('tokens', tokens, this.vocabSize);
    if (x.cols === 0) throw invalidParameterError('tokens', 'at least one token id', tokens);
    let sigma: Float32Array | null = null;
    let positions: unknown = second;
    if (this.family === 'gamma_hybrid') {
      sigma = sigmaRows(second, x.rows, x.cols);
      positions = third;
    } else if (third !== undefined) {
      throw invalidParameterError('forward arguments', '(tokens, positions?) for an epsilon_hybrid model (sigma is for gamma_hybrid models)', third);
    }
    let pos: Int32Array | null = null;
    if (positions !== undefined && positions !== null) {
      const p = tokenRows('positions', positions, 2 ** 31 - 1);
      if (p.rows !== x.rows || p.cols !== x.cols) {
        throw invalidParameterError('positions', `the same shape as tokens ([${x.rows}, ${x.cols}])`, positions);
      }
      pos = p.data;
    }
    const out: NativeLogits = await callNative(() => native.forward(x.data, x.rows, x.cols, pos, sigma));
    return { data: out.data, shape: out.shape };
  }

  /** Frees the native model. Idempotent; calls already running finish first. */
  dispose(): void {
    if (this.#native) {
      this.#native.dispose();
      this.#native = null;
    }
  }

  toString(): string {
    return `HdlmModel(${this.family}, ${this.device}, ${this.source})`;
  }
}

/** sigma for a gamma forward: a number, one row (batch 1) or rows matching [rows, cols]; finite, >= 0. */
function sigmaRows(value: unknown, rows: number, cols: number): Float32Array {
  const expected = `a number >= 0 or rows of numbers >= 0 shaped like tokens ([${rows}, ${cols}])`;
  const out = new Float32Array(rows * cols);
  const ok = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 0;
  if (ok(value)) return out.fill(value);
  const isRow = (r: unknown): r is ArrayLike<unknown> =>
    Array.isArray(r) || (ArrayBuffer.isView(r) && !(r instanceof DataView));
  if (!isRow(value)) throw invalidParameterError('sigma', expected, value);
  const list: ArrayLike<unknown>[] = rows === 1 && value.length === cols && !isRow(value[0]) ? [value] : Array.from(value as ArrayLike<unknown>) as ArrayLike<unknown>[];
  if (list.length !== rows) throw invalidParameterError('sigma', expected, value);
  for (let r = 0; r < rows; r++) {
    const row = list[r];
    if (!isRow(row) || row.length !== cols) throw invalidParameterError('sigma', expected, value);
    for (let c = 0; c < cols; c++) {
      const n = row[c];
      if (!ok(n)) throw invalidParameterError('sigma', expected, value);
      out[r * cols + c] = n;
    }
  }
  return out;
}

/** Turns a native rejection (an Error with a `code`) into an HdlmError. */
export async function callNative<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw toHdlmError(e);
  }
}

export function toHdlmError(e: unknown): HdlmError {
  if (e instanceof HdlmError) return e;
  const err = e as { code?: string; message?: string };
  const code = typeof err?.code === 'string' && err.code.startsWith('HDLM_') ? err.code : 'HDLM_NATIVE';
  return new HdlmError(code as HdlmError['code'], err?.message ?? String(e), { cause: e });
}
