/**
 * The on-disk cache, in the layout Python's huggingface_hub uses, so that both share one cache:
 *
 *   <cache>/models--<owner>--<name>/      (datasets--<owner>--<name>/ for dataset repos)
 *     blobs/<etag>                        file contents (etag = sha256 for LFS files, git blob id otherwise)
 *     snapshots/<commit>/<file>           relative symlink to ../../blobs/<etag>
 *     refs/<revision>                     the commit sha the branch/tag pointed to (no newline);
 *                                         refs/convert/parquet is kept as refs/refs/convert/parquet
 *     .no_exist/<commit>/<file>           empty marker: the file does not exist at that commit
 *
 * Reading it without the network (offline mode, the fallback when the Hub cannot be reached) and
 * writing refs and markers are ours: @huggingface/hub has no offline resolution and writes refs
 * before the files are there. Listing uses its scanCacheDir.
 */
import * as fs from 'fs';
import * as fsp from 'fs/promises';
import * as path from 'path';
import { randomBytes } from 'crypto';
import { HdlmError } from '../errors';
import { errorMessage, hubError } from './errors';
import { COMMIT_RE, hubCacheDir, loadHubLib, type Ctx, type HubOptions, type RepoFileGroup, type ResolvedRepoFiles } from './options';

export function snapshotPath(ctx: Ctx, commit: string, file?: string): string {
  const dir = path.join(ctx.storage, 'snapshots', commit);
  return file === undefined ? dir : path.join(dir, ...file.split('/'));
}

export function noExistPath(ctx: Ctx, commit: string, file: string): string {
  return path.join(ctx.storage, '.no_exist', commit, ...file.split('/'));
}

export function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile(); // follows the symlink: a dangling one counts as missing
  } catch {
    return false;
  }
}

export function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

export function tmpSuffix(): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}`;
}

export async function unlinkQuiet(p: string): Promise<void> {
  try {
    await fsp.unlink(p);
  } catch {
    // already gone
  }
}

/** Writes a small file atomically (temp file + rename). */
export async function writeAtomic(file: string, content: string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${tmpSuffix()}.tmp`;
  try {
    await fsp.writeFile(tmp, content);
    await fsp.rename(tmp, file);
  } catch (e) {
    await unlinkQuiet(tmp);
    throw e;
  }
}

/** Points snapshots/<commit>/<file> at the blob: a relative symlink (a copy where symlinks fail), swapped in atomically. */
export async function linkIntoSnapshot(blobPath: string, pointer: string): Promise<void> {
  await fsp.mkdir(path.dirname(pointer), { recursive: true });
  const tmp = `${pointer}.${tmpSuffix()}.tmp`;
  try {
    try {
      await fsp.symlink(path.relative(path.dirname(pointer), blobPath), tmp);
    } catch {
      await fsp.copyFile(blobPath, tmp);
    }
    await fsp.rename(tmp, pointer);
  } catch (e) {
    await unlinkQuiet(tmp);
    throw e;
  }
}

export function readRef(ctx: Ctx, revision: string): string | null {
  try {
    const sha = fs.readFileSync(path.join(ctx.storage, 'refs', ...revision.split('/')), 'utf8').trim();
    return COMMIT_RE.test(sha) ? sha : null;
  } catch {
    return null;
  }
}

export type LocalResult = { ok: true; result: ResolvedRepoFiles } | { ok: false; missing: string };

/**
 * Resolves the groups from the cache alone. `strict`: every decision must be certain (a name
 * before the chosen one must be known absent through a .no_exist marker), used to skip the network
 * for an immutable commit. Otherwise best effort: the first name present in the snapshot.
 */
export function resolveLocal(ctx: Ctx, groups: RepoFileGroup[], strict: boolean): LocalResult {
  const commit = COMMIT_RE.test(ctx.revision) ? ctx.revision : readRef(ctx, ctx.revision);
  if (commit === null) {
    return { ok: false, missing: `revision "${ctx.revision}" of ${ctx.repoId} (no ${path.join(ctx.storage, 'refs', ctx.revision)})` };
  }
  const files: Record<string, string> = {};
  for (const g of groups) {
    let chosen: string | null = null;
    let uncertain = false;
    for (const name of g.names) {
      const p = snapshotPath(ctx, commit, name);
      if (isFile(p)) {
        chosen = name;
        break;
      }
      if (!exists(noExistPath(ctx, commit, name))) uncertain = true;
      if (strict && uncertain) return { ok: false, missing: `file "${name}"` };
    }
    if (chosen !== null) {
      files[chosen] = snapshotPath(ctx, commit, chosen);
    } else if (!g.optional) {
      const what = g.names.length === 1 ? `file "${g.names[0]}"` : `any of the files ${g.names.map((n) => `"${n}"`).join(', ')}`;
      return { ok: false, missing: `${what} of ${ctx.repoId} at revision "${ctx.revision}" (commit ${commit})` };
    }
  }
  return { ok: true, result: { snapshotDir: snapshotPath(ctx, commit), commit, files } };
}

