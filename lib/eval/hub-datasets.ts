/**
 * Evaluation data from the Hugging Face Hub: upstream's hdlm/eval_modeling.py reads its
 * perplexity data with `datasets.load_dataset(...)`; here the same rows come from the Parquet files
 * the Hub stores, downloaded through the hub room (same cache, revisions, tokens, endpoint and
 * offline mode as models; dataset repos are `datasets/<repo>` on the Hub and
 * `datasets--owner--name` in the cache) and read with parquet.ts.
 *
 * Dataset names:
 *   wikitext103, wikitext2, ptb, lambada
 *                                    upstream's names (hdlm/data.py): repo, config, split, text
 *                                    field and detokeniser fixed as upstream uses them
 *   hf:<owner/name>[:<config>]:<split>
 *                                    any dataset, from the Hub's Parquet export: every
 *                                    `<config>/<split>/*.parquet` file of the `refs/convert/parquet`
 *                                    branch (config default: 'default'), in name order
 *   hf:<owner/name>/<path/file.parquet>
 *                                    one Parquet file of a dataset repo (branch `main` unless
 *                                    `revision` says otherwise)
 */
import { HdlmError, invalidParameterError } from '../errors';
import { resolveDatasetFiles, resolveDatasetFolder, type HubOptions } from '../hub';
import { readParquetFileStrings } from './parquet';
import type { DetokenizerName } from './datasets';
import { isPlainObject, rejectUnknownKeys } from '../validate';

const OPTION_KEYS = ['revision', 'field', 'token', 'endpoint', 'offline', 'cacheDir', 'fetch', 'onProgress', 'signal'] as const;

/** The branch where the Hub's dataset viewer keeps its Parquet export of every dataset. */
export const PARQUET_EXPORT_REVISION = 'refs/convert/parquet';

export interface HubDatasetSpec {
  repo: string;
  /** config (subset) of the Parquet export; null for the single-file form */
  config: string | null;
  /** split of the Parquet export; null for the single-file form */
  split: string | null;
  /** one file of the repo (single-file form), else null */
  file: string | null;
  /** string column holding the texts */
  field: string;
  /** upstream's detokeniser for the named datasets, else 'none' */
  detokenizer: DetokenizerName;
  /** the revision read unless the caller names another */
  revision: string;
}

/** Upstream's datasets (hdlm/data.py, get_dataset) as they are stored on the Hub today. */
export const HUB_DATASETS: Readonly<Record<string, Readonly<HubDatasetSpec>>> = Object.freeze({
  // load_dataset("wikitext", name="wikitext-103-raw-v1"): the repo moved to Salesforce/wikitext
  wikitext103: Object.freeze({
    repo: 'Salesforce/wikitext', config: 'wikitext-103-raw-v1', split: 'validation', file: null, field: 'text', detokenizer: 'wikitext',
    revision: PARQUET_EXPORT_REVISION,
  } as const),
  wikitext2: Object.freeze({
    repo: 'Salesforce/wikitext', config: 'wikitext-2-raw-v1', split: 'validation', file: null, field: 'text', detokenizer: 'wikitext',
    revision: PARQUET_EXPORT_REVISION,
  } as const),
  // load_dataset("ptb_text_only"): a script dataset (config penn_treebank), now
  // ptb-text-only/ptb_text_only; its rows exist as Parquet only in the export branch
  ptb: Object.freeze({
    repo: 'ptb-text-only/ptb_text_only', config: 'penn_treebank', split: 'validation', file: null, field: 'sentence', detokenizer: 'ptb',
    revision: PARQUET_EXPORT_REVISION,
  } as const),
  // upstream's get_lambada_test_dataset downloads OpenAI's lambada_test.jsonl (field text);
  // EleutherAI/lambada_openai's default config holds that file's rows as its test split
  lambada: Object.freeze({
    repo: 'EleutherAI/lambada_openai', config: 'default', split: 'test', file: null, field: 'text', detokenizer: 'lambada',
    revision: PARQUET_EXPORT_REVISION,
  } as const),
});

