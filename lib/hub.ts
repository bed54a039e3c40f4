/**
 * Everything Hugging Face Hub: resolving a model repo to local files, with the same cache
 * layout as Python's huggingface_hub, so both share one cache:
 *
 *   <cache>/models--<owner>--<name>/
 *     blobs/<etag>                        file contents (etag = sha256 for LFS files, git blob id otherwise)
 *     snapshots/<commit>/<file>           relative symlink to ../../blobs/<etag>
 *     refs/<revision>                     the commit sha the branch/tag pointed to (no newline)
 *     .no_exist/<commit>/<file>           empty marker: the file does not exist at that commit
 *
 * Dataset repos (evaluation data, hub-datasets.ts) are `datasets/<owner>/<name>` on the Hub and
 * `<cache>/datasets--<owner>--<name>/` in the cache, laid out the same way; a revision with a
 * slash (`refs/convert/parquet`) is kept as refs/refs/convert/parquet, as Python keeps it.
 *
 * Network access goes through `@huggingface/hub` (modelInfo / datasetInfo, pathsInfo, listFiles, downloadFile: it handles
 * redirects, range probes and the xet protocol). What that library does not do is handled here:
 * branch -> commit resolution for the snapshot folder, refs files, offline mode, atomic blob
 * writes with size / sha256 checks, cleanup of partial downloads, progress, tokens that do not
 * start with `hf_` (mirrors, proxies), and errors a user can act on.
 */
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as os from 'os';
import * as path from 'path';
import { createHash, randomBytes } from 'crypto';
import type * as HubLib from '@huggingface/hub';
import { HdlmArgumentError, HdlmError, invalidParameterError } from './errors';

export interface HubOptions {
  /** Branch, tag or commit sha. Default 'main'. */
  revision?: string;
  /**
   * Access token. Default: HF_TOKEN, else HUGGING_FACE_HUB_TOKEN, else the token file written by
   * `huggingface-cli login` (HF_TOKEN_PATH, else $HF_HOME/token). An empty string sends no token.
   */
  token?: string;
  /** Hub URL. Default HF_ENDPOINT, else 'https://huggingface.co'. */
  endpoint?: string;
  /** Use only the local cache. Default: HF_HUB_OFFLINE is '1', 'true', 'yes' or 'on'. */
  offline?: boolean;
  /** Default: HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** fetch implementation (tests, proxies). Default: the global fetch. */
  fetch?: typeof fetch;
  /** Called as file contents arrive (only for files actually downloaded). */
  onProgress?: (e: { file: string; loaded: number; total: number | null }) => void;
}

/** One alternatives group: the first name that exists in the repo is resolved. */
export interface RepoFileGroup {
  names: string[];
  /** when true, the group may resolve to no file at all */
  optional?: boolean;
}

export interface ResolvedRepoFiles {
  /** absolute path of <cache>/models--<owner>--<name>/snapshots/<commit> */
  snapshotDir: string;
  /** the 40-hex commit sha the revision resolved to */
  commit: string;
  /** repo file name -> absolute path (inside snapshotDir), one entry per resolved file */
  files: Record<string, string>;
}

export interface CachedModel {
  /** 'owner/name' */
  repoId: string;
  /** absolute path of the repo folder in the cache */
  path: string;
  /** revision name -> commit sha, from refs/ */
  refs: Record<string, string>;
  /** commit shas that have a snapshot folder */
  snapshots: string[];
  /** total size of the complete blobs, in bytes */
  sizeBytes: number;
}

const DEFAULT_ENDPOINT = 'https://huggingface.co';
const DEFAULT_REVISION = 'main';
const COMMIT_RE = /^[0-9a-f]{40}$/;
const SHA256_RE = /^[0-9a-f]{64}$/;
const REPO_PART_RE = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
const TRUE_VALUES = new Set(['1', 'true', 'yes', 'on']);

// ---------------------------------------------------------------------------------------------
// environment

function envValue(name: string): string | undefined {
  const v = process.env[name];
  return v !== undefined && v.trim() !== '' ? v : undefined;
}

function expandUser(p: string): string {
  if (p === '~') return os.homedir();
  if (p.startsWith('~/') || p.startsWith('~\\')) return path.join(os.homedir(), p.slice(2));
  return p;
}

/** $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (as Python computes it). */
function hfHome(): string {
  const home = envValue('HF_HOME');
  if (home !== undefined) return path.resolve(expandUser(home));
  const xdg = envValue('XDG_CACHE_HOME');
  return path.resolve(expandUser(xdg ?? path.join(os.homedir(), '.cache')), 'huggingface');
}

function envOffline(): boolean {
  const v = process.env.HF_HUB_OFFLINE;
  return v !== undefined && TRUE_VALUES.has(v.trim().toLowerCase());
}

