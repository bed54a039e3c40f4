/**
 * Memory caps on the CPU: a call whose peak would not fit in the memory this process may still
 * use is refused before anything is allocated, instead of ending in an out-of-memory kill.
 *
 * A call's peak grows with batchSize × contextLength × vocabulary (its logits and the float64
 * noise of reference mode's Gumbel-max); the bytes per such logit below are the peaks measured
 * by bench/memory-peaks.js (resident-set high-water mark per extra batch row, demo model, L = 256,
 * Linux x64, libtorch 1.13 CPU), rounded up by about a quarter:
 *
 *   fullDiff / semiDiff reference   27.7 B (original, acs, guidance) → 36
 *   fullDiff reference remdm        56.0 B (remask family)           → 72
 *   fullDiff fast                    7.1 B                           →  9
 *   evaluatePerplexity               8.8 B                           → 11
 *   gammaSample                     44.2 B                           → 56
 *
 * The memory available is the smallest of the system's (MemAvailable), what the process's cgroup
 * allows beyond its current use, and HDLM_MEMORY_LIMIT (bytes) when set.
 */
import * as fs from 'fs';
import * as os from 'os';
import { invalidParameterError } from '../errors';

/** Largest logits tensor one call may ask for (2^31 float32 values = 8 GiB), whatever the memory. */
export const MAX_LOGITS_ELEMENTS = 2 ** 31;

export const PEAK_BYTES_PER_LOGIT = {
  reference: 36,
  referenceRemask: 72,
  fast: 9,
  perplexity: 11,
  gamma: 56,
} as const;

export type PeakKind = keyof typeof PEAK_BYTES_PER_LOGIT;

function readNumber(file: string): number | null {
  try {
    const text = fs.readFileSync(file, 'utf8').trim();
    if (text === 'max') return null;
    const n = Number(text);
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

/** The cgroup's remaining allowance (limit − usage) in bytes, or null when there is no limit. */
function cgroupHeadroom(): number | null {
  let lines: string[];
  try {
    lines = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n');
  } catch {
    return null;
  }
  const v2 = lines.find((l) => l.startsWith('0::'))?.slice(3);
  const v1 = lines.map((l) => /^\d+:(?:[^:]*,)?memory(?:,[^:]*)?:(.*)$/.exec(l)?.[1]).find((p) => p !== undefined);
  // the process's own group, else the mounted root (a container's namespace)
  const candidates: [string, string, string][] = [];
  if (v1 !== undefined) {
    for (const dir of [`/sys/fs/cgroup/memory${v1}`, '/sys/fs/cgroup/memory']) candidates.push([dir, 'memory.limit_in_bytes', 'memory.usage_in_bytes']);
  }
  if (v2 !== undefined) {
    for (const dir of [`/sys/fs/cgroup${v2}`, '/sys/fs/cgroup']) candidates.push([dir, 'memory.max', 'memory.current']);
  }
  for (const [dir, limitFile, usageFile] of candidates) {
    const limit = readNumber(`${dir}/${limitFile}`);
    const usage = readNumber(`${dir}/${usageFile}`);
    // v1 writes "no limit" as a number near 2^63
    if (limit !== null && usage !== null && limit < 2 ** 60) return Math.max(0, limit - usage);
  }
  return null;
}

/** Bytes this process may still allocate: the system's available memory, bounded by its cgroup's allowance. */
export function availableMemory(): number {
  const free = os.freemem();
  const headroom = cgroupHeadroom();
  return headroom === null ? free : Math.min(free, headroom);
}

/**
 * What a call may use: availableMemory(), lowered to HDLM_MEMORY_LIMIT (bytes) when that is set
 * (to leave room for other work on the machine).
 */
export function memoryForCalls(): number {
  const free = availableMemory();
  const limit = process.env.HDLM_MEMORY_LIMIT;
  if (limit === undefined || limit === '') return free;
  if (!/^\d+$/.test(limit)) throw invalidParameterError('HDLM_MEMORY_LIMIT', 'a number of bytes', limit);
  return Math.min(free, Number(limit));
}

const MiB = 2 ** 20;

/**
 * Refuses (HdlmArgumentError on `batchSize`) a CPU call whose estimated peak — batchSize ×
 * contextLength × vocabulary × the measured bytes per logit of `kind` — exceeds the memory
 * available now (memoryForCalls). `what` names the call in the message. Other devices are not checked here.
 */
export function checkCallMemory(what: string, device: string, kind: PeakKind, batchSize: number, contextLength: number, vocabSize: number): void {
  if (device !== 'cpu') return;
  const perRow = contextLength * vocabSize * PEAK_BYTES_PER_LOGIT[kind];
  const free = memoryForCalls();
  if (batchSize * perRow <= free) return;
  const fits = Math.floor(free / perRow);
  throw invalidParameterError(
    'batchSize',
    `${fits >= 1 ? `at most ${fits}` : 'a smaller call: not even 1 row fits'} for ${what} at contextLength ${contextLength} on this machine now ` +
      `(each row needs about ${Math.ceil(perRow / MiB)} MiB at its peak; ${Math.floor(free / MiB)} MiB of memory are available)`,
    batchSize,
  );
}

/**
 * Rows of contextLength × vocabulary logits whose estimated peak (as checkCallMemory counts it)
 * fits in the memory available now; Infinity off the CPU (not checked there).
 */
export function rowsThatFit(device: string, kind: PeakKind, contextLength: number, vocabSize: number): number {
  if (device !== 'cpu') return Infinity;
  return Math.floor(memoryForCalls() / (contextLength * vocabSize * PEAK_BYTES_PER_LOGIT[kind]));
}

/** Refuses (on `batchSize`) a call whose logits, batchSize × contextLength × vocabulary, exceed MAX_LOGITS_ELEMENTS. */
export function checkLogitsCap(batchSize: number, contextLength: number, vocabSize: number): void {
  if (batchSize * contextLength * vocabSize <= MAX_LOGITS_ELEMENTS) return;
  throw invalidParameterError(
    'batchSize',
    `at most ${Math.max(1, Math.floor(MAX_LOGITS_ELEMENTS / (contextLength * vocabSize)))} at contextLength ${contextLength} ` +
      `(batchSize × contextLength × vocabSize logits must stay within ${MAX_LOGITS_ELEMENTS} floats)`,
    batchSize,
  );
}
