'use strict';
// The package as users get it: `npm pack`, the tarball installed into an empty project with
// `npm install <tgz>`, then the quick-start through the CLI there (`npx hdlm generate` with the
// shipped demo model, offline; `npx hdlm info --json` reporting the libtorch in use). With a
// prebuild in the tarball (`npm run package:prebuild` first, as .ci/run does) the install must
// use it and compile nothing; a prebuild whose manifest entry is faked to another libtorch
// version is then refused with the clear error, and `npm rebuild hdlm --build-from-source` (the command
// that error gives) builds from source and works.
//
// Slow (npm install from the registry, a native build): runs only with HDLM_TEST_TARBALL=1,
// which .ci/run sets for this file after `npm test` and the prebuild (with
// HDLM_TARBALL_EXPECT_PREBUILD=1: the tarball must then ship the prebuild).
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const enabled = process.env.HDLM_TEST_TARBALL === '1';
const PROMPT = 'The future';
const GEN = ['generate', PROMPT, '--steps', '8', '--context-length', '32', '--seed', '1'];

describe('tarball: npm pack, install into an empty project, run the quick-start', function () {
  this.timeout(15 * 60 * 1000);
  let tmp;
  let project;
  let installed;
  let tarball;
  let hasPrebuild;
  let env;

  const run = (cmd, args, opts = {}) => {
    const t0 = Date.now();
    const r = spawnSync(cmd, args, { cwd: project, env, encoding: 'utf8', timeout: 10 * 60 * 1000, ...opts });
    if (r.error) throw r.error;
    r.ms = Date.now() - t0;
    r.all = `$ ${cmd} ${args.join(' ')}\nexit ${r.status} (signal ${r.signal})\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    return r;
  };
  const hdlm = (args) => run('npx', ['--no-install', 'hdlm', ...args]);

  before(function () {
    if (!enabled) this.skip();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-tarball-'));
    project = path.join(tmp, 'project');
    fs.mkdirSync(project);
    installed = path.join(project, 'node_modules', 'hdlm');
    env = { ...process.env, HDLM_CACHE: path.join(tmp, 'ts-cache'), HF_HUB_CACHE: path.join(tmp, 'hub'), HF_HUB_OFFLINE: '1', HDLM_NUM_THREADS: '2' };
    for (const k of ['HDLM_BUILD_FROM_SOURCE', 'npm_config_build_from_source', 'HDLM_PREBUILD', 'LIBTORCH', 'Torch_DIR']) delete env[k];
  });
  after(function () {
    if (tmp && !process.env.HDLM_KEEP_TARBALL_TEST) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('npm pack writes a tarball', function () {
    const r = run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: root });
    assert.strictEqual(r.status, 0, r.all);
    const info = JSON.parse(r.stdout.slice(r.stdout.indexOf('[')))[0];
    tarball = path.join(tmp, info.filename);
    assert.ok(fs.existsSync(tarball), tarball);
    const files = info.files.map((f) => f.path);
    hasPrebuild = files.some((f) => /^prebuilds\/linux-x64\/torch1\.13-cpu-cxx11\/hdlm\.node$/.test(f));
    if (process.env.HDLM_TARBALL_EXPECT_PREBUILD === '1') {
      assert.ok(hasPrebuild, 'the tarball ships prebuilds/linux-x64/torch1.13-cpu-cxx11/hdlm.node (.ci/run builds it first)');
      assert.ok(files.includes('prebuilds/linux-x64/torch1.13-cpu-cxx11/hdlm.libtorch.json'), 'with its manifest entry');
      assert.ok(files.includes('prebuilds/manifest.json') && files.includes('prebuilds/linux-x64/hdlm_libloader.node'), 'the manifest and the library opener');
    }
    assert.ok(!files.some((f) => /^(test|build|bench)\//.test(f)), 'no tests or build tree');
    console.log(`      ${info.filename}: ${(info.size / 1e6).toFixed(1)} MB, ${files.length} files, prebuild: ${hasPrebuild ? 'yes' : 'no'}`);
  });

  it('npm install <tarball> in an empty project: uses the prebuild (or builds from source without one)', function () {
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'hdlm-tarball-smoke', version: '1.0.0', private: true }));
    const r = run('npm', ['install', tarball, '--foreground-scripts', '--no-audit', '--no-fund']);
    assert.strictEqual(r.status, 0, r.all);
    console.log(`      npm install: ${(r.ms / 1000).toFixed(0)} s`);
    if (hasPrebuild) {
      assert.match(r.stdout + r.stderr, /hdlm: using the prebuilt binary prebuilds\/linux-x64\/torch1\.13-cpu-cxx11\/hdlm\.node .*nothing to compile/);
      assert.ok(!fs.existsSync(path.join(installed, 'build')), 'nothing was compiled');
    } else {
      assert.match(r.stdout + r.stderr, /hdlm: building from source/);
      assert.ok(fs.existsSync(path.join(installed, 'build', 'Release', 'hdlm.node')));
    }
    assert.ok(!fs.existsSync(path.join(installed, 'test')));
  });

  let text;
  it('npx hdlm generate prints text from the shipped demo model (offline)', function () {
    const r = hdlm(GEN);
    assert.strictEqual(r.status, 0, r.all);
    text = r.stdout;
    assert.ok(text.startsWith(PROMPT), r.all);
    assert.ok(text.trim().length > PROMPT.length + 10, r.all);
    // the same text the checkout's own build prints with these settings
    const here = spawnSync(process.execPath, [path.join(root, 'dist', 'cli', 'main.js'), ...GEN], { env, encoding: 'utf8' });
    assert.strictEqual(here.status, 0, here.stderr);
    assert.strictEqual(text, here.stdout, 'installed package and checkout agree');
  });

  it('npx hdlm info --json reports the libtorch in use and the binary', function () {
    const r = hdlm(['info', '--json']);
    assert.strictEqual(r.status, 0, r.all);
    const info = JSON.parse(r.stdout);
    assert.match(info.libtorchVersion, /^\d+\.\d+\.\d+$/);
    assert.ok(info.libtorch && fs.existsSync(info.libtorch.file), `libtorch file in use: ${JSON.stringify(info.libtorch)}`);
    assert.match(path.basename(info.libtorch.file), /^libtorch_cpu\.so/);
    assert.strictEqual(info.libtorch.version.split('.').slice(0, 2).join('.'), info.libtorchVersion.split('.').slice(0, 2).join('.'));
    assert.strictEqual(info.binary.kind, hasPrebuild ? 'prebuild' : 'source');
    assert.ok(info.binary.path.startsWith(installed + path.sep), info.binary.path);
    if (hasPrebuild) {
      const manifest = JSON.parse(fs.readFileSync(path.join(installed, 'prebuilds', 'manifest.json'), 'utf8'));
      const entry = manifest.prebuilds.find((e) => e.id === info.binary.prebuild);
      assert.ok(entry, `hdlm info names a prebuild of the manifest: ${info.binary.prebuild}`);
      assert.deepStrictEqual(info.binary.builtFor, entry.libtorch);
      assert.strictEqual(info.binary.libtorch.libDir, info.libtorch.dir, 'runs on the libtorch it was chosen for');
      assert.match(info.binary.reason, /is built for libtorch .*, the libtorch found/);
    }
    const plain = hdlm(['info']);
    assert.strictEqual(plain.status, 0, plain.all);
    assert.ok(plain.stdout.includes(info.libtorch.file), plain.stdout);
  });

  describe('a prebuild recorded for another libtorch (faked manifest entry)', function () {
    before(function () {
      if (!hasPrebuild) this.skip();
      const manifestFile = path.join(installed, 'prebuilds', 'manifest.json');
      const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
      for (const e of manifest.prebuilds) e.libtorch.version = '2.99.0';
      fs.writeFileSync(manifestFile, JSON.stringify(manifest, null, 2));
    });

    it('is refused with a clear error by the CLI and the API, not a crash', function () {
      for (const args of [['info'], GEN]) {
        const r = hdlm(args);
        assert.strictEqual(r.status, 1, r.all);
        assert.strictEqual(r.signal, null);
        assert.strictEqual(r.stdout, '');
        assert.match(r.stderr, /^hdlm: no prebuilt hdlm binary fits the libtorch found: \/\S+ \(through \w+\) is libtorch \d+\.\d+\.\d+ \(CPU, C\+\+11 ABI\)\. The package has prebuilds for: torch1\.13-cpu-cxx11 \(linux-x64, libtorch 2\.99\.0 \(CPU, C\+\+11 ABI\)\)/);
        assert.match(r.stderr, /npm rebuild hdlm --build-from-source/);
        assert.doesNotMatch(r.stderr, /^\s+at /m);
      }
      const api = run(process.execPath, ['-e', `try { require('hdlm').runtimeInfo(); console.log('loaded'); } catch (e) { console.log(e.code + ' ' + e.name); }`]);
      assert.strictEqual(api.stdout.trim(), 'HDLM_UNSUPPORTED HdlmError', api.all);
    });

    it('npm rebuild hdlm --build-from-source (the fix the error gives) builds it from source, and it works', function () {
      const r = run('npm', ['rebuild', 'hdlm', '--build-from-source', '--foreground-scripts']);
      assert.strictEqual(r.status, 0, r.all);
      console.log(`      npm rebuild --build-from-source: ${(r.ms / 1000).toFixed(0)} s`);
      // the flag reached the install script (not merely the fallback from the mismatching prebuild)
      assert.match(r.stdout + r.stderr, /hdlm: building from source \(asked by --build-from-source\)/);
      assert.doesNotMatch(r.stdout + r.stderr, /does not match this machine's libtorch/);
      assert.ok(fs.existsSync(path.join(installed, 'build', 'Release', 'hdlm.node')));
      const info = JSON.parse(hdlm(['info', '--json']).stdout);
      assert.strictEqual(info.binary.kind, 'source');
      const g = hdlm(GEN);
      assert.strictEqual(g.status, 0, g.all);
      assert.strictEqual(g.stdout, text);
    });
  });
});
