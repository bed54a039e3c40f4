'use strict';
// The libtorch locator (lib/native/libtorch.ts) on fake libtorch layouts in a temp folder (a pip
// wheel's torch package in a virtualenv, a pytorch.org zip, a Debian-like library folder), and
// the prebuild selection (lib/native/prebuilds.ts) on a manifest of several builds: the right
// entry for each libtorch, and every kind of mismatch refused with what was found.
const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { locateLibtorch, libtorchLabel } = require('../dist/native/libtorch');
const { selectPrebuild, noMatchMessage, torchLibs } = require('../dist/native/prebuilds');

const CUDA_LIBS = ['libc10.so', 'libtorch_cpu.so', 'libtorch.so', 'libc10_cuda.so', 'libtorch_cuda.so'];

describe('libtorch locator and prebuild selection', function () {
  let tmp;
  // an env that finds nothing by itself: no python3, no system libtorch
  const bare = (extra = {}) => ({ PATH: path.join(tmp, 'empty-bin'), HDLM_SYSTEM_TORCH_DIRS: '', ...extra });

  before(function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-locator-'));
    fs.mkdirSync(path.join(tmp, 'empty-bin'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const write = (file, text) => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
  };

  // a pip wheel's torch package: version.py, lib/*.so, share/cmake/Torch/TorchConfig.cmake
  function pipTorch(prefix, { version, cuda, abi = 1, libs = CUDA_LIBS }) {
    const torch = path.join(prefix, 'lib', 'python3.12', 'site-packages', 'torch');
    write(path.join(torch, 'version.py'), `from typing import Optional\n__version__ = '${version}'\ndebug = False\ncuda: Optional[str] = ${cuda ? `'${cuda}'` : 'None'}\nhip: Optional[str] = None\n`);
    for (const lib of libs) write(path.join(torch, 'lib', lib), '\x7fELF fake');
    write(path.join(torch, 'share', 'cmake', 'Torch', 'TorchConfig.cmake'), `# fake\n  set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=${abi}")\n`);
    return torch;
  }

  it('finds a pip torch through VIRTUAL_ENV: version, CUDA and ABI from its files', function () {
    const venv = path.join(tmp, 'venv');
    const torch = pipTorch(venv, { version: '2.11.0+cu130', cuda: '13.0' });
    const { found, tried } = locateLibtorch(bare({ VIRTUAL_ENV: venv }));
    assert.ok(found, tried.join('\n'));
    assert.strictEqual(found.source, 'VIRTUAL_ENV');
    assert.strictEqual(found.root, torch);
    assert.strictEqual(found.libDir, path.join(torch, 'lib'));
    assert.strictEqual(found.cmakeDir, path.join(torch, 'share', 'cmake', 'Torch'));
    assert.strictEqual(found.version, '2.11.0');
    assert.strictEqual(found.cuda, '13.0');
    assert.strictEqual(found.cxx11Abi, true);
    assert.strictEqual(found.evidence.version, path.join(torch, 'version.py'));
    assert.strictEqual(found.evidence.cxx11Abi, path.join(torch, 'share', 'cmake', 'Torch', 'TorchConfig.cmake'));
    assert.strictEqual(libtorchLabel(found), 'libtorch 2.11.0 (CUDA 13.0, C++11 ABI)');
  });

  it('a CPU wheel (cuda = None) through CONDA_PREFIX, and the pre-C++11 ABI', function () {
    const conda = path.join(tmp, 'conda');
    pipTorch(conda, { version: '2.4.1+cpu', cuda: null, abi: 0, libs: ['libc10.so', 'libtorch_cpu.so', 'libtorch.so'] });
    const { found } = locateLibtorch(bare({ CONDA_PREFIX: conda }));
    assert.strictEqual(found.source, 'CONDA_PREFIX');
    assert.strictEqual(found.version, '2.4.1');
    assert.strictEqual(found.cuda, null);
    assert.strictEqual(found.cxx11Abi, false);
  });

  it('LIBTORCH (a zip: build-version) comes before VIRTUAL_ENV; one that is not a libtorch is passed over', function () {
    const zip = path.join(tmp, 'libtorch');
    write(path.join(zip, 'build-version'), '2.9.1+cu128\n');
    for (const lib of CUDA_LIBS) write(path.join(zip, 'lib', lib), 'x');
    write(path.join(zip, 'share', 'cmake', 'Torch', 'TorchConfig.cmake'), 'set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=1")\n');
    const venv = path.join(tmp, 'venv'); // from the first test
    const { found } = locateLibtorch(bare({ LIBTORCH: zip, VIRTUAL_ENV: venv }));
    assert.strictEqual(found.source, 'LIBTORCH');
    assert.strictEqual(found.libDir, path.join(zip, 'lib'));
    assert.strictEqual(found.version, '2.9.1');
    assert.strictEqual(found.cuda, '12.8');

    const wrong = locateLibtorch(bare({ LIBTORCH: path.join(tmp, 'empty-bin'), VIRTUAL_ENV: venv }));
    assert.strictEqual(wrong.found.source, 'VIRTUAL_ENV');
    assert.match(wrong.tried[0], /^LIBTORCH \(.*empty-bin\): no libtorch_cpu \/ libc10 library in /);
  });

  it('Torch_DIR (a TorchConfig.cmake folder) finds the package around it', function () {
    const torch = path.join(tmp, 'venv', 'lib', 'python3.12', 'site-packages', 'torch');
    const { found } = locateLibtorch(bare({ Torch_DIR: path.join(torch, 'share', 'cmake', 'Torch') }));
    assert.strictEqual(found.source, 'Torch_DIR');
    assert.strictEqual(found.libDir, path.join(torch, 'lib'));
    assert.strictEqual(found.version, '2.11.0');
  });

  it('python3: the torch package python3 reports (a fake python3 on PATH); no python3 is no error', function () {
    const bin = path.join(tmp, 'py-bin');
    const torch = path.join(tmp, 'venv', 'lib', 'python3.12', 'site-packages', 'torch');
    write(path.join(bin, 'python3'), `#!/bin/sh\necho '${torch}'\n`);
    fs.chmodSync(path.join(bin, 'python3'), 0o755);
    const { found } = locateLibtorch(bare({ PATH: bin }));
    assert.strictEqual(found.source, 'python3');
    assert.strictEqual(found.root, torch);

    const none = locateLibtorch(bare());
    assert.strictEqual(none.found, null);
    assert.deepStrictEqual(none.tried, ['python3: no python3 on PATH']);
  });

  it('a system library folder (Debian-like: versioned libraries, no headers)', function () {
    const sys = path.join(tmp, 'usr-lib');
    write(path.join(sys, 'libtorch_cpu.so.1.13.1'), 'x');
    write(path.join(sys, 'libc10.so.1.13.1'), 'std::St7__cxx11::basic_string');
    fs.symlinkSync('libtorch_cpu.so.1.13.1', path.join(sys, 'libtorch_cpu.so.1.13'));
    fs.symlinkSync('libc10.so.1.13.1', path.join(sys, 'libc10.so.1.13'));
    const { found } = locateLibtorch(bare({ HDLM_SYSTEM_TORCH_DIRS: sys }));
    assert.strictEqual(found.source, 'system');
    assert.strictEqual(found.version, '1.13.1');
    assert.strictEqual(found.cuda, null);
    assert.strictEqual(found.cxx11Abi, true, 'read from libc10');
    assert.strictEqual(found.evidence.cxx11Abi, path.join(sys, 'libc10.so.1.13'));
  });

  describe('selection', function () {
    const entry = (id, version, cuda, needed, cxx11Abi = true) => ({
      id, platform: 'linux', arch: 'x64', file: `linux-x64/${id}/hdlm.node`, sha256: '0', libtorch: { version, cuda, cxx11Abi }, needed,
    });
    const manifest = {
      format: 2,
      package: 'hdlm@0.0.0',
      libloaders: {},
      prebuilds: [
        entry('torch1.13-cpu-cxx11', '1.13.0', null, ['libc10.so.1.13', 'libtorch_cpu.so.1.13', 'libtorch.so.1.13']),
        entry('torch2.9-cu128-cxx11', '2.9.1', '12.8', ['libtorch.so', 'libtorch_cuda.so', 'libc10_cuda.so', 'libtorch_cpu.so', 'libc10.so']),
        entry('torch2.11-cu130-cxx11', '2.11.0', '13.0', ['libtorch.so', 'libtorch_cuda.so', 'libc10_cuda.so', 'libtorch_cpu.so', 'libc10.so']),
      ],
    };
    let cu130;
    before(function () {
      cu130 = locateLibtorch(bare({ VIRTUAL_ENV: path.join(tmp, 'venv') })).found;
    });

    it('picks the entry of the same torch, CUDA and ABI, and opens its libraries from the torch found, dependencies first', function () {
      const s = selectPrebuild(manifest, cu130, 'linux', 'x64');
      assert.strictEqual(s.ok, true);
      assert.strictEqual(s.entry.id, 'torch2.11-cu130-cxx11');
      assert.deepStrictEqual(s.preload, ['libc10.so', 'libc10_cuda.so', 'libtorch_cpu.so', 'libtorch_cuda.so', 'libtorch.so'].map((l) => path.join(cu130.libDir, l)));
      assert.match(s.reason, /torch2\.11-cu130-cxx11 is built for libtorch 2\.11\.0 \(CUDA 13\.0, C\+\+11 ABI\), the libtorch found \(VIRTUAL_ENV: .*\) is libtorch 2\.11\.0/);
      // a patch release of the same minor fits too
      assert.strictEqual(selectPrebuild(manifest, { ...cu130, version: '2.11.2' }, 'linux', 'x64').entry.id, 'torch2.11-cu130-cxx11');
      assert.deepStrictEqual(torchLibs(['libm.so.6', 'libtorch.so', 'libc10.so', 'libstdc++.so.6']), ['libc10.so', 'libtorch.so']);
    });

    it('refuses CPU for CUDA, another CUDA, another ABI, another torch, another platform and missing libraries, saying which', function () {
      const refused = (torch, platform = 'linux', arch = 'x64') => {
        const s = selectPrebuild(manifest, torch, platform, arch);
        assert.strictEqual(s.ok, false, JSON.stringify(s));
        return Object.fromEntries(s.rejected.map((r) => [r.id, r.why]));
      };
      assert.match(refused({ ...cu130, cuda: null })['torch2.11-cu130-cxx11'], /^a CUDA build, the libtorch found is CPU-only$/);
      assert.match(refused({ ...cu130, cuda: '12.6' })['torch2.11-cu130-cxx11'], /^CUDA 13\.0 ≠ 12\.6$/);
      assert.match(refused({ ...cu130, cuda: 'unknown' })['torch2.11-cu130-cxx11'], /CUDA version of the libtorch found is unknown/);
      assert.match(refused({ ...cu130, cxx11Abi: false })['torch2.11-cu130-cxx11'], /^C\+\+11 ABI ≠ pre-C\+\+11$/);
      assert.match(refused({ ...cu130, version: '2.10.0' })['torch2.11-cu130-cxx11'], /^torch 2\.11 ≠ 2\.10$/);
      assert.match(refused({ ...cu130, version: null })['torch2.11-cu130-cxx11'], /version of the libtorch found is unknown/);
      assert.match(refused(cu130, 'linux', 'arm64')['torch2.11-cu130-cxx11'], /^for linux-x64, this is linux-arm64$/);
      const cpu = refused({ ...cu130, cuda: null, version: '1.13.1' })['torch1.13-cpu-cxx11'];
      assert.match(cpu, /^it links libc10\.so\.1\.13, libtorch_cpu\.so\.1\.13, libtorch\.so\.1\.13, which .*venv.* lacks$/);
    });

    it('the message names what was found, the prebuilds there are, and the fix', function () {
      const torch = { ...cu130, cuda: '12.6' };
      const s = selectPrebuild(manifest, torch, 'linux', 'x64');
      const msg = noMatchMessage(torch, manifest, s.rejected);
      assert.ok(msg.startsWith(`no prebuilt hdlm binary fits the libtorch found: ${cu130.libDir} (through VIRTUAL_ENV) is libtorch 2.11.0 (CUDA 12.6, C++11 ABI). `), msg);
      assert.ok(msg.includes('The package has prebuilds for: torch1.13-cpu-cxx11 (linux-x64, libtorch 1.13.0 (CPU, C++11 ABI)); torch2.9-cu128-cxx11'), msg);
      assert.ok(msg.includes('torch2.11-cu130-cxx11: CUDA 13.0 ≠ 12.6'), msg);
      assert.match(msg, /To fix it: `npm rebuild hdlm --build-from-source`/);
    });
  });
});
