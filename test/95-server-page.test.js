'use strict';
// The page at / in a real browser: Debian's headless Chromium driven by puppeteer-core (no
// browser download; scripts/install-system-deps.sh installs it). The page asks for the API key,
// streams a completion, draws intermediate frames with masked positions, ends on the same text
// the API gives for the same seed, and its Stop button aborts the sampling. Screenshots go to
// test/.tmp/server-page/.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const puppeteer = require('puppeteer-core');
const { ROOT } = require('./helpers/reference');
const { startServer, postJson, waitFor, MODEL_ID } = require('./helpers/server');

const CHROMIUM = process.env.HDLM_CHROMIUM || '/usr/bin/chromium';
const OUT = path.join(ROOT, 'test', '.tmp', 'server-page');
const KEY = 'page-key-42';
const PROMPT = 'The history of the city';

describe('server: the page in headless Chromium', function () {
  let ctx;
  let browser;
  let page;
  const problems = [];

  before(async function () {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: install Debian's chromium (scripts/install-system-deps.sh) or set HDLM_CHROMIUM`);
    }
    fs.mkdirSync(OUT, { recursive: true });
    ctx = await startServer({ apiKey: KEY, maxTokens: 48 });
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [...(process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : []), '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 760 });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !/401|Unauthorized/.test(m.text())) problems.push(`console: ${m.text()}`);
    });
  });
  after(async () => {
    await browser?.close();
    await ctx?.stop();
  });

  const state = () => page.$eval('#text', (el) => ({ ...el.dataset, text: el.textContent }));

  it('asks for the API key, refuses a wrong one, then loads the model', async () => {
    await page.goto(ctx.url + '/', { waitUntil: 'load' });
    await page.waitForSelector('#key-panel:not([hidden])', { timeout: 20000 });
    await page.type('#api-key', 'wrong');
    await page.click('#key-save');
    await page.waitForSelector('#key-error:not([hidden])');
    assert.match(await page.$eval('#key-error', (e) => e.textContent), /refused/);
    await page.type('#api-key', KEY);
    await page.click('#key-save');
    await page.waitForSelector('#key-panel', { hidden: true });
    await page.waitForSelector('#run:not([disabled])');
    assert.strictEqual(await page.$eval('#model-name', (e) => e.textContent), MODEL_ID);
    assert.strictEqual(await page.$eval('#status', (e) => e.textContent), 'ready');
    assert.strictEqual(await page.$eval('#suffix', (e) => e.disabled), false, 'the suffix can be typed (infilling)');
    const algs = await page.$$eval('#alg option', (os) => os.map((o) => o.value));
    assert.deepStrictEqual(algs, ['original', 'acs', 'remask', 'remask_adhoc_shuffle', 'remdm']);
  });

  it('submits a prompt, draws intermediate frames with masked positions, ends on the API\'s text for the same seed', async () => {
    const settings = { max_tokens: 48, steps: 48, alg: 'acs', temperature: 1, seed: 7 };
    const set = async (sel, value) => {
      await page.$eval(sel, (e, v) => {
        e.value = v;
      }, String(value));
    };
    await set('#prompt', PROMPT);
    await set('#max-tokens', settings.max_tokens);
    await set('#steps', settings.steps);
    await page.select('#alg', settings.alg);
    await set('#temperature', settings.temperature);
    await set('#seed', settings.seed);
    await set('#every', 1);
    await page.click('#run');
    // an intermediate frame: still running, some positions masked
    await page.waitForFunction(() => {
      const t = document.getElementById('text');
      return t.dataset.state === 'running' && Number(t.dataset.maskedFrames) >= 6 && t.querySelector('.mask');
    }, { timeout: 60000, polling: 10 });
    const mid = await state();
    await page.screenshot({ path: path.join(OUT, 'page-denoising.png') });
    assert.ok(mid.text.startsWith(PROMPT));
    assert.ok(mid.text.includes('\u2591'), 'masked positions are drawn');
    await page.waitForFunction(() => document.getElementById('text').dataset.state !== 'running', { timeout: 60000 });
    const done = await state();
    await page.screenshot({ path: path.join(OUT, 'page-final.png') });
    assert.strictEqual(done.state, 'done', await page.$eval('#error', (e) => e.textContent));
    assert.ok(Number(done.frames) >= 2 && Number(done.maskedFrames) >= 1, JSON.stringify(done));
    assert.ok(!done.text.includes('\u2591'));
    const api = await postJson(`${ctx.url}/v1/completions`, { model: MODEL_ID, prompt: PROMPT, ...settings }, { authorization: `Bearer ${KEY}` });
    assert.strictEqual(api.status, 200);
    assert.strictEqual(done.text, PROMPT + api.body.choices[0].text);
    assert.match(await page.$eval('#final', (e) => e.textContent), /^finish: (length|stop)/);
    assert.match(await page.$eval('#stats', (e) => e.textContent), /done in .* frames/);
    for (const file of ['page-denoising.png', 'page-final.png']) assert.ok(fs.statSync(path.join(OUT, file)).size > 10000);
  });

  it('Stop aborts the sampling on the server', async () => {
    await page.$eval('#steps', (e) => {
      e.value = '4000';
    });
    await page.click('#run');
    await page.waitForFunction(() => Number(document.getElementById('text').dataset.frames) >= 3, { timeout: 60000, polling: 10 });
    assert.strictEqual(ctx.server.load.running, 1);
    await page.click('#stop');
    await page.waitForFunction(() => document.getElementById('text').dataset.state === 'stopped', { timeout: 20000 });
    await waitFor(() => ctx.server.load.running === 0, 20000, 'the server to stop the job');
  });

  it('no script errors or CSP violations', () => {
    assert.deepStrictEqual(problems, []);
  });
});
