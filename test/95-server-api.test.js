'use strict';
// hdlm serve through the official `openai` client (and raw HTTP where the client has no say):
// completions, n > 1, several prompts, streaming that adds up to the non-streamed text for the
// same seed, stop / echo, errors in OpenAI's shape, the denoising stream, models, health,
// metrics, the page, and the API key.
const assert = require('assert');
const http = require('http');
const { OpenAI, BadRequestError, NotFoundError, AuthenticationError } = require('openai');
const { tokenizer } = require('../dist');
const { startServer, postJson, parseSse, metric, MODEL_ID } = require('./helpers/server');

const PROMPT = 'The city of';

/** Text per choice index assembled from a stream, with finish reasons and the usage chunk. */
async function collect(stream) {
  const texts = [];
  const finish = [];
  let usage = null;
  const objects = new Set();
  for await (const chunk of stream) {
    objects.add(chunk.object);
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices ?? []) {
      texts[c.index] = (texts[c.index] ?? '') + c.text;
      if (c.finish_reason) {
        assert.strictEqual(finish[c.index], undefined, `choice ${c.index} finished twice`);
        finish[c.index] = c.finish_reason;
      }
    }
  }
  return { texts, finish, usage, objects };
}

describe('server: OpenAI API (openai client)', function () {
  let ctx;
  let client;

  before(async () => {
    ctx = await startServer();
    client = new OpenAI({ baseURL: `${ctx.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });
  after(async () => ctx && ctx.stop());

  it('lists and retrieves the model', async () => {
    const list = await client.models.list();
    assert.deepStrictEqual(list.data.map((m) => m.id), [MODEL_ID]);
    const m = await client.models.retrieve(MODEL_ID);
    assert.strictEqual(m.object, 'model');
    assert.strictEqual(m.hdlm.context_length, 256);
    assert.strictEqual(m.hdlm.suffix_supported, true);
    await assert.rejects(client.models.retrieve('other'), (e) => e instanceof NotFoundError && e.code === 'model_not_found');
  });

  it('a completion: OpenAI shape, usage, same seed → same text, other seed → other text', async () => {
    const req = { model: MODEL_ID, prompt: PROMPT, max_tokens: 12, seed: 11, steps: 6 };
    const a = await client.completions.create(req);
    assert.match(a.id, /^cmpl-/);
    assert.strictEqual(a.object, 'text_completion');
    assert.strictEqual(a.model, MODEL_ID);
    assert.ok(Number.isInteger(a.created));
    assert.strictEqual(a.choices.length, 1);
    const c = a.choices[0];
    assert.strictEqual(c.index, 0);
    assert.strictEqual(c.logprobs, null);
    assert.ok(['stop', 'length'].includes(c.finish_reason));
    assert.ok(c.text.length > 0);
    assert.strictEqual(a.usage.prompt_tokens, tokenizer.encode(PROMPT).length);
    assert.strictEqual(a.usage.total_tokens, a.usage.prompt_tokens + a.usage.completion_tokens);
    if (c.finish_reason === 'length') assert.strictEqual(a.usage.completion_tokens, 12);
    const again = await client.completions.create(req);
    assert.strictEqual(again.choices[0].text, c.text);
    const other = await client.completions.create({ ...req, seed: 12 });
    assert.notStrictEqual(other.choices[0].text, c.text);
    // the prompt as token ids gives the same completion
    const ids = await client.completions.create({ ...req, prompt: tokenizer.encode(PROMPT) });
    assert.strictEqual(ids.choices[0].text, c.text);
  });

  it('n > 1 and a list of prompts: prompt-major choice indices, distinct samples', async () => {
    const r = await client.completions.create({ model: MODEL_ID, prompt: PROMPT, n: 3, max_tokens: 10, seed: 5 });
    assert.deepStrictEqual(r.choices.map((c) => c.index), [0, 1, 2]);
    assert.strictEqual(new Set(r.choices.map((c) => c.text)).size, 3);
    const list = await client.completions.create({ model: MODEL_ID, prompt: ['Once', [464, 3290, 286]], n: 2, max_tokens: 6, seed: 5 });
    assert.deepStrictEqual(list.choices.map((c) => c.index), [0, 1, 2, 3]);
    assert.strictEqual(list.usage.prompt_tokens, 1 + 3);
    // the second prompt's samples are what that prompt gives alone with the derived seed (seed + 1)
    const alone = await client.completions.create({ model: MODEL_ID, prompt: [464, 3290, 286], n: 2, max_tokens: 6, seed: 6 });
    assert.deepStrictEqual(list.choices.slice(2).map((c) => c.text), alone.choices.map((c) => c.text));
  });

  for (const [label, extra] of [
    ['acs', { alg: 'acs' }],
    ['original (text sent while sampling runs)', { alg: 'original', steps: 12 }],
    ['remdm', { alg: 'remdm' }],
    ['semi-autoregressive', { alg: 'original', block_size: 4, steps: 2 }],
  ]) {
    it(`streaming (${label}): the chunks add up to the non-streamed text for the same seed`, async () => {
      const req = { model: MODEL_ID, prompt: PROMPT, n: 2, max_tokens: 16, seed: 21, ...extra };
      const plain = await client.completions.create(req);
      const streamed = await collect(await client.completions.create({ ...req, stream: true, stream_options: { include_usage: true } }));
      assert.deepStrictEqual(streamed.texts, plain.choices.map((c) => c.text));
      assert.deepStrictEqual(streamed.finish, plain.choices.map((c) => c.finish_reason));
      assert.deepStrictEqual(streamed.usage, plain.usage);
      assert.deepStrictEqual([...streamed.objects], ['text_completion']);
    });
  }

  it('streaming with alg original sends text before the last step', async () => {
    const res = await fetch(`${ctx.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL_ID, prompt: PROMPT, max_tokens: 24, seed: 3, alg: 'original', steps: 24, stream: true, denoise: { every: 1 } }),
    });
    const events = parseSse(await res.text());
    const lastFrame = events.map((e) => e.event).lastIndexOf('denoise');
    const before = events.slice(0, lastFrame).filter((e) => e.event === null && e.data !== '[DONE]' && e.data.choices[0].text !== '');
    assert.ok(before.length > 0, 'no text chunk came before the final frame');
  });

  it('stop strings and echo, streamed and not', async () => {
    const base = { model: MODEL_ID, prompt: PROMPT, max_tokens: 24, seed: 8, alg: 'original', steps: 8 };
    const full = (await client.completions.create(base)).choices[0].text;
    const words = full.trim().split(/\s+/);
    assert.ok(words.length >= 3, full);
    const stop = ' ' + words[2];
    const cut = await client.completions.create({ ...base, stop: [stop, '@@never'] });
    assert.strictEqual(cut.choices[0].text, full.slice(0, full.indexOf(stop)));
    assert.strictEqual(cut.choices[0].finish_reason, 'stop');
    assert.ok(cut.usage.completion_tokens < 24);
    const streamed = await collect(await client.completions.create({ ...base, stop: [stop, '@@never'], stream: true }));
    assert.strictEqual(streamed.texts[0], cut.choices[0].text);
    assert.strictEqual(streamed.finish[0], 'stop');
    const echoed = await client.completions.create({ ...base, echo: true });
    assert.strictEqual(echoed.choices[0].text, PROMPT + full);
    const echoStream = await collect(await client.completions.create({ ...base, echo: true, stream: true }));
    assert.strictEqual(echoStream.texts[0], PROMPT + full);
  });

  it('suffix: the completion is infilled between prompt and suffix, as fullDiff with the suffix held fixed', async () => {
    const { smartModelLoader, fullDiff } = require('../dist');
    const { DEMO_MODEL, tempDir } = require('./helpers/reference');
    const req = { model: MODEL_ID, prompt: PROMPT, max_tokens: 8, steps: 6, seed: 23, alg: 'acs', temperature: 1 };
    const suffixes = [' in the year 1961, said the', ' and the river ran dry that summer.'];
    const served = [];
    for (const suffix of suffixes) served.push((await client.completions.create({ ...req, suffix })).choices[0].text);
    // the suffix is used: the same seed with another suffix gives another completion
    assert.notStrictEqual(served[0], served[1]);
    const cache = tempDir('serve-suffix');
    const { model } = await smartModelLoader(DEMO_MODEL, { device: 'cpu', torchscriptCacheDir: cache });
    try {
      const prompt = tokenizer.encode(PROMPT);
      for (let k = 0; k < suffixes.length; k++) {
        const suffix = tokenizer.encode(suffixes[k]);
        const at = prompt.length + req.max_tokens;
        const [row] = await fullDiff({
          model, prompt, fixed: [{ at, tokens: suffix }], contextLength: at + suffix.length, steps: 6, seed: 23n, alg: 'acs', temperature: 1,
        });
        assert.deepStrictEqual(row.slice(at), suffix, 'the suffix is held');
        const completion = row.slice(prompt.length, at);
        const eos = completion.indexOf(50256);
        assert.strictEqual(served[k], tokenizer.decode(eos >= 0 ? completion.slice(0, eos) : completion), `suffix ${k}`);
      }
    } finally {
      model.dispose();
    }
  });

  it('errors come in OpenAI shape and map to the client\'s error classes', async () => {
    const ok = { model: MODEL_ID, prompt: PROMPT, max_tokens: 4 };
    const expect400 = async (body, param, code, re) => {
      await assert.rejects(client.completions.create(body), (e) => {
        assert.ok(e instanceof BadRequestError, `${e.constructor.name}: ${e.message}`);
        assert.strictEqual(e.status, 400);
        assert.strictEqual(e.error.type, 'invalid_request_error');
        if (param !== undefined) assert.strictEqual(e.param, param);
        if (code !== undefined) assert.strictEqual(e.code, code);
        if (re) assert.match(e.message, re);
        return true;
      });
    };
    await expect400({ ...ok, bogus: 1 }, 'bogus', 'unknown_parameter', /Unrecognized request argument supplied: bogus/);
    await expect400({ ...ok, max_tokens: 300 }, 'max_tokens', 'context_length_exceeded', /maximum context length is 256 tokens/);
    await expect400({ ...ok, prompt: 'word '.repeat(300) }, 'prompt', 'context_length_exceeded');
    await expect400({ ...ok, temperature: 3 }, 'temperature', 'invalid_value');
    await expect400({ ...ok, alg: 'beam' }, 'alg', 'invalid_value', /one of original, acs/);
    await expect400({ ...ok, suffix: 'word '.repeat(260) }, 'prompt', 'context_length_exceeded', /prompt and suffix/);
    await expect400({ ...ok, suffix: 'word '.repeat(248), max_tokens: 8 }, 'max_tokens', 'context_length_exceeded', /in your suffix/);
    await expect400({ ...ok, suffix: 5 }, 'suffix', 'invalid_value', /must be a string/);
    await expect400({ ...ok, logprobs: 2 }, 'logprobs', 'unsupported_parameter');
    await expect400({ ...ok, denoise: true }, 'denoise', 'invalid_value', /stream/);
    await expect400({ ...ok, prompt: [464, 50257] }, 'prompt[1]', 'invalid_value');
    await assert.rejects(client.completions.create({ ...ok, model: 'gpt-3.5-turbo-instruct' }), (e) => e instanceof NotFoundError && e.code === 'model_not_found');
    // neutral values of unsupported fields pass
    const neutral = await client.completions.create({ ...ok, top_p: 1, presence_penalty: 0, frequency_penalty: 0, logit_bias: {}, best_of: 1, logprobs: null, user: 'u1', suffix: '' });
    assert.strictEqual(neutral.choices.length, 1);
    // the server still serves
    assert.strictEqual((await client.completions.create(ok)).choices.length, 1);
  });

  it('the denoising stream: frames every k steps with masked positions as the placeholder, then the OpenAI chunks', async () => {
    const { status, headers, body } = await postJson(`${ctx.url}/v1/completions`, {
      model: MODEL_ID, prompt: PROMPT, max_tokens: 16, seed: 2, steps: 9, n: 2, stream: true, denoise: { every: 2, placeholder: '_' },
    });
    assert.strictEqual(status, 200);
    assert.match(headers.get('content-type'), /^text\/event-stream/);
    const events = parseSse(body);
    const frames = events.filter((e) => e.event === 'denoise').map((e) => e.data);
    assert.deepStrictEqual(frames.map((f) => f.step), [2, 4, 6, 8, 9]);
    for (const f of frames) {
      assert.strictEqual(f.object, 'text_completion.denoise');
      assert.strictEqual(f.total, 9);
      assert.deepStrictEqual(f.samples.map((s) => s.index), [0, 1]);
      for (const s of f.samples) assert.strictEqual(s.text.split('_').length - 1 >= s.masked, true);
    }
    assert.ok(frames[0].samples.some((s) => s.masked > 0), 'the first frame has masked positions');
    assert.ok(frames[0].samples[0].masked >= frames[3].samples[0].masked || frames[0].samples[1].masked >= frames[3].samples[1].masked);
    assert.deepStrictEqual(frames[4].samples.map((s) => s.masked), [0, 0]);
    assert.strictEqual(events[events.length - 1].data, '[DONE]');
    // the final frame shows the whole sample; the completion text is its start (cut at EOS / stop)
    const texts = [];
    for (const e of events) if (e.event === null && e.data !== '[DONE]') for (const c of e.data.choices) texts[c.index] = (texts[c.index] ?? '') + c.text;
    texts.forEach((t, i) => assert.ok(frames[4].samples[i].text.startsWith(t), `${JSON.stringify(t)} / ${JSON.stringify(frames[4].samples[i].text)}`));
  });

  it('only streams that show steps watch them: a first frame per job with denoise, none for acs text alone', async () => {
    const frames = () => metric(ctx.url, 'hdlm_time_to_first_frame_seconds_count');
    const before = await frames();
    const plain = await postJson(`${ctx.url}/v1/completions`, { model: MODEL_ID, prompt: PROMPT, max_tokens: 8, seed: 4, steps: 7, alg: 'acs', stream: true });
    assert.strictEqual(plain.status, 200);
    assert.strictEqual(parseSse(plain.body).filter((e) => e.event === 'denoise').length, 0);
    assert.strictEqual(await frames(), before);
    const shown = await postJson(`${ctx.url}/v1/completions`, {
      model: MODEL_ID, prompt: [PROMPT, 'A'], max_tokens: 8, seed: 4, steps: 7, alg: 'acs', stream: true, denoise: { every: 3 },
    });
    assert.deepStrictEqual(parseSse(shown.body).filter((e) => e.event === 'denoise').map((e) => e.data.step).filter((s, i, a) => a.indexOf(s) === i), [3, 6, 7]);
    assert.strictEqual(await frames(), before + 2); // one per job: a job per prompt
  });

  it('GET /health, GET / (the page, with a CSP), unknown routes (404 in OpenAI shape)', async () => {
    const health = await fetch(`${ctx.url}/health`);
    assert.strictEqual(health.status, 200);
    assert.deepStrictEqual(await health.json(), { status: 'ready', model: MODEL_ID, auth_required: false, replicas: 1 });
    const page = await fetch(`${ctx.url}/`);
    assert.strictEqual(page.status, 200);
    assert.match(page.headers.get('content-type'), /^text\/html/);
    assert.match(page.headers.get('content-security-policy'), /script-src 'self'/);
    assert.match(await page.text(), /<script src="page.js"/);
    assert.strictEqual((await fetch(`${ctx.url}/page.js`)).status, 200);
    const missing = await fetch(`${ctx.url}/v1/chat/completions`, { method: 'POST' });
    assert.strictEqual(missing.status, 404);
    assert.strictEqual((await missing.json()).error.type, 'not_found_error');
  });

  it('bound to 127.0.0.1, it answers only requests addressed to this machine (DNS rebinding)', async () => {
    const get = (host) => new Promise((resolve, reject) => {
      const { port } = new URL(ctx.url);
      http.get({ host: '127.0.0.1', port, path: '/health', headers: { host } }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(body) }));
      }).on('error', reject);
    });
    for (const host of ['evil.example', 'evil.example:80', '127.0.0.1.nip.io', 'localhost.evil.example']) {
      const r = await get(host);
      assert.strictEqual(r.status, 403, JSON.stringify(host));
      assert.strictEqual(r.body.error.code, 'host_not_allowed');
    }
    for (const host of ['localhost', `127.0.0.1:${new URL(ctx.url).port}`, 'LOCALHOST:1', '[::1]:80']) assert.strictEqual((await get(host)).status, 200, host);
  });

  it('GET /metrics: Prometheus text with requests by status, queue depth, occupancy, step times, tokens', async () => {
    const text = await (await fetch(`${ctx.url}/metrics`)).text();
    for (const name of [
      'hdlm_http_requests_total{route="/v1/completions",status="200"}', 'hdlm_http_requests_total{route="/v1/completions",status="400"}',
      'hdlm_queue_depth', 'hdlm_batch_occupancy{replica="0",device="cpu"}', 'hdlm_step_seconds_count', 'hdlm_generated_tokens_total',
      'hdlm_tokens_per_second', 'hdlm_jobs_total{replica="0",device="cpu",outcome="ok"}', 'hdlm_time_to_first_frame_seconds_count',
    ]) {
      assert.ok(text.split('\n').some((l) => l.startsWith(name + ' ')), `${name} missing`);
    }
    assert.ok((await metric(ctx.url, 'hdlm_generated_tokens_total')) > 0);
    assert.ok((await metric(ctx.url, 'hdlm_step_seconds_count')) > 0);
    assert.strictEqual(await metric(ctx.url, 'hdlm_queue_depth'), 0);
  });
});

