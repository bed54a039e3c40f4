/**
 * Finds the libtorch hdlm runs on and describes it from its files: version, CUDA version (null:
 * a CPU build), C++ ABI and the folder holding its shared libraries. The order is the one the
 * build from source uses (scripts/find-libtorch.js):
 *
 *   1. LIBTORCH                       the root of an unpacked libtorch (pytorch.org zip)
 *   2. Torch_DIR, CMAKE_PREFIX_PATH   a folder holding TorchConfig.cmake
 *   3. VIRTUAL_ENV, CONDA_PREFIX      the torch package of the active environment (site-packages)
 *   4. python3                        the torch package of the first python3 on PATH (found
 *                                     without importing torch, with a time limit)
 *   5. the system                     Debian/Ubuntu's libtorch (its versioned libraries; the
 *                                     -dev package's TorchConfig.cmake when present)
 *
 * Plain file reading and one bounded child process; nothing here loads libtorch. Used at load
 * time (lib/binding.ts), by the install script (scripts/build-native.js) and by the prebuild
 * packaging (scripts/prebuild.js).
 */
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';

export interface LibtorchDescription {
  /** how it was found: 'LIBTORCH', 'Torch_DIR', 'CMAKE_PREFIX_PATH', 'VIRTUAL_ENV', 'CONDA_PREFIX', 'python3', 'system' */
  source: string;
  /** the torch package, the libtorch root, or the system prefix's library folder */
  root: string;
  /** the folder holding libtorch_cpu and libc10 */
  libDir: string;
  /** the folder holding TorchConfig.cmake, when there is one (needed to build from source) */
  cmakeDir: string | null;
  /** e.g. '2.11.0' (without the '+cu130' local part), null when no file says */
  version: string | null;
  /** CUDA version of a CUDA build, e.g. '13.0'; null for a CPU build; 'unknown' when libtorch_cuda is there but no file names the version */
  cuda: string | null;
  /** whether it was built with the C++11 ABI of libstdc++ (_GLIBCXX_USE_CXX11_ABI=1); null when unknown */
  cxx11Abi: boolean | null;
  /** the file each property was read from */
  evidence: { version: string | null; cuda: string | null; cxx11Abi: string | null };
}

export interface LocateResult {
  found: LibtorchDescription | null;
  /** every place looked at before (and including) the one found, and why each did not do */
  tried: string[];
}

