/**
 * What we ask the Hub, through @huggingface/hub (modelInfo / datasetInfo, pathsInfo, listFiles;
 * downloads in download.ts): the commit a revision points to, the files of a commit, the files of
 * a folder. The library builds the URLs and reads the API's answers; the network side is this
 * file's fetch: the token (to the endpoint's origin only, redirects followed here), time and size
 * bounds on every answer, and the Hub's error codes, which the library's errors drop.
 */
import { hubError } from './errors';
import { COMMIT_RE, type Ctx } from './options';

/** A file of a commit, as the Hub describes it. */
export interface RemoteFile {
  name: string;
  /** sha256 for LFS files, git blob id otherwise: the blob's name in the cache */
  etag: string;
  size: number;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 10;
/** Largest API answer (JSON) read; file contents are bounded by download.ts at their expected size. */
export const MAX_API_BYTES = 32 * 1024 * 1024;

function originOf(url: string): string | null {
  try {
    return new URL(url).origin;
  } catch {
    return null;
  }
}

/** A stalled or endless answer: reported like a connection failure (the cache may be used instead). */
function timeoutError(message: string): Error {
  return Object.assign(new Error(message), { name: 'TimeoutError', code: 'ETIMEDOUT' });
}

/**
 * The fetch given to @huggingface/hub, which does the network side of every Hub call:
 *
 * - the token goes to the endpoint's origin only. Redirects are followed here (redirect:
 *   'manual'), hop by hop: the token is added on hops to the endpoint's origin and every
 *   Authorization header is dropped on a hop to another origin (the library itself would send the
 *   token to a CDN that answers with a CloudFront header). The library is never given the token.
 * - every answer is bounded in time: no bytes for HF_HUB_ETAG_TIMEOUT (API) or
 *   HF_HUB_DOWNLOAD_TIMEOUT (files) seconds, or an API answer running past six of those, aborts it;
 *   API answers larger than MAX_API_BYTES are cut off. `stop` and the call's signal abort it.
 * - the X-Error-Code of failed answers is remembered (the library's errors drop it).
 */
export function makeFetch(ctx: Ctx, stop?: AbortSignal): typeof fetch {
  const origin = new URL(ctx.endpoint).origin;
  const bearer = ctx.token !== undefined ? `Bearer ${ctx.token}` : undefined;
  const carriesToken = (value: string | null): boolean => ctx.token !== undefined && value !== null && value.includes(ctx.token);
  const wrapped = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request = input instanceof Request ? input : null;
    let url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    let method = (init?.method ?? request?.method ?? 'GET').toUpperCase();
    let body = init?.body ?? null;
    const headers = new Headers(init?.headers ?? request?.headers);
    const api = originOf(url) === origin && new URL(url).pathname.startsWith('/api/');
    const idleMs = api ? ctx.metadataTimeoutMs : ctx.downloadTimeoutMs;
    const what = api ? 'HF_HUB_ETAG_TIMEOUT' : 'HF_HUB_DOWNLOAD_TIMEOUT';
    const timeout = new AbortController();
    const signals = [timeout.signal, ctx.signal, stop, init?.signal ?? undefined].filter((x): x is AbortSignal => x !== undefined && x !== null);
    const signal = AbortSignal.any(signals);
    const deadline = api
      ? setTimeout(() => timeout.abort(timeoutError(`the answer of ${originOf(url)} took more than ${(6 * idleMs) / 1000} s (6 × ${what})`)), 6 * idleMs)
      : null;
    deadline?.unref?.();
    const done = (): void => {
      if (deadline) clearTimeout(deadline);
    };
    try {
      for (let hop = 0; ; hop++) {
        const sameOrigin = originOf(url) === origin;
        const h = new Headers(headers);
        if (!sameOrigin && carriesToken(h.get('authorization'))) h.delete('authorization');
        if (sameOrigin && bearer !== undefined && !h.has('authorization')) h.set('authorization', bearer);
        const idle = setTimeout(() => timeout.abort(timeoutError(`no answer from ${originOf(url)} for ${idleMs / 1000} s (${what})`)), idleMs);
        let resp: Response;
        try {
          resp = await ctx.baseFetch(url, { ...init, method, body, headers: h, redirect: 'manual', signal });
        } catch (e) {
          throw timeout.signal.aborted ? timeout.signal.reason : e;
        } finally {
          clearTimeout(idle);
        }
        const location = resp.headers.get('location');
        if (REDIRECT_STATUSES.has(resp.status) && location !== null) {
          await resp.body?.cancel().catch(() => undefined);
          if (hop >= MAX_REDIRECTS) throw new TypeError('fetch failed', { cause: new Error(`more than ${MAX_REDIRECTS} redirects from ${originOf(url)}`) });
          const next = new URL(location, url);
          if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new TypeError('fetch failed', { cause: new Error(`a redirect to ${next.protocol}`) });
          if (resp.status === 303 ? method !== 'HEAD' : (resp.status === 301 || resp.status === 302) && method === 'POST') {
            method = 'GET';
            body = null;
            headers.delete('content-type');
            headers.delete('content-length');
          }
          // as fetch does: a hop to another origin drops the credentials the request carried
          if (next.origin !== originOf(url)) headers.delete('authorization');
          url = next.href;
          continue;
        }
        if (!resp.ok) {
          const code = resp.headers.get('x-error-code');
          ctx.failures.set(url, code);
          ctx.failures.set('', code);
        }
        return guardBody(resp, url, idleMs, what, api ? MAX_API_BYTES : null, timeout, done);
      }
    } catch (e) {
      done();
      throw e;
    }
  };
  return wrapped as typeof fetch;
}

