#!/usr/bin/env node
'use strict';
// Infilling quality on the trained brown-epsilon model (CPU, seeded), on held-out Brown text
// (the last 5 % of the chunks, which the model never saw):
//   1. fit: sequences whose middle was sampled between the true prefix and suffix score an MC
//      NLL bound (evaluatePerplexity) no worse than 10 % above the original sequences;
//   2. the suffix helps: the same middles sampled from the prefix alone (then the true suffix
//      put back) score worse;
//   3. the suffix is used: middles sampled with suffix A and with suffix B (same prefix) differ
//      — a permutation test on their token histograms (χ² distance) rejects at 1 %.
// Prints a table and JSON.
//   node bench/infill-quality.js [--chunks 24] [--span 96:160] [--steps 64] [--samples 32] [--mc 100] [--seed 1] [--json]
const path = require('path');
const { parseArgs } = require('util');
const { smartModelLoader, fullDiff } = require('..');
const { evaluatePerplexity, perplexityChunks } = require('../dist/eval');

const MODEL = path.join(__dirname, '..', 'models', 'brown-epsilon');

// χ² distance between the token histograms of two groups of rows.
function chi2(groupA, groupB) {
  const a = new Map();
  const b = new Map();
  for (const row of groupA) for (const t of row) a.set(t, (a.get(t) || 0) + 1);
  for (const row of groupB) for (const t of row) b.set(t, (b.get(t) || 0) + 1);
  const na = groupA.reduce((n, r) => n + r.length, 0);
  const nb = groupB.reduce((n, r) => n + r.length, 0);
  let s = 0;
  for (const t of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(t) || 0;
    const y = b.get(t) || 0;
    const ea = ((x + y) * na) / (na + nb);
    const eb = ((x + y) * nb) / (na + nb);
    s += (x - ea) ** 2 / ea + (y - eb) ** 2 / eb;
  }
  return s;
}

const mulberry32 = require('../test/helpers/stats').mulberry32; // seeded uniforms in [0, 1)

/** Permutation p-value of the χ² distance between the two groups (rows exchanged between groups). */
function permutationTest(groupA, groupB, permutations, seed) {
  const observed = chi2(groupA, groupB);
  const all = [...groupA, ...groupB];
  const r = mulberry32(seed);
  let atLeast = 0;
  for (let k = 0; k < permutations; k++) {
    for (let i = all.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [all[i], all[j]] = [all[j], all[i]];
    }
    if (chi2(all.slice(0, groupA.length), all.slice(groupA.length)) >= observed) atLeast++;
  }
  return { observed, p: (atLeast + 1) / (permutations + 1) };
}

async function infillQuality(o) {
  const { model } = await smartModelLoader(MODEL, { device: 'cpu', ...(o.torchscriptCacheDir ? { torchscriptCacheDir: o.torchscriptCacheDir } : {}) });
  try {
    const L = model.length;
    const [from, to] = o.span;
    const chunks = perplexityChunks({ dataset: 'brown', lastFraction: 0.05 }, L).slice(0, o.chunks);
    const sampling = { model, steps: o.steps, alg: 'original', reference: false };
    const infilled = [];
    const prefixOnly = [];
    for (const [i, c] of chunks.entries()) {
      const [withSuffix] = await fullDiff({ ...sampling, seed: o.seed + i, prompt: c.slice(0, from), fixed: [{ at: to, tokens: c.slice(to) }], contextLength: L });
      infilled.push(withSuffix);
      const [noSuffix] = await fullDiff({ ...sampling, seed: o.seed + i, prompt: c.slice(0, from), contextLength: to });
      prefixOnly.push([...noSuffix, ...c.slice(to)]);
    }
    const score = async (rows) => (await evaluatePerplexity({ model, chunks: rows, monteCarloTimesteps: o.mc, seed: o.seed })).nll;
    const nllOriginal = await score(chunks);
    const nllInfilled = await score(infilled);
    const nllPrefixOnly = await score(prefixOnly);

    // suffix A vs suffix B, same prefix (chunk 0's), middles sampled `samples` times each
    const prefix = chunks[0].slice(0, from);
    const sufA = chunks[0].slice(to);
    const sufB = chunks[1].slice(to);
    const middles = async (suffix, seed) => (await fullDiff({ ...sampling, seed, batchSize: o.samples, prompt: prefix, fixed: [{ at: to, tokens: suffix }], contextLength: L }))
      .map((row) => row.slice(from, to));
    const a = await middles(sufA, o.seed + 1000);
    const b = await middles(sufB, o.seed + 2000);
    const test = permutationTest(a, b, o.permutations, o.seed);
    return {
      chunks: chunks.length, span: [from, to], steps: o.steps, samples: o.samples, mc: o.mc,
      nllOriginal, nllInfilled, nllPrefixOnly,
      infilledRatio: nllInfilled / nllOriginal, prefixOnlyRatio: nllPrefixOnly / nllOriginal,
      suffixTest: { chi2: test.observed, p: test.p, permutations: o.permutations },
    };
  } finally {
    model.dispose();
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      chunks: { type: 'string', default: '24' },
      span: { type: 'string', default: '96:160' },
      steps: { type: 'string', default: '64' },
      samples: { type: 'string', default: '32' },
      mc: { type: 'string', default: '100' },
      permutations: { type: 'string', default: '999' },
      seed: { type: 'string', default: '1' },
      json: { type: 'boolean', default: false },
    },
  });
  const [from, to] = values.span.split(':').map(Number);
  const o = {
    chunks: Number(values.chunks), span: [from, to], steps: Number(values.steps), samples: Number(values.samples),
    mc: Number(values.mc), permutations: Number(values.permutations), seed: Number(values.seed),
  };
  const t0 = Date.now();
  const r = await infillQuality(o);
  const pass = (ok) => (ok ? 'yes' : 'NO');
  console.log(`infill quality, brown-epsilon, CPU: ${r.chunks} held-out chunks, middle ${from}..${to - 1} sampled in ${r.steps} steps, MC ${r.mc}`);
  console.log('  sequences                       MC NLL bound   / original   check');
  console.log(`  original (true middle)          ${r.nllOriginal.toFixed(4)}        1.000`);
  console.log(`  infilled (prefix + suffix)      ${r.nllInfilled.toFixed(4)}        ${r.infilledRatio.toFixed(3)}      <= 1.10: ${pass(r.infilledRatio <= 1.1)}`);
  console.log(`  prefix only (suffix ignored)    ${r.nllPrefixOnly.toFixed(4)}        ${r.prefixOnlyRatio.toFixed(3)}      worse than infilled: ${pass(r.nllPrefixOnly > r.nllInfilled)}`);
  console.log(`  suffix A vs B (${r.samples} + ${r.samples} middles): χ² ${r.suffixTest.chi2.toFixed(1)}, permutation p = ${r.suffixTest.p.toFixed(4)}   rejects at 1 %: ${pass(r.suffixTest.p < 0.01)}`);
  console.log(`  (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  if (values.json) console.log(JSON.stringify(r));
}

module.exports = { infillQuality, permutationTest, chi2 };
if (require.main === module) main().catch((e) => { console.error(e); process.exit(1); });