function checkOptions(opts: unknown): HubOptions {
  if (opts === undefined || opts === null) return {};
  if (typeof opts !== 'object' || Array.isArray(opts)) throw invalidParameterError('options', 'an object', opts);
  const o = opts as HubOptions;
  if (o.revision !== undefined) checkRevision(o.revision);
  if (o.token !== undefined && typeof o.token !== 'string') throw invalidParameterError('token', 'a string', o.token);
  if (o.endpoint !== undefined && (typeof o.endpoint !== 'string' || o.endpoint.trim() === '')) {
    throw invalidParameterError('endpoint', 'a non-empty URL string', o.endpoint);
  }
  if (o.offline !== undefined && typeof o.offline !== 'boolean') throw invalidParameterError('offline', 'a boolean', o.offline);
  if (o.cacheDir !== undefined && (typeof o.cacheDir !== 'string' || o.cacheDir.trim() === '')) {
    throw invalidParameterError('cacheDir', 'a non-empty path string', o.cacheDir);
  }
  if (o.fetch !== undefined && typeof o.fetch !== 'function') throw invalidParameterError('fetch', 'a function', o.fetch);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') {
    throw invalidParameterError('onProgress', 'a function', o.onProgress);
  }
  return o;
}

function checkRevision(revision: unknown): string {
  if (
    typeof revision !== 'string' ||
    revision === '' ||
    /[\x00-\x20\x7f\\]/.test(revision) ||
    revision.startsWith('/') ||
    revision.endsWith('/') ||
    revision.split('/').some((seg) => seg === '' || seg === '.' || seg === '..')
  ) {
    throw invalidParameterError('revision', 'a non-empty branch, tag or commit name', revision);
  }
  return revision;
}

function checkFileName(name: unknown, where: string): string {
  if (
    typeof name !== 'string' ||
    name === '' ||
    /[\x00-\x1f\x7f\\:]/.test(name) ||
    name.startsWith('/') ||
    name.split('/').some((seg) => seg === '' || seg === '.' || seg === '..')
  ) {
    throw invalidParameterError(where, 'a relative file name inside the repository (like "config.json")', name);
  }
  return name;
}

function isRepoId(s: string, requireOwner: boolean): boolean {
  if (s.includes('--') || s.includes('..')) return false;
  const parts = s.split('/');
  if (parts.length > 2 || (requireOwner && parts.length !== 2)) return false;
  if (!parts.every((p) => REPO_PART_RE.test(p))) return false;
  return parts[parts.length - 1].length <= 96;
}

/** The hub cache folder the options (or the environment) select; absolute. */
export function hubCacheDir(opts?: HubOptions): string {
  const o = checkOptions(opts);
  if (o.cacheDir !== undefined) return path.resolve(expandUser(o.cacheDir));
  const fromEnv = envValue('HF_HUB_CACHE') ?? envValue('HUGGINGFACE_HUB_CACHE');
  if (fromEnv !== undefined) return path.resolve(expandUser(fromEnv));
  return path.join(hfHome(), 'hub');
}

/**
 * Whether `s` is shaped like a Hugging Face model id 'owner/name': exactly one slash, no leading
 * './', '../' or '/', only the characters the Hub allows. Does not look at the file system: the
 * caller checks first whether `s` is an existing local path.
 */
export function looksLikeRepoId(s: string): boolean {
  return typeof s === 'string' && isRepoId(s, true);
}

// ---------------------------------------------------------------------------------------------
// context

type RepoType = 'model' | 'dataset';

interface Ctx {
  repoId: string;
  repoType: RepoType;
  revision: string;
  cacheDir: string;
  storage: string;
  endpoint: string;
  token: string | undefined;
  tokenSource: string;
  offline: boolean;
  offlineSource: string;
  baseFetch: typeof fetch;
  onProgress: HubOptions['onProgress'];
  /** x-error-code of failed responses, by response URL */
  failures: Map<string, string | null>;
}

function resolveToken(o: HubOptions): { token: string | undefined; source: string } {
  let token: string | undefined;
  let source: string;
  if (o.token !== undefined) {
    token = o.token;
    source = 'the token option';
  } else if (envValue('HF_TOKEN') !== undefined) {
    token = process.env.HF_TOKEN;
    source = 'HF_TOKEN';
  } else if (envValue('HUGGING_FACE_HUB_TOKEN') !== undefined) {
    token = process.env.HUGGING_FACE_HUB_TOKEN;
    source = 'HUGGING_FACE_HUB_TOKEN';
  } else {
    const file = envValue('HF_TOKEN_PATH') !== undefined ? path.resolve(expandUser(process.env.HF_TOKEN_PATH as string)) : path.join(hfHome(), 'token');
    source = `the token file ${file}`;
    try {
      token = fs.readFileSync(file, 'utf8');
    } catch {
      token = undefined;
    }
  }
  token = token?.trim();
  if (token === '') token = undefined;
  // Never echo the token: an invalid header value would otherwise end up in fetch's error message.
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) {
    throw new HdlmArgumentError(
      `Expected a token of printable ASCII characters without spaces for token (from ${source}) but received a value with other characters (not shown)`,
    );
  }
  return { token, source };
}

