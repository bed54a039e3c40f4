#!/usr/bin/env node
'use strict';
// Fast mode's fidelity: for every sampler with a fast path, draws many independent samples in
// reference and in fast mode from a trained model (the demo model by default) and compares
// per-sample statistics with two-sample tests whose unit is the sample: the model's own Monte-Carlo
// NLL bound, text and token entropy, repetition, first EOS, masks left, rare tokens, unigram and
// bigram frequencies. The k-th reference and the k-th fast sample of a round are scored with the
// same Monte-Carlo draws (common random numbers), so the NLL is compared pair by pair: most of the
// bound's own noise is common to the two and cancels in their difference.
// Prints one table (reference, fast, difference, standard error, p, Holm-adjusted p) and keeps
// every sample (--out: a JSON file plus one compressed id file per sampler:alg beside it) so that
// runs can be merged. Method and results: docs/fast-mode-fidelity.md.
//
//   node bench/fidelity.js [--device auto|cpu|cuda] [--model DIR] [--length L] [--steps N]
//     [--semi-steps N] [--block-size N] [--batch B] [--samples N|auto] [--pilot N]
//     [--resolution 0.01] [--time-budget S] [--seed S] [--algs LIST|all] [--mc N] [--mc-batch N]
//     [--temperature T] [--fast-temperature T] [--batching on|off] [--eta E] [--vocab K] [--prompt TEXT]
//     [--permutations R] [--top-k K] [--out FILE.json] [--merge A.json,B.json]
//
// --algs: comma-separated sampler:algorithm pairs, e.g. fullDiff:acs,semiDiff:original; `all`
// (default) is every algorithm of fullDiff and semiDiff (the shifted samplers have no fast mode).
// --samples auto: a pilot estimates the per-sample NLL variance and the time per sample, then the
// run draws what resolves a --resolution nat shift of the mean NLL (two-sided 5 %, power 80 %),
// within --time-budget. --vocab K restricts the model to K − 1 of its tokens (the highest output
// bias, EOS included) plus the mask: the same network, a small vocabulary (cheap CPU checks).
// --batching off: fast calls run alone instead of in the model's batch (the batched sampler, what
// concurrent calls and the server use; default on; on the CPU it takes fullDiff original / acs only).
// Defaults: --length 256 --steps 128 --semi-steps 8 --block-size 16 --batch 64 --samples auto
// --mc 64 --mc-batch 8 --resolution 0.01 --time-budget 0 (none) --permutations 199 --top-k 64.
const fs = require('fs');
const os = require('os');
const path = require('path');
const zlib = require('zlib');
const { parseArgs } = require('util');
const hdlm = require('..');
const stats = require('../test/helpers/stats');
const { writeSafetensors, bf16BitsToFloat32 } = require('../test/helpers/safetensors-writer');

/** The evaluation API: its own entry point where the package has one, else the root export. */
function evalApi() {
  for (const where of ['../dist/eval', '..']) {
    let m;
    try {
      m = require(where);
    } catch (e) {
      if (e.code === 'MODULE_NOT_FOUND') continue;
      throw e;
    }
    if (typeof m.evaluatePerplexity === 'function') return m;
  }
  throw new Error('no evaluation API (evaluatePerplexity) found in the package');
}

const EOS = 50256;
const SAMPLERS = { fullDiff: hdlm.fullDiff, semiDiff: hdlm.semiDiff };
const ALL_ALGS = Object.keys(SAMPLERS).flatMap((s) => hdlm.ALGORITHMS.map((a) => `${s}:${a}`));
// Two-sided 5 % test with 80 % power: a true shift of (z(0.975) + z(0.8))·SE is detected.
const DETECT_FACTOR = stats.normalQuantile(0.975) + stats.normalQuantile(0.8);

// ---------------------------------------------------------------------------------------------
// the model: a view of a checkpoint at another length, optionally with a restricted vocabulary

function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const tensor = (name) => {
    const e = header[name];
    const [b, end] = e.data_offsets;
    const bytes = buf.subarray(8 + n + b, 8 + n + end);
    if (e.dtype === 'F32') return { shape: e.shape, data: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)) };
    if (e.dtype === 'BF16') {
      const out = new Float32Array(bytes.length / 2);
      for (let i = 0; i < out.length; i++) out[i] = bf16BitsToFloat32(bytes.readUInt16LE(2 * i));
      return { shape: e.shape, data: out };
    }
    throw new Error(`${file}: tensor ${name} has dtype ${e.dtype} (F32 or BF16 expected)`);
  };
  return { names: Object.keys(header).filter((k) => k !== '__metadata__'), tensor };
}

