'use strict';
// hdlm serve, the parts that need no model: completion text cutting (EOS, stop strings), the
// text a stream may send early, denoise rendering, the scheduler (admission, routing, FIFO,
// queue limit, draining, cancellation), SSE frame coalescing under a slow client, and the
// command-line flags.
const assert = require('assert');
const http = require('http');
const { tokenizer, EOS_TOKEN_ID, MASK_TOKEN_ID, HdlmArgumentError, AbortError } = require('../dist');
const { completionText, FinalTextStream, renderDenoised } = require('../dist/server/text');
const { Scheduler } = require('../dist/server/scheduler');
const { Replica, expandDevices } = require('../dist/server/replicas');
const { SseStream } = require('../dist/server/sse');
const { parseServeArgs, resolveServeOptions, FLAG_OF } = require('../dist/server/options');
const { ApiError } = require('../dist/server/errors');

const rng = require('./helpers/stats').mulberry32; // seeded uniforms in [0, 1)

describe('server: completion text', () => {
  const ids = tokenizer.encode(' The cat sat on the mat. Then it slept.');

  it('no EOS, no stop: all tokens, finish_reason length', () => {
    const c = completionText(ids, []);
    assert.deepStrictEqual(c, { text: tokenizer.decode(ids), tokens: ids.length, finishReason: 'length' });
  });

  it('cuts before the first <|endoftext|> (finish_reason stop; later tokens ignored)', () => {
    const tokens = [...ids.slice(0, 4), EOS_TOKEN_ID, ...ids.slice(4), EOS_TOKEN_ID];
    const c = completionText(tokens, []);
    assert.deepStrictEqual(c, { text: tokenizer.decode(ids.slice(0, 4)), tokens: 4, finishReason: 'stop' });
  });

  it('cuts before the earliest stop string and counts the tokens the text is made of', () => {
    const c = completionText(ids, ['slept', ' on']);
    assert.strictEqual(c.text, ' The cat sat');
    assert.strictEqual(c.finishReason, 'stop');
    assert.strictEqual(c.tokens, tokenizer.encode(' The cat sat').length);
    // a stop string inside a token: the token that holds the cut is counted
    const d = completionText(ids, ['at on']);
    assert.strictEqual(d.text, ' The cat s');
    assert.strictEqual(d.tokens, 3);
  });

  it('a stop string after the EOS cut does not count', () => {
    const tokens = [...ids.slice(0, 3), EOS_TOKEN_ID, ...ids.slice(3)];
    assert.deepStrictEqual(completionText(tokens, ['mat']), { text: tokenizer.decode(ids.slice(0, 3)), tokens: 3, finishReason: 'stop' });
  });

  it('renders masked positions as the placeholder', () => {
    const tokens = [ids[0], MASK_TOKEN_ID, MASK_TOKEN_ID, ids[3], EOS_TOKEN_ID, MASK_TOKEN_ID];
    const r = renderDenoised(tokens, MASK_TOKEN_ID, '_');
    assert.strictEqual(r.masked, 3);
    assert.strictEqual(r.text, tokenizer.decode([ids[0]]) + '__' + tokenizer.decode([ids[3]]) + '_');
  });
});

