/**
 * GPT-2 byte-level BPE, as upstream uses it (`GPT2TokenizerFast.from_pretrained('gpt2')`): the
 * 50,257-entry vocabulary of gpt-tokenizer's `r50k_base` rank table, GPT-2's pre-tokenizer and
 * the rank-ordered merges, with two properties gpt-tokenizer 4.0 lacks and one of its bugs worked
 * around:
 *
 * 1. Linear-time pre-tokenization. GPT-2's split pattern
 *    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` is applied by
 *    a scanner here, not by a RegExp: V8's backtracking overflows its stack on long whitespace
 *    runs (200,000 spaces threw a RangeError).
 * 2. O(n log n) merges. A piece is merged with a heap of adjacent pairs keyed (rank, position),
 *    which picks exactly the pair the usual scan picks (lowest rank, leftmost), instead of
 *    rescanning every pair after every merge: a 1 MB word took more than 280 s, quadratic.
 * 3. Special tokens: gpt-tokenizer's special-token search uses a sticky RegExp, so
 *    `<|endoftext|>` was only recognised at the very start of the text. We split the text on the
 *    special token ourselves and encode each piece as plain text, which is also what the Hugging
 *    Face tokenizer does (added tokens split the text first).
 *
 * Decoding: gpt-tokenizer decodes bytes through one module-wide `TextDecoder` with
 * `{stream: true}` and never flushes it, so an incomplete UTF-8 sequence at the end of one call
 * leaks into the next call's output. We keep our own byte table (from the same rank data) and
 * decode every call with a fresh decoder, replacing invalid sequences with U+FFFD like Python's
 * `bytes.decode('utf-8', errors='replace')`.
 */
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
  const out: number[] = [];
  if (!allowSpecial || !text.includes(EOS_TEXT)) {
    encodeOrdinary(text, out);
    return out;
  }
  const pieces = text.split(EOS_TEXT);
  for (let i = 0; i < pieces.length; i++) {
    if (i > 0) out.push(EOS_TOKEN_ID);
    if (pieces[i].length > 0) encodeOrdinary(pieces[i], out);
  }
  return out;
}

// ---- pre-tokenizer ----

const CLASS_SPACE = 1; // \s
const CLASS_LETTER = 2; // \p{L}
const CLASS_NUMBER = 3; // \p{N}
const CLASS_OTHER = 4; // [^\s\p{L}\p{N}]
const SPACE_RE = /^\s$/u;
const LETTER_RE = /^\p{L}$/u;
const NUMBER_RE = /^\p{N}$/u;
/** class of each BMP code point (0: not computed yet); astral ones in a map */
const bmpClass = new Uint8Array(0x10000);
const astralClass = new Map<number, number>();

function classOf(cp: number): number {
  if (cp < 0x10000) {
    let c = bmpClass[cp];
    if (c === 0) {
      c = computeClass(cp);
      bmpClass[cp] = c;
    }
    return c;
  }
  let c = astralClass.get(cp);
  if (c === undefined) {
    c = computeClass(cp);
    astralClass.set(cp, c);
  }
  return c;
}

function computeClass(cp: number): number {
  const ch = String.fromCodePoint(cp);
  if (SPACE_RE.test(ch)) return CLASS_SPACE;
  if (LETTER_RE.test(ch)) return CLASS_LETTER;
  if (NUMBER_RE.test(ch)) return CLASS_NUMBER;
  return CLASS_OTHER;
}

/** UTF-16 length of the code point at `i` (a lone surrogate counts as one, as the u flag reads it). */
function cpLength(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
    const d = text.charCodeAt(i + 1);
    if (d >= 0xdc00 && d <= 0xdfff) return 2;
  }
  return 1;
}

function classAt(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c < 0xd800 || c > 0xdfff) return bmpClass[c] || classOf(c);
  return classOf(text.codePointAt(i) as number);
}

/** End of the run of code points of class `cls` starting at `i`. */
function runEnd(text: string, i: number, cls: number): number {
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) {
      if ((bmpClass[c] || classOf(c)) !== cls) break;
      i++;
    } else {
      if (classOf(text.codePointAt(i) as number) !== cls) break;
      i += cpLength(text, i);
    }
  }
  return i;
}

/** End of the match of GPT-2's split pattern at `i` (the alternatives in the pattern's order). */
function matchEnd(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === 0x27 && i + 1 < text.length) {
    // 's 't 're 've 'm 'll 'd
    const a = text[i + 1];
    if (a === 's' || a === 't' || a === 'm' || a === 'd') return i + 2;
    const b = text[i + 2];
    if ((a === 'r' && b === 'e') || (a === 'v' && b === 'e') || (a === 'l' && b === 'l')) return i + 3;
  }
  const cls = classAt(text, i);
  // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': a space may lead a run of the next class
  if (c === 0x20 && i + 1 < text.length) {
    const next = classAt(text, i + 1);
    if (next !== CLASS_SPACE) return runEnd(text, i + 1, next);
  }
  if (cls !== CLASS_SPACE) return runEnd(text, i, cls);
  // '\s+(?!\S)': the whitespace run, but the last one left to lead the next piece; else '\s+'
  const end = runEnd(text, i, CLASS_SPACE);
  if (end === text.length) return end;
  return end - 1 > i ? end - 1 : end;
}

// ---- merges ----

/** rank of each token by its bytes (as a latin1 string: one char per byte) */
let rankOfBytes: Map<string, number> | null = null;