/** Writes refs/<revision> = commit (atomically), unless the revision is the commit itself. */
export async function saveRef(ctx: Ctx, commit: string): Promise<void> {
  if (ctx.revision === commit) return;
  try {
    if (readRef(ctx, ctx.revision) !== commit) await writeAtomic(path.join(ctx.storage, 'refs', ...ctx.revision.split('/')), commit);
  } catch (e) {
    throw hubError(ctx, `Could not write refs/${ctx.revision} in the cache ${ctx.storage}: ${errorMessage(e)}`, e);
  }
}

/** Python's .no_exist markers for files the Hub says are not in `commit`, so that offline runs can decide. */
export async function markAbsent(ctx: Ctx, commit: string, names: string[]): Promise<void> {
  for (const name of names) {
    const marker = noExistPath(ctx, commit, name);
    try {
      if (!exists(marker)) {
        await fsp.mkdir(path.dirname(marker), { recursive: true });
        await fsp.writeFile(marker, '');
      }
    } catch {
      // only an optimisation
    }
  }
}

// ---------------------------------------------------------------------------------------------
// listing

export interface CachedModel {
  /** 'owner/name' */
  repoId: string;
  /** absolute path of the repo folder in the cache */
  path: string;
  /** revision name -> commit sha, from refs/ */
  refs: Record<string, string>;
  /** commit shas that have a snapshot folder */
  snapshots: string[];
  /** bytes of the blobs its snapshots point to */
  sizeBytes: number;
}

/** Every ref under refs/ (nested ones as refs/pr/1), name -> commit. */
function walkRefs(dir: string, prefix: string, out: Record<string, string>): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const ent of entries) {
    const full = path.join(dir, ent.name);
    const name = prefix === '' ? ent.name : `${prefix}/${ent.name}`;
    if (ent.isDirectory()) {
      walkRefs(full, name, out);
    } else if (ent.isFile() && !ent.name.endsWith('.tmp')) {
      try {
        const sha = fs.readFileSync(full, 'utf8').trim();
        if (COMMIT_RE.test(sha)) out[name] = sha;
      } catch {
        // unreadable ref: skip
      }
    }
  }
}

/**
 * Lists the models in the hub cache, sorted by repo id; an absent cache gives []. Repos, snapshots
 * and sizes come from @huggingface/hub's scanCacheDir (size: the blobs the snapshots point to, as
 * Python's scan-cache counts it); a repo it finds corrupted (a ref to a missing snapshot, a
 * dangling link) is left out, as Python's scan-cache reports it apart. Refs are read here:
 * scanCacheDir skips nested ones (refs/pr/1) and takes file contents unchecked.
 */
export async function listCachedModels(opts?: HubOptions): Promise<CachedModel[]> {
  const cacheDir = hubCacheDir(opts);
  try {
    if (!fs.statSync(cacheDir).isDirectory()) return [];
  } catch {
    return [];
  }
  const lib = await loadHubLib();
  let scan: Awaited<ReturnType<typeof lib.scanCacheDir>>;
  try {
    scan = await lib.scanCacheDir(cacheDir);
  } catch (e) {
    throw new HdlmError('HDLM_HUB', `Could not list the Hugging Face cache ${cacheDir}: ${errorMessage(e)}`, { cause: e });
  }
  const out: CachedModel[] = [];
  for (const repo of scan.repos) {
    if (repo.id.type !== 'model') continue;
    const refs: Record<string, string> = {};
    walkRefs(path.join(repo.path, 'refs'), '', refs);
    const snapshots = repo.revisions.map((r) => r.commitOid).sort();
    out.push({ repoId: repo.id.name, path: repo.path, refs, snapshots, sizeBytes: repo.size });
  }
  return out.sort((a, b) => (a.repoId < b.repoId ? -1 : a.repoId > b.repoId ? 1 : 0));
}
