/**
 * Step-level batching of concurrent fast-mode `fullDiff` / `semiDiff` calls on one model: every
 * call that the batched sampler runs (fast mode, no guidance; see batchable) joins the model's
 * running batch at its next step and leaves it when it finishes or is aborted; each step is one batched
 * forward (per context length) on the native side. A call's tokens depend only on its own options
 * (its seed included), never on what it was batched with. Off per call with `batching: false`, or
 * per model with `model.batching = false` (or `smartModelLoader(..., { batching: false })`).
 */
import type { NativeBatch, NativeBatchEvent, NativeSampleOptions } from '../binding';
import { AbortError, HdlmError } from '../errors';
import { CallbackGuard } from '../callbacks';
import { HdlmModel, toHdlmError } from './model';
import type { StepInfo } from './sampling';

/**
 * Whether these (validated) options run in the batched sampler on `device`: fast mode without
 * guidance; fullDiff's 'original' and 'acs' everywhere, the rest (fullDiff's remask family,
 * every semiDiff call) on CUDA only. Those select on the device from each step's logits, one
 * request after another: on CUDA the shared forward pays for that; on the CPU their draws are
 * most of the work and lone calls run them side by side on the pool's threads (4 concurrent
 * 'remask' calls of the tiny bench model: 1.4 s as lone calls, 2.4 s in one batch).
 */
export function batchable(native: NativeSampleOptions, device: string): boolean {
  if ((native.mode !== 'full' && native.mode !== 'semi') || native.reference || native.cfgScale !== 0) return false;
  return (native.mode === 'full' && (native.alg === 'original' || native.alg === 'acs')) || device.startsWith('cuda');
}

/**
 * Native steps per round trip through the event loop at most; a call returns earlier when a row
 * finishes or reaches a step its onStep sees (every `stepEvery`-th). Joins and aborts still take
 * effect at the next step.
 */
const STEPS_PER_CALL = 16;

/** Whether a row's onStep sees step `step` of `total` (as the native loop decides). */
function seesStep(stepEvery: number, step: number, total: number): boolean {
  return stepEvery <= 1 || step % stepEvery === 0 || step === total;
}

interface Row {
  fnName: string;
  native: NativeSampleOptions;
  /** the call's onStep; a failure removes the row and rejects its call with the callback's error */
  onStep: CallbackGuard<[StepInfo]> | null;
  signal: AbortSignal | null;
  onAbort: (() => void) | null;
  stepsDone: number;
  resolve: (rows: number[][]) => void;
  reject: (e: unknown) => void;
}

function rowsOf(flat: Int32Array, batch: number, length: number): number[][] {
  const rows: number[][] = [];
  for (let b = 0; b < batch; b++) rows.push(Array.from(flat.subarray(b * length, (b + 1) * length)));
  return rows;
}

/** The running batch of one model: opened on the first call, closed when the last row leaves. */
class Batcher {
  readonly #model: HdlmModel;
  #batch: NativeBatch | null = null;
  readonly #rows = new Map<number, Row>();
  #nextId = 1;
  #looping = false;

  constructor(model: HdlmModel) {
    this.#model = model;
  }

  get size(): number {
    return this.#rows.size;
  }

