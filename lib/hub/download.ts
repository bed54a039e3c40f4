/**
 * One file of a commit into the cache: the bytes come through @huggingface/hub's downloadFile
 * (redirects, range probes, the xet protocol); writing them is ours.
 *
 * Not downloadFileToCacheDir, which would do the same job in one call, because it breaks
 * guarantees the tests hold us to: it prints "Downloading ..." with console.debug (to stdout,
 * which `hdlm download --json` and scripts read); every process writes the same
 * `<blob>.incomplete` file, so two downloads of one blob can interleave; an interrupted download
 * leaves that file behind; nothing checks the size or the sha256 before the blob becomes
 * visible to other processes; and it reports no progress. Here: a temp file of our own per
 * process, the size and (for LFS files) the sha256 checked, then an atomic rename; partial files
 * removed on failure (and stale ones left by killed processes); progress per chunk.
 */
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as path from 'path';
import * as os from 'os';
import { createHash } from 'crypto';
import { HdlmError } from '../errors';
import { CallbackGuard } from '../callbacks';
import { linkIntoSnapshot, snapshotPath, tmpSuffix, unlinkQuiet } from './cache';
import { abortError, errorMessage, hubError, mapError, networkCause } from './errors';
import { SHA256_RE, type Ctx } from './options';
import { requestParams, type RemoteFile } from './remote';

/** This host, in temp file names: a process id is only meaningful on the host that wrote it. */
const HOST_TAG = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the `*.incomplete` files of interrupted downloads in the repo's blobs folder: ours
 * (`<blob>.<host>-<pid>-<random>.incomplete`) as soon as their process of this host is gone, any
 * (another host's, Python's) once untouched for an hour.
 */
async function removeStaleTemps(blobsDir: string): Promise<void> {
  try {
    for (const name of await fsp.readdir(blobsDir)) {
      if (!name.endsWith('.incomplete')) continue;
      const m = /\.([0-9a-f]{8})-(\d+)-[0-9a-f]{12}\.incomplete$/.exec(name);
      const p = path.join(blobsDir, name);
      const st = await fsp.lstat(p);
      const dead = m !== null && m[1] === HOST_TAG && Number(m[2]) !== process.pid && !processAlive(Number(m[2]));
      if (dead || Date.now() - st.mtimeMs > 3600_000) await unlinkQuiet(p);
    }
  } catch {
    // best effort
  }
}

/** Links snapshots/<commit>/<file> to blobs/<etag>, downloading the blob first unless it is there. */
export async function ensureFile(ctx: Ctx, commit: string, rf: RemoteFile): Promise<string> {
  const pointer = snapshotPath(ctx, commit, rf.name);
  try {
    if (fs.statSync(pointer).size === rf.size) return pointer;
  } catch {
    // not there (or a dangling link): fetch it
  }
  const blobPath = path.join(ctx.storage, 'blobs', rf.etag);
  let haveBlob: boolean;
  try {
    const st = fs.statSync(blobPath);
    haveBlob = st.isFile() && st.size === rf.size;
  } catch {
    haveBlob = false;
  }
  if (!haveBlob) await downloadBlob(ctx, commit, rf, blobPath);
  try {
    await linkIntoSnapshot(blobPath, pointer);
  } catch (e) {
    throw hubError(ctx, `Could not write the snapshot entry ${pointer}: ${errorMessage(e)}`, e);
  }
  return pointer;
}

/** A download must average at least this many bytes per second after its first minute (six idle timeouts). */
export const MIN_DOWNLOAD_RATE = 32 * 1024;

/**
 * Downloads one file into `blobPath`: a temp file of this process, size and sha256 checked, then
 * renamed. Bounded: it stops once the body goes past the expected size, when no bytes come for
 * HF_HUB_DOWNLOAD_TIMEOUT seconds (makeFetch), when it runs past 6 × that timeout plus the size at
 * MIN_DOWNLOAD_RATE, and when the call's signal aborts or onProgress fails; the temp file is removed.
 */
