#!/usr/bin/env node
'use strict';
// Builds the prebuilt binary for the libtorch found here, for one build of native/prebuilds.json
// (the list of libtorch builds hdlm ships prebuilds for), and writes the package's manifest:
//
//   prebuilds/<platform>-<arch>/<id>/hdlm.node            the addon (Node-API, stripped)
//   prebuilds/<platform>-<arch>/<id>/hdlm.libtorch.json   its manifest entry: the libtorch it was
//                                                        built for, the libraries it links, SHA-256
//   prebuilds/<platform>-<arch>/hdlm_libloader.node       the library opener (no libtorch; built
//                                                        when absent)
//   prebuilds/manifest.json                              every entry present, and the openers
//
//   node scripts/prebuild.js [--builder node-gyp|cmake-js] [--id <id>]   (npm run package:prebuild)
//   node scripts/prebuild.js --manifest                                  (only the manifest; prepack)
//
// The libtorch is the one lib/native/libtorch.ts finds (LIBTORCH, Torch_DIR, VIRTUAL_ENV /
// CONDA_PREFIX, python3's torch, the system's: the order the load uses), so a prebuild is
// recorded with what the loader will compare. It must be one of the list's builds (same torch
// major.minor, CPU or CUDA major.minor, C++ ABI); --id names the build when several could fit.
//
// Builders (both read native/sources.json, the one build definition):
//   node-gyp   binding.gyp, the default where Node's headers are installed next to node
//              (<prefix>/include/node: Debian's nodejs, the nodejs.org tarballs)
//   cmake-js   CMakeLists.txt, the default elsewhere: its Node-API headers come from npm
//              (node-api-headers), so it needs no download
// Each builds in a staging copy of the sources (a temp folder), so build/ is left alone.
// Needs dist/ (npm run build:ts) for the locator and the manifest code.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const pkg = require(path.join(root, 'package.json'));
const list = require(path.join(root, 'native', 'prebuilds.json')).builds;
const prebuildsDir = path.join(root, 'prebuilds');

function fail(msg) {
  console.error(`hdlm prebuild: ${msg}`);
  process.exit(1);
}
function say(msg) {
  console.log(`hdlm prebuild: ${msg}`);
}

if (process.argv.includes('--manifest') && !fs.existsSync(prebuildsDir)) {
  say('no prebuilds/ folder: no manifest to write');
  process.exit(0);
}
let native;
let locator;
try {
  native = require(path.join(root, 'dist', 'native', 'prebuilds.js'));
  locator = require(path.join(root, 'dist', 'native', 'libtorch.js'));
} catch (e) {
  fail(`dist/ is not compiled (npm run build:ts): ${e.message}`);
}

// ---------------------------------------------------------------------------------------------
// the manifest: every entry present under prebuilds/, each checked against the list and its file

function writeManifest() {
  if (!fs.existsSync(prebuildsDir)) {
    say('no prebuilds/ folder: no manifest to write');
    return;
  }
  const entries = [];
  const libloaders = {};
  for (const tuple of fs.readdirSync(prebuildsDir).sort()) {
    const tupleDir = path.join(prebuildsDir, tuple);
    if (!fs.statSync(tupleDir).isDirectory()) continue;
    const loader = path.join(tupleDir, native.LIBLOADER);
    if (fs.existsSync(loader)) libloaders[tuple] = { file: `${tuple}/${native.LIBLOADER}`, sha256: native.sha256(loader) };
    for (const id of fs.readdirSync(tupleDir).sort()) {
      const entryFile = path.join(tupleDir, id, native.ENTRY_FILE);
      if (!fs.existsSync(entryFile)) continue;
      const entry = JSON.parse(fs.readFileSync(entryFile, 'utf8'));
      const listed = list.find((b) => b.id === entry.id);
      if (entry.id !== id || !listed) fail(`${path.relative(root, entryFile)}: '${entry.id}' is not a build of native/prebuilds.json (or not in a folder of its name)`);
      if (`${entry.platform}-${entry.arch}` !== tuple) fail(`${path.relative(root, entryFile)} is for ${entry.platform}-${entry.arch}, in ${tuple}/`);
      const bad = native.verifyPrebuild(prebuildsDir, entry);
      if (bad) fail(`${path.relative(root, entryFile)}: ${bad}`);
      entries.push(entry);
    }
    if (entries.some((e) => `${e.platform}-${e.arch}` === tuple) && !libloaders[tuple]) fail(`prebuilds/${tuple}/ has prebuilds but no ${native.LIBLOADER}`);
  }
  const manifest = { format: 2, package: `${pkg.name}@${pkg.version}`, libloaders, prebuilds: entries };
  const file = path.join(prebuildsDir, native.MANIFEST);
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(manifest, null, 2) + '\n');
  fs.renameSync(`${file}.tmp`, file);
  // stderr: `npm pack --json` runs this (prepack) and its stdout is JSON
  console.error(`hdlm prebuild: prebuilds/${native.MANIFEST}: ${entries.map((e) => e.id).join(', ') || 'no prebuilds'}`);
}

