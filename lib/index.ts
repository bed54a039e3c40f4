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

import { addon } from './binding';

/** The libtorch this build runs on, and what it sees. */
export function runtimeInfo(): { libtorchVersion: string; cudaCompiled: boolean; cudaDeviceCount: number; threads: number } {
  return addon().runtimeInfo();
}

/** Path of the embedded demo checkpoint (a small HDLM trained on the Brown corpus; writes English-like text offline). */
export const DEMO_MODEL_PATH: string = require('path').join(__dirname, '..', 'models', 'brown-epsilon');
