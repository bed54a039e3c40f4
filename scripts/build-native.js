#!/usr/bin/env node
'use strict';
// The npm `install` script: gets a native addon that works with the libtorch on this machine.
//
//   1. the prebuilt binary (prebuilds/<platform>-<arch>/<id>/hdlm.node, see scripts/prebuild.js)
//      that fits the libtorch found now (dist/native/libtorch.js finds it, dist/native/prebuilds.js
//      chooses), checked by loading it once in a child process: nothing is compiled;
//   2. else a build from source with cmake-js against the libtorch find-libtorch.js finds;
//   3. else the install fails with one message: what was tried and what to do.
//
// Builds from source without looking at prebuilds when asked to (--force, which
// `npm run build:native` passes; HDLM_BUILD_FROM_SOURCE=1; `npm rebuild hdlm --build-from-source`,
// which npm passes on as npm_config_build_from_source) and in a git checkout (`npm ci` in a clone).
// A build from source that already exists (build/Release/hdlm.node) is kept unless forced.
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { findLibtorch } = require('./find-libtorch');

const root = path.resolve(__dirname, '..');
const built = path.join(root, 'build', 'Release', 'hdlm.node');
const env = process.env;
const truthy = (v) => v !== undefined && v !== '' && v !== '0' && v !== 'false';
const forced = process.argv.includes('--force');
const fromSourceAsked = forced || truthy(env.HDLM_BUILD_FROM_SOURCE) || truthy(env.npm_config_build_from_source);
const gitCheckout = fs.existsSync(path.join(root, '.git'));
const rel = (f) => path.relative(root, f) || '.';

if (!fromSourceAsked && fs.existsSync(built)) {
  console.log(`hdlm: native addon already built (${rel(built)}); npm run build:native rebuilds it`);
  process.exit(0);
}

const tried = [];
const why = forced ? '--force' : truthy(env.HDLM_BUILD_FROM_SOURCE) ? 'HDLM_BUILD_FROM_SOURCE' : fromSourceAsked ? '--build-from-source' : null;

// 1. prebuilt binary: chosen by the package's compiled TypeScript (dist/, shipped in the package),
// the same code that chooses it at load time (lib/binding.ts)
function tryPrebuild() {
  const dist = path.join(root, 'dist');
  let prebuilds;
  let libtorch;
  try {
    prebuilds = require(path.join(dist, 'native', 'prebuilds.js'));
    libtorch = require(path.join(dist, 'native', 'libtorch.js'));
  } catch {
    return 'prebuilt binary: not considered (dist/ is not compiled)';
  }
  const manifest = prebuilds.readManifest(env.HDLM_PREBUILD || root);
  if (typeof manifest === 'string') return `prebuilt binary: ${manifest}`;
  if (!manifest) return `prebuilt binary: this package has none (${rel(path.join(root, 'prebuilds', prebuilds.MANIFEST))} is absent)`;
  const located = libtorch.locateLibtorch(env);
  if (!located.found) return `prebuilt binary: ${prebuilds.noLibtorchMessage(located.tried, manifest)}`;
  const choice = prebuilds.selectPrebuild(manifest, located.found);
  if (!choice.ok) return `prebuilt binary: ${prebuilds.noMatchMessage(located.found, manifest, choice.rejected)}`;
  // load it once, in a child: a binary that cannot load is found now, not at the user's first call
  const probe = 'const b = require(process.argv[1]); const r = b.loadNative(process.argv[2]); ' +
    'r.addon.runtimeInfo(); process.stdout.write(JSON.stringify({ path: r.binary.path, opened: r.binary.opened }));';
  const r = spawnSync(process.execPath, ['-e', probe, path.join(dist, 'binding.js'), root], { env, encoding: 'utf8', timeout: 180000 });
  if (r.status !== 0) {
    const why = (r.stderr || '').split('\n').filter((l) => /HdlmError|Error:/.test(l)).slice(-1)[0] || `exit ${r.status ?? r.signal}`;
    return `prebuilt binary: ${choice.entry.id} fits ${libtorch.libtorchLabel(located.found)} but did not load (${why.trim()})`;
  }
  const loaded = JSON.parse(r.stdout);
  console.log(`hdlm: using the prebuilt binary ${rel(loaded.path)} (${choice.reason}); opens ${loaded.opened.map((f) => path.basename(f)).join(', ')} from ${located.found.libDir}; nothing to compile`);
  return null;
}

