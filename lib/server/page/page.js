// The page of `hdlm serve`: sends a streamed completion with denoising frames and draws each
// frame as it comes. Plain browser JavaScript, no build step, no third-party code; model text
// is only ever set as textContent.
'use strict';

(() => {
  const PLACEHOLDER = '\u2591';
  const KEY_STORE = 'hdlm-api-key';
  const $ = (id) => document.getElementById(id);
  const el = {
    form: $('form'), prompt: $('prompt'), suffix: $('suffix'),
    maxTokens: $('max-tokens'), steps: $('steps'), alg: $('alg'), temperature: $('temperature'), every: $('every'), seed: $('seed'),
    run: $('run'), stop: $('stop'), bar: $('bar'), stats: $('stats'), text: $('text'), final: $('final'), error: $('error'),
    status: $('status'), modelName: $('model-name'),
    keyPanel: $('key-panel'), key: $('api-key'), keySave: $('key-save'), keyError: $('key-error'),
  };
  let model = null;
  let authRequired = false;
  let running = null;

  const apiKey = () => sessionStorage.getItem(KEY_STORE) || '';
  const headers = (extra = {}) => (apiKey() ? { ...extra, authorization: `Bearer ${apiKey()}` } : extra);

  function setStatus(text, kind) {
    el.status.textContent = text;
    el.status.className = `badge ${kind || ''}`;
  }

  function showError(message) {
    el.error.textContent = message;
    el.error.hidden = !message;
  }

  function askForKey(message) {
    el.keyPanel.hidden = false;
    el.keyError.textContent = message || '';
    el.keyError.hidden = !message;
    el.key.focus();
  }

  async function errorMessage(res) {
    try {
      const body = await res.json();
      if (body && body.error && body.error.message) return `${res.status}: ${body.error.message}`;
    } catch (_) {
      // not JSON
    }
    return `${res.status} ${res.statusText}`;
  }

  async function checkHealth() {
    try {
      const res = await fetch('health');
      const body = await res.json();
      authRequired = body.auth_required === true;
      el.modelName.textContent = body.model || '';
      if (body.status === 'loading') {
        setStatus('loading model', '');
        setTimeout(checkHealth, 1000);
        return;
      }
      setStatus(body.status, body.status === 'ready' ? 'ready' : 'error');
      if (authRequired && !apiKey()) askForKey();
      else await loadModel();
    } catch (e) {
      setStatus('unreachable', 'error');
      setTimeout(checkHealth, 2000);
    }
  }

  async function loadModel() {
    const res = await fetch('v1/models', { headers: headers() });
    if (res.status === 401) {
      askForKey(apiKey() ? 'That key was refused.' : '');
      return;
    }
    if (!res.ok) {
      showError(await errorMessage(res));
      return;
    }
    el.keyPanel.hidden = true;
    const list = await res.json();
    model = list.data[0];
    const info = model.hdlm || {};
    el.modelName.textContent = model.id;
    el.alg.textContent = '';
    for (const alg of info.algorithms || ['acs']) {
      const option = document.createElement('option');
      option.value = alg;
      option.textContent = alg;
      if (alg === info.default_alg) option.selected = true;
      el.alg.append(option);
    }
    if (info.context_length) el.maxTokens.max = String(info.context_length);
    if (info.max_steps) el.steps.max = String(info.max_steps);
    el.run.disabled = false;
  }

  el.keySave.addEventListener('click', () => {
    sessionStorage.setItem(KEY_STORE, el.key.value.trim());
    el.key.value = '';
    loadModel().catch((e) => showError(String(e)));
  });
  el.key.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') el.keySave.click();
  });

  // One frame: prompt (dim), the completion with its masked positions, suffix (dim).
  function draw(prompt, completion, suffix) {
    const nodes = [];
    const fixed = (text) => {
      const span = document.createElement('span');
      span.className = 'fixed';
      span.textContent = text;
      return span;
    };
    if (prompt) nodes.push(fixed(prompt));
    let run = '';
    let masks = '';
    const flush = () => {
      if (run) nodes.push(document.createTextNode(run));
      if (masks) {
        const span = document.createElement('span');
        span.className = 'mask';
        span.textContent = masks;
        nodes.push(span);
      }
      run = '';
      masks = '';
    };
    for (const ch of completion) {
      if (ch === PLACEHOLDER) {
        if (run) flush();
        masks += ch;
      } else {
        if (masks) flush();
        run += ch;
      }
    }
    flush();
    if (suffix) nodes.push(fixed(suffix));
    el.text.replaceChildren(...nodes);
  }

  function number(input) {
    const v = input.value.trim();
    return v === '' ? undefined : Number(v);
  }

  async function generate() {
    showError('');
    el.final.hidden = true;
    const prompt = el.prompt.value;
    const suffix = el.suffix.value;
    const body = {
      model: model.id,
      prompt,
      max_tokens: number(el.maxTokens),
      steps: number(el.steps),
      alg: el.alg.value,
      temperature: number(el.temperature),
      seed: number(el.seed),
      stream: true,
      stream_options: { include_usage: true },
      denoise: { every: number(el.every) || 1, placeholder: PLACEHOLDER },
    };
    if (suffix) body.suffix = suffix;
    const controller = new AbortController();
    running = controller;
    el.run.disabled = true;
    el.stop.disabled = false;
    el.text.dataset.state = 'running';
    el.text.dataset.frames = '0';
    el.text.dataset.maskedFrames = '0';
    el.bar.style.width = '0';
    el.stats.textContent = 'waiting for the model\u2026';
    const started = performance.now();
    let firstFrame = null;
    let frames = 0;
    let skipped = 0;
    let finalText = '';
    let finish = null;
    let usage = null;
    draw(prompt, '', suffix);
    try {
      const res = await fetch('v1/completions', {
        method: 'POST',
        headers: headers({ 'content-type': 'application/json' }),
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (res.status === 401) {
        askForKey('The key was refused.');
        throw new Error(await errorMessage(res));
      }
      if (!res.ok) throw new Error(await errorMessage(res));
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = null;
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).replace(/^ /, '');
          }
          if (!data || data === '[DONE]') continue;
          const msg = JSON.parse(data);
          if (msg.error) throw new Error(msg.error.message);
          if (event === 'denoise') {
            frames++;
            if (firstFrame === null) firstFrame = performance.now() - started;
            skipped = msg.skipped;
            const choice = msg.samples[0];
            draw(prompt, choice.text, suffix);
            el.bar.style.width = `${(100 * msg.step) / msg.total}%`;
            el.text.dataset.frames = String(frames);
            if (choice.masked > 0) el.text.dataset.maskedFrames = String(Number(el.text.dataset.maskedFrames) + 1);
            el.stats.textContent = `step ${msg.step} / ${msg.total} \u00b7 ${choice.masked} masked \u00b7 ${frames} frames` + (skipped ? ` (${skipped} skipped)` : '');
          } else if (msg.usage) {
            usage = msg.usage;
          } else if (msg.choices && msg.choices[0]) {
            finalText += msg.choices[0].text;
            if (msg.choices[0].finish_reason) finish = msg.choices[0].finish_reason;
          }
        }
      }
      draw(prompt, finalText, suffix);
      const ms = performance.now() - started;
      el.bar.style.width = '100%';
      el.stats.textContent = `done in ${(ms / 1000).toFixed(2)} s \u00b7 ${frames} frames` + (skipped ? ` (${skipped} skipped)` : '') +
        (firstFrame !== null ? ` \u00b7 first frame after ${Math.round(firstFrame)} ms` : '');
      el.final.textContent = `finish: ${finish || '?'}` + (usage ? ` \u00b7 ${usage.completion_tokens} completion tokens` : '');
      el.final.hidden = false;
      el.text.dataset.state = 'done';
    } catch (e) {
      el.text.dataset.state = controller.signal.aborted ? 'stopped' : 'error';
      if (controller.signal.aborted) el.stats.textContent = 'stopped';
      else showError(e.message || String(e));
    } finally {
      running = null;
      el.run.disabled = false;
      el.stop.disabled = true;
    }
  }

  el.form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!running && model) generate();
  });
  el.stop.addEventListener('click', () => running && running.abort());
  el.run.disabled = true;
  checkHealth();
})();
