/**
 * Loads the native addon (a build from source, else the prebuild that fits the libtorch found,
 * lib/native/) and types its whole surface in one place. Nothing else in lib/ touches the addon
 * object directly. The C++ side (native/addon.cc) trusts these shapes:
 * every value is validated in TypeScript before it gets here.
 */
import * as fs from 'fs';
import * as path from 'path';
import { createRequire } from 'module';
import { HdlmError } from './errors';
import { describeLibtorch, libtorchLabel, locateLibtorch, type LibtorchDescription } from './native/libtorch';
import {
  LIBLOADER, describePrebuilds, noLibtorchMessage, noMatchMessage, readManifest, selectPrebuild, sha256, verifyPrebuild, glibcProblem,
  type PrebuildLibtorch, type PrebuildManifest,
} from './native/prebuilds';

/** One tensor of a safetensors file, as located by core/checkpoint.ts (absolute byte offsets). */
export interface NativeTensorEntry {
  name: string;
  dtype: 'F32' | 'BF16' | 'F16';
  shape: number[];
  /** absolute offset of the first byte in the file */
  begin: number;
  /** absolute offset one past the last byte */
  end: number;
}

/** Architecture numbers the native builder needs; derived from the config by core/config.ts. */
export interface NativeArchitecture {
  family: 'epsilon_hybrid' | 'gamma_hybrid';
  vocabSize: number;
  hiddenSize: number;
  nHeads: number;
  nBlocks: number;
}

/** The gamma builder's extra numbers and switches (core/config.ts gammaSwitchesOf). */
export interface NativeGammaArchitecture extends NativeArchitecture {
  family: 'gamma_hybrid';
  condDim: number;
  gamma: number;
  radd: boolean;
  sigmaConditioning: boolean;
  timestepEmbedding: boolean;
  scaleBySigma: boolean;
  postProcessAR: boolean;
}

export interface NativeBuildSpec {
  /** safetensors file holding the weights */
  weightsPath: string;
  /** size the header parser saw; the reader re-checks it against the file it opens */
  fileSize: number;
  tensors: NativeTensorEntry[];
  arch: NativeArchitecture | NativeGammaArchitecture;
  /** the checkpoint's training config, JSON text; stored inside the TorchScript module */
  configJson: string;
  /** 'cpu' or 'cuda:N' */
  device: string;
  precision: NativePrecision;
}

/**
 * How an epsilon model computes: 'fp32' (CPU), or upstream's CUDA bf16-autocast forward with the
 * rotary table of precision context 'A' (accelerate fp16 wrapper, logits as fp32: what
 * upstream's smart_model_loader gives), 'B' (bare model inside a sampler's bf16 autocast) or
 * 'C' (bare model, no autocast). See docs in README, "CUDA and precision contexts".
 */
export type NativePrecision = 'fp32' | 'A' | 'B' | 'C';

/** What a native model reports about itself (read from the TorchScript module). */
export interface NativeModelInfo {
  family: string;
  configJson: string;
  device: string;
  formatVersion: number;
  /** the precision in use, or 'module' for a TorchScript file that computes its own way */
  precision: NativePrecision | 'module';
}

export type NativeAlgorithm = 'original' | 'acs' | 'remask' | 'remask_adhoc_shuffle' | 'remdm';

export interface NativeSampleOptions {
  /** upstream full_diff, semi_diff, full_diff_shifted, semi_diff_shifted */
  mode: 'full' | 'semi' | 'full_shifted' | 'semi_shifted';
  alg: NativeAlgorithm;
  /** prompt ids, one row of promptLength per batch row (batchSize × promptLength), or null */
  prompt: Int32Array | null;
  promptLength: number;
  /** fixed tokens outside the prompt (batchSize × contextLength, −1 where free), or null */
  fixed: Int32Array | null;
  batchSize: number;
  steps: number;
  temperature: number;
  cfgScale: number;
  contextLength: number;
  eps: number;
  maskId: number;
  eta: number;
  blockSize: number;
  seed: bigint;
  /** call onStep with a copy of the tokens at the steps it sees */
  stepTokens: boolean;
  /** onStep sees every stepEvery-th step and the last (the native loop copies tokens only then) */
  stepEvery: number;
  /** true: upstream's exact semantics and random stream; false: the fast path (same distribution) */
  reference: boolean;
  /** shifted samplers */
  repetitionPenalty: number;
  bosId: number;
  /** semi_shifted: the metaschedule and attention types */
  metaschedule: NativeScheduleSpec | null;
  contextAttention: 'full' | 'causal' | 'block_causal';
  blockAttention: 'full' | 'causal';
}

