/**
 * GPT-2 byte-level BPE, as upstream uses it (`GPT2TokenizerFast.from_pretrained('gpt2')`), on top of
 * gpt-tokenizer's `r50k_base` encoding (the same 50,257-entry vocabulary and pre-tokenizer regex).
 *
 * Two bugs of gpt-tokenizer 4.0 are worked around here:
 *
 * 1. Encoding: its special-token search uses a *sticky* RegExp (flag `y`), so `<|endoftext|>` is
 *    only recognised exactly at the current search position, i.e. at the very start of the text
 *    (or right after another recognised special token). `"hi<|endoftext|>"` with
 *    `allowedSpecial: 'all'` gives the 7 plain-text tokens of `<|endoftext|>` instead of 50256.
 *    We split the text on the special token ourselves and encode each piece as plain text, which
 *    is also what the Hugging Face tokenizer does (added tokens split the text first; the pieces
 *    are pre-tokenized independently).
 *
 * 2. Decoding: it decodes bytes through one module-wide `TextDecoder` with `{stream: true}` and
 *    never flushes it, so an incomplete UTF-8 sequence at the end of one `decode()` call is
 *    silently dropped and then leaks into the *next* call's output. We keep our own byte table
 *    (from the same rank data) and decode every call with a fresh decoder, replacing invalid
 *    sequences with U+FFFD like Python's `bytes.decode('utf-8', errors='replace')`.
 */
import { encode as bpeEncode } from 'gpt-tokenizer/cjs/encoding/r50k_base';
import bpeRanks from 'gpt-tokenizer/cjs/bpeRanks/r50k_base';
import { invalidParameterError } from '../errors';

/** GPT-2's `<|endoftext|>` (also used as BOS by the samplers). */
export const EOS_TOKEN_ID = 50256;
/** The absorbing/mask state of the HDLM models: one past GPT-2's vocabulary, not a GPT-2 token. */
export const MASK_TOKEN_ID = 50257;
/** Number of GPT-2 tokens (ids 0..50256); the models add the mask state on top. */
export const GPT2_VOCAB_SIZE = 50257;

const EOS_TEXT = '<|endoftext|>';
const EOS_BYTES = new TextEncoder().encode(EOS_TEXT);
/** Encode everything as ordinary text: no special token is recognised and none throws. */
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

export interface EncodeOptions {
  /** `<|endoftext|>` anywhere in the text becomes id 50256 (default true); false encodes it as plain text */
  allowSpecial?: boolean;
}

export interface DecodeOptions {
  /** drop `<|endoftext|>` (50256) as well as the mask id (default false) */
  skipSpecialTokens?: boolean;
}

function checkOptions(opts: unknown, name: string, keys: readonly string[]): Record<string, unknown> {
  if (opts === undefined || opts === null) return {};
  if (typeof opts !== 'object' || Array.isArray(opts)) throw invalidParameterError(name, 'an object', opts);
  const o = opts as Record<string, unknown>;
  for (const k of keys) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw invalidParameterError(`${name}.${k}`, 'a boolean', o[k]);
  }
  return o;
}

/** GPT-2 ids of `text`, like `GPT2TokenizerFast(text)['input_ids']` (no BOS/EOS added). */
export function encode(text: string, opts?: EncodeOptions): number[] {
  if (typeof text !== 'string') throw invalidParameterError('text', 'a string', text);
  const o = checkOptions(opts, 'options', ['allowSpecial']);
  const allowSpecial = o.allowSpecial !== false;
  if (!allowSpecial || !text.includes(EOS_TEXT)) return bpeEncode(text, PLAIN_TEXT);
  const out: number[] = [];
  const pieces = text.split(EOS_TEXT);
  for (let i = 0; i < pieces.length; i++) {
    if (i > 0) out.push(EOS_TOKEN_ID);
    if (pieces[i].length > 0) {
      for (const id of bpeEncode(pieces[i], PLAIN_TEXT)) out.push(id);
    }
  }
  return out;
}

