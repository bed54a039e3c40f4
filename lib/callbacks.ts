/**
 * User callbacks (onStep, onProgress, featurize, ...) run inside our loops, often called from a
 * native event or a stream. A callback that throws, or returns a promise that rejects, must make
 * the call it belongs to reject: never an uncaught exception, never an unhandled rejection.
 */
import { HdlmError } from './errors';

/** The rejection of a call whose callback failed: code HDLM_CALLBACK, the callback's error as `cause`. */
export function callbackError(name: string, e: unknown): HdlmError {
  if (e instanceof HdlmError && e.code === 'HDLM_CALLBACK') return e;
  const what = e instanceof Error ? e.message : typeof e === 'string' ? e : String(e);
  return new HdlmError('HDLM_CALLBACK', `${name} ${e instanceof Error || typeof e !== 'object' ? 'threw' : 'failed'}: ${what}`, { cause: e });
}

/**
 * Runs one callback of one call. The first failure is kept (later calls are skipped) and
 * `onFail` runs once, e.g. to stop the native loop at its next step; the call then rejects
 * with `error` (check it with `throwIfFailed`).
 */
export class CallbackGuard<A extends unknown[]> {
  #error: HdlmError | null = null;
  readonly #pending = new Set<Promise<unknown>>();
  readonly #fn: (...args: A) => unknown;
  readonly #name: string;
  readonly #onFail: (() => void) | undefined;

  constructor(name: string, fn: (...args: A) => unknown, onFail?: () => void) {
    this.#name = name;
    this.#fn = fn;
    this.#onFail = onFail;
  }

  /** the callback's failure, as the call rejects with it; null while it has not failed */
  get error(): HdlmError | null {
    return this.#error;
  }

  /** Calls the callback; never throws. A returned promise that rejects counts as a failure. */
  call(...args: A): void {
    if (this.#error) return;
    let result: unknown;
    try {
      result = this.#fn(...args);
    } catch (e) {
      this.#fail(e);
      return;
    }
    if (result !== null && (typeof result === 'object' || typeof result === 'function') && typeof (result as PromiseLike<unknown>).then === 'function') {
      let settled: Promise<unknown>;
      try {
        settled = Promise.resolve(result).then(undefined, (e: unknown) => this.#fail(e));
      } catch (e) {
        this.#fail(e);
        return;
      }
      this.#pending.add(settled);
      void settled.then(() => this.#pending.delete(settled));
    }
  }

  /** Waits for the promises the callback returned (the call settles after them). */
  async drain(): Promise<void> {
    while (this.#pending.size > 0 && !this.#error) await Promise.race(this.#pending);
  }

  throwIfFailed(): void {
    if (this.#error) throw this.#error;
  }

  #fail(e: unknown): void {
    if (this.#error) return;
    this.#error = callbackError(this.#name, e);
    try {
      this.#onFail?.();
    } catch {
      // stopping is best effort: the call rejects with the callback's error anyway
    }
  }
}
