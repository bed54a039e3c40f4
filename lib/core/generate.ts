/**
 * Text in, text out, on top of fullDiff / semiDiff: `generate` continues a prompt, `infill`
 * writes the span between a prefix and a suffix, `fillTemplate` fills several gaps at once.
 * Text goes through the GPT-2 tokenizer; every sampler option passes through unchanged.
 */
import { HdlmArgumentError, invalidParameterError } from '../errors';
import * as v from '../validate';
import { fullDiff, semiDiff, type FixedSpan, type SemiDiffOptions } from './sampling';
import { decode, encode, EOS_TOKEN_ID } from './tokenizer';

type SamplerOptions = Omit<SemiDiffOptions, 'prompt' | 'fixed' | 'contextLength'>;

export interface TextSamplerOptions extends SamplerOptions {
  /** 'fullDiff' (default) or 'semiDiff' */
  sampler?: 'fullDiff' | 'semiDiff';
}

export interface GenerateOptions extends TextSamplerOptions {
  /** text the samples continue (default '': unconditional) */
  prompt?: string;
  /** tokens sampled after the prompt (default: the rest of the model's context) */
  length?: number;
  /** text cut at the first occurrence of any of these (default none) */
  stop?: string | readonly string[];
}

export interface Generation {
  /** the completion: the text after the prompt, cut as `finishReason` says */
  text: string;
  /** the completion's tokens (what is cut is left out; see generate) */
  tokens: number[];
  /** 'eos': cut at the first <|endoftext|>; 'stop': cut at a stop string; 'length': nothing cut */
  finishReason: 'eos' | 'stop' | 'length';
  /** the whole sampled row, prompt included, nothing cut */
  sequence: number[];
}

export interface InfillOptions extends TextSamplerOptions {
  /** text before the span (may be '') */
  prefix?: string;
  /** text after the span, held fixed while the span is sampled (may be '') */
  suffix?: string;
  /** tokens in the span */
  length: number;
}

export interface Infilling {
  /** the span's text */
  text: string;
  /** the span's tokens */
  tokens: number[];
  /** prefix + span + suffix, decoded from the whole row */
  fullText: string;
  /** the whole sampled row */
  sequence: number[];
}

export interface TemplateOptions extends TextSamplerOptions {
  /**
   * literal text and gap lengths in order, e.g. ['The city', 8, ' in 1961.'], or one string
   * where `{{N}}` (N digits) is a gap of N tokens, e.g. 'The city{{8}} in 1961.'
   */
  template: string | readonly (string | number)[];
}

export interface TemplateFill {
  /** the template with every gap filled */
  text: string;
  /** each gap's text, in order */
  gaps: string[];
  /** the whole sampled row */
  sequence: number[];
}

const SAMPLER_NAMES = ['fullDiff', 'semiDiff'] as const;

function runSampler(fnName: string, o: TextSamplerOptions, prompt: number[], fixed: FixedSpan[], contextLength: number): Promise<number[][]> {
  const { sampler, ...rest } = o;
  const which = v.isDefined(sampler) ? v.oneOf('sampler', sampler, SAMPLER_NAMES) : 'fullDiff';
  for (const key of ['prompt', 'fixed', 'contextLength'] as const) {
    if (key in rest && (rest as Record<string, unknown>)[key] !== undefined) {
      throw new HdlmArgumentError(`${fnName} sets ${key} itself from its text options; leave it out`);
    }
  }
  const options: SemiDiffOptions = { ...(rest as SemiDiffOptions), prompt: prompt.length > 0 ? prompt : null, fixed, contextLength };
  return which === 'fullDiff' ? fullDiff(options) : semiDiff(options);
}

function text(name: string, value: unknown): string {
  if (!v.isDefined(value)) return '';
  if (typeof value !== 'string') throw invalidParameterError(name, 'a string', value);
  return value;
}

function modelLength(o: { model?: unknown }): number {
  const m = o.model as { length?: unknown } | undefined;
  if (!m || typeof m.length !== 'number') throw invalidParameterError('model', 'an HdlmModel from smartModelLoader', o.model);
  return m.length;
}

/**
 * Continues `prompt` with `length` sampled tokens, per sample. What is cut, in this order:
 * the completion (the tokens after the prompt) ends before its first <|endoftext|> (EOS, id
 * 50256; finishReason 'eos'), the EOS and everything after it dropped; then its text ends
 * before the earliest occurrence of any `stop` string (finishReason 'stop'), the stop string
 * and everything after it dropped. `tokens` then holds the longest run of completion tokens
 * whose text is a prefix of `text` (a token that straddles the stop string is left out).
 * `sequence` keeps the whole row.
 */
export async function generate(options: GenerateOptions): Promise<Generation[]> {
  if (!v.isPlainObject(options)) throw invalidParameterError('generate options', 'an object', options);
  const { prompt, length, stop, ...rest } = options;
  const promptIds = encode(text('prompt', prompt));
  const total = modelLength(options);
  const n = v.isDefined(length) ? v.integer('length', length, 1, Math.max(1, total - promptIds.length)) : total - promptIds.length;
  if (promptIds.length + n > total) throw invalidParameterError('prompt', `at most ${total - 1} tokens (the model's context less one)`, `${promptIds.length} tokens`);
  const stops = readStops(stop);
  const rows = await runSampler('generate', rest, promptIds, [], promptIds.length + n);
  return rows.map((row) => cutCompletion(row, promptIds.length, stops));
}

