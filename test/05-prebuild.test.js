'use strict';
// Prebuilt binaries: the record of the libtorch a prebuild was linked against is checked against
// the libtorch the dynamic loader finds, and a mismatch is refused with a clear HDLM_UNSUPPORTED
// error before the binary is loaded; the install script uses a matching prebuild, falls back to
// a source build otherwise, and fails with one message when neither can work.
//
// The "prebuild" here is the addon built from source (build/Release/hdlm.node) placed in a
// package-shaped temp folder with a record written from its real DT_NEEDED / RUNPATH: the same
// bytes a prebuild of this machine holds, without compiling a second time.
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const check = require('../scripts/prebuild-check');
const builtAddon = path.join(root, 'build', 'Release', 'hdlm.node');
const tuple = `${process.platform}-${process.arch}`;

describe('prebuild: the libtorch record and its check', function () {
  let tmp;
  let elf;
  let runtime;

  before(function () {
    if (process.platform !== 'linux') this.skip();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-prebuild-test-'));
    elf = check.readElfDynamic(builtAddon);
    runtime = check.describeLibtorch(path.dirname(fs.realpathSync(
      elf.runpath.map((d) => path.join(d, check.torchLibs(elf.needed).find((n) => n.startsWith('libtorch_cpu')))).find((f) => fs.existsSync(f)))));
  });
  after(function () {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  // A package folder holding only a prebuild of the real addon and its record (with overrides).
  function fakePackage(name, override = {}) {
    const dir = path.join(tmp, name);
    const pre = path.join(dir, 'prebuilds', tuple);
    fs.mkdirSync(pre, { recursive: true });
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'hdlm', version: '0.0.0' }));
    fs.copyFileSync(builtAddon, path.join(pre, 'hdlm.node'));
    const meta = {
      format: 1,
      binary: 'hdlm.node',
      needed: check.torchLibs(elf.needed),
      runpath: elf.runpath,
      ...override,
      libtorch: { version: runtime.version, cuda: runtime.cuda, cudaVersion: runtime.cudaVersion, cxx11Abi: runtime.cxx11Abi, ...override.libtorch },
    };
    fs.writeFileSync(path.join(pre, check.META_FILE), JSON.stringify(meta));
    return { dir, file: path.join(pre, 'hdlm.node') };
  }

  it('reads DT_NEEDED and RUNPATH from the ELF file (as readelf -d does)', function () {
    const readelf = spawnSync('readelf', ['-d', builtAddon], { encoding: 'utf8' });
    if (readelf.status !== 0) this.skip();
    const needed = [...readelf.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
    assert.deepStrictEqual(elf.needed, needed);
    const rp = /\(RUNPATH\)\s+Library runpath: \[([^\]]*)\]/.exec(readelf.stdout);
    assert.deepStrictEqual(elf.runpath, rp ? rp[1].split(':') : []);
    assert.ok(check.torchLibs(elf.needed).some((n) => n.startsWith('libtorch_cpu.so')), elf.needed.join(' '));
  });

  it('describes the libtorch the addon runs on like the addon itself does', function () {
    const { runtimeInfo } = require('../dist');
    assert.ok(runtime, 'found the libtorch of the RUNPATH');
    assert.strictEqual(runtime.version.split('.').slice(0, 2).join('.'), runtimeInfo().libtorchVersion.split('.').slice(0, 2).join('.'));
    assert.strictEqual(runtime.cuda, runtimeInfo().cudaCompiled);
    assert.strictEqual(typeof runtime.cxx11Abi, 'boolean');
  });

  it('accepts a prebuild recorded for the libtorch found, and loads it', function () {
    const { dir, file } = fakePackage('match');
    const r = check.checkPrebuild(file);
    assert.strictEqual(r.ok, true, r.message);
    assert.strictEqual(r.runtime.dir, runtime.dir);
    const { loadNative } = require('../dist/binding');
    const loaded = loadNative(dir);
    assert.strictEqual(loaded.binary.kind, 'prebuild');
    assert.strictEqual(loaded.binary.path, file);
    assert.strictEqual(loaded.binary.builtFor.version, runtime.version);
    assert.strictEqual(typeof loaded.addon.runtimeInfo, 'function');
  });

  it('refuses a prebuild built against another libtorch version, before loading it', function () {
    const { dir, file } = fakePackage('other-version', { libtorch: { version: '2.99.0' } });
    const r = check.checkPrebuild(file);
    assert.strictEqual(r.ok, false);
    assert.match(r.message, /built for libtorch 2\.99\.0 \(CPU|built for libtorch 2\.99\.0 \(CUDA/);
    assert.ok(r.message.includes(`is libtorch ${runtime.version}`), r.message);
    assert.match(r.message, /version 2\.99\.0 ≠/);
    assert.match(r.message, /npm rebuild hdlm --build-from-source/);
    assert.match(r.message, /HDLM_BUILD_FROM_SOURCE=1/);

    const { loadNative } = require('../dist/binding');
    const { HdlmError } = require('../dist');
    assert.throws(() => loadNative(dir), (e) => e instanceof HdlmError && e.code === 'HDLM_UNSUPPORTED' && e.message === r.message);
  });

  it('refuses CPU/CUDA and C++ ABI mismatches, and a prebuild without a record', function () {
    const cuda = check.checkPrebuild(fakePackage('cuda', { libtorch: { cuda: !runtime.cuda, cudaVersion: '12.1' } }).file);
    assert.strictEqual(cuda.ok, false);
    assert.match(cuda.message, runtime.cuda ? /CPU build, the libtorch found has CUDA/ : /needs a CUDA libtorch, the one found is CPU-only/);

    const abi = check.checkPrebuild(fakePackage('abi', { libtorch: { cxx11Abi: !runtime.cxx11Abi } }).file);
    assert.strictEqual(abi.ok, false);
    assert.match(abi.message, /C\+\+ ABI differs/);

    const bare = fakePackage('no-record');
    fs.rmSync(path.join(path.dirname(bare.file), check.META_FILE));
    const none = check.checkPrebuild(bare.file);
    assert.strictEqual(none.ok, false);
    assert.match(none.message, /no readable record of the libtorch it was built against/);
  });

  it('says where it looked when the libtorch it needs is nowhere the loader looks', function () {
    const { file } = fakePackage('missing-lib', { needed: ['libtorch_cpu.so.0.1', 'libc10.so.0.1'], runpath: [path.join(tmp, 'nowhere')], libtorch: { version: '0.1.0' } });
    const r = check.checkPrebuild(file, { LD_LIBRARY_PATH: path.join(tmp, 'also-nowhere') });
    assert.strictEqual(r.ok, false);
    assert.match(r.message, /needs libtorch_cpu\.so\.0\.1, libc10\.so\.0\.1, but libtorch_cpu\.so\.0\.1 is not where the dynamic loader looks/);
    assert.ok(r.message.includes(`LD_LIBRARY_PATH ${path.join(tmp, 'also-nowhere')}`), r.message);
    assert.ok(r.message.includes(`RUNPATH ${path.join(tmp, 'nowhere')}`), r.message);
    assert.match(r.message, /the libtorch0\.1 package/);
  });

  describe('the install script (scripts/build-native.js) in an installed package', function () {
    // A copy of the package's scripts without .git (as npm installs it), with a prebuild.
    function installedPackage(name, override) {
      const pkg = fakePackage(name, override);
      fs.cpSync(path.join(root, 'scripts'), path.join(pkg.dir, 'scripts'), { recursive: true });
      fs.symlinkSync(path.join(root, 'node_modules'), path.join(pkg.dir, 'node_modules'));
      return pkg;
    }
    const noLibtorchEnv = (extra = {}) => {
      // PATH holds node alone: no cmake, no compiler, no python3 (so no python torch either)
      const nodeOnly = path.join(tmp, 'node-only-bin');
      if (!fs.existsSync(nodeOnly)) {
        fs.mkdirSync(nodeOnly, { recursive: true });
        fs.symlinkSync(process.execPath, path.join(nodeOnly, 'node'));
      }
      return { PATH: nodeOnly, HOME: tmp, HDLM_SYSTEM_TORCH_DIRS: path.join(tmp, 'no-system-torch'), ...extra };
    };
    const run = (dir, env) => spawnSync(process.execPath, [path.join(dir, 'scripts', 'build-native.js')], { cwd: dir, env, encoding: 'utf8', timeout: 60000 });

    it('uses a matching prebuild and compiles nothing', function () {
      const { dir } = installedPackage('install-match');
      const r = run(dir, noLibtorchEnv());
      assert.strictEqual(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /using the prebuilt binary prebuilds\/[^ ]+\/hdlm\.node/);
      assert.ok(!fs.existsSync(path.join(dir, 'build')), 'no build/');
    });

    it('a mismatching prebuild and no way to build from source: one message with what was tried and what to do', function () {
      const { dir } = installedPackage('install-mismatch', { libtorch: { version: '2.99.0' } });
      const r = run(dir, noLibtorchEnv());
      assert.strictEqual(r.status, 1, r.stdout + r.stderr);
      const msg = r.stderr;
      assert.match(msg, /^hdlm: cannot install the native addon: libtorch, cmake, a C\+\+17 compiler are missing\. Tried, in order:/);
      assert.match(msg, /1\. prebuilt binary: prebuilds\/[^ ]+\/hdlm\.node: it was built for libtorch 2\.99\.0 .* is libtorch \d+\.\d+/);
      assert.match(msg, /2\. build from source: libtorch was not found \(looked at python3 torch: not available; system: no TorchConfig\.cmake/);
      assert.match(msg, /build from source: cmake \(>= 3\.18\) is not on PATH/);
      assert.match(msg, /no C\+\+ compiler \(c\+\+ \/ g\+\+ not on PATH\)/);
      assert.match(msg, /To fix it, one of:/);
      assert.match(msg, /apt-get install libtorch-dev cmake g\+\+/);
      assert.match(msg, /LIBTORCH=\/path\/to\/libtorch/);
      assert.strictEqual(msg.match(/^hdlm: /gm).length, 1, 'one message');
    });

    it('HDLM_BUILD_FROM_SOURCE=1 skips even a matching prebuild', function () {
      const { dir } = installedPackage('install-forced');
      const r = run(dir, noLibtorchEnv({ HDLM_BUILD_FROM_SOURCE: '1' }));
      assert.strictEqual(r.status, 1);
      assert.match(r.stderr, /1\. prebuilt binary: not considered \(HDLM_BUILD_FROM_SOURCE\)/);
    });
  });
});
