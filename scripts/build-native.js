#!/usr/bin/env node
'use strict';
// Builds the native addon with cmake-js against the libtorch found by find-libtorch.js.
// Run by `npm install` (skips when a build already exists, unless --force).
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { findLibtorch } = require('./find-libtorch');

const root = path.resolve(__dirname, '..');
const built = path.join(root, 'build', 'Release', 'hdlm.node');
const force = process.argv.includes('--force') || process.env.HDLM_BUILD_FROM_SOURCE === '1';

if (!force && fs.existsSync(built)) {
  console.log(`hdlm: native addon already built (${path.relative(root, built)}); npm run build:native rebuilds it`);
  process.exit(0);
}

let torch;
try {
  torch = findLibtorch();
} catch (e) {
  console.error(e.message);
  process.exit(1);
}
console.log(`hdlm: building against libtorch from ${torch.found} (${torch.cmakeDir}${torch.cuda ? ', CUDA' : ', CPU'})`);

const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const jobs = String(Math.max(1, require('os').availableParallelism?.() ?? require('os').cpus().length));
const result = spawnSync(process.execPath, [cmakeJs, 'compile', '-d', root, '-p', jobs, `--CDTorch_DIR=${torch.cmakeDir}`], {
  stdio: 'inherit', cwd: root,
});
if (result.status !== 0) {
  console.error('hdlm: the native build failed. It needs cmake (>= 3.18), a C++17 compiler and libtorch;\n' +
    'on Debian/Ubuntu `sudo scripts/install-system-deps.sh` installs all of them. See README.md, "Install".');
  process.exit(result.status || 1);
}
