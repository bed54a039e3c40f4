/**
 * Admission and routing of sampling jobs. A job needs `rows` sample rows; a replica takes jobs
 * while its rows in flight stay within `maxBatchRows` (a job larger than that still runs, alone).
 * Jobs that cannot start wait in one FIFO queue of at most `maxQueue` jobs; each job goes to the
 * least-loaded replica that can take it (fewest rows in flight, then fewest jobs started, then
 * the lowest index). A request's jobs are admitted all together or not at all.
 */
import { AbortError } from '../index';
import { ApiError, retryAfterSeconds } from './errors';
import type { Replica } from './replicas';

export interface SchedulerEvents {
  /** a job started on a replica */
  started?(replica: Replica, rows: number, waitedSeconds: number): void;
  /** a job ended (ok: resolved; else rejected or aborted) */
  finished?(replica: Replica, rows: number, seconds: number, ok: boolean): void;
}

export interface JobRequest<T> {
  rows: number;
  signal: AbortSignal;
  run: (replica: Replica) => Promise<T>;
}

interface Entry {
  rows: number;
  signal: AbortSignal;
  run: (replica: Replica) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (e: unknown) => void;
  onAbort: () => void;
  enqueuedAt: number;
}

export class Scheduler {
  readonly replicas: readonly Replica[];
  readonly maxQueue: number;
  readonly maxBatchRows: number;
  #queue: Entry[] = [];
  #draining = false;
  #idleWaiters: (() => void)[] = [];
  #events: SchedulerEvents;
  /** moving average of job run time, for Retry-After */
  #jobSeconds = 1;

  constructor(replicas: readonly Replica[], options: { maxQueue: number; maxBatchRows: number }, events: SchedulerEvents = {}) {
    if (replicas.length === 0) throw new Error('Scheduler needs at least one replica');
    this.replicas = replicas;
    this.maxQueue = options.maxQueue;
    this.maxBatchRows = options.maxBatchRows;
    this.#events = events;
  }

  /** jobs waiting for a replica */
  get queueDepth(): number {
    return this.#queue.length;
  }

  get jobsInFlight(): number {
    return this.replicas.reduce((s, r) => s + r.jobsInFlight, 0);
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Seconds a client refused for a full queue should wait before trying again (at least 1). */
  retryAfter(): number {
    const perReplica = (this.#queue.length + this.jobsInFlight + 1) / this.replicas.length;
    return Math.min(3600, Math.max(1, Math.ceil(this.#jobSeconds * perReplica)));
  }

  /**
   * Admits the jobs of one request (all or none) and returns one promise per job. Throws an
   * ApiError at once when the server drains (503) or the queue cannot take them (429), both with
   * Retry-After. A job whose signal aborts while it waits leaves the queue and rejects with an
   * AbortError; a running job gets the signal itself.
   */
  submit<T>(jobs: readonly JobRequest<T>[]): Promise<T>[] {
    if (this.#draining) {
      throw new ApiError(503, 'unavailable_error', 'The server is shutting down and takes no new requests', null, 'server_shutting_down', retryAfterSeconds(this.retryAfter()));
    }
    const waiting = this.#wouldWait(jobs.map((j) => j.rows));
    if (this.#queue.length + waiting > this.maxQueue) {
      throw new ApiError(
        429, 'rate_limit_error',
        `The server is busy: ${this.#queue.length} job(s) are queued (at most ${this.maxQueue}) and this request needs ${waiting} more; retry later`,
        null, 'queue_full', retryAfterSeconds(this.retryAfter()),
      );
    }
    const promises = jobs.map((job) => new Promise<T>((resolve, reject) => {
      const entry: Entry = {
        rows: job.rows,
        signal: job.signal,
        run: job.run,
        resolve: resolve as (v: unknown) => void,
        reject,
        enqueuedAt: performance.now(),
        onAbort: () => {
          const i = this.#queue.indexOf(entry);
          if (i < 0) return;
          this.#queue.splice(i, 1);
          reject(new AbortError('The request was cancelled while it waited in the queue', { cause: job.signal.reason }));
          this.#checkIdle();
          this.#dispatch();
        },
      };
      if (job.signal.aborted) {
        reject(new AbortError('The request was cancelled before it was queued', { cause: job.signal.reason }));
        return;
      }
      job.signal.addEventListener('abort', entry.onAbort, { once: true });
      this.#queue.push(entry);
    }));
    this.#dispatch();
    return promises;
  }

  /** Stops admitting jobs; resolves once every admitted job has ended. */
  drain(): Promise<void> {
    this.#draining = true;
    return this.idle();
  }

  /** Resolves when no job waits or runs. */
  idle(): Promise<void> {
    if (this.#queue.length === 0 && this.jobsInFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** How many of these jobs would have to wait if submitted now (FIFO: all of them behind a non-empty queue). */
  #wouldWait(rows: number[]): number {
    if (this.#queue.length > 0) return rows.length;
    const load = this.replicas.map((r) => ({ rows: r.rowsInFlight, started: r.jobsStarted }));
    let waiting = 0;
    for (let j = 0; j < rows.length; j++) {
      const i = this.#pick(load, rows[j]);
      if (i < 0) {
        waiting = rows.length - j;
        break;
      }
      load[i].rows += rows[j];
      load[i].started++;
    }
    return waiting;
  }

  /** Index of the least-loaded replica that can take `rows` more rows, or -1. */
  #pick(load: readonly { rows: number; started: number }[], rows: number): number {
    let best = -1;
    for (let i = 0; i < load.length; i++) {
      const fits = load[i].rows === 0 || load[i].rows + rows <= this.maxBatchRows;
      if (!fits) continue;
      if (best < 0 || load[i].rows < load[best].rows || (load[i].rows === load[best].rows && load[i].started < load[best].started)) best = i;
    }
    return best;
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      const head = this.#queue[0];
      const i = this.#pick(this.replicas.map((r) => ({ rows: r.rowsInFlight, started: r.jobsStarted })), head.rows);
      if (i < 0) return;
      this.#queue.shift();
      this.#start(head, this.replicas[i]);
    }
  }

  #start(entry: Entry, replica: Replica): void {
    entry.signal.removeEventListener('abort', entry.onAbort);
    replica.rowsInFlight += entry.rows;
    replica.jobsInFlight++;
    replica.jobsStarted++;
    const startedAt = performance.now();
    this.#events.started?.(replica, entry.rows, (startedAt - entry.enqueuedAt) / 1000);
    let running: Promise<unknown>;
    try {
      running = entry.run(replica);
    } catch (e) {
      running = Promise.reject(e);
    }
    // The replica is freed (and the next job started) before the caller sees the result.
    const end = (ok: boolean) => {
      const seconds = (performance.now() - startedAt) / 1000;
      if (ok) this.#jobSeconds = 0.8 * this.#jobSeconds + 0.2 * seconds;
      replica.rowsInFlight -= entry.rows;
      replica.jobsInFlight--;
      this.#events.finished?.(replica, entry.rows, seconds, ok);
      this.#dispatch();
      this.#checkIdle();
    };
    running.then(
      (value) => {
        end(true);
        entry.resolve(value);
      },
      (e) => {
        end(false);
        entry.reject(e);
      },
    );
  }

  #checkIdle(): void {
    if (this.#queue.length > 0 || this.jobsInFlight > 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }
}
