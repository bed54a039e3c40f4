/**
 * The fastify instance: routes, auth, body limits, errors in OpenAI's shape, request counting.
 * It reads the server's state through `AppState` (loading → ready → draining), which `serve()`
 * moves along.
 */
import * as fs from 'fs';
import * as path from 'path';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { ALGORITHMS } from '../index';
import { bearerAuth } from './auth';
import { handleCompletion, type CompletionContext } from './completions';
import { ApiError, retryAfterSeconds, toApiError } from './errors';
import type { ServerMetrics } from './metrics';
import type { ResolvedServeOptions } from './options';

export type ServerStatus = 'loading' | 'ready' | 'draining';

export interface AppState {
  status: ServerStatus;
  options: ResolvedServeOptions;
  metrics: ServerMetrics;
  /** set once the replicas are loaded */
  completions: CompletionContext | null;
  /** unix seconds the server started */
  created: number;
}

const PAGE_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/page.js': { file: 'page.js', type: 'text/javascript; charset=utf-8' },
  '/page.css': { file: 'page.css', type: 'text/css; charset=utf-8' },
};

/**
 * The page's folder. The files are plain (no build step) and stay in lib/server/page: from
 * dist/server/ (a checkout or the npm package, whose "files" lists lib/server/page/) that is
 * ../../lib/server/page; a copy next to this file wins if there is one.
 */
export function pageDir(): string {
  const candidates = [path.join(__dirname, 'page'), path.join(__dirname, '..', '..', 'lib', 'server', 'page')];
  for (const dir of candidates) if (fs.existsSync(path.join(dir, 'index.html'))) return dir;
  throw new Error(`the page files of hdlm serve are missing (looked in ${candidates.join(', ')})`);
}

const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

const LOOPBACK_ADDRESSES = ['127.0.0.1', '::1', 'localhost'];
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

/**
 * A server bound to this machine only answers requests addressed to this machine: a web page
 * elsewhere that points its own domain name at 127.0.0.1 (DNS rebinding) would otherwise reach
 * it as a same-origin site.
 */
function checkHost(host: string | undefined): void {
  const name = (host ?? '').toLowerCase().replace(/:\d+$/, '');
  if (!LOOPBACK_NAMES.includes(name)) {
    throw new ApiError(
      403, 'permission_error',
      `This server listens on this machine only and answers requests for localhost, 127.0.0.1 or [::1], not ${JSON.stringify(host ?? '')} (start it with --host to serve other names)`,
      null, 'host_not_allowed',
    );
  }
}

function sendError(reply: FastifyReply, e: ApiError): FastifyReply {
  return reply.code(e.status).headers(e.headers).type('application/json; charset=utf-8').send(e.body());
}

