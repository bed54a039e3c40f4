/**
 * Hub failures as errors a user can act on (HdlmError, code HDLM_HUB): what went wrong, for which
 * repo, revision and file, and what to do (a token, offline mode, a retry). The token is never
 * part of a message. Which failures may fall back to the cache is decided here too.
 */
import { AbortError, HdlmError } from '../errors';
import type { Ctx } from './options';

/** The token as it may appear in text: as is, and URL-encoded. */
function secretsOf(ctx: Ctx): string[] {
  if (ctx.token === undefined || ctx.token.length === 0) return [];
  const encoded = encodeURIComponent(ctx.token);
  return encoded === ctx.token ? [ctx.token] : [ctx.token, encoded];
}

export function redact(ctx: Ctx, s: string): string {
  for (const secret of secretsOf(ctx)) s = s.split(secret).join('***');
  return s;
}

/**
 * Redacts the token from everything reachable from `value` that we attach to an error: strings,
 * the own properties of objects and errors (message, stack, data, url, ...), causes, arrays.
 * Objects are changed in place (they are the failed request's, now ours); an error whose message
 * cannot be changed is replaced by a plain copy.
 */
export function redactDeep(ctx: Ctx, value: unknown, seen = new Set<object>(), depth = 0): unknown {
  const secrets = secretsOf(ctx);
  if (secrets.length === 0) return value;
  if (typeof value === 'string') return redact(ctx, value);
  if (value === null || typeof value !== 'object' || seen.has(value) || depth > 16) return value;
  seen.add(value);
  for (const key of Reflect.ownKeys(value)) {
    const d = Object.getOwnPropertyDescriptor(value, key);
    if (d === undefined || !('value' in d)) continue;
    const clean = redactDeep(ctx, d.value, seen, depth + 1);
    if (clean === d.value) continue;
    try {
      Object.defineProperty(value, key, { ...d, value: clean });
    } catch {
      // frozen: checked below
    }
  }
  if (value instanceof Error) {
    try {
      if (typeof value.stack === 'string' && secrets.some((t) => (value.stack as string).includes(t))) value.stack = redact(ctx, value.stack);
    } catch {
      // read-only stack: checked below
    }
    const leaks = (x: unknown): boolean => typeof x === 'string' && secrets.some((t) => x.includes(t));
    if (leaks(value.message) || leaks(value.stack)) {
      const copy = new Error(redact(ctx, String(value.message)));
      copy.name = value.name;
      return copy;
    }
  }
  return value;
}

export function hubError(ctx: Ctx, message: string, cause?: unknown): HdlmError {
  return new HdlmError('HDLM_HUB', redact(ctx, message), cause === undefined ? undefined : { cause: redactDeep(ctx, cause) });
}

/** The rejection of a call its signal stopped. */
export function abortError(ctx: Ctx): AbortError {
  const reason = ctx.signal?.reason;
  return new AbortError(`The Hugging Face Hub request for ${ctx.repoId}@${ctx.revision} was aborted`, reason === undefined ? undefined : { cause: redactDeep(ctx, reason) });
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

/** A short description of a connection-level failure (ECONNREFUSED, ...), or null if `e` is not one. */
export function networkCause(e: unknown): string | null {
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

export function statusOf(e: unknown): number | null {
  if (e !== null && typeof e === 'object' && typeof (e as { statusCode?: unknown }).statusCode === 'number') {
    return (e as { statusCode: number }).statusCode;
  }
  return null;
}

/** Whether a failed online lookup may fall back to the cache (as Python does): connection failures, 5xx, 429. */
export function mayUseCacheAfter(e: unknown): boolean {
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
export function mapError(ctx: Ctx, e: unknown, file?: string): HdlmError {
  if (e instanceof HdlmError) return e;
  if (ctx.signal?.aborted) return abortError(ctx);
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

/** A failed metadata lookup after which a complete cached snapshot may be used instead (as Python does). */
export class HubUnreachable extends Error {
  constructor(readonly mapped: HdlmError) {
    super(mapped.message);
  }
}

export function metadataError(ctx: Ctx, e: unknown): Error {
  const mapped = mapError(ctx, e);
  return mayUseCacheAfter(e) && !ctx.signal?.aborted ? new HubUnreachable(mapped) : mapped;
}

export function offlineError(ctx: Ctx, missing: string): HdlmError {
  return hubError(
    ctx,
    `Offline mode is on (${ctx.offlineSource}) and ${missing} is not in the Hugging Face cache ${ctx.cacheDir}. ` +
      `Run once with network access to download it, or turn offline mode off.`,
  );
}

