/**
 * `hdlm/eval`: upstream's evaluation scripts on hdlm models. Zero-shot perplexity
 * (hdlm/eval_modeling.py + hdlm/zeroshot_ppl.py) and sample quality (hdlm/eval_generation.py +
 * hdlm/calculate_metrics.py), with the data they read: the Brown corpus, local text / JSONL
 * files, Hugging Face Hub datasets (Parquet), and a GPT-2 for the perplexity of samples and
 * MAUVE's features.
 *
 *   const { smartModelLoader, DEMO_MODEL_PATH } = require('hdlm');
 *   const { evaluatePerplexity } = require('hdlm/eval');
 *   const { model } = await smartModelLoader(DEMO_MODEL_PATH);
 *   const r = await evaluatePerplexity({ model, dataset: 'brown', lastFraction: 0.05 });
 *
 * Built on the core (`hdlm`); the core never imports this room.
 */
export {
  evaluatePerplexity, perplexityChunks, type PerplexityOptions, type PerplexityResult,
} from './perplexity';
export { evaluateGeneration, textEntropy, type GenerationOptions, type GenerationResult, type GenerationMauve } from './generation';
export {
  computeMauve, computeMauveFromTexts, featurizeTexts, mauveFromHistograms, MAUVE_DEFAULTS, UPSTREAM_MAUVE_MAX_TEXT_LENGTH,
  type MauveOptions, type MauveResult, type MauveParameters, type MauveTextOptions, type TextFeaturizer, type FeatureVector,
} from './mauve';
export { loadGpt2, Gpt2Model, type Gpt2LoadOptions, type Gpt2Config } from './gpt2';
export { chunkTexts, readBrownCorpus, readTextFile, detokenizer, type DetokenizerName } from './datasets';
export { loadHubDataset, HUB_DATASETS, type HubDatasetInfo, type HubDatasetOptions } from './hub-datasets';
export { readParquetStringColumn, parquetMetadata, type ParquetMetadata } from './parquet';
