'use strict';
// Package hygiene: `npm pack` ships what an installed package needs (the compiled library, the
// native sources and build files for the source fallback, the install-time scripts, the demo
// model, the prebuilt binaries) and nothing else: no tests, fixtures, build tree, benchmarks,
// examples or dev-only scripts.
const assert = require('assert');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const pkg = require('../package.json');

function packList() {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', timeout: 120000 });
  assert.strictEqual(r.status, 0, r.stderr);
  return JSON.parse(r.stdout)[0].files.map((f) => f.path).sort();
}

describe('package: npm pack contents', function () {
  let files;
  before(function () {
    files = packList();
  });

  it('holds only dist/, native/, the install scripts, the build files, models/, prebuilds/ and the top-level docs', function () {
    const allowed = [
      /^dist\/[\w-]+\.(js|mjs|d\.ts)$/,
      /^native\/((napi|engine|engine\/models|engine\/samplers|cuda)\/[\w-]+\.(cc|h|cu)|jit\/[\w-]+\.py|sources\.json)$/,
      /^scripts\/(build-native|build-config|embed-sources|find-libtorch|gyp-libtorch|prebuild-check)\.js$/,
      /^scripts\/install-system-deps\.sh$/,
      /^models\/brown-epsilon\/(config\.json|model\.safetensors)$/,
      /^prebuilds\/[\w-]+\/(hdlm\.node|hdlm\.libtorch\.json)$/,
      /^(CMakeLists\.txt|binding\.gyp|package\.json|README\.md|LICENSE)$/,
    ];
    const stray = files.filter((f) => !allowed.some((re) => re.test(f)));
    assert.deepStrictEqual(stray, [], `unexpected files in the package:\n${stray.join('\n')}`);
    for (const bad of [/^test\//, /^build\//, /^bench\//, /^examples\//, /^\.device/, /^\.ci\//, /^lib\//, /\.tgz$/]) {
      assert.ok(!files.some((f) => bad.test(f)), `${bad} is not shipped`);
    }
  });

  it('holds everything the installed package needs', function () {
    const needed = [
      'package.json', 'README.md', 'LICENSE', 'CMakeLists.txt', 'binding.gyp',
      pkg.main.replace(/^\.\//, ''), pkg.types.replace(/^\.\//, ''), pkg.exports['.'].import.replace(/^\.\//, ''),
      pkg.bin.hdlm.replace(/^\.\//, ''),
      // the install script and what it requires
      'scripts/build-native.js', 'scripts/find-libtorch.js', 'scripts/prebuild-check.js', 'scripts/gyp-libtorch.js',
      // what both builds read: the one source list and the script that embeds jit/ and cuda/
      'native/sources.json', 'scripts/embed-sources.js', 'scripts/build-config.js',
      'models/brown-epsilon/config.json', 'models/brown-epsilon/model.safetensors',
    ];
    // every file the build definition names
    const build = require('../native/sources.json');
    needed.push(...build.sources, ...build.embedded);
    for (const f of needed) assert.ok(files.includes(f), `${f} is shipped`);
    // every dist/*.js module the entry points load is there (compiled from lib/*.ts)
    const libs = require('fs').readdirSync(path.join(root, 'lib')).filter((f) => f.endsWith('.ts')).map((f) => `dist/${f.replace(/\.ts$/, '.js')}`);
    for (const f of libs) assert.ok(files.includes(f), `${f} is shipped`);
    // the install script's local requires resolve inside the package
    const src = require('fs').readFileSync(path.join(root, 'scripts', 'build-native.js'), 'utf8');
    for (const [, dep] of src.matchAll(/require\('\.\/([\w-]+)'\)/g)) assert.ok(files.includes(`scripts/${dep}.js`), `scripts/${dep}.js (required by build-native.js)`);
  });

  it('a prebuild, when present, ships with its libtorch record', function () {
    const prebuilds = files.filter((f) => /^prebuilds\/.*\.node$/.test(f));
    if (!prebuilds.length) this.skip(); // none built in this checkout (npm run package:prebuild)
    for (const f of prebuilds) assert.ok(files.includes(path.posix.join(path.posix.dirname(f), 'hdlm.libtorch.json')), `${f} has hdlm.libtorch.json`);
  });
});
