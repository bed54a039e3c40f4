'use strict';
// A prebuilt binary (prebuilds/<platform>-<arch>/hdlm.node, Node-API) is tied to the libtorch it was
// linked against. scripts/prebuild.js records that libtorch beside it, in hdlm.libtorch.json:
// its version, CUDA or CPU, the C++ ABI, and the libraries the binary needs by SONAME with the
// RUNPATH it was linked with. Before such a binary is loaded (lib/binding.ts) or chosen at
// install time (scripts/build-native.js), checkPrebuild() finds the libtorch the dynamic loader
// would give it now (LD_LIBRARY_PATH, then the RUNPATH, then the ld.so cache and the default
// directories, as ld.so searches) and compares. A mismatch is refused with a message saying
// what the binary was built for, what was found, and how to build from source, instead of a
// crash or an undefined-symbol error inside libtorch.
//
// Plain CommonJS without dependencies: it runs from the install script before anything is built.
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const META_FILE = 'hdlm.libtorch.json';
const FROM_SOURCE_HINT =
  'build hdlm from source against the libtorch you have: `npm rebuild hdlm --build-from-source` ' +
  '(or `HDLM_BUILD_FROM_SOURCE=1 npm rebuild hdlm`; it needs cmake, a C++17 compiler and libtorch, see README "Install")';

// ---------------------------------------------------------------------------------------------
// ELF: DT_NEEDED and DT_RUNPATH / DT_RPATH of a shared object (64- and 32-bit, little/big endian)

