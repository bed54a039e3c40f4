'use strict';
// Malformed requests: wrong types, out-of-range and huge numbers, unknown fields, invalid JSON,
// wrong content types, oversized bodies. Each gets a 4xx JSON error in OpenAI's shape with the
// right status; good requests sent at the same time are not affected; the server keeps serving.
const assert = require('assert');
const net = require('net');
const { startServer, postJson, MODEL_ID } = require('./helpers/server');

const MAX_BODY = 16 * 1024;
const OK = { model: MODEL_ID, prompt: 'The city of', max_tokens: 4, steps: 2 };

/** [label, body (object → JSON, string → raw), expected status, expected param (optional)] */
function malformed() {
  const cases = [];
  const field = (name, value, param = name, status = 400) => cases.push([`${name} = ${JSON.stringify(value)?.slice(0, 40)}`, { ...OK, [name]: value }, status, param]);
  // invalid JSON and non-object bodies
  for (const raw of ['{', '{"model":', 'nul', '[1,2', '{"a":1,}', "{'model':'x'}", '{"model": NaN}', '{"model": Infinity}', '{"prompt": "\\x"}', '\u0000', '{"model": "a" "b"}']) {
    cases.push([`invalid JSON ${JSON.stringify(raw)}`, raw, 400, null]);
  }
  for (const raw of ['null', '[]', '"text"', '42', 'true', '[{"model":"x"}]']) cases.push([`JSON ${raw}`, raw, 400, null]);
  // keys that could poison a prototype are refused as unknown fields
  cases.push(['__proto__ key', `{"model":"${MODEL_ID}","__proto__":{"x":1}}`, 400, '__proto__']);
  cases.push(['constructor.prototype key', `{"model":"${MODEL_ID}","constructor":{"prototype":{"x":1}}}`, 400, 'constructor']);
  // model
  cases.push(['no model', { prompt: 'x' }, 400, 'model']);
  field('model', 1);
  field('model', ['x']);
  field('model', 'Brown-Epsilon', 'model', 404);
  field('model', '', 'model', 404);
  // prompt
  field('prompt', 5);
  field('prompt', {});
  field('prompt', []);
  field('prompt', [1.5], 'prompt[0]');
  field('prompt', [-1], 'prompt[0]');
  field('prompt', [50257], 'prompt[0]');
  field('prompt', [1e20], 'prompt[0]');
  field('prompt', [464, '2003'], 'prompt[1]');
  field('prompt', [['a']], 'prompt[0][0]');
  field('prompt', [true], 'prompt[0]');
  field('prompt', [null], 'prompt[0]');
  field('prompt', Array.from({ length: 17 }, () => 'x'));
  field('prompt', 'word '.repeat(400));
  field('prompt', nested(2000), 'prompt[0][0]');
  // numbers: wrong types, ranges, huge values
  for (const v of ['10', 0, -1, 1.5, 1e308, true, 2 ** 53 + 2]) field('max_tokens', v);
  for (const v of ['1', -0.1, 2.1, 1e308, {}]) field('temperature', v);
  for (const v of [0, 33, 1.5, '2', 1e308]) field('n', v);
  for (const v of [-1, 1.5, 2 ** 60, '7', 1e308]) field('seed', v);
  for (const v of [0, 1e9, '10', 2.5]) field('steps', v);
  for (const v of [5, 'beam', '']) field('alg', v);
  for (const v of [-1, 2, 'x']) field('eta', v);
  for (const v of [0, 1e6, 'big']) field('block_size', v);
  cases.push(['block_size with semi false', { ...OK, semi: false, block_size: 4 }, 400, 'block_size']);
  field('semi', 'yes');
  field('stream', 'true');
  field('stream', 1);
  field('echo', 'no');
  // stop
  field('stop', 5);
  field('stop', [1], 'stop[0]');
  field('stop', ['a', 'b', 'c', 'd', 'e']);
  field('stop', [''], 'stop[0]');
  field('stop', ['x'.repeat(300)], 'stop[0]');
  // the rest of OpenAI's fields
  field('user', 5);
  field('user', 'x'.repeat(300));
  field('suffix', 5);
  field('suffix', 'word '.repeat(300), 'prompt'); // prompt and suffix leave no room
  field('logprobs', 10);
  field('logprobs', 'x');
  field('best_of', 3);
  field('logit_bias', { 50256: -100 });
  field('logit_bias', 5);
  field('top_p', 0.5);
  field('top_p', 2);
  field('presence_penalty', 5);
  field('frequency_penalty', 0.5);
  cases.push(['stream_options without stream', { ...OK, stream_options: { include_usage: true } }, 400, 'stream_options']);
  cases.push(['stream_options not an object', { ...OK, stream: true, stream_options: 5 }, 400, 'stream_options']);
  cases.push(['stream_options.include_usage = 1', { ...OK, stream: true, stream_options: { include_usage: 1 } }, 400, 'stream_options.include_usage']);
  cases.push(['stream_options.x', { ...OK, stream: true, stream_options: { x: 1 } }, 400, 'stream_options.x']);
  // the denoise extension
  cases.push(['denoise = 5', { ...OK, stream: true, denoise: 5 }, 400, 'denoise']);
  cases.push(['denoise.every = 0', { ...OK, stream: true, denoise: { every: 0 } }, 400, 'denoise.every']);
  cases.push(['denoise.foo', { ...OK, stream: true, denoise: { foo: 1 } }, 400, 'denoise.foo']);
  cases.push(['denoise.placeholder = 5', { ...OK, stream: true, denoise: { placeholder: 5 } }, 400, 'denoise.placeholder']);
  // unknown fields
  for (const key of ['foo', 'Model', 'max-tokens', 'messages', 'top_k']) field(key, 1, key);
  // too many steps in total (semi: steps × blocks)
  cases.push(['steps × blocks over the limit', { ...OK, block_size: 1, steps: 4000, max_tokens: 8 }, 400, 'steps']);
  return cases;
}

