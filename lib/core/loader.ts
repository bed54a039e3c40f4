/**
 * `smartModelLoader`: upstream `hdlm.hf_utils.smart_model_loader`. Resolves a model path (hub
 * repo id, checkpoint directory, or TorchScript file) to files, picks the family, and has the
 * native side build (or load the cached) TorchScript module.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createHash } from 'crypto';
import { addon, type NativeModel, type NativePrecision } from '../binding';
import { findWeightsFile, readSafetensorsHeader } from './checkpoint';
import { architectureOf, checkWeightsAgainstArchitecture, detectFamily, gammaSwitchesOf, readConfigFileAsync, type ModelFamily } from './config';
import { AbortError, HdlmError, invalidParameterError } from '../errors';
import { looksLikeRepoId, resolveRepoFiles, type HubOptions } from '../hub';
import { HdlmModel, callNative } from './model';
import { createMetaschedule, type Metaschedule } from './metaschedule';
import { writeModuleFile } from './module-file';
import { canCreateIn, openCacheFolder, openVerifiedEntry, removeEntry, sealEntry, weightsFingerprint } from './torchscript-cache';
import * as v from '../validate';

export type ModelType = 'auto' | ModelFamily;

export interface LoaderOptions extends HubOptions {
  /**
   * hub repo id (`hdlm-group/hdlm-base-epsilon-0.01`), checkpoint directory, or TorchScript file.
   * A TorchScript file is code that runs when it is loaded: give only files you made
   * (exportTorchScript) or trust like a script (docs/security.md).
   */
  modelPath?: string;
  /** 'auto' (default: from the config, as upstream), 'epsilon_hybrid' or 'gamma_hybrid' */
  modelType?: ModelType;
  /** 'auto' (default: CUDA if available, else CPU), 'cpu', 'cuda' or 'cuda:N' */
  device?: string;
  /**
   * How the model computes. 'auto' (default): 'fp32' on the CPU, 'A' on CUDA. 'fp32': float32
   * everywhere. 'A' / 'B' / 'C' (CUDA only): upstream's bf16-autocast CUDA forward, bit for bit,
   * in precision context A (what upstream's smart_model_loader gives: accelerate's fp16 wrapper),
   * B (a bare model called inside upstream's samplers) or C (a bare model, no autocast).
   */
  precision?: 'auto' | NativePrecision;
  /**
   * folder for built TorchScript modules (default HDLM_CACHE, else ~/.cache/hdlm); its
   * `torchscript` folder must be yours (0700), entries are sealed and checked before loading,
   * else the model is built without the cache (torchscript-cache.ts)
   */
  torchscriptCacheDir?: string;
  /** reuse / write the built TorchScript module (default true) */
  useCache?: boolean;
  /**
   * libtorch CPU (intra-op) threads, 1 to the number of CPU cores (default HDLM_NUM_THREADS,
   * clamped to that, else the number of cores). Process-wide: every model shares the pool.
   */
  threads?: number;
  /** the model's `batching`: concurrent fast-mode fullDiff calls share one batched forward per step (default true) */
  batching?: boolean;
}

interface InternalLoaderOptions extends LoaderOptions {
  /** write the built module to this file (exportTorchScript) */
  exportTo?: string;
}

export interface LoadedModel {
  model: HdlmModel;
  /** the checkpoint's training config (upstream `cfg`) */
  cfg: Record<string, unknown>;
  /** the device the model runs on: 'cpu' or 'cuda:N' */
  device: string;
  /**
   * Upstream's 5th result (create_metaschedule): the annealing metaschedule from the checkpoint's
   * `annealing` config (type simple / block / hybrid, width, eval_tau; hybrid also model.length),
   * or null when the config names no such schedule. The gamma samplers and semiDiffShifted use it.
   */
  metaschedule: Metaschedule | null;
}

const LOADER_KEYS = [
  'modelPath', 'modelType', 'device', 'precision', 'torchscriptCacheDir', 'useCache', 'threads', 'batching', 'revision', 'token', 'endpoint',
  'offline', 'cacheDir', 'fetch', 'onProgress', 'signal',
] as const;