/**
 * Writes into a new temporary directory a checkpoint that is `modelDir` with model.length =
 * `length` (the epsilon network has no length-dependent weights: only the evaluation API needs the
 * model's length to equal the samples') and, with `vocab`, only `vocab − 1` tokens (the highest
 * output biases, EOS among them) plus the mask. Returns the directory, the EOS and mask ids, and
 * (restricted) the original id of every new id.
 */
function prepareModelDir({ modelDir, length, vocab = 0 }) {
  const config = JSON.parse(fs.readFileSync(path.join(modelDir, 'config.json'), 'utf8'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-fidelity-'));
  config.model.length = length;
  const weights = path.join(modelDir, 'model.safetensors');
  if (!vocab) {
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
    fs.copyFileSync(weights, path.join(dir, 'model.safetensors'));
    const tokens = config.tokenizer.tokens;
    return { dir, eos: EOS, mask: tokens, vocabSize: tokens + 1, originalIds: null };
  }
  const st = readSafetensors(weights);
  const bias = st.tensor('output_layer.linear.bias').data;
  const tokens = config.tokenizer.tokens; // the mask is id `tokens`
  const order = Array.from({ length: tokens }, (_, i) => i).filter((i) => i !== EOS).sort((x, y) => bias[y] - bias[x] || x - y);
  const kept = [...order.slice(0, vocab - 2), EOS].sort((x, y) => x - y);
  const originalIds = [...kept, tokens];
  const rows = (t) => {
    const [V, D] = t.shape.length === 2 ? t.shape : [t.shape[0], 1];
    if (V !== tokens + 1) throw new Error(`unexpected vocabulary size ${V}`);
    const out = new Float32Array(originalIds.length * D);
    originalIds.forEach((id, i) => out.set(t.data.subarray(id * D, (id + 1) * D), i * D));
    return { shape: t.shape.length === 2 ? [originalIds.length, D] : [originalIds.length], data: out };
  };
  const tensors = {};
  for (const name of st.names) {
    const t = st.tensor(name);
    const vocabRows = name === 'vocab_embed.embedding' || name === 'output_layer.linear.weight' || name === 'output_layer.linear.bias';
    const { shape, data } = vocabRows ? rows(t) : t;
    tensors[name] = { dtype: 'F32', shape, data };
  }
  config.tokenizer.tokens = vocab - 1;
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  return { dir, eos: kept.indexOf(EOS), mask: vocab - 1, vocabSize: vocab, originalIds };
}

// ---------------------------------------------------------------------------------------------
// per-sample statistics

/**
 * Scalar statistics of one sample (its generated part, positions from `from` on) and its unigram
 * and bigram keys. Token entropy: −Σ f ln f over the sample's token frequencies; repetition: share
 * of tokens already seen earlier in the sample; adjacent repeats: share of positions equal to the
 * previous one; first EOS: its offset in the generated part (the part's length when there is none).
 */
function sampleStats(row, { from = 0, eos, mask, vocabSize }) {
  const part = row.slice(from);
  const n = part.length;
  const counts = new Map();
  let adjacent = 0;
  let masks = 0;
  let firstEos = n;
  const bigrams = [];
  for (let i = 0; i < n; i++) {
    const t = part[i];
    counts.set(t, (counts.get(t) || 0) + 1);
    if (t === mask) masks++;
    if (t === eos && firstEos === n) firstEos = i;
    if (i > 0) {
      if (t === part[i - 1]) adjacent++;
      bigrams.push(part[i - 1] * vocabSize + t);
    }
  }
  let entropy = 0;
  for (const c of counts.values()) entropy -= (c / n) * Math.log(c / n);
  return {
    scalars: {
      tokenEntropy: entropy,
      repetition: (n - counts.size) / n,
      adjacentRepeats: n > 1 ? adjacent / (n - 1) : 0,
      firstEos,
      eosCount: counts.get(eos) || 0,
      maskFraction: masks / n,
    },
    unigrams: part,
    bigrams,
  };
}

const SCALARS = [
  ['nll', 'NLL bound (nats/token)'],
  ['textEntropy', 'text entropy (upstream)'],
  ['tokenEntropy', 'token entropy (nats)'],
  ['repetition', 'repetition rate'],
  ['adjacentRepeats', 'adjacent repeats'],
  ['firstEos', 'first EOS position'],
  ['eosCount', 'EOS per sample'],
  ['maskFraction', 'masks left (fraction)'],
  ['rareTokens', 'rare tokens'],
];

/**
 * Compares two groups of scored samples ({row, nll}); `ctx` as for sampleStats plus
 * `permutations`, `topK`, `seed`, `textEntropy` (a function, or null to skip that row).
 * Returns rows {stat, reference, fast, diff, se, p, note}.
 */
function compareGroups(ref, fast, ctx) {
  const sa = ref.map((s) => ({ ...sampleStats(s.row, ctx), nll: s.nll, row: s.row }));
  const sb = fast.map((s) => ({ ...sampleStats(s.row, ctx), nll: s.nll, row: s.row }));
  // Rare tokens: outside the `rareRank` most frequent ids of both groups together (symmetric in
  // the groups). Sensitive to a sampler that now and then emits an arbitrary id.
  const rareRank = ctx.rareRank ?? Math.min(1000, Math.floor(ctx.vocabSize / 4));
  const pooled = new Map();
  for (const s of sa.concat(sb)) for (const t of s.unigrams) pooled.set(t, (pooled.get(t) || 0) + 1);
  const common = new Set([...pooled.entries()].sort((x, y) => y[1] - x[1] || x[0] - y[0]).slice(0, rareRank).map((e) => e[0]));
  for (const s of sa.concat(sb)) s.scalars.rareTokens = s.unigrams.filter((t) => !common.has(t)).length / s.unigrams.length;
  const out = [];
  for (const [key, label] of SCALARS) {
    let get;
    let name = key === 'rareTokens' ? `${label} (outside the ${rareRank} most frequent)` : label;
    if (key === 'nll') {
      if (sa.some((s) => s.nll === null || s.nll === undefined)) continue;
      get = (s) => s.nll;
    } else if (key === 'textEntropy') {
      if (!ctx.textEntropy) continue;
      get = (s) => ctx.textEntropy(s.row.slice(ctx.from || 0));
    } else {
      get = (s) => s.scalars[key];
    }
    // the NLL pair by pair where the samples were scored in pairs; every other statistic, and the
    // NLL of unpaired runs, as two independent groups
    const pairs = key === 'nll' ? nllPairs(ref, fast) : null;
    const w = pairs ? stats.pairedTest(pairs.map((x) => x[0]), pairs.map((x) => x[1])) : stats.welchTest(sa.map(get), sb.map(get));
    if (pairs) name = `${label} (paired by scoring draws)`;
    // a statistic constant and equal in both groups (no mask left, say) is no test: p null, left
    // out of the multiple-testing family
    const p = w.se === 0 && w.diff === 0 ? null : w.p;
    out.push({ stat: name, key, reference: w.meanA, fast: w.meanB, diff: w.diff, se: w.se, p });
  }
  for (const [key, label] of [['unigrams', 'unigram frequencies'], ['bigrams', 'bigram frequencies']]) {
    const t = stats.permutationFrequencyTest(sa.map((s) => s[key]), sb.map((s) => s[key]), {
      topK: ctx.topK ?? 64, permutations: ctx.permutations ?? 999, seed: ctx.seed ?? 1,
    });
    out.push({
      stat: `${label} (TV; top ${t.categories - 1} + other)`, key, reference: null, fast: null, diff: t.tv, se: t.tvNull, p: t.p,
      note: `S = ${t.statistic.toFixed(1)} vs ${t.nullMean.toFixed(1)} under the null; permutation p ${t.pPermutation.toFixed(4)}`,
    });
  }
  return out;
}

/** Adds `pHolm` (Holm over every row of every comparison given) to each row. */
function adjust(comparisons) {
  const all = comparisons.flatMap((c) => c.rows);
  const tested = all.filter((r) => r.p !== null);
  const adjusted = stats.holm(tested.map((r) => r.p));
  tested.forEach((r, i) => { r.pHolm = adjusted[i]; });
  for (const r of all) if (r.p === null) r.pHolm = null;
  return comparisons;
}

function fmt(x, digits = 4) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1000 || a < 1e-3) return x.toExponential(2);
  return x.toFixed(digits);
}

