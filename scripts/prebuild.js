#!/usr/bin/env node
'use strict';
// Builds the prebuilt binary for this platform with prebuildify (Node-API, through binding.gyp
// and node-gyp) against the libtorch find-libtorch.js finds, and records that libtorch beside it:
//
//   prebuilds/<platform>-<arch>/hdlm.node             the addon (Node-API, stripped)
//   prebuilds/<platform>-<arch>/hdlm.libtorch.json    version, CUDA/CPU, C++ ABI, the libtorch
//                                                     SONAMEs it needs and its RUNPATH
//
// lib/binding.ts and scripts/build-native.js check that record against the libtorch found at
// run time (scripts/prebuild-check.js). `npm run package:prebuild`; LIBTORCH=... picks another libtorch
// (scripts/prebuild-cuda.sh does that for a CUDA zip). node-gyp builds in a staging copy of the
// sources (a temp folder), so the cmake-js build in build/ is left alone.
//
// Node's headers: taken from the running node's installation (<prefix>/include/node, present
// in Debian's nodejs and the nodejs.org tarballs), so nothing is downloaded; without them
// node-gyp downloads them as usual.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const { findLibtorch } = require('./find-libtorch');
const { cxx11Abi } = require('./gyp-libtorch');
const { META_FILE, readElfDynamic, torchLibs, describeLibtorch, label } = require('./prebuild-check');

const root = path.resolve(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));

function fail(msg) {
  console.error(`hdlm prebuild: ${msg}`);
  process.exit(1);
}

function nodeGypBin() {
  if (process.env.PREBUILD_NODE_GYP) return process.env.PREBUILD_NODE_GYP;
  // npm puts its bundled node-gyp on PATH for scripts; elsewhere take npm's copy directly.
  const onPath = spawnSync('sh', ['-c', 'command -v node-gyp'], { encoding: 'utf8' });
  if (onPath.status === 0 && onPath.stdout.trim()) return onPath.stdout.trim();
  const npmCli = process.env.npm_execpath || path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
  const candidates = [
    path.join(path.dirname(npmCli), 'node-gyp-bin', 'node-gyp'),
    path.join(path.dirname(npmCli), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  const found = candidates.find((f) => fs.existsSync(f));
  if (!found) fail('node-gyp was not found (install it with `npm install -g node-gyp`, or set PREBUILD_NODE_GYP)');
  return found;
}

let torch;
try {
  torch = findLibtorch();
} catch (e) {
  fail(e.message);
}
const nodeDir = path.resolve(path.dirname(process.execPath), '..');
const env = { ...process.env, PREBUILD_NODE_GYP: nodeGypBin() };
if (!env.npm_config_nodedir && fs.existsSync(path.join(nodeDir, 'include', 'node', 'common.gypi'))) env.npm_config_nodedir = nodeDir;
// find-libtorch.js runs again inside binding.gyp; pin it to the same libtorch.
if (!env.LIBTORCH && !env.Torch_DIR) env.Torch_DIR = torch.cmakeDir;

console.log(`hdlm prebuild: libtorch from ${torch.found} (${torch.cmakeDir}, ${torch.cuda ? 'CUDA' : 'CPU'}), node-gyp ${env.PREBUILD_NODE_GYP}` +
  (env.npm_config_nodedir ? `, node headers from ${env.npm_config_nodedir}` : ''));
const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-prebuild-'));
for (const f of ['package.json', 'binding.gyp', 'native', 'scripts']) fs.cpSync(path.join(root, f), path.join(stage, f), { recursive: true });
fs.symlinkSync(path.join(root, 'node_modules'), path.join(stage, 'node_modules'));
const args = [require.resolve('prebuildify/bin.js'), '--napi', '--strip', '--target', process.versions.node,
  '--cwd', stage, ...process.argv.slice(2)];
const r = spawnSync(process.execPath, args, { cwd: stage, env, stdio: 'inherit' });
const tuple = `${process.platform}-${process.arch}`;
const dir = path.join(root, 'prebuilds', tuple);
// prebuildify >= 5 names a Node-API prebuild <name>.node (node-gyp-build takes an untagged file as Node-API).
const staged = path.join(stage, 'prebuilds', tuple, `${pkg.name}.node`);
if (r.status === 0 && fs.existsSync(staged)) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(staged, path.join(dir, `${pkg.name}.node`));
}
fs.rmSync(stage, { recursive: true, force: true });
if (r.status !== 0) fail(`prebuildify failed (exit ${r.status ?? r.signal})`);
const file = path.join(dir, `${pkg.name}.node`);
if (!fs.existsSync(file)) fail(`prebuildify did not write ${path.relative(stage, staged)}`);

const elf = readElfDynamic(file);
const needed = torchLibs(elf.needed);
if (!needed.length) fail(`${path.relative(root, file)} links no libtorch library (DT_NEEDED: ${elf.needed.join(', ')})`);
const found = describeLibtorch(torch.lib) || {};
const versionCmake = /PACKAGE_VERSION\s+"([^"]+)"/.exec(fs.readFileSync(path.join(torch.cmakeDir, 'TorchConfigVersion.cmake'), 'utf8'))?.[1];
const meta = {
  format: 1,
  binary: path.basename(file),
  package: `${pkg.name}@${pkg.version}`,
  platform: `${process.platform}-${process.arch}`,
  napi: Number(pkg.binary?.napi_versions?.[0] ?? 8),
  libtorch: {
    version: found.version || versionCmake || null,
    cuda: torch.cuda,
    cudaVersion: found.cudaVersion || null,
    cxx11Abi: cxx11Abi(torch.cmakeDir) === '1',
    from: torch.found,
    dir: torch.lib,
  },
  needed,
  runpath: elf.runpath.length ? elf.runpath : elf.rpath,
  builtWith: { node: process.version, glibc: process.report?.getReport?.().header?.glibcVersionRuntime ?? null },
  builtAt: new Date().toISOString(),
};
fs.writeFileSync(path.join(dir, META_FILE), JSON.stringify(meta, null, 2) + '\n');
console.log(`hdlm prebuild: ${path.relative(root, file)} (${(fs.statSync(file).size / 1e6).toFixed(1)} MB) for ${label(meta.libtorch)}; ` +
  `needs ${needed.join(', ')}, RUNPATH ${meta.runpath.join(':') || '(none)'}; recorded in ${path.relative(root, path.join(dir, META_FILE))}`);
