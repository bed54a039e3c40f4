/**
 * Prometheus metrics (prom-client), in a registry of the server's own (several servers in one
 * process do not mix their numbers). Rates are counters, to be used with rate() in PromQL;
 * `hdlm_tokens_per_second` is a convenience gauge over the last 10 seconds.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Replica } from './replicas';
import type { Scheduler } from './scheduler';

const TOKENS_WINDOW_MS = 10_000;

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'status'>;
  readonly requestSeconds: Histogram<'route' | 'stream'>;
  readonly stepSeconds: Histogram;
  readonly firstFrameSeconds: Histogram;
  readonly queueWaitSeconds: Histogram;
  readonly generatedTokens: Counter;
  readonly jobs: Counter<'replica' | 'device' | 'outcome'>;
  readonly framesSkipped: Counter;
  #scheduler: Scheduler | null = null;
  #recentTokens: { at: number; tokens: number }[] = [];

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'hdlm_' });
    this.requests = new Counter({
      name: 'hdlm_http_requests_total', help: 'HTTP requests answered, by route and status code', labelNames: ['route', 'status'], registers,
    });
    this.requestSeconds = new Histogram({
      name: 'hdlm_request_duration_seconds', help: 'Time from a completion request to its last byte',
      labelNames: ['route', 'stream'], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300], registers,
    });
    this.stepSeconds = new Histogram({
      name: 'hdlm_step_seconds',
      help: "Wall time between consecutive denoising steps of one job (shared with the other jobs on its replica)",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers,
    });
    this.firstFrameSeconds = new Histogram({
      name: 'hdlm_time_to_first_frame_seconds', help: 'Time from admission of a streamed job to the first step it shows (its first frame)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers,
    });
    this.queueWaitSeconds = new Histogram({
      name: 'hdlm_queue_wait_seconds', help: 'Time jobs waited in the queue for a replica',
      buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60], registers,
    });
    this.generatedTokens = new Counter({
      name: 'hdlm_generated_tokens_total', help: 'Completion tokens sampled (every position of max_tokens, all samples)', registers,
    });
    this.jobs = new Counter({
      name: 'hdlm_jobs_total', help: 'Sampling jobs (one per prompt of a request) ended, by replica and outcome',
      labelNames: ['replica', 'device', 'outcome'], registers,
    });
    this.framesSkipped = new Counter({
      name: 'hdlm_denoise_frames_skipped_total', help: 'Denoising frames replaced by a newer one before a slow client could take them', registers,
    });
    // prom-client calls collect() with `this` bound to the metric: reach the scheduler through closures
    const scheduler = () => this.#scheduler;
    const tokensPerSecond = () => this.tokensPerSecond();
    const queueDepth = () => scheduler()?.queueDepth ?? 0;
    new Gauge({
      name: 'hdlm_queue_depth', help: 'Jobs waiting for a replica', registers,
      collect() {
        this.set(queueDepth());
      },
    });
    new Gauge({
      name: 'hdlm_batch_occupancy', help: 'Sample rows in flight on each replica (concurrent calls; one batch once the library batches them)',
      labelNames: ['replica', 'device'], registers,
      collect() {
        this.reset();
        for (const r of scheduler()?.replicas ?? []) this.set({ replica: String(r.index), device: r.device }, r.rowsInFlight);
      },
    });
    new Gauge({
      name: 'hdlm_jobs_in_flight', help: 'Sampling jobs running on each replica', labelNames: ['replica', 'device'], registers,
      collect() {
        this.reset();
        for (const r of scheduler()?.replicas ?? []) this.set({ replica: String(r.index), device: r.device }, r.jobsInFlight);
      },
    });
    new Gauge({
      name: 'hdlm_tokens_per_second', help: `Completion tokens sampled per second over the last ${TOKENS_WINDOW_MS / 1000} s`, registers,
      collect() {
        this.set(tokensPerSecond());
      },
    });
  }

  attach(scheduler: Scheduler): void {
    this.#scheduler = scheduler;
  }

  jobEnded(replica: Replica, outcome: 'ok' | 'aborted' | 'error'): void {
    this.jobs.inc({ replica: String(replica.index), device: replica.device, outcome });
  }

  addTokens(n: number): void {
    this.generatedTokens.inc(n);
    const now = Date.now();
    this.#recentTokens.push({ at: now, tokens: n });
    this.#trim(now);
  }

  tokensPerSecond(): number {
    const now = Date.now();
    this.#trim(now);
    const sum = this.#recentTokens.reduce((s, e) => s + e.tokens, 0);
    return sum / (TOKENS_WINDOW_MS / 1000);
  }

  #trim(now: number): void {
    while (this.#recentTokens.length > 0 && this.#recentTokens[0].at < now - TOKENS_WINDOW_MS) this.#recentTokens.shift();
  }
}
