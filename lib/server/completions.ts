/**
 * `POST /v1/completions`: one sampling job per prompt (its `n` samples drawn together), admitted
 * by the scheduler all at once, answered as one JSON object or as server-sent events in
 * OpenAI's chunk format (plus `event: denoise` frames when asked for).
 *
 * Streaming text: with alg 'original' a token, once unmasked, never changes, so the unmasked
 * run at the start of a completion is sent while sampling runs; the other algorithms revisit
 * tokens, so their text comes in one chunk when the job ends. Either way the chunks of a choice
 * add up to exactly the text the same request gives without streaming.
 */
import { randomBytes } from 'crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AbortError, tokenizer } from '../index';
import { runSampling, totalStepsOf, type SamplingJob } from './engine';
import { ApiError, invalidField, toApiError } from './errors';
import type { ServerMetrics } from './metrics';
import { parseCompletionRequest, type CompletionRequest, type ServerLimits } from './request';
import type { Scheduler } from './scheduler';
import { SseStream } from './sse';
import { FinalTextStream, completionText, renderDenoised, type CompletionText } from './text';

export interface CompletionContext {
  limits: ServerLimits;
  scheduler: Scheduler;
  metrics: ServerMetrics;
  maskId: number;
  /** aborted when the server stops waiting for running requests (shutdown after the drain timeout) */
  shutdownSignal: AbortSignal;
}

interface PlannedJob {
  /** index of the prompt in the request */
  index: number;
  prompt: number[];
  completionLength: number;
  seed: bigint;
}

const SEED_MOD = 1n << 64n;

let counter = 0;
function completionId(): string {
  counter = (counter + 1) % 1e9;
  return `cmpl-${randomBytes(9).toString('base64url')}${counter.toString(36)}`;
}

/** Checks what depends on the model (room for each prompt, total steps) and lays out the jobs. */
function plan(request: CompletionRequest, limits: ServerLimits): PlannedJob[] {
  const suffixLength = request.suffix ? request.suffix.length : 0;
  const base = request.seed ?? randomBytes(8).readBigUInt64LE();
  return request.prompts.map((prompt, index) => {
    const room = limits.contextLength - prompt.length - suffixLength;
    const param = request.prompts.length > 1 ? `prompt[${index}]` : 'prompt';
    if (room < 1) {
      throw new ApiError(
        400, 'invalid_request_error',
        `This model's maximum context length is ${limits.contextLength} tokens, and your prompt${suffixLength ? ' and suffix' : ''} ` +
          `already use ${prompt.length + suffixLength}; leave room for at least one completion token`,
        param, 'context_length_exceeded',
      );
    }
    const completionLength = request.maxTokens ?? Math.min(limits.defaultMaxTokens, room);
    if (completionLength > room) {
      throw new ApiError(
        400, 'invalid_request_error',
        `This model's maximum context length is ${limits.contextLength} tokens, however you requested ${prompt.length + suffixLength + completionLength} tokens ` +
          `(${prompt.length} in your prompt${suffixLength ? `, ${suffixLength} in your suffix` : ''}; ${completionLength} for the completion). ` +
          'Please reduce your prompt or completion length.',
        'max_tokens', 'context_length_exceeded',
      );
    }
    const total = totalStepsOf({ prompt, suffix: request.suffix, completionLength, steps: request.steps, blockSize: request.blockSize });
    if (total > limits.maxSteps) {
      throw invalidField('steps', `steps × blocks would be ${total} denoising steps; this server runs at most ${limits.maxSteps} per request (lower steps or raise block_size)`);
    }
    return { index, prompt, completionLength, seed: (base + BigInt(index)) % SEED_MOD };
  });
}

/** The error to answer for a failed job: aborts caused by the server shutting down are 503s. */
function failure(e: unknown, ctx: CompletionContext): ApiError {
  if (e instanceof AbortError && ctx.shutdownSignal.aborted) {
    return new ApiError(503, 'unavailable_error', 'The server shut down before this request finished', null, 'server_shutting_down');
  }
  return toApiError(e);
}

function promptText(request: CompletionRequest, job: PlannedJob): string {
  return request.echo ? tokenizer.decode(job.prompt) : '';
}

