/**
 * The TorchScript cache (`torchscriptCacheDir`, HDLM_CACHE, ~/.cache/hdlm): modules built from
 * checkpoints, saved so that the next load skips the build. A TorchScript file is code, so the
 * cache must never load a file it did not write itself:
 *
 *   <root>/torchscript/            created 0700; must be a directory (not a link) owned by this
 *                                  user, group/other permissions are removed; else no cache
 *   <root>/torchscript/.key        32 random bytes (0600): the key of this folder's seals
 *   <root>/torchscript/<k>.pt      a module (written by the native writer: temp file + rename)
 *   <root>/torchscript/<k>.pt.seal {"format":1,"size":…,"hmac":…}: HMAC-SHA256 of the module's
 *                                  bytes under .key, written after the module
 *
 * An entry is loaded only when it is a regular file owned by this user whose bytes match its
 * seal; the bytes checked are those of the open file descriptor the native loader then reads
 * (/proc/self/fd/N on Linux), so the file cannot be swapped in between. Links, FIFOs, sockets,
 * devices and folders are refused without being opened for reading (O_NOFOLLOW | O_NONBLOCK).
 *
 * The entry name <k> is keyed on the weights' content (see weightsFingerprint) and the config,
 * not on the path and modification time only. Where the folder cannot be used (not ours,
 * unwritable, read-only file system) or an entry cannot be written (a full disk) the model is
 * built and used without the cache, as documented. Temp files are named `<name>.tmp-<pid>-<hex>`;
 * those of processes no longer alive are removed when the folder is opened.
 */
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as path from 'path';
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'crypto';
import { removeStaleTemps, tempNameFor } from './module-file';

const KEY_BYTES = 32;
const SEAL_FORMAT = 1;
const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = fs.constants.O_NONBLOCK ?? 0;
const READ_FLAGS = fs.constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK;
/** where the owner and mode checks apply (POSIX) */
const uid = typeof process.getuid === 'function' ? process.getuid() : null;

export interface CacheFolder {
  dir: string;
  /** new entries may be written (else only verified existing ones are read) */
  writable: boolean;
  key: Buffer;
}

/** Why the folder or an entry was not used (for tests and HDLM_DEBUG). */
export type Refusal = { ok: false; reason: string };

function errno(e: unknown): string {
  return (e as NodeJS.ErrnoException)?.code ?? String(e);
}

/**
 * The cache folder under `root`, created 0700 when missing and checked: a real directory owned by
 * this user, group/other permissions removed. Null (with the reason) when it cannot be used.
 */
export function openCacheFolder(root: string): CacheFolder | Refusal {
  const dir = path.join(path.resolve(root), 'torchscript');
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    return { ok: false, reason: `cannot create ${dir} (${errno(e)})` };
  }
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch (e) {
    return { ok: false, reason: `cannot stat ${dir} (${errno(e)})` };
  }
  if (!st.isDirectory()) return { ok: false, reason: `${dir} is not a directory (a link or a file)` };
  if (uid !== null) {
    if (st.uid !== uid) return { ok: false, reason: `${dir} is owned by uid ${st.uid}, not by this user (${uid})` };
    if ((st.mode & 0o077) !== 0) {
      try {
        fs.chmodSync(dir, st.mode & 0o700);
      } catch (e) {
        return { ok: false, reason: `${dir} is open to other users and its mode cannot be changed (${errno(e)})` };
      }
    }
  }
  let writable = true;
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
  } catch {
    writable = false;
  }
  if (writable) removeStaleTemps(dir);
  const key = readKey(dir) ?? (writable ? createKey(dir) : null);
  if (!key) return { ok: false, reason: `${dir} has no usable key and cannot be written` };
  return { dir, writable, key };
}

