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

  it('holds only dist/, native/, the install scripts, the build files, models/, prebuilds/, the docs and the server page', function () {
    const allowed = [
      /^dist\/([\w-]+\/)*[\w-]+\.(js|mjs|d\.ts)$/,
      /^native\/((napi|engine|engine\/models|engine\/samplers|cuda|libloader)\/[\w-]+\.(cc|h|cu)|jit\/[\w-]+\.py|sources\.json|prebuilds\.json)$/,
      /^scripts\/(build-native|build-config|embed-sources|find-libtorch|gyp-libtorch)\.js$/,
      /^scripts\/install-system-deps\.sh$/,
      /^models\/brown-epsilon\/(config\.json|model\.safetensors)$/,
      /^prebuilds\/(manifest\.json|[\w-]+\/hdlm_libloader\.node|[\w-]+\/[\w.-]+\/(hdlm\.node|hdlm\.libtorch\.json))$/,
      /^(CMakeLists\.txt|binding\.gyp|package\.json|README\.md|LICENSE)$/,
      /^docs\/[\w-]+\.md$/,
      /^lib\/server\/page\/[\w-]+\.(html|js|css)$/,
    ];
    const stray = files.filter((f) => !allowed.some((re) => re.test(f)));
    assert.deepStrictEqual(stray, [], `unexpected files in the package:\n${stray.join('\n')}`);
    for (const bad of [/^test\//, /^build\//, /^bench\//, /^examples\//, /^\.device/, /^\.ci\//, /^lib\/(?!server\/page\/)/, /\.tgz$/]) {
      assert.ok(!files.some((f) => bad.test(f)), `${bad} is not shipped`);
    }
  });

  it('holds everything the installed package needs', function () {
    const needed = [
      'package.json', 'README.md', 'LICENSE', 'CMakeLists.txt', 'binding.gyp',
      pkg.main.replace(/^\.\//, ''), pkg.types.replace(/^\.\//, ''), pkg.exports['.'].import.replace(/^\.\//, ''),
      ...Object.values(pkg.exports['./eval']).map((f) => f.replace(/^\.\//, '')),
      pkg.bin.hdlm.replace(/^\.\//, ''),
      // the install script and what it requires
      'scripts/build-native.js', 'scripts/find-libtorch.js', 'scripts/gyp-libtorch.js',
      // what chooses and loads a prebuild (also at install)
      'dist/native/libtorch.js', 'dist/native/prebuilds.js', 'native/libloader/libloader.cc',
      // what both builds read: the one source list and the script that embeds jit/ and cuda/
      'native/sources.json', 'scripts/embed-sources.js', 'scripts/build-config.js',
      'models/brown-epsilon/config.json', 'models/brown-epsilon/model.safetensors',
    ];
    // every file the build definition names
    const build = require('../native/sources.json');
    needed.push(...build.sources, ...build.embedded);
    for (const f of needed) assert.ok(files.includes(f), `${f} is shipped`);
    // every dist/**/*.js module the entry points load is there (compiled from lib/**/*.ts)
    const libs = require('fs').readdirSync(path.join(root, 'lib'), { recursive: true })
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
      .map((f) => `dist/${f.split(path.sep).join('/').replace(/\.ts$/, '.js')}`);
    for (const f of libs) assert.ok(files.includes(f), `${f} is shipped`);
    // the install script's local requires resolve inside the package
    const src = require('fs').readFileSync(path.join(root, 'scripts', 'build-native.js'), 'utf8');
    for (const [, dep] of src.matchAll(/require\('\.\/([\w-]+)'\)/g)) assert.ok(files.includes(`scripts/${dep}.js`), `scripts/${dep}.js (required by build-native.js)`);
  });

  it("the exports map: 'hdlm' is the core, 'hdlm/eval' the evaluation, for require and import alike", function () {
    // the package resolves its own name through its exports map (Node's self-reference)
    const script = `
      const core = require('hdlm');
      const ev = require('hdlm/eval');
      import('hdlm/eval').then(async (evm) => {
        const corem = await import('hdlm');
        console.log(JSON.stringify({
          core: Object.keys(core).sort(), eval: Object.keys(ev).sort(),
          sameEval: Object.keys(ev).every((k) => evm[k] === ev[k]), sameCore: Object.keys(core).every((k) => corem[k] === core[k]),
        }));
      });`;
    const r = spawnSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8', timeout: 60000 });
    assert.strictEqual(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    for (const name of ['smartModelLoader', 'fullDiff', 'semiDiff', 'gammaSample', 'tokenizer', 'HdlmError', 'DEMO_MODEL_PATH', 'listCachedModels']) {
      assert.ok(out.core.includes(name), `hdlm exports ${name}`);
    }
    for (const name of ['evaluatePerplexity', 'evaluateGeneration', 'textEntropy', 'loadGpt2', 'loadHubDataset', 'readParquetStringColumn', 'chunkTexts']) {
      assert.ok(out.eval.includes(name), `hdlm/eval exports ${name}`);
      assert.ok(!out.core.includes(name), `hdlm does not export ${name}`);
    }
    assert.ok(out.sameEval && out.sameCore, 'import and require give the same functions');
    const bin = spawnSync(process.execPath, [path.join(root, pkg.bin.hdlm), '--version'], { encoding: 'utf8' });
    assert.strictEqual(bin.stdout.trim(), pkg.version, bin.stderr);
  });

  it('a prebuild, when present, ships with its manifest entry, the manifest and the library opener', function () {
    const prebuilds = files.filter((f) => /^prebuilds\/.*\/hdlm\.node$/.test(f));
    // assembled by npm run package:prebuild (the manifest and the opener); a clone holds only the
    // committed prebuilds built elsewhere until then
    if (!prebuilds.length || !require('fs').existsSync(path.join(root, 'prebuilds', 'manifest.json'))) this.skip();
    assert.ok(files.includes('prebuilds/manifest.json'), 'prebuilds/manifest.json');
    for (const f of prebuilds) {
      assert.ok(files.includes(path.posix.join(path.posix.dirname(f), 'hdlm.libtorch.json')), `${f} has hdlm.libtorch.json`);
      assert.ok(files.includes(path.posix.join(path.posix.dirname(path.posix.dirname(f)), 'hdlm_libloader.node')), `${f} has the opener beside its folder`);
    }
  });
});