describe('server: text a stream sends early (alg original)', () => {
  const texts = [
    ' The quick brown fox jumps over the lazy dog, twice. END of story',
    ' Café naïve — “quotes” and emoji 🎉🎉 mixed with 日本語 text, stop here.',
    ' a b c d e f g h i j k l m n o p',
  ];

  it('the deltas and the rest add up to the final text, for random unmasking orders, EOS and stop strings', () => {
    const random = rng(7);
    let early = 0;
    for (let trial = 0; trial < 300; trial++) {
      let tokens = tokenizer.encode(texts[trial % texts.length]);
      if (trial % 5 === 0) tokens = [...tokens.slice(0, 6), EOS_TOKEN_ID, ...tokens.slice(6)];
      const decoded = tokenizer.decode(tokens.filter((t) => t !== EOS_TOKEN_ID));
      const stop = [];
      if (trial % 3 !== 0) {
        // a stop string taken from the text (sometimes spanning tokens), plus one that never occurs
        const at = Math.floor(random() * decoded.length);
        stop.push(decoded.slice(at, at + 1 + Math.floor(random() * 6)) || 'x');
        stop.push('@@never@@');
      }
      const stream = new FinalTextStream(stop, MASK_TOKEN_ID);
      const current = tokens.map(() => MASK_TOKEN_ID);
      const order = tokens.map((_, i) => i).sort(() => random() - 0.5);
      let sent = '';
      for (const i of order) {
        current[i] = tokens[i];
        sent += stream.advance(current);
      }
      const final = completionText(tokens, stop);
      assert.ok(final.text.startsWith(sent), `trial ${trial}: sent ${JSON.stringify(sent)} is not a prefix of ${JSON.stringify(final.text)}`);
      if (sent.length > 0) early++;
      sent += stream.finish(final);
      assert.strictEqual(sent, final.text, `trial ${trial}`);
    }
    assert.ok(early > 100, `text was sent early in only ${early} of 300 trials`);
  });

  it('holds back a character cut between two tokens', () => {
    // '🎉' is split over several byte-level tokens
    const tokens = tokenizer.encode(' 🎉');
    assert.ok(tokens.length > 1);
    const stream = new FinalTextStream([], MASK_TOKEN_ID);
    const partial = tokens.map((t, i) => (i === tokens.length - 1 ? MASK_TOKEN_ID : t));
    const delta = stream.advance(partial);
    assert.ok(!delta.includes('\ufffd'), JSON.stringify(delta));
    assert.strictEqual(delta + stream.advance(tokens), ' 🎉');
  });
});

/** Fake replicas: the scheduler only reads index, device and its own counters. */
function replicas(count) {
  return Array.from({ length: count }, (_, i) => new Replica(i, 'cpu', { fake: i }));
}

/** A job that runs until released; records where it ran. */
function controllable() {
  const jobs = [];
  const make = (rows = 1, signal = new AbortController().signal) => {
    const job = { rows, signal, replica: null, release: null, started: false };
    job.run = (replica) => {
      job.replica = replica.index;
      job.started = true;
      return new Promise((resolve, reject) => {
        job.release = resolve;
        job.fail = reject;
        signal.addEventListener('abort', () => reject(new AbortError('aborted')), { once: true });
      });
    };
    jobs.push(job);
    return job;
  };
  return { jobs, make };
}

