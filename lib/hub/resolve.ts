/**
 * Resolving a repo (model or dataset) to local files in the Hugging Face cache: the revision to
 * its commit, each wanted file to a snapshot entry, downloading what the cache lacks. Offline,
 * only the cache is read; when the Hub cannot be reached, a complete cached snapshot of the
 * revision is used instead (as Python's huggingface_hub does).
 */
import * as fs from 'fs';
import * as path from 'path';
import { HdlmError } from '../errors';
import { isFile, markAbsent, readRef, resolveLocal, saveRef, snapshotPath, type LocalResult } from './cache';
import { ensureFile } from './download';
import { HubUnreachable, hubError, mapError, metadataError, offlineError, statusOf } from './errors';
import {
  COMMIT_RE, checkFileName, checkGroups, checkOptions, checkRepoId, makeContext,
  type Ctx, type HubOptions, type RepoFileGroup, type RepoType, type ResolvedRepoFiles,
} from './options';
import { fetchCommit, fetchPathsInfo, listFolder, type RemoteFile } from './remote';

/**
 * Resolves a repo to a local snapshot folder holding the wanted files. `groups` lists
 * alternatives: each group resolves to the first of its names that exists in the repo; an
 * optional group may resolve to none. Returns { snapshotDir, commit, files } with one entry per
 * resolved file (absolute paths inside snapshotDir). Files already in the snapshot are not
 * downloaded again. Offline (option or HF_HUB_OFFLINE) only the cache is read; online, if the
 * Hub cannot be reached, a complete cached snapshot of the revision is used instead.
 */
export async function resolveRepoFiles(repoId: string, groups: RepoFileGroup[], opts?: HubOptions): Promise<ResolvedRepoFiles> {
  return resolveFiles('model', repoId, groups, opts);
}

/**
 * resolveRepoFiles for a dataset repository (`datasets/<repo>` on the Hub,
 * `<cache>/datasets--<owner>--<name>/` in the cache, as Python's huggingface_hub lays it out).
 */
export async function resolveDatasetFiles(repoId: string, groups: RepoFileGroup[], opts?: HubOptions): Promise<ResolvedRepoFiles> {
  return resolveFiles('dataset', repoId, groups, opts);
}

async function resolveFiles(repoType: RepoType, repoId: string, groups: RepoFileGroup[], opts?: HubOptions): Promise<ResolvedRepoFiles> {
  checkRepoId(repoId, repoType);
  const checked = checkGroups(groups);
  const ctx = await makeContext(repoId, checkOptions(opts), repoType);
  // A commit's snapshot never changes: if the cache answers every group for certain, no request is needed.
  if (!ctx.offline && COMMIT_RE.test(ctx.revision)) {
    const local = resolveLocal(ctx, checked, true);
    if (local.ok) return local.result;
  }
  return withCacheFallback(
    ctx,
    () => resolveLocal(ctx, checked, false),
    async () => {
      let commit: string;
      try {
        commit = await fetchCommit(ctx);
      } catch (e) {
        throw metadataError(ctx, e);
      }
      return resolveAtCommit(ctx, commit, checked);
    },
  );
}

/**
 * Every file directly inside `folder` of a dataset repository whose name `match`es (default:
 * `*.parquet`), at `opts.revision`, sorted by name: listed with the Hub's tree API at the
 * revision's commit, then resolved like resolveDatasetFiles (downloaded into the cache, which is
 * reused). Offline, or when the Hub cannot be reached, the folder of the cached snapshot of the
 * revision (refs/<revision>) is used.
 */
