#!/usr/bin/env node
'use strict';
// Prints, for binding.gyp's <!(...) / <!@(...) expansions, what CMake's find_package(Torch)
// would give the addon: the same libtorch (found by find-libtorch.js, same search order),
// the same compile definitions and the same libraries. One word per item on one line
// (gyp splits <!@ output on whitespace, so paths with spaces are not supported here; the
// default cmake-js build has no such limit).
//
//   node scripts/gyp-libtorch.js cflags     -isystem <dir> ... (torch headers, as CMake adds them)
//   node scripts/gyp-libtorch.js defines    _GLIBCXX_USE_CXX11_ABI=<0|1> and the imported targets'
//                                           INTERFACE_COMPILE_DEFINITIONS (USE_DISTRIBUTED, ...)
//   node scripts/gyp-libtorch.js libdir     directory holding libtorch.so (link path and rpath)
//   node scripts/gyp-libtorch.js libraries  -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 [-ltorch_cuda -lc10_cuda] -Wl,--as-needed
//   node scripts/gyp-libtorch.js cuda       1 when that libtorch has CUDA, else 0
//
// Exits 1 with find-libtorch.js's message when no libtorch is found.
const fs = require('fs');
const path = require('path');
const { findLibtorch } = require('./find-libtorch');

// Implicit system include directories: passing them as -isystem would reorder the
// compiler's own search path (CMake drops them for the same reason).
const IMPLICIT_INCLUDES = new Set(['/usr/include', '/usr/local/include']);

// The ABI libtorch was built with, as TorchConfig.cmake hands it to CMake in TORCH_CXX_FLAGS.
function cxx11Abi(cmakeDir) {
  const text = fs.readFileSync(path.join(cmakeDir, 'TorchConfig.cmake'), 'utf8');
  const m = /-D_GLIBCXX_USE_CXX11_ABI=([01])/.exec(text);
  return m ? m[1] : '1'; // libtorch >= 2.7 no longer ships the old ABI; 1 is the default then
}

// set_target_properties(<name> PROPERTIES ... ) blocks of every *Targets.cmake next to
// Torch's own config dir (Caffe2, glog, gflags, protobuf, ... on Debian; Caffe2 alone in a
// libtorch zip). Returns name -> { defs: [], links: [] }.
function importedTargets(cmakeDir) {
  const root = path.resolve(cmakeDir, '..');
  const targets = new Map();
  let dirs;
  try { dirs = fs.readdirSync(root); } catch { return targets; }
  for (const d of dirs) {
    let files;
    try { files = fs.readdirSync(path.join(root, d)); } catch { continue; }
    for (const f of files.filter((n) => /targets\.cmake$/i.test(n))) {
      let text;
      try { text = fs.readFileSync(path.join(root, d, f), 'utf8'); } catch { continue; }
      const re = /set_target_properties\(\s*(\S+)\s+PROPERTIES([\s\S]*?)\n\)/g;
      for (let m; (m = re.exec(text));) {
        const t = targets.get(m[1]) || { defs: [], links: [] };
        const prop = (key) => {
          const p = new RegExp(`${key}\\s+"((?:[^"\\\\]|\\\\.)*)"`).exec(m[2]);
          return p ? p[1].split(';').filter((s) => s && !s.includes('$<')) : [];
        };
        t.defs.push(...prop('INTERFACE_COMPILE_DEFINITIONS'));
        t.links.push(...prop('INTERFACE_LINK_LIBRARIES'));
        targets.set(m[1], t);
      }
    }
  }
  return targets;
}

function torchLibraries(torch) {
  return ['torch', 'torch_cpu', 'c10', ...(torch.cuda ? ['torch_cuda', 'c10_cuda'] : [])];
}

// Compile definitions the linked targets (and what they link, transitively) export.
function interfaceDefines(torch) {
  const targets = importedTargets(torch.cmakeDir);
  const defs = [];
  const seen = new Set();
  const queue = torchLibraries(torch);
  while (queue.length) {
    const name = queue.shift();
    if (seen.has(name)) continue;
    seen.add(name);
    const t = targets.get(name);
    if (!t) continue;
    for (const d of t.defs) if (!defs.includes(d)) defs.push(d);
    queue.push(...t.links);
  }
  return defs;
}

function print(what, torch) {
  switch (what) {
    case 'cflags':
      return torch.include.filter((d) => !IMPLICIT_INCLUDES.has(path.resolve(d)))
        .flatMap((d) => ['-isystem', d]).join(' ');
    case 'defines':
      return [`_GLIBCXX_USE_CXX11_ABI=${cxx11Abi(torch.cmakeDir)}`, ...interfaceDefines(torch)].join(' ');
    case 'libdir':
      return torch.lib;
    case 'libraries':
      // --no-as-needed as in Caffe2Targets.cmake: nothing calls into torch_cpu/torch_cuda
      // directly, but their static initializers register the operators and CUDA kernels.
      return ['-Wl,--no-as-needed', ...torchLibraries(torch).map((l) => `-l${l}`), '-Wl,--as-needed'].join(' ');
    case 'cuda':
      return torch.cuda ? '1' : '0';
    default:
      throw new Error(`gyp-libtorch.js: unknown query '${what}' (cflags, defines, libdir, libraries, cuda)`);
  }
}

module.exports = { print, interfaceDefines, cxx11Abi };

if (require.main === module) {
  try {
    console.log(print(process.argv[2], findLibtorch()));
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
