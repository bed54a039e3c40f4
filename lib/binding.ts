/**
 * Loads the native addon and types its whole surface in one place. Nothing else in lib/
 * touches the addon object directly. The C++ side (native/addon.cc) trusts these shapes:
 * every value is validated in TypeScript before it gets here.
 */
import * as path from 'path';
import { HdlmError } from './errors';

/** One tensor of a safetensors file, as located by lib/checkpoint.ts (absolute byte offsets). */
export interface NativeTensorEntry {
  name: string;
  dtype: 'F32' | 'BF16' | 'F16';
  shape: number[];
  /** absolute offset of the first byte in the file */
  begin: number;
  /** absolute offset one past the last byte */
  end: number;
}

/** Architecture numbers the native builder needs; derived from the config by lib/config.ts. */
export interface NativeArchitecture {
  family: 'epsilon_hybrid' | 'gamma_hybrid';
  vocabSize: number;
  hiddenSize: number;
  nHeads: number;
  nBlocks: number;
}

/** The gamma builder's extra numbers and switches (lib/config.ts gammaSwitchesOf). */
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
  /** where to save the built TorchScript module (written to a temp file, then renamed), or null */
  cachePath: string | null;
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
  /** call onStep with a copy of the tokens after every step */
  stepTokens: boolean;
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

export interface NativeModel {
  info(): NativeModelInfo;
  /**
   * tokens: batch × length ids; positions: same shape, or null for 0..length-1; sigma: same
   * shape (gamma models, required) or null (epsilon models)
   */
  forward(tokens: Int32Array, batch: number, length: number, positions: Int32Array | null, sigma?: Float32Array | null): Promise<NativeLogits>;
  /** resolves to batchSize × contextLength ids, row-major */
  sample(options: NativeSampleOptions, onStep: NativeStepCallback | null): NativeJob<Int32Array>;
  /** gamma models: upstream's NAR / SAR sampler; resolves to batchSize × contextLength ids */
  sampleGamma(options: NativeGammaSampleOptions, onStep: NativeStepCallback | null): NativeJob<Int32Array>;
  /** frees the module; idempotent; running jobs keep their own reference and finish */
  dispose(): void;
  isDisposed(): boolean;
}

export interface NativeRuntimeInfo {
  libtorchVersion: string;
  cudaCompiled: boolean;
  cudaDeviceCount: number;
  threads: number;
}

/** A metaschedule as the native side takes it (lib/metaschedule.ts). */
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
}

export interface NativeAddon {
  metascheduleQuery(spec: NativeScheduleSpec, query: NativeScheduleQuery): NativeScheduleAnswer;
  runtimeInfo(): NativeRuntimeInfo;
  setThreads(n: number): void;
  buildModel(spec: NativeBuildSpec): Promise<NativeModel>;
  loadTorchScript(path: string, device: string, precision: NativePrecision): Promise<NativeModel>;
}

let cached: NativeAddon | null = null;

/** The addon, loaded once (prebuilds/ first, then build/Release, through node-gyp-build). */
export function addon(): NativeAddon {
  if (cached) return cached;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const load = require('node-gyp-build') as (dir: string) => NativeAddon;
    cached = load(path.join(__dirname, '..'));
  } catch (e) {
    throw new HdlmError(
      'HDLM_UNSUPPORTED',
      `hdlm: the native addon could not be loaded (${(e as Error).message}). ` +
        'Rebuild it with `npm run build:native` (needs libtorch; see README "Install").',
      { cause: e },
    );
  }
  return cached;
}
