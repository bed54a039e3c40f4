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
import { createHash } from 'crypto';
import { HdlmError } from '../errors';
import { linkIntoSnapshot, snapshotPath, tmpSuffix, unlinkQuiet } from './cache';
import { errorMessage, hubError, mapError, networkCause } from './errors';
import { SHA256_RE, type Ctx } from './options';
import { requestParams, type RemoteFile } from './remote';

/** Removes `<blob>.*.incomplete` files left by killed processes (untouched for an hour). */
async function removeStaleTemps(blobPath: string): Promise<void> {
  const dir = path.dirname(blobPath);
  const prefix = path.basename(blobPath) + '.';
  try {
    for (const name of await fsp.readdir(dir)) {
      if (!name.startsWith(prefix) || !name.endsWith('.incomplete')) continue;
      const p = path.join(dir, name);
      const st = await fsp.stat(p);
      if (Date.now() - st.mtimeMs > 3600_000) await unlinkQuiet(p);
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

/** Downloads one file into `blobPath`: a temp file of this process, size and sha256 checked, then renamed. */
async function downloadBlob(ctx: Ctx, commit: string, rf: RemoteFile, blobPath: string): Promise<void> {
  await fsp.mkdir(path.dirname(blobPath), { recursive: true });
  await removeStaleTemps(blobPath);
  const tmp = `${blobPath}.${tmpSuffix()}.incomplete`;
  const hash = SHA256_RE.test(rf.etag) ? createHash('sha256') : null;
  const what = `"${rf.name}" from ${ctx.repoId}@${ctx.revision} (${ctx.endpoint})`;
  let loaded = 0;
  try {
    let blob: Blob | null;
    try {
      blob = await ctx.lib.downloadFile({ repo: { type: ctx.repoType, name: ctx.repoId }, path: rf.name, revision: commit, ...requestParams(ctx) });
    } catch (e) {
      throw mapError(ctx, e, rf.name);
    }
    if (blob === null) {
      throw hubError(ctx, `File "${rf.name}" was not found in the Hugging Face repository ${ctx.repoId} at commit ${commit} on ${ctx.endpoint}.`);
    }
    const fh = await fsp.open(tmp, 'wx');
    try {
      ctx.onProgress?.({ file: rf.name, loaded: 0, total: rf.size });
      try {
        for await (const chunk of blob.stream() as unknown as AsyncIterable<Uint8Array>) {
          await fh.write(chunk);
          hash?.update(chunk);
          loaded += chunk.byteLength;
          ctx.onProgress?.({ file: rf.name, loaded, total: rf.size });
        }
      } catch (e) {
        const reason = e instanceof Error ? (networkCause(e) ?? e.message) : String(e);
        throw hubError(
          ctx,
          `Download of ${what} was interrupted after ${loaded} of ${rf.size} bytes (${reason}); ` +
            `nothing was written to the cache, run again to retry (or set HF_HUB_OFFLINE=1 to use the cache only).`,
          e,
        );
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (loaded !== rf.size) {
      throw hubError(ctx, `Download of ${what} returned ${loaded} bytes, expected ${rf.size}; nothing was written to the cache, run again to retry.`);
    }
    const digest = hash?.digest('hex');
    if (digest !== undefined && digest !== rf.etag) {
      throw hubError(ctx, `Download of ${what} is corrupt: sha256 ${digest}, expected ${rf.etag}; nothing was written to the cache, run again to retry.`);
    }
    await fsp.rename(tmp, blobPath);
  } catch (e) {
    await unlinkQuiet(tmp);
    throw e instanceof HdlmError ? e : hubError(ctx, `Could not write "${rf.name}" of ${ctx.repoId} into the cache ${ctx.cacheDir}: ${errorMessage(e)}`, e);
  }
}