function fmtP(p) {
  if (p === null || p === undefined) return '—';
  return p < 1e-4 ? p.toExponential(1) : p.toFixed(4);
}

/** Markdown table of the comparisons (one block per sampler:algorithm). */
function formatTable(comparisons) {
  const lines = ['| sampler:alg | statistic | reference | fast | difference | std. error | p | p (Holm) |', '|---|---|---|---|---|---|---|---|'];
  for (const c of comparisons) {
    for (const r of c.rows) {
      lines.push(`| ${c.name} (${c.n[0]}/${c.n[1]}) | ${r.stat} | ${fmt(r.reference)} | ${fmt(r.fast)} | ${fmt(r.diff)} | ${fmt(r.se)} | ${fmtP(r.p)} | ${fmtP(r.pHolm)} |`);
    }
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// drawing and scoring

/** splitmix64 of (seed, a, b): independent seeds for every batch and score. */
function derive(seed, a, b = 0) {
  const M = (1n << 64n) - 1n;
  let z = (BigInt(seed) + 0x9e3779b97f4a7c15n * BigInt(a * 1000003 + b + 1)) & M;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
  return (z ^ (z >> 31n)) & M;
}

/** Draws `batch` samples of one sampler:alg in one mode; returns rows and the seconds taken. */
async function drawBatch(model, spec, o, reference, seed) {
  const [sampler, alg] = spec.split(':');
  const semi = sampler === 'semiDiff';
  const options = {
    model, alg, batchSize: o.batch, contextLength: o.length, steps: semi ? o.semiSteps : o.steps, seed, reference,
    temperature: reference ? o.temperature : o.fastTemperature ?? o.temperature,
  };
  if (semi) options.blockSize = o.blockSize;
  if (o.eta !== undefined) options.eta = o.eta;
  if (o.prompt && o.prompt.length) options.prompt = o.prompt;
  // fast calls run in the model's batch by default where it takes them (the batched sampler); off: alone
  if (!reference) options.batching = o.batching;
  const t = process.hrtime.bigint();
  const rows = await SAMPLERS[sampler](options);
  return { rows, seconds: Number(process.hrtime.bigint() - t) / 1e9 };
}

/**
 * The model's own NLL bound (nats per target token) of each row, and its Monte-Carlo variance:
 * one evaluatePerplexity call for all rows (each row its own chunk with its own seed; the draws of
 * several rows share forwards as its drawsPerForward policy packs them).
 */
async function scoreRows(model, rows, o, seed) {
  const { evaluatePerplexity } = evalApi();
  const t = process.hrtime.bigint();
  const r = await evaluatePerplexity({ model, chunks: rows, batchSize: o.mcBatch, monteCarloTimesteps: o.mc, seed });
  const scores = r.chunkNll.map((nll, i) => ({ nll, mcVar: r.chunkNllVariance[i] }));
  return { scores, seconds: Number(process.hrtime.bigint() - t) / 1e9 };
}

/**
 * Samples needed per mode to detect a shift of `resolution` in the mean NLL, given the SD of one
 * fast-minus-reference difference (a pair's; two independent samples: the per-sample SD × √2).
 */
function samplesNeeded(differenceSd, resolution) {
  return Math.ceil(((DETECT_FACTOR * differenceSd) / resolution) ** 2);
}

/**
 * The NLL pairs of two groups: [reference, fast] values of the samples scored with the same
 * draws (the same `pair` key), or null when the groups do not pair up one to one (runs made
 * before pairing, or merged from overlapping seeds).
 */
function nllPairs(ref, fast) {
  if (ref.length !== fast.length || ref.length < 2) return null;
  const byKey = new Map();
  for (const s of ref) {
    if (s.pair === undefined || s.pair === null || byKey.has(s.pair)) return null;
    byKey.set(s.pair, s);
  }
  const pairs = [];
  for (const s of fast) {
    const r = byKey.get(s.pair);
    if (!r) return null;
    byKey.delete(s.pair);
    pairs.push([r.nll, s.nll]);
  }
  return pairs;
}

/**
 * Runs one sampler:alg: batches alternate between reference and fast mode (seeds derived from
 * o.seed), each sample scored, until `target` samples per mode or the deadline. `target` 'auto'
 * runs a pilot of o.pilot samples per mode first and sizes the run from it. Returns
 * {name, groups: {reference, fast}: [{row, nll, mcVar}], seconds: {...}, plan}.
 */
async function runSpec(model, spec, index, o, deadline, log = () => {}) {
  const groups = { reference: [], fast: [] };
  const seconds = { reference: 0, fast: 0, scoring: 0 };
  let batchNo = 0;
  const oneRound = async () => {
    // both modes' batches of a round are scored with the same seed: their k-th samples share draws
    const scoringSeed = derive(o.seed ^ 0x5eedn, index, batchNo);
    for (const mode of ['reference', 'fast']) {
      const { rows, seconds: s } = await drawBatch(model, spec, o, mode === 'reference', derive(o.seed, index, 2 * batchNo + (mode === 'fast' ? 1 : 0)));
      seconds[mode] += s;
      const scored = o.mc > 0 ? await scoreRows(model, rows, o, scoringSeed) : null;
      if (scored) seconds.scoring += scored.seconds;
      rows.forEach((row, i) => groups[mode].push({
        row, nll: scored ? scored.scores[i].nll : null, mcVar: scored ? scored.scores[i].mcVar : null, pair: `${o.seed}:${index}:${batchNo}:${i}`,
      }));
    }
    batchNo++;
  };
  let target = o.samples;
  let plan = null;
  if (target === 'auto') {
    while (groups.reference.length < o.pilot) await oneRound();
    const nll = groups.reference.concat(groups.fast).map((s) => s.nll);
    const sd = o.mc > 0 ? Math.sqrt(stats.meanVar(nll).variance) : NaN;
    const pairs = o.mc > 0 ? nllPairs(groups.reference, groups.fast) : null;
    const differenceSd = pairs ? Math.sqrt(stats.meanVar(pairs.map(([r, f]) => f - r)).variance) : sd * Math.SQRT2;
    const perSample = (seconds.reference + seconds.fast + seconds.scoring) / groups.reference.length; // one of each mode
    const needed = o.mc > 0 ? samplesNeeded(differenceSd, o.resolution) : o.pilot;
    const affordable = Math.floor(groups.reference.length + Math.max(0, (deadline - Date.now()) / 1000) / perSample);
    target = Math.max(o.pilot, Math.min(needed, affordable));
    plan = { pilotSamplesPerMode: groups.reference.length, nllSd: sd, nllDifferenceSd: differenceSd, paired: pairs !== null, secondsPerPair: perSample, neededPerMode: needed, affordablePerMode: affordable, targetPerMode: target };
    log(`  ${spec}: pilot ${groups.reference.length}/mode, per-sample NLL sd ${fmt(sd)}, ${pairs ? 'paired' : 'unpaired'} difference sd ${fmt(differenceSd)}, ${perSample.toFixed(3)} s per pair; ` +
      `${needed}/mode resolve ${o.resolution} nat, ${affordable}/mode fit the time budget → ${target}/mode`);
  }
  while (groups.reference.length < target && (groups.reference.length === 0 || Date.now() < deadline)) await oneRound();
  return { name: spec, groups, seconds, plan };
}

/** Table rows, NLL resolution and timings of one spec's result (from runSpec or a merge). */
function summarize(result, ctx) {
  const { reference, fast } = result.groups;
  const rows = compareGroups(reference, fast, ctx);
  const nllRow = rows.find((r) => r.key === 'nll');
  const mcVar = (g) => {
    const v = g.map((s) => s.mcVar).filter((x) => x !== null && x !== undefined);
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
  };
  const nll = reference.concat(fast).map((s) => s.nll).filter((x) => x !== null && x !== undefined);
  const n = [reference.length, fast.length];
  const t = result.seconds;
  const pairs = nllRow ? nllPairs(reference, fast) : null;
  return {
    name: result.name, n, rows,
    resolution: nllRow ? {
      se: nllRow.se, detectable: DETECT_FACTOR * nllRow.se, ci95: 1.959964 * nllRow.se,
      perSampleSd: Math.sqrt(stats.meanVar(nll).variance), monteCarloSd: mcVar(reference.concat(fast)) === null ? null : Math.sqrt(mcVar(reference.concat(fast))),
      paired: pairs !== null, differenceSd: pairs ? Math.sqrt(stats.meanVar(pairs.map(([r, f]) => f - r)).variance) : null,
    } : null,
    secondsPerSample: t ? { reference: t.reference / n[0], fast: t.fast / n[1], scoring: t.scoring / (n[0] + n[1]) } : null,
    plan: result.plan ?? null,
  };
}

// ---------------------------------------------------------------------------------------------
// Output: one JSON (settings, table, per-sample NLL) plus, per sampler:alg, the token ids of both
// groups in a binary file beside it (uint16 where they fit, brotli-compressed; 1.1 to 1.6 bytes per
// token), so that runs merge and tens of thousands of samples stay within a few MB per file.

function encodeGroups(groups) {
  const parts = [];
  const meta = {};
  for (const mode of ['reference', 'fast']) {
    const g = groups[mode];
    const width = g.length ? g[0].row.length : 0;
    const wide = g.some((s) => s.row.some((t) => t > 65535));
    const ids = wide ? new Int32Array(g.length * width) : new Uint16Array(g.length * width);
    g.forEach((s, i) => ids.set(s.row, i * width));
    meta[mode] = { count: g.length, width, dtype: wide ? 'int32' : 'uint16', bytes: ids.byteLength, nll: g.map((s) => s.nll), mcVar: g.map((s) => s.mcVar), pair: g.map((s) => s.pair ?? null) };
    parts.push(Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength));
  }
  const blob = zlib.brotliCompressSync(Buffer.concat(parts), { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 9 } });
  return { meta, blob };
}