export type NativeStepCallback = (step: number, total: number, tokens: Int32Array | null) => void;

export interface NativeJob<T> {
  promise: Promise<T>;
  /** asks the native loop to stop at the next step boundary; the promise then rejects (code HDLM_ABORTED) */
  abort(): void;
}

export interface NativeLogits {
  data: Float32Array;
  shape: [number, number, number];
}

/** What a step of a NativeBatch did for one request (see BatchRowEvent in native/engine/types.h). */
export interface NativeBatchEvent {
  id: number;
  step: number;
  total: number;
  done: boolean;
  /** batchSize × contextLength ids when done or when the request asked for stepTokens; else null */
  tokens: Int32Array | null;
}

/**
 * The batched fast sampler: fast full_diff and semi_diff requests (any algorithm, no guidance) sampled
 * together, one batched forward per step. add and remove take effect at the next step.
 */
export interface NativeBatch {
  /**
   * fixedTokens: batchSize × contextLength, -1 for free positions, or null. watch: the caller
   * sees every step (step() then returns after each step while this request runs).
   */
  add(id: number, options: NativeSampleOptions, fixedTokens: Int32Array | null, watch: boolean): void;
  remove(id: number): void;
  /**
   * Up to maxSteps steps of every request, fewer once one finishes or while a watched one runs.
   * Events: each request's last step of the call and every step where it finished, is watched
   * or asked for stepTokens. Rejects with
   * HDLM_DISPOSED once the model is disposed.
   */
  step(maxSteps: number): Promise<NativeBatchEvent[]>;
  /** lets the sampler and its model go; later calls but remove throw */
  close(): void;
}

export interface NativeModel {
  info(): NativeModelInfo;
  /** epsilon models with the fast path: a new, empty batched sampler */
  openBatch(): NativeBatch;
  /**
   * tokens: batch × length ids; positions: same shape, or null for 0..length-1; sigma: same
   * shape (gamma models, required) or null (epsilon models); fast: the fast path's forward
   * (epsilon models; positions and sigma null)
   */
  forward(tokens: Int32Array, batch: number, length: number, positions: Int32Array | null, sigma: Float32Array | null, fast: boolean): Promise<NativeLogits>;
  /** resolves to batchSize × contextLength ids, row-major */
  sample(options: NativeSampleOptions, onStep: NativeStepCallback | null): NativeJob<Int32Array>;
  /** gamma models: upstream's NAR / SAR sampler; resolves to batchSize × contextLength ids */
  sampleGamma(options: NativeGammaSampleOptions, onStep: NativeStepCallback | null): NativeJob<Int32Array>;
  /** evaluation (eval/): 'mc_loglik' on HDLM models, 'causal_nll' and 'last_hidden' on GPT-2 models */
  evaluate(request: NativeEvalRequest): NativeJob<NativeEvalResult>;
  /**
   * frees the module; idempotent. Calls not started yet reject with HDLM_DISPOSED, running
   * samples stop at their next step and reject with HDLM_DISPOSED, a running forward finishes;
   * the module's memory is returned when the last running call ends.
   */
  dispose(): void;
  /**
   * writes the TorchScript module to `path`, which must not exist (every write checked, then
   * fsync); on failure the file is removed and the promise rejects with HDLM_IO
   */
  saveTorchScript(path: string): Promise<void>;
  isDisposed(): boolean;
  /** calls of this model whose promise has not settled yet */
  pendingCalls(): number;
}