describe('server: API key', function () {
  let ctx;
  const KEY = 'test-key-123';
  before(async () => {
    ctx = await startServer({ apiKey: KEY });
  });
  after(async () => ctx && ctx.stop());

  it('401 without the key or with a wrong one on /v1/* and /metrics; /health and the page load without it', async () => {
    for (const [path, init] of [
      ['/v1/models', {}],
      ['/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL_ID }) }],
      ['/v1/nothing', {}],
      ['/metrics', {}],
    ]) {
      for (const auth of [undefined, 'Bearer wrong', 'Basic dGVzdA==', `Bearer ${KEY}x`]) {
        const res = await fetch(ctx.url + path, { ...init, headers: { ...(init.headers ?? {}), ...(auth ? { authorization: auth } : {}) } });
        assert.strictEqual(res.status, 401, `${path} with ${auth}`);
        assert.match(res.headers.get('www-authenticate'), /^Bearer/);
        const body = await res.json();
        assert.strictEqual(body.error.type, 'authentication_error');
        assert.ok(!JSON.stringify(body).includes(KEY));
      }
    }
    const health = await (await fetch(`${ctx.url}/health`)).json();
    assert.strictEqual(health.auth_required, true);
    assert.strictEqual((await fetch(`${ctx.url}/`)).status, 200);
    assert.strictEqual((await fetch(`${ctx.url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).status, 200);
  });

  it('the openai client with the key works; with a wrong key it raises AuthenticationError', async () => {
    const good = new OpenAI({ baseURL: `${ctx.url}/v1`, apiKey: KEY, maxRetries: 0 });
    const r = await good.completions.create({ model: MODEL_ID, prompt: PROMPT, max_tokens: 4 });
    assert.strictEqual(r.choices.length, 1);
    const bad = new OpenAI({ baseURL: `${ctx.url}/v1`, apiKey: 'nope', maxRetries: 0 });
    await assert.rejects(bad.completions.create({ model: MODEL_ID, prompt: PROMPT }), (e) => e instanceof AuthenticationError && e.code === 'invalid_api_key');
  });
});
