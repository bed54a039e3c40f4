/**
 * What we ask the Hub, through @huggingface/hub (modelInfo / datasetInfo, pathsInfo, listFiles;
 * downloads in download.ts): the commit a revision points to, the files of a commit, the files of
 * a folder. The library handles URLs, redirects and the API's answers; this file adds the token
 * the library will not take and remembers the Hub's error codes, which its errors drop.
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

/**
 * The fetch given to @huggingface/hub: adds the token to requests for the Hub's own origin only
 * (the library only accepts tokens starting with 'hf_'; mirrors and proxies use others, and a
 * token must never reach another origin such as a CDN) and remembers the X-Error-Code of failed
 * responses.
 */
function makeFetch(ctx: Ctx): typeof fetch {
  const origin = new URL(ctx.endpoint).origin;
  const wrapped = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    let sameOrigin = false;
    try {
      sameOrigin = new URL(url).origin === origin;
    } catch {
      // let fetch report the bad URL
    }
    if (ctx.token !== undefined && sameOrigin && !headers.has('authorization')) {
      headers.set('authorization', `Bearer ${ctx.token}`);
    }
    const resp = await ctx.baseFetch(input, { ...init, headers });
    if (!resp.ok) {
      const code = resp.headers.get('x-error-code');
      ctx.failures.set(resp.url || url, code);
      ctx.failures.set('', code);
    }
    return resp;
  };
  return wrapped as typeof fetch;
}

/** The parameters every @huggingface/hub call of this context takes. */
export function requestParams(ctx: Ctx): { hubUrl: string; fetch: typeof fetch; accessToken?: string } {
  // Only tokens the library accepts are given to it; makeFetch adds the others.
  const credentials = ctx.token !== undefined && ctx.token.startsWith('hf_') ? { accessToken: ctx.token } : {};
  return { hubUrl: ctx.endpoint, fetch: makeFetch(ctx), ...credentials };
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
