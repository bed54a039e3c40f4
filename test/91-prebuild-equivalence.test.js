'use strict';
// The shipped binary is the tested one: the prebuild for this machine's libtorch (node-gyp through
// binding.gyp, `npm run package:prebuild`) and the cmake-js build (CMakeLists.txt, what `npm ci` builds and the
// rest of the suite runs) are built from one definition (native/sources.json), and must sample
// identically: every epsilon sampler and algorithm in both modes, the shifted samplers, the gamma
// samplers and forward, seeded, on tiny CPU models. Each binary is loaded in its own process
// (test/helpers/sampler-outputs.js), the way lib/ loads any addon.
//
// Without a prebuild (or with one older than native/) the test is skipped, saying why; .ci/run
// runs it after `npm run package:prebuild` with HDLM_EXPECT_PREBUILD=1, which turns both into
// failures.
const assert = require('assert');
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const cmakeBuild = path.join(root, 'build', 'Release', 'hdlm.node');
const { locateLibtorch } = require('../dist/native/libtorch');
const { readManifest, selectPrebuild } = require('../dist/native/prebuilds');

// the package's prebuild for the libtorch found here, or null
function prebuildHere() {
  const manifest = readManifest(root);
  const torch = locateLibtorch().found;
  if (!manifest || typeof manifest === 'string' || !torch) return null;
  const choice = selectPrebuild(manifest, torch);
  return choice.ok ? path.join(root, 'prebuilds', choice.entry.file) : null;
}
const prebuild = prebuildHere();
const expectPrebuild = process.env.HDLM_EXPECT_PREBUILD === '1';

// The newest file the binaries are built from.
function newestSource() {
  const files = [path.join(root, 'binding.gyp'), path.join(root, 'CMakeLists.txt')];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const f = path.join(dir, e.name);
      if (e.isDirectory()) walk(f);
      else files.push(f);
    }
  };
  walk(path.join(root, 'native'));
  return files.reduce((a, f) => (fs.statSync(f).mtimeMs > fs.statSync(a).mtimeMs ? f : a));
}

function outputsOf(which, file) {
  const r = spawnSync(process.execPath, [path.join(__dirname, 'helpers', 'sampler-outputs.js'), which], {
    cwd: root,
    encoding: 'utf8',
    timeout: 600000,
    maxBuffer: 64 << 20,
  });
  const line = (r.stdout || '').split('\n').find((l) => l.startsWith('RESULT:'));
  assert.ok(line, `${path.relative(root, file)}: the child printed no result (exit ${r.status ?? r.signal})\n${r.stderr}`);
  return JSON.parse(line.slice('RESULT:'.length));
}

describe('prebuild: the prebuild samples exactly as the cmake-js build', function () {
  this.timeout(1200000);
  let built;
  let pre;

  before(function () {
    const skip = (why) => {
      if (expectPrebuild) assert.fail(`HDLM_EXPECT_PREBUILD=1, but ${why}`);
      console.log(`      skipped: ${why}`);
      this.skip();
    };
    if (!prebuild || !fs.existsSync(prebuild)) return skip('there is no prebuild for the libtorch found here in prebuilds/manifest.json (npm run package:prebuild builds it)');
    const newest = newestSource();
    if (fs.statSync(prebuild).mtimeMs < fs.statSync(newest).mtimeMs) {
      return skip(`the prebuild is older than ${path.relative(root, newest)} (npm run package:prebuild rebuilds it)`);
    }
    assert.ok(fs.existsSync(cmakeBuild), `${path.relative(root, cmakeBuild)} exists (npm run build:native)`);
    built = outputsOf('source', cmakeBuild);
    pre = outputsOf('prebuild', prebuild);
  });

  it('each child loaded the binary it was given, the prebuild through its libtorch check', function () {
    assert.strictEqual(built.binary.path, cmakeBuild);
    assert.strictEqual(built.binary.kind, 'source');
    assert.strictEqual(pre.binary.path, prebuild);
    assert.strictEqual(pre.binary.kind, 'prebuild');
  });

  it('every case ran (no errors compared as "equal")', function () {
    const failed = Object.entries(built.cases).filter(([, v]) => !Array.isArray(v) && typeof v !== 'string');
    assert.deepStrictEqual(failed, []);
    assert.ok(Object.keys(built.cases).length >= 30, `${Object.keys(built.cases).length} cases`);
  });

  it('identical logits and tokens, case by case', function () {
    assert.deepStrictEqual(Object.keys(pre.cases), Object.keys(built.cases));
    for (const [name, value] of Object.entries(built.cases)) {
      assert.deepStrictEqual(pre.cases[name], value, `${name}: the prebuild differs from the cmake-js build`);
    }
  });
});