function readElfDynamic(file) {
  const buf = fs.readFileSync(file);
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file} is not an ELF file`);
  const is64 = buf[4] === 2;
  const le = buf[5] === 1;
  const u16 = (o) => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const word = (o) => (is64 ? Number(le ? buf.readBigUInt64LE(o) : buf.readBigUInt64BE(o)) : u32(o));
  const shoff = word(is64 ? 0x28 : 0x20);
  const shentsize = u16(is64 ? 0x3a : 0x2e);
  const shnum = u16(is64 ? 0x3c : 0x30);
  const section = (i) => {
    const b = shoff + i * shentsize;
    return is64
      ? { type: u32(b + 4), offset: word(b + 0x18), size: word(b + 0x20), link: u32(b + 0x28) }
      : { type: u32(b + 4), offset: u32(b + 0x10), size: u32(b + 0x14), link: u32(b + 0x18) };
  };
  const out = { needed: [], runpath: [], rpath: [] };
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (s.type !== 6) continue; // SHT_DYNAMIC
    const str = section(s.link);
    const cstr = (off) => {
      const start = str.offset + off;
      const end = buf.indexOf(0, start);
      return buf.toString('utf8', start, end);
    };
    const ent = is64 ? 16 : 8;
    for (let o = s.offset; o + ent <= s.offset + s.size; o += ent) {
      const tag = word(o);
      const val = word(o + (is64 ? 8 : 4));
      if (tag === 0) break;
      if (tag === 1) out.needed.push(cstr(val));
      else if (tag === 29) out.runpath.push(...cstr(val).split(':').filter(Boolean));
      else if (tag === 15) out.rpath.push(...cstr(val).split(':').filter(Boolean));
    }
  }
  return out;
}

/** The libtorch libraries among a binary's DT_NEEDED entries (what ties it to one libtorch). */
function torchLibs(needed) {
  return needed.filter((n) => /^lib(torch|torch_cpu|torch_cuda|c10|c10_cuda)\.so(\.|$)/.test(n));
}

// ---------------------------------------------------------------------------------------------
// describing a libtorch from its lib directory

function firstExisting(files) {
  for (const f of files) {
    try {
      if (fs.statSync(f).isFile()) return f;
    } catch {
      // not there
    }
  }
  return null;
}

function readText(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** "12.1" from "2.1.2+cu121", null otherwise. */
function cudaFromLocalVersion(v) {
  const m = /\+cu(\d+)(\d)$/.exec(v || '');
  return m ? `${m[1]}.${m[2]}` : null;
}

/**
 * What can be told about the libtorch whose libraries are in libDir: version (from the real file
 * name of a versioned SONAME as Debian installs it, the zip's build-version, a pip wheel's
 * version.py, or TorchConfigVersion.cmake), CUDA (libtorch_cuda present; its version when
 * recorded), and the C++ ABI (whether c10 mentions std::__cxx11).
 */
function describeLibtorch(libDir) {
  let names;
  try {
    names = fs.readdirSync(libDir);
  } catch {
    return null;
  }
  const cpu = names.find((n) => /^libtorch_cpu\.so/.test(n));
  if (!cpu) return null;
  let version = null;
  let versionFrom = null;
  let cudaVersion = null;
  try {
    const real = path.basename(fs.realpathSync(path.join(libDir, cpu)));
    const m = /\.so\.(\d+\.\d+\.\d+)$/.exec(real);
    if (m) [version, versionFrom] = [m[1], real];
  } catch {
    // dangling link
  }
  const buildVersion = readText(path.join(libDir, '..', 'build-version'));
  if (buildVersion) {
    if (!version) [version, versionFrom] = [buildVersion.trim(), path.resolve(libDir, '..', 'build-version')];
    cudaVersion = cudaFromLocalVersion(buildVersion.trim());
  }
  const versionPy = readText(path.join(libDir, '..', 'version.py'));
  if (versionPy) {
    const v = /__version__\s*=\s*['"]([^'"]+)['"]/.exec(versionPy);
    const c = /^cuda\s*(?::\s*[^=]+)?=\s*['"]([^'"]+)['"]/m.exec(versionPy);
    if (v && !version) [version, versionFrom] = [v[1], path.resolve(libDir, '..', 'version.py')];
    if (c) cudaVersion = c[1];
  }
  if (!version) {
    const cfg = firstExisting([
      path.join(libDir, 'cmake', 'Torch', 'TorchConfigVersion.cmake'),
      path.join(libDir, '..', 'share', 'cmake', 'Torch', 'TorchConfigVersion.cmake'),
    ]);
    const m = cfg && /PACKAGE_VERSION\s+"([^"]+)"/.exec(readText(cfg) || '');
    if (m) [version, versionFrom] = [m[1], cfg];
  }
  const cuda = names.some((n) => /^libtorch_cuda\.so/.test(n));
  let cxx11Abi = null;
  const c10 = names.find((n) => /^libc10\.so/.test(n));
  if (c10) {
    try {
      cxx11Abi = fs.readFileSync(path.join(libDir, c10)).includes('St7__cxx11');
    } catch {
      // unreadable: unknown
    }
  }
  return { dir: path.resolve(libDir), version, versionFrom, cuda, cudaVersion: cuda ? cudaVersion : null, cxx11Abi };
}

// ---------------------------------------------------------------------------------------------
// where the dynamic loader finds a SONAME (glibc's order for an object with DT_RUNPATH)

let ldCache;
function ldconfigCache() {
  if (ldCache !== undefined) return ldCache;
  ldCache = new Map();
  for (const bin of ['/sbin/ldconfig', '/usr/sbin/ldconfig', 'ldconfig']) {
    try {
      const text = execFileSync(bin, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10000 });
      for (const line of text.split('\n')) {
        const m = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)/.exec(line);
        if (m && !ldCache.has(m[1]) && (process.arch !== 'x64' || m[2].includes('x86-64'))) ldCache.set(m[1], m[3]);
      }
      break;
    } catch {
      // try the next one
    }
  }
  return ldCache;
}

const DEFAULT_DIRS = ['/lib', '/usr/lib', '/lib64', '/usr/lib64', '/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/lib/aarch64-linux-gnu', '/usr/lib/aarch64-linux-gnu'];

/**
 * Where ld.so would find `soname` for a binary at `binaryFile` linked with `runpath`:
 * { file, dir, via } or null. `tried` collects the places looked at.
 */
function locate(soname, binaryFile, runpath, env, tried) {
  const origin = path.dirname(path.resolve(binaryFile));
  const expand = (d) => d.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin);
  const steps = [
    ['LD_LIBRARY_PATH', (env.LD_LIBRARY_PATH || '').split(':').filter(Boolean)],
    ['RUNPATH', runpath.map(expand)],
  ];
  for (const [via, dirs] of steps) {
    for (const d of dirs) {
      const f = path.join(d, soname);
      tried.push(`${via} ${d}`);
      if (fs.existsSync(f)) return { file: f, dir: path.resolve(d), via };
    }
  }
  const cached = ldconfigCache().get(soname);
  tried.push('the ld.so cache (ldconfig -p)');
  if (cached && fs.existsSync(cached)) return { file: cached, dir: path.dirname(cached), via: 'ld.so cache' };
  for (const d of DEFAULT_DIRS) {
    const f = path.join(d, soname);
    if (fs.existsSync(f)) return { file: f, dir: d, via: 'default directory' };
  }
  tried.push('the default directories');
  return null;
}

// ---------------------------------------------------------------------------------------------
// the check

function label(t) {
  if (!t) return 'an unknown libtorch';
  const device = t.cuda ? `CUDA${t.cudaVersion ? ' ' + t.cudaVersion : ''}` : 'CPU';
  const abi = t.cxx11Abi === true ? 'C++11 ABI' : t.cxx11Abi === false ? 'pre-C++11 ABI' : 'C++ ABI unknown';
  return `libtorch ${t.version || '(version unknown)'} (${device}, ${abi})`;
}

function majorMinor(v) {
  const m = /^(\d+)\.(\d+)/.exec(v || '');
  return m ? `${m[1]}.${m[2]}` : null;
}

/**
 * Checks the prebuilt binary `file` against the libtorch found now. Returns
 * { ok: true, meta, runtime } or { ok: false, meta, runtime, message }.
 * Versions must agree on major.minor (libtorch's binary interface changes with every minor
 * release; a patch release keeps it), CPU/CUDA must agree (and the CUDA version when both are
 * known), and so must the C++ ABI.
 */
function checkPrebuild(file, env = process.env) {
  const rel = isPrebuild(file) ? path.join('prebuilds', path.basename(path.dirname(file)), path.basename(file)) : file;
  const metaFile = path.join(path.dirname(file), META_FILE);
  // why: what does not fit; fix: how to make the prebuild usable (else only the source build is offered)
  const fail = (why, extra = {}, fix = null) => ({
    ok: false,
    reason: `${rel}: ${why}`,
    message: `the prebuilt hdlm binary ${path.resolve(file)} cannot be used: ${why}. ${fix ? `${fix}, or ${FROM_SOURCE_HINT}` : `Instead, ${FROM_SOURCE_HINT}`}.`,
    ...extra,
  });
  let meta;
  try {
    meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
  } catch (e) {
    return fail(`it has no readable record of the libtorch it was built against (${path.join(path.basename(path.dirname(file)), META_FILE)}: ${e.code || e.message})`);
  }
  const built = meta.libtorch || {};
  const needed = Array.isArray(meta.needed) ? meta.needed : [];
  const key = needed.find((n) => /^libtorch_cpu\.so/.test(n)) || needed[0];
  if (!key) return fail(`its record ${META_FILE} lists no libtorch library`, { meta });
  const tried = [];
  const where = locate(key, file, Array.isArray(meta.runpath) ? meta.runpath : [], env, tried);
  if (!where) {
    return fail(
      `it was built for ${label(built)} and needs ${needed.join(', ')}, but ${key} is not where the dynamic loader looks ` +
        `(${[...new Set(tried)].join(', ')})`,
      { meta },
      `Install that libtorch (${key.startsWith('libtorch_cpu.so.') ? `Debian/Ubuntu: the libtorch${key.slice('libtorch_cpu.so.'.length)} package` : `the libtorch zip it was built with, unpacked at ${path.resolve((meta.runpath || [])[0] || '/opt/libtorch/lib', '..')} or with its lib/ on LD_LIBRARY_PATH`})`,
    );
  }
  const runtime = { ...(describeLibtorch(where.dir) || { dir: where.dir, version: null, cuda: false, cudaVersion: null, cxx11Abi: null }), via: where.via, file: where.file };
  const problems = [];
  if (majorMinor(built.version) && majorMinor(runtime.version) && majorMinor(built.version) !== majorMinor(runtime.version)) {
    problems.push(`version ${built.version} ≠ ${runtime.version}`);
  } else if (!runtime.version) {
    problems.push(`the version of the libtorch in ${runtime.dir} cannot be determined`);
  }
  if (!!built.cuda !== !!runtime.cuda) problems.push(built.cuda ? 'it needs a CUDA libtorch, the one found is CPU-only' : 'it is a CPU build, the libtorch found has CUDA');
  else if (built.cuda && built.cudaVersion && runtime.cudaVersion && majorMinor(built.cudaVersion) !== majorMinor(runtime.cudaVersion)) {
    problems.push(`CUDA ${built.cudaVersion} ≠ ${runtime.cudaVersion}`);
  }
  if (typeof built.cxx11Abi === 'boolean' && typeof runtime.cxx11Abi === 'boolean' && built.cxx11Abi !== runtime.cxx11Abi) {
    problems.push('the C++ ABI differs');
  }
  if (problems.length) {
    return fail(
      `it was built for ${label(built)}, but the libtorch the dynamic loader finds (${where.file}, via ${where.via}) is ${label(runtime)}: ` +
        `${problems.join('; ')}; loading it could crash the process`,
      { meta, runtime },
      `Install ${label(built)} where the loader finds it`,
    );
  }
  return { ok: true, meta, runtime };
}

/**
 * The prebuilt binary for this platform in `dir` (or in HDLM_PREBUILD, the folder
 * node-gyp-build is redirected to), as node-gyp-build would pick it, or null.
 */
function findPrebuild(dir, env = process.env) {
  const base = env.HDLM_PREBUILD || dir;
  const folder = path.join(base, 'prebuilds', `${process.platform}-${process.arch}`);
  let names;
  try {
    names = fs.readdirSync(folder);
  } catch {
    return null;
  }
  const f = names.filter((n) => n.endsWith('.node')).sort()[0];
  return f ? path.join(folder, f) : null;
}

function isPrebuild(file) {
  return path.basename(path.dirname(path.dirname(file))) === 'prebuilds';
}

module.exports = { META_FILE, FROM_SOURCE_HINT, checkPrebuild, describeLibtorch, readElfDynamic, torchLibs, findPrebuild, isPrebuild, label };
