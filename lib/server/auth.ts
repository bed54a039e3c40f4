/**
 * Bearer-token check for `--api-key`. Keys are compared as SHA-256 digests with
 * timingSafeEqual, so the time taken says nothing about how much of a guess was right.
 */
import { createHash, timingSafeEqual } from 'crypto';
import { ApiError } from './errors';

const CHALLENGE = { 'www-authenticate': 'Bearer realm="hdlm"' };

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Returns a function that throws a 401 ApiError unless the Authorization header carries the key. */
export function bearerAuth(apiKey: string): (authorization: string | undefined) => void {
  const expected = digest(apiKey);
  return (authorization) => {
    const m = typeof authorization === 'string' ? /^Bearer[ \t]+(.+)$/i.exec(authorization.trim()) : null;
    if (!m) {
      throw new ApiError(401, 'authentication_error', 'You did not provide an API key: send it as "Authorization: Bearer <key>"', null, 'missing_api_key', CHALLENGE);
    }
    if (!timingSafeEqual(digest(m[1].trim()), expected)) {
      throw new ApiError(401, 'authentication_error', 'Incorrect API key provided', null, 'invalid_api_key', CHALLENGE);
    }
  };
}
