/**
 * Hub options and the per-call context: option checks, the environment (HF_ENDPOINT, HF_TOKEN,
 * the `huggingface-cli login` token file, HF_HUB_OFFLINE, the cache folder), repo ids, revisions
 * and file names. Everything here is decided before any request is made.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type * as HubLib from '@huggingface/hub';
import { HdlmArgumentError, invalidParameterError } from '../errors';
import { abortSignal } from '../validate';

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
  /**
   * Called as file contents arrive (only for files actually downloaded). If it throws or rejects,
   * the download stops and the call rejects with HDLM_CALLBACK.
   */
  onProgress?: (e: { file: string; loaded: number; total: number | null }) => void;
  /** Stops requests and downloads; the call rejects with an AbortError and leaves no partial file. */
  signal?: AbortSignal;
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

const DEFAULT_ENDPOINT = 'https://huggingface.co';
const DEFAULT_REVISION = 'main';
export const COMMIT_RE = /^[0-9a-f]{40}$/;
export const SHA256_RE = /^[0-9a-f]{64}$/;
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
export function hfHome(): string {
  const home = envValue('HF_HOME');
  if (home !== undefined) return path.resolve(expandUser(home));
  const xdg = envValue('XDG_CACHE_HOME');
  return path.resolve(expandUser(xdg ?? path.join(os.homedir(), '.cache')), 'huggingface');
}

function envOffline(): boolean {
  const v = process.env.HF_HUB_OFFLINE;
  return v !== undefined && TRUE_VALUES.has(v.trim().toLowerCase());
}

export function checkOptions(opts: unknown): HubOptions {
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
  if (o.signal !== undefined) abortSignal('signal', o.signal);
  return o;
}

function checkRevision(revision: unknown): string {
  if (
    typeof revision !== 'string' ||
    revision === '' ||
    /[\p{Cc} \\]/u.test(revision) || // control characters, spaces, backslashes
    revision.startsWith('/') ||
    revision.endsWith('/') ||
    revision.split('/').some((seg) => seg === '' || seg === '.' || seg === '..')
  ) {
    throw invalidParameterError('revision', 'a non-empty branch, tag or commit name', revision);
  }
  return revision;
}

export function checkFileName(name: unknown, where: string): string {
  if (
    typeof name !== 'string' ||
    name === '' ||
    /[\p{Cc}\\:]/u.test(name) || // control characters, backslashes, colons
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

/**
 * The hub cache folder the options (or the environment) select; absolute. Python's order
 * (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub,
 * ~/.cache/huggingface/hub). Not @huggingface/hub's getHFHubCachePath: that one takes a variable
 * set to '' as a path (the current folder) and leaves '~' and relative paths as they are; and
 * hfHome() is needed here anyway for the token file.
 */
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

export type RepoType = 'model' | 'dataset';

export function checkRepoId(repoId: unknown, repoType: RepoType): string {
  if (typeof repoId !== 'string' || !isRepoId(repoId, false)) {
    throw invalidParameterError('repoId', `a Hugging Face ${repoType} id like "owner/name"`, repoId);
  }
  return repoId;
}

export function checkGroups(groups: unknown): RepoFileGroup[] {
  if (!Array.isArray(groups)) throw invalidParameterError('groups', 'an array of { names: string[], optional?: boolean }', groups);
  return groups.map((g: unknown, i) => {
    if (g === null || typeof g !== 'object' || Array.isArray(g)) {
      throw invalidParameterError(`groups[${i}]`, 'an object { names: string[], optional?: boolean }', g);
    }
    const { names, optional } = g as Partial<RepoFileGroup>;
    if (!Array.isArray(names) || names.length === 0) {
      throw invalidParameterError(`groups[${i}].names`, 'a non-empty array of file names', names);
    }
    if (optional !== undefined && typeof optional !== 'boolean') {
      throw invalidParameterError(`groups[${i}].optional`, 'a boolean', optional);
    }
    return { names: names.map((n, j) => checkFileName(n, `groups[${i}].names[${j}]`)), optional: optional === true };
  });
}

// ---------------------------------------------------------------------------------------------
// context

export interface Ctx {
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
  signal: AbortSignal | undefined;
  /** longest wait for the next bytes of an API answer (HF_HUB_ETAG_TIMEOUT) and of a file (HF_HUB_DOWNLOAD_TIMEOUT), ms */
  metadataTimeoutMs: number;
  downloadTimeoutMs: number;
  /** x-error-code of failed responses, by response URL */
  failures: Map<string, string | null>;
  /** @huggingface/hub, loaded on first use */
  lib: typeof HubLib;
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

/** Seconds from an environment variable huggingface_hub also reads (default 10 there and here). */
function envSeconds(name: string, fallback: number): number {
  const raw = envValue(name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw invalidParameterError(name, 'a positive number of seconds', raw);
  return n;
}

let hubLib: typeof HubLib | undefined;

/** @huggingface/hub is large: loaded on first use, so that loading hdlm stays cheap. */
export async function loadHubLib(): Promise<typeof HubLib> {
  hubLib ??= await import('@huggingface/hub');
  return hubLib;
}

/** Everything one hub call needs: the checked options and environment, resolved once. */
export async function makeContext(repoId: string, o: HubOptions, repoType: RepoType = 'model'): Promise<Ctx> {
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
  const lib = await loadHubLib();
  return {
    repoId,
    repoType,
    revision,
    cacheDir,
    // <cache>/models--owner--name, datasets--owner--name: the layout Python's huggingface_hub shares
    storage: path.join(cacheDir, lib.getRepoFolderName({ name: repoId, type: repoType })),
    endpoint,
    token,
    tokenSource: source,
    offline,
    offlineSource: o.offline !== undefined ? 'the offline option' : 'HF_HUB_OFFLINE',
    baseFetch: o.fetch ?? globalThis.fetch,
    onProgress: o.onProgress,
    signal: o.signal,
    metadataTimeoutMs: envSeconds('HF_HUB_ETAG_TIMEOUT', 10) * 1000,
    downloadTimeoutMs: envSeconds('HF_HUB_DOWNLOAD_TIMEOUT', 10) * 1000,
    failures: new Map(),
    lib,
  };
}