export function buildApp(state: AppState): FastifyInstance {
  const o = state.options;
  const app = Fastify({
    bodyLimit: o.maxBodyBytes,
    logger: o.logRequests ? { level: 'info' } : false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // a request must arrive within 30 s (slow-loris); the answer may take long (queue, stream)
    requestTimeout: 30_000,
    connectionTimeout: 0,
    keepAliveTimeout: 5000,
  });
  // JSON only: text/plain bodies get 415 instead of reaching the handlers as strings. Plain
  // JSON.parse, so a client learns where its JSON broke; keys such as __proto__ are harmless
  // here (bodies are only read field by field, never merged) and are refused as unknown fields.
  app.removeContentTypeParser(['text/plain', 'application/json']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = body as string;
    if (text.length === 0) {
      done(new ApiError(400, 'invalid_request_error', 'The request body is empty; send a JSON object', null, 'invalid_json'), undefined);
      return;
    }
    try {
      done(null, JSON.parse(text));
    } catch (e) {
      done(new ApiError(400, 'invalid_request_error', `The request body is not valid JSON: ${(e as Error).message}`, null, 'invalid_json'), undefined);
    }
  });

  const pages = new Map<string, { body: Buffer; type: string }>();
  const dir = pageDir();
  for (const [route, { file, type }] of Object.entries(PAGE_FILES)) pages.set(route, { body: fs.readFileSync(path.join(dir, file)), type });

  const checkKey = o.apiKey ? bearerAuth(o.apiKey) : null;
  const loopbackOnly = LOOPBACK_ADDRESSES.includes(o.host);

  app.addHook('onRequest', async (req, reply) => {
    const started = performance.now();
    const route = () => req.routeOptions.url ?? 'unmatched';
    reply.raw.once('close', () => {
      const status = reply.raw.writableFinished ? String(reply.raw.statusCode) : 'disconnected';
      state.metrics.requests.inc({ route: route(), status });
      if (route() === '/v1/completions') {
        state.metrics.requestSeconds.observe({ route: route(), stream: String(reply.raw.getHeader('content-type') ?? '').startsWith('text/event-stream') ? 'true' : 'false' }, (performance.now() - started) / 1000);
      }
    });
    if (loopbackOnly) checkHost(req.headers.host);
    const url = req.url.split('?')[0];
    if (checkKey && (url.startsWith('/v1/') || url === '/v1' || url === '/metrics')) checkKey(req.headers.authorization);
  });

  app.setErrorHandler((err, req, reply) => {
    const api = toApiError(err, o.maxBodyBytes);
    if (api.status >= 500) o.log(`hdlm serve: ${req.method} ${req.url}: ${api.message}`);
    return sendError(reply, api);
  });
  app.setNotFoundHandler((req, reply) =>
    sendError(reply, new ApiError(404, 'not_found_error', `No route ${req.method} ${req.url.split('?')[0]} (see GET /v1/models, POST /v1/completions, GET /health, GET /metrics)`, null, 'not_found')),
  );

  for (const [route, page] of pages) {
    app.get(route, (req, reply) => reply.headers(PAGE_HEADERS).type(page.type).send(page.body));
  }

  app.get('/health', (req, reply) => {
    const body = {
      status: state.status,
      model: o.modelName,
      auth_required: o.apiKey !== null,
      replicas: state.completions ? state.completions.scheduler.replicas.length : 0,
    };
    if (state.status !== 'ready') reply.code(503).headers(retryAfterSeconds(state.status === 'loading' ? 5 : 30));
    return body;
  });

  const modelObject = () => {
    const c = state.completions;
    return {
      id: o.modelName,
      object: 'model',
      created: state.created,
      owned_by: 'hdlm',
      // extensions: what a client needs to build requests
      hdlm: {
        ready: state.status === 'ready',
        context_length: c ? c.limits.contextLength : null,
        devices: c ? c.scheduler.replicas.map((r) => r.device) : o.devices,
        algorithms: ALGORITHMS,
        default_alg: o.alg,
        default_steps: o.steps,
        max_steps: o.maxSteps,
        max_n: o.maxBatch,
        max_prompts: o.maxPrompts,
        default_max_tokens: o.maxTokens,
        // a suffix is infilled: held fixed after the completion
        suffix_supported: true,
      },
    };
  };
  app.get('/v1/models', () => ({ object: 'list', data: [modelObject()] }));
  app.get('/v1/models/*', (req: FastifyRequest<{ Params: { '*': string } }>) => {
    if (req.params['*'] !== o.modelName) {
      throw new ApiError(404, 'not_found_error', `The model ${JSON.stringify(req.params['*'])} does not exist; this server serves ${JSON.stringify(o.modelName)}`, 'model', 'model_not_found');
    }
    return modelObject();
  });

  app.post('/v1/completions', async (req, reply) => {
    if (state.status === 'loading' || !state.completions) {
      throw new ApiError(503, 'unavailable_error', 'The model is still loading; retry shortly', null, 'model_loading', retryAfterSeconds(5));
    }
    await handleCompletion(req, reply, state.completions);
  });

  app.get('/metrics', async (req, reply) => {
    const text = await state.metrics.registry.metrics();
    return reply.type(state.metrics.registry.contentType).send(text);
  });

  return app;
}
