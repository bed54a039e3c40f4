/**
 * The server's one door into the sampling library. Everything else in lib/server speaks in
 * `SamplingJob`s (a prompt, a completion length, n samples, sampler settings) and gets back the
 * completion tokens of each sample; only this file knows which library function runs them and
 * how the context is laid out.
 *
 * Every job is its own `fullDiff` / `semiDiff` call, started as soon as the scheduler admits
 * it. The library merges concurrent fast-mode calls ('original' / 'acs' of fullDiff; on CUDA every algorithm, semiDiff too) into the
 * model's running batch step by step (lib/core/batcher.ts): a job joins at the next step and
 * leaves when it ends or its client goes. A suffix is held fixed after the completion (the
 * library's infilling, `fixed`), so the completion is sampled to fit between prompt and suffix.
 */
import { fullDiff, semiDiff, type Algorithm, type HdlmModel, type StepInfo } from '../index';

export interface SamplingJob {
  model: HdlmModel;
  /** token ids fixed at the start of every sample */
  prompt: number[];
  /** token ids fixed right after the completion in every sample (null: none) */
  suffix: number[] | null;
  /** tokens sampled between prompt and suffix */
  completionLength: number;
  /** samples drawn together (one batched call) */
  samples: number;
  alg: Algorithm;
  /** denoising steps (semi-autoregressive: per block) */
  steps: number;
  temperature: number;
  eta: number;
  seed: bigint;
  /** semi-autoregressive block size; null: every position denoised together */
  blockSize: number | null;
  signal: AbortSignal;
  /**
   * Called after every `stepEvery`-th step (and the last) with the completion region of each
   * sample (mask ids where still masked) when `stepTokens` is true, else null. Runs on the main
   * thread between native steps: keep it cheap.
   */
  onStep: ((step: number, total: number, completions: number[][] | null) => void) | null;
  stepTokens: boolean;
  stepEvery: number;
}

/** Tokens of the whole context a job samples (prompt + completion + suffix). */
export function contextLengthOf(job: Pick<SamplingJob, 'prompt' | 'suffix' | 'completionLength'>): number {
  return job.prompt.length + job.completionLength + (job.suffix ? job.suffix.length : 0);
}

/**
 * Total denoising steps the job runs (what onStep's `total` will say): semi-autoregressive
 * sampling runs `steps` per block over the whole context, prompt blocks included.
 */
export function totalStepsOf(job: Pick<SamplingJob, 'prompt' | 'suffix' | 'completionLength' | 'steps' | 'blockSize'>): number {
  if (job.blockSize === null) return job.steps;
  return Math.ceil(contextLengthOf(job) / job.blockSize) * job.steps;
}

/** Runs one job; resolves to the completion tokens of each sample (rejects with the library's AbortError on abort). */
export async function runSampling(job: SamplingJob): Promise<number[][]> {
  const start = job.prompt.length;
  const end = start + job.completionLength;
  const slice = (rows: number[][]) => rows.map((row) => row.slice(start, end));
  const onStep = job.onStep
    ? (info: StepInfo) => job.onStep!(info.step, info.total, info.tokens ? slice(info.tokens) : null)
    : undefined;
  const common = {
    model: job.model,
    prompt: job.prompt.length > 0 ? job.prompt : undefined,
    fixed: job.suffix && job.suffix.length > 0 ? [{ at: end, tokens: job.suffix }] : undefined,
    batchSize: job.samples,
    contextLength: contextLengthOf(job),
    alg: job.alg,
    steps: job.steps,
    temperature: job.temperature,
    eta: job.eta,
    seed: job.seed,
    signal: job.signal,
    onStep,
    stepTokens: job.stepTokens && onStep !== undefined,
    stepEvery: job.stepEvery,
  };
  const rows = job.blockSize === null ? await fullDiff(common) : await semiDiff({ ...common, blockSize: job.blockSize });
  return slice(rows);
}
