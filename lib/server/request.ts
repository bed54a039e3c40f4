/**
 * Validation of `POST /v1/completions` bodies. Policy, documented in docs/server.md:
 * - fields of OpenAI's completions API are checked for type and range like OpenAI does;
 *   those this server cannot honour (logprobs, penalties, logit_bias, top_p ≠ 1, best_of ≠ n)
 *   are refused with 400 when set to anything but their neutral value;
 * - the extensions (steps, alg, eta, semi, block_size, denoise) are checked the same way;
 * - any other field is refused with 400 ("Unrecognized request argument"), as OpenAI does,
 *   so that a typo never passes silently.
 */
import { ALGORITHMS, tokenizer, type Algorithm } from '../index';
import { invalidField, unsupportedField, ApiError } from './errors';

export interface ServerLimits {
  /** the served model's id */
  modelId: string;
  /** the model's length: prompt + completion (+ suffix) must fit */
  contextLength: number;
  /** largest token id a prompt may hold (the mask id is not a token) */
  vocabSize: number;
  maxSteps: number;
  maxN: number;
  maxPrompts: number;
  defaultSteps: number;
  defaultAlg: Algorithm;
  defaultMaxTokens: number;
}

export interface DenoiseRequest {
  /** a frame every `every` steps (and after the last) */
  every: number;
  /** what a masked position shows as */
  placeholder: string;
}

export interface CompletionRequest {
  model: string;
  /** token ids of each prompt */
  prompts: number[][];
  suffix: number[] | null;
  suffixText: string | null;
  /** max_tokens as given (null: the default, bounded by the room each prompt leaves) */
  maxTokens: number | null;
  temperature: number;
  n: number;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  echo: boolean;
  seed: bigint | null;
  user: string | null;
  steps: number;
  alg: Algorithm;
  eta: number;
  blockSize: number | null;
  denoise: DenoiseRequest | null;
}

const OPENAI_FIELDS = [
  'model', 'prompt', 'suffix', 'max_tokens', 'temperature', 'top_p', 'n', 'stream', 'stream_options', 'logprobs', 'echo', 'stop',
  'presence_penalty', 'frequency_penalty', 'best_of', 'logit_bias', 'user', 'seed',
] as const;
const EXTENSION_FIELDS = ['steps', 'alg', 'eta', 'semi', 'block_size', 'denoise'] as const;
export const KNOWN_FIELDS: readonly string[] = [...OPENAI_FIELDS, ...EXTENSION_FIELDS];

const MAX_STOP = 4;
const MAX_STOP_LENGTH = 256;
const MAX_USER_LENGTH = 256;
const MAX_PLACEHOLDER_LENGTH = 16;

function given(body: Record<string, unknown>, key: string): boolean {
  return body[key] !== undefined && body[key] !== null;
}

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 37) + '...' : value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

function integer(param: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Infinity ? `>= ${min}` : `between ${min} and ${max}`;
    throw invalidField(param, `${param} must be an integer ${range}; got ${show(value)}`);
  }
  return value;
}

function number(param: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw invalidField(param, `${param} must be a number between ${min} and ${max}; got ${show(value)}`);
  }
  return value;
}

function boolean(param: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw invalidField(param, `${param} must be a boolean; got ${show(value)}`);
  return value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function tokenIds(param: string, value: unknown[], vocab: number): number[] {
  for (let i = 0; i < value.length; i++) {
    const id = value[i];
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocab) {
      throw invalidField(`${param}[${i}]`, `${param}[${i}] must be a token id (an integer in [0, ${vocab})); got ${show(id)}`);
    }
  }
  return value as number[];
}

/**
 * The prompts of a request: a string, an array of token ids, or a list of strings / token id
 * arrays (one completion set per entry). Missing or "" is the empty prompt (unconditional).
 */
