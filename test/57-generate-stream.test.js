'use strict';
// Text in and out (generate, infill, fillTemplate) and the denoising as a stream (streamDiff):
// the cutting rules at EOS and stop strings, frame order, coalescing under a slow consumer,
// and that leaving the loop or aborting stops the native work.
const assert = require('assert');
const fs = require('fs');
const {
  smartModelLoader, generate, infill, fillTemplate, streamDiff, decodeWithMasks, tokenizer, AbortError, HdlmArgumentError,
} = require('../dist');
const { cutCompletion, parseTemplate } = require('../dist/core/generate');
const { DEMO_MODEL, tempDir } = require('./helpers/reference');

const MASK = 50257;
const EOS = 50256;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('generate: what is cut at EOS and stop strings', () => {
  const enc = (s) => tokenizer.encode(s);
  const prompt = enc('Once');

  it('nothing cut: finishReason length, the whole completion', () => {
    const tail = enc(' upon a time there was');
    const g = cutCompletion([...prompt, ...tail], prompt.length, []);
    assert.strictEqual(g.finishReason, 'length');
    assert.strictEqual(g.text, ' upon a time there was');
    assert.deepStrictEqual(g.tokens, tail);
    assert.deepStrictEqual(g.sequence, [...prompt, ...tail]);
  });

  it('EOS: the completion ends before the first EOS, which is dropped with all after it', () => {
    const a = enc(' upon a time');
    const g = cutCompletion([...prompt, ...a, EOS, ...enc(' more'), EOS], prompt.length, []);
    assert.strictEqual(g.finishReason, 'eos');
    assert.strictEqual(g.text, ' upon a time');
    assert.deepStrictEqual(g.tokens, a);
  });

  it('stop: the text ends before the earliest stop string; tokens straddling it are left out', () => {
    const tail = enc(' upon a time. The end');
    const g = cutCompletion([...prompt, ...tail], prompt.length, ['end', '. ']);
    assert.strictEqual(g.finishReason, 'stop');
    assert.strictEqual(g.text, ' upon a time');
    assert.strictEqual(tokenizer.decode(g.tokens), ' upon a time');
    // a stop string inside a token: the token is left out of `tokens`, its part before the stop kept in `text`
    const h = cutCompletion([...prompt, ...enc(' upon a timeless')], prompt.length, ['less']);
    assert.strictEqual(h.text, ' upon a time');
    assert.ok(h.text.startsWith(tokenizer.decode(h.tokens)));
    // EOS first, then stop strings on what is left
    const k = cutCompletion([...prompt, ...enc(' a b'), EOS, ...enc(' c')], prompt.length, [' c']);
    assert.strictEqual(k.finishReason, 'eos');
    assert.strictEqual(k.text, ' a b');
  });

  it('templates: {{N}} gaps and part arrays', () => {
    assert.deepStrictEqual(parseTemplate('The city{{8}} in 1961.'), ['The city', 8, ' in 1961.']);
    assert.deepStrictEqual(parseTemplate('{{2}}a{{3}}'), ['', 2, 'a', 3, '']);
    assert.deepStrictEqual(parseTemplate(['x', 4]), ['x', 4]);
    assert.throws(() => parseTemplate(['x', 0]), HdlmArgumentError);
    assert.throws(() => parseTemplate(7), HdlmArgumentError);
  });

  it('decodeWithMasks shows each masked position as the placeholder', () => {
    assert.strictEqual(decodeWithMasks([...enc('Hello'), MASK, MASK, ...enc(' world')], MASK, '_'), 'Hello__ world');
  });
});