// ---- evaluation (eval/: see EvalRequest in native/engine.h) ----
export interface NativeEvalRequest {
  op: 'mc_loglik' | 'causal_nll' | 'last_hidden';
  /** rows × length ids, row-major */
  tokens: Int32Array;
  rows: number;
  length: number;
  /** mc_loglik: copies per forward; causal_nll, last_hidden: rows per forward */
  batchSize: number;
  /** mc_loglik: draws per row (floor(monteCarloTimesteps / batchSize)); 1 otherwise */
  repetitions: number;
  samplingEps: number;
  maskId: number;
  /** mc_loglik on gamma_hybrid models: σ̄ at every position (upstream: 1e-3); ignored otherwise */
  sigma: number;
  seed: bigint;
  /** mc_loglik: one seed per row, each row drawing from its own generator (instead of one generator seeded with `seed` for all rows) */
  rowSeeds?: BigUint64Array;
  /** mc_loglik: up to this many draws (row-major, empty ones left out) share one forward of drawsPerForward × batchSize rows (default 1) */
  drawsPerForward?: number;
}
/** values: rows × cols, row-major (mc_loglik: cols = repetitions; last_hidden: cols = n_embd) */
export interface NativeEvalResult {
  values: Float64Array;
  /** mc_loglik: the indices into values of draws that masked no position (their value is 0, not an estimate) */
  emptyDraws: Int32Array;
  rows: number;
  cols: number;
}
export interface NativeGpt2Spec {
  weightsPath: string;
  fileSize: number;
  /** compact JSON of the HF config (layer_norm_epsilon is read from it) */
  configJson: string;
  device: string;
  nHeads: number;
  nLayers: number;
  tensors: NativeTensorEntry[];
}
// ---- end evaluation ----

export interface NativeRuntimeInfo {
  libtorchVersion: string;
  cudaCompiled: boolean;
  cudaDeviceCount: number;
  /** name of CUDA device 0 ('' without CUDA) */
  cudaDeviceName: string;
  threads: number;
  /** threads the addon owns for model work (HDLM_WORKER_THREADS, default 2); libuv's pool is left to fs, dns, zlib */
  workerThreads: number;
}

/** A metaschedule as the native side takes it (core/metaschedule.ts). */
export interface NativeScheduleSpec {
  type: 'simple' | 'block' | 'hybrid';
  width: number;
  tau: number;
  /** hybrid: sequence length; else 0 */
  length: number;
}

export type NativeScheduleQuery =
  | { kind: 'info'; n: number }
  | { kind: 'step'; k: number; n: number }
  | { kind: 'plan'; k: number; n: number; eps: number; contextAttention: string; blockAttention: string; autoregressive: boolean };

export interface NativeScheduleAnswer {
  worthless: number;
  width: number;
  maxStep: number;
  levels: Int32Array;
  numSettled: number;
  relevantLength: number;
  t: Float32Array;
  den: Uint8Array;
  act: Uint8Array;
  settled: Uint8Array;
  mask: Uint8Array;
}

export interface NativeGammaSampleOptions {
  /** 'nar' = upstream sampling.py, 'sar' = sampling_sar.py */
  mode: 'nar' | 'sar';
  metaschedule: NativeScheduleSpec;
  contextAttention: 'full' | 'causal' | 'block_causal';
  blockAttention: 'full' | 'causal';
  graph: 'QGamma' | 'absorb';
  gamma: number;
  vocabSize: number;
  batchSize: number;
  contextLength: number;
  eps: number;
  seed: bigint;
  stepTokens: boolean;
  /** as NativeSampleOptions.stepEvery */
  stepEvery: number;
}

