'use strict';
// The build itself: the native addon loads and links the libtorch it was built against, and
// scripts/find-libtorch.js (used by both cmake-js and node-gyp builds) searches in the
// documented order and fails with an actionable message.
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const findScript = path.join(root, 'scripts', 'find-libtorch.js');
const gypScript = path.join(root, 'scripts', 'gyp-libtorch.js');
const builtAddon = path.join(root, 'build', 'Release', 'hdlm.node');

// Runs a script in a child process with exactly `env` (plus a PATH without python3, so the
// "python3 torch" step always comes up empty), never the caller's LIBTORCH, Torch_DIR, ...
function runScript(script, args, env, noPythonDir) {
  const r = spawnSync(process.execPath, [script, ...args], {
    env: { PATH: noPythonDir, HOME: os.tmpdir(), ...env },
    encoding: 'utf8',
    timeout: 60000,
  });
  if (r.error) throw r.error;
  return r;
}

// A fake libtorch root in the layout of the pytorch.org zip / pip wheel.
function fakeLibtorch(dir, { abi = '1', cuda = false, defs = 'USE_DISTRIBUTED;USE_RPC' } = {}) {
  const cmakeDir = path.join(dir, 'share', 'cmake', 'Torch');
  fs.mkdirSync(cmakeDir, { recursive: true });
  fs.mkdirSync(path.join(dir, 'include', 'torch', 'csrc', 'api', 'include'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'lib'), { recursive: true });
  fs.writeFileSync(path.join(cmakeDir, 'TorchConfig.cmake'),
    `# fake\nif(CMAKE_SYSTEM_NAME STREQUAL "Linux")\n  set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=${abi}")\nendif()\n`);
  fs.mkdirSync(path.join(dir, 'share', 'cmake', 'Caffe2'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'share', 'cmake', 'Caffe2', 'Caffe2Targets.cmake'),
    'add_library(torch_cpu SHARED IMPORTED)\n\nset_target_properties(torch_cpu PROPERTIES\n' +
    `  INTERFACE_COMPILE_DEFINITIONS "${defs}"\n  INTERFACE_LINK_LIBRARIES "c10"\n)\n\n` +
    'add_library(torch_cpu_library INTERFACE IMPORTED)\n\nset_target_properties(torch_cpu_library PROPERTIES\n' +
    '  INTERFACE_COMPILE_DEFINITIONS "\\$<TARGET_PROPERTY:torch_cpu,INTERFACE_COMPILE_DEFINITIONS>"\n)\n');
  if (cuda) fs.writeFileSync(path.join(dir, 'lib', 'libtorch_cuda.so'), '');
  return cmakeDir;
}

describe('build: native addon', function () {
  it('loads, and runtimeInfo() reports the libtorch it was built against', function () {
    const { runtimeInfo } = require('../dist');
    const info = runtimeInfo();
    assert.match(info.libtorchVersion, /^(1\.13|2\.\d+)\.\d+$/, `libtorchVersion ${info.libtorchVersion}`);
    assert.strictEqual(typeof info.cudaCompiled, 'boolean');
    assert.ok(Number.isInteger(info.cudaDeviceCount) && info.cudaDeviceCount >= 0);
    if (!info.cudaCompiled) assert.strictEqual(info.cudaDeviceCount, 0);
    assert.strictEqual(typeof info.cudaDeviceName, 'string');
    if (info.cudaDeviceCount === 0) assert.strictEqual(info.cudaDeviceName, '');
    const { fusedKernelStatus } = require('../dist');
    const fused = fusedKernelStatus(0);
    assert.strictEqual(typeof fused.available, 'boolean');
    if (!info.cudaCompiled) assert.deepStrictEqual(fused, { available: false, reason: 'built without CUDA' });
    assert.throws(() => fusedKernelStatus(-1), { code: 'HDLM_INVALID_ARGUMENT', message: /deviceIndex/ });
    assert.ok(Number.isInteger(info.threads) && info.threads >= 1, `threads ${info.threads}`);
  });

  it('binds every symbol at load time and finds libtorch through its rpath', function () {
    const readelf = spawnSync('readelf', ['-d', builtAddon], { encoding: 'utf8' });
    if (!fs.existsSync(builtAddon) || readelf.error || readelf.status !== 0) this.skip();
    assert.match(readelf.stdout, /BIND_NOW|Flags:.*\bNOW\b/, 'linked with -z now');
    const libDir = require(findScript).findLibtorch().lib;
    const runpath = /(?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[([^\]]*)\]/.exec(readelf.stdout);
    assert.ok(runpath, 'has a RUNPATH');
    assert.ok(runpath[1].split(':').map((d) => path.resolve(d)).includes(path.resolve(libDir)),
      `RUNPATH ${runpath[1]} includes ${libDir}`);
  });
});

