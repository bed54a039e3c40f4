#!/usr/bin/env node
'use strict';
// Checks the C++ and CUDA sources of native/ (*.cc, *.h, *.cu) against .clang-format:
//
//   npm run lint:native     clang-format --dry-run --Werror: lists what differs, exits 1 if any
//   npm run format:native   clang-format -i: rewrites the files
//
// native/jit/*.py (TorchScript) is not C++ and is not looked at. CLANG_FORMAT picks the binary.
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const fix = process.argv.includes('--fix');
const bin = process.env.CLANG_FORMAT || 'clang-format';

function sources(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const f = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(f));
    else if (/\.(cc|h|cu)$/.test(e.name)) out.push(path.relative(root, f));
  }
  return out.sort();
}

const version = spawnSync(bin, ['--version'], { encoding: 'utf8' });
if (version.error || version.status !== 0) {
  console.error(`lint:native: ${bin} is not installed (Debian/Ubuntu: apt-get install clang-format, or scripts/install-system-deps.sh)`);
  process.exit(1);
}
const files = sources(path.join(root, 'native'));
const args = fix ? ['-i', ...files] : ['--dry-run', '--Werror', ...files];
const r = spawnSync(bin, ['--style=file', ...args], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  if (!fix) console.error(`lint:native: native/ is not formatted as .clang-format says (${version.stdout.trim()}); npm run format:native fixes it`);
  process.exit(r.status ?? 1);
}
console.log(`lint:native: ${files.length} files ${fix ? 'formatted' : 'clean'} (${version.stdout.trim()})`);