export interface NativeAddon {
  metascheduleQuery(spec: NativeScheduleSpec, query: NativeScheduleQuery): NativeScheduleAnswer;
  runtimeInfo(): NativeRuntimeInfo;
  /** whether fast mode's fused CUDA kernels run on that device (compiles them on first use); reason when not */
  fusedKernelStatus(deviceIndex: number): { available: boolean; reason: string };
  setThreads(n: number): void;
  /**
   * how long process exit waits for running native work (cancelled samplers stop at their next
   * step; a forward cannot be interrupted) before the process ends anyway with its exit status
   */
  setExitWait(ms: number): void;
  /** glibc's mallopt(M_MMAP_THRESHOLD), mallopt(M_TRIM_THRESHOLD); false where not applied (not glibc) */
  setMallocThresholds(mmapThreshold: number, trimThreshold: number): boolean;
  /** CUDA caching-allocator bytes of one device (allocated by live tensors, peak since the last reset, reserved incl. cache); null without CUDA */
  cudaMemory(deviceIndex: number, resetPeak: boolean): { allocated: number; peakAllocated: number; reserved: number } | null;
  buildModel(spec: NativeBuildSpec): Promise<NativeModel>;
  loadTorchScript(path: string, device: string, precision: NativePrecision): Promise<NativeModel>;
  /** a GPT-2 (HF layout) for evaluation (eval/gpt2.ts) */
  buildGpt2(spec: NativeGpt2Spec): Promise<NativeModel>;
}

/** Which binary was loaded, why, and the libtorch it runs on (hdlm info, nativeInfo). */
export interface NativeBinaryInfo {
  /** absolute path of the loaded .node file */
  path: string;
  /** 'prebuild': one of prebuilds/ (chosen for the libtorch found); 'source': built here (build/Release) */
  kind: 'prebuild' | 'source';
  /** for a prebuild: its id in prebuilds/manifest.json */
  prebuild: string | null;
  /** for a prebuild: the libtorch it was built for */
  builtFor: PrebuildLibtorch | null;
  /** why this binary */
  reason: string;
  /** for a prebuild: the libtorch found, whose libraries were opened */
  libtorch: LibtorchDescription | null;
  /** for a prebuild: the libtorch libraries opened by full path before it was loaded */
  opened: string[];
}

/** The libtorch shared library this process has loaded (from /proc/self/maps), described. */
export interface LoadedLibtorch {
  /** the libtorch_cpu library file in use */
  file: string;
  dir: string;
  version: string | null;
  cuda: boolean;
  cudaVersion: string | null;
  cxx11Abi: boolean | null;
}

const root = path.join(__dirname, '..');

/** Loads what is only known at run time: the addon binaries. */
const loadAtRunTime = createRequire(__filename);

let cached: NativeAddon | null = null;
let binary: NativeBinaryInfo | null = null;

interface LibLoader {
  openGlobal(file: string): string | null;
}

/** The libtorch_cpu library this process has mapped (Linux), or null. */
function mappedLibtorchCpu(): string | null {
  let maps: string;
  try {
    maps = fs.readFileSync('/proc/self/maps', 'utf8');
  } catch {
    return null;
  }
  return /\s(\/\S*\/libtorch_cpu\.[^\s/]*)$/m.exec(maps)?.[1] ?? null;
}

const realDir = (p: string): string => {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
};

function loadFailed(file: string, e: unknown, fix: string): HdlmError {
  return new HdlmError('HDLM_UNSUPPORTED', `the native addon of hdlm ${file} could not be loaded (${(e as Error).message}). ${fix}`, { cause: e });
}

/**
 * Loads the addon of the package in `dir`: the prebuilds of the folder HDLM_PREBUILD names when
 * set; else a build from source (build/Release/hdlm.node); else the prebuild of prebuilds/ that fits the libtorch
 * lib/native/libtorch.ts finds: checked (its digest, the libraries it links), that libtorch's
 * libraries opened by full path (hdlm_libloader.node), then loaded. No fit: HDLM_UNSUPPORTED
 * saying what was found, which prebuilds exist and the fix. Exported for the tests; everything
 * else uses addon().
 */
