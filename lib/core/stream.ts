/**
 * The denoising as an async stream: `for await (const frame of streamDiff({ model, ... }))` runs
 * fullDiff or semiDiff and yields the tokens after each step. The native loop never waits for
 * the consumer: each step's frame replaces the one not yet taken (latest wins) and the next
 * frame taken says how many were skipped. Leaving the loop (break, return, throw) or aborting
 * `signal` stops the sampling at its next step.
 */
import { AbortError, invalidParameterError } from '../errors';
import * as v from '../validate';
import { decode } from './tokenizer';
import { prepareSampling, runNativeJob, samplerKeys, type SemiDiffOptions } from './sampling';

export interface StreamFrame {
  /** steps done (1-based) */
  step: number;
  /** steps in the whole call (semiDiff: blocks × steps) */
  total: number;
  /** the tokens after this step, one row per sample (the mask id where still masked) */
  tokens: number[][];
  /** with `text: true`: each row decoded, every masked position shown as `placeholder` */
  text?: string[];
  /** frames replaced since the previous one taken, because the consumer was slower than the sampler */
  skipped: number;
}

export interface StreamDiffOptions extends Omit<SemiDiffOptions, 'onStep' | 'stepTokens'> {
  /** 'fullDiff' (default) or 'semiDiff' */
  sampler?: 'fullDiff' | 'semiDiff';
  /** add the decoded text to each frame (default false) */
  text?: boolean;
  /** what a masked position shows as in `text` (default '_') */
  placeholder?: string;
}

export interface DiffStream extends AsyncIterableIterator<StreamFrame> {
  /** the final rows, as fullDiff / semiDiff resolve them (rejects if stopped or failed) */
  readonly result: Promise<number[][]>;
  /** steps the native loop has run so far */
  readonly stepsDone: number;
}

/** Text of one row with each run of masked positions shown as that many placeholders. */
export function decodeWithMasks(row: readonly number[], maskId: number, placeholder: string): string {
  let out = '';
  let run: number[] = [];
  for (const id of row) {
    if (id === maskId) {
      if (run.length > 0) out += decode(run);
      run = [];
      out += placeholder;
    } else {
      run.push(id);
    }
  }
  return run.length > 0 ? out + decode(run) : out;
}

/**
 * Starts fullDiff / semiDiff and returns its steps as an async iterable of frames. Options are
 * checked at once (a bad option throws here, not at the first `next()`); the sampling starts at
 * once too. The last frame is the final result (step === total).
 */
export function streamDiff(options: StreamDiffOptions): DiffStream {
  if (!v.isPlainObject(options)) throw invalidParameterError('streamDiff options', 'an object', options);
  for (const key of ['onStep', 'stepTokens']) {
    if (v.isDefined((options as Record<string, unknown>)[key])) {
      throw invalidParameterError(key, 'nothing (the stream delivers the steps)', (options as Record<string, unknown>)[key]);
    }
  }
  const { sampler, text, placeholder, signal, ...rest } = options;
  const which = v.isDefined(sampler) ? v.oneOf('sampler', sampler, ['fullDiff', 'semiDiff'] as const) : 'fullDiff';
  const withText = v.isDefined(text) ? v.boolean('text', text) : false;
  if (v.isDefined(placeholder) && typeof placeholder !== 'string') throw invalidParameterError('placeholder', 'a string', placeholder);
  const shown = placeholder ?? '_';
  const userSignal = v.isDefined(signal) ? v.abortSignal('signal', signal) : null;
  const mode = which === 'fullDiff' ? 'full' : 'semi';
  const keys = samplerKeys(mode).filter((k) => k !== 'onStep' && k !== 'stepTokens' && k !== 'signal');

  let latest: { step: number; total: number; tokens: number[][] } | null = null;
  let skipped = 0;
  let newestStep = 0;
  let stepsDone = 0;
  let finished = false;
  let failure: unknown = null;
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const stop = new AbortController();
  const prepared = prepareSampling(which, mode, { ...rest, onStep: () => {}, stepTokens: true }, [...keys, 'onStep', 'stepTokens']);
  const maskId = prepared.native.maskId;
  const onUserAbort = () => stop.abort(userSignal?.reason);
  if (userSignal?.aborted) stop.abort(userSignal.reason);
  else userSignal?.addEventListener('abort', onUserAbort, { once: true });

  const onStep = (info: { step: number; total: number; tokens: number[][] | null }) => {
    stepsDone = Math.max(stepsDone, info.step);
    if (!info.tokens || finished) return;
    if (latest) skipped++;
    newestStep = info.step;
    latest = { step: info.step, total: info.total, tokens: info.tokens };
    notify();
  };
  const { model, native } = prepared;
  const result = runNativeJob(which, model, (step) => model.native().sample(native, step), native.batchSize, native.contextLength, stop.signal, onStep);
  const settled = result.then(
    (rows) => {
      // the final rows, unless the last step's frame already carried them
      const total = native.mode === 'semi' ? Math.ceil(native.contextLength / native.blockSize) * native.steps : native.steps;
      if (newestStep !== total) {
        if (latest) skipped++;
        latest = { step: total, total, tokens: rows };
      }
      stepsDone = total;
      finished = true;
      notify();
    },
    (e: unknown) => {
      if (e instanceof AbortError) stepsDone = Math.max(stepsDone, (e as AbortError & { stepsDone?: number }).stepsDone ?? 0);
      failure = e;
      finished = true;
      notify();
    },
  ).finally(() => userSignal?.removeEventListener('abort', onUserAbort));
  result.catch(() => {}); // observed through the iterator; `result` rejects for whoever awaits it

  let closed = false;
  const close = async (): Promise<IteratorResult<StreamFrame>> => {
    closed = true;
    if (!finished) stop.abort(new AbortError('the stream was closed'));
    await settled;
    return { done: true, value: undefined };
  };

  const stream: DiffStream = {
    result,
    get stepsDone() {
      return stepsDone;
    },
    async next(): Promise<IteratorResult<StreamFrame>> {
      for (;;) {
        if (closed) return { done: true, value: undefined };
        if (latest) {
          const f = latest;
          latest = null;
          const frame: StreamFrame = { step: f.step, total: f.total, tokens: f.tokens, skipped };
          skipped = 0;
          if (withText) frame.text = f.tokens.map((row) => decodeWithMasks(row, maskId, shown));
          return { done: false, value: frame };
        }
        if (finished) {
          closed = true;
          if (failure) throw failure;
          return { done: true, value: undefined };
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    },
    return: close,
    async throw(e: unknown): Promise<IteratorResult<StreamFrame>> {
      await close();
      throw e;
    },
    [Symbol.asyncIterator]() {
      return stream;
    },
  };
  return stream;
}