/** The answer with its body read under the idle timeout (and the size cap); `url` is the last hop's. */
function guardBody(
  resp: Response, url: string, idleMs: number, what: string, cap: number | null, timeout: AbortController, done: () => void,
): Response {
  const source = resp.body;
  let out = resp;
  if (source === null) {
    done();
  } else {
    const reader = source.getReader();
    let received = 0;
    const guarded = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const idle = setTimeout(() => timeout.abort(timeoutError(`no data from ${originOf(url)} for ${idleMs / 1000} s (${what})`)), idleMs);
        try {
          const { done: end, value } = await reader.read();
          if (end) {
            done();
            controller.close();
            return;
          }
          received += value.byteLength;
          if (cap !== null && received > cap) {
            const e = new Error(`the answer of ${originOf(url)} is larger than ${cap} bytes`);
            timeout.abort(e);
            throw e;
          }
          controller.enqueue(value);
        } catch (e) {
          done();
          throw timeout.signal.aborted ? timeout.signal.reason : e;
        } finally {
          clearTimeout(idle);
        }
      },
      cancel(reason) {
        done();
        return reader.cancel(reason);
      },
    });
    out = new Response(guarded, { status: resp.status, statusText: resp.statusText, headers: resp.headers });
  }
  // the library reads `url` (the CDN decision, error messages): the hop that answered
  Object.defineProperty(out, 'url', { value: url });
  return out;
}

/** The parameters every @huggingface/hub call of this context takes (the token is added by makeFetch, never by the library). */
export function requestParams(ctx: Ctx, stop?: AbortSignal): { hubUrl: string; fetch: typeof fetch } {
  return { hubUrl: ctx.endpoint, fetch: makeFetch(ctx, stop) };
}

/** The commit sha the context's revision points to now. */
export async function fetchCommit(ctx: Ctx): Promise<string> {
  const params = { name: ctx.repoId, revision: ctx.revision, additionalFields: ['sha' as const], ...requestParams(ctx) };
  const info = ctx.repoType === 'dataset' ? await ctx.lib.datasetInfo(params) : await ctx.lib.modelInfo(params);
  const sha = (info as { sha?: unknown }).sha;
  if (typeof sha !== 'string' || !COMMIT_RE.test(sha)) {
    throw hubError(ctx, `The Hugging Face Hub at ${ctx.endpoint} returned no commit sha for ${ctx.repoId}@${ctx.revision} (got ${JSON.stringify(sha)}).`);
  }
  return sha;
}

/** Which of `names` exist at `commit`, with their blob names and sizes (one request). */
export async function fetchPathsInfo(ctx: Ctx, commit: string, names: string[]): Promise<Map<string, RemoteFile>> {
  const infos = await ctx.lib.pathsInfo({ repo: { type: ctx.repoType, name: ctx.repoId }, paths: names, revision: commit, ...requestParams(ctx) });
  const out = new Map<string, RemoteFile>();
  for (const info of infos) {
    if (info.type !== 'file' || !names.includes(info.path)) continue;
    const etag = info.lfs?.oid ?? info.oid ?? info.xetHash;
    const size = info.lfs?.size ?? info.size;
    if (typeof etag !== 'string' || !/^[A-Za-z0-9_-]+$/.test(etag) || typeof size !== 'number' || !(size >= 0)) {
      throw hubError(ctx, `The Hugging Face Hub at ${ctx.endpoint} returned unusable file information for "${info.path}" of ${ctx.repoId}@${ctx.revision}.`);
    }
    out.set(info.path, { name: info.path, etag, size });
  }
  return out;
}

/** Repo paths of the files directly inside `folder` at `commit` whose names `match` (the tree API). */
export async function listFolder(ctx: Ctx, commit: string, folder: string, match: (name: string) => boolean): Promise<string[]> {
  const names: string[] = [];
  for await (const e of ctx.lib.listFiles({ repo: { type: ctx.repoType, name: ctx.repoId }, revision: commit, path: folder, ...requestParams(ctx) })) {
    const rel = typeof e.path === 'string' && e.path.startsWith(`${folder}/`) ? e.path.slice(folder.length + 1) : '';
    if (e.type === 'file' && rel !== '' && !rel.includes('/') && match(rel)) names.push(e.path);
  }
  return names;
}