/** Lazily filled: UTF-8 bytes of each GPT-2 token (0..50255). */
const tokenBytes: (Uint8Array | undefined)[] = new Array(EOS_TOKEN_ID);
const utf8 = new TextEncoder();

function bytesOf(id: number): Uint8Array {
  let b = tokenBytes[id];
  if (b === undefined) {
    const raw = (bpeRanks as readonly (string | readonly number[])[])[id];
    if (typeof raw === 'string') b = utf8.encode(raw);
    else if (Array.isArray(raw)) b = Uint8Array.from(raw);
    else throw new Error(`hdlm: GPT-2 token ${id} is missing from gpt-tokenizer's r50k_base table`);
    tokenBytes[id] = b;
  }
  return b;
}

function toTokenId(value: unknown, index: number): number {
  // bigint is accepted too (int64 tensors read as BigInt64Array), as long as it is in range.
  const v = typeof value === 'bigint' && value >= 0n && value <= BigInt(MASK_TOKEN_ID) ? Number(value) : value;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MASK_TOKEN_ID) {
    throw invalidParameterError(`ids[${index}]`, `an integer token id in [0, ${MASK_TOKEN_ID}]`, value);
  }
  return v;
}

/**
 * Text of GPT-2 ids, like `GPT2TokenizerFast.decode(ids, skip_special_tokens=...)`.
 *
 * The mask id 50257 is not a GPT-2 token: it is always dropped, whatever `skipSpecialTokens` says.
 * (Upstream's tokenizer does not know the id and renders nothing for it; a placeholder such as
 * `[MASK]` would read as real text, so we render nothing too. Count masks on the ids instead.)
 * `<|endoftext|>` (50256) is rendered as that text unless `skipSpecialTokens` is true.
 * Byte sequences that are not valid UTF-8 (e.g. a multi-byte character cut by a dropped or
 * missing token) become U+FFFD.
 */
export function decode(ids: Iterable<number> | ArrayLike<number>, opts?: DecodeOptions): string {
  const o = checkOptions(opts, 'options', ['skipSpecialTokens']);
  const skipSpecial = o.skipSpecialTokens === true;
  if (ids === null || typeof ids !== 'object') {
    throw invalidParameterError('ids', 'an array or iterable of token ids', ids);
  }
  const parts: Uint8Array[] = [];
  let total = 0;
  const push = (value: unknown, index: number): void => {
    const id = toTokenId(value, index);
    if (id === MASK_TOKEN_ID) return;
    if (id === EOS_TOKEN_ID) {
      if (skipSpecial) return;
      parts.push(EOS_BYTES);
      total += EOS_BYTES.length;
      return;
    }
    const b = bytesOf(id);
    parts.push(b);
    total += b.length;
  };
  const iter = (ids as { [Symbol.iterator]?: unknown })[Symbol.iterator];
  if (typeof iter === 'function') {
    let i = 0;
    for (const v of ids as Iterable<unknown>) push(v, i++);
  } else {
    const len = (ids as ArrayLike<unknown>).length;
    if (typeof len !== 'number' || !Number.isSafeInteger(len) || len < 0) {
      throw invalidParameterError('ids', 'an array or iterable of token ids', ids);
    }
    for (let i = 0; i < len; i++) push((ids as ArrayLike<unknown>)[i], i);
  }
  const all = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  // A fresh decoder per call (no state shared between calls); keep a leading U+FEFF as Python does.
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(all);
}

export interface Gpt2Tokenizer {
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: Iterable<number> | ArrayLike<number>, opts?: DecodeOptions): string;
  readonly eosTokenId: typeof EOS_TOKEN_ID;
  readonly maskTokenId: typeof MASK_TOKEN_ID;
  /** GPT-2 tokens only (the mask id is one past the end) */
  readonly vocabSize: typeof GPT2_VOCAB_SIZE;
}

/** One object mirroring how upstream uses `GPT2TokenizerFast`. */
export const tokenizer: Gpt2Tokenizer = Object.freeze({
  encode,
  decode,
  eosTokenId: EOS_TOKEN_ID,
  maskTokenId: MASK_TOKEN_ID,
  vocabSize: GPT2_VOCAB_SIZE,
});
