/**
 * `hdlm info`: the libtorch in use, the native binary, CUDA, threads, the caches and the models
 * in the Hugging Face cache.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EXIT_OK, parse, pkgVersion, type Command, type OptionSpec } from '../args';
import { formatBytes } from '../progress';
import { out } from '../terminal';

const HELP = `Usage: hdlm info [--json]

Shows the libtorch in use (its version and the library file this process loaded), whether the
addon is a prebuilt binary (which one, the libtorch it was built for and why it was chosen: the
libtorch found, where and how) or built from source, the prebuilds the package has, CUDA support
and devices, CPU threads, the Hugging Face cache and the models in it, and the TorchScript cache
(HDLM_CACHE, else ~/.cache/hdlm), and that a TorchScript file is code to be trusted like a
script (docs/security.md). When no prebuilt binary fits the libtorch found, the error
names what was found, the prebuilds there are and how to build from source.

Options:
  --json                      print one JSON object
  -h, --help                  show this help`;

const OPTIONS: Record<string, OptionSpec> = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

/** The cache's modules (*.pt; their seals and the key are not counted). */
function dirSize(dir: string): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  const walk = (d: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && e.name.endsWith('.pt')) {
        try {
          bytes += fs.statSync(p).size;
          files++;
        } catch {
          // vanished
        }
      }
    }
  };
  walk(dir);
  return { files, bytes };
}

/** What hdlm info says about TorchScript files (docs/security.md). */
const TRUST = 'a TorchScript file is code, run when loaded: load only files you made (hdlm export) or trust like a script';

/** What a model load sets when no threads option is given (core/loader.ts defaultThreads): HDLM_NUM_THREADS clamped to the cores, else the cores. */
function defaultThreads(): number {
  const cores = os.availableParallelism();
  const n = process.env.HDLM_NUM_THREADS ? Number(process.env.HDLM_NUM_THREADS) : NaN;
  return Number.isInteger(n) && n >= 1 ? Math.min(n, cores) : cores;
}

async function run(args: string[]): Promise<number> {
  const { values } = parse('info', args, OPTIONS, 0);
  if (values.help) {
    out(HELP + '\n');
    return EXIT_OK;
  }
  const hdlm = await import('../../index.js');
  const rt = hdlm.runtimeInfo();
  const native = hdlm.nativeInfo();
  const hubDir = hdlm.hubCacheDir();
  const tsDir = process.env.HDLM_CACHE || path.join(os.homedir(), '.cache', 'hdlm');
  const ts = dirSize(path.join(tsDir, 'torchscript'));
  const models = await hdlm.listCachedModels();
  const info = {
    version: pkgVersion(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    libtorchVersion: rt.libtorchVersion,
    // the libtorch library loaded by this process, and the addon binary that loaded it
    libtorch: native.libtorch,
    binary: native.binary,
    prebuilds: native.prebuilds,
    cudaCompiled: rt.cudaCompiled,
    cudaDeviceCount: rt.cudaDeviceCount,
    cudaDeviceName: rt.cudaDeviceName,
    // fast mode's NVRTC-compiled CUDA kernels on device 0 (else ATen kernels, and why)
    fusedKernels: hdlm.fusedKernelStatus(0),
    defaultDevice: rt.cudaDeviceCount > 0 ? 'cuda:0' : 'cpu',
    // what a model load sets (core/loader.ts): HDLM_NUM_THREADS, else every core
    threads: defaultThreads(),
    libtorchThreads: rt.threads,
    demoModel: hdlm.DEMO_MODEL_PATH,
    hubCacheDir: hubDir,
    torchscriptCacheDir: tsDir,
    torchscriptCache: { modules: ts.files, sizeBytes: ts.bytes },
    torchscriptTrust: TRUST,
    cachedModels: models,
  };
  if (values.json) {
    out(JSON.stringify(info, null, 2) + '\n');
    return EXIT_OK;
  }
  const cuda = rt.cudaCompiled
    ? `compiled in, ${rt.cudaDeviceCount} device${rt.cudaDeviceCount === 1 ? '' : 's'} visible`
    : 'not compiled in (CPU-only libtorch)';
  const lines = [
    `hdlm ${info.version} (node ${info.node}, ${info.platform})`,
    `libtorch           ${rt.libtorchVersion}${native.libtorch ? ` (${native.libtorch.file}${native.libtorch.cuda ? ', CUDA' : ', CPU'}${native.libtorch.cxx11Abi === false ? ', pre-C++11 ABI' : ''})` : ''}`,
    `addon              ${native.binary.kind === 'prebuild' ? `prebuilt binary ${native.binary.prebuild}` : 'built from source'} (${native.binary.path})`,
    `  chosen because    ${native.binary.reason}`,
    ...(native.binary.libtorch
      ? [`  libtorch found    ${native.binary.libtorch.libDir} through ${native.binary.libtorch.source}: version ${native.binary.libtorch.version ?? '?'} (${native.binary.libtorch.evidence.version ?? '?'}), ` +
          `${native.binary.libtorch.cuda === null ? 'CPU' : `CUDA ${native.binary.libtorch.cuda}`} (${native.binary.libtorch.evidence.cuda ?? '?'}), ` +
          `${native.binary.libtorch.cxx11Abi === null ? 'ABI unknown' : native.binary.libtorch.cxx11Abi ? 'C++11 ABI' : 'pre-C++11 ABI'} (${native.binary.libtorch.evidence.cxx11Abi ?? '?'})`,
        `  opened            ${native.binary.opened.join(', ')}`]
      : []),
    `prebuilds          ${native.prebuilds}`,
    `CUDA               ${cuda}`,
    `default device     ${info.defaultDevice}`,
    `CPU threads        ${info.threads}${process.env.HDLM_NUM_THREADS ? ' (HDLM_NUM_THREADS)' : ''}`,
    `demo model         ${info.demoModel}`,
    `TorchScript cache  ${tsDir} (${ts.files} module${ts.files === 1 ? '' : 's'}, ${formatBytes(ts.bytes)}; entries sealed, only its own are loaded)`,
    `TorchScript trust  ${TRUST}`,
    `hub cache          ${hubDir}`,
  ];
  if (models.length === 0) {
    lines.push('cached models      none');
  } else {
    lines.push(`cached models      ${models.length}`);
    const w = Math.max(...models.map((m) => m.repoId.length));
    for (const m of models) {
      const refs = Object.entries(m.refs).map(([r, c]) => `${r}→${c.slice(0, 7)}`).join(', ');
      lines.push(`  ${m.repoId.padEnd(w)}  ${formatBytes(m.sizeBytes).padStart(8)}  ${refs || `${m.snapshots.length} snapshot(s)`}`);
    }
  }
  out(lines.join('\n') + '\n');
  return EXIT_OK;
}

export const infoCommand: Command = { help: HELP, run };