const SYSTEM_LIB_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/local/lib', '/usr/lib64', '/usr/lib'];
const PYTHON_TIMEOUT_MS = 15000;

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function list(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** "13.0" from a local version tag "cu130" (and "12.1" from "cu121"); null otherwise. */
export function cudaFromTag(version: string): string | null {
  const m = /\+cu(\d+)(\d)$/.exec(version.trim());
  return m ? `${m[1]}.${m[2]}` : null;
}

/** A libtorch library file in dir: the unversioned name, else a versioned one (libtorch_cpu.so.1.13). */
function libFile(dir: string, stem: string): string | null {
  const names = list(dir).filter((n) => n === `${stem}.so` || n.startsWith(`${stem}.so.`)).sort((a, b) => a.length - b.length);
  return names.length ? path.join(dir, names[0]) : null;
}

/** The ABI TorchConfig.cmake hands to CMake in TORCH_CXX_FLAGS (-D_GLIBCXX_USE_CXX11_ABI=0|1). */
function abiFromCmake(cmakeDir: string | null): boolean | null {
  if (!cmakeDir) return null;
  const m = /-D_GLIBCXX_USE_CXX11_ABI=([01])/.exec(readText(path.join(cmakeDir, 'TorchConfig.cmake')) ?? '');
  return m ? m[1] === '1' : null;
}

/** The ABI read from libc10 itself: the C++11 ABI's std::string is std::__cxx11::basic_string (mangled St7__cxx11). */
function abiFromLibrary(file: string | null): boolean | null {
  if (!file) return null;
  try {
    return fs.readFileSync(file).includes('St7__cxx11');
  } catch {
    return null;
  }
}

/** TORCH_VERSION from torch/csrc/api/include/torch/version.h (a string, or MAJOR/MINOR/PATCH). */
function versionFromHeader(includeDir: string): { version: string; file: string } | null {
  const file = path.join(includeDir, 'torch', 'csrc', 'api', 'include', 'torch', 'version.h');
  const text = readText(file);
  if (!text) return null;
  const s = /#define\s+TORCH_VERSION\s+"([^"]+)"/.exec(text);
  if (s) return { version: s[1], file };
  const part = (k: string): string | undefined => new RegExp(`#define\\s+TORCH_VERSION_${k}\\s+(\\d+)`).exec(text)?.[1];
  const [a, b, c] = [part('MAJOR'), part('MINOR'), part('PATCH')];
  return a && b && c ? { version: `${a}.${b}.${c}`, file } : null;
}

/**
 * Describes the libtorch whose libraries are in libDir (root: the torch package or libtorch root,
 * or null for a system library folder), or says why it is not one.
 */
export function describeLibtorch(source: string, root: string, libDir: string, cmakeDir: string | null): LibtorchDescription | string {
  const cpu = libFile(libDir, 'libtorch_cpu');
  const c10 = libFile(libDir, 'libc10');
  if (!cpu || !c10) return `no libtorch_cpu / libc10 library in ${libDir}`;
  let version: string | null = null;
  let cuda: string | null = null;
  const evidence: LibtorchDescription['evidence'] = { version: null, cuda: null, cxx11Abi: null };
  const setVersion = (v: string, file: string): void => {
    if (version) return;
    version = v.trim().replace(/\+.*$/, '');
    evidence.version = file;
  };
  // a pip wheel: torch/version.py ("__version__ = '2.11.0+cu130'", "cuda: Optional[str] = '13.0'" or None)
  const versionPy = path.join(root, 'version.py');
  const py = readText(versionPy);
  if (py) {
    const v = /^__version__\s*(?::\s*[^=]+)?=\s*['"]([^'"]+)['"]/m.exec(py);
    if (v) setVersion(v[1], versionPy);
    const c = /^cuda\s*(?::\s*[^=]+)?=\s*(?:['"]([^'"]+)['"]|None)/m.exec(py);
    if (c) [cuda, evidence.cuda] = [c[1] ?? null, versionPy];
  }
  // a pytorch.org zip: build-version ("2.11.0+cu130")
  const buildVersion = path.join(root, 'build-version');
  const bv = readText(buildVersion);
  if (bv) {
    setVersion(bv, buildVersion);
    if (!evidence.cuda) [cuda, evidence.cuda] = [cudaFromTag(bv), buildVersion];
  }
  // the headers, where they are installed (zip, wheel, Debian's -dev package)
  for (const inc of [path.join(root, 'include'), path.resolve(libDir, '..', '..', 'include'), path.resolve(libDir, '..', 'include')]) {
    const h = versionFromHeader(inc);
    if (h) setVersion(h.version, h.file);
  }
  // TorchConfigVersion.cmake
  if (cmakeDir) {
    const f = path.join(cmakeDir, 'TorchConfigVersion.cmake');
    const m = /PACKAGE_VERSION\s+"([^"]+)"/.exec(readText(f) ?? '');
    if (m) setVersion(m[1], f);
  }
  // Debian's versioned library file (libtorch_cpu.so.1.13.0)
  if (!version) {
    try {
      const real = fs.realpathSync(cpu);
      const m = /\.so\.(\d+\.\d+\.\d+)$/.exec(real);
      if (m) setVersion(m[1], real);
    } catch {
      // a dangling link: no version from it
    }
  }
  const cudaLib = libFile(libDir, 'libtorch_cuda');
  if (!evidence.cuda) {
    cuda = cudaLib ? 'unknown' : null;
    evidence.cuda = cudaLib ?? `${path.join(libDir, 'libtorch_cuda.so')} (absent)`;
  } else if (cuda && !cudaLib) {
    return `${evidence.cuda} says CUDA ${cuda}, but ${libDir} has no libtorch_cuda library`;
  }
  let cxx11Abi = abiFromCmake(cmakeDir);
  if (cxx11Abi !== null) evidence.cxx11Abi = path.join(cmakeDir as string, 'TorchConfig.cmake');
  else {
    cxx11Abi = abiFromLibrary(c10);
    if (cxx11Abi !== null) evidence.cxx11Abi = c10;
  }
  return { source, root: path.resolve(root), libDir: path.resolve(libDir), cmakeDir: cmakeDir && path.resolve(cmakeDir), version, cuda, cxx11Abi, evidence };
}