function readStops(stop: unknown): string[] {
  if (!v.isDefined(stop)) return [];
  const list = typeof stop === 'string' ? [stop] : stop;
  if (!Array.isArray(list)) throw invalidParameterError('stop', 'a string or an array of strings', stop);
  list.forEach((s, i) => {
    if (typeof s !== 'string' || s.length === 0) throw invalidParameterError(`stop[${i}]`, 'a non-empty string', s);
  });
  return list as string[];
}

/** @internal The cutting rules of generate (exported for tests). */
export function cutCompletion(row: number[], promptLength: number, stops: readonly string[]): Generation {
  let tokens = row.slice(promptLength);
  let finishReason: Generation['finishReason'] = 'length';
  const eos = tokens.indexOf(EOS_TOKEN_ID);
  if (eos >= 0) {
    tokens = tokens.slice(0, eos);
    finishReason = 'eos';
  }
  let out = decode(tokens);
  let cut = -1;
  for (const s of stops) {
    const at = out.indexOf(s);
    if (at >= 0 && (cut < 0 || at < cut)) cut = at;
  }
  if (cut >= 0) {
    out = out.slice(0, cut);
    finishReason = 'stop';
    let keep = 0;
    while (keep < tokens.length && decode(tokens.slice(0, keep + 1)).length <= cut && out.startsWith(decode(tokens.slice(0, keep + 1)))) keep++;
    tokens = tokens.slice(0, keep);
  }
  return { text: out, tokens, finishReason, sequence: row };
}

/**
 * Samples `length` tokens between `prefix` and `suffix` (both held fixed; the model sees both
 * at every step). Nothing is cut: the span has exactly `length` tokens.
 */
export async function infill(options: InfillOptions): Promise<Infilling[]> {
  if (!v.isPlainObject(options)) throw invalidParameterError('infill options', 'an object', options);
  const { prefix, suffix, length, ...rest } = options;
  const pre = encode(text('prefix', prefix));
  const suf = encode(text('suffix', suffix));
  const total = modelLength(options);
  const n = v.integer('length', length, 1, Math.max(1, total - pre.length - suf.length));
  if (pre.length + n + suf.length > total) throw invalidParameterError('length', `a span that fits the model's context (${total} tokens with prefix and suffix)`, length);
  const fixed = suf.length > 0 ? [{ at: pre.length + n, tokens: suf }] : [];
  const rows = await runSampler('infill', rest, pre, fixed, pre.length + n + suf.length);
  return rows.map((row) => {
    const tokens = row.slice(pre.length, pre.length + n);
    return { text: decode(tokens), tokens, fullText: decode(row), sequence: row };
  });
}

/** Splits a template into literal text and gap lengths (the form fillTemplate takes). */
export function parseTemplate(template: unknown): (string | number)[] {
  if (typeof template === 'string') {
    const parts: (string | number)[] = [];
    const re = /\{\{(\d+)\}\}/g;
    let last = 0;
    for (let m = re.exec(template); m; m = re.exec(template)) {
      parts.push(template.slice(last, m.index), Number(m[1]));
      last = m.index + m[0].length;
    }
    parts.push(template.slice(last));
    return parts;
  }
  if (!Array.isArray(template)) throw invalidParameterError('template', "a string with {{N}} gaps or an array of strings and gap lengths", template);
  template.forEach((p, i) => {
    if (typeof p !== 'string' && !(typeof p === 'number' && Number.isInteger(p) && p >= 1)) {
      throw invalidParameterError(`template[${i}]`, 'a string or a gap length (an integer >= 1)', p);
    }
  });
  return template as (string | number)[];
}

/**
 * Fills every gap of `template` in one sampling call: the literal parts are held fixed (each
 * tokenized on its own, so a space belongs to the part it starts), the gaps are sampled.
 */
export async function fillTemplate(options: TemplateOptions): Promise<TemplateFill[]> {
  if (!v.isPlainObject(options)) throw invalidParameterError('fillTemplate options', 'an object', options);
  const { template, ...rest } = options;
  const parts = parseTemplate(template);
  const gapCount = parts.filter((p) => typeof p === 'number').length;
  if (gapCount === 0) throw invalidParameterError('template', 'at least one gap ({{N}} or a number)', template);
  const fixed: FixedSpan[] = [];
  const gaps: [number, number][] = [];
  let at = 0;
  for (const p of parts) {
    if (typeof p === 'number') {
      gaps.push([at, p]);
      at += p;
    } else {
      const ids = encode(p);
      if (ids.length > 0) fixed.push({ at, tokens: ids });
      at += ids.length;
    }
  }
  const total = modelLength(options);
  if (at > total) throw invalidParameterError('template', `at most ${total} tokens in all (the model's context)`, `${at} tokens`);
  const prompt = fixed.length > 0 && fixed[0].at === 0 ? (fixed.shift()!.tokens as number[]) : [];
  const rows = await runSampler('fillTemplate', rest, prompt, fixed, at);
  return rows.map((row) => ({ text: decode(row), gaps: gaps.map(([s, n]) => decode(row.slice(s, s + n))), sequence: row }));
}
