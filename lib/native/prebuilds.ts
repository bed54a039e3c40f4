/**
 * The package's prebuilt binaries, side by side, one per libtorch build (platform, arch, torch
 * version, CUDA version or CPU, C++ ABI), listed in prebuilds/manifest.json
 * (scripts/prebuild.js writes it; native/prebuilds.json lists the builds):
 *
 *   prebuilds/manifest.json
 *   prebuilds/<platform>-<arch>/hdlm_libloader.node        opens libtorch's libraries (no libtorch inside)
 *   prebuilds/<platform>-<arch>/<id>/hdlm.node             the addon linked against that libtorch
 *   prebuilds/<platform>-<arch>/<id>/hdlm.libtorch.json    its manifest entry
 *
 * The policy lives here: which prebuild fits the libtorch native/libtorch.ts found, the checks of
 * the chosen file before it is loaded (its digest, the libtorch libraries it links), the order in
 * which that libtorch's libraries are opened, and the messages when nothing fits.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { libtorchLabel, type LibtorchDescription } from './libtorch';

export const MANIFEST = 'manifest.json';
export const ENTRY_FILE = 'hdlm.libtorch.json';
export const LIBLOADER = 'hdlm_libloader.node';

export interface PrebuildLibtorch {
  version: string;
  /** CUDA version ('13.0'), or null for a CPU build */
  cuda: string | null;
  cxx11Abi: boolean;
}

export interface PrebuildEntry {
  /** the build's id in native/prebuilds.json, e.g. 'torch2.11-cu130-cxx11' */
  id: string;
  platform: string;
  arch: string;
  /** the addon, relative to prebuilds/ */
  file: string;
  sha256: string;
  libtorch: PrebuildLibtorch;
  /** the libtorch libraries it links (DT_NEEDED), by SONAME */
  needed: string[];
  /** how it was built: builder, node, the libtorch folder, time */
  built?: Record<string, unknown>;
}

export interface PrebuildManifest {
  format: 2;
  package: string;
  /** per '<platform>-<arch>': the library opener, relative to prebuilds/ */
  libloaders: Record<string, { file: string; sha256: string }>;
  prebuilds: PrebuildEntry[];
}

export type Selection =
  | { ok: true; entry: PrebuildEntry; reason: string; preload: string[] }
  | { ok: false; rejected: { id: string; why: string }[] };

/** "2.11" from "2.11.0" */
export function majorMinor(v: string | null | undefined): string | null {
  const m = /^(\d+)\.(\d+)/.exec(v ?? '');
  return m ? `${m[1]}.${m[2]}` : null;
}

export function sha256(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** prebuilds/manifest.json of the package (or prebuild folder) in dir, or why it cannot be read (null: there is none). */
export function readManifest(dir: string): PrebuildManifest | null | string {
  const file = path.join(dir, 'prebuilds', MANIFEST);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? null : `${file}: ${(e as Error).message}`;
  }
  try {
    const m = JSON.parse(text) as PrebuildManifest;
    if (m.format !== 2 || !Array.isArray(m.prebuilds) || typeof m.libloaders !== 'object' || m.libloaders === null) return `${file} is not a format-2 prebuild manifest`;
    return m;
  } catch (e) {
    return `${file} is not JSON (${(e as Error).message})`;
  }
}

// Opening order: each library after the ones it links (libtorch_cpu links libc10, libtorch_cuda links both *_cpu and c10_cuda).
const RANK = ['libc10.so', 'libc10_cuda.so', 'libtorch_cpu.so', 'libtorch_cuda.so', 'libtorch.so'];
const rankOf = (soname: string): number => {
  const i = RANK.findIndex((r) => soname === r || soname.startsWith(`${r}.`));
  return i < 0 ? RANK.length : i;
};

/** The libtorch libraries among a binary's DT_NEEDED entries, in the order they are opened. */
export function torchLibs(needed: string[]): string[] {
  return needed.filter((n) => /^lib(torch|torch_cpu|torch_cuda|c10|c10_cuda)\.so(\.|$)/.test(n)).sort((a, b) => rankOf(a) - rankOf(b));
}

