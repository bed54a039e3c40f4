/**
 * `hdlm download <repo-id>`: a model's config and weights into the Hugging Face cache; prints
 * the snapshot folder (or JSON).
 */
import { EXIT_OK, HUB_HELP, HUB_OPTIONS, UsageError, offlineFlag, parse, str, type Command, type OptionSpec } from '../args';
import { downloadProgress, interrupt, out } from '../terminal';

const HELP = `Usage: hdlm download <repo-id> [options]

Downloads a model's files (config.yaml / config.json and model.safetensors or pytorch_model.bin)
into the Hugging Face cache (shared with Python's huggingface_hub) and prints the snapshot folder.
Files already in the cache are not downloaded again.

Options:
${HUB_HELP}
  --cache-dir <dir>           cache folder (default HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)
  --json                      print {repoId, revision, commit, snapshotDir, files}
  -h, --help                  show this help`;

const OPTIONS: Record<string, OptionSpec> = {
  ...HUB_OPTIONS,
  'cache-dir': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

/** What smartModelLoader reads from a repo: config.yaml first (as upstream), else config.json, and the weights. */
const MODEL_FILES = [{ names: ['config.yaml'], optional: true }, { names: ['config.json'], optional: true }, { names: ['model.safetensors', 'pytorch_model.bin'] }];

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse('download', args, OPTIONS, 1);
  if (values.help) {
    out(HELP + '\n');
    return EXIT_OK;
  }
  if (positionals.length < 1) throw new UsageError('expected a <repo-id> such as owner/name', 'download');
  const repoId = positionals[0];
  const { resolveRepoFiles } = await import('../../hub/index.js');
  const downloads = downloadProgress();
  let resolved;
  // Ctrl-C stops the download cleanly (no partial file left); a second one exits at once
  interrupt.abortable = true;
  try {
    resolved = await resolveRepoFiles(repoId, MODEL_FILES, {
      signal: interrupt.signal,
      revision: str(values, 'revision'),
      token: str(values, 'token'),
      offline: offlineFlag(values),
      cacheDir: str(values, 'cache-dir'),
      onProgress: downloads.onProgress,
    });
  } finally {
    interrupt.abortable = false;
    downloads.finish();
  }
  if (values.json) {
    out(JSON.stringify({ repoId, revision: str(values, 'revision') ?? 'main', commit: resolved.commit, snapshotDir: resolved.snapshotDir, files: resolved.files }) + '\n');
  } else {
    out(resolved.snapshotDir + '\n');
  }
  return EXIT_OK;
}

export const downloadCommand: Command = { help: HELP, run };