if (fromSourceAsked) {
  tried.push(`prebuilt binary: not considered (${why})`);
} else if (gitCheckout) {
  tried.push('prebuilt binary: not considered in a git checkout (building from source)');
} else {
  const notUsed = tryPrebuild();
  if (notUsed === null) process.exit(0);
  tried.push(notUsed);
  console.log('hdlm: no prebuilt binary fits this machine\'s libtorch; building from source instead');
}

// 2. build from source
function have(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return r.status === 0 ? (r.stdout || r.stderr).split('\n')[0].trim() : null;
}

const missing = [];
let torch = null;
try {
  torch = findLibtorch(env);
} catch (e) {
  missing.push('libtorch');
  tried.push(`build from source: libtorch was not found (looked at ${(e.tried || []).join('; ')})`);
}
const cmake = have(env.CMAKE || 'cmake', ['--version']);
if (!cmake) {
  missing.push('cmake');
  tried.push('build from source: cmake (>= 3.18) is not on PATH');
}
const cxx = env.CXX ? env.CXX.split(/\s+/)[0] : 'c++';
const compiler = have(cxx, ['--version']) || (!env.CXX && have('g++', ['--version']));
if (!compiler) {
  missing.push('a C++17 compiler');
  tried.push(`build from source: no C++ compiler (${env.CXX ? `CXX=${env.CXX}` : 'c++ / g++'} not on PATH)`);
}

function giveUp(extra) {
  const remedies = [
    '  - Debian 12 / Ubuntu >= 23.04: sudo apt-get install libtorch-dev cmake g++ (or run',
    `    ${path.relative(env.INIT_CWD || process.cwd(), path.join(root, 'scripts', 'install-system-deps.sh')) || 'scripts/install-system-deps.sh'}), then npm rebuild hdlm`,
    '  - any Linux: unpack a libtorch zip from https://pytorch.org, set LIBTORCH=/path/to/libtorch and',
    '    install cmake and g++, then npm rebuild hdlm',
    '  - a Python with torch: make sure `python3 -c "import torch"` works (or set Torch_DIR), then npm rebuild hdlm',
    '  (README.md, "Install", has the details; HDLM_BUILD_FROM_SOURCE=1 skips the prebuilt binary)',
  ];
  console.error(
    `hdlm: cannot install the native addon${extra ? ': ' + extra : ''}. Tried, in order:\n` +
      tried.map((t, i) => `  ${i + 1}. ${t}`).join('\n') +
      '\nTo fix it, one of:\n' + remedies.join('\n'),
  );
  process.exit(1);
}

if (missing.length) giveUp(`${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} missing`);

console.log(`hdlm: building from source${why ? ` (asked by ${why})` : gitCheckout ? ' (a git checkout)' : ''} against libtorch from ${torch.found} (${torch.cmakeDir}${torch.cuda ? ', CUDA' : ', CPU'}); ${cmake}; ${compiler}`);
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const jobs = String(Math.max(1, require('os').availableParallelism?.() ?? require('os').cpus().length));
const result = spawnSync(process.execPath, [cmakeJs, 'compile', '-d', root, '-p', jobs, `--CDTorch_DIR=${torch.cmakeDir}`], {
  stdio: 'inherit', cwd: root,
});
if (result.status !== 0) {
  tried.push(`build from source: cmake-js failed (exit ${result.status ?? result.signal}; its output is above)`);
  giveUp('the build from source failed');
}
