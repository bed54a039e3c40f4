/**
 * `HdlmModel`: a loaded model (the Python `model` of the quick-start). Wraps the native
 * TorchScript module; `forward` is upstream's `model(x, positions)`.
 */
import type { NativeLogits, NativeModel } from '../binding';
import { HdlmError, invalidParameterError } from '../errors';
import * as v from '../validate';
import { MAX_LOGITS_ELEMENTS } from './memory';
import { tokenRows } from '../validate';
import type { ModelFamily } from './config';

/** Largest logits tensor a call may ask for (2^31 float32 values = 8 GiB); sampling.ts has the same bound. */

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
  #pending = 0;
  readonly family: ModelFamily;
  readonly device: string;
  readonly precision: string;
  readonly config: Record<string, unknown>;
  readonly vocabSize: number;
  readonly maskId: number;
  readonly length: number;
  readonly source: string;
  /**
   * Whether concurrent fast-mode fullDiff / semiDiff calls (no guidance; see their `batching` option) share one
   * batched forward per step (default true; see `batching` in fullDiff's options). A call's
   * own `batching` option wins.
   */
  batching = true;

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

  /**
   * `x instanceof HdlmModel` holds for models smartModelLoader made, not for objects that only
   * share the prototype (Object.create(HdlmModel.prototype) has none of the private state, and
   * every use of it would fail with a TypeError instead of an HdlmError).
   */
  static [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && #native in value;
  }

  get disposed(): boolean {
    return checked(this).#native === null;
  }

  /** forward / fullDiff / semiDiff calls of this model whose promise has not settled yet (0 after dispose() once they have) */
  get pendingCalls(): number {
    return checked(this).#pending;
  }

  /** @internal the native module, or a clear error after dispose() */
  native(): NativeModel {
    const native = checked(this).#native;
    if (!native) throw new HdlmError('HDLM_DISPOSED', 'This HdlmModel has been disposed; load it again with smartModelLoader');
    return native;
  }

  /**
   * Logits for token ids. Epsilon models: `forward(tokens, positions?, { reference? })` (upstream
   * `model(x, positions)`; `{ reference: false }` returns the fast path's logits — bf16 on CUDA,
   * positions left out). Gamma models: `forward(tokens, sigma, positions?)` (upstream
   * `model(indices, sigma, positions)`), `sigma` = per-token total noise σ̄ ≥ 0, same shape as
   * tokens (or one number for every token). `tokens` is one row or a batch of equal-length rows
   * of ids in [0, vocabSize); `positions` (same shape, default 0..L-1) sets the rotary positions
   * (upstream uses only the first row).
   */
  async forward(tokens: unknown, second?: unknown, third?: unknown): Promise<Logits> {
    const native = checked(this).native();
    let fast = false;
    const options = this.family === 'gamma_hybrid' ? undefined : (third as { reference?: unknown } | undefined);
    if (v.isDefined(options)) {
      if (!v.isPlainObject(options)) throw invalidParameterError('forward options', 'an object such as { reference: false } (sigma is only for gamma_hybrid models)', options);
      v.rejectUnknownKeys('forward', options, ['reference']);
      if (v.isDefined(options.reference)) fast = !v.boolean('reference', options.reference);
    }
    if (fast && this.precision === 'module') throw invalidParameterError('reference', 'true for a TorchScript module not built by hdlm', false);
    const x = tokenRows('tokens', tokens, this.vocabSize);
    if (x.cols === 0) throw invalidParameterError('tokens', 'at least one token id', tokens);
    if (x.cols > this.length) throw invalidParameterError('tokens', `rows of at most ${this.length} ids (the model's length)`, tokens);
    if (x.rows * x.cols * this.vocabSize > MAX_LOGITS_ELEMENTS) {
      throw invalidParameterError('tokens', `at most ${MAX_LOGITS_ELEMENTS} logits (rows × length × ${this.vocabSize})`, tokens);
    }
    let sigma: Float32Array | null = null;
    let positions: unknown = second;
    if (this.family === 'gamma_hybrid') {
      sigma = sigmaRows(second, x.rows, x.cols);
      positions = third;
    }
    let pos: Int32Array | null = null;
    if (positions !== undefined && positions !== null) {
      const p = tokenRows('positions', positions, 2 ** 31 - 1);
      if (p.rows !== x.rows || p.cols !== x.cols) {
        throw invalidParameterError('positions', `the same shape as tokens ([${x.rows}, ${x.cols}])`, positions);
      }
      pos = p.data;
      if (fast) throw invalidParameterError('positions', 'nothing in fast mode (it always uses 0..L-1)', positions);
    }
    const out: NativeLogits = await this.track(callNative(() => native.forward(x.data, x.rows, x.cols, pos, sigma, fast)));
    return { data: out.data, shape: out.shape };
  }

  /**
   * Frees the native model. Idempotent. Calls not started yet reject with HDLM_DISPOSED; a
   * running fullDiff/semiDiff stops at its next step and rejects with HDLM_DISPOSED; a running
   * forward finishes. The memory is returned when the last running call ends. Later calls
   * throw HDLM_DISPOSED.
   */
  dispose(): void {
    const self = checked(this);
    if (self.#native) {
      self.#native.dispose();
      self.#native = null;
    }
  }

  /** @internal counts a call until its promise settles */
  track<T>(p: Promise<T>): Promise<T> {
    const self = checked(this);
    self.#pending++;
    return p.finally(() => {
      self.#pending--;
    });
  }

  toString(): string {
    return `HdlmModel(${this.family}, ${this.device}, ${this.source})`;
  }
}

/** `model` itself when it is a real HdlmModel (see Symbol.hasInstance), else an HdlmArgumentError. */
function checked(model: HdlmModel): HdlmModel {
  if (!(model instanceof HdlmModel)) throw invalidParameterError('this', 'an HdlmModel from smartModelLoader', model);
  return model;
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
