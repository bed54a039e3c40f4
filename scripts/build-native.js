#!/usr/bin/env node
'use strict';
// The npm `install` script: gets a native addon that works with the libtorch on this machine.
//
//   1. a prebuilt binary (prebuilds/<platform>-<arch>/hdlm.node, see scripts/prebuild.js) when
//      the package has one and it matches the libtorch found now (scripts/prebuild-check.js):
//      nothing is compiled;
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
const { findPrebuild, checkPrebuild, label } = require('./prebuild-check');

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

// 1. prebuilt binary
if (fromSourceAsked) {
  tried.push(`prebuilt binary: not considered (${why})`);
} else if (gitCheckout) {
  tried.push('prebuilt binary: not considered in a git checkout (building from source)');
} else {
  const prebuild = findPrebuild(root, env);
  if (!prebuild) {
    tried.push(`prebuilt binary: this package has none for ${process.platform}-${process.arch}`);
  } else {
    const check = checkPrebuild(prebuild, env);
    if (check.ok) {
      console.log(`hdlm: using the prebuilt binary ${rel(prebuild)} (${label(check.meta.libtorch)}) with the libtorch in ${check.runtime.dir}; nothing to compile`);
      process.exit(0);
    }
    tried.push(`prebuilt binary: ${check.reason}`);
    console.log(`hdlm: ${rel(prebuild)} does not match this machine's libtorch; building from source instead`);
  }
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
  tried.push('build from source: cmake (>= 3.19) is not on PATH');
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
