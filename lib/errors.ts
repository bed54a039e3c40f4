/**
 * The package's error classes. Every error this package throws or rejects with is an
 * `HdlmError` (or a subclass), with a stable `code` string scripts can switch on.
 */

export type HdlmErrorCode =
  | 'HDLM_INVALID_ARGUMENT' // an option has the wrong type or value
  | 'HDLM_BAD_FILE' // a checkpoint, config or TorchScript file is missing, malformed or not an HDLM model
  | 'HDLM_UNSUPPORTED' // a valid model or option this version does not handle
  | 'HDLM_HUB' // Hugging Face Hub download or cache resolution failed
  | 'HDLM_DISPOSED' // the model was disposed
  | 'HDLM_ABORTED' // an AbortSignal stopped the call
  | 'HDLM_CALLBACK' // a callback given to the call (onStep, onProgress, ...) threw or rejected; its error is the cause
  | 'HDLM_NON_FINITE' // the model's output held NaN or infinity where it was sampled from or scored (the message says where)
  | 'HDLM_IO' // a file could not be written (disk full, permissions, I/O error); nothing half-written is left
  | 'HDLM_NATIVE'; // libtorch reported an error while running

export class HdlmError extends Error {
  readonly code: HdlmErrorCode;
  constructor(code: HdlmErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HdlmError';
    this.code = code;
  }
}

/** A bad option: names the option, what was expected and what was given. */
export class HdlmArgumentError extends HdlmError {
  constructor(message: string) {
    super('HDLM_INVALID_ARGUMENT', message);
    this.name = 'HdlmArgumentError';
  }
}

/** Rejection of a call stopped by its AbortSignal (name 'AbortError', as fetch() uses). */
export class AbortError extends HdlmError {
  /** denoising steps that had run when the loop stopped (undefined if it never started) */
  readonly stepsDone?: number;
  /** steps that had run when abort was asked for: the loop stops within one step of it */
  readonly stepsAtAbort?: number;
  constructor(message = 'The operation was aborted', options?: { cause?: unknown; stepsDone?: number; stepsAtAbort?: number }) {
    super('HDLM_ABORTED', message, options);
    this.name = 'AbortError';
    if (options?.stepsDone !== undefined) this.stepsDone = options.stepsDone;
    if (options?.stepsAtAbort !== undefined) this.stepsAtAbort = options.stepsAtAbort;
  }
}

/** Formats a value for an error message: short, and never throws. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as unknown as { length: number }).length}`;
  try {
    const s = JSON.stringify(value);
    return s && s.length <= 60 ? s : `an object (${Object.prototype.toString.call(value)})`;
  } catch {
    return 'an object';
  }
}

/** The one message shape for bad options (after sharp's lib/is): "Expected <what> for <name> but received <value>". */
export function invalidParameterError(name: string, expected: string, actual: unknown): HdlmArgumentError {
  return new HdlmArgumentError(`Expected ${expected} for ${name} but received ${describe(actual)}`);
}