/** Bumped whenever the native module layout changes, so stale cached modules are never loaded. */
const BUILDER_VERSION = 3;

let threadsConfigured = false;

export function smartModelLoader(modelPath: string, options?: Omit<LoaderOptions, 'modelPath'>): Promise<LoadedModel>;
export function smartModelLoader(options: LoaderOptions): Promise<LoadedModel>;
export async function smartModelLoader(first: unknown, second?: unknown): Promise<LoadedModel> {
  return load(normalize(first, second));
}

/**
 * Builds the TorchScript module of a checkpoint (hub id or directory) and saves it to `outFile`
 * (written to a temp file, then renamed). The file follows the documented TorchScript interface
 * and loads with smartModelLoader(outFile), with no checkpoint and no config next to it.
 */
export async function exportTorchScript(modelPath: string, outFile: string, options?: Omit<LoaderOptions, 'modelPath' | 'useCache' | 'torchscriptCacheDir'>): Promise<string> {
  const opts = normalize(modelPath, options) as InternalLoaderOptions;
  const target = path.resolve(v.nonEmptyString('outFile', outFile));
  if (fs.existsSync(target) && fs.statSync(target).isDirectory()) throw invalidParameterError('outFile', 'a file path (not a directory)', outFile);
  const loaded = await load({ ...opts, exportTo: target, useCache: false });
  loaded.model.dispose();
  return target;
}

async function load(options: InternalLoaderOptions): Promise<LoadedModel> {
  const modelPath = v.nonEmptyString('modelPath', options.modelPath);
  const modelType = v.isDefined(options.modelType) ? v.oneOf('modelType', options.modelType, ['auto', 'epsilon_hybrid', 'gamma_hybrid'] as const) : 'auto';
  const useCache = v.isDefined(options.useCache) ? v.boolean('useCache', options.useCache) : true;
  const batching = v.isDefined(options.batching) ? v.boolean('batching', options.batching) : true;
  const cacheRoot = v.isDefined(options.torchscriptCacheDir)
    ? v.nonEmptyString('torchscriptCacheDir', options.torchscriptCacheDir)
    : process.env.HDLM_CACHE || path.join(os.homedir(), '.cache', 'hdlm');
  configureThreads(options.threads);
  const device = resolveDevice(options.device);
  const precisionOption = v.isDefined(options.precision) ? v.oneOf('precision', options.precision, ['auto', 'fp32', 'A', 'B', 'C'] as const) : 'auto';
  const precision: NativePrecision = precisionOption === 'auto' ? (device === 'cpu' ? 'fp32' : 'A') : precisionOption;
  if (device === 'cpu' && precision !== 'fp32') {
    throw invalidParameterError('precision', "'auto' or 'fp32' on the CPU (contexts A, B and C reproduce upstream's CUDA forward)", options.precision);
  }

  const signal = v.isDefined(options.signal) ? v.abortSignal('signal', options.signal) : null;
  const checkSignal = (): void => {
    if (signal?.aborted) throw new AbortError(`smartModelLoader(${JSON.stringify(modelPath)}) was aborted`, { cause: signal.reason });
  };
  checkSignal();
  const source = await locate(modelPath, options);
  checkSignal();
  if (source.kind === 'torchscript') {
    if (options.exportTo) throw invalidParameterError('modelPath', 'a checkpoint (directory or hub repo id) to export', modelPath);
    const loaded = await loadTorchScriptFile(source.file, modelType, device, precision);
    loaded.model.batching = batching;
    return loaded;
  }

  const cfg = await readConfigFileAsync(source.configFile);
  const family = detectFamily(cfg, modelType);
  const arch = architectureOf(cfg, family);
  if (source.weights.format !== 'safetensors') {
    throw new HdlmError(
      'HDLM_UNSUPPORTED',
      `${source.weights.path}: pytorch_model.bin checkpoints are not read by hdlm; convert it once to safetensors ` +
        `(python -c "import torch, safetensors.torch as s; s.save_file(torch.load('pytorch_model.bin'), 'model.safetensors')")`,
    );
  }
  const header = readSafetensorsHeader(source.weights.path);
  checkWeightsAgainstArchitecture(header, arch);
  const configJson = JSON.stringify(cfg);
  const build = (): Promise<NativeModel> =>
    callNative(() =>
      addon().buildModel({
        weightsPath: source.weights.path,
        fileSize: header.fileSize,
        tensors: header.tensors,
        arch: family === 'gamma_hybrid'
          ? {
              family, vocabSize: arch.vocabSize, hiddenSize: arch.hiddenSize, nHeads: arch.nHeads, nBlocks: arch.nBlocks,
              condDim: arch.condDim, ...gammaSwitchesOf(cfg),
            }
          : { family: 'epsilon_hybrid', vocabSize: arch.vocabSize, hiddenSize: arch.hiddenSize, nHeads: arch.nHeads, nBlocks: arch.nBlocks },
        configJson,
        device,
        precision,
      }),
    );

  let native: NativeModel;
  if (options.exportTo) {
    try {
      fs.mkdirSync(path.dirname(options.exportTo), { recursive: true });
    } catch (e) {
      throw new HdlmError('HDLM_BAD_FILE', `cannot create ${path.dirname(options.exportTo)}: ${(e as Error).message}`, { cause: e });
    }
    native = await build();
    try {
      await writeModuleFile(native, options.exportTo);
    } catch (e) {
      native.dispose();
      throw e;
    }
  } else if (useCache) {
    native = await loadThroughCache(cacheRoot, source.weights.path, configJson, device, precision, build);
  } else {
    native = await build();
  }
  if (signal?.aborted) {
    // the build itself cannot be interrupted: it ran to its end, its model is not handed out
    native.dispose();
    checkSignal();
  }
  const model = new HdlmModel(native, {
    family, device: native.info().device, precision: native.info().precision, config: cfg, vocabSize: arch.vocabSize, maskId: arch.maskId, length: arch.length,
    source: source.description,
  });
  model.batching = batching;
  return { model, cfg, device: model.device, metaschedule: createMetaschedule(cfg, arch.length) };
}

