/**
 * `hdlm serve`: an OpenAI-compatible HTTP server for HDLM models (docs/server.md).
 *
 *   const server = await serve({ model: 'hdlm-group/hdlm-base-epsilon-0.01', device: 'all' });
 *   await server.ready;          // replicas loaded; GET /health says 'ready'
 *   ...
 *   await server.close();        // stop taking requests, finish those in flight, unload
 *
 * `runServeCommand(argv)` is the command-line entry (flags → serve(), SIGTERM / SIGINT → close()).
 */
import * as fs from 'fs';
import type { FastifyInstance } from 'fastify';
import { HdlmArgumentError } from '../index';
import { buildApp, type AppState, type ServerStatus } from './app';
import { ServerMetrics } from './metrics';
import { FLAG_OF, SERVE_HELP, parseServeArgs, resolveServeOptions, type ResolvedServeOptions, type ServeOptions } from './options';
import { loadReplicas, type Replica } from './replicas';
import { Scheduler } from './scheduler';

export { SERVE_HELP, parseServeArgs, resolveServeOptions, type ServeOptions, type ResolvedServeOptions, type ServerStatus };

export interface HdlmServer {
  /** http://host:port of the listening socket */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** the fastify instance (for inject() in tests, or extra routes) */
  readonly app: FastifyInstance;
  /** resolves once every replica is loaded; rejects (and the server closes) if loading fails */
  readonly ready: Promise<void>;
  /** 'loading' | 'ready' | 'draining' | 'closed' */
  readonly status: ServerStatus | 'closed';
  readonly options: ResolvedServeOptions;
  /** requests (jobs) waiting and running */
  readonly load: { queued: number; running: number };
  /** each replica's device and load (empty while loading) */
  readonly replicas: ReturnType<Replica['describe']>[];
  /**
   * Stops taking requests (503, /health 'draining'), lets queued and running ones finish (at
   * most drainTimeoutMs, then they are aborted), closes the socket and unloads the models.
   * `{ abort: true }` aborts what runs at once. Idempotent.
   */
  close(options?: { abort?: boolean }): Promise<void>;
}

/** Starts listening at once (GET /health answers 'loading'), then loads one replica per device. */
export async function serve(options: ServeOptions = {}): Promise<HdlmServer> {
  return startServer(resolveServeOptions(options), true);
}