  submit(fnName: string, native: NativeSampleOptions, signal: AbortSignal | null, onStep: ((info: StepInfo) => void) | null): Promise<number[][]> {
    if (signal?.aborted) return Promise.reject(new AbortError(`${fnName} was aborted before it started`, { cause: signal.reason }));
    return new Promise<number[][]>((resolve, reject) => {
      const id = this.#nextId++;
      try {
        if (!this.#batch) this.#batch = this.#model.native().openBatch();
        this.#batch.add(id, native, null, onStep !== null);
      } catch (e) {
        if (this.#rows.size === 0) this.#close();
        reject(toHdlmError(e));
        return;
      }
      const row: Row = { fnName, native, onStep: null, signal, onAbort: null, stepsDone: 0, resolve, reject };
      if (onStep) row.onStep = new CallbackGuard('onStep', onStep, () => this.#fail(id, row));
      if (signal) {
        row.onAbort = () => this.#abort(id, row);
        signal.addEventListener('abort', row.onAbort, { once: true });
      }
      this.#rows.set(id, row);
      if (!this.#looping) void this.#loop();
    });
  }

  // The row leaves at the next step; its promise rejects now, as a lone call's does at its next step.
  #abort(id: number, row: Row): void {
    if (!this.#rows.has(id)) return;
    this.#batch?.remove(id);
    this.#settle(id, row);
    const done = row.stepsDone;
    row.reject(new AbortError(`${row.fnName} was aborted after ${done} of its steps`, { cause: row.signal?.reason, stepsDone: done, stepsAtAbort: done }));
  }

  // The row's onStep failed (threw, or its promise rejected): the row leaves at the next step.
  #fail(id: number, row: Row): void {
    if (!this.#rows.has(id)) return;
    this.#batch?.remove(id);
    this.#settle(id, row);
    row.reject(row.onStep?.error);
  }

  #settle(id: number, row: Row): void {
    this.#rows.delete(id);
    if (row.signal && row.onAbort) row.signal.removeEventListener('abort', row.onAbort);
  }

  async #loop(): Promise<void> {
    this.#looping = true;
    try {
      while (this.#rows.size > 0 && this.#batch) {
        let events: NativeBatchEvent[];
        try {
          events = await this.#batch.step(STEPS_PER_CALL);
        } catch (e) {
          this.#failAll(e);
          break;
        }
        for (const e of events) this.#deliver(e);
      }
    } finally {
      this.#looping = false;
      if (this.#rows.size === 0) this.#close();
      else void this.#loop(); // a row joined while the last step was settling
    }
  }

  #deliver(e: NativeBatchEvent): void {
    const row = this.#rows.get(e.id);
    if (!row) return; // aborted while the step ran
    row.stepsDone = e.step;
    const { batchSize, contextLength } = row.native;
    // the call may have stopped for another row, at a step this row's onStep does not see
    if (row.onStep && seesStep(row.native.stepEvery, e.step, e.total)) {
      const tokens = row.native.stepTokens && e.tokens ? rowsOf(e.tokens, batchSize, contextLength) : null;
      row.onStep.call({ step: e.step, total: e.total, tokens });
    }
    if (e.done && this.#rows.has(e.id)) {
      this.#settle(e.id, row);
      const rows = rowsOf(e.tokens as Int32Array, batchSize, contextLength);
      // settles after the promises its onStep returned, rejecting if one of them failed
      if (!row.onStep) row.resolve(rows);
      else {
        const guard = row.onStep;
        void guard.drain().then(() => (guard.error ? row.reject(guard.error) : row.resolve(rows)));
      }
    }
  }

  #failAll(e: unknown): void {
    let err = toHdlmError(e);
    if (err.code === 'HDLM_DISPOSED') err = new HdlmError('HDLM_DISPOSED', 'the model was disposed while this call was running', { cause: e });
    for (const [id, row] of [...this.#rows]) {
      this.#settle(id, row);
      // the same wording as an unbatched call's: where in the row's own sampling it happened
      row.reject(err.code === 'HDLM_NON_FINITE' ? new HdlmError(err.code, `${err.message}, at step ${row.stepsDone + 1}`, { cause: err }) : err);
    }
    this.#close();
  }

  #close(): void {
    this.#batch?.close();
    this.#batch = null;
  }
}

const batchers = new WeakMap<HdlmModel, Batcher>();

/** @internal Runs a batchable fullDiff call in the model's batch. */
export function runBatched(fnName: string, model: HdlmModel, native: NativeSampleOptions, signal: AbortSignal | null, onStep: ((info: StepInfo) => void) | null): Promise<number[][]> {
  // an already-aborted call never reaches the model (as a lone call)
  if (signal?.aborted) return Promise.reject(new AbortError(`${fnName} was aborted before it started`, { cause: signal.reason }));
  let b = batchers.get(model);
  if (!b) {
    b = new Batcher(model);
    batchers.set(model, b);
  }
  return model.track(b.submit(fnName, native, signal, onStep));
}

/** Calls of `model` running in its batch right now. */
export function batchedCalls(model: HdlmModel): number {
  return batchers.get(model)?.size ?? 0;
}