function normalize(first: unknown, second: unknown): LoaderOptions {
  if (typeof first === 'string') {
    if (second !== undefined && !v.isPlainObject(second)) throw invalidParameterError('smartModelLoader options', 'an object', second);
    const rest = (second ?? {}) as Record<string, unknown>;
    v.rejectUnknownKeys('smartModelLoader', rest, LOADER_KEYS);
    if ('modelPath' in rest) throw invalidParameterError('modelPath', 'to be given once (as the first argument)', rest.modelPath);
    return { ...rest, modelPath: first } as LoaderOptions;
  }
  if (!v.isPlainObject(first)) throw invalidParameterError('smartModelLoader argument', 'a model path string or an options object', first);
  v.rejectUnknownKeys('smartModelLoader', first, LOADER_KEYS);
  return first as LoaderOptions;
}

/**
 * libtorch's intra-op threads: one process-wide pool that every model and call shares (setting it
 * for one load sets it for all; the last setting wins). At most the CPU cores this process may
 * use: more threads than cores only contend (4096 threads on 2 cores made a load take 89 s).
 * The option must be in range; HDLM_NUM_THREADS is clamped to it.
 */
function configureThreads(threads: unknown): void {
  const cores = os.availableParallelism();
  if (v.isDefined(threads)) {
    if (typeof threads === 'number' && Number.isInteger(threads) && threads > cores) {
      throw invalidParameterError('threads', `an integer between 1 and ${cores} (the CPU cores this process may use; the thread pool is shared by every model)`, threads);
    }
    addon().setThreads(v.integer('threads', threads, 1, cores));
    threadsConfigured = true;
    return;
  }
  if (threadsConfigured) return;
  addon().setThreads(defaultThreads());
  threadsConfigured = true;
}

/** HDLM_NUM_THREADS clamped to [1, cores], else the number of cores. */
export function defaultThreads(): number {
  const cores = os.availableParallelism();
  const env = process.env.HDLM_NUM_THREADS;
  const n = env ? Number(env) : NaN;
  return Number.isInteger(n) && n >= 1 ? Math.min(n, cores) : cores;
}

