#!/usr/bin/env node
'use strict';
// An npm registry on 127.0.0.1 serving the production dependencies of hdlm from a node_modules
// folder, so that `npm install ./hdlm-<version>.tgz` can run on a machine without network, the
// way it runs against registry.npmjs.org: npm resolves every range, downloads every tarball and
// checks its integrity; nothing is linked or copied from node_modules directly.
//
//   node scripts/device/offline-registry.js <package root> <port file>
//
// Walks package.json's dependencies (and their dependencies, non-optional peer dependencies and
// the optional ones present) through <package root>/node_modules as Node resolves them, packs
// each package folder found into a tarball (package/ prefix, nested node_modules left out),
// then serves the packuments (/<name>) and tarballs (/-/<file>.tgz). Writes the port it listens
// on into <port file> once ready; runs until killed. Used by scripts/device/cuda-install-check.sh.
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const [rootArg, portFile] = process.argv.slice(2);
if (!rootArg || !portFile) {
  console.error('usage: offline-registry.js <package root> <port file>');
  process.exit(2);
}
const root = path.resolve(rootArg);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hdlm-registry-'));

// where `name` resolves from the package folder `from` (node's lookup: each node_modules upwards)
function resolveDir(name, from) {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === root || path.dirname(dir) === dir) return null;
  }
}

const packages = new Map(); // realpath of folder -> package.json
const rootPkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const queue = Object.keys(rootPkg.dependencies || {}).map((name) => ({ name, from: root, optional: false }));
const missing = [];
while (queue.length) {
  const { name, from, optional } = queue.shift();
  const dir = resolveDir(name, from);
  if (!dir) {
    if (!optional) missing.push(`${name} (needed by ${path.relative(root, from) || 'hdlm'})`);
    continue;
  }
  const real = fs.realpathSync(dir);
  if (packages.has(real)) continue;
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  packages.set(real, pkg);
  const optionalPeers = pkg.peerDependenciesMeta || {};
  for (const d of Object.keys(pkg.dependencies || {})) queue.push({ name: d, from: dir, optional: false });
  for (const d of Object.keys(pkg.optionalDependencies || {})) queue.push({ name: d, from: dir, optional: true });
  for (const d of Object.keys(pkg.peerDependencies || {})) queue.push({ name: d, from: dir, optional: !!optionalPeers[d]?.optional });
}
if (missing.length) {
  console.error(`offline-registry: not in ${root}/node_modules: ${missing.join(', ')}`);
  process.exit(1);
}

// name -> version -> { manifest, file }
const registry = new Map();
for (const [dir, pkg] of packages) {
  const file = `${pkg.name.replace('/', '-')}-${pkg.version}.tgz`;
  const tgz = path.join(work, file);
  // npm's tarball layout: every file under package/, without the package's own node_modules
  const tar = spawnSync('tar', ['-czf', tgz, '--exclude=./node_modules', '--transform', 's,^\\.,package,', '-C', dir, '.'], { encoding: 'utf8' });
  if (tar.status !== 0) {
    console.error(`offline-registry: tar of ${dir} failed: ${tar.stderr}`);
    process.exit(1);
  }
  const data = fs.readFileSync(tgz);
  const manifest = { ...pkg };
  for (const k of Object.keys(manifest)) if (k.startsWith('_')) delete manifest[k];
  manifest.dist = {
    tarball: null, // filled in per request (the port is known then)
    integrity: `sha512-${crypto.createHash('sha512').update(data).digest('base64')}`,
    shasum: crypto.createHash('sha1').update(data).digest('hex'),
  };
  if (!registry.has(pkg.name)) registry.set(pkg.name, new Map());
  registry.get(pkg.name).set(pkg.version, { manifest, file });
}

const server = http.createServer((req, res) => {
  const url = decodeURIComponent(req.url.split('?')[0]);
  const base = `http://127.0.0.1:${server.address().port}`;
  if (url.startsWith('/-/') && url.endsWith('.tgz')) {
    const f = path.join(work, path.basename(url));
    if (!fs.existsSync(f)) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    return fs.createReadStream(f).pipe(res);
  }
  const name = url.slice(1);
  const versions = registry.get(name);
  if (!versions) {
    res.writeHead(404, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ error: `${name} is not among the packages this offline registry serves` }));
  }
  const doc = { name, 'dist-tags': {}, versions: {} };
  let latest = null;
  for (const [v, { manifest, file }] of versions) {
    doc.versions[v] = { ...manifest, dist: { ...manifest.dist, tarball: `${base}/-/${file}` } };
    if (!latest || v.localeCompare(latest, undefined, { numeric: true }) > 0) latest = v;
  }
  doc['dist-tags'].latest = latest;
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(doc));
});
server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(portFile, String(server.address().port));
  console.log(`offline-registry: ${packages.size} packages (${registry.size} names) on http://127.0.0.1:${server.address().port}`);
});
const stop = () => {
  server.close();
  fs.rmSync(work, { recursive: true, force: true });
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