export async function handleCompletion(req: FastifyRequest, reply: FastifyReply, ctx: CompletionContext): Promise<void> {
  const request = parseCompletionRequest(req.body, ctx.limits);
  const jobs = plan(request, ctx.limits);
  const controller = new AbortController();
  const signal = AbortSignal.any([controller.signal, ctx.shutdownSignal]);
  const id = completionId();
  const created = Math.floor(Date.now() / 1000);
  const n = request.n;
  const model = ctx.limits.modelId;

  // Streaming state; `sse` is opened once the scheduler has admitted the jobs (a refusal is a
  // plain JSON error), before any step can arrive.
  let sse: SseStream | null = null;
  const progressive = request.stream && request.alg === 'original';
  const wantTokens = request.denoise !== null || progressive;
  const finals: FinalTextStream[][] = jobs.map(() => Array.from({ length: n }, () => new FinalTextStream(request.stop, ctx.maskId)));
  const chunk = (index: number, text: string, finishReason: string | null) => ({
    id, object: 'text_completion', created, model,
    choices: [{ text, index, logprobs: null, finish_reason: finishReason }],
    ...(request.includeUsage ? { usage: null } : {}),
  });
  const streamStep = (k: number) => (step: number, total: number, completions: number[][] | null) => {
    const out = sse;
    if (!completions || !out || out.closed) return;
    if (request.denoise && (step % request.denoise.every === 0 || step === total)) {
      const placeholder = request.denoise.placeholder;
      out.offer(`job${k}`, 'denoise', () => ({
        id, object: 'text_completion.denoise', created, model, step, total, skipped: out.skipped,
        samples: completions.map((tokens, j) => ({ index: k * n + j, ...renderDenoised(tokens, ctx.maskId, placeholder) })),
      }));
    }
    if (progressive) {
      completions.forEach((tokens, j) => {
        const delta = finals[k][j].advance(tokens);
        if (delta) out.send(chunk(k * n + j, delta, null));
      });
    }
  };

  const submitted = ctx.scheduler.submit(jobs.map((job) => ({
    rows: n,
    signal,
    run: async (replica) => {
      const startedAt = performance.now();
      let last = startedAt;
      let lastStep = 0;
      // Only a job streamed with frames or progressive text watches its steps, and only the steps
      // it shows (every denoise.every-th): the library runs the steps between two watched ones
      // without a round trip through the event loop (lib/core/batcher.ts). A job nobody watches
      // observes its mean step time once per step, at its end.
      const streamHook = request.stream && wantTokens ? streamStep(job.index) : null;
      const onStep: SamplingJob['onStep'] = streamHook
        ? (step, total, completions) => {
            const now = performance.now();
            if (lastStep === 0) ctx.metrics.firstFrameSeconds.observe((now - startedAt) / 1000);
            else for (let s = lastStep; s < step; s++) ctx.metrics.stepSeconds.observe((now - last) / 1000 / (step - lastStep));
            last = now;
            lastStep = step;
            streamHook(step, total, completions);
          }
        : null;
      let outcome: 'ok' | 'aborted' | 'error' = 'error';
      try {
        const rows = await runSampling({
          model: replica.model, prompt: job.prompt, suffix: request.suffix, completionLength: job.completionLength, samples: n,
          alg: request.alg, steps: request.steps, temperature: request.temperature, eta: request.eta, seed: job.seed,
          blockSize: request.blockSize, signal, onStep, stepTokens: wantTokens, stepEvery: request.denoise?.every ?? 1,
        });
        outcome = 'ok';
        if (!streamHook) {
          const total = totalStepsOf({ prompt: job.prompt, suffix: request.suffix, completionLength: job.completionLength, steps: request.steps, blockSize: request.blockSize });
          const mean = (performance.now() - startedAt) / 1000 / total;
          for (let i = 0; i < total; i++) ctx.metrics.stepSeconds.observe(mean);
        }
        ctx.metrics.addTokens(n * job.completionLength);
        return rows;
      } catch (e) {
        if (e instanceof AbortError) outcome = 'aborted';
        throw e;
      } finally {
        ctx.metrics.jobEnded(replica, outcome);
      }
    },
  })));
  // A client that goes away aborts its jobs (queued ones leave the queue, running ones stop at
  // their next step); a failure of one job ends the others of the request.
  const onClose = () => {
    if (!reply.raw.writableFinished) controller.abort(new Error('the client closed the connection'));
  };
  reply.raw.once('close', onClose);
  for (const p of submitted) p.catch(() => controller.abort(new Error('another job of this request failed')));
  const promptTokens = jobs.reduce((s, j) => s + j.prompt.length, 0);

  if (!request.stream) {
    let results: number[][][];
    try {
      results = await Promise.all(submitted);
    } catch (e) {
      if (reply.raw.destroyed) {
        reply.hijack();
        return;
      }
      throw failure(e, ctx);
    } finally {
      reply.raw.removeListener('close', onClose);
    }
    const choices: { text: string; index: number; logprobs: null; finish_reason: string }[] = [];
    let completionTokens = 0;
    for (const job of jobs) {
      const echo = promptText(request, job);
      results[job.index].forEach((tokens, j) => {
        const c = completionText(tokens, request.stop);
        completionTokens += c.tokens;
        choices.push({ text: echo + c.text, index: job.index * n + j, logprobs: null, finish_reason: c.finishReason });
      });
    }
    await reply.send({
      id, object: 'text_completion', created, model, choices,
      usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
    });
    return;
  }

  // streaming: from here on the answer is an event stream, errors included
  reply.hijack();
  const stream = new SseStream(reply.raw);
  sse = stream;
  for (const job of jobs) {
    const echo = promptText(request, job);
    if (echo) for (let j = 0; j < n; j++) stream.send(chunk(job.index * n + j, echo, null));
  }
  let completionTokens = 0;
  const settled = submitted.map((p, k) =>
    p.then((rows) => {
      stream.flush(`job${k}`);
      rows.forEach((tokens, j) => {
        const c: CompletionText = completionText(tokens, request.stop);
        completionTokens += c.tokens;
        stream.send(chunk(k * n + j, finals[k][j].finish(c), c.finishReason));
      });
    }),
  );
  try {
    await Promise.all(settled);
    if (request.includeUsage) {
      stream.send({
        id, object: 'text_completion', created, model, choices: [],
        usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
      });
    }
    stream.done();
  } catch (e) {
    await Promise.allSettled(settled);
    if (!stream.closed) {
      stream.send(failure(e, ctx).body());
      stream.end();
    }
  } finally {
    reply.raw.removeListener('close', onClose);
    ctx.metrics.framesSkipped.inc(stream.skipped);
  }
}