/** 'auto' → cuda:0 when the addon sees a CUDA device, else cpu. */
export function resolveDevice(device: unknown): string {
  const name = v.isDefined(device) ? v.nonEmptyString('device', device) : 'auto';
  const runtime = addon().runtimeInfo();
  if (name === 'auto') return runtime.cudaDeviceCount > 0 ? 'cuda:0' : 'cpu';
  if (name === 'cpu') return 'cpu';
  const m = /^cuda(?::(\d+))?$/.exec(name);
  if (!m) throw invalidParameterError('device', "'auto', 'cpu', 'cuda' or 'cuda:N'", device);
  if (runtime.cudaDeviceCount === 0) {
    throw new HdlmError(
      'HDLM_UNSUPPORTED',
      runtime.cudaCompiled
        ? `device '${name}' was asked for, but no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES); use device: 'cpu' or 'auto'`
        : `device '${name}' was asked for, but this hdlm build links a CPU-only libtorch (${runtime.libtorchVersion}); rebuild against a CUDA libtorch (README, "GPU setup") or use device: 'cpu'`,
    );
  }
  const index = m[1] === undefined ? 0 : Number(m[1]);
  if (index >= runtime.cudaDeviceCount) {
    throw invalidParameterError('device', `a CUDA device index below ${runtime.cudaDeviceCount}`, device);
  }
  return `cuda:${index}`;
}

type Source =
  | { kind: 'checkpoint'; configFile: string; weights: { path: string; format: 'safetensors' | 'pytorch' }; description: string }
  | { kind: 'torchscript'; file: string };

const TORCHSCRIPT_NAMES = ['model.pt', 'model.torchscript', 'model.ts.pt'];

async function locate(modelPath: string, options: LoaderOptions): Promise<Source> {
  let stat: fs.Stats | null = null;
  try {
    stat = fs.statSync(modelPath);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new HdlmError('HDLM_BAD_FILE', `${modelPath}: too many levels of symbolic links`);
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new HdlmError('HDLM_BAD_FILE', `${modelPath}: ${(e as Error).message}`);
  }
  if (stat?.isFile()) return { kind: 'torchscript', file: path.resolve(modelPath) };
  if (stat?.isDirectory()) return locateInDirectory(path.resolve(modelPath));
  if (stat) throw new HdlmError('HDLM_BAD_FILE', `${modelPath} is neither a file nor a directory`);
  if (!looksLikeRepoId(modelPath)) {
    throw new HdlmError(
      'HDLM_BAD_FILE',
      `${modelPath} does not exist, and is not a Hugging Face repo id ("owner/name"); give a checkpoint directory, a TorchScript file or a repo id`,
    );
  }
  const hub: HubOptions = {
    revision: options.revision, token: options.token, endpoint: options.endpoint, offline: options.offline,
    cacheDir: options.cacheDir, fetch: options.fetch, onProgress: options.onProgress, signal: options.signal,
  };
  // Upstream reads config.yaml first and falls back to config.json.
  const resolved = await resolveRepoFiles(
    modelPath,
    [{ names: ['config.yaml'], optional: true }, { names: ['config.json'], optional: true }, { names: ['model.safetensors', 'pytorch_model.bin'] }],
    hub,
  );
  const configFile = resolved.files['config.yaml'] ?? resolved.files['config.json'];
  if (!configFile) throw new HdlmError('HDLM_HUB', `${modelPath}: the repo has neither config.yaml nor config.json`);
  const weightsPath = resolved.files['model.safetensors'] ?? resolved.files['pytorch_model.bin'];
  return {
    kind: 'checkpoint',
    configFile,
    weights: { path: weightsPath, format: resolved.files['model.safetensors'] ? 'safetensors' : 'pytorch' },
    description: `${modelPath}@${resolved.commit}`,
  };
}