const REPO_RE = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\/[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

const FORMS = "'wikitext103', 'wikitext2', 'ptb', 'lambada', 'hf:<owner/name>[:<config>]:<split>' or 'hf:<owner/name>/<file.parquet>'";

/** Whether `dataset` names a Hub dataset (a name above or an 'hf:' form), whatever else it might be. */
export function isHubDataset(dataset: unknown): dataset is string {
  return typeof dataset === 'string' && (Object.prototype.hasOwnProperty.call(HUB_DATASETS, dataset) || dataset.startsWith('hf:'));
}

/** Parses a dataset name or 'hf:' form (see the file comment); throws on a malformed one. */
export function parseHubDataset(dataset: string): HubDatasetSpec {
  if (Object.prototype.hasOwnProperty.call(HUB_DATASETS, dataset)) return { ...HUB_DATASETS[dataset] };
  if (!dataset.startsWith('hf:')) throw invalidParameterError('dataset', FORMS, dataset);
  const body = dataset.slice(3);
  const parts = body.split(':');
  if (parts.length === 1) {
    // hf:owner/name/path/file.parquet
    const segs = body.split('/');
    const repo = segs.slice(0, 2).join('/');
    const file = segs.slice(2).join('/');
    if (segs.length < 3 || !REPO_RE.test(repo) || !/\.parquet$/i.test(file) || segs.slice(2).some((s) => s === '' || s === '.' || s === '..')) {
      throw invalidParameterError('dataset', FORMS, dataset);
    }
    return { repo, config: null, split: null, file, field: 'text', detokenizer: 'none', revision: 'main' };
  }
  if (parts.length > 3) throw invalidParameterError('dataset', FORMS, dataset);
  const [repo, a, b] = parts;
  const config = parts.length === 3 ? a : 'default';
  const split = parts.length === 3 ? b : a;
  if (!REPO_RE.test(repo) || !NAME_RE.test(config) || !NAME_RE.test(split)) throw invalidParameterError('dataset', FORMS, dataset);
  return { repo, config, split, file: null, field: 'text', detokenizer: 'none', revision: PARQUET_EXPORT_REVISION };
}

export interface HubDatasetOptions extends Omit<HubOptions, 'revision'> {
  /** the dataset repo's revision (default: refs/convert/parquet for named / config:split forms, main for a file) */
  revision?: string;
  /** string column (default: the dataset's, 'text' for hf: forms) */
  field?: string;
}

export interface HubDatasetInfo {
  /** what was asked for */
  dataset: string;
  repo: string;
  config: string | null;
  split: string | null;
  revision: string;
  /** the commit the revision resolved to */
  commit: string;
  /** the Parquet files read, in order (repo paths) */
  files: string[];
  field: string;
  /** rows read (null rows included) */
  rows: number;
  /** rows whose field was null: skipped */
  nullRows: number;
  /** the dataset's detokeniser (upstream's for named datasets, else 'none') */
  detokenizer: DetokenizerName;
}

/**
 * The texts of a Hub dataset (one per row, in file and row order; null values skipped), downloaded
 * into the Hugging Face cache on first use. `info` tells where they came from.
 */
export async function loadHubDataset(dataset: string, options: HubDatasetOptions = {}): Promise<{ texts: string[]; info: HubDatasetInfo }> {
  if (!isHubDataset(dataset)) throw invalidParameterError('dataset', FORMS, dataset);
  const given: unknown = options;
  if (!isPlainObject(given)) throw invalidParameterError('loadHubDataset options', 'an object', given);
  rejectUnknownKeys('loadHubDataset', given, OPTION_KEYS);
  const spec = parseHubDataset(dataset);
  const { field: fieldOption, revision: revOption, ...hub } = options;
  const field = fieldOption === undefined ? spec.field : fieldOption;
  if (typeof field !== 'string' || field === '') throw invalidParameterError('field', 'a non-empty column name', field);
  const revision = revOption === undefined ? spec.revision : revOption;
  const resolved = spec.file !== null
    ? await resolveDatasetFiles(spec.repo, [{ names: [spec.file] }], { ...hub, revision })
    : await resolveDatasetFolder(spec.repo, `${spec.config}/${spec.split}`, { ...hub, revision }).catch((e: unknown) => {
        if (e instanceof HdlmError && e.code === 'HDLM_HUB' && /has no folder|holds no matching/.test(e.message)) {
          throw new HdlmError(
            'HDLM_HUB',
            `${e.message} Check the config and split names (the dataset viewer lists them); a split exported only in part is kept ` +
              `under "${spec.config}/partial-${spec.split}", which hdlm does not read; a single file can be named as hf:${spec.repo}/<file.parquet>.`,
            { cause: e },
          );
        }
        throw e;
      });
  const files = Object.keys(resolved.files).sort();
  const texts: string[] = [];
  let rows = 0;
  let nullRows = 0;
  for (const name of files) {
    for (const value of await readParquetFileStrings(resolved.files[name], field)) {
      rows++;
      if (value === null) nullRows++;
      else texts.push(value);
    }
  }
  return {
    texts,
    info: {
      dataset, repo: spec.repo, config: spec.config, split: spec.split, revision, commit: resolved.commit, files, field, rows, nullRows,
      detokenizer: spec.detokenizer,
    },
  };
}