function makeContext(repoId: string, o: HubOptions, repoType: RepoType = 'model'): Ctx {
  const revision = o.revision ?? DEFAULT_REVISION;
  const cacheDir = hubCacheDir(o);
  const rawEndpoint = o.endpoint ?? envValue('HF_ENDPOINT') ?? DEFAULT_ENDPOINT;
  let endpointUrl: URL;
  try {
    endpointUrl = new URL(rawEndpoint.trim());
  } catch {
    throw invalidParameterError('endpoint', 'an http(s) URL', rawEndpoint);
  }
  if (endpointUrl.protocol !== 'http:' && endpointUrl.protocol !== 'https:') {
    throw invalidParameterError('endpoint', 'an http(s) URL', rawEndpoint);
  }
  const endpoint = endpointUrl.href.replace(/\/+$/, '');
  const offline = o.offline ?? envOffline();
  const { token, source } = offline ? { token: undefined, source: '' } : resolveToken(o);
  return {
    repoId,
    repoType,
    revision,
    cacheDir,
    storage: path.join(cacheDir, `${repoType}s--` + repoId.split('/').join('--')),
    endpoint,
    token,
    tokenSource: source,
    offline,
    offlineSource: o.offline !== undefined ? 'the offline option' : 'HF_HUB_OFFLINE',
    baseFetch: o.fetch ?? globalThis.fetch,
    onProgress: o.onProgress,
    failures: new Map(),
  };
}

/**
 * The fetch given to @huggingface/hub: adds the token for requests to the hub's own origin
 * (the library only accepts tokens starting with 'hf_'; mirrors and proxies use others) and
 * remembers the X-Error-Code of failed responses, which the library's errors drop.
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

let hubLib: typeof HubLib | undefined;
async function loadHubLib(): Promise<typeof HubLib> {
  hubLib ??= await import('@huggingface/hub');
  return hubLib;
}

/** Credentials for the library: only tokens it accepts; the others are added by makeFetch. */
function libCredentials(ctx: Ctx): { accessToken?: string } {
  return ctx.token !== undefined && ctx.token.startsWith('hf_') ? { accessToken: ctx.token } : {};
}

// ---------------------------------------------------------------------------------------------
// errors

function redact(ctx: Ctx, s: string): string {
  return ctx.token !== undefined && ctx.token.length > 0 ? s.split(ctx.token).join('***') : s;
}

function hubError(ctx: Ctx, message: string, cause?: unknown): HdlmError {
  return new HdlmError('HDLM_HUB', redact(ctx, message), cause === undefined ? undefined : { cause });
}

function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

/** A short description of a connection-level failure (ECONNREFUSED, ...), or null if `e` is not one. */
function networkCause(e: unknown): string | null {
  let cur: unknown = e;
  for (let depth = 0; depth < 6 && cur !== null && typeof cur === 'object'; depth++) {
    const err = cur as { code?: unknown; message?: unknown; cause?: unknown; name?: unknown };
    if (typeof err.code === 'string' && /^(E[A-Z0-9_]+|UND_ERR_[A-Z_]+|ERR_SSL_[A-Z_]+|CERT_[A-Z_]+)$/.test(err.code)) {
      return typeof err.message === 'string' && err.message !== '' ? `${err.code}: ${err.message}` : err.code;
    }
    if (err.name === 'TimeoutError' || err.name === 'ConnectTimeoutError') return 'timeout';
    if (err.cause === undefined) {
      if (depth === 0 && e instanceof TypeError && (err.message === 'fetch failed' || err.message === 'terminated')) {
        return String(err.message);
      }
      break;
    }
    cur = err.cause;
  }
  if (e instanceof TypeError && (e.message === 'fetch failed' || e.message === 'terminated')) return e.message;
  return null;
}

function statusOf(e: unknown): number | null {
  if (e !== null && typeof e === 'object' && typeof (e as { statusCode?: unknown }).statusCode === 'number') {
    return (e as { statusCode: number }).statusCode;
  }
  return null;
}

/** Whether a failed online lookup may fall back to the cache (as Python does): connection failures, 5xx, 429. */
function mayUseCacheAfter(e: unknown): boolean {
  if (e instanceof HdlmError) return false;
  const status = statusOf(e);
  if (status !== null) return status >= 500 || status === 429;
  return networkCause(e) !== null;
}

function serverText(e: unknown): string {
  const data = (e as { data?: unknown }).data;
  if (data && typeof data === 'object') {
    const m = (data as { error?: unknown; message?: unknown }).error ?? (data as { message?: unknown }).message;
    if (typeof m === 'string' && m.trim() !== '') return m.trim().slice(0, 300);
  }
  return '';
}

const TOKEN_HINT = 'pass a token with the `token` option or set HF_TOKEN';