async function downloadBlob(ctx: Ctx, commit: string, rf: RemoteFile, blobPath: string): Promise<void> {
  await fsp.mkdir(path.dirname(blobPath), { recursive: true });
  await removeStaleTemps(path.dirname(blobPath));
  const tmp = `${blobPath}.${HOST_TAG}-${tmpSuffix()}.incomplete`;
  const hash = SHA256_RE.test(rf.etag) ? createHash('sha256') : null;
  const what = `"${rf.name}" from ${ctx.repoId}@${ctx.revision} (${ctx.endpoint})`;
  // why this download was stopped (the library's blob stream reports only a message)
  const stop = new AbortController();
  let stopped: Error | null = null;
  const halt = (e: Error): void => {
    stopped ??= e;
    stop.abort(e);
  };
  const progress = ctx.onProgress ? new CallbackGuard('onProgress', ctx.onProgress, () => halt(new Error('onProgress failed'))) : null;
  const limitMs = 6 * ctx.downloadTimeoutMs + (rf.size / MIN_DOWNLOAD_RATE) * 1000;
  const deadline = setTimeout(
    () => halt(hubError(ctx, `Download of ${what} took more than ${Math.round(limitMs / 1000)} s (under ${MIN_DOWNLOAD_RATE / 1024} KiB/s after the first ${(6 * ctx.downloadTimeoutMs) / 1000} s); nothing was written to the cache, run again to retry.`)),
    limitMs,
  );
  deadline.unref?.();
  const onAbort = (): void => halt(abortError(ctx));
  ctx.signal?.addEventListener('abort', onAbort, { once: true });
  const failure = (e: unknown): unknown => progress?.error ?? (ctx.signal?.aborted ? abortError(ctx) : stopped ?? e);
  let loaded = 0;
  try {
    if (ctx.signal?.aborted) throw abortError(ctx);
    let blob: Blob | null;
    try {
      blob = await ctx.lib.downloadFile({ repo: { type: ctx.repoType, name: ctx.repoId }, path: rf.name, revision: commit, ...requestParams(ctx, stop.signal) });
    } catch (e) {
      const f = failure(e);
      throw f instanceof HdlmError ? f : mapError(ctx, f, rf.name);
    }
    if (blob === null) {
      throw hubError(ctx, `File "${rf.name}" was not found in the Hugging Face repository ${ctx.repoId} at commit ${commit} on ${ctx.endpoint}.`);
    }
    const fh = await fsp.open(tmp, 'wx');
    try {
      progress?.call({ file: rf.name, loaded: 0, total: rf.size });
      try {
        for await (const chunk of blob.stream() as unknown as AsyncIterable<Uint8Array>) {
          if (stopped) throw stopped;
          if (loaded + chunk.byteLength > rf.size) {
            halt(hubError(ctx, `Download of ${what} sent more than the ${rf.size} bytes the Hub declared; stopped at ${loaded} bytes, nothing was written to the cache.`));
            throw stopped;
          }
          await fh.write(chunk);
          hash?.update(chunk);
          loaded += chunk.byteLength;
          progress?.call({ file: rf.name, loaded, total: rf.size });
        }
        if (stopped) throw stopped;
      } catch (e) {
        const f = failure(e);
        if (f instanceof HdlmError) throw f;
        const reason = f instanceof Error ? (networkCause(f) ?? f.message) : String(f);
        throw hubError(
          ctx,
          `Download of ${what} was interrupted after ${loaded} of ${rf.size} bytes (${reason}); ` +
            `nothing was written to the cache, run again to retry (or set HF_HUB_OFFLINE=1 to use the cache only).`,
          f,
        );
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await progress?.drain();
    progress?.throwIfFailed();
    if (loaded !== rf.size) {
      throw hubError(ctx, `Download of ${what} returned ${loaded} bytes, expected ${rf.size}; nothing was written to the cache, run again to retry.`);
    }
    const digest = hash?.digest('hex');
    if (digest !== undefined && digest !== rf.etag) {
      throw hubError(ctx, `Download of ${what} is corrupt: sha256 ${digest}, expected ${rf.etag}; nothing was written to the cache, run again to retry.`);
    }
    await fsp.rename(tmp, blobPath);
  } catch (e) {
    stop.abort();
    await unlinkQuiet(tmp);
    const f = failure(e);
    throw f instanceof HdlmError ? f : hubError(ctx, `Could not write "${rf.name}" of ${ctx.repoId} into the cache ${ctx.cacheDir}: ${errorMessage(f)}`, f);
  } finally {
    clearTimeout(deadline);
    ctx.signal?.removeEventListener('abort', onAbort);
  }
}