/** Why entry does not fit the libtorch found, or null when it does. */
export function mismatch(entry: PrebuildEntry, torch: LibtorchDescription, platform: string, arch: string): string | null {
  if (entry.platform !== platform || entry.arch !== arch) return `for ${entry.platform}-${entry.arch}, this is ${platform}-${arch}`;
  const problems: string[] = [];
  if (!torch.version) problems.push('the version of the libtorch found is unknown');
  else if (majorMinor(torch.version) !== majorMinor(entry.libtorch.version)) problems.push(`torch ${majorMinor(entry.libtorch.version)} ≠ ${majorMinor(torch.version)}`);
  if (entry.libtorch.cuda === null && torch.cuda !== null) problems.push('a CPU build, the libtorch found has CUDA');
  else if (entry.libtorch.cuda !== null && torch.cuda === null) problems.push('a CUDA build, the libtorch found is CPU-only');
  else if (entry.libtorch.cuda !== null && torch.cuda === 'unknown') problems.push('the CUDA version of the libtorch found is unknown');
  else if (entry.libtorch.cuda !== null && majorMinor(entry.libtorch.cuda) !== majorMinor(torch.cuda)) problems.push(`CUDA ${entry.libtorch.cuda} ≠ ${torch.cuda}`);
  if (torch.cxx11Abi === null) problems.push('the C++ ABI of the libtorch found is unknown');
  else if (torch.cxx11Abi !== entry.libtorch.cxx11Abi) problems.push(`${entry.libtorch.cxx11Abi ? 'C++11' : 'pre-C++11'} ABI ≠ ${torch.cxx11Abi ? 'C++11' : 'pre-C++11'}`);
  if (problems.length) return problems.join('; ');
  const missing = entry.needed.filter((soname) => !fs.existsSync(path.join(torch.libDir, soname)));
  if (missing.length) return `it links ${missing.join(', ')}, which ${torch.libDir} lacks`;
  return null;
}

/** The prebuild for the libtorch found: same platform and arch, torch major.minor, CPU or the same CUDA major.minor, same ABI, and its libraries present. */
export function selectPrebuild(manifest: PrebuildManifest, torch: LibtorchDescription, platform: string = process.platform, arch: string = process.arch): Selection {
  const rejected: { id: string; why: string }[] = [];
  const fits: PrebuildEntry[] = [];
  for (const entry of manifest.prebuilds) {
    const why = mismatch(entry, torch, platform, arch);
    if (why) rejected.push({ id: entry.id, why });
    else fits.push(entry);
  }
  if (!fits.length) return { ok: false, rejected };
  // a build for the very same patch release first
  const entry = fits.find((e) => e.libtorch.version === torch.version) ?? fits[0];
  return {
    ok: true,
    entry,
    reason: `${entry.id} is built for ${libtorchLabel(entry.libtorch)}, the libtorch found (${torch.source}: ${torch.libDir}) is ${libtorchLabel(torch)}`,
    preload: torchLibs(entry.needed).map((soname) => path.join(torch.libDir, soname)),
  };
}

/** One line per prebuild: "torch2.11-cu130-cxx11 (linux-x64, libtorch 2.11.0 (CUDA 13.0, C++11 ABI))". */
export function describePrebuilds(manifest: PrebuildManifest | null): string {
  if (!manifest || !manifest.prebuilds.length) return 'none';
  return manifest.prebuilds.map((e) => `${e.id} (${e.platform}-${e.arch}, ${libtorchLabel(e.libtorch)})`).join('; ');
}

export const FROM_SOURCE_FIX =
  '`npm rebuild hdlm --build-from-source` (or `HDLM_BUILD_FROM_SOURCE=1 npm rebuild hdlm`; needs cmake and a C++17 compiler) builds hdlm against the libtorch found';

/** The message when no prebuild fits the libtorch found. */
export function noMatchMessage(torch: LibtorchDescription, manifest: PrebuildManifest, rejected: { id: string; why: string }[]): string {
  return (
    `no prebuilt hdlm binary fits the libtorch found: ${torch.libDir} (through ${torch.source}) is ${libtorchLabel(torch)}. ` +
    `The package has prebuilds for: ${describePrebuilds(manifest)}` +
    (rejected.length ? ` (${rejected.map((r) => `${r.id}: ${r.why}`).join('; ')})` : '') +
    `. To fix it: ${FROM_SOURCE_FIX}, or point LIBTORCH (or VIRTUAL_ENV) at one of the libtorch builds above.`
  );
}

