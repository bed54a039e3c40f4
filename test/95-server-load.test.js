'use strict';
// hdlm serve under load: 32 concurrent clients get what each gets alone; a request that joins
// while another runs; clients that disconnect mid-stream (or while queued) stop their sampling;
// a full queue answers 429 with Retry-After; two CPU replicas share the work (least-loaded).
const assert = require('assert');
const { OpenAI, RateLimitError } = require('openai');
const { startServer, postJson, sseReader, metric, waitFor, MODEL_ID } = require('./helpers/server');

const PROMPT = 'The city of';
const LONG = { model: MODEL_ID, prompt: PROMPT, max_tokens: 8, steps: 4000 };

function openStream(url, body, signal) {
  return fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
}

/** Starts a never-ending stream and resolves once its first denoise frame arrived. */
async function runningStream(url, body = {}) {
  const controller = new AbortController();
  const res = await openStream(url, { ...LONG, denoise: { every: 1 }, ...body }, controller.signal);
  assert.strictEqual(res.status, 200);
  const reader = sseReader(res);
  const first = await reader.next();
  assert.strictEqual(first.event, 'denoise');
  return { reader, first, abort: () => controller.abort() };
}

describe('server: concurrency', function () {
  let ctx;
  let client;
  before(async () => {
    ctx = await startServer();
    client = new OpenAI({ baseURL: `${ctx.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
  });
  after(async () => ctx && ctx.stop());

  const request = (k) => ({
    model: MODEL_ID, prompt: k % 4 === 0 ? [464, 3290] : `Story ${k}:`, max_tokens: 4 + (k % 5), seed: 100 + k, steps: 3 + (k % 3),
    n: 1 + (k % 2), alg: ['acs', 'original', 'remask', 'remdm'][k % 4], temperature: k % 7 === 0 ? 0 : 1,
  });

  async function run(k) {
    if (k % 3 !== 0) return (await client.completions.create(request(k))).choices.map((c) => c.text);
    const texts = [];
    for await (const chunk of await client.completions.create({ ...request(k), stream: true })) {
      for (const c of chunk.choices) texts[c.index] = (texts[c.index] ?? '') + c.text;
    }
    return texts;
  }

  it('32 concurrent clients (streamed and not) each get exactly what the same request gets alone', async () => {
    const concurrent = await Promise.all(Array.from({ length: 32 }, (_, k) => run(k)));
    const peak = await metric(ctx.url, 'hdlm_http_requests_total{route="/v1/completions",status="200"}');
    assert.strictEqual(peak, 32);
    for (let k = 0; k < 32; k++) assert.deepStrictEqual(await run(k), concurrent[k], `request ${k}`);
    assert.deepStrictEqual(ctx.server.load, { queued: 0, running: 0 });
  });

  it('a request that arrives while another runs is admitted and gets its own result', async () => {
    const alone = await client.completions.create(request(1));
    const long = await runningStream(ctx.url);
    const joined = await client.completions.create(request(1));
    assert.deepStrictEqual(joined.choices, alone.choices);
    long.abort();
    await waitFor(() => ctx.server.load.running === 0, 20000, 'the long job to stop');
  });

  it('a client that disconnects mid-stream stops its sampling at the next step; the server keeps serving', async () => {
    const aborted = () => metric(ctx.url, 'hdlm_jobs_total{replica="0",device="cpu",outcome="aborted"}');
    const before = (await aborted()) ?? 0;
    const long = await runningStream(ctx.url);
    let step = long.first.data.step;
    for (let i = 0; i < 3; i++) step = (await long.reader.next()).data.step;
    assert.ok(step >= 4 && step < 4000);
    long.abort();
    await waitFor(async () => (await aborted()) === before + 1, 20000, 'the job to be aborted');
    assert.deepStrictEqual(ctx.server.load, { queued: 0, running: 0 });
    assert.strictEqual(await metric(ctx.url, 'hdlm_batch_occupancy{replica="0",device="cpu"}'), 0);
    const after = await client.completions.create(request(2));
    assert.strictEqual(after.choices.length, 1);
  });

  it('a client that goes away before a non-streamed answer stops its sampling too', async () => {
    const aborted = () => metric(ctx.url, 'hdlm_jobs_total{replica="0",device="cpu",outcome="aborted"}');
    const before = (await aborted()) ?? 0;
    const controller = new AbortController();
    const pending = fetch(`${ctx.url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(LONG), signal: controller.signal,
    }).catch((e) => e);
    await waitFor(async () => (await metric(ctx.url, 'hdlm_step_seconds_count')) > 0 && ctx.server.load.running === 1, 20000, 'the job to run');
    controller.abort();
    assert.strictEqual((await pending).name, 'AbortError');
    await waitFor(async () => (await aborted()) === before + 1, 20000, 'the job to be aborted');
    assert.deepStrictEqual(ctx.server.load, { queued: 0, running: 0 });
  });
});

describe('server: a full queue', function () {
  let ctx;
  before(async () => {
    ctx = await startServer({ maxQueue: 1, maxBatch: 1 });
  });
  after(async () => ctx && ctx.stop());

  it('429 with Retry-After once the queue is full; a queued client that leaves frees its place; then it serves again', async () => {
    const running = await runningStream(ctx.url);
    const queuedController = new AbortController();
    const queued = fetch(`${ctx.url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...LONG, steps: 2 }), signal: queuedController.signal,
    }).catch((e) => e);
    await waitFor(() => ctx.server.load.queued === 1, 20000, 'a queued job');
    assert.strictEqual(await metric(ctx.url, 'hdlm_queue_depth'), 1);

    const refused = await postJson(`${ctx.url}/v1/completions`, { model: MODEL_ID, prompt: PROMPT, max_tokens: 2 });
    assert.strictEqual(refused.status, 429);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    assert.deepStrictEqual(Object.keys(refused.body.error).sort(), ['code', 'message', 'param', 'type']);
    assert.strictEqual(refused.body.error.type, 'rate_limit_error');
    assert.strictEqual(refused.body.error.code, 'queue_full');
    // a streamed request is refused the same way, before any event
    const refusedStream = await openStream(ctx.url, { model: MODEL_ID, prompt: PROMPT, max_tokens: 2 });
    assert.strictEqual(refusedStream.status, 429);
    assert.match(refusedStream.headers.get('content-type'), /application\/json/);
    await refusedStream.text();
    // the openai client raises RateLimitError (no retries: maxRetries 0)
    const client = new OpenAI({ baseURL: `${ctx.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    await assert.rejects(client.completions.create({ model: MODEL_ID, prompt: PROMPT, max_tokens: 2 }), (e) => e instanceof RateLimitError);

    queuedController.abort();
    assert.strictEqual((await queued).name, 'AbortError');
    await waitFor(() => ctx.server.load.queued === 0, 20000, 'the queue to empty');
    running.abort();
    await waitFor(() => ctx.server.load.running === 0, 20000, 'the running job to stop');
    const ok = await postJson(`${ctx.url}/v1/completions`, { model: MODEL_ID, prompt: PROMPT, max_tokens: 2 });
    assert.strictEqual(ok.status, 200);
    assert.strictEqual(await metric(ctx.url, 'hdlm_http_requests_total{route="/v1/completions",status="429"}'), 3);
  });
});

describe('server: many clients that go away', function () {
  let ctx;
  before(async () => {
    ctx = await startServer({ maxQueue: 64, maxBatch: 2 });
  });
  after(async () => ctx && ctx.stop());

  it('60 clients leaving at random moments (queued, mid-stream, before an answer) leave nothing behind', async () => {
    const random = (() => {
      let a = 12345;
      return () => ((a = (a * 1103515245 + 12345) % 2147483648) / 2147483648);
    })();
    const outcomes = await Promise.all(Array.from({ length: 60 }, async (_, i) => {
      const controller = new AbortController();
      const stream = i % 2 === 0;
      setTimeout(() => controller.abort(), 20 + Math.floor(random() * 600));
      try {
        const res = await fetch(`${ctx.url}/v1/completions`, {
          method: 'POST', headers: { 'content-type': 'application/json' }, signal: controller.signal,
          body: JSON.stringify({ ...LONG, steps: 20 + (i % 7) * 40, seed: i, ...(stream ? { stream: true, denoise: { every: 3 } } : {}) }),
        });
        await res.text();
        return res.status;
      } catch (e) {
        assert.strictEqual(e.name, 'AbortError');
        return 'left';
      }
    }));
    assert.ok(outcomes.filter((o) => o === 'left').length >= 30, outcomes.join());
    await waitFor(() => ctx.server.load.queued === 0 && ctx.server.load.running === 0, 30000, 'every job to end');
    await waitFor(() => new Promise((resolve) => ctx.server.app.server.getConnections((e, n) => resolve(!e && n === 0))), 10000, 'the connections to close');
    const ended = ['ok', 'aborted', 'error'].map((o) => metric(ctx.url, `hdlm_jobs_total{replica="0",device="cpu",outcome="${o}"}`));
    const [ok, aborted, failed] = (await Promise.all(ended)).map((v) => v ?? 0);
    assert.strictEqual(failed, 0);
    // every job that started ended as ok or aborted; the others left the queue before starting
    const started = ctx.server.replicas.reduce((sum, r) => sum + r.jobs_started, 0);
    assert.strictEqual(ok + aborted, started);
    assert.ok(started < 60 || aborted > 0);
    assert.strictEqual(await metric(ctx.url, 'hdlm_batch_occupancy{replica="0",device="cpu"}'), 0);
    const after = await postJson(`${ctx.url}/v1/completions`, { model: MODEL_ID, prompt: PROMPT, max_tokens: 2, steps: 2 });
    assert.strictEqual(after.status, 200);
  });
});

describe('server: two CPU replicas', function () {
  let ctx;
  before(async () => {
    ctx = await startServer({ device: 'cpu,cpu', maxBatch: 1, maxQueue: 4 });
  });
  after(async () => ctx && ctx.stop());

  const occupancy = async (i) => metric(ctx.url, `hdlm_batch_occupancy{replica="${i}",device="cpu"}`);
  const jobs = async (i) => (await metric(ctx.url, `hdlm_jobs_total{replica="${i}",device="cpu",outcome="ok"}`)) ?? 0;

  it('each request goes to the least-loaded replica; with both busy, the next one waits', async () => {
    assert.deepStrictEqual(await (await fetch(`${ctx.url}/v1/models`)).json().then((l) => l.data[0].hdlm.devices), ['cpu', 'cpu']);
    const a = await runningStream(ctx.url);
    assert.deepStrictEqual([await occupancy(0), await occupancy(1)], [1, 0]);
    const b = await runningStream(ctx.url);
    assert.deepStrictEqual([await occupancy(0), await occupancy(1)], [1, 1]);
    // both replicas step concurrently
    const stepA = (await a.reader.next()).data.step;
    const stepB = (await b.reader.next()).data.step;
    assert.ok(stepA > 1 && stepB > 1);
    const third = postJson(`${ctx.url}/v1/completions`, { model: MODEL_ID, prompt: PROMPT, max_tokens: 2, steps: 2 });
    await waitFor(() => ctx.server.load.queued === 1, 20000, 'the third request to queue');
    b.abort();
    // replica 1 frees up and takes the queued request
    assert.strictEqual((await third).status, 200);
    assert.strictEqual(await jobs(1), 1);
    a.abort();
    await waitFor(() => ctx.server.load.running === 0, 20000, 'the jobs to stop');
  });

  it('sequential requests spread over idle replicas (fewest jobs started first)', async () => {
    const before = [await jobs(0), await jobs(1)];
    for (let i = 0; i < 4; i++) {
      const r = await postJson(`${ctx.url}/v1/completions`, { model: MODEL_ID, prompt: PROMPT, max_tokens: 2, steps: 2, seed: i });
      assert.strictEqual(r.status, 200);
    }
    const after = [await jobs(0), await jobs(1)];
    const started = [after[0] - before[0], after[1] - before[1]];
    assert.strictEqual(started[0] + started[1], 4);
    assert.ok(started[0] >= 1 && started[1] >= 1, `jobs per replica: ${started}`);
  });

  it('both replicas give the same tokens for the same seed', async () => {
    const body = { model: MODEL_ID, prompt: PROMPT, max_tokens: 8, steps: 4, seed: 77 };
    const before = [await jobs(0), await jobs(1)];
    const [r1, r2] = await Promise.all([postJson(`${ctx.url}/v1/completions`, body), postJson(`${ctx.url}/v1/completions`, body)]);
    assert.deepStrictEqual([(await jobs(0)) - before[0], (await jobs(1)) - before[1]], [1, 1], 'one request on each replica');
    assert.strictEqual(r1.body.choices[0].text, r2.body.choices[0].text);
  });
});
