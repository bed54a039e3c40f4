'use strict';
// Configs as hostile input: bounded size, YAML parsed in linear time (duplicate keys still
// found), alias cycles, alias bombs and deep nesting refused as HDLM_BAD_FILE, and large YAML
// parsed off the event loop when a model loads.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { readConfigFile, readConfigFileAsync, MAX_CONFIG_BYTES } = require('../dist/core/config');
const { smartModelLoader, HdlmError } = require('../dist');
const { makeEpsilonCheckpoint } = require('./helpers/safetensors-writer');
const { tempDir } = require('./helpers/reference');

const keys = (n, prefix = 'k') => Array.from({ length: n }, (_, i) => `${prefix}${i}: ${i}\n`).join('');

describe('configs: bounded, linear-time YAML, every failure an HdlmError', function () {
  this.timeout(120000);
  let tmp;
  before(() => {
    tmp = tempDir('cfg');
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const write = (name, text) => {
    const p = path.join(tmp, name);
    fs.writeFileSync(p, text);
    return p;
  };
  const bad = (re) => (e) => e instanceof HdlmError && e.code === 'HDLM_BAD_FILE' && re.test(e.message);

  it('refuses configs larger than the bound before parsing them (YAML and JSON)', async () => {
    const big = keys(Math.ceil(MAX_CONFIG_BYTES / 9) + 10);
    assert.ok(big.length > MAX_CONFIG_BYTES);
    for (const name of ['big.yaml', 'big.json']) {
      const p = write(name, big);
      assert.throws(() => readConfigFile(p), bad(/more than the 1048576 bytes/));
      await assert.rejects(readConfigFileAsync(p), bad(/more than the 1048576 bytes/));
    }
  });

  it('finds duplicate keys at any position and depth (the check is linear, no longer the library\'s pairwise one)', async () => {
    const cases = [
      ['first and last', keys(3000) + 'k0: again\n', /duplicate key "k0"/],
      ['neighbours', 'a: 1\na: 2\n', /duplicate key "a"/],
      ['nested', 'model:\n  x: 1\n  y: 2\n  x: 3\n', /duplicate key "x"/],
      ['flow map', 'm: {p: 1, q: 2, p: 3}\n', /duplicate key "p"/],
      ['number and string', 'm:\n  1: a\n  "1": b\n', /duplicate key "1"/],
    ];
    for (const [label, text, re] of cases) {
      const p = write('dup.yaml', text);
      assert.throws(() => readConfigFile(p), bad(re), label);
    }
    // same key in different mappings is fine
    assert.deepStrictEqual(readConfigFile(write('ok.yaml', 'a: {x: 1}\nb: {x: 2}\n')), { a: { x: 1 }, b: { x: 2 } });
  });

  it('alias cycles, alias bombs and deep nesting are HDLM_BAD_FILE (no TypeError, no stack overflow)', async () => {
    const laughs = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 8; i++) laughs.push(`${'abcdefgh'[i]}: &${'abcdefgh'[i]} [${Array(10).fill(`*${'abcdefgh'[i - 1]}`).join(', ')}]`);
    const cases = [
      ['self list', 'a: &x [*x]\n', /alias refers to a node that contains it/],
      ['self map', 'a: &x {b: *x}\n', /alias refers to a node that contains it/],
      ['root', '&r {model: {cfg: *r}}\n', /alias refers to a node that contains it/],
      ['indirect', 'a: &p {b: &q {c: [*p]}}\n', /alias refers to a node that contains it/],
      ['bomb', laughs.join('\n') + '\n', /alias/i],
      ['deep flow', `a: ${'['.repeat(200)}${']'.repeat(200)}\n`, /nested more than 64 levels/],
      ['very deep flow', `a: ${'['.repeat(100000)}${']'.repeat(100000)}\n`, /./],
    ];
    for (const [label, text, re] of cases) {
      const p = write('alias.yaml', text);
      assert.throws(() => readConfigFile(p), bad(re), label);
      await assert.rejects(readConfigFileAsync(p), bad(re), label);
    }
    const deepJson = write('deep.json', `{"a": ${'['.repeat(5000)}${']'.repeat(5000)}}`);
    assert.throws(() => readConfigFile(deepJson), bad(/nested more than 64 levels/));
    // shared (non-cyclic) aliases are fine
    assert.deepStrictEqual(readConfigFile(write('shared.yaml', 'd: &d {x: 1}\na: *d\nb: [*d, *d]\n')), { d: { x: 1 }, a: { x: 1 }, b: [{ x: 1 }, { x: 1 }] });
  });

  it('a large YAML config is parsed off the event loop (timers keep firing while it parses)', async () => {
    const text = keys(60000); // about 700 KB of unique keys
    assert.ok(text.length < MAX_CONFIG_BYTES && text.length > 600000);
    const p = write('large.yaml', text);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const ticksBefore = ticks;
    const cfg = await readConfigFileAsync(p);
    clearInterval(timer);
    assert.strictEqual(Object.keys(cfg).length, 60000);
    assert.strictEqual(cfg.k59999, 59999);
    assert.ok(ticks - ticksBefore >= 1, 'the event loop was blocked during the parse');
    // a duplicate found in the worker is the same error
    await assert.rejects(readConfigFileAsync(write('large-dup.yaml', text + 'k7: 1\n')), bad(/duplicate key "k7"/));
  });

  it('smartModelLoader refuses such configs as HDLM_BAD_FILE', async () => {
    const made = makeEpsilonCheckpoint(path.join(tmp, 'm'), { hiddenSize: 8, nHeads: 2, nBlocks: 1, length: 16, vocabTokens: 20 });
    fs.rmSync(made.configPath);
    for (const text of ['model: &m {inner: *m}\n', keys(1000) + 'k3: x\n', keys(130000)]) {
      fs.writeFileSync(path.join(made.dir, 'config.yaml'), text);
      await assert.rejects(smartModelLoader(made.dir, { device: 'cpu', useCache: false }), bad(/Invalid config file/));
    }
  });
});
