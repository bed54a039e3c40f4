'use strict';
/**
 * A correct safetensors writer for tests (byte-compatible with the Python/Rust `safetensors`
 * package: tensors ordered by dtype (wider first) then name, offsets in that order, compact JSON
 * header with `__metadata__` first, padded with spaces to a multiple of 8 bytes), a reader of
 * tensor data, and `makeEpsilonCheckpoint`, which writes a synthetic epsilon HDLM checkpoint.
 */
const fs = require('fs');
const path = require('path');

const DTYPE_SIZE = { F32: 4, BF16: 2, F16: 2 };
// Rust safetensors' Dtype enum order (…, F16, BF16, …, F32, …); files list higher ones first.
const DTYPE_RANK = { F16: 0, BF16: 1, F32: 2 };

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bf16 bits of a float32 value, rounded to nearest even (NaN stays a quiet NaN). */
function float32ToBf16Bits(x) {
  f32[0] = x;
  const u = u32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x0040) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 value of bf16 bits (exact). */
function bf16BitsToFloat32(b) {
  u32[0] = (b & 0xffff) << 16;
  return f32[0];
}

/** IEEE half bits of a float32 value, rounded to nearest even (overflow → ±inf). */
function float32ToF16Bits(x) {
  f32[0] = x;
  const u = u32[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}

/** float32 value of IEEE half bits (exact). */
function f16BitsToFloat32(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function numel(shape) {
  return shape.reduce((a, b) => a * b, 1);
}

/** Bytes of one tensor. data: Float32Array / number[] (converted), Uint16Array (raw 16-bit bits), or undefined (zeros). */
function tensorBytes(name, { dtype, shape, data }) {
  if (!(dtype in DTYPE_SIZE)) throw new Error(`writeSafetensors: ${name}: unsupported dtype ${dtype}`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new Error(`writeSafetensors: ${name}: bad shape ${JSON.stringify(shape)}`);
  }
  const n = numel(shape);
  const buf = Buffer.alloc(n * DTYPE_SIZE[dtype]);
  if (data === undefined || data === null) return buf;
  if (data.length !== n) throw new Error(`writeSafetensors: ${name}: data has ${data.length} values, shape needs ${n}`);
  if (dtype === 'F32') {
    if (data instanceof Uint16Array) throw new Error(`writeSafetensors: ${name}: raw 16-bit data for an F32 tensor`);
    const a = data instanceof Float32Array ? data : Float32Array.from(data);
    Buffer.from(a.buffer, a.byteOffset, a.byteLength).copy(buf); // little-endian hosts only (x86/arm)
  } else if (data instanceof Uint16Array) {
    Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(buf);
  } else {
    const conv = dtype === 'BF16' ? float32ToBf16Bits : float32ToF16Bits;
    for (let i = 0; i < n; i++) buf.writeUInt16LE(conv(data[i]), 2 * i);
  }
  return buf;
}

/**
 * Writes a safetensors file.
 * @param {string} filePath
 * @param {Record<string, {dtype: 'F32'|'BF16'|'F16', shape: number[], data?: Float32Array|number[]|Uint16Array}>} tensors
 * @param {Record<string,string>} [metadata]
 * @returns {{headerLength: number, dataStart: number, fileSize: number}}
 */
function writeSafetensors(filePath, tensors, metadata) {
  const names = Object.keys(tensors).sort((a, b) => {
    const d = DTYPE_RANK[tensors[b].dtype] - DTYPE_RANK[tensors[a].dtype];
    return d !== 0 ? d : Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
  });
  const header = {};
  if (metadata) header.__metadata__ = metadata;
  const blobs = [];
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    const bytes = tensorBytes(name, t);
    header[name] = { dtype: t.dtype, shape: t.shape.slice(), data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    blobs.push(bytes);
  }
  // A tensor named "__proto__" would need defineProperty; tests do not use one.
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  fs.mkdirSync(path.dirname(filePath), { recursive: true });
  const fd = fs.openSync(filePath, 'w');
  try {
    fs.writeSync(fd, prefix);
    fs.writeSync(fd, json);
    for (const b of blobs) if (b.length) fs.writeSync(fd, b);
  } finally {
    fs.closeSync(fd);
  }
  return { headerLength: json.length, dataStart: 8 + json.length, fileSize: 8 + json.length + offset };
}

/**
 * Reads one tensor (an entry of readSafetensorsHeader: absolute begin/end) as float32 values.
 * @returns {Float32Array}
 */
function readTensorAsFloat32(filePath, entry) {
  const len = entry.end - entry.begin;
  const buf = Buffer.alloc(len);
  const fd = fs.openSync(filePath, 'r');
  try {
    let done = 0;
    while (done < len) {
      const n = fs.readSync(fd, buf, done, len - done, entry.begin + done);
      if (n === 0) throw new Error('short read');
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  if (entry.dtype === 'F32') {
    const out = new Float32Array(len / 4);
    for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(4 * i);
    return out;
  }
  const conv = entry.dtype === 'BF16' ? bf16BitsToFloat32 : f16BitsToFloat32;
  const out = new Float32Array(len / 2);
  for (let i = 0; i < out.length; i++) out[i] = conv(buf.readUInt16LE(2 * i));
  return out;
}

/** rotary inv_freq as upstream computes it in fp32: 1 / 10000^(2k/d). */
function rotaryInvFreq(headDim) {
  const out = new Float32Array(headDim / 2);
  for (let k = 0; k < out.length; k++) {
    const ex = Math.fround((2 * k) / headDim);
    out[k] = Math.fround(1 / Math.fround(Math.pow(10000, ex)));
  }
  return out;
}

/** Deterministic small pseudo-random values (mulberry32 seeded by the name); norms ≈ 1. */
function defaultFill(name, shape) {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  let s = h >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const n = numel(shape);
  const out = new Float32Array(n);
  const isNorm = /norm/.test(name);
  for (let i = 0; i < n; i++) out[i] = isNorm ? 1 + (rand() - 0.5) * 0.2 : (rand() - 0.5) * 0.2;
  return out;
}

/** The epsilon state-dict keys and shapes (upstream hdlm/model/diffusion_lm.py: HDLM), in a Map name → shape. */
function epsilonShapes({ hiddenSize: D, nBlocks, vocabSize: V }) {
  const m = new Map();
  m.set('vocab_embed.embedding', [V, D]);
  for (let i = 0; i < nBlocks; i++) {
    const b = `blocks.${i}.`;
    m.set(b + 'norm1.weight', [D]);
    m.set(b + 'attn_qkv.weight', [3 * D, D]);
    m.set(b + 'attn_out.weight', [D, D]);
    m.set(b + 'norm2.weight', [D]);
    m.set(b + 'mlp.0.weight', [4 * D, D]);
    m.set(b + 'mlp.0.bias', [4 * D]);
    m.set(b + 'mlp.2.weight', [D, 4 * D]);
    m.set(b + 'mlp.2.bias', [D]);
  }
  m.set('output_layer.norm_final.weight', [D]);
  m.set('output_layer.linear.weight', [V, D]);
  m.set('output_layer.linear.bias', [V]);
  return m;
}

/**
 * Writes `<dir>/config.json` (shaped like test/fixtures/tiny-epsilon/config.json) and
 * `<dir>/model.safetensors` with every key of upstream's HDLM state dict plus `rotary_emb.inv_freq` (F32,
 * upstream's values; `invFreq: false` leaves it out).
 * @param {string} dir
 * @param {{hiddenSize: number, nHeads: number, nBlocks: number, length: number, vocabTokens?: number,
 *   dtype?: 'F32'|'BF16'|'F16', fill?: (name: string, shape: number[]) => Float32Array,
 *   invFreq?: boolean, omit?: string[], metadata?: Record<string,string>|null}} opts
 * @returns {{dir: string, configPath: string, weightsPath: string, config: object, vocabSize: number, names: string[]}}
 */
function makeEpsilonCheckpoint(dir, opts) {
  const { hiddenSize, nHeads, nBlocks, length } = opts;
  const vocabTokens = opts.vocabTokens ?? 50257;
  const dtype = opts.dtype ?? 'F32';
  const fill = opts.fill ?? defaultFill;
  const omit = new Set(opts.omit ?? []);
  const vocabSize = vocabTokens + 1;
  const config = {
    annealing: {
      attention: { block_type: 'full', context_type: 'block_causal' },
      efficient: false,
      eval_tau: length,
      match_inference: true,
      sampling_eps: 0.0001,
      sampling_method: 'SAR',
      tau: length,
      type: 'block',
      width: length,
    },
    model: {
      cond_dim: 128,
      dropout: 0.1,
      hidden_size: hiddenSize,
      hybrid_sigma_embedding: false,
      length,
      n_blocks: nBlocks,
      n_heads: nHeads,
      name: 'epsilon_hdlm',
      post_process_logits: false,
      scale_by_sigma: false,
      transformer_sigma_conditioning: false,
      type: 'ddit',
      use_timestep_embedding: false,
    },
    model_type: 'epsilon_hybrid',
    tokenizer: { model: 'gpt2', tokens: vocabTokens },
    training: { batch_size: 512, ema: 0.9999, epsilon: 0.01, lambda: 1.0, loss_type: 'hybrid', n_iters: 1000000, warmup_iter: 50000 },
    type: 'aligned',
  };
  const tensors = {};
  for (const [name, shape] of epsilonShapes({ hiddenSize, nBlocks, vocabSize })) {
    if (omit.has(name)) continue;
    const data = fill(name, shape);
    tensors[name] = { dtype, shape, data };
  }
  if (opts.invFreq !== false && !omit.has('rotary_emb.inv_freq')) {
    const inv = rotaryInvFreq(hiddenSize / nHeads);
    tensors['rotary_emb.inv_freq'] = { dtype: 'F32', shape: [inv.length], data: inv };
  }
  fs.mkdirSync(dir, { recursive: true });
  const configPath = path.join(dir, 'config.json');
  const weightsPath = path.join(dir, 'model.safetensors');
  fs.writeFileSync(configPath, JSON.stringify(config, null, 2));
  writeSafetensors(weightsPath, tensors, opts.metadata === undefined ? { format: 'pt' } : opts.metadata || undefined);
  return { dir, configPath, weightsPath, config, vocabSize, names: Object.keys(tensors) };
}

module.exports = {
  writeSafetensors,
  readTensorAsFloat32,
  float32ToBf16Bits,
  bf16BitsToFloat32,
  float32ToF16Bits,
  f16BitsToFloat32,
  rotaryInvFreq,
  defaultFill,
  epsilonShapes,
  makeEpsilonCheckpoint,
};