/** TorchConfig.cmake's folder → the libtorch's root, lib and cmake folders (wheel/zip: <root>/share/cmake/Torch; Debian: <prefix>/lib/<triplet>/cmake/Torch). */
function fromCmakeDir(cmakeDir: string): { root: string; libDir: string } {
  const up3 = path.resolve(cmakeDir, '..', '..', '..');
  if (fs.existsSync(path.join(up3, 'lib')) && (fs.existsSync(path.join(up3, 'include', 'torch')) || fs.existsSync(path.join(up3, 'version.py')) || fs.existsSync(path.join(up3, 'build-version')))) {
    return { root: up3, libDir: path.join(up3, 'lib') };
  }
  const libDir = path.resolve(cmakeDir, '..', '..');
  return { root: libDir, libDir };
}

/** The torch package folders under an environment prefix (lib/python3.X/site-packages/torch). */
function envTorchDirs(prefix: string): string[] {
  const out: string[] = [];
  for (const lib of ['lib', 'lib64']) {
    for (const py of list(path.join(prefix, lib)).filter((n) => /^python3(\.\d+)?t?$/.test(n)).sort().reverse()) {
      const torch = path.join(prefix, lib, py, 'site-packages', 'torch');
      if (isDir(torch)) out.push(torch);
    }
  }
  return out;
}