if (process.argv.includes('--manifest')) {
  writeManifest();
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// build

const argValue = (name) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const located = locator.locateLibtorch(process.env);
if (!located.found) fail(`no libtorch found (looked at: ${located.tried.join('; ')})`);
const torch = located.found;
if (!torch.cmakeDir) fail(`the libtorch found (${torch.libDir}, through ${torch.source}) has no TorchConfig.cmake: its headers are needed to build (Debian: libtorch-dev)`);
const platform = process.platform;
const arch = process.arch;
const fits = list.filter((b) => {
  const entry = { platform: b.platform, arch: b.arch, libtorch: { version: `${b.torch}.0`, cuda: b.cuda, cxx11Abi: b.cxx11Abi }, needed: [] };
  return native.mismatch(entry, torch, platform, arch) === null;
});
const wanted = argValue('--id');
const build = wanted ? fits.find((b) => b.id === wanted) : fits[0];
if (!build) {
  fail(`${wanted ? `the build '${wanted}'` : 'no build of native/prebuilds.json'} fits the libtorch found: ${torch.libDir} (through ${torch.source}) is ` +
    `${locator.libtorchLabel(torch)}. Listed: ${list.map((b) => `${b.id} (${b.platform}-${b.arch}, torch ${b.torch}, ${b.cuda ? `CUDA ${b.cuda}` : 'CPU'})`).join('; ')}. ` +
    'Add the build to native/prebuilds.json first.');
}

const nodeDir = path.resolve(path.dirname(process.execPath), '..');
const haveNodeHeaders = fs.existsSync(path.join(process.env.npm_config_nodedir || nodeDir, 'include', 'node', 'common.gypi'));
const builder = argValue('--builder') || (haveNodeHeaders ? 'node-gyp' : 'cmake-js');
if (!['node-gyp', 'cmake-js'].includes(builder)) fail(`--builder is node-gyp or cmake-js, not ${builder}`);

function nodeGypBin() {
  if (process.env.PREBUILD_NODE_GYP) return process.env.PREBUILD_NODE_GYP;
  // npm puts its bundled node-gyp on PATH for scripts; elsewhere take npm's copy directly.
  const onPath = spawnSync('sh', ['-c', 'command -v node-gyp'], { encoding: 'utf8' });
  if (onPath.status === 0 && onPath.stdout.trim()) return onPath.stdout.trim();
  const npmCli = process.env.npm_execpath || path.join(nodeDir, 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
  const found = [
    path.join(path.dirname(npmCli), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(path.dirname(npmCli), 'node-gyp-bin', 'node-gyp'),
  ].find((f) => fs.existsSync(f));
  if (!found) fail('node-gyp was not found (install it with `npm install -g node-gyp`, or set PREBUILD_NODE_GYP)');
  return found;
}

// find-libtorch.js runs again inside the build; pin it to the libtorch found here.
const env = { ...process.env, Torch_DIR: torch.cmakeDir };
delete env.LIBTORCH;
say(`${build.id}: ${locator.libtorchLabel(torch)} from ${torch.libDir} (through ${torch.source}); builder ${builder}`);
const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-prebuild-'));
const cleanup = () => fs.rmSync(stage, { recursive: true, force: true });
for (const f of ['package.json', 'binding.gyp', 'CMakeLists.txt', 'native', 'scripts']) fs.cpSync(path.join(root, f), path.join(stage, f), { recursive: true });
fs.symlinkSync(path.join(root, 'node_modules'), path.join(stage, 'node_modules'));
const jobs = String(Math.max(1, os.availableParallelism?.() ?? os.cpus().length));
let r;
if (builder === 'node-gyp') {
  if (haveNodeHeaders && !env.npm_config_nodedir) env.npm_config_nodedir = nodeDir;
  env.JOBS = env.JOBS || jobs;
  const bin = nodeGypBin();
  const args = ['rebuild', `--target=${process.versions.node}`, `--devdir=${path.join(os.tmpdir(), 'hdlm-prebuild-node-gyp')}`, `--arch=${arch}`, '--release'];
  say(`node-gyp ${bin}${env.npm_config_nodedir ? `, Node headers from ${env.npm_config_nodedir}` : ''}`);
  r = bin.endsWith('.js')
    ? spawnSync(process.execPath, [bin, ...args], { cwd: stage, env, stdio: 'inherit' })
    : spawnSync(bin, args, { cwd: stage, env, stdio: 'inherit' });
} else {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  r = spawnSync(process.execPath, [cmakeJs, 'compile', '-d', stage, '-O', path.join(stage, 'build'), '-p', jobs, `--CDTorch_DIR=${torch.cmakeDir}`], { cwd: stage, env, stdio: 'inherit' });
}
if (r.status !== 0) {
  cleanup();
  fail(`${builder} failed (exit ${r.status ?? r.signal}; its output is above)`);
}
const out = path.join(stage, 'build', 'Release');
for (const f of ['hdlm.node', native.LIBLOADER]) {
  if (!fs.existsSync(path.join(out, f))) {
    cleanup();
    fail(`${builder} did not write build/Release/${f}`);
  }
  const s = spawnSync(process.env.STRIP || 'strip', ['--strip-all', path.join(out, f)], { stdio: 'inherit' });
  if (s.status !== 0) {
    cleanup();
    fail(`strip --strip-all build/Release/${f} failed (binutils' strip, or STRIP=...)`);
  }
}

const tuple = `${platform}-${arch}`;
const dir = path.join(prebuildsDir, tuple, build.id);
const file = path.join(dir, 'hdlm.node');
fs.rmSync(dir, { recursive: true, force: true });
fs.mkdirSync(dir, { recursive: true });
fs.copyFileSync(path.join(out, 'hdlm.node'), file);
const loader = path.join(prebuildsDir, tuple, native.LIBLOADER);
if (!fs.existsSync(loader)) {
  fs.copyFileSync(path.join(out, native.LIBLOADER), loader);
  say(`wrote ${path.relative(root, loader)}`);
} else {
  say(`kept ${path.relative(root, loader)} (the same for every libtorch; delete it to rebuild it)`);
}
cleanup();

const elf = native.readElfDynamic(file);
const needed = native.torchLibs(elf.needed);
if (!needed.length) fail(`${path.relative(root, file)} links no libtorch library (DT_NEEDED: ${elf.needed.join(', ')})`);
if (!!build.cuda !== needed.some((n) => n.startsWith('libtorch_cuda.so'))) fail(`${path.relative(root, file)} ${build.cuda ? 'does not link' : 'links'} libtorch_cuda (DT_NEEDED: ${needed.join(', ')})`);
const entry = {
  id: build.id,
  platform,
  arch,
  file: `${tuple}/${build.id}/hdlm.node`,
  sha256: native.sha256(file),
  libtorch: { version: torch.version, cuda: torch.cuda, cxx11Abi: torch.cxx11Abi },
  needed,
  built: {
    builder,
    node: process.version,
    glibc: process.report?.getReport?.().header?.glibcVersionRuntime ?? null,
    libtorchDir: torch.libDir,
    libtorchFrom: torch.source,
    runpath: elf.runpath.length ? elf.runpath : elf.rpath,
    at: new Date().toISOString(),
  },
};
fs.writeFileSync(path.join(dir, native.ENTRY_FILE), JSON.stringify(entry, null, 2) + '\n');
say(`${path.relative(root, file)} (${(fs.statSync(file).size / 1e6).toFixed(1)} MB) for ${locator.libtorchLabel(torch)}; links ${needed.join(', ')}`);
writeManifest();
