'use strict';
// Seeded synthetic feature sets for the MAUVE tests. The same generator feeds
// test/fixtures/mauve/make-reference.js, which hands the features to the Python mauve-text package
// to record its outputs (test/fixtures/mauve/reference.json), so the features must stay bit-identical.

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

/** Standard normal draws (Box–Muller) from a uniform stream. */
function gaussian(uniform) {
  let spare = null;
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    const u = 1 - uniform();
    const w = uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * w);
    return r * Math.cos(2 * Math.PI * w);
  };
}

/**
 * `n` vectors of dimension `dim` (Float32Array) from a mixture of `components` Gaussians whose
 * centres are drawn from `centreSeed` (shared between two sets that should look alike) and moved
 * by `shift` along the first axis; `spread` is the noise scale around each centre.
 */
function mixtureFeatures({ n, dim, components = 5, centreSeed = 1, seed = 2, shift = 0, spread = 0.3, duplicates = 1 }) {
  const cg = gaussian(rng(centreSeed));
  const centres = Array.from({ length: components }, () => Float64Array.from({ length: dim }, () => cg()));
  const u = rng(seed);
  const g = gaussian(u);
  const out = [];
  while (out.length < n) {
    const c = centres[Math.floor(u() * components)];
    const row = new Float32Array(dim);
    for (let j = 0; j < dim; j++) row[j] = c[j] + spread * g() + (j === 0 ? shift : 0);
    // `duplicates` > 1 repeats each vector, as a model that writes the same text several times
    for (let r = 0; r < duplicates && out.length < n; r++) out.push(row.slice());
  }
  return out;
}

module.exports = { rng, gaussian, mixtureFeatures };