/** The torch package folder of python3 (importlib's spec: torch itself is not imported), or why not. */
export function pythonTorchDir(env: NodeJS.ProcessEnv, python = 'python3'): { dir: string | null; why: string } {
  const code = "import importlib.util as u\ns = u.find_spec('torch')\nprint(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')";
  const r = spawnSync(python, ['-c', code], { env, encoding: 'utf8', timeout: PYTHON_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) {
    const e = r.error as NodeJS.ErrnoException;
    return { dir: null, why: e.code === 'ENOENT' ? `no ${python} on PATH` : e.code === 'ETIMEDOUT' ? `${python} did not answer within ${PYTHON_TIMEOUT_MS / 1000} s` : `${python} failed (${e.message})` };
  }
  if (r.status !== 0) return { dir: null, why: `${python} failed (exit ${r.status ?? r.signal})` };
  const dir = r.stdout.trim();
  return dir ? { dir, why: '' } : { dir: null, why: `${python} has no torch package` };
}

/**
 * Finds the libtorch to use, in the order above. HDLM_SYSTEM_TORCH_DIRS (path-delimited folders,
 * each holding TorchConfig.cmake or the libraries) replaces the system list; the tests use it.
 * HDLM_NO_PYTHON_TORCH=1 skips the python3 step.
 */
export function locateLibtorch(env: NodeJS.ProcessEnv = process.env): LocateResult {
  const tried: string[] = [];
  const attempt = (source: string, root: string, libDir: string, cmakeDir: string | null, where: string): LibtorchDescription | null => {
    const d = describeLibtorch(source, root, libDir, cmakeDir && fs.existsSync(path.join(cmakeDir, 'TorchConfig.cmake')) ? cmakeDir : null);
    if (typeof d === 'string') {
      tried.push(`${source} (${where}): ${d}`);
      return null;
    }
    tried.push(`${source} (${where}): found`);
    return d;
  };
  const viaCmakeDir = (source: string, cmakeDir: string): LibtorchDescription | null => {
    if (!fs.existsSync(path.join(cmakeDir, 'TorchConfig.cmake'))) {
      tried.push(`${source}: no TorchConfig.cmake in ${cmakeDir}`);
      return null;
    }
    const { root, libDir } = fromCmakeDir(cmakeDir);
    return attempt(source, root, libDir, cmakeDir, cmakeDir);
  };
  const viaTorchPackage = (source: string, torch: string): LibtorchDescription | null =>
    attempt(source, torch, path.join(torch, 'lib'), path.join(torch, 'share', 'cmake', 'Torch'), torch);

  if (env.LIBTORCH) {
    const found = attempt('LIBTORCH', env.LIBTORCH, path.join(env.LIBTORCH, 'lib'), path.join(env.LIBTORCH, 'share', 'cmake', 'Torch'), env.LIBTORCH);
    if (found) return { found, tried };
  }
  if (env.Torch_DIR) {
    const found = viaCmakeDir('Torch_DIR', env.Torch_DIR);
    if (found) return { found, tried };
  }
  for (const prefix of (env.CMAKE_PREFIX_PATH || '').split(path.delimiter).filter(Boolean)) {
    for (const dir of [path.join(prefix, 'Torch'), path.join(prefix, 'share', 'cmake', 'Torch')]) {
      if (!fs.existsSync(path.join(dir, 'TorchConfig.cmake'))) continue;
      const found = viaCmakeDir('CMAKE_PREFIX_PATH', dir);
      if (found) return { found, tried };
    }
  }
  for (const key of ['VIRTUAL_ENV', 'CONDA_PREFIX'] as const) {
    const prefix = env[key];
    if (!prefix) continue;
    const dirs = envTorchDirs(prefix);
    if (!dirs.length) tried.push(`${key} (${prefix}): no lib/python3.*/site-packages/torch`);
    for (const torch of dirs) {
      const found = viaTorchPackage(key, torch);
      if (found) return { found, tried };
    }
  }
  if (env.HDLM_NO_PYTHON_TORCH !== '1') {
    const py = pythonTorchDir(env);
    if (py.dir) {
      const found = viaTorchPackage('python3', py.dir);
      if (found) return { found, tried };
    } else tried.push(`python3: ${py.why}`);
  }
  const systemDirs = env.HDLM_SYSTEM_TORCH_DIRS !== undefined ? env.HDLM_SYSTEM_TORCH_DIRS.split(path.delimiter).filter(Boolean) : SYSTEM_LIB_DIRS;
  for (const dir of systemDirs) {
    if (fs.existsSync(path.join(dir, 'TorchConfig.cmake'))) {
      const found = viaCmakeDir('system', dir);
      if (found) return { found, tried };
      continue;
    }
    if (!libFile(dir, 'libtorch_cpu')) {
      tried.push(`system (${dir}): no libtorch_cpu library`);
      continue;
    }
    // Debian: the -dev package's cmake config, when installed, says the ABI
    const found = attempt('system', dir, dir, path.join(dir, 'cmake', 'Torch'), dir);
    if (found) return { found, tried };
  }
  return { found: null, tried };
}

/** "libtorch 2.11.0 (CUDA 13.0, C++11 ABI)" */
export function libtorchLabel(t: { version: string | null; cuda: string | null; cxx11Abi: boolean | null } | null): string {
  if (!t) return 'an unknown libtorch';
  const device = t.cuda === null ? 'CPU' : t.cuda === 'unknown' ? 'CUDA, version unknown' : `CUDA ${t.cuda}`;
  const abi = t.cxx11Abi === true ? 'C++11 ABI' : t.cxx11Abi === false ? 'pre-C++11 ABI' : 'C++ ABI unknown';
  return `libtorch ${t.version ?? '(version unknown)'} (${device}, ${abi})`;
}