function locateInDirectory(dir: string): Source {
  const weights = findWeightsFile(dir);
  if (weights) {
    const configFile = ['config.yaml', 'config.json'].map((n) => path.join(dir, n)).find((f) => fs.existsSync(f));
    if (!configFile) throw new HdlmError('HDLM_BAD_FILE', `${dir}: found ${path.basename(weights.path)} but neither config.yaml nor config.json`);
    return { kind: 'checkpoint', configFile, weights, description: dir };
  }
  const ts = TORCHSCRIPT_NAMES.map((n) => path.join(dir, n)).find((f) => fs.existsSync(f));
  if (ts) return { kind: 'torchscript', file: ts };
  throw new HdlmError(
    'HDLM_BAD_FILE',
    `${dir} holds no model: expected model.safetensors (or pytorch_model.bin) with config.json/config.yaml, or a TorchScript ${TORCHSCRIPT_NAMES.join(' / ')}`,
  );
}

async function loadTorchScriptFile(file: string, modelType: ModelType, device: string, precision: NativePrecision): Promise<LoadedModel> {
  const native = await callNative(() => addon().loadTorchScript(file, device, precision));
  try {
    const info = native.info();
    let cfg: Record<string, unknown>;
    try {
      const parsed = JSON.parse(info.configJson);
      if (!v.isPlainObject(parsed)) throw new Error('not an object');
      cfg = parsed;
    } catch {
      throw new HdlmError('HDLM_BAD_FILE', `${file}: its hdlm_config attribute is not a JSON object`);
    }
    const family = modelType === 'auto' ? (info.family as ModelFamily) : modelType;
    if (family !== info.family) {
      throw new HdlmError('HDLM_BAD_FILE', `${file}: modelType '${modelType}' was asked for, but the file holds a ${info.family} model`);
    }
    if (family !== 'epsilon_hybrid' && family !== 'gamma_hybrid') throw new HdlmError('HDLM_BAD_FILE', `${file}: unknown hdlm_family '${info.family}'`);
    const arch = architectureOf(cfg, family);
    const model = new HdlmModel(native, {
      family, device: info.device, precision: info.precision, config: cfg, vocabSize: arch.vocabSize, maskId: arch.maskId, length: arch.length, source: file,
    });
    return { model, cfg, device: model.device, metaschedule: createMetaschedule(cfg, arch.length) };
  } catch (e) {
    native.dispose();
    throw e;
  }
}

/**
 * Loads the module from the TorchScript cache when a sealed entry for these weights and this config
 * is there (see torchscript-cache.ts), else builds it, writes it to the cache and seals it. The
 * cache only saves time: a folder that cannot be used (not ours, unwritable) or an entry that is
 * refused or fails to load means building, without the cache where it cannot be written.
 */
async function loadThroughCache(
  root: string, weightsPath: string, configJson: string, device: string, precision: NativePrecision,
  build: () => Promise<NativeModel>,
): Promise<NativeModel> {
  const folder = openCacheFolder(root);
  if (!('key' in folder)) return build();
  let fingerprint: string;
  try {
    fingerprint = await weightsFingerprint(fs.realpathSync(weightsPath));
  } catch {
    return build(); // the build reports what is wrong with the weights file
  }
  const name = createHash('sha256').update(JSON.stringify({ builder: BUILDER_VERSION, weights: fingerprint, configJson })).digest('hex').slice(0, 32);
  const entry = path.join(folder.dir, `${name}.pt`);
  const verified = await openVerifiedEntry(folder, entry);
  if (verified.ok) {
    try {
      return await callNative(() => addon().loadTorchScript(verified.loadPath, device, precision));
    } catch {
      // a sealed entry libtorch cannot read (another libtorch, disk trouble): rebuilt below
    } finally {
      await verified.close();
    }
  }
  // Whatever is at the entry's name now was refused (or is missing): it is never loaded.
  const writable = folder.writable && removeEntry(entry) && canCreateIn(folder.dir);
  const native = await build();
  if (!writable) return native;
  try {
    await writeModuleFile(native, entry);
  } catch {
    // the save failed (disk full, the folder vanished): the model is fine without the cache
    removeEntry(entry);
    return native;
  }
  if (!(await sealEntry(folder, entry))) removeEntry(entry);
  return native;
}