describe('server: scheduler', () => {
  it('routes each job to the least-loaded replica (rows, then jobs started) and runs up to maxBatchRows per replica', async () => {
    const s = new Scheduler(replicas(2), { maxQueue: 10, maxBatchRows: 4 });
    const { make } = controllable();
    const a = make(3);
    const b = make(1);
    const c = make(1);
    const d = make(2);
    const pa = s.submit([a])[0];
    const pb = s.submit([b])[0];
    const pc = s.submit([c])[0];
    assert.deepStrictEqual([a.replica, b.replica, c.replica], [0, 1, 1]);
    const pd = s.submit([d])[0];
    // replica 0 holds 3 rows, replica 1 holds 2: d (2 rows) fits only on replica 1
    assert.strictEqual(d.replica, 1);
    assert.deepStrictEqual(s.replicas.map((r) => r.rowsInFlight), [3, 4]);
    a.release('A');
    b.release('B');
    c.release('C');
    d.release('D');
    assert.deepStrictEqual(await Promise.all([pa, pb, pc, pd]), ['A', 'B', 'C', 'D']);
    await s.idle();
    assert.deepStrictEqual(s.replicas.map((r) => [r.rowsInFlight, r.jobsInFlight, r.jobsStarted]), [[0, 0, 1], [0, 0, 3]]);
  });

  it('alternates between idle replicas (fewest jobs started first)', async () => {
    const s = new Scheduler(replicas(3), { maxQueue: 0, maxBatchRows: 8 });
    const seen = [];
    for (let i = 0; i < 6; i++) await s.submit([{ rows: 1, signal: new AbortController().signal, run: async (r) => seen.push(r.index) }])[0];
    assert.deepStrictEqual(seen, [0, 1, 2, 0, 1, 2]);
  });

  it('queues in FIFO order, refuses with 429 + Retry-After beyond maxQueue, admits a request all or nothing', async () => {
    const s = new Scheduler(replicas(1), { maxQueue: 2, maxBatchRows: 1 });
    const { make } = controllable();
    const first = make();
    const p1 = s.submit([first])[0];
    const q1 = make();
    const q2 = make();
    const ps = s.submit([q1, q2]);
    assert.strictEqual(s.queueDepth, 2);
    assert.throws(() => s.submit([make()]), (e) => e instanceof ApiError && e.status === 429 && e.code === 'queue_full' && Number(e.headers['retry-after']) >= 1);
    assert.strictEqual(s.queueDepth, 2, 'a refused request leaves nothing queued');
    first.release(1);
    await p1;
    assert.ok(q1.started && !q2.started);
    q1.release(2);
    await ps[0];
    assert.ok(q2.started);
    q2.release(3);
    assert.strictEqual(await ps[1], 3);
    // a request of two jobs with room for only one is refused as a whole
    const s2 = new Scheduler(replicas(1), { maxQueue: 1, maxBatchRows: 1 });
    const busy = make();
    s2.submit([busy]);
    assert.throws(() => s2.submit([make(), make()]), (e) => e.status === 429);
    assert.strictEqual(s2.queueDepth, 0);
    busy.release();
  });

  it('a job larger than maxBatchRows runs alone', async () => {
    const s = new Scheduler(replicas(1), { maxQueue: 4, maxBatchRows: 2 });
    const { make } = controllable();
    const big = make(5);
    const small = make(1);
    const pb = s.submit([big])[0];
    const ps = s.submit([small])[0];
    assert.ok(big.started && !small.started);
    big.release();
    await pb;
    assert.ok(small.started);
    small.release();
    await ps;
  });

  it('a job cancelled while queued leaves the queue (AbortError), the next one moves up', async () => {
    const s = new Scheduler(replicas(1), { maxQueue: 4, maxBatchRows: 1 });
    const { make } = controllable();
    const running = make();
    const pr = s.submit([running])[0];
    const ac = new AbortController();
    const cancelled = make(1, ac.signal);
    const next = make();
    const [pc] = s.submit([cancelled]);
    const [pn] = s.submit([next]);
    ac.abort();
    await assert.rejects(pc, (e) => e instanceof AbortError);
    assert.strictEqual(s.queueDepth, 1);
    running.release();
    await pr;
    assert.ok(next.started && !cancelled.started);
    next.release();
    await pn;
  });

  it('draining refuses new jobs with 503 and resolves once admitted jobs end', async () => {
    const s = new Scheduler(replicas(1), { maxQueue: 4, maxBatchRows: 1 });
    const { make } = controllable();
    const a = make();
    const b = make();
    const pa = s.submit([a])[0];
    const pb = s.submit([b])[0];
    let drained = false;
    const d = s.drain().then(() => (drained = true));
    assert.throws(() => s.submit([make()]), (e) => e.status === 503 && Number(e.headers['retry-after']) >= 1);
    a.release();
    await pa;
    await new Promise((r) => setImmediate(r));
    assert.strictEqual(drained, false, 'the queued job still had to run');
    b.release();
    await pb;
    await d;
    assert.strictEqual(drained, true);
  });

  it('a job that throws synchronously or rejects frees its replica', async () => {
    const s = new Scheduler(replicas(1), { maxQueue: 4, maxBatchRows: 1 });
    const signal = new AbortController().signal;
    await assert.rejects(s.submit([{ rows: 1, signal, run: () => { throw new Error('sync'); } }])[0], /sync/);
    await assert.rejects(s.submit([{ rows: 1, signal, run: async () => { throw new Error('async'); } }])[0], /async/);
    assert.strictEqual(await s.submit([{ rows: 1, signal, run: async () => 'ok' }])[0], 'ok');
    await s.idle();
    assert.strictEqual(s.replicas[0].rowsInFlight, 0);
  });
});