export function loadNative(dir: string, env: NodeJS.ProcessEnv = process.env): { addon: NativeAddon; binary: NativeBinaryInfo } {
  const built = path.join(dir, 'build', 'Release', 'hdlm.node');
  if (!env.HDLM_PREBUILD && fs.existsSync(built)) {
    const info: NativeBinaryInfo = { path: built, kind: 'source', prebuild: null, builtFor: null, reason: 'a build from source (build/Release/hdlm.node) is used before any prebuild', libtorch: null, opened: [] };
    try {
      return { addon: loadAtRunTime(built) as NativeAddon, binary: info };
    } catch (e) {
      throw loadFailed(built, e, 'Rebuild it with `npm run build:native` (needs libtorch; see README "Install").');
    }
  }
  const base = env.HDLM_PREBUILD || dir;
  const manifest = readManifest(base);
  if (typeof manifest === 'string') throw new HdlmError('HDLM_UNSUPPORTED', `the prebuilt binaries of hdlm cannot be used: ${manifest}`);
  if (!manifest) {
    throw new HdlmError(
      'HDLM_UNSUPPORTED',
      `there is no native addon for hdlm: it was not built (build/Release/hdlm.node) and ${path.join(base, 'prebuilds')} holds no prebuilt binaries. ` +
        'Build it with `npm rebuild hdlm --build-from-source` (needs cmake, a C++17 compiler and libtorch; see README "Install").',
    );
  }
  return loadPrebuild(base, manifest, env);
}

function loadPrebuild(base: string, manifest: PrebuildManifest, env: NodeJS.ProcessEnv): { addon: NativeAddon; binary: NativeBinaryInfo } {
  const prebuilds = path.join(base, 'prebuilds');
  const located = locateLibtorch(env);
  if (!located.found) throw new HdlmError('HDLM_UNSUPPORTED', noLibtorchMessage(located.tried, manifest));
  const torch = located.found;
  const choice = selectPrebuild(manifest, torch);
  if (!choice.ok) throw new HdlmError('HDLM_UNSUPPORTED', noMatchMessage(torch, manifest, choice.rejected));
  const file = path.join(prebuilds, choice.entry.file);
  const bad = verifyPrebuild(prebuilds, choice.entry) ?? glibcProblem(prebuilds, choice.entry);
  if (bad) throw new HdlmError('HDLM_UNSUPPORTED', `the prebuilt hdlm binary ${choice.entry.id} cannot be used: ${bad}. Reinstall hdlm, or build it from source: \`npm rebuild hdlm --build-from-source\`.`);
  const tuple = `${process.platform}-${process.arch}`;
  const loaderEntry = manifest.libloaders[tuple];
  const loaderFile = loaderEntry && path.join(prebuilds, loaderEntry.file);
  if (!loaderFile || !fs.existsSync(loaderFile) || sha256(loaderFile) !== loaderEntry.sha256) {
    throw new HdlmError('HDLM_UNSUPPORTED', `the prebuilt binaries of hdlm lack their library opener for ${tuple} (${loaderFile ?? path.join(prebuilds, tuple, LIBLOADER)} missing or not the recorded file). Reinstall hdlm, or build it from source: \`npm rebuild hdlm --build-from-source\`.`);
  }
  let loader: LibLoader;
  try {
    loader = loadAtRunTime(loaderFile) as LibLoader;
  } catch (e) {
    throw loadFailed(loaderFile, e, 'Build hdlm from source instead: `npm rebuild hdlm --build-from-source`.');
  }
  const opened: string[] = [];
  for (const lib of choice.preload) {
    const err = loader.openGlobal(lib);
    if (err !== null) {
      throw new HdlmError('HDLM_UNSUPPORTED', `the libtorch found (${torch.libDir}, ${libtorchLabel(torch)}) cannot be loaded: ${lib}: ${err}. Opened before it: ${opened.join(', ') || 'nothing'}.`);
    }
    opened.push(lib);
  }
  let addonObject: NativeAddon;
  try {
    addonObject = loadAtRunTime(file) as NativeAddon;
  } catch (e) {
    throw loadFailed(file, e, `It was chosen for ${libtorchLabel(torch)} in ${torch.libDir}; build hdlm from source instead: \`npm rebuild hdlm --build-from-source\`.`);
  }
  // the libraries it runs on are the ones opened (and not another copy found by SONAME elsewhere)
  const mapped = mappedLibtorchCpu();
  if (mapped && realDir(path.dirname(mapped)) !== realDir(torch.libDir)) {
    throw new HdlmError('HDLM_UNSUPPORTED', `the prebuilt hdlm binary ${choice.entry.id} runs on ${mapped}, not on the libtorch chosen for it in ${torch.libDir}; build hdlm from source: \`npm rebuild hdlm --build-from-source\`.`);
  }
  return {
    addon: addonObject,
    binary: { path: file, kind: 'prebuild', prebuild: choice.entry.id, builtFor: choice.entry.libtorch, reason: choice.reason, libtorch: torch, opened },
  };
}


