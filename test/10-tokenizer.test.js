'use strict';
const assert = require('assert');
const { encode, decode, tokenizer, EOS_TOKEN_ID, MASK_TOKEN_ID } = require('../dist/core/tokenizer');
const { HdlmError } = require('../dist/errors');

function assertArgError(fn, ...fragments) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof HdlmError, `expected an HdlmError, got ${e}`);
    assert.strictEqual(e.code, 'HDLM_INVALID_ARGUMENT');
    assert.strictEqual(e.name, 'HdlmArgumentError');
    for (const f of fragments) assert.ok(e.message.includes(f), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(f)}`);
    return true;
  });
}

describe('tokenizer', () => {
  describe('constants', () => {
    it('exposes GPT-2 EOS and the HDLM mask id', () => {
      assert.strictEqual(EOS_TOKEN_ID, 50256);
      assert.strictEqual(MASK_TOKEN_ID, 50257);
      assert.strictEqual(tokenizer.eosTokenId, 50256);
      assert.strictEqual(tokenizer.maskTokenId, 50257);
      assert.strictEqual(tokenizer.vocabSize, 50257);
      assert.strictEqual(tokenizer.encode, encode);
      assert.strictEqual(tokenizer.decode, decode);
      assert.ok(Object.isFrozen(tokenizer));
    });
  });

  describe('encode', () => {
    it('matches GPT-2 ids of the reference prompt', () => {
      assert.deepStrictEqual(encode('The future of artificial intelligence'), [464, 2003, 286, 11666, 4430]);
    });

    it('matches other known GPT-2 ids', () => {
      assert.deepStrictEqual(encode('Hello world'), [15496, 995]);
      assert.deepStrictEqual(encode('\n'), [198]);
      assert.deepStrictEqual(encode('\n\n'), [628]);
      assert.deepStrictEqual(encode(' '), [220]);
      assert.deepStrictEqual(encode(''), []);
    });

    it('round-trips unicode and whitespace', () => {
      const texts = [
        'The future of artificial intelligence',
        'héllo wörld — naïve café',
        '日本語のテキスト 🎉👩‍👩‍👧 emoji',
        '  leading and trailing spaces  ',
        'tabs\tand\nnew\r\nlines\n\n\n',
        '\uFEFFstarts with a BOM',
        "it's we'll they've I'm",
        '12345 67.89 $1,000,000',
      ];
      for (const t of texts) {
        const ids = encode(t);
        assert.ok(ids.every((i) => Number.isInteger(i) && i >= 0 && i < 50256), `ids of ${JSON.stringify(t)}`);
        assert.strictEqual(decode(ids), t);
      }
    });

    it('recognises <|endoftext|> at the start, middle, end, and repeated', () => {
      assert.deepStrictEqual(encode('<|endoftext|>'), [50256]);
      assert.deepStrictEqual(encode('<|endoftext|>hi'), [50256, 5303]);
      assert.deepStrictEqual(encode('hi<|endoftext|>'), [5303, 50256]);
      assert.deepStrictEqual(encode('hi<|endoftext|>there'), [5303, 50256, 8117]);
      assert.deepStrictEqual(encode('a<|endoftext|><|endoftext|>b'), [64, 50256, 50256, 65]);
      assert.deepStrictEqual(encode('<|endoftext|><|endoftext|><|endoftext|>'), [50256, 50256, 50256]);
      const text = 'The future<|endoftext|> of artificial<|endoftext|>intelligence<|endoftext|>';
      assert.deepStrictEqual(encode(text), [
        ...encode('The future'),
        50256,
        ...encode(' of artificial'),
        50256,
        ...encode('intelligence'),
        50256,
      ]);
      assert.strictEqual(decode(encode(text)), text);
    });

    it('pieces around <|endoftext|> are encoded independently (like Hugging Face)', () => {
      // " there" after the special token keeps its space as part of the word
      assert.deepStrictEqual(encode('hi <|endoftext|> there'), [5303, 220, 50256, 612]);
    });

    it('allowSpecial: false encodes <|endoftext|> as plain text', () => {
      const plain = [27, 91, 437, 1659, 5239, 91, 29];
      assert.deepStrictEqual(encode('<|endoftext|>', { allowSpecial: false }), plain);
      const ids = encode('hi<|endoftext|>there', { allowSpecial: false });
      assert.ok(!ids.includes(50256));
      assert.deepStrictEqual(ids, [5303, ...plain, 8117]);
      assert.strictEqual(decode(ids), 'hi<|endoftext|>there');
      assert.deepStrictEqual(encode('<|endoftext|>', { allowSpecial: true }), [50256]);
    });

    it('rejects bad input', () => {
      assertArgError(() => encode(42), 'text', '42');
      assertArgError(() => encode(null), 'text', 'null');
      assertArgError(() => encode(undefined), 'text');
      assertArgError(() => encode(['a']), 'text', 'array');
      assertArgError(() => encode('x', { allowSpecial: 'yes' }), 'options.allowSpecial', '"yes"');
      assertArgError(() => encode('x', 5), 'options');
    });
  });

  describe('decode', () => {
    it('renders <|endoftext|> unless skipSpecialTokens', () => {
      assert.strictEqual(decode([464, 50256, 2003]), 'The<|endoftext|> future');
      assert.strictEqual(decode([464, 50256, 2003], { skipSpecialTokens: false }), 'The<|endoftext|> future');
      assert.strictEqual(decode([464, 50256, 2003], { skipSpecialTokens: true }), 'The future');
      assert.strictEqual(decode([50256, 50256], { skipSpecialTokens: true }), '');
    });

    it('never renders the mask id', () => {
      assert.strictEqual(decode([50257]), '');
      assert.strictEqual(decode([464, 50257, 2003, 50257]), 'The future');
      assert.strictEqual(decode([464, 50257, 2003], { skipSpecialTokens: true }), 'The future');
      assert.strictEqual(decode([50257, 50256, 50257]), '<|endoftext|>');
      const text = decode([50257, 464, 50257, 50257, 2003, 286, 50257]);
      assert.ok(!text.includes('50257') && !/mask/i.test(text));
      assert.strictEqual(text, 'The future of');
    });

    it('accepts arrays, typed arrays, iterables and array-likes', () => {
      const ids = [464, 2003, 286, 11666, 4430];
      const want = 'The future of artificial intelligence';
      assert.strictEqual(decode(ids), want);
      assert.strictEqual(decode(Int32Array.from(ids)), want);
      assert.strictEqual(decode(Uint16Array.from(ids)), want);
      assert.strictEqual(decode(Float64Array.from(ids)), want);
      assert.strictEqual(decode(new Set(ids)), want);
      assert.strictEqual(decode((function* () { yield* ids; })()), want);
      assert.strictEqual(decode({ length: 2, 0: 464, 1: 2003 }), 'The future');
      assert.strictEqual(decode(BigInt64Array.from(ids.map(BigInt))), want);
      assert.strictEqual(decode([]), '');
    });

    it('replaces broken UTF-8 with U+FFFD and keeps no state between calls', () => {
      const ids = encode('日本');
      assert.ok(ids.length > 1);
      const first = decode(ids.slice(0, 1));
      assert.ok(first.includes('\uFFFD'), JSON.stringify(first));
      assert.strictEqual(decode(ids.slice(0, 1)), first); // same result twice
      assert.strictEqual(decode([464]), 'The'); // nothing leaks from the previous call
      assert.strictEqual(decode(ids), '日本');
    });

    it('rejects bad ids, naming the index and value', () => {
      assertArgError(() => decode([1.5]), 'ids[0]', '1.5');
      assertArgError(() => decode([464, -1]), 'ids[1]', '-1');
      assertArgError(() => decode([464, 2003, 50258]), 'ids[2]', '50258');
      assertArgError(() => decode([NaN]), 'ids[0]', 'NaN');
      assertArgError(() => decode(['464']), 'ids[0]', '"464"');
      assertArgError(() => decode([null]), 'ids[0]', 'null');
      assertArgError(() => decode([2 ** 53]), 'ids[0]');
      assertArgError(() => decode(null), 'ids', 'null');
      assertArgError(() => decode(5), 'ids', '5');
      assertArgError(() => decode('464'), 'ids');
      assertArgError(() => decode([464], { skipSpecialTokens: 1 }), 'options.skipSpecialTokens', '1');
    });
  });
});
