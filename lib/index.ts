/**
 * hdlm — hybrid diffusion language models (ServiceNow/hdlm) for Node.js: the core (loading,
 * sampling, the tokenizer, the Hugging Face cache). Evaluation is the `hdlm/eval` subpath.
 *
 *   const { model, device } = await smartModelLoader('hdlm-group/hdlm-base-epsilon-0.01');
 *   const promptIds = tokenizer.encode('The future of artificial intelligence');
 *   const generated = await fullDiff({ model, prompt: promptIds, alg: 'acs', steps: 512 });
 *   console.log(tokenizer.decode(generated[0], { skipSpecialTokens: true }));
 *
 * Layers, each importing only those before it:
 *   errors.ts validate.ts binding.ts   the error classes, option checks, the native addon's types
 *   hub/                               the Hugging Face Hub and its cache
 *   core/                              models, samplers, metaschedules, tokenizer, runtime
 *   eval/                              evaluation (`hdlm/eval`)
 *   cli/                               the `hdlm` command
 */
export { smartModelLoader, exportTorchScript, resolveDevice, type LoaderOptions, type LoadedModel, type ModelType } from './core/loader';
export {
  fullDiff, semiDiff, fullDiffShifted, semiDiffShifted, ALGORITHMS, SEMI_SHIFTED_ALGORITHMS,
  type Algorithm, type FixedSpan, type FullDiffOptions, type FullDiffCallOptions, type SemiDiffOptions, type SemiDiffCallOptions, type FullDiffShiftedOptions, type SemiDiffShiftedOptions, type StepInfo,
} from './core/sampling';
export {
  generate, infill, fillTemplate, parseTemplate, type GenerateOptions, type Generation, type InfillOptions, type Infilling, type TemplateOptions, type TemplateFill, type TextSamplerOptions,
} from './core/generate';
export { streamDiff, decodeWithMasks, type StreamDiffOptions, type StreamFrame, type DiffStream } from './core/stream';
export { gammaSample, getSaSamplingFn, SAMPLING_METHODS, type GammaSampleOptions, type SaSamplingFnOptions, type SamplingMethod } from './core/sampling-gamma';
export {
  Metaschedule, makeSimpleAnnealing, makeBlockAnnealing, makeHybridAnnealing, createMetaschedule,
  type MetascheduleType, type MetascheduleStep, type StepPlan, type ContextAttention, type BlockAttention,
} from './core/metaschedule';
export { HdlmModel, type Logits } from './core/model';
export { tokenizer, encode, decode, EOS_TOKEN_ID, MASK_TOKEN_ID } from './core/tokenizer';
export { runtimeInfo, nativeInfo, fusedKernelStatus, cudaMemory, DEMO_MODEL_PATH } from './core/runtime';
export type { ModelFamily } from './core/config';
export { HdlmError, HdlmArgumentError, AbortError, type HdlmErrorCode } from './errors';
export { hubCacheDir, listCachedModels, type HubOptions, type CachedModel } from './hub';
export type { NativeBinaryInfo, LoadedLibtorch } from './binding';
