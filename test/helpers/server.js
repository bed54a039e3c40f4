'use strict';
/**
 * Starts `hdlm serve` in the test process on a free loopback port with the demo model on the CPU,
 * and small request defaults so tests stay fast on a 2-core machine. Also: a raw SSE reader and a
 * /metrics line reader.
 */
const fs = require('fs');
const { serve } = require('../../dist/server');
const { DEMO_MODEL, tempDir } = require('./reference');

const MODEL_ID = 'brown-epsilon';

async function startServer(options = {}) {
  const cache = tempDir('serve');
  const logs = [];
  const server = await serve({
    model: DEMO_MODEL,
    port: 0,
    device: 'cpu',
    torchscriptCacheDir: cache,
    steps: 4,
    maxTokens: 8,
    log: (line) => logs.push(line),
    ...options,
  });
  await server.ready;
  const stop = async () => {
    await server.close({ abort: true });
    fs.rmSync(cache, { recursive: true, force: true });
  };
  return { server, url: server.url, logs, stop };
}

/** POST JSON; returns { status, headers, body } with body parsed when it is JSON. */
async function postJson(url, body, headers = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

/** Parses an SSE body into [{ event, data }] (data JSON-parsed unless '[DONE]'). */
function parseSse(text) {
  return text
    .split('\n\n')
    .filter((block) => block.trim() && !block.startsWith(':'))
    .map((block) => {
      let event = null;
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      const raw = data.join('\n');
      return { event, data: raw === '[DONE]' ? raw : JSON.parse(raw) };
    });
}

/** Reads an SSE response incrementally: `next()` resolves to the next event or null at the end. */
function sseReader(res) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  return {
    async next() {
      for (;;) {
        const end = buffer.indexOf('\n\n');
        if (end >= 0) {
          const block = buffer.slice(0, end + 2);
          buffer = buffer.slice(end + 2);
          if (block.startsWith(':')) continue;
          return parseSse(block)[0];
        }
        const { value, done } = await reader.read();
        if (done) return null;
        buffer += decoder.decode(value, { stream: true });
      }
    },
    cancel: () => reader.cancel().catch(() => {}),
  };
}

/** Value of one metric line (exact name with labels), or null. */
async function metric(url, name, headers = {}) {
  const text = await (await fetch(`${url}/metrics`, { headers })).text();
  for (const line of text.split('\n')) {
    if (line.startsWith(name + ' ')) return Number(line.slice(name.length + 1));
  }
  return null;
}

/** Polls `check` until it returns truthy (or throws after `ms`). */
async function waitFor(check, ms = 20000, what = 'condition') {
  const until = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

module.exports = { startServer, postJson, parseSse, sseReader, metric, waitFor, MODEL_ID };