/** Reads a regular file without following links or blocking; null when it is not one, not ours or too large. */
function readSmallFile(file: string, maxBytes: number, privateOnly: boolean): Buffer | null {
  let fd: number;
  try {
    fd = fs.openSync(file, READ_FLAGS);
  } catch {
    return null;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.size > maxBytes) return null;
    if (uid !== null && (st.uid !== uid || (privateOnly && (st.mode & 0o077) !== 0))) return null;
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = fs.readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } catch {
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

function readKey(dir: string): Buffer | null {
  const key = readSmallFile(path.join(dir, '.key'), KEY_BYTES, true);
  return key && key.length === KEY_BYTES ? key : null;
}

/** A new key, written to a temp file and linked into place (so a concurrent reader never sees half of it). */
function createKey(dir: string): Buffer | null {
  const file = path.join(dir, '.key');
  const tmp = tempNameFor(file);
  try {
    fs.writeFileSync(tmp, randomBytes(KEY_BYTES), { mode: 0o600, flag: 'wx' });
    try {
      fs.linkSync(tmp, file);
    } catch (e) {
      if (errno(e) !== 'EEXIST') throw e;
      // another process won the race, or a key we cannot use is there: replace an unusable one
      if (!readKey(dir)) {
        fs.rmSync(file, { force: true });
        fs.linkSync(tmp, file);
      }
    }
  } catch {
    return null;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return readKey(dir);
}

/** file state (folder key, device, inode, size, ctime, mtime) -> the HMAC its bytes were found to have */
const verified = new Map<string, string>();

function sealPath(entry: string): string {
  return `${entry}.seal`;
}

async function hmacOfFd(fh: fsp.FileHandle, key: Buffer, size: number): Promise<Buffer> {
  const mac = createHmac('sha256', key);
  const buf = Buffer.allocUnsafe(1 << 20);
  let pos = 0;
  while (pos < size) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos);
    if (bytesRead === 0) break;
    mac.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  if (pos !== size) throw new Error(`read ${pos} of ${size} bytes`);
  return mac.digest();
}

/** A verified entry, open: load it through `loadPath` before calling close(). */
export interface VerifiedEntry {
  ok: true;
  /** /proc/self/fd/N where the platform has it (the very file that was checked), else the entry's path */
  loadPath: string;
  close(): Promise<void>;
}

/**
 * Opens and checks a cache entry against its seal. Refuses (without loading or blocking) a missing
 * entry or seal, a link, a non-regular file, a file of another user, a size or HMAC mismatch.
 */
export async function openVerifiedEntry(folder: CacheFolder, entry: string): Promise<VerifiedEntry | Refusal> {
  const sealText = readSmallFile(sealPath(entry), 4096, false);
  if (!sealText) return { ok: false, reason: 'no seal' };
  let seal: { format?: unknown; size?: unknown; hmac?: unknown };
  try {
    seal = JSON.parse(sealText.toString('utf8'));
  } catch {
    return { ok: false, reason: 'unreadable seal' };
  }
  if (seal.format !== SEAL_FORMAT || typeof seal.size !== 'number' || typeof seal.hmac !== 'string' || !/^[0-9a-f]{64}$/.test(seal.hmac)) {
    return { ok: false, reason: 'unreadable seal' };
  }
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(entry, READ_FLAGS);
  } catch (e) {
    return { ok: false, reason: errno(e) === 'ELOOP' ? 'a symbolic link' : `cannot open (${errno(e)})` };
  }
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) throw new Error('not a regular file');
    if (uid !== null && Number(st.uid) !== uid) throw new Error(`owned by uid ${st.uid}`);
    if (Number(st.size) !== seal.size) throw new Error('size differs from its seal');
    // A file's bytes cannot change without its ctime changing: one check per file state and process.
    const identity = `${folder.key.toString('hex')}:${st.dev}:${st.ino}:${st.size}:${st.ctimeNs}:${st.mtimeNs}`;
    if (verified.get(identity) !== seal.hmac) {
      const mac = await hmacOfFd(fh, folder.key, seal.size);
      if (!timingSafeEqual(mac, Buffer.from(seal.hmac, 'hex'))) throw new Error('content differs from its seal');
      verified.set(identity, seal.hmac);
    }
  } catch (e) {
    await fh.close();
    return { ok: false, reason: (e as Error).message };
  }
  const viaFd = `/proc/self/fd/${fh.fd}`;
  const loadPath = process.platform === 'linux' && fs.existsSync(viaFd) ? viaFd : entry;
  let closed = false;
  return {
    ok: true,
    loadPath,
    close: async () => {
      if (closed) return;
      closed = true;
      await fh.close();
    },
  };
}