function decodeGroups(meta, blob) {
  const raw = zlib.brotliDecompressSync(blob);
  let offset = 0;
  const out = {};
  for (const mode of ['reference', 'fast']) {
    const g = meta[mode];
    const bytes = raw.buffer.slice(raw.byteOffset + offset, raw.byteOffset + offset + g.bytes);
    offset += g.bytes;
    const ids = g.dtype === 'int32' ? new Int32Array(bytes) : new Uint16Array(bytes);
    out[mode] = Array.from({ length: g.count }, (_, i) => ({
      row: Array.from(ids.subarray(i * g.width, (i + 1) * g.width)), nll: g.nll[i], mcVar: g.mcVar[i], pair: g.pair ? g.pair[i] : null,
    }));
  }
  return out;
}

function rowsFileOf(out, name) {
  return `${out.replace(/\.json$/, '')}.${name.replace(':', '-')}.rows.br`;
}

const SETTINGS = ['model', 'vocab', 'ids', 'length', 'steps', 'semiSteps', 'blockSize', 'temperature', 'fastTemperature', 'batching', 'eta', 'mc', 'mcBatch', 'prompt', 'precision'];

// ---------------------------------------------------------------------------------------------

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      device: { type: 'string', default: 'auto' },
      model: { type: 'string' },
      length: { type: 'string', default: '256' },
      steps: { type: 'string', default: '128' },
      'semi-steps': { type: 'string', default: '8' },
      'block-size': { type: 'string', default: '16' },
      batch: { type: 'string', default: '64' },
      samples: { type: 'string', default: 'auto' },
      pilot: { type: 'string' },
      resolution: { type: 'string', default: '0.01' },
      'time-budget': { type: 'string', default: '0' },
      seed: { type: 'string', default: '1' },
      algs: { type: 'string', default: 'all' },
      mc: { type: 'string', default: '64' },
      'mc-batch': { type: 'string', default: '8' },
      temperature: { type: 'string', default: '1' },
      'fast-temperature': { type: 'string' },
      batching: { type: 'string', default: 'on' },
      eta: { type: 'string' },
      vocab: { type: 'string', default: '0' },
      prompt: { type: 'string' },
      permutations: { type: 'string', default: '199' },
      'top-k': { type: 'string', default: '64' },
      out: { type: 'string' },
      merge: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  const num = (name, lo = 0) => {
    const x = Number(values[name]);
    if (!Number.isFinite(x) || x < lo) throw new Error(`--${name} must be a number >= ${lo}, got ${values[name]}`);
    return x;
  };
  const algs = values.algs === 'all' ? ALL_ALGS : values.algs.split(',').map((s) => (s.includes(':') ? s : `fullDiff:${s}`));
  for (const a of algs) if (!ALL_ALGS.includes(a)) throw new Error(`--algs: unknown ${a} (one of ${ALL_ALGS.join(', ')})`);
  const batch = num('batch', 1);
  return {
    help: values.help,
    device: values.device,
    model: values.model ?? hdlm.DEMO_MODEL_PATH,
    length: num('length', 2),
    steps: num('steps', 1),
    semiSteps: num('semi-steps', 1),
    blockSize: num('block-size', 1),
    batch,
    samples: values.samples === 'auto' ? 'auto' : num('samples', 1),
    pilot: values.pilot ? num('pilot', 2) : Math.max(2 * batch, 64),
    resolution: num('resolution'),
    timeBudget: num('time-budget'),
    seed: BigInt(values.seed),
    algs,
    mc: num('mc'),
    mcBatch: num('mc-batch', 1),
    temperature: num('temperature'),
    fastTemperature: values['fast-temperature'] !== undefined ? num('fast-temperature') : undefined,
    batching: values.batching === 'on' ? true : values.batching === 'off' ? false : (() => { throw new Error('--batching must be on or off'); })(),
    eta: values.eta !== undefined ? num('eta') : undefined,
    vocab: num('vocab'),
    promptText: values.prompt ?? null,
    permutations: num('permutations', 1),
    topK: num('top-k', 1),
    out: values.out ?? null,
    merge: values.merge ? values.merge.split(',') : null,
  };
}