/**
 * process.exit() with native work running: samplers are aborted and stop at their next step; what
 * is still running after this long (a long forward, a slow step) is abandoned and the process ends
 * with its exit status. Exit never waits longer for native work.
 */
export const EXIT_WAIT_MS = 2000;

/**
 * glibc's malloc gives a freed block above its mmap threshold back to the kernel and trims its
 * heap above its trim threshold; both start low (128 KiB) and grow only as large blocks are
 * freed. Until they have, every step's tensors (a few hundred KiB to a few MiB each) are fresh
 * pages from the kernel: the first fast-mode call of the demo model in a process ran 1.5–5×
 * slower than the next (bench/first-call.js). The addon starts from the values glibc converges
 * to on 64-bit (32 MiB, twice that for the trim). A user's own MALLOC_*_ or glibc.malloc
 * tunables win; HDLM_MALLOC_TUNING=0 leaves glibc's defaults.
 */
export const MALLOC_MMAP_THRESHOLD = 32 * 2 ** 20;
export const MALLOC_TRIM_THRESHOLD = 64 * 2 ** 20;

function userTunesMalloc(): boolean {
  if (process.env.HDLM_MALLOC_TUNING === '0') return true;
  if (process.env.GLIBC_TUNABLES?.includes('glibc.malloc.')) return true;
  return Object.keys(process.env).some((k) => /^MALLOC_[A-Z_]+_$/.test(k));
}

/** The addon, loaded once (HDLM_PREBUILD's prebuilds, a build from source, or the package's prebuild that fits the libtorch found). */
export function addon(): NativeAddon {
  if (cached) return cached;
  const r = loadNative(root);
  r.addon.setExitWait(EXIT_WAIT_MS);
  if (process.platform === 'linux' && !userTunesMalloc()) r.addon.setMallocThresholds(MALLOC_MMAP_THRESHOLD, MALLOC_TRIM_THRESHOLD);
  cached = r.addon;
  binary = r.binary;
  return cached;
}

/** Which binary addon() loaded (loads it when needed). */
export function nativeBinary(): NativeBinaryInfo {
  addon();
  return binary as NativeBinaryInfo;
}

/** The prebuilds this package has, one line (hdlm info). */
export function availablePrebuilds(): string {
  const m = readManifest(process.env.HDLM_PREBUILD || root);
  return typeof m === 'string' ? m : describePrebuilds(m);
}

/** The libtorch library in use by this process (Linux: /proc/self/maps), or null where that cannot be read. */
export function loadedLibtorch(): LoadedLibtorch | null {
  addon();
  const file = mappedLibtorchCpu();
  if (!file) return null;
  const dir = path.dirname(file);
  // a wheel or zip keeps its libraries in <root>/lib; a system install in the library folder itself
  const parent = path.dirname(dir);
  const packaged = ['version.py', 'build-version', 'include'].some((f) => fs.existsSync(path.join(parent, f)));
  const cmake = packaged ? path.join(parent, 'share', 'cmake', 'Torch') : path.join(dir, 'cmake', 'Torch');
  const d = describeLibtorch('loaded', packaged ? parent : dir, dir, fs.existsSync(path.join(cmake, 'TorchConfig.cmake')) ? cmake : null);
  if (typeof d === 'string') return { file, dir, version: null, cuda: false, cudaVersion: null, cxx11Abi: null };
  return { file, dir, version: d.version, cuda: d.cuda !== null, cudaVersion: d.cuda, cxx11Abi: d.cxx11Abi };
}
