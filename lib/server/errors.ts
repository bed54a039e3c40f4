/**
 * Errors as the OpenAI API writes them: `{ "error": { "message", "type", "param", "code" } }`
 * with the matching HTTP status, so OpenAI clients raise their usual error classes
 * (BadRequestError, AuthenticationError, NotFoundError, RateLimitError, ...).
 */
import { HdlmError } from '../index';

export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'unavailable_error'
  | 'server_error';

export interface ApiErrorBody {
  error: { message: string; type: ApiErrorType; param: string | null; code: string | null };
}

/** An error answered to the client: status, OpenAI error body, extra headers (Retry-After, WWW-Authenticate). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly type: ApiErrorType,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 for a bad request field. */
export function invalidField(param: string, message: string, code: string | null = 'invalid_value'): ApiError {
  return new ApiError(400, 'invalid_request_error', message, param, code);
}

/** 400 for a field this server knows but does not implement with that value. */
export function unsupportedField(param: string, message: string): ApiError {
  return new ApiError(400, 'invalid_request_error', message, param, 'unsupported_parameter');
}

export function retryAfterSeconds(seconds: number): Record<string, string> {
  return { 'retry-after': String(Math.max(1, Math.ceil(seconds))) };
}

/**
 * Any error thrown while answering → the ApiError to send. Fastify's own errors (body too
 * large, invalid JSON, wrong content type) keep their status; library argument errors are the
 * client's fault (400); everything else is ours (500, with the message, never a stack).
 */
export function toApiError(e: unknown, maxBodyBytes?: number): ApiError {
  if (e instanceof ApiError) return e;
  const err = e as { statusCode?: unknown; code?: unknown; message?: unknown };
  const message = typeof err?.message === 'string' ? err.message : String(e);
  const code = typeof err?.code === 'string' ? err.code : null;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    const limit = maxBodyBytes ? ` (at most ${maxBodyBytes} bytes)` : '';
    return new ApiError(413, 'invalid_request_error', `The request body is larger than this server accepts${limit}`, null, 'body_too_large');
  }
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return new ApiError(415, 'invalid_request_error', 'Content-Type must be application/json', null, 'unsupported_media_type');
  }
  if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
    return new ApiError(400, 'invalid_request_error', 'The request body is empty; send a JSON object', null, 'invalid_json');
  }
  if (code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH') {
    return new ApiError(400, 'invalid_request_error', 'Content-Length does not match the body', null, 'invalid_body');
  }
  if (e instanceof SyntaxError || code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return new ApiError(400, 'invalid_request_error', `The request body is not valid JSON: ${message}`, null, 'invalid_json');
  }
  if (e instanceof HdlmError) {
    if (e.code === 'HDLM_INVALID_ARGUMENT') return new ApiError(400, 'invalid_request_error', e.message, null, 'invalid_value');
    if (e.code === 'HDLM_UNSUPPORTED') return new ApiError(400, 'invalid_request_error', e.message, null, 'unsupported');
    if (e.code === 'HDLM_DISPOSED') return new ApiError(503, 'unavailable_error', 'The model was unloaded (the server is shutting down)', null, 'unavailable');
    return new ApiError(500, 'server_error', e.message, null, e.code.toLowerCase());
  }
  const status = typeof err?.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
  if (status < 500) return new ApiError(status, 'invalid_request_error', message, null, code ? code.toLowerCase() : null);
  return new ApiError(status, 'server_error', message, null, 'internal_error');
}
