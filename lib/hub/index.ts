/**
 * The Hugging Face Hub room: models and datasets resolved to files in the cache Python's
 * huggingface_hub uses (same layout, revisions, tokens, endpoint and offline mode). Network access
 * goes through @huggingface/hub; what it lacks is here: offline resolution and the fallback to
 * the cache, refs, atomic checked blob writes, tokens that do not start with `hf_` (sent to the
 * Hub's own origin only), and errors a user can act on.
 *
 *   options.ts   options, environment, the per-call context
 *   remote.ts    what we ask the Hub (through @huggingface/hub)
 *   download.ts  one file into the cache
 *   cache.ts     the cache layout: reading it offline, refs, markers, listing
 *   resolve.ts   revision -> commit -> files, with the cache as fallback
 *   errors.ts    failures as HdlmError('HDLM_HUB') messages
 */
export { hubCacheDir, looksLikeRepoId, type HubOptions, type RepoFileGroup, type ResolvedRepoFiles } from './options';
export { listCachedModels, type CachedModel } from './cache';
export { resolveRepoFiles, resolveDatasetFiles, resolveDatasetFolder } from './resolve';
