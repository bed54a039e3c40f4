/**
 * From sampled tokens to completion text, the way text-generation APIs cut it: the completion
 * ends before the first `<|endoftext|>` and before the earliest stop string (neither is part of
 * the text; finish_reason 'stop'); otherwise it is all `max_tokens` tokens (finish_reason
 * 'length'). Also: the text a stream may already send while sampling runs, and the rendering of
 * a partly denoised sample.
 */
import { tokenizer, EOS_TOKEN_ID } from '../index';

export type FinishReason = 'stop' | 'length';

export interface CompletionText {
  text: string;
  /** tokens the text is made of (up to the cut) */
  tokens: number;
  finishReason: FinishReason;
}

function earliestStop(text: string, stop: readonly string[]): number {
  let cut = -1;
  for (const s of stop) {
    const i = text.indexOf(s);
    if (i >= 0 && (cut < 0 || i < cut)) cut = i;
  }
  return cut;
}

/** Smallest k with decode(ids[0..k]) at least `chars` long (decoded length grows with k). */
function tokensCovering(ids: readonly number[], chars: number): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (tokenizer.decode(ids.slice(0, mid)).length >= chars) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** The final text of one sample's completion tokens. */
export function completionText(tokens: readonly number[], stop: readonly string[]): CompletionText {
  const eos = tokens.indexOf(EOS_TOKEN_ID);
  const ids = eos >= 0 ? tokens.slice(0, eos) : tokens.slice();
  const text = tokenizer.decode(ids);
  const cut = earliestStop(text, stop);
  if (cut >= 0) return { text: text.slice(0, cut), tokens: tokensCovering(ids, cut), finishReason: 'stop' };
  return { text, tokens: ids.length, finishReason: eos >= 0 ? 'stop' : 'length' };
}

/**
 * The part of a completion that is already final while sampling runs, for samplers where a
 * token, once unmasked, never changes ('original'): the unmasked run at the start of the
 * completion. `advance` returns the new final text since the last call; `finish` the rest of the
 * final text. Text that could still become part of a stop string, or an incomplete UTF-8
 * character, is held back, so the pieces always add up to `completionText`.
 */
export class FinalTextStream {
  #emitted = '';
  #done = false;
  readonly #holdBack: number;

  constructor(
    private readonly stop: readonly string[],
    private readonly maskId: number,
  ) {
    this.#holdBack = stop.reduce((m, s) => Math.max(m, s.length - 1), 0);
  }

  get emitted(): string {
    return this.#emitted;
  }

  advance(tokens: readonly number[]): string {
    if (this.#done) return '';
    let k = 0;
    while (k < tokens.length && tokens[k] !== this.maskId && tokens[k] !== EOS_TOKEN_ID) k++;
    const atEos = k < tokens.length && tokens[k] === EOS_TOKEN_ID;
    let text = tokenizer.decode(tokens.slice(0, k));
    const cut = earliestStop(text, this.stop);
    if (cut >= 0) {
      text = text.slice(0, cut);
      this.#done = true;
    } else if (atEos) {
      this.#done = true;
    } else {
      // the next token may complete a character cut in two (decoded as U+FFFD) ...
      let end = text.length;
      while (end > 0 && text.charCodeAt(end - 1) === 0xfffd) end--;
      // ... or a stop string that starts in the last characters
      text = text.slice(0, Math.max(0, end - this.#holdBack));
    }
    if (text.length <= this.#emitted.length || !text.startsWith(this.#emitted)) return '';
    const delta = text.slice(this.#emitted.length);
    this.#emitted = text;
    return delta;
  }

  /** The rest of the final text. */
  finish(final: CompletionText): string {
    const rest = final.text.startsWith(this.#emitted) ? final.text.slice(this.#emitted.length) : '';
    this.#emitted = final.text;
    this.#done = true;
    return rest;
  }
}

/**
 * A partly denoised completion as text: each masked position becomes `placeholder`, the
 * unmasked runs between them are decoded (`<|endoftext|>` left out).
 */
export function renderDenoised(tokens: readonly number[], maskId: number, placeholder: string): { text: string; masked: number } {
  let text = '';
  let masked = 0;
  let runStart = 0;
  for (let i = 0; i <= tokens.length; i++) {
    if (i === tokens.length || tokens[i] === maskId) {
      if (i > runStart) text += tokenizer.decode(tokens.slice(runStart, i), { skipSpecialTokens: true });
      if (i < tokens.length) {
        text += placeholder;
        masked++;
      }
      runStart = i + 1;
    }
  }
  return { text, masked };
}
