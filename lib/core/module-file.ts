/**
 * Writing a built model's TorchScript module to a file (the TorchScript cache, exportTorchScript):
 * into a temp file beside the target, named `<target>.tmp-<pid>-<random>`, then renamed. The
 * native writer checks every write and fsyncs; on any failure (a full disk) the call rejects
 * with HDLM_IO and the temp file is gone. Temp files that a killed process left behind are
 * removed when their process is no longer alive.
 */
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as path from 'path';
import { randomBytes } from 'crypto';
import type { NativeModel } from '../binding';
import { HdlmError } from '../errors';
import { callNative } from './model';

const TEMP_SUFFIX = /\.tmp-(\d+)-[0-9a-f]+$/;
/** a temp file older than this is stale whatever its pid says (the pid may have been reused) */
const STALE_AGE_MS = 24 * 3600 * 1000;

/** A fresh temp name beside `target`, tagged with this process's pid. */
export function tempNameFor(target: string): string {
  return `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, another user's
  }
}

/**
 * Removes the temp files in `dir` whose writer is gone: names `<something>.tmp-<pid>-<hex>`
 * (only those whose <something> passes `accept`), regular files of this user, whose pid is not a
 * live process or that are older than a day. Never follows links; errors are ignored (another
 * process may clean at the same time).
 */
export function removeStaleTemps(dir: string, accept: (base: string) => boolean = () => true): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return removed;
  }
  const uid = typeof process.getuid === 'function' ? process.getuid() : null;
  for (const name of names) {
    const m = TEMP_SUFFIX.exec(name);
    if (!m || !accept(name.slice(0, m.index))) continue;
    const file = path.join(dir, name);
    try {
      const st = fs.lstatSync(file);
      if (!st.isFile() || (uid !== null && st.uid !== uid)) continue;
      if (alive(Number(m[1])) && Date.now() - st.mtimeMs < STALE_AGE_MS) continue;
      fs.unlinkSync(file);
      removed.push(file);
    } catch {
      // gone already, or not ours to remove
    }
  }
  return removed;
}

/**
 * Writes `native`'s module to `target` (temp file + rename; stale temp files of the same target
 * are removed first). Rejects with HDLM_IO, leaving no temp file, when the disk is full or the
 * folder cannot be written.
 */
export async function writeModuleFile(native: NativeModel, target: string): Promise<void> {
  const base = path.basename(target);
  removeStaleTemps(path.dirname(target), (b) => b === base);
  const tmp = tempNameFor(target);
  try {
    await callNative(() => native.saveTorchScript(tmp));
    await fsp.rename(tmp, target);
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    if (e instanceof HdlmError) throw e;
    throw new HdlmError('HDLM_IO', `cannot write ${target}: ${(e as Error).message}`, { cause: e });
  }
}
