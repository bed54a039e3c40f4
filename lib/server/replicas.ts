/**
 * Model replicas: one loaded copy of the model per device the server was given (`cpu,cpu` gives
 * two CPU replicas, which is how routing is tested without GPUs).
 */
import { runtimeInfo, smartModelLoader, HdlmArgumentError, type HdlmModel, type LoaderOptions } from '../index';

export class Replica {
  /** sample rows of the jobs running on this replica (its batch occupancy) */
  rowsInFlight = 0;
  jobsInFlight = 0;
  /** jobs started here since the server started */
  jobsStarted = 0;

  constructor(
    readonly index: number,
    readonly device: string,
    readonly model: HdlmModel,
  ) {}

  describe(): { index: number; device: string; rows_in_flight: number; jobs_in_flight: number; jobs_started: number } {
    return { index: this.index, device: this.device, rows_in_flight: this.rowsInFlight, jobs_in_flight: this.jobsInFlight, jobs_started: this.jobsStarted };
  }
}

/**
 * The device list of `--device`: 'auto' (one replica, CUDA if any else CPU), 'all' (every visible
 * CUDA device, else one CPU replica), or a comma list of 'cpu' / 'cuda' / 'cuda:N' (repeats
 * allowed: each entry is one replica).
 */
export function expandDevices(spec: string | readonly string[]): string[] {
  const parts = (typeof spec === 'string' ? spec.split(',') : [...spec]).map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => p.length === 0)) {
    throw new HdlmArgumentError(`Expected a device list such as 'cpu', 'cuda:0,cuda:1' or 'all' for device but received ${JSON.stringify(spec)}`);
  }
  if (parts.length === 1 && parts[0] === 'all') {
    const count = runtimeInfo().cudaDeviceCount;
    return count > 0 ? Array.from({ length: count }, (_, i) => `cuda:${i}`) : ['cpu'];
  }
  for (const p of parts) {
    if (p !== 'auto' && p !== 'cpu' && !/^cuda(:\d+)?$/.test(p)) {
      throw new HdlmArgumentError(`Expected 'auto', 'all', 'cpu', 'cuda' or 'cuda:N' (comma-separated for several replicas) for device but received ${JSON.stringify(p)}`);
    }
    if (p === 'auto' && parts.length > 1) throw new HdlmArgumentError("Expected 'auto' alone for device (list devices explicitly for several replicas)");
  }
  return parts;
}

/** Loads one replica per device, one after another (a failure disposes those already loaded). */
export async function loadReplicas(
  modelPath: string,
  devices: readonly string[],
  loaderOptions: Omit<LoaderOptions, 'modelPath' | 'device'>,
  onLoaded?: (replica: Replica) => void,
): Promise<Replica[]> {
  const replicas: Replica[] = [];
  try {
    for (const device of devices) {
      const { model, device: resolved } = await smartModelLoader(modelPath, { ...loaderOptions, device });
      const replica = new Replica(replicas.length, resolved, model);
      replicas.push(replica);
      onLoaded?.(replica);
    }
  } catch (e) {
    for (const r of replicas) r.model.dispose();
    throw e;
  }
  const first = replicas[0].model;
  for (const r of replicas) {
    if (r.model.family !== 'epsilon_hybrid') {
      for (const x of replicas) x.model.dispose();
      throw new HdlmArgumentError(`Expected an epsilon_hybrid model for model but received a ${r.model.family} model (the server samples with fullDiff / semiDiff)`);
    }
    if (r.model.config.type === 'shifted') {
      for (const x of replicas) x.model.dispose();
      throw new HdlmArgumentError('Expected an aligned model for model but received a shifted (next-token) model (the server samples with fullDiff / semiDiff)');
    }
    if (r.model.length !== first.length || r.model.vocabSize !== first.vocabSize) {
      for (const x of replicas) x.model.dispose();
      throw new Error('the replicas loaded different models');
    }
  }
  return replicas;
}