/** `logLoadFailure`: log a failed model load (serve() callers may never await `ready`). */
async function startServer(o: ResolvedServeOptions, logLoadFailure: boolean): Promise<HdlmServer> {
  const metrics = new ServerMetrics();
  const state: AppState = { status: 'loading', options: o, metrics, completions: null, created: Math.floor(Date.now() / 1000) };
  const shutdown = new AbortController();
  const app = buildApp(state);
  try {
    await app.listen({ host: o.host, port: o.port });
  } catch (e) {
    await app.close().catch(() => {});
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'EADDRINUSE' ? 'the port is in use' : err.code === 'EACCES' ? 'permission denied' : err.code === 'EADDRNOTAVAIL' ? 'no such local address' : err.message;
    throw new Error(`cannot listen on ${o.host}:${o.port}: ${why}`, { cause: e });
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : o.port;
  const hostForUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  let replicas: Replica[] = [];
  let closed = false;
  let closing: Promise<void> | null = null;

  const ready = (async () => {
    replicas = await loadReplicas(o.model, o.devices, {
      threads: o.threads, torchscriptCacheDir: o.torchscriptCacheDir, useCache: o.useCache, revision: o.revision, token: o.token, offline: o.offline,
    });
    if (closing) {
      for (const r of replicas) r.model.dispose();
      throw new Error('the server was closed while it loaded the model');
    }
    const model = replicas[0].model;
    const scheduler = new Scheduler(replicas, { maxQueue: o.maxQueue, maxBatchRows: o.maxBatch }, {
      started: (_replica, _rows, waited) => metrics.queueWaitSeconds.observe(waited),
    });
    metrics.attach(scheduler);
    state.completions = {
      limits: {
        modelId: o.modelName,
        contextLength: model.length,
        // prompts hold GPT-2 tokens: the mask id (the last row of the embedding) is not one
        vocabSize: Math.min(model.vocabSize, model.maskId),
        maxSteps: o.maxSteps,
        maxN: o.maxBatch,
        maxPrompts: o.maxPrompts,
        defaultSteps: o.steps,
        defaultAlg: o.alg,
        defaultMaxTokens: o.maxTokens,
      },
      scheduler,
      metrics,
      maskId: model.maskId,
      shutdownSignal: shutdown.signal,
    };
    state.status = 'ready';
  })();
  ready.catch(async (e) => {
    if (!closing && logLoadFailure) o.log(`hdlm serve: loading ${o.model} failed: ${(e as Error).message}`);
    await server.close().catch(() => {});
  });

  const server: HdlmServer = {
    url: `http://${hostForUrl}:${port}`,
    host: o.host,
    port,
    app,
    ready,
    options: o,
    get status() {
      return closed ? 'closed' : state.status;
    },
    get replicas() {
      return state.completions ? state.completions.scheduler.replicas.map((r) => r.describe()) : [];
    },
    get load() {
      const s = state.completions?.scheduler;
      return { queued: s ? s.queueDepth : 0, running: s ? s.jobsInFlight : 0 };
    },
    close(closeOptions = {}) {
      if (closeOptions.abort) shutdown.abort(new Error('the server is shutting down'));
      if (closing) return closing;
      state.status = 'draining';
      closing = (async () => {
        const scheduler = state.completions?.scheduler;
        if (scheduler) {
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<void>((resolve) => {
            timer = setTimeout(() => {
              if (scheduler.jobsInFlight + scheduler.queueDepth > 0) o.log(`hdlm serve: drain timeout (${o.drainTimeoutMs} ms): aborting ${scheduler.jobsInFlight + scheduler.queueDepth} job(s)`);
              shutdown.abort(new Error('the server is shutting down'));
              resolve();
            }, o.drainTimeoutMs);
            timer.unref();
          });
          await Promise.race([scheduler.drain(), timeout]);
          clearTimeout(timer);
          await scheduler.idle();
        } else {
          await ready.catch(() => {});
        }
        await app.close();
        for (const r of replicas) r.model.dispose();
        closed = true;
      })();
      return closing;
    },
  };
  return server;
}

/**
 * `hdlm serve [flags]`: resolves with the exit code once the server has stopped (0 after a
 * SIGTERM / SIGINT / `signal` drain). Usage errors throw HdlmArgumentError (exit code 2 in the
 * CLI); a model that fails to load or a port in use throws (exit code 1). A second signal while
 * draining aborts the requests still running.
 */
export async function runServeCommand(
  argv: readonly string[],
  ctx: { signal?: AbortSignal; markAbortable?: () => void; stdout?: (text: string) => void } = {},
): Promise<number> {
  const stdout = ctx.stdout ?? ((text: string) => process.stdout.write(text));
  const parsed = parseServeArgs(argv);
  if (parsed.help) {
    stdout(SERVE_HELP + '\n');
    return 0;
  }
  const opts: ServeOptions = { ...parsed.options };
  if (parsed.apiKeyFile !== null) {
    let text: string;
    try {
      text = fs.readFileSync(parsed.apiKeyFile, 'utf8');
    } catch (e) {
      throw new HdlmArgumentError(`cannot read --api-key-file ${JSON.stringify(parsed.apiKeyFile)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    opts.apiKey = text.split(/\r?\n/)[0].trim();
  } else if (opts.apiKey === undefined && process.env.HDLM_API_KEY) {
    opts.apiKey = process.env.HDLM_API_KEY;
  }
  const resolved = resolveServeOptions(opts, (name) => FLAG_OF[name] ?? name);
  const log = resolved.log;
  const server = await startServer(resolved, false);
  log(`hdlm serve: listening on ${server.url} (${resolved.apiKey ? 'API key required' : 'no API key'}); loading ${resolved.modelName} on ${resolved.devices.join(', ')}`);
  if (resolved.host !== '127.0.0.1' && resolved.host !== '::1' && resolved.host !== 'localhost' && !resolved.apiKey) {
    log('hdlm serve: warning: listening beyond this machine without --api-key: anyone who can reach the port can use it');
  }

  let signals = 0;
  let stop: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const onSignal = (name: string) => {
    signals++;
    if (signals === 1) {
      const { queued, running } = server.load;
      log(`hdlm serve: ${name}: draining (${running} running, ${queued} queued); ${name === 'SIGINT' ? 'Ctrl-C' : 'the signal'} again aborts them`);
      stop();
    } else {
      log(`hdlm serve: ${name} again: aborting running requests`);
      void server.close({ abort: true });
    }
  };
  const onTerm = () => onSignal('SIGTERM');
  const onInt = () => onSignal('SIGINT');
  const onAbort = () => onSignal('SIGINT');
  process.on('SIGTERM', onTerm);
  if (ctx.signal) {
    ctx.markAbortable?.();
    ctx.signal.addEventListener('abort', onAbort);
  } else {
    process.on('SIGINT', onInt);
  }
  try {
    const loaded = await Promise.race([server.ready.then(() => true), stopped.then(() => false)]);
    if (loaded) {
      log(`hdlm serve: ready: ${resolved.modelName} on ${resolved.devices.join(', ')} at ${server.url}`);
      await stopped;
    }
    await server.close();
    log('hdlm serve: stopped');
    return 0;
  } catch (e) {
    await server.close().catch(() => {});
    throw e;
  } finally {
    process.removeListener('SIGTERM', onTerm);
    process.removeListener('SIGINT', onInt);
    ctx.signal?.removeEventListener('abort', onAbort);
  }
}