export async function resolveDatasetFolder(
  repoId: string, folder: string, opts?: HubOptions, match: (name: string) => boolean = (n) => n.endsWith('.parquet'),
): Promise<ResolvedRepoFiles> {
  checkRepoId(repoId, 'dataset');
  checkFileName(folder, 'folder');
  const ctx = await makeContext(repoId, checkOptions(opts), 'dataset');
  const where = `folder "${folder}" of the dataset ${repoId} at revision "${ctx.revision}"`;

  const local = (): LocalResult => {
    const commit = COMMIT_RE.test(ctx.revision) ? ctx.revision : readRef(ctx, ctx.revision);
    if (commit === null) return { ok: false, missing: `revision "${ctx.revision}" of ${repoId} (no ${path.join(ctx.storage, 'refs', ctx.revision)})` };
    let names: string[];
    try {
      const dir = snapshotPath(ctx, commit, folder);
      names = fs.readdirSync(dir).filter((n) => match(n) && isFile(path.join(dir, n))).sort();
    } catch {
      names = [];
    }
    if (names.length === 0) return { ok: false, missing: `${where} (commit ${commit})` };
    return resolveLocal(ctx, names.map((n) => ({ names: [`${folder}/${n}`] })), false);
  };

  return withCacheFallback(ctx, local, async () => {
    let commit: string;
    let names: string[];
    try {
      commit = await fetchCommit(ctx);
      names = await listFolder(ctx, commit, folder, match);
    } catch (e) {
      if (statusOf(e) === 404 && ctx.failures.get('') === 'EntryNotFound') {
        throw hubError(ctx, `The Hugging Face Hub at ${ctx.endpoint} has no ${where}.`, e);
      }
      throw metadataError(ctx, e);
    }
    if (names.length === 0) throw hubError(ctx, `The ${where} (commit ${commit}) holds no matching files.`);
    return resolveAtCommit(ctx, commit, names.sort().map((n) => ({ names: [n] })));
  });
}

/** Offline: the cache alone. Online: `online()`, and the cache when the Hub cannot be reached. */
async function withCacheFallback(ctx: Ctx, local: () => LocalResult, online: () => Promise<ResolvedRepoFiles>): Promise<ResolvedRepoFiles> {
  if (ctx.offline) {
    const l = local();
    if (l.ok) return l.result;
    throw offlineError(ctx, l.missing);
  }
  try {
    return await online();
  } catch (e) {
    if (e instanceof HubUnreachable) {
      const l = local();
      if (l.ok) return l.result;
      throw hubError(ctx, `${e.mapped.message} The cache does not hold a copy either: ${l.missing} is missing.`, e.mapped.cause);
    }
    throw e instanceof HdlmError ? e : mapError(ctx, e);
  }
}

/** Online resolution of the groups at a known commit (the revision's): downloads what is missing, writes refs/<revision>. */
async function resolveAtCommit(ctx: Ctx, commit: string, groups: RepoFileGroup[]): Promise<ResolvedRepoFiles> {
  // A commit's snapshot never changes: if the cache answers every group for certain, we are done.
  const local = resolveLocal({ ...ctx, revision: commit }, groups, true);
  if (local.ok) {
    await saveRef(ctx, commit);
    return local.result;
  }

  const wanted = [...new Set(groups.flatMap((g) => g.names))];
  let remote: Map<string, RemoteFile>;
  try {
    remote = await fetchPathsInfo(ctx, commit, wanted);
  } catch (e) {
    throw metadataError(ctx, e);
  }

  const chosen: RemoteFile[] = [];
  for (const g of groups) {
    const hit = g.names.find((n) => remote.has(n));
    if (hit !== undefined) {
      chosen.push(remote.get(hit) as RemoteFile);
    } else if (!g.optional) {
      throw hubError(
        ctx,
        g.names.length === 1
          ? `The Hugging Face repository ${ctx.repoId} at revision "${ctx.revision}" (commit ${commit}) has no file "${g.names[0]}".`
          : `The Hugging Face repository ${ctx.repoId} at revision "${ctx.revision}" (commit ${commit}) has none of the files ` +
              `${g.names.map((n) => `"${n}"`).join(', ')} (one of them is required).`,
      );
    }
  }
  await markAbsent(ctx, commit, wanted.filter((name) => !remote.has(name)));

  const files: Record<string, string> = {};
  for (const rf of chosen) {
    files[rf.name] = await ensureFile(ctx, commit, rf);
  }
  await saveRef(ctx, commit);
  return { snapshotDir: snapshotPath(ctx, commit), commit, files };
}