/** Turns whatever the library or fetch threw into an HdlmError('HDLM_HUB'). `file` set for file downloads. */
function mapError(ctx: Ctx, e: unknown, file?: string): HdlmError {
  if (e instanceof HdlmError) return e;
  const where = `${ctx.repoId}@${ctx.revision}`;
  const status = statusOf(e);
  if (status !== null) {
    const url = (e as { url?: unknown }).url;
    const code = ctx.failures.get(typeof url === 'string' ? url : '') ?? ctx.failures.get('') ?? null;
    const said = serverText(e);
    const server = said ? ` The Hub said: "${said}".` : '';
    if (code === 'RevisionNotFound') {
      return hubError(ctx, `Revision "${ctx.revision}" was not found in the Hugging Face repository ${ctx.repoId} on ${ctx.endpoint} (HTTP ${status}).${server}`, e);
    }
    if (code === 'EntryNotFound' && file !== undefined) {
      return hubError(ctx, `File "${file}" was not found in the Hugging Face repository ${where} on ${ctx.endpoint} (HTTP ${status}).`, e);
    }
    if (code === 'GatedRepo') {
      return hubError(
        ctx,
        `The Hugging Face repository ${ctx.repoId} is gated (HTTP ${status}): accept its conditions on ${ctx.endpoint}/${ctx.repoType === 'dataset' ? 'datasets/' : ''}${ctx.repoId} and ` +
          (ctx.token !== undefined ? `make sure the token from ${ctx.tokenSource} belongs to that account.` : `${TOKEN_HINT}.`) +
          server,
        e,
      );
    }
    if (status === 401 && code === 'RepoNotFound' && ctx.token === undefined) {
      return hubError(
        ctx,
        `Repository ${ctx.repoId} on ${ctx.endpoint} does not exist or needs authentication (HTTP 401): if it is a private or gated repository, ${TOKEN_HINT}.`,
        e,
      );
    }
    if (status === 404 || code === 'RepoNotFound') {
      return hubError(
        ctx,
        `Repository ${ctx.repoId} was not found on ${ctx.endpoint} (HTTP ${status}). Check the name; ` +
          (ctx.token === undefined
            ? `if it is a private or gated repository, ${TOKEN_HINT}.`
            : `if it is private, make sure the token from ${ctx.tokenSource} has read access to it.`),
        e,
      );
    }
    if (status === 401) {
      return hubError(
        ctx,
        ctx.token === undefined
          ? `The Hugging Face Hub requires authentication for ${ctx.repoId} (HTTP 401): the repository may be private or gated; ${TOKEN_HINT}.${server}`
          : `The Hugging Face Hub rejected the token from ${ctx.tokenSource} (HTTP 401) for ${ctx.repoId}: it is invalid or expired; check it (the token itself is not shown).${server}`,
        e,
      );
    }
    if (status === 403) {
      return hubError(
        ctx,
        ctx.token === undefined
          ? `Access to ${ctx.repoId} is forbidden without a token (HTTP 403); ${TOKEN_HINT}.${server}`
          : `Access to ${ctx.repoId} is forbidden for the token from ${ctx.tokenSource} (HTTP 403): it lacks read access to this repository ` +
              `(for a gated repository, accept its conditions on the model page; a fine-grained token needs read permission for it).${server}`,
        e,
      );
    }
    if (status === 429) {
      return hubError(ctx, `The Hugging Face Hub rate-limited the request for ${where} (HTTP 429); wait and retry, or set HF_HUB_OFFLINE=1 to use the local cache.${server}`, e);
    }
    return hubError(
      ctx,
      `The Hugging Face Hub at ${ctx.endpoint} answered HTTP ${status} for ${file !== undefined ? `file "${file}" of ` : ''}${where}.${server}` +
        (status >= 500 ? ' Retry later, or set HF_HUB_OFFLINE=1 to use the local cache.' : ''),
      e,
    );
  }
  const net = networkCause(e);
  if (net !== null) {
    return hubError(
      ctx,
      `Could not reach the Hugging Face Hub at ${ctx.endpoint} to resolve ${file !== undefined ? `file "${file}" of ` : ''}${where} (${net}). ` +
        `Check the network (or HF_ENDPOINT); to use only files already in the cache (${ctx.cacheDir}), set HF_HUB_OFFLINE=1 or pass offline: true.`,
      e,
    );
  }
  return hubError(ctx, `Hugging Face Hub request for ${file !== undefined ? `file "${file}" of ` : ''}${where} failed: ${errorMessage(e)}`, e);
}

// ---------------------------------------------------------------------------------------------
// cache

function snapshotPath(ctx: Ctx, commit: string, file?: string): string {
  const dir = path.join(ctx.storage, 'snapshots', commit);
  return file === undefined ? dir : path.join(dir, ...file.split('/'));
}

function noExistPath(ctx: Ctx, commit: string, file: string): string {
  return path.join(ctx.storage, '.no_exist', commit, ...file.split('/'));
}

function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile(); // follows the symlink: a dangling one counts as missing
  } catch {
    return false;
  }
}

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

function tmpSuffix(): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}`;
}

async function unlinkQuiet(p: string): Promise<void> {
  try {
    await fsp.unlink(p);
  } catch {
    // already gone
  }
}

/** Writes a small file atomically (temp file + rename). */
async function writeAtomic(file: string, content: string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${tmpSuffix()}.tmp`;
  try {
    await fsp.writeFile(tmp, content);
    await fsp.rename(tmp, file);
  } catch (e) {
    await unlinkQuiet(tmp);
    throw e;
  }
}

/** Points snapshots/<commit>/<file> at the blob: a relative symlink (a copy where symlinks fail), swapped in atomically. */
async function linkIntoSnapshot(blobPath: string, pointer: string): Promise<void> {
  await fsp.mkdir(path.dirname(pointer), { recursive: true });
  const tmp = `${pointer}.${tmpSuffix()}.tmp`;
  try {
    try {
      await fsp.symlink(path.relative(path.dirname(pointer), blobPath), tmp);
    } catch {
      await fsp.copyFile(blobPath, tmp);
    }
    await fsp.rename(tmp, pointer);
  } catch (e) {
    await unlinkQuiet(tmp);
    throw e;
  }
}