describe('server: SSE frames under a slow client', () => {
  it('coalesces frames while the socket is backed up (latest wins), counts the skipped ones, never drops messages', async () => {
    let stream;
    let offered = 0;
    const server = http.createServer((req, res) => {
      stream = new SseStream(res);
      const big = 'x'.repeat(64 * 1024);
      for (let i = 1; i <= 200; i++) {
        offered++;
        stream.offer('job0', 'denoise', () => ({ step: i, pad: big }));
        if (i % 50 === 0) stream.send({ message: i });
      }
      stream.flush('job0');
      stream.done();
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    try {
      const res = await fetch(`http://127.0.0.1:${server.address().port}/`);
      const reader = res.body.getReader();
      // the client reads nothing for a while: the server's writes back up
      await new Promise((r) => setTimeout(r, 200));
      let text = '';
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
      const events = text.split('\n\n').filter(Boolean);
      const frames = events.filter((e) => e.startsWith('event: denoise')).map((e) => JSON.parse(e.split('data: ')[1]).step);
      const messages = events.filter((e) => e.startsWith('data: {"message"')).map((e) => JSON.parse(e.slice(6)).message);
      assert.deepStrictEqual(messages, [50, 100, 150, 200]);
      assert.strictEqual(events[events.length - 1], 'data: [DONE]');
      assert.strictEqual(frames[frames.length - 1], 200, 'the latest frame arrives');
      assert.ok(frames.length < 200, `${frames.length} frames written of 200: nothing was coalesced`);
      assert.strictEqual(stream.skipped + stream.framesSent, offered);
      assert.strictEqual(stream.framesSent, frames.length);
      for (let i = 1; i < frames.length; i++) assert.ok(frames[i] > frames[i - 1], 'frames stay in step order');
    } finally {
      server.close();
    }
  });
});

describe('server: options and flags', () => {
  const flagged = (argv) => resolveServeOptions(parseServeArgs(argv).options, (n) => FLAG_OF[n] ?? n);

  it('defaults: 127.0.0.1:8080, no key, the demo model', () => {
    const o = resolveServeOptions({});
    assert.strictEqual(o.host, '127.0.0.1');
    assert.strictEqual(o.port, 8080);
    assert.strictEqual(o.apiKey, null);
    assert.strictEqual(o.modelName, 'brown-epsilon');
    assert.deepStrictEqual(o.devices.length, 1);
  });

  it('parses every flag', () => {
    const o = flagged([
      '--model', 'org/some-model', '--host', '0.0.0.0', '--port', '0', '--device', 'cpu,cpu', '--api-key', 'k1', '--max-queue', '3',
      '--max-batch', '5', '--max-body', '64k', '--max-prompts', '2', '--steps', '7', '--max-steps', '9', '--alg', 'remdm', '--max-tokens', '4',
      '--drain-timeout', '2', '--threads', '1', '--no-cache', '--log-requests',
    ]);
    assert.strictEqual(o.model, 'org/some-model');
    assert.strictEqual(o.modelName, 'org/some-model');
    assert.deepStrictEqual(o.devices, ['cpu', 'cpu']);
    assert.deepStrictEqual(
      [o.host, o.port, o.apiKey, o.maxQueue, o.maxBatch, o.maxBodyBytes, o.maxPrompts, o.steps, o.maxSteps, o.alg, o.maxTokens, o.drainTimeoutMs, o.threads, o.useCache, o.logRequests],
      ['0.0.0.0', 0, 'k1', 3, 5, 65536, 2, 7, 9, 'remdm', 4, 2000, 1, false, true],
    );
    assert.strictEqual(flagged(['--max-body', '2m']).maxBodyBytes, 2 << 20);
    assert.strictEqual(flagged(['--model', '/some/dir/my-model/']).modelName, 'my-model');
  });

  it('bad flags are clear HdlmArgumentErrors naming the flag', () => {
    const cases = [
      [['--port', 'eighty'], /--port/],
      [['--port', '70000'], /integer between 0 and 65535 for --port/],
      [['--device', 'gpu'], /--device but received "gpu"/],
      [['--device', 'cpu,,cpu'], /--device/],
      [['--alg', 'fast'], /one of 'original'.* for --alg/],
      [['--max-body', 'lots'], /--max-body/],
      [['--steps', '0'], /--steps/],
      [['--steps', '50', '--max-steps', '10'], /between 1 and 10 for --steps/],
      [['--api-key', 'has space'], /--api-key but received a string that is not one/],
      [['--bogus'], /unknown option '--bogus' for 'hdlm serve'/],
      [['--port'], /option '--port' needs a value/],
      [['--offline=yes'], /does not take a value/],
      [['stray'], /unexpected argument "stray"/],
      [['--api-key', 'a', '--api-key-file', 'f'], /not both/],
      [['--drain-timeout', '100000'], /--drain-timeout/],
    ];
    for (const [argv, re] of cases) {
      assert.throws(() => flagged(argv), (e) => e instanceof HdlmArgumentError && e.code === 'HDLM_INVALID_ARGUMENT' && re.test(e.message), argv.join(' '));
    }
  });

  it('the key never appears in an error message', () => {
    assert.throws(() => resolveServeOptions({ apiKey: 'secret value' }), (e) => !e.message.includes('secret'));
  });

  it('serve() options are checked too', () => {
    assert.throws(() => resolveServeOptions({ prot: 1 }), /Unknown option prot for serve/);
    assert.throws(() => resolveServeOptions({ maxQueue: -1 }), /maxQueue/);
    assert.throws(() => resolveServeOptions({ device: 'cuda:x' }), /device/);
    assert.deepStrictEqual(expandDevices(['cpu', 'cpu', 'cpu']), ['cpu', 'cpu', 'cpu']);
    assert.deepStrictEqual(expandDevices('cuda:0, cuda:1'), ['cuda:0', 'cuda:1']);
  });
});

describe('server: packaging', function () {
  it('the page files and dist/server ship in the npm package, and hdlm/server resolves through "exports"', function () {
    const { spawnSync } = require('child_process');
    const path = require('path');
    const root = path.join(__dirname, '..');
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', timeout: 120000 });
    assert.strictEqual(r.status, 0, r.stderr);
    const files = JSON.parse(r.stdout)[0].files.map((f) => f.path);
    for (const f of ['lib/server/page/index.html', 'lib/server/page/page.js', 'lib/server/page/page.css', 'dist/server/index.js', 'dist/server/index.d.ts']) {
      assert.ok(files.includes(f), `${f} is shipped`);
    }
    assert.ok(!files.some((f) => /^lib\/.*\.ts$/.test(f)), 'no TypeScript sources');
    // the page is found from dist/server (the same layout in a checkout and in the package)
    const { pageDir } = require('../dist/server/app');
    assert.strictEqual(pageDir(), path.join(root, 'lib', 'server', 'page'));
    const self = spawnSync(process.execPath, ['-e', "process.stdout.write(typeof require('hdlm/server').serve)"], { cwd: root, encoding: 'utf8' });
    assert.strictEqual(self.stdout, 'function', self.stderr);
  });
});