function ranks(): Map<string, number> {
  if (rankOfBytes) return rankOfBytes;
  const m = new Map<string, number>();
  const table = bpeRanks as readonly (string | readonly number[])[];
  for (let id = 0; id < table.length; id++) {
    const raw = table[id];
    if (typeof raw === 'string') m.set(Buffer.from(raw, 'utf8').toString('latin1'), id);
    else if (Array.isArray(raw)) m.set(Buffer.from(raw).toString('latin1'), id);
  }
  rankOfBytes = m;
  return m;
}

/** pieces already encoded (bounded; pieces up to MAX_CACHED_PIECE chars) */
const pieceCache = new Map<string, readonly number[]>();
const PIECE_CACHE_SIZE = 100_000;
const MAX_CACHED_PIECE = 256;

function encodeOrdinary(text: string, out: number[]): void {
  const table = ranks();
  let i = 0;
  while (i < text.length) {
    const end = matchEnd(text, i);
    const piece = text.slice(i, end);
    i = end;
    const cached = pieceCache.get(piece);
    if (cached) {
      for (const id of cached) out.push(id);
      continue;
    }
    const bytes = Buffer.from(piece, 'utf8').toString('latin1');
    const whole = table.get(bytes);
    const ids = whole !== undefined ? [whole] : mergePiece(bytes, table);
    if (piece.length <= MAX_CACHED_PIECE) {
      if (pieceCache.size >= PIECE_CACHE_SIZE) pieceCache.delete(pieceCache.keys().next().value as string);
      pieceCache.set(piece, ids);
    }
    for (const id of ids) out.push(id);
  }
}

/**
 * Byte-pair merges of one piece (its bytes as a latin1 string): repeatedly merges the adjacent
 * pair whose concatenation has the lowest rank (the leftmost among equals) until none is a token.
 * The pairs sit in a binary heap keyed (rank, start); merged-away or changed pairs are skipped
 * when they surface. O(n log n) for n bytes.
 */
function mergePiece(bytes: string, table: Map<string, number>): number[] {
  const n = bytes.length;
  // segments: [start[k], start[next[k]]), a linked list over byte offsets
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  const alive = new Uint8Array(n).fill(1);
  const pairRank = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    next[k] = k + 1; // n marks the end
    prev[k] = k - 1;
  }
  const endOf = (k: number): number => next[k]; // a segment ends where the next one starts
  const rankAt = (k: number): number => {
    const nk = next[k];
    if (nk >= n) return Infinity;
    return table.get(bytes.slice(k, endOf(nk))) ?? Infinity;
  };
  // binary min-heap of (rank, start) pairs in two parallel arrays
  let heapRank: number[] = [];
  let heapPos: number[] = [];
  const less = (a: number, b: number): boolean => heapRank[a] < heapRank[b] || (heapRank[a] === heapRank[b] && heapPos[a] < heapPos[b]);
  const swap = (a: number, b: number): void => {
    const r = heapRank[a];
    heapRank[a] = heapRank[b];
    heapRank[b] = r;
    const p = heapPos[a];
    heapPos[a] = heapPos[b];
    heapPos[b] = p;
  };
  const push = (rank: number, pos: number): void => {
    heapRank.push(rank);
    heapPos.push(pos);
    let i = heapRank.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(i, parent)) break;
      swap(i, parent);
      i = parent;
    }
  };
  const pop = (): void => {
    const last = heapRank.length - 1;
    swap(0, last);
    heapRank.pop();
    heapPos.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heapRank.length && less(l, m)) m = l;
      if (r < heapRank.length && less(r, m)) m = r;
      if (m === i) break;
      swap(i, m);
      i = m;
    }
  };
  for (let k = 0; k < n - 1; k++) {
    pairRank[k] = rankAt(k);
    if (pairRank[k] !== Infinity) push(pairRank[k], k);
  }
  pairRank[n - 1] = Infinity;
  while (heapRank.length > 0) {
    const rank = heapRank[0];
    const k = heapPos[0];
    pop();
    if (!alive[k] || pairRank[k] !== rank || next[k] >= n) continue;
    // merge segment k with the next one
    const gone = next[k];
    alive[gone] = 0;
    next[k] = next[gone];
    if (next[k] < n) prev[next[k]] = k;
    pairRank[k] = rankAt(k);
    if (pairRank[k] !== Infinity) push(pairRank[k], k);
    const p = prev[k];
    if (p >= 0) {
      pairRank[p] = rankAt(p);
      if (pairRank[p] !== Infinity) push(pairRank[p], p);
    }
    if (heapRank.length > 4 * n + 64) {
      // drop stale entries so the heap stays O(n)
      const keep: [number, number][] = [];
      for (let j = 0; j < heapRank.length; j++) {
        const q = heapPos[j];
        if (alive[q] && pairRank[q] === heapRank[j]) keep.push([heapRank[j], q]);
      }
      heapRank = [];
      heapPos = [];
      for (const [r, q] of keep) push(r, q);
    }
  }
  const ids: number[] = [];
  for (let k = 0; k < n; k = next[k]) {
    const id = table.get(bytes.slice(k, next[k]));
    if (id === undefined) throw new Error(`hdlm: no GPT-2 token for the bytes of ${JSON.stringify(bytes.slice(k, next[k]))}`);
    ids.push(id);
  }
  return ids;
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