function readRef(ctx: Ctx, revision: string): string | null {
  try {
    const sha = fs.readFileSync(path.join(ctx.storage, 'refs', ...revision.split('/')), 'utf8').trim();
    return COMMIT_RE.test(sha) ? sha : null;
  } catch {
    return null;
  }
}

type LocalResult = { ok: true; result: ResolvedRepoFiles } | { ok: false; missing: string };

/**
 * Resolves the groups from the cache alone. `strict`: every decision must be certain (a name
 * before the chosen one must be known absent through a .no_exist marker), used to skip the network
 * for an immutable commit. Otherwise best effort: the first name present in the snapshot.
 */
function resolveLocal(ctx: Ctx, groups: RepoFileGroup[], strict: boolean): LocalResult {
  const commit = COMMIT_RE.test(ctx.revision) ? ctx.revision : readRef(ctx, ctx.revision);
  if (commit === null) {
    return { ok: false, missing: `revision "${ctx.revision}" of ${ctx.repoId} (no ${path.join(ctx.storage, 'refs', ctx.revision)})` };
  }
  const files: Record<string, string> = {};
  for (const g of groups) {
    let chosen: string | null = null;
    let uncertain = false;
    for (const name of g.names) {
      const p = snapshotPath(ctx, commit, name);
      if (isFile(p)) {
        chosen = name;
        break;
      }
      if (!exists(noExistPath(ctx, commit, name))) uncertain = true;
      if (strict && uncertain) return { ok: false, missing: `file "${name}"` };
    }
    if (chosen !== null) {
      files[chosen] = snapshotPath(ctx, commit, chosen);
    } else if (!g.optional) {
      const what = g.names.length === 1 ? `file "${g.names[0]}"` : `any of the files ${g.names.map((n) => `"${n}"`).join(', ')}`;
      return { ok: false, missing: `${what} of ${ctx.repoId} at revision "${ctx.revision}" (commit ${commit})` };
    }
  }
  return { ok: true, result: { snapshotDir: snapshotPath(ctx, commit), commit, files } };
}

// ---------------------------------------------------------------------------------------------
// online

interface RemoteFile {
  name: string;
  etag: string;
  size: number;
}

async function fetchCommit(ctx: Ctx, lib: typeof HubLib, f: typeof fetch): Promise<string> {
  const params = { name: ctx.repoId, revision: ctx.revision, additionalFields: ['sha' as const], hubUrl: ctx.endpoint, fetch: f, ...libCredentials(ctx) };
  const info = ctx.repoType === 'dataset' ? await lib.datasetInfo(params) : await lib.modelInfo(params);
  const sha = (info as { sha?: unknown }).sha;
  if (typeof sha !== 'string' || !COMMIT_RE.test(sha)) {
    throw hubError(ctx, `The Hugging Face Hub at ${ctx.endpoint} returned no commit sha for ${ctx.repoId}@${ctx.revision} (got ${JSON.stringify(sha)}).`);
  }
  return sha;
}