function parsePrompts(value: unknown, limits: ServerLimits): number[][] {
  if (value === undefined || value === null) return [[]];
  if (typeof value === 'string') return [tokenizer.encode(value)];
  if (!Array.isArray(value)) throw invalidField('prompt', `prompt must be a string, an array of token ids, or an array of those; got ${show(value)}`);
  if (value.length === 0) throw invalidField('prompt', 'prompt must not be an empty array (send "" for an unconditional sample)');
  // an array starting with a number is one prompt of token ids; otherwise a list of prompts
  if (typeof value[0] === 'number') return [tokenIds('prompt', value, limits.vocabSize)];
  if (value.length > limits.maxPrompts) {
    throw invalidField('prompt', `prompt may list at most ${limits.maxPrompts} prompts; got ${value.length}`);
  }
  return value.map((entry, i) => {
    if (typeof entry === 'string') return tokenizer.encode(entry);
    if (Array.isArray(entry)) return tokenIds(`prompt[${i}]`, entry, limits.vocabSize);
    throw invalidField(`prompt[${i}]`, `prompt[${i}] must be a string or an array of token ids; got ${show(entry)}`);
  });
}

function parseStop(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length > MAX_STOP) {
    throw invalidField('stop', `stop must be a string or an array of at most ${MAX_STOP} strings; got ${show(value)}`);
  }
  return list.map((s, i) => {
    if (typeof s !== 'string' || s.length === 0 || s.length > MAX_STOP_LENGTH) {
      throw invalidField(`stop[${i}]`, `stop sequences must be non-empty strings of at most ${MAX_STOP_LENGTH} characters; got ${show(s)}`);
    }
    return s;
  });
}

function parseDenoise(value: unknown): DenoiseRequest | null {
  if (value === undefined || value === null || value === false) return null;
  if (value === true) return { every: 1, placeholder: '░' };
  if (!isPlainObject(value)) throw invalidField('denoise', `denoise must be true or an object { every, placeholder }; got ${show(value)}`);
  for (const key of Object.keys(value)) {
    if (key !== 'every' && key !== 'placeholder') throw invalidField(`denoise.${key}`, `Unrecognized denoise argument: ${key} (known: every, placeholder)`, 'unknown_parameter');
  }
  const every = given(value, 'every') ? integer('denoise.every', value.every, 1, 1_000_000) : 1;
  let placeholder = '░';
  if (given(value, 'placeholder')) {
    if (typeof value.placeholder !== 'string' || value.placeholder.length > MAX_PLACEHOLDER_LENGTH) {
      throw invalidField('denoise.placeholder', `denoise.placeholder must be a string of at most ${MAX_PLACEHOLDER_LENGTH} characters; got ${show(value.placeholder)}`);
    }
    placeholder = value.placeholder;
  }
  return { every, placeholder };
}

