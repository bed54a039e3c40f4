#!/usr/bin/env node
'use strict';
// Finds the libtorch to build against, in the documented order:
//   1. LIBTORCH            root of an unpacked libtorch (share/cmake/Torch inside)
//   2. Torch_DIR / CMAKE_PREFIX_PATH
//   3. the torch package of the active virtualenv / conda env (VIRTUAL_ENV, CONDA_PREFIX:
//      lib/python3.*/site-packages/torch/share/cmake/Torch)
//   4. the torch package of the first python3 on PATH (torch.utils.cmake_prefix_path)
//   5. the system location (Debian's libtorch-dev)
// lib/native/libtorch.ts finds the libtorch to run on in the same order.
// Prints a JSON description, or with --cmake-dir only the directory holding
// TorchConfig.cmake. Exits 1 with one actionable message when none is found.
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const SYSTEM_DIRS = [
  '/usr/lib/x86_64-linux-gnu/cmake/Torch',
  '/usr/lib/aarch64-linux-gnu/cmake/Torch',
  '/usr/local/share/cmake/Torch',
  '/usr/share/cmake/Torch',
];

function hasConfig(dir) {
  return !!dir && fs.existsSync(path.join(dir, 'TorchConfig.cmake'));
}

// Each candidate: [how it was found, directory that should hold TorchConfig.cmake].
function candidates(env) {
  const out = [];
  if (env.LIBTORCH) out.push(['LIBTORCH', path.join(env.LIBTORCH, 'share', 'cmake', 'Torch')]);
  if (env.Torch_DIR) out.push(['Torch_DIR', env.Torch_DIR]);
  for (const prefix of (env.CMAKE_PREFIX_PATH || '').split(path.delimiter).filter(Boolean)) {
    out.push(['CMAKE_PREFIX_PATH', path.join(prefix, 'Torch')]);
    out.push(['CMAKE_PREFIX_PATH', path.join(prefix, 'share', 'cmake', 'Torch')]);
  }
  for (const key of ['VIRTUAL_ENV', 'CONDA_PREFIX']) {
    if (env[key]) out.push([key, () => envTorchDir(env[key])]);
  }
  out.push(['python3 torch', () => pythonTorchDir()]);
  // HDLM_SYSTEM_TORCH_DIRS (path-delimited) replaces the built-in system list; the tests use it.
  const systemDirs = env.HDLM_SYSTEM_TORCH_DIRS !== undefined
    ? env.HDLM_SYSTEM_TORCH_DIRS.split(path.delimiter).filter(Boolean) : SYSTEM_DIRS;
  for (const dir of systemDirs) out.push(['system', dir]);
  return out;
}

function envTorchDir(prefix) {
  for (const lib of ['lib', 'lib64']) {
    let names;
    try { names = fs.readdirSync(path.join(prefix, lib)); } catch { continue; }
    for (const py of names.filter((n) => /^python3(\.\d+)?t?$/.test(n)).sort().reverse()) {
      const dir = path.join(prefix, lib, py, 'site-packages', 'torch', 'share', 'cmake', 'Torch');
      if (hasConfig(dir)) return dir;
    }
  }
  return null;
}

function pythonTorchDir() {
  try {
    const prefix = execFileSync('python3', ['-c', 'import torch; print(torch.utils.cmake_prefix_path)'], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 60000,
    }).trim();
    return prefix ? path.join(prefix, 'Torch') : null;
  } catch {
    return null;
  }
}

// Library and include directories for builds that do not go through CMake (node-gyp).
function layoutOf(cmakeDir) {
  // <root>/share/cmake/Torch (pip wheel, LIBTORCH zip) or <prefix>/lib/<triplet>/cmake/Torch (Debian).
  const up = (n) => path.resolve(cmakeDir, ...Array(n).fill('..'));
  if (fs.existsSync(path.join(up(3), 'include', 'torch'))) {
    const root = up(3);
    return { root, include: [path.join(root, 'include'), path.join(root, 'include', 'torch', 'csrc', 'api', 'include')], lib: path.join(root, 'lib') };
  }
  const libDir = up(2);
  const prefix = path.resolve(libDir, '..', '..');
  const inc = path.join(prefix, 'include');
  return { root: prefix, include: [inc, path.join(inc, 'torch', 'csrc', 'api', 'include')], lib: libDir };
}

function findLibtorch(env = process.env) {
  const tried = [];
  for (const [how, dirOrFn] of candidates(env)) {
    const dir = typeof dirOrFn === 'function' ? dirOrFn() : dirOrFn;
    if (!dir) { tried.push(`${how}: not available`); continue; }
    if (hasConfig(dir)) {
      const layout = layoutOf(dir);
      const cuda = fs.existsSync(path.join(layout.lib, 'libtorch_cuda.so'));
      return { found: how, cmakeDir: dir, cuda, ...layout };
    }
    tried.push(`${how}: no TorchConfig.cmake in ${dir}`);
  }
  const err = new Error(
    'hdlm: libtorch was not found. Tried, in order:\n  - ' + tried.join('\n  - ') +
    '\nInstall it with one of:\n' +
    '  - Debian/Ubuntu: sudo scripts/install-system-deps.sh   (libtorch-dev + OpenBLAS)\n' +
    '  - any Linux: unpack a libtorch zip from pytorch.org and set LIBTORCH=/path/to/libtorch\n' +
    '  - a Python torch install: make sure `python3 -c "import torch"` works, or set Torch_DIR');
  err.tried = tried;
  throw err;
}

module.exports = { findLibtorch };

if (require.main === module) {
  try {
    const info = findLibtorch();
    const arg = process.argv[2];
    if (arg === '--cmake-dir') console.log(info.cmakeDir);
    else if (arg === '--include') console.log(info.include.join(' '));
    else if (arg === '--lib') console.log(info.lib);
    else console.log(JSON.stringify(info, null, 2));
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