async function fetchPathsInfo(ctx: Ctx, lib: typeof HubLib, f: typeof fetch, commit: string, names: string[]): Promise<Map<string, RemoteFile>> {
  const infos = await lib.pathsInfo({
    repo: { type: ctx.repoType, name: ctx.repoId },
    paths: names,
    revision: commit,
    hubUrl: ctx.endpoint,
    fetch: f,
    ...libCredentials(ctx),
  });
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

/** Removes `<blob>.*.incomplete` files left by killed processes (untouched for an hour). */
async function removeStaleTemps(blobPath: string): Promise<void> {
  const dir = path.dirname(blobPath);
  const prefix = path.basename(blobPath) + '.';
  try {
    for (const name of await fsp.readdir(dir)) {
      if (!name.startsWith(prefix) || !name.endsWith('.incomplete')) continue;
      const p = path.join(dir, name);
      const st = await fsp.stat(p);
      if (Date.now() - st.mtimeMs > 3600_000) await unlinkQuiet(p);
    }
  } catch {
    // best effort
  }
}

/** Downloads one file into blobs/<etag> (temp file, size and sha256 checked, then renamed) and links it into the snapshot. */
async function ensureFile(ctx: Ctx, lib: typeof HubLib, f: typeof fetch, commit: string, rf: RemoteFile): Promise<string> {
  const pointer = snapshotPath(ctx, commit, rf.name);
  try {
    if (fs.statSync(pointer).size === rf.size) return pointer;
  } catch {
    // not there (or a dangling link): fetch it
  }
  const blobPath = path.join(ctx.storage, 'blobs', rf.etag);
  let haveBlob = false;
  try {
    const st = fs.statSync(blobPath);
    haveBlob = st.isFile() && st.size === rf.size;
  } catch {
    haveBlob = false;
  }

  if (!haveBlob) {
    await fsp.mkdir(path.dirname(blobPath), { recursive: true });
    await removeStaleTemps(blobPath);
    const tmp = `${blobPath}.${tmpSuffix()}.incomplete`;
    const hash = SHA256_RE.test(rf.etag) ? createHash('sha256') : null;
    let loaded = 0;
    try {
      let blob: Blob | null;
      try {
        blob = await lib.downloadFile({
          repo: { type: ctx.repoType, name: ctx.repoId },
          path: rf.name,
          revision: commit,
          hubUrl: ctx.endpoint,
          fetch: f,
          ...libCredentials(ctx),
        });
      } catch (e) {
        throw mapError(ctx, e, rf.name);
      }
      if (blob === null) {
        throw hubError(ctx, `File "${rf.name}" was not found in the Hugging Face repository ${ctx.repoId} at commit ${commit} on ${ctx.endpoint}.`);
      }
      const fh = await fsp.open(tmp, 'wx');
      try {
        ctx.onProgress?.({ file: rf.name, loaded: 0, total: rf.size });
        try {
          for await (const chunk of blob.stream() as unknown as AsyncIterable<Uint8Array>) {
            await fh.write(chunk);
            hash?.update(chunk);
            loaded += chunk.byteLength;
            ctx.onProgress?.({ file: rf.name, loaded, total: rf.size });
          }
        } catch (e) {
          const reason = e instanceof Error ? (networkCause(e) ?? e.message) : String(e);
          throw hubError(
            ctx,
            `Download of "${rf.name}" from ${ctx.repoId}@${ctx.revision} (${ctx.endpoint}) was interrupted after ${loaded} of ${rf.size} bytes (${reason}); ` +
              `nothing was written to the cache, run again to retry (or set HF_HUB_OFFLINE=1 to use the cache only).`,
            e,
          );
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      if (loaded !== rf.size) {
        throw hubError(ctx, `Download of "${rf.name}" from ${ctx.repoId}@${ctx.revision} (${ctx.endpoint}) returned ${loaded} bytes, expected ${rf.size}; nothing was written to the cache, run again to retry.`);
      }
      if (hash !== null) {
        const digest = hash.digest('hex');
        if (digest !== rf.etag) {
          throw hubError(ctx, `Download of "${rf.name}" from ${ctx.repoId}@${ctx.revision} (${ctx.endpoint}) is corrupt: sha256 ${digest}, expected ${rf.etag}; nothing was written to the cache, run again to retry.`);
        }
      }
      await fsp.rename(tmp, blobPath);
    } catch (e) {
      await unlinkQuiet(tmp);
      throw e instanceof HdlmError ? e : hubError(ctx, `Could not write "${rf.name}" of ${ctx.repoId} into the cache ${ctx.cacheDir}: ${errorMessage(e)}`, e);
    }
  }
  try {
    await linkIntoSnapshot(blobPath, pointer);
  } catch (e) {
    throw hubError(ctx, `Could not write the snapshot entry ${pointer}: ${errorMessage(e)}`, e);
  }
  return pointer;
}

/** A failed metadata lookup after which a complete cached snapshot may be used instead (as Python does). */
class HubUnreachable extends Error {
  constructor(readonly mapped: HdlmError) {
    super(mapped.message);
  }
}

function metadataError(ctx: Ctx, e: unknown): Error {
  const mapped = mapError(ctx, e);
  return mayUseCacheAfter(e) ? new HubUnreachable(mapped) : mapped;
}

async function resolveOnline(ctx: Ctx, groups: RepoFileGroup[]): Promise<ResolvedRepoFiles> {
  const lib = await loadHubLib();
  const f = makeFetch(ctx);
  let commit: string;
  try {
    commit = await fetchCommit(ctx, lib, f);
  } catch (e) {
    throw metadataError(ctx, e);
  }
  return resolveAtCommit(ctx, lib, f, commit, groups);
}

/** Online resolution of the groups at a known commit (the revision's): downloads what is missing, writes refs/<revision>. */
async function resolveAtCommit(ctx: Ctx, lib: typeof HubLib, f: typeof fetch, commit: string, groups: RepoFileGroup[]): Promise<ResolvedRepoFiles> {
  const saveRef = async (): Promise<void> => {
    if (ctx.revision === commit) return;
    try {
      if (readRef(ctx, ctx.revision) !== commit) await writeAtomic(path.join(ctx.storage, 'refs', ...ctx.revision.split('/')), commit);
    } catch (e) {
      throw hubError(ctx, `Could not write refs/${ctx.revision} in the cache ${ctx.storage}: ${errorMessage(e)}`, e);
    }
  };

  // A commit's snapshot never changes: if the cache answers every group for certain, we are done.
  const local = resolveLocal({ ...ctx, revision: commit }, groups, true);
  if (local.ok) {
    await saveRef();
    return local.result;
  }

  const wanted = [...new Set(groups.flatMap((g) => g.names))];
  let remote: Map<string, RemoteFile>;
  try {
    remote = await fetchPathsInfo(ctx, lib, f, commit, wanted);
  } catch (e) {
    throw metadataError(ctx, e);
  }

  const chosen: RemoteFile[] = [];
  for (const g of groups) {
    const hit = g.names.find((n) => remote.has(n));
    if (hit !== undefined) {
      chosen.push(remote.get(hit) as RemoteFile);
    } else if (!g.optional) {
      throw hubError(
        ctx,
        g.names.length === 1
          ? `The Hugging Face repository ${ctx.repoId} at revision "${ctx.revision}" (commit ${commit}) has no file "${g.names[0]}".`
          : `The Hugging Face repository ${ctx.repoId} at revision "${ctx.revision}" (commit ${commit}) has none of the files ` +
              `${g.names.map((n) => `"${n}"`).join(', ')} (one of them is required).`,
      );
    }
  }
  // Remember what does not exist (Python's .no_exist markers), so that offline runs can decide.
  for (const name of wanted) {
    if (remote.has(name)) continue;
    const marker = noExistPath(ctx, commit, name);
    try {
      if (!exists(marker)) {
        await fsp.mkdir(path.dirname(marker), { recursive: true });
        await fsp.writeFile(marker, '');
      }
    } catch {
      // only an optimisation
    }
  }

  const files: Record<string, string> = {};
  for (const rf of chosen) {
    files[rf.name] = await ensureFile(ctx, lib, f, commit, rf);
  }
  await saveRef();
  return { snapshotDir: snapshotPath(ctx, commit), commit, files };
}

// ---------------------------------------------------------------------------------------------
// public

/**
 * Resolves a repo to a local snapshot folder holding the wanted files. `groups` lists
 * alternatives: each group resolves to the first of its names that exists in the repo; an
 * optional group may resolve to none. Returns { snapshotDir, commit, files } with one entry per
 * resolved file (absolute paths inside snapshotDir). Files already in the snapshot are not
 * downloaded again. Offline (option or HF_HUB_OFFLINE) only the cache is read; online, if the
 * Hub cannot be reached, a complete cached snapshot of the revision is used instead.
 */
export async function resolveRepoFiles(repoId: string, groups: RepoFileGroup[], opts?: HubOptions): Promise<ResolvedRepoFiles> {
  return resolveFiles('model', repoId, groups, opts);
}

/**
 * resolveRepoFiles for a dataset repository (`datasets/<repo>` on the Hub,
 * `<cache>/datasets--<owner>--<name>/` in the cache, as Python's huggingface_hub lays it out).
 */
export async function resolveDatasetFiles(repoId: string, groups: RepoFileGroup[], opts?: HubOptions): Promise<ResolvedRepoFiles> {
  return resolveFiles('dataset', repoId, groups, opts);
}

function checkRepoId(repoId: unknown, repoType: RepoType): string {
  if (typeof repoId !== 'string' || !isRepoId(repoId, false)) {
    throw invalidParameterError('repoId', `a Hugging Face ${repoType} id like "owner/name"`, repoId);
  }
  return repoId;
}

async function resolveFiles(repoType: RepoType, repoId: string, groups: RepoFileGroup[], opts?: HubOptions): Promise<ResolvedRepoFiles> {
  checkRepoId(repoId, repoType);
  if (!Array.isArray(groups)) throw invalidParameterError('groups', 'an array of { names: string[], optional?: boolean }', groups);
  const checked: RepoFileGroup[] = groups.map((g, i) => {
    if (g === null || typeof g !== 'object' || Array.isArray(g)) {
      throw invalidParameterError(`groups[${i}]`, 'an object { names: string[], optional?: boolean }', g);
    }
    if (!Array.isArray(g.names) || g.names.length === 0) {
      throw invalidParameterError(`groups[${i}].names`, 'a non-empty array of file names', g.names);
    }
    if (g.optional !== undefined && typeof g.optional !== 'boolean') {
      throw invalidParameterError(`groups[${i}].optional`, 'a boolean', g.optional);
    }
    return { names: g.names.map((n, j) => checkFileName(n, `groups[${i}].names[${j}]`)), optional: g.optional === true };
  });
  const o = checkOptions(opts);
  const ctx = makeContext(repoId, o, repoType);

  if (ctx.offline) {
    const local = resolveLocal(ctx, checked, false);
    if (local.ok) return local.result;
    throw offlineError(ctx, local.missing);
  }

  if (COMMIT_RE.test(ctx.revision)) {
    const local = resolveLocal(ctx, checked, true);
    if (local.ok) return local.result;
  }

  try {
    return await resolveOnline(ctx, checked);
  } catch (e) {
    if (e instanceof HubUnreachable) {
      const local = resolveLocal(ctx, checked, false);
      if (local.ok) return local.result;
      throw hubError(ctx, `${e.mapped.message} The cache does not hold a copy either: ${local.missing} is missing.`, e.mapped.cause);
    }
    throw e instanceof HdlmError ? e : mapError(ctx, e);
  }
}

function offlineError(ctx: Ctx, missing: string): HdlmError {
  return hubError(
    ctx,
    `Offline mode is on (${ctx.offlineSource}) and ${missing} is not in the Hugging Face cache ${ctx.cacheDir}. ` +
      `Run once with network access to download it, or turn offline mode off.`,
  );
}

/**
 * Every file directly inside `folder` of a dataset repository whose name `match`es (default:
 * `*.parquet`), at `opts.revision`, sorted by name: listed with the Hub's tree API at the
 * revision's commit, then resolved like resolveDatasetFiles (downloaded into the cache, which is
 * reused). Offline, or when the Hub cannot be reached, the folder of the cached snapshot of the
 * revision (refs/<revision>) is used.
 */
export async function resolveDatasetFolder(
  repoId: string, folder: string, opts?: HubOptions, match: (name: string) => boolean = (n) => n.endsWith('.parquet'),
): Promise<ResolvedRepoFiles> {
  checkRepoId(repoId, 'dataset');
  checkFileName(folder, 'folder');
  const o = checkOptions(opts);
  const ctx = makeContext(repoId, o, 'dataset');
  const where = `folder "${folder}" of the dataset ${repoId} at revision "${ctx.revision}"`;

  const local = (): LocalResult => {
    const commit = COMMIT_RE.test(ctx.revision) ? ctx.revision : readRef(ctx, ctx.revision);
    if (commit === null) return { ok: false, missing: `revision "${ctx.revision}" of ${repoId} (no ${path.join(ctx.storage, 'refs', ctx.revision)})` };
    let names: string[] = [];
    try {
      const dir = snapshotPath(ctx, commit, folder);
      names = fs.readdirSync(dir).filter((n) => match(n) && isFile(path.join(dir, n))).sort();
    } catch {
      names = [];
    }
    if (names.length === 0) return { ok: false, missing: `${where} (commit ${commit})` };
    return resolveLocal(ctx, names.map((n) => ({ names: [`${folder}/${n}`] })), false);
  };

  if (ctx.offline) {
    const l = local();
    if (l.ok) return l.result;
    throw offlineError(ctx, l.missing);
  }
  try {
    const lib = await loadHubLib();
    const f = makeFetch(ctx);
    let commit: string;
    let names: string[];
    try {
      commit = await fetchCommit(ctx, lib, f);
      names = [];
      for await (const e of lib.listFiles({
        repo: { type: 'dataset', name: repoId }, revision: commit, path: folder, hubUrl: ctx.endpoint, fetch: f, ...libCredentials(ctx),
      })) {
        const rel = typeof e.path === 'string' && e.path.startsWith(`${folder}/`) ? e.path.slice(folder.length + 1) : '';
        if (e.type === 'file' && rel !== '' && !rel.includes('/') && match(rel)) names.push(e.path);
      }
    } catch (e) {
      if (statusOf(e) === 404 && ctx.failures.get('') === 'EntryNotFound') {
        throw hubError(ctx, `The Hugging Face Hub at ${ctx.endpoint} has no ${where}.`, e);
      }
      throw metadataError(ctx, e);
    }
    if (names.length === 0) throw hubError(ctx, `The ${where} (commit ${commit}) holds no matching files.`);
    return await resolveAtCommit(ctx, lib, f, commit, names.sort().map((n) => ({ names: [n] })));
  } catch (e) {
    if (e instanceof HubUnreachable) {
      const l = local();
      if (l.ok) return l.result;
      throw hubError(ctx, `${e.mapped.message} The cache does not hold a copy either: ${l.missing} is missing.`, e.mapped.cause);
    }
    throw e instanceof HdlmError ? e : mapError(ctx, e);
  }
}

function walkRefs(dir: string, prefix: string, out: Record<string, string>): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const ent of entries) {
    const full = path.join(dir, ent.name);
    const name = prefix === '' ? ent.name : `${prefix}/${ent.name}`;
    if (ent.isDirectory()) {
      walkRefs(full, name, out);
    } else if (ent.isFile() && !ent.name.endsWith('.tmp')) {
      try {
        const sha = fs.readFileSync(full, 'utf8').trim();
        if (COMMIT_RE.test(sha)) out[name] = sha;
      } catch {
        // unreadable ref: skip
      }
    }
  }
}

/** Lists the models in the hub cache (sorted by repo id); an absent cache gives []. */
export function listCachedModels(opts?: HubOptions): CachedModel[] {
  const cacheDir = hubCacheDir(opts);
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(cacheDir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: CachedModel[] = [];
  for (const ent of entries) {
    if (!ent.isDirectory() || !ent.name.startsWith('models--')) continue;
    const repoPath = path.join(cacheDir, ent.name);
    const repoId = ent.name.slice('models--'.length).split('--').join('/');
    const refs: Record<string, string> = {};
    walkRefs(path.join(repoPath, 'refs'), '', refs);
    let snapshots: string[] = [];
    try {
      snapshots = fs
        .readdirSync(path.join(repoPath, 'snapshots'), { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => d.name)
        .sort();
    } catch {
      snapshots = [];
    }
    let sizeBytes = 0;
    try {
      for (const b of fs.readdirSync(path.join(repoPath, 'blobs'), { withFileTypes: true })) {
        if (!b.isFile() || b.name.endsWith('.incomplete')) continue;
        try {
          sizeBytes += fs.statSync(path.join(repoPath, 'blobs', b.name)).size;
        } catch {
          // vanished meanwhile
        }
      }
    } catch {
      sizeBytes = 0;
    }
    out.push({ repoId, path: repoPath, refs, snapshots, sizeBytes });
  }
  return out.sort((a, b) => (a.repoId < b.repoId ? -1 : a.repoId > b.repoId ? 1 : 0));
}
