'use strict';
// The tokenizer on hostile text: the pre-tokenizer is a scanner (no RegExp backtracking: 200,000
// spaces overflowed V8's stack) and the merges use a heap (a 1 MB word took > 280 s, quadratic).
// The ids stay exactly GPT-2's: checked against gpt-tokenizer's r50k_base on generated text.
const assert = require('assert');
const { encode, decode } = require('../dist/core/tokenizer');
const { encode: reference } = require('gpt-tokenizer/cjs/encoding/r50k_base');

const PLAIN = { disallowedSpecial: new Set() };

const rng = require('./helpers/stats').mulberry32; // seeded uniforms in [0, 1)

describe('tokenizer: hostile text, same ids as GPT-2', function () {
  this.timeout(120000);

  it('gives gpt-tokenizer\'s r50k_base ids on 30,000 generated strings (every pre-tokenizer class and edge)', () => {
    const atoms = [
      'the', 'The', 'a', ' ', '  ', '   ', '\n', '\n\n', '\t', '\r\n', '\u00a0', '\u2009', '\u3000', '\ufeff', '\u2028', '\u0085', '\u000b',
      "'", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "''", 'o', 'ne', '7', '42', '٤', '²', 'Ⅻ', '.', '...', ',', '!?', '#', '$', '%',
      '€', 'é', 'e\u0301', 'ß', 'İ', 'Ω', 'ǅ', '日本', 'テ', '한', '😀', '👩\u200d👧', '\ud83d', '\ude00', '\u200b', '\u180e', '<', '|', '>',
      'endoftext', '_', '-', '—', '“', '”', 'http://x.y/z?q=1', '\\', '\u0000', '\u007f',
    ];
    const next = rng(20240607);
    let checked = 0;
    for (let t = 0; t < 30000; t++) {
      const len = 1 + Math.floor(next() * 30);
      let s = '';
      for (let i = 0; i < len; i++) s += atoms[Math.floor(next() * atoms.length)];
      const ours = encode(s, { allowSpecial: false });
      const theirs = reference(s, PLAIN);
      assert.deepStrictEqual(ours, theirs, `ids of ${JSON.stringify(s)}`);
      checked++;
    }
    assert.strictEqual(checked, 30000);
  });

  it('long runs of one class (spaces, newlines, punctuation, digits, letters) encode without a stack overflow and round-trip', () => {
    for (const [label, text] of [
      ['200,000 spaces', ' '.repeat(200000)],
      ['200,000 spaces between words', 'a' + ' '.repeat(200000) + 'b'],
      ['200,000 newlines', '\n'.repeat(200000)],
      ['100,000 tabs and spaces', ' \t'.repeat(50000) + 'x'],
      ['200,000 punctuation', '!?'.repeat(100000)],
      ['200,000 digits', '1234567890'.repeat(20000)],
    ]) {
      const ids = encode(text);
      assert.ok(ids.length > 0, label);
      assert.strictEqual(decode(ids), text, label);
    }
    // and the same ids as the reference where it still works
    for (const text of [' '.repeat(5000) + 'x', '\n'.repeat(3000), 'x' + '\u3000'.repeat(3000) + 'y']) {
      assert.deepStrictEqual(encode(text), reference(text, PLAIN));
    }
  });

  it('a 1 MB word and 1 MB of one punctuation mark encode in n log n (well inside the test timeout), same ids as the reference on a 20 kB cut', () => {
    const letters = 'abcdefghijklmnopqrstuvwxyz';
    const next = rng(7);
    const word = Array.from({ length: 1 << 20 }, () => letters[Math.floor(next() * 26)]).join('');
    const t0 = Date.now();
    const ids = encode(word);
    const bang = encode('!'.repeat(1 << 20));
    const ms = Date.now() - t0;
    assert.strictEqual(decode(ids), word);
    assert.strictEqual(decode(bang), '!'.repeat(1 << 20));
    assert.ok(ms < 60000, `${ms} ms`); // quadratic merging took more than 280 s for one of them
    const cut = word.slice(0, 20000);
    assert.deepStrictEqual(encode(cut), reference(cut, PLAIN));
  });
});