describe('build: scripts/find-libtorch.js', function () {
  let tmp;
  let noPython;
  before(function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-find-libtorch-'));
    noPython = path.join(tmp, 'empty-bin');
    fs.mkdirSync(noPython);
  });
  after(function () {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('picks LIBTORCH first, before Torch_DIR, CMAKE_PREFIX_PATH and the system location', function () {
    const libtorch = path.join(tmp, 'zip', 'libtorch');
    const cmakeDir = fakeLibtorch(libtorch);
    const other = fakeLibtorch(path.join(tmp, 'other'));
    const r = runScript(findScript, [], {
      LIBTORCH: libtorch,
      Torch_DIR: other,
      CMAKE_PREFIX_PATH: path.join(tmp, 'other', 'share', 'cmake'),
      HDLM_SYSTEM_TORCH_DIRS: other,
    }, noPython);
    assert.strictEqual(r.status, 0, r.stderr);
    const info = JSON.parse(r.stdout);
    assert.strictEqual(info.found, 'LIBTORCH');
    assert.strictEqual(info.cmakeDir, cmakeDir);
    assert.strictEqual(info.root, libtorch);
    assert.strictEqual(info.lib, path.join(libtorch, 'lib'));
    assert.deepStrictEqual(info.include,
      [path.join(libtorch, 'include'), path.join(libtorch, 'include', 'torch', 'csrc', 'api', 'include')]);
    assert.strictEqual(info.cuda, false);
    assert.strictEqual(runScript(findScript, ['--cmake-dir'], { LIBTORCH: libtorch }, noPython).stdout.trim(), cmakeDir);
  });

  it('reports CUDA when the libtorch has libtorch_cuda.so', function () {
    const libtorch = path.join(tmp, 'cuda', 'libtorch');
    fakeLibtorch(libtorch, { cuda: true });
    const r = runScript(findScript, [], { LIBTORCH: libtorch }, noPython);
    assert.strictEqual(r.status, 0, r.stderr);
    assert.strictEqual(JSON.parse(r.stdout).cuda, true);
  });

  it('falls through a LIBTORCH that does not exist to the system location', function () {
    // A Debian-like prefix: <prefix>/lib/<triplet>/cmake/Torch, headers in <prefix>/include.
    const prefix = path.join(tmp, 'usr');
    const cmakeDir = path.join(prefix, 'lib', 'x86_64-linux-gnu', 'cmake', 'Torch');
    fs.mkdirSync(cmakeDir, { recursive: true });
    fs.writeFileSync(path.join(cmakeDir, 'TorchConfig.cmake'), '# fake\n');
    const r = runScript(findScript, [], {
      LIBTORCH: '/nonexistent/libtorch',
      HDLM_SYSTEM_TORCH_DIRS: [path.join(tmp, 'nowhere'), cmakeDir].join(path.delimiter),
    }, noPython);
    assert.strictEqual(r.status, 0, r.stderr);
    const info = JSON.parse(r.stdout);
    assert.strictEqual(info.found, 'system');
    assert.strictEqual(info.cmakeDir, cmakeDir);
    assert.strictEqual(info.lib, path.join(prefix, 'lib', 'x86_64-linux-gnu'));
    assert.strictEqual(info.include[0], path.join(prefix, 'include'));
  });

  it('falls through to the real system libtorch (Debian libtorch-dev) when one is installed', function () {
    const r = runScript(findScript, [], { LIBTORCH: '/nonexistent/libtorch' }, noPython);
    if (r.status !== 0) this.skip(); // no system libtorch here (LIBTORCH or python torch builds)
    const info = JSON.parse(r.stdout);
    assert.strictEqual(info.found, 'system');
    assert.ok(fs.existsSync(path.join(info.cmakeDir, 'TorchConfig.cmake')));
  });

  it('exits 1 listing everything it tried and how to install libtorch', function () {
    const r = runScript(findScript, [], {
      LIBTORCH: '/nonexistent/libtorch',
      Torch_DIR: '/nonexistent/torch-dir',
      CMAKE_PREFIX_PATH: '/nonexistent/prefix',
      HDLM_SYSTEM_TORCH_DIRS: '/nonexistent/system',
    }, noPython);
    assert.strictEqual(r.status, 1);
    assert.strictEqual(r.stdout, '');
    const msg = r.stderr;
    assert.match(msg, /libtorch was not found/);
    for (const tried of [
      'LIBTORCH: no TorchConfig.cmake in /nonexistent/libtorch/share/cmake/Torch',
      'Torch_DIR: no TorchConfig.cmake in /nonexistent/torch-dir',
      'CMAKE_PREFIX_PATH: no TorchConfig.cmake in /nonexistent/prefix/Torch',
      'python3 torch: not available',
      'system: no TorchConfig.cmake in /nonexistent/system',
    ]) assert.ok(msg.includes(tried), `lists "${tried}" in:\n${msg}`);
    // in the documented order
    assert.ok(msg.indexOf('LIBTORCH:') < msg.indexOf('Torch_DIR:') &&
      msg.indexOf('Torch_DIR:') < msg.indexOf('python3 torch:') &&
      msg.indexOf('python3 torch:') < msg.indexOf('system:'));
    assert.match(msg, /scripts\/install-system-deps\.sh/);
    assert.match(msg, /LIBTORCH=/);
  });
});

describe('build: scripts/gyp-libtorch.js (node-gyp flags)', function () {
  let tmp;
  let noPython;
  before(function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-gyp-libtorch-'));
    noPython = path.join(tmp, 'empty-bin');
    fs.mkdirSync(noPython);
  });
  after(function () {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('prints the ABI, compile definitions, libraries and rpath dir of the found libtorch', function () {
    const libtorch = path.join(tmp, 'libtorch');
    fakeLibtorch(libtorch, { abi: '0', cuda: true });
    const q = (what) => {
      const r = runScript(gypScript, [what], { LIBTORCH: libtorch }, noPython);
      assert.strictEqual(r.status, 0, r.stderr);
      return r.stdout.trim();
    };
    assert.strictEqual(q('defines'), '_GLIBCXX_USE_CXX11_ABI=0 USE_DISTRIBUTED USE_RPC');
    assert.strictEqual(q('libdir'), path.join(libtorch, 'lib'));
    assert.strictEqual(q('cuda'), '1');
    assert.strictEqual(q('libraries'),
      '-Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -ltorch_cuda -lc10_cuda -Wl,--as-needed');
    assert.strictEqual(q('cflags'), ['-isystem', path.join(libtorch, 'include'), '-isystem',
      path.join(libtorch, 'include', 'torch', 'csrc', 'api', 'include')].join(' '));
  });

  it('exits 1 with find-libtorch.js\'s message when there is no libtorch', function () {
    const r = runScript(gypScript, ['defines'], {
      LIBTORCH: '/nonexistent/libtorch', HDLM_SYSTEM_TORCH_DIRS: '/nonexistent/system',
    }, noPython);
    assert.strictEqual(r.status, 1);
    assert.match(r.stderr, /libtorch was not found/);
  });
});
