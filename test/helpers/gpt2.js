'use strict';
// A random GPT-2 checkpoint in HF layout and a direct float64 GPT-2 forward (the evaluation tests).
const fs = require('fs');
const path = require('path');
const { writeSafetensors } = require('./safetensors-writer');

function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Writes a random GPT-2 checkpoint; returns { dir, w (name → Float32Array), cfg }. */
function makeGpt2(dir, { vocab = 61, embd = 16, head = 2, layer = 2, positions = 24, prefix = '', seed = 1, dtype = 'F32' } = {}) {
  const r = rng(seed);
  const w = {};
  const tensors = {};
  const add = (name, shape, scale, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = offset + (r() * 2 - 1) * scale;
    w[name] = data;
    tensors[prefix + name] = { dtype, shape, data };
  };
  add('wte.weight', [vocab, embd], 0.5);
  add('wpe.weight', [positions, embd], 0.2);
  for (let i = 0; i < layer; i++) {
    add(`h.${i}.ln_1.weight`, [embd], 0.2, 1);
    add(`h.${i}.ln_1.bias`, [embd], 0.1);
    add(`h.${i}.attn.c_attn.weight`, [embd, 3 * embd], 0.4);
    add(`h.${i}.attn.c_attn.bias`, [3 * embd], 0.1);
    add(`h.${i}.attn.c_proj.weight`, [embd, embd], 0.3);
    add(`h.${i}.attn.c_proj.bias`, [embd], 0.1);
    add(`h.${i}.ln_2.weight`, [embd], 0.2, 1);
    add(`h.${i}.ln_2.bias`, [embd], 0.1);
    add(`h.${i}.mlp.c_fc.weight`, [embd, 4 * embd], 0.3);
    add(`h.${i}.mlp.c_fc.bias`, [4 * embd], 0.1);
    add(`h.${i}.mlp.c_proj.weight`, [4 * embd, embd], 0.2);
    add(`h.${i}.mlp.c_proj.bias`, [embd], 0.1);
  }
  add('ln_f.weight', [embd], 0.2, 1);
  add('ln_f.bias', [embd], 0.1);
  const cfg = { model_type: 'gpt2', n_embd: embd, n_head: head, n_layer: layer, n_positions: positions, vocab_size: vocab, layer_norm_epsilon: 1e-5 };
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  return { dir, w, cfg };
}

/** Direct float64 GPT-2 forward of one row: final hidden states (after ln_f) [L][D]. */
function gpt2HiddenReference({ w, cfg }, ids) {
  const D = cfg.n_embd, H = cfg.n_head, d = D / H, L = ids.length, eps = cfg.layer_norm_epsilon;
  const ln = (x, g, b) => {
    const mean = x.reduce((a, c) => a + c, 0) / D;
    const v = x.reduce((a, c) => a + (c - mean) ** 2, 0) / D;
    return x.map((c, j) => ((c - mean) / Math.sqrt(v + eps)) * g[j] + b[j]);
  };
  const lin = (x, W, b, out) => {
    const y = new Array(out).fill(0);
    for (let j = 0; j < out; j++) {
      let s = b[j];
      for (let i = 0; i < x.length; i++) s += x[i] * W[i * out + j];
      y[j] = s;
    }
    return y;
  };
  const gelu = (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  let h = ids.map((t, l) => Array.from({ length: D }, (_, j) => w['wte.weight'][t * D + j] + w['wpe.weight'][l * D + j]));
  for (let i = 0; i < cfg.n_layer; i++) {
    const p = (n) => w[`h.${i}.${n}`];
    const qkv = h.map((x) => lin(ln(x, p('ln_1.weight'), p('ln_1.bias')), p('attn.c_attn.weight'), p('attn.c_attn.bias'), 3 * D));
    const o = h.map(() => new Array(D).fill(0));
    for (let hd = 0; hd < H; hd++) {
      for (let a = 0; a < L; a++) {
        const scores = [];
        for (let b = 0; b <= a; b++) {
          let s = 0;
          for (let k = 0; k < d; k++) s += qkv[a][hd * d + k] * qkv[b][D + hd * d + k];
          scores.push(s / Math.sqrt(d));
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((x, y) => x + y, 0);
        for (let b = 0; b <= a; b++) for (let k = 0; k < d; k++) o[a][hd * d + k] += (e[b] / z) * qkv[b][2 * D + hd * d + k];
      }
    }
    h = h.map((x, l) => {
      const att = lin(o[l], p('attn.c_proj.weight'), p('attn.c_proj.bias'), D);
      const x1 = x.map((c, j) => c + att[j]);
      const z = lin(ln(x1, p('ln_2.weight'), p('ln_2.bias')), p('mlp.c_fc.weight'), p('mlp.c_fc.bias'), 4 * D).map(gelu);
      const mo = lin(z, p('mlp.c_proj.weight'), p('mlp.c_proj.bias'), D);
      return x1.map((c, j) => c + mo[j]);
    });
  }
  return h.map((x) => ln(x, w['ln_f.weight'], w['ln_f.bias']));
}

/** Direct float64 GPT-2 forward of one row: logits [L][V] (hidden · wteᵀ). */
function gpt2Reference(ck, ids) {
  const D = ck.cfg.n_embd, V = ck.cfg.vocab_size, wte = ck.w['wte.weight'];
  return gpt2HiddenReference(ck, ids).map((u) =>
    Array.from({ length: V }, (_, t) => {
      let s = 0;
      for (let j = 0; j < D; j++) s += u[j] * wte[t * D + j];
      return s;
    }),
  );
}

function nllReference(ck, ids) {
  const logits = gpt2Reference(ck, ids);
  let s = 0;
  for (let l = 1; l < ids.length; l++) {
    const row = logits[l - 1];
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, c) => a + Math.exp(c - m), 0));
    s += lse - row[ids[l]];
  }
  return s;
}

module.exports = { rng, makeGpt2, gpt2Reference, gpt2HiddenReference, nllReference };