/** The message when no libtorch was found at all. */
export function noLibtorchMessage(tried: string[], manifest: PrebuildManifest | null): string {
  return (
    `hdlm found no libtorch (looked at: ${tried.join('; ') || 'nothing'}). The package has prebuilds for: ${describePrebuilds(manifest)}. ` +
    'To fix it: install one of those (Debian/Ubuntu: `sudo apt-get install libtorch1.13`; with pip: `pip install torch`), ' +
    'or set LIBTORCH to the root of an unpacked libtorch.'
  );
}

// ---------------------------------------------------------------------------------------------
// ELF: DT_NEEDED and DT_RUNPATH / DT_RPATH of a shared object (64- and 32-bit, either byte order)

export function readElfDynamic(file: string): { needed: string[]; runpath: string[]; rpath: string[] } {
  const buf = fs.readFileSync(file);
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file} is not an ELF file`);
  const is64 = buf[4] === 2;
  const le = buf[5] === 1;
  const u16 = (o: number): number => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const word = (o: number): number => (is64 ? Number(le ? buf.readBigUInt64LE(o) : buf.readBigUInt64BE(o)) : u32(o));
  const shoff = word(is64 ? 0x28 : 0x20);
  const shentsize = u16(is64 ? 0x3a : 0x2e);
  const shnum = u16(is64 ? 0x3c : 0x30);
  const section = (i: number): { type: number; offset: number; size: number; link: number } => {
    const b = shoff + i * shentsize;
    return is64
      ? { type: u32(b + 4), offset: word(b + 0x18), size: word(b + 0x20), link: u32(b + 0x28) }
      : { type: u32(b + 4), offset: u32(b + 0x10), size: u32(b + 0x14), link: u32(b + 0x18) };
  };
  const out = { needed: [] as string[], runpath: [] as string[], rpath: [] as string[] };
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (s.type !== 6) continue; // SHT_DYNAMIC
    const str = section(s.link);
    const cstr = (off: number): string => buf.toString('utf8', str.offset + off, buf.indexOf(0, str.offset + off));
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

/** Checks the chosen prebuild's file before it is loaded: present, the digest the manifest records, and linking exactly the libtorch libraries recorded. Returns why not, or null. */
export function verifyPrebuild(prebuildsDir: string, entry: PrebuildEntry): string | null {
  const file = path.join(prebuildsDir, entry.file);
  if (!fs.existsSync(file)) return `${file} is missing`;
  if (sha256(file) !== entry.sha256) return `${file} is not the binary the manifest records (its SHA-256 differs)`;
  let linked: string[];
  try {
    linked = torchLibs(readElfDynamic(file).needed);
  } catch (e) {
    return `${file} cannot be read as a shared library (${(e as Error).message})`;
  }
  const want = torchLibs(entry.needed);
  if (linked.join(' ') !== want.join(' ')) return `${file} links ${linked.join(', ') || 'no libtorch library'}, its record says ${want.join(', ')}`;
  return null;
}

/**
 * Whether this system's glibc can load the prebuild's binary (a binary built on a newer system
 * fails in dlopen with a linker message): why not, or null. Checked at load time only; packaging
 * on any machine ships binaries for newer ones.
 */
export function glibcProblem(prebuildsDir: string, entry: PrebuildEntry): string | null {
  const need = requiredGlibc(fs.readFileSync(path.join(prebuildsDir, entry.file)));
  const have = runtimeGlibc();
  if (need && have && compareVersions(have, need) < 0) return `it needs glibc ${need} or newer (it was built on a newer system), this system has glibc ${have}`;
  return null;
}

/** The newest GLIBC_x.y symbol version a shared object asks for (its version strings), or null. */
export function requiredGlibc(elf: Buffer): string | null {
  let best: string | null = null;
  for (const m of elf.toString('latin1').matchAll(/GLIBC_(\d+\.\d+(?:\.\d+)?)\0/g)) {
    if (best === null || compareVersions(m[1], best) > 0) best = m[1];
  }
  return best;
}

/** This process's glibc version (null elsewhere, e.g. musl). */
export function runtimeGlibc(): string | null {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime ?? null;
}

function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
