/**
 * Worker thread of readConfigFileAsync (config.ts): parses one large YAML config off the main
 * thread and posts the value, or the message of what is wrong with it.
 */
import { parentPort, workerData } from 'worker_threads';
import { parseYamlConfig } from './config';

try {
  parentPort?.postMessage({ ok: true, value: parseYamlConfig(workerData as string) });
} catch (e) {
  parentPort?.postMessage({ ok: false, message: String((e as Error)?.message ?? e).split('\n')[0] });
}
