// Prebuilt binaries: the prebuild that fits the libtorch found is chosen from the manifest,
// checked (digest, the libraries it links), loaded on that libtorch's libraries opened by full path
// (hdlm_libloader.node), and one recorded for another libtorch is refused with a clear
// HDLM_UNSUPPORTED error before anything is loaded; the install script uses a fitting prebuild,
// falls back to a source build otherwise, and fails with one message when neither can work.
//
// The "prebuild" here is the addon built from source (build/Release/hdlm.node, and its
// hdlm_libloader.node) placed in a package-shaped temp folder with a manifest written from its
// real DT_NEEDED: the same bytes a prebuild of this machine holds, without compiling a second time.
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const { readElfDynamic, torchLibs, sha256 } = require('../dist/native/prebuilds');
const { locateLibtorch } = require('../dist/native/libtorch');
const builtAddon = path.join(root, 'build', 'Release', 'hdlm.node');
const builtLoader = path.join(root, 'build', 'Release', 'hdlm_libloader.node');
const tuple = `${process.platform}-${process.arch}`;

describe('prebuild: chosen for the libtorch found, checked, loaded on its libraries', function () {
  let tmp;
  let elf;
  let torch;
  // the environment of these tests: the libtorch found the usual way (here: the system's)
  const env = { ...process.env };
  for (const k of ['LIBTORCH', 'Torch_DIR', 'CMAKE_PREFIX_PATH', 'VIRTUAL_ENV', 'CONDA_PREFIX', 'HDLM_PREBUILD']) delete env[k];

  before(function () {
    if (process.platform !== 'linux') this.skip();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-prebuild-test-'));
    elf = readElfDynamic(builtAddon);
    torch = locateLibtorch(env).found;
    assert.ok(torch, 'a libtorch is found');
  });
  after(function () {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  // A package folder holding only the real addon as a prebuild, the opener, and a manifest (with overrides).
  function fakePackage(name, override = {}) {
    const dir = path.join(tmp, name);
    const id = override.id || 'torch-test';
    const pre = path.join(dir, 'prebuilds', tuple, id);
    fs.mkdirSync(pre, { recursive: true });
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'hdlm', version: '0.0.0' }));
    fs.copyFileSync(builtAddon, path.join(pre, 'hdlm.node'));
    fs.copyFileSync(builtLoader, path.join(dir, 'prebuilds', tuple, 'hdlm_libloader.node'));
    const entry = {
      id,
      platform: process.platform,
      arch: process.arch,
      file: `${tuple}/${id}/hdlm.node`,
      sha256: sha256(path.join(pre, 'hdlm.node')),
      needed: torchLibs(elf.needed),
      ...override,
      libtorch: { version: torch.version, cuda: torch.cuda, cxx11Abi: torch.cxx11Abi, ...override.libtorch },
    };
    const manifest = {
      format: 2,
      package: 'hdlm@0.0.0',
      libloaders: { [tuple]: { file: `${tuple}/hdlm_libloader.node`, sha256: sha256(builtLoader) } },
      prebuilds: [entry],
    };
    fs.writeFileSync(path.join(dir, 'prebuilds', 'manifest.json'), JSON.stringify(manifest));
    return { dir, file: path.join(pre, 'hdlm.node') };
  }

  it('reads DT_NEEDED and RUNPATH from the ELF file (as readelf -d does)', function () {
    const readelf = spawnSync('readelf', ['-d', builtAddon], { encoding: 'utf8' });
    if (readelf.status !== 0) this.skip();
    const needed = [...readelf.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
    assert.deepStrictEqual(elf.needed, needed);
    const rp = /\(RUNPATH\)\s+Library runpath: \[([^\]]*)\]/.exec(readelf.stdout);
    assert.deepStrictEqual(elf.runpath, rp ? rp[1].split(':') : []);
    assert.ok(torchLibs(elf.needed).some((n) => n.startsWith('libtorch_cpu.so')), elf.needed.join(' '));
  });

  it('describes the libtorch found like the addon itself does', function () {
    const { runtimeInfo } = require('../dist');
    assert.strictEqual(torch.version.split('.').slice(0, 2).join('.'), runtimeInfo().libtorchVersion.split('.').slice(0, 2).join('.'));
    assert.strictEqual(torch.cuda !== null, runtimeInfo().cudaCompiled);
    assert.strictEqual(typeof torch.cxx11Abi, 'boolean');
  });

  it('loads a prebuild recorded for the libtorch found, on the libraries it opened from there', function () {
    const { dir, file } = fakePackage('match');
    const { loadNative } = require('../dist/binding');
    const loaded = loadNative(dir, env);
    assert.strictEqual(loaded.binary.kind, 'prebuild');
    assert.strictEqual(loaded.binary.path, file);
    assert.strictEqual(loaded.binary.prebuild, 'torch-test');
    assert.strictEqual(loaded.binary.builtFor.version, torch.version);
    assert.strictEqual(loaded.binary.libtorch.libDir, torch.libDir);
    assert.deepStrictEqual(loaded.binary.opened, torchLibs(elf.needed).map((n) => path.join(torch.libDir, n)));
    assert.ok(loaded.binary.opened.every((f) => fs.existsSync(f)));
    assert.strictEqual(typeof loaded.addon.runtimeInfo, 'function');
  });

  it('refuses a prebuild recorded for another libtorch, before loading it, naming what was found and what exists', function () {
    const { dir } = fakePackage('other-version', { id: 'torch2.99-cpu-cxx11', libtorch: { version: '2.99.0' } });
    const { loadNative } = require('../dist/binding');
    const { HdlmError } = require('../dist');
    assert.throws(() => loadNative(dir, env), (e) => {
      assert.ok(e instanceof HdlmError && e.code === 'HDLM_UNSUPPORTED', String(e));
      assert.ok(e.message.startsWith(`no prebuilt hdlm binary fits the libtorch found: ${torch.libDir} (through ${torch.source}) is libtorch ${torch.version} (`), e.message);
      assert.match(e.message, /The package has prebuilds for: torch2\.99-cpu-cxx11 \(linux-x64, libtorch 2\.99\.0 /);
      assert.match(e.message, /torch2\.99-cpu-cxx11: torch 2\.99 ≠ /);
      assert.match(e.message, /npm rebuild hdlm --build-from-source/);
      return true;
    });
  });

  it('refuses CPU/CUDA and C++ ABI mismatches, a binary that is not the recorded one, and a record of other libraries', function () {
    const { loadNative } = require('../dist/binding');
    const refusal = (name, override) => {
      const { dir } = fakePackage(name, override);
      try {
        loadNative(dir, env);
      } catch (e) {
        assert.strictEqual(e.code, 'HDLM_UNSUPPORTED');
        return e.message;
      }
      return assert.fail(`${name} was loaded`);
    };
    assert.match(refusal('cuda', { libtorch: { cuda: torch.cuda ? null : '13.0' } }), torch.cuda ? /a CPU build, the libtorch found has CUDA/ : /a CUDA build, the libtorch found is CPU-only/);
    assert.match(refusal('abi', { libtorch: { cxx11Abi: !torch.cxx11Abi } }), /ABI ≠/);
    assert.match(refusal('digest', { sha256: '0'.repeat(64) }), /is not the binary the manifest records \(its SHA-256 differs\)/);
    const needed = torchLibs(elf.needed);
    assert.match(refusal('needed', { needed: needed.slice(1) }), /links .*, its record says /);
  });

  it('refuses a prebuild that needs a newer glibc than this system has, before loading it', function () {
    const { glibcProblem, requiredGlibc, runtimeGlibc } = require('../dist/native/prebuilds');
    const have = runtimeGlibc();
    if (!have) return this.skip();
    const dir = fs.mkdtempSync(path.join(tmp, 'glibc-'));
    const file = path.join(dir, 'hdlm.node');
    // the real addon with one more version string, as a binary built on a far newer system has
    fs.writeFileSync(file, Buffer.concat([fs.readFileSync(builtAddon), Buffer.from('\0GLIBC_9.99\0', 'latin1')]));
    assert.strictEqual(requiredGlibc(fs.readFileSync(file)), '9.99');
    const entry = { file: 'hdlm.node', sha256: sha256(file), needed: elf.needed };
    assert.match(glibcProblem(dir, entry), new RegExp(`needs glibc 9\\.99 or newer .*this system has glibc ${have.replace(/\./g, '\\.')}`));
    // the addon as built here asks for no newer glibc than this system's
    fs.writeFileSync(file, fs.readFileSync(builtAddon));
    assert.strictEqual(glibcProblem(dir, { ...entry, sha256: sha256(file) }), null);
  });

  it('no manifest and no build: says how to build', function () {
    const dir = path.join(tmp, 'empty');
    fs.mkdirSync(dir);
    const { loadNative } = require('../dist/binding');
    assert.throws(() => loadNative(dir, env), /there is no native addon for hdlm: it was not built .* holds no prebuilt binaries\. Build it with `npm rebuild hdlm --build-from-source`/);
  });

  describe('the install script (scripts/build-native.js) in an installed package', function () {
    // A copy of the package's scripts without .git (as npm installs it), with a prebuild.
    function installedPackage(name, override) {
      const pkg = fakePackage(name, override);
      fs.cpSync(path.join(root, 'scripts'), path.join(pkg.dir, 'scripts'), { recursive: true });
      fs.symlinkSync(path.join(root, 'dist'), path.join(pkg.dir, 'dist'));
      fs.symlinkSync(path.join(root, 'node_modules'), path.join(pkg.dir, 'node_modules'));
      return pkg;
    }
    const noLibtorchEnv = (extra = {}) => {
      // PATH holds node alone: no cmake, no compiler, no python3 (so no python torch either); the
      // system folder is the libtorch's library folder: found to run on, but without headers to build
      const nodeOnly = path.join(tmp, 'node-only-bin');
      if (!fs.existsSync(nodeOnly)) {
        fs.mkdirSync(nodeOnly, { recursive: true });
        fs.symlinkSync(process.execPath, path.join(nodeOnly, 'node'));
      }
      return { PATH: nodeOnly, HOME: tmp, HDLM_SYSTEM_TORCH_DIRS: torch.libDir, ...extra };
    };
    const run = (dir, env) => spawnSync(process.execPath, [path.join(dir, 'scripts', 'build-native.js')], { cwd: dir, env, encoding: 'utf8', timeout: 60000 });

    it('uses a matching prebuild and compiles nothing', function () {
      const { dir } = installedPackage('install-match');
      const r = run(dir, noLibtorchEnv());
      assert.strictEqual(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /using the prebuilt binary prebuilds\/linux-x64\/torch-test\/hdlm\.node \(torch-test is built for libtorch /);
      assert.ok(r.stdout.includes(`from ${torch.libDir}; nothing to compile`), r.stdout);
      assert.ok(!fs.existsSync(path.join(dir, 'build')), 'no build/');
    });

    it('a mismatching prebuild and no way to build from source: one message with what was tried and what to do', function () {
      const { dir } = installedPackage('install-mismatch', { id: 'torch2.99-cpu', libtorch: { version: '2.99.0' } });
      const r = run(dir, noLibtorchEnv());
      assert.strictEqual(r.status, 1, r.stdout + r.stderr);
      const msg = r.stderr;
      assert.match(msg, /^hdlm: cannot install the native addon: libtorch, cmake, a C\+\+17 compiler are missing\. Tried, in order:/);
      assert.match(msg, /1\. prebuilt binary: no prebuilt hdlm binary fits the libtorch found: .* is libtorch \d+\.\d+.*torch2\.99-cpu: torch 2\.99 ≠ \d+\.\d+/);
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