function nested(depth) {
  let v = [1];
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

function assertApiError(res, status, param, label) {
  assert.strictEqual(res.status, status, `${label}: ${JSON.stringify(res.body).slice(0, 300)}`);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/, label);
  const e = res.body && res.body.error;
  assert.ok(e && typeof e === 'object', `${label}: ${JSON.stringify(res.body).slice(0, 200)}`);
  assert.deepStrictEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type'], label);
  assert.strictEqual(typeof e.message, 'string', label);
  assert.ok(e.message.length > 0 && e.message.length < 1000, label);
  assert.strictEqual(typeof e.type, 'string', label);
  if (param !== undefined) assert.strictEqual(e.param, param, `${label}: ${e.message}`);
}

/** A raw HTTP exchange (for what fetch cannot send); resolves to the response text ('' if none). */
function raw(url, text) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => socket.end(text));
    let out = '';
    socket.on('data', (d) => (out += d));
    socket.on('error', reject);
    socket.on('close', () => resolve(out));
  });
}

describe('server: malformed requests', function () {
  let ctx;
  const url = () => `${ctx.url}/v1/completions`;
  before(async () => {
    ctx = await startServer({ maxBodyBytes: MAX_BODY });
  });
  after(async () => ctx && ctx.stop());

  const cases = malformed();

  it(`has at least 50 malformed bodies (${cases.length})`, () => {
    assert.ok(cases.length >= 50);
  });

  it('each gets a 4xx JSON error in OpenAI shape with the right status and param', async () => {
    for (const [label, body, status, param] of cases) {
      assertApiError(await postJson(url(), body), status, param, label);
    }
  });

  it('wrong content types (415), an empty body (400), oversized bodies (413)', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml']) {
      const res = await fetch(url(), { method: 'POST', headers: { 'content-type': type }, body: JSON.stringify(OK) });
      assertApiError({ status: res.status, headers: res.headers, body: await res.json() }, 415, null, type);
    }
    const empty = await fetch(url(), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '' });
    assertApiError({ status: empty.status, headers: empty.headers, body: await empty.json() }, 400, null, 'empty body');
    for (const size of [MAX_BODY + 1, 10 * MAX_BODY, 4 << 20]) {
      const big = JSON.stringify({ ...OK, prompt: 'x'.repeat(size) });
      assertApiError(await postJson(url(), big), 413, null, `${size} bytes`);
    }
    // a body that says it is smaller or larger than it is, then the connection ends
    const short = await raw(ctx.url, `POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"model":`);
    assert.ok(short === '' || /^HTTP\/1\.1 4\d\d/.test(short), short.slice(0, 100));
    const oversizedChunked = await raw(
      ctx.url,
      `POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
        `${(MAX_BODY + 10).toString(16)}\r\n${'x'.repeat(MAX_BODY + 10)}\r\n0\r\n\r\n`,
    );
    assert.match(oversizedChunked, /^HTTP\/1\.1 413/);
    const garbage = await raw(ctx.url, 'NOT HTTP AT ALL\r\n\r\n');
    assert.match(garbage, /^HTTP\/1\.1 400/);
  });

  it('good requests sent together with all the bad ones succeed with their usual result; the server keeps serving', async () => {
    const good = { ...OK, seed: 9, max_tokens: 6 };
    const expected = (await postJson(url(), good)).body.choices[0].text;
    const all = await Promise.all([
      ...cases.map(([, body]) => postJson(url(), body)),
      ...Array.from({ length: 6 }, () => postJson(url(), good)),
    ]);
    cases.forEach(([label, , status], i) => assert.strictEqual(all[i].status, status, label));
    for (const res of all.slice(cases.length)) {
      assert.strictEqual(res.status, 200);
      assert.strictEqual(res.body.choices[0].text, expected);
    }
    const health = await fetch(`${ctx.url}/health`);
    assert.strictEqual(health.status, 200);
    assert.deepStrictEqual(ctx.server.load, { queued: 0, running: 0 });
  });
});
