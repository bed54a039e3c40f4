/**
 * `hdlm export <model> <out.pt>`: builds a checkpoint's TorchScript module and saves it
 * (exportTorchScript); prints the absolute path.
 */
import type * as Lib from '../../index';
import { EXIT_OK, HUB_HELP, HUB_OPTIONS, UsageError, num, offlineFlag, parse, str, type Command, type OptionSpec } from '../args';
import { downloadProgress, out, stderrStatus } from '../terminal';

const HELP = `Usage: hdlm export <model> <out.pt> [options]

Builds the TorchScript module of a checkpoint (hub repo id or directory) and writes it to
<out.pt>; prints the absolute path. The file loads with 'hdlm generate --model <out.pt>'.

Options:
  --model-type <type>         auto | epsilon_hybrid | gamma_hybrid (default auto)
  --device <dev>              auto | cpu | cuda | cuda:N: where the module's weights live (default auto)
  --threads <n>               libtorch CPU threads
${HUB_HELP}
  -h, --help                  show this help`;

const OPTIONS: Record<string, OptionSpec> = {
  'model-type': { type: 'string' },
  device: { type: 'string' },
  threads: { type: 'string' },
  ...HUB_OPTIONS,
  help: { type: 'boolean', short: 'h' },
};

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parse('export', args, OPTIONS, 2);
  if (values.help) {
    out(HELP + '\n');
    return EXIT_OK;
  }
  if (positionals.length < 2) throw new UsageError('expected <model> and <out.pt>', 'export');
  const hdlm = await import('../../index.js');
  const downloads = downloadProgress();
  const clearStatus = stderrStatus(`building the TorchScript module of ${positionals[0]}…`);
  let file: string;
  try {
    file = await hdlm.exportTorchScript(positionals[0], positionals[1], {
      modelType: str(values, 'model-type') as Lib.ModelType | undefined,
      device: str(values, 'device'),
      threads: num(values, 'threads') as number | undefined,
      revision: str(values, 'revision'),
      token: str(values, 'token'),
      offline: offlineFlag(values),
      onProgress: downloads.onProgress,
    });
  } finally {
    downloads.finish();
    clearStatus();
  }
  out(file + '\n');
  return EXIT_OK;
}

export const exportCommand: Command = { help: HELP, run };