function printReport(doc, log) {
  log('');
  log(formatTable(doc.comparisons));
  log('');
  for (const c of doc.comparisons) {
    const r = c.resolution;
    const t = c.secondsPerSample;
    const parts = [];
    if (r) {
      parts.push(`NLL: SE of the difference ${fmt(r.se)} nats → detectable shift (5 %, power 80 %) ${fmt(r.detectable)} nats` +
        ` (target ${doc.settings.resolution ?? 'n/a'}: ${r.detectable <= (doc.settings.resolution ?? 0) ? 'resolved' : 'NOT resolved'}); ` +
        `per-sample SD ${fmt(r.perSampleSd)}${r.monteCarloSd !== null ? `, of which Monte-Carlo SD ${fmt(r.monteCarloSd)}` : ''}` +
        `${r.paired ? `; paired by scoring draws, SD of a pair's difference ${fmt(r.differenceSd)} (unpaired: ${fmt(r.perSampleSd * Math.SQRT2)})` : ''}`);
    }
    if (t) parts.push(`s/sample: reference ${t.reference.toFixed(4)}, fast ${t.fast.toFixed(4)}, scoring ${t.scoring.toFixed(4)}`);
    log(`${c.name}: ${parts.join('; ')}`);
  }
  const ps = doc.comparisons.flatMap((c) => c.rows.map((r) => r.pHolm)).filter((p) => p !== null);
  log(`\nsmallest Holm-adjusted p over ${ps.length} tests: ${fmtP(Math.min(...ps))}`);
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  if (o.help) {
    const lines = fs.readFileSync(__filename, 'utf8').split('\n').slice(2);
    console.log(lines.slice(0, lines.findIndex((l) => !l.startsWith('//'))).map((l) => l.slice(3)).join('\n'));
    return;
  }
  const log = (s) => console.log(s);
  let doc;
  if (o.merge) {
    const docs = o.merge.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
    for (const d of docs.slice(1)) {
      for (const k of SETTINGS) {
        if (JSON.stringify(d.settings[k]) !== JSON.stringify(docs[0].settings[k])) throw new Error(`--merge: setting ${k} differs between the files`);
      }
    }
    const merged = new Map();
    for (const [i, d] of docs.entries()) {
      for (const r of d.results) {
        const g = decodeGroups(r.groups, fs.readFileSync(path.join(path.dirname(o.merge[i]), r.rowsFile)));
        const m = merged.get(r.name) ?? { name: r.name, groups: { reference: [], fast: [] }, seconds: null };
        m.groups.reference.push(...g.reference);
        m.groups.fast.push(...g.fast);
        merged.set(r.name, m);
      }
    }
    doc = { settings: { ...docs[0].settings, merged: o.merge }, results: [...merged.values()] };
  } else {
    const api = evalApi();
    const info = prepareModelDir({ modelDir: o.model, length: o.length, vocab: o.vocab });
    try {
      const t0 = Date.now();
      const { model, device } = await hdlm.smartModelLoader(info.dir, { device: o.device, torchscriptCacheDir: path.join(info.dir, 'ts') });
      o.prompt = o.promptText ? hdlm.encode(o.promptText) : [];
      if (o.vocab && o.prompt.length) throw new Error('--prompt needs the full vocabulary');
      log(`model ${o.model}${o.vocab ? ` restricted to ${o.vocab} ids` : ''}, L = ${o.length}, device ${device} (${model.precision}), loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      // warm-up of both modes (CUDA graphs are captured on the third fast forward of a shape)
      for (const spec of new Set(o.algs.map((s) => `${s.split(':')[0]}:original`))) {
        await drawBatch(model, spec, { ...o, steps: 4, semiSteps: 2 }, true, 0n);
        await drawBatch(model, spec, { ...o, steps: 4, semiSteps: 2 }, false, 0n);
      }
      const start = Date.now();
      const results = [];
      for (const [i, spec] of o.algs.entries()) {
        const left = o.timeBudget > 0 ? o.timeBudget * 1000 - (Date.now() - start) : Infinity;
        const deadline = Date.now() + left / (o.algs.length - i);
        const r = await runSpec(model, spec, i, o, deadline, log);
        log(`  ${spec}: ${r.groups.reference.length} + ${r.groups.fast.length} samples in ${((r.seconds.reference + r.seconds.fast + r.seconds.scoring)).toFixed(1)} s`);
        results.push(r);
      }
      model.dispose();
      doc = {
        settings: {
          model: path.resolve(o.model), vocab: o.vocab, length: o.length, steps: o.steps, semiSteps: o.semiSteps, blockSize: o.blockSize,
          batch: o.batch, temperature: o.temperature, fastTemperature: o.fastTemperature ?? null, batching: o.batching, eta: o.eta ?? null, mc: o.mc, mcBatch: o.mcBatch,
          prompt: o.prompt, ids: { eos: info.eos, mask: info.mask, vocabSize: info.vocabSize }, precision: model.precision, device, seed: o.seed.toString(), resolution: o.resolution, timeBudget: o.timeBudget,
          runtime: hdlm.runtimeInfo(), evalEntry: api === hdlm ? 'root' : 'dist/eval',
        },
        results,
      };
    } finally {
      fs.rmSync(info.dir, { recursive: true, force: true });
    }
  }
  const ids = doc.settings.ids;
  const ctx = {
    from: doc.settings.prompt ? doc.settings.prompt.length : 0, eos: ids.eos, mask: ids.mask, vocabSize: ids.vocabSize,
    permutations: o.permutations, topK: o.topK, seed: 1, textEntropy: doc.settings.vocab ? null : evalApi().textEntropy,
  };
  doc.comparisons = adjust(doc.results.map((r) => summarize(r, ctx)));
  doc.settings.resolution ??= o.resolution;
  printReport(doc, log);
  if (o.out) {
    const results = doc.results.map((r) => {
      const { meta, blob } = encodeGroups(r.groups);
      const file = rowsFileOf(o.out, r.name);
      fs.writeFileSync(file, blob);
      log(`wrote ${file} (${(blob.length / 2 ** 20).toFixed(1)} MiB)`);
      return { name: r.name, seconds: r.seconds, plan: r.plan ?? null, rowsFile: path.basename(file), groups: meta };
    });
    fs.writeFileSync(o.out, JSON.stringify({ settings: doc.settings, comparisons: doc.comparisons, results }, (k, v) => (typeof v === 'bigint' ? v.toString() : v)));
    log(`wrote ${o.out}`);
  }
}

module.exports = { prepareModelDir, sampleStats, compareGroups, adjust, formatTable, runSpec, drawBatch, scoreRows, samplesNeeded, nllPairs, derive, evalApi, DETECT_FACTOR };

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