describe('text helpers and the stream on the demo model', function () {
  this.timeout(120000);
  let model;
  let cache;
  before(async () => {
    cache = tempDir('ts');
    ({ model } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache }));
  });
  after(() => {
    model?.dispose();
    fs.rmSync(cache, { recursive: true, force: true });
  });

  it('generate: one result per sample, the prompt continued, every sampler option passed on', async () => {
    const out = await generate({ model, prompt: 'The city', length: 12, steps: 8, batchSize: 2, seed: 1, alg: 'acs', sampler: 'semiDiff', blockSize: 4 });
    assert.strictEqual(out.length, 2);
    for (const g of out) {
      assert.strictEqual(g.sequence.length, tokenizer.encode('The city').length + 12);
      assert.ok(['length', 'eos', 'stop'].includes(g.finishReason));
      assert.ok(g.tokens.length <= 12);
    }
    await assert.rejects(() => generate({ model, prompt: 'x', length: 4, contextLength: 9 }), HdlmArgumentError);
    await assert.rejects(() => generate({ model, prompt: 'x', length: 4, stop: [''] }), HdlmArgumentError);
  });

  it('infill: the span has exactly `length` tokens between the prefix and the suffix', async () => {
    const prefix = 'The city council met';
    const suffix = ' in the spring of 1961.';
    const out = await infill({ model, prefix, suffix, length: 10, steps: 10, seed: 2, batchSize: 2, reference: true });
    for (const r of out) {
      assert.strictEqual(r.tokens.length, 10);
      assert.ok(!r.tokens.includes(MASK));
      assert.deepStrictEqual(r.sequence.slice(-tokenizer.encode(suffix).length), tokenizer.encode(suffix));
      assert.strictEqual(r.fullText, tokenizer.decode(r.sequence));
      assert.ok(r.fullText.startsWith(prefix) && r.fullText.endsWith(suffix));
    }
  });

  it('fillTemplate: the literal parts kept, each gap filled', async () => {
    const [r] = await fillTemplate({ model, template: 'He said{{3}} and then{{4}}.', steps: 6, seed: 3 });
    assert.strictEqual(r.gaps.length, 2);
    assert.ok(r.text.startsWith('He said') && r.text.endsWith('.'), r.text);
    assert.ok(r.text.includes(' and then'));
  });

  it('stream: frames in step order, the last one final, text with placeholders', async () => {
    const steps = 6;
    const stream = streamDiff({ model, prompt: [464, 2003], steps, contextLength: 16, seed: 4, text: true, placeholder: '·' });
    const frames = [];
    for await (const f of stream) frames.push(f);
    assert.ok(frames.length >= 1);
    for (let i = 1; i < frames.length; i++) assert.ok(frames[i].step > frames[i - 1].step);
    const last = frames[frames.length - 1];
    assert.strictEqual(last.step, steps);
    assert.strictEqual(last.total, steps);
    assert.deepStrictEqual(last.tokens, await stream.result);
    assert.strictEqual(frames.reduce((n, f) => n + 1 + f.skipped, 0), steps);
    for (const f of frames) {
      assert.strictEqual(f.text.length, 1);
      assert.strictEqual((f.text[0].match(/·/g) || []).length, f.tokens[0].filter((t) => t === MASK).length);
    }
  });

  it('stream: a slow consumer gets coalesced frames (latest wins) and every step is accounted for', async () => {
    const steps = 40;
    const frames = [];
    for await (const f of streamDiff({ model, steps, contextLength: 32, seed: 5, sampler: 'semiDiff', blockSize: 32 })) {
      frames.push(f);
      await sleep(60);
    }
    assert.ok(frames.some((f) => f.skipped > 0), `skipped: ${frames.map((f) => f.skipped)}`);
    assert.strictEqual(frames.reduce((n, f) => n + 1 + f.skipped, 0), steps);
    assert.strictEqual(frames[frames.length - 1].step, steps);
  });

  it('stream: break stops the native loop at its next step', async () => {
    const steps = 400;
    const stream = streamDiff({ model, steps, contextLength: 64, seed: 6, reference: true });
    let seen = 0;
    for await (const f of stream) {
      seen = f.step;
      break;
    }
    const at = stream.stepsDone;
    await assert.rejects(stream.result, AbortError);
    await sleep(200);
    assert.strictEqual(stream.stepsDone, at, 'no step ran after the loop was left');
    assert.ok(at < steps && at <= seen + 3, `stopped after ${at} steps (frame at ${seen})`);
  });

  it('stream: an AbortSignal stops it, and the loop throws an AbortError', async () => {
    const c = new AbortController();
    const stream = streamDiff({ model, steps: 400, contextLength: 64, seed: 7, signal: c.signal });
    await assert.rejects(async () => {
      for await (const f of stream) if (f.step >= 1) c.abort();
    }, AbortError);
    assert.ok(stream.stepsDone < 400);
  });

  it('stream: bad options throw at once', () => {
    assert.throws(() => streamDiff({ model, steps: 0 }), HdlmArgumentError);
    assert.throws(() => streamDiff({ model, sampler: 'gammaSample' }), HdlmArgumentError);
    assert.throws(() => streamDiff({ model, onStep: () => {} }), HdlmArgumentError);
  });
});
