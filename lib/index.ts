/**
 * hdlm — hybrid diffusion language models (ServiceNow/hdlm) for Node.js.
 *
 *   const { model, device } = await smartModelLoader('hdlm-group/hdlm-base-epsilon-0.01');
 *   const promptIds = tokenizer.encode('The future of artificial intelligence');
 *   const generated = await fullDiff({ model, prompt: promptIds, alg: 'acs', steps: 512 });
 *   console.log(tokenizer.decode(generated[0], { skipSpecialTokens: true }));
 */
export { smartModelLoader, exportTorchScript, resolveDevice, type LoaderOptions, type LoadedModel, type ModelType } from './loader';
export {
  fullDiff, semiDiff, fullDiffShifted, semiDiffShifted, ALGORITHMS, SEMI_SHIFTED_ALGORITHMS,
  type Algorithm, type FullDiffOptions, type SemiDiffOptions, type FullDiffShiftedOptions, type SemiDiffShiftedOptions, type StepInfo,
} from './sampling';
export { gammaSample, getSaSamplingFn, SAMPLING_METHODS, type GammaSampleOptions, type SaSamplingFnOptions, type SamplingMethod } from './sampling-gamma';
export {
  Metaschedule, makeSimpleAnnealing, makeBlockAnnealing, makeHybridAnnealing, createMetaschedule,
  type MetascheduleType, type MetascheduleStep, type StepPlan, type ContextAttention, type BlockAttention,
} from './metaschedule';
export { HdlmModel, type Logits } from './model';
export { tokenizer, encode, decode, EOS_TOKEN_ID, MASK_TOKEN_ID } from './tokenizer';
export { HdlmError, HdlmArgumentError, AbortError, type HdlmErrorCode } from './errors';
export { hubCacheDir, listCachedModels, type HubOptions } from './hub';
export type { ModelFamily } from './config';

import { addon, nativeBinary, loadedLibtorch, type NativeBinaryInfo, type LoadedLibtorch } from './binding';
export type { NativeBinaryInfo, LoadedLibtorch };
import { invalidParameterError } from './errors';

/** The libtorch this build runs on, and what it sees. */
export function runtimeInfo(): { libtorchVersion: string; cudaCompiled: boolean; cudaDeviceCount: number; cudaDeviceName: string; threads: number; workerThreads: number } {
  return addon().runtimeInfo();
}

/**
 * The native binary in use and the libtorch this process runs on: `binary` says whether a
 * prebuilt binary (and for which libtorch it was built) or a build from source was loaded;
 * `libtorch` is the libtorch library actually loaded (its file, version, CUDA, C++ ABI; null
 * where /proc/self/maps cannot be read).
 */
export function nativeInfo(): { binary: NativeBinaryInfo; libtorch: LoadedLibtorch | null } {
  return { binary: nativeBinary(), libtorch: loadedLibtorch() };
}

/**
 * Whether fast mode's fused CUDA kernels (compiled at run time with NVRTC) run on CUDA device
 * `deviceIndex`; `reason` says why not (no CUDA, NVRTC missing, HDLM_FUSED_KERNELS=0, …). Fast
 * mode then runs the same computation from ATen kernels. Compiles the kernels on first use.
 */
export function fusedKernelStatus(deviceIndex = 0): { available: boolean; reason: string } {
  if (!Number.isInteger(deviceIndex) || deviceIndex < 0) {
    throw invalidParameterError('deviceIndex', 'a non-negative integer', deviceIndex);
  }
  return addon().fusedKernelStatus(deviceIndex);
}

/** Path of the embedded demo checkpoint (a small HDLM trained on the Brown corpus; writes English-like text offline). */
export const DEMO_MODEL_PATH: string = require('path').join(__dirname, '..', 'models', 'brown-epsilon');

/**
 * Bytes the CUDA caching allocator of device `deviceIndex` holds for live tensors (`allocated`),
 * at most since the last reset (`peakAllocated`; `resetPeak: true` starts a new window) and in all
 * (`reserved`, cache included); null without CUDA. For leak checks: `allocated` returns to its
 * earlier value once the models created since are disposed and their calls ended.
 */
export function cudaMemory(deviceIndex = 0, resetPeak = false): { allocated: number; peakAllocated: number; reserved: number } | null {
  if (!Number.isInteger(deviceIndex) || deviceIndex < 0) {
    throw invalidParameterError('deviceIndex', 'a non-negative integer', deviceIndex);
  }
  if (typeof resetPeak !== 'boolean') throw invalidParameterError('resetPeak', 'a boolean', resetPeak);
  return addon().cudaMemory(deviceIndex, resetPeak);
}

// Evaluation (issue 8): upstream's eval_modeling.py / eval_generation.py
export {
  evaluatePerplexity, evaluateGeneration, textEntropy, type PerplexityOptions, type PerplexityResult, type GenerationOptions,
  type GenerationResult,
} from './eval';
export { loadGpt2, Gpt2Model, type Gpt2LoadOptions, type Gpt2Config } from './gpt2';
export { chunkTexts, readBrownCorpus, readTextFile, detokenizer, type DetokenizerName } from './datasets';
export { loadHubDataset, HUB_DATASETS, type HubDatasetInfo, type HubDatasetOptions } from './hub-datasets';
export { readParquetStringColumn, parquetMetadata, type ParquetMetadata } from './parquet';