/**
 * Seals an entry the native builder just wrote: HMAC of its bytes, written beside it (temp file +
 * rename). Returns false when the entry is not a regular file of ours or cannot be sealed (it is
 * then refused next time and rebuilt).
 */
export async function sealEntry(folder: CacheFolder, entry: string): Promise<boolean> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(entry, READ_FLAGS);
  } catch {
    return false;
  }
  let text: string;
  try {
    const st = await fh.stat();
    if (!st.isFile() || (uid !== null && st.uid !== uid)) return false;
    const mac = await hmacOfFd(fh, folder.key, st.size);
    text = JSON.stringify({ format: SEAL_FORMAT, size: st.size, hmac: mac.toString('hex') });
  } catch {
    return false;
  } finally {
    await fh.close();
  }
  const tmp = tempNameFor(sealPath(entry));
  try {
    await fsp.writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
    await fsp.rename(tmp, sealPath(entry));
    return true;
  } catch {
    await fsp.rm(tmp, { force: true });
    return false;
  }
}

/**
 * Removes a refused entry and its seal, never following links or descending into folders.
 * Returns false when something that is not a file (a folder) stays at the entry's name.
 */
export function removeEntry(entry: string): boolean {
  let ok = true;
  for (const p of [entry, sealPath(entry)]) {
    try {
      fs.unlinkSync(p);
    } catch (e) {
      const code = errno(e);
      if (code !== 'ENOENT') ok = false;
    }
  }
  return ok;
}

/** Whether a new file can be created in `dir` now (a real probe: access() says yes to root on a read-only mount's parent). */
export function canCreateIn(dir: string): boolean {
  const probe = tempNameFor(path.join(dir, '.probe'));
  try {
    fs.writeFileSync(probe, '', { flag: 'wx', mode: 0o600 });
    fs.unlinkSync(probe);
    return true;
  } catch {
    return false;
  }
}

const fingerprints = new Map<string, string>();
const SAMPLE_BLOCK = 64 * 1024;
const SAMPLE_BLOCKS = 64;
const HEAD_BYTES = 1 << 20;

/**
 * A cheap content key of a weights file: its size, device, inode, change and modification times
 * (nanoseconds), and a SHA-256 of its first MiB (the safetensors header and the first tensors),
 * 64 blocks of 64 KiB spread over the file and its last 64 KiB — about 5 MiB read whatever the
 * size, once per process for a given file state. A rewrite in place changes ctime (which no
 * user can set back), a copy changes the inode, and different bytes change the sampled digest.
 */
export async function weightsFingerprint(file: string): Promise<string> {
  const fh = await fsp.open(file, fs.constants.O_RDONLY | O_NONBLOCK);
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) throw new Error(`${file} is not a regular file`);
    const identity = `${st.dev}:${st.ino}:${st.size}:${st.ctimeNs}:${st.mtimeNs}`;
    const known = fingerprints.get(identity);
    if (known) return known;
    const size = Number(st.size);
    const hash = createHash('sha256').update(identity);
    const ranges: [number, number][] = [[0, Math.min(size, HEAD_BYTES)]];
    if (size > HEAD_BYTES) {
      const span = size - HEAD_BYTES;
      for (let i = 0; i < SAMPLE_BLOCKS; i++) {
        const start = HEAD_BYTES + Math.floor((span * i) / SAMPLE_BLOCKS);
        ranges.push([start, Math.min(size, start + SAMPLE_BLOCK)]);
      }
      ranges.push([Math.max(HEAD_BYTES, size - SAMPLE_BLOCK), size]);
    }
    const buf = Buffer.allocUnsafe(HEAD_BYTES);
    for (const [start, end] of ranges) {
      let pos = start;
      while (pos < end) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - pos), pos);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(0, bytesRead));
        pos += bytesRead;
      }
    }
    const digest = hash.digest('hex');
    fingerprints.set(identity, digest);
    return digest;
  } finally {
    await fh.close();
  }
}