export function parseCompletionRequest(body: unknown, limits: ServerLimits): CompletionRequest {
  if (!isPlainObject(body)) throw new ApiError(400, 'invalid_request_error', `The request body must be a JSON object; got ${show(body)}`, null, 'invalid_body');
  for (const key of Object.keys(body)) {
    if (!KNOWN_FIELDS.includes(key)) throw invalidField(key, `Unrecognized request argument supplied: ${key}`, 'unknown_parameter');
  }

  if (!given(body, 'model')) throw invalidField('model', 'You must provide a model parameter', 'missing_required_parameter');
  if (typeof body.model !== 'string') throw invalidField('model', `model must be a string; got ${show(body.model)}`);
  if (body.model !== limits.modelId) {
    throw new ApiError(404, 'not_found_error', `The model ${show(body.model)} does not exist; this server serves ${JSON.stringify(limits.modelId)}`, 'model', 'model_not_found');
  }

  // neutral values of what this server does not implement
  if (given(body, 'logprobs') && body.logprobs !== 0) {
    integer('logprobs', body.logprobs, 0, 5);
    throw unsupportedField('logprobs', 'logprobs is not supported by this server (a diffusion sampler has no left-to-right token probabilities)');
  }
  for (const key of ['presence_penalty', 'frequency_penalty'] as const) {
    if (given(body, key) && number(key, body[key], -2, 2) !== 0) throw unsupportedField(key, `${key} is not supported by this server (only 0)`);
  }
  if (given(body, 'logit_bias')) {
    if (!isPlainObject(body.logit_bias)) throw invalidField('logit_bias', `logit_bias must be an object; got ${show(body.logit_bias)}`);
    if (Object.keys(body.logit_bias).length > 0) throw unsupportedField('logit_bias', 'logit_bias is not supported by this server (only {})');
  }
  if (given(body, 'top_p') && number('top_p', body.top_p, 0, 1) !== 1) throw unsupportedField('top_p', 'top_p is not supported by this server (only 1)');

  const prompts = parsePrompts(body.prompt, limits);
  let suffixText: string | null = null;
  if (given(body, 'suffix')) {
    if (typeof body.suffix !== 'string') throw invalidField('suffix', `suffix must be a string; got ${show(body.suffix)}`);
    suffixText = body.suffix.length > 0 ? body.suffix : null;
  }
  const suffix = suffixText !== null ? tokenizer.encode(suffixText) : null;

  // the room the prompt leaves is checked per prompt (context_length_exceeded)
  const maxTokens = given(body, 'max_tokens') ? integer('max_tokens', body.max_tokens, 1, Infinity) : null;
  const temperature = given(body, 'temperature') ? number('temperature', body.temperature, 0, 2) : 1;
  const n = given(body, 'n') ? integer('n', body.n, 1, limits.maxN) : 1;
  if (given(body, 'best_of') && integer('best_of', body.best_of, 1, limits.maxN) !== n) {
    throw unsupportedField('best_of', 'best_of is not supported by this server (only equal to n)');
  }
  const stop = parseStop(body.stop);
  const stream = given(body, 'stream') ? boolean('stream', body.stream) : false;
  let includeUsage = false;
  if (given(body, 'stream_options')) {
    const so = body.stream_options;
    if (!isPlainObject(so)) throw invalidField('stream_options', `stream_options must be an object; got ${show(so)}`);
    if (!stream) throw invalidField('stream_options', 'stream_options is only allowed when stream is true');
    for (const key of Object.keys(so)) {
      if (key !== 'include_usage') throw invalidField(`stream_options.${key}`, `Unrecognized stream_options argument: ${key}`, 'unknown_parameter');
    }
    if (given(so, 'include_usage')) includeUsage = boolean('stream_options.include_usage', so.include_usage);
  }
  const echo = given(body, 'echo') ? boolean('echo', body.echo) : false;
  let seed: bigint | null = null;
  if (given(body, 'seed')) seed = BigInt(integer('seed', body.seed, 0, Number.MAX_SAFE_INTEGER));
  let user: string | null = null;
  if (given(body, 'user')) {
    if (typeof body.user !== 'string' || body.user.length > MAX_USER_LENGTH) {
      throw invalidField('user', `user must be a string of at most ${MAX_USER_LENGTH} characters; got ${show(body.user)}`);
    }
    user = body.user;
  }

  let alg = limits.defaultAlg;
  if (given(body, 'alg')) {
    if (typeof body.alg !== 'string' || !(ALGORITHMS as readonly string[]).includes(body.alg)) {
      throw invalidField('alg', `alg must be one of ${ALGORITHMS.join(', ')}; got ${show(body.alg)}`);
    }
    alg = body.alg as Algorithm;
  }
  const semi = given(body, 'semi') ? boolean('semi', body.semi) : null;
  let blockSize: number | null = null;
  if (given(body, 'block_size')) {
    if (semi === false) throw invalidField('block_size', 'block_size is for semi-autoregressive sampling; it cannot go with semi: false');
    blockSize = integer('block_size', body.block_size, 1, limits.contextLength);
  } else if (semi === true) {
    blockSize = 16;
  }
  // semi-autoregressive: steps per block (default one per token of the block)
  const steps = given(body, 'steps') ? integer('steps', body.steps, 1, limits.maxSteps) : blockSize !== null ? Math.min(blockSize, limits.maxSteps) : limits.defaultSteps;
  const eta = given(body, 'eta') ? number('eta', body.eta, 0, 1) : blockSize !== null ? 0.01 : 0.015;
  const denoise = parseDenoise(body.denoise);
  if (denoise && !stream) throw invalidField('denoise', 'denoise frames are sent on a stream: set stream to true');

  return {
    model: body.model, prompts, suffix, suffixText, maxTokens, temperature, n, stop, stream, includeUsage, echo, seed, user,
    steps, alg, eta, blockSize, denoise,
  };
}
