/**
 * The cache layout huggingface_hub uses, so Python and this package share downloads:
 *
 *     <cacheDir>/models--org--name/
 *       blobs/<etag>                         file contents, named by ETag (git sha1, or sha256 for LFS)
 *       refs/<revision>                      the commit hash a branch or tag pointed to
 *       snapshots/<commit>/<path>            relative symlinks to ../../blobs/<etag>
 *       .no_exist/<commit>/<path>            empty marker: the file is known not to exist
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { lstat, mkdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { HubError } from './errors.js';

const COMMIT_HASH = /^[0-9a-f]{40}$/;
/** huggingface_hub's `validate_repo_id`: `name` or `org/name`, word characters, `-` and `.` inside. */
const REPO_ID = /^(?:\w(?:[\w.-]*\w)?\/)?\w(?:[\w.-]*\w)?$/;

export function isCommitHash(revision: string): boolean {
  return COMMIT_HASH.test(revision);
}

/** Whether `id` has the shape of a Hub repo id (`name` or `org/name`). */
export function isRepoId(id: string): boolean {
  return REPO_ID.test(id) && !id.includes('--') && !id.includes('..') && !id.endsWith('.git') && id.length <= 96;
}

export function assertRepoId(repoId: string): void {
  if (!isRepoId(repoId)) throw new HubError(`"${repoId}" is not a valid Hub repo id (expected "org/name")`, { repoId });
}

/** A repo path such as `unet/config.json`: relative, `/`-separated, no `.`/`..` parts. */
export function assertRepoFilename(filename: string, repoId: string): void {
  const parts = filename.split('/');
  if (filename === '' || filename.includes('\\') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new HubError(`${repoId}: "${filename}" is not a valid file path in a repo`, { repoId, filename });
  }
}

/** `models--org--name`, as huggingface_hub's `repo_folder_name`. */
export function repoFolderName(repoId: string): string {
  return ['models', ...repoId.split('/')].join('--');
}

/** The cache folders and files of one repo. */
export class RepoCache {
  readonly root: string;

  constructor(
    readonly cacheDir: string,
    readonly repoId: string,
  ) {
    this.root = join(cacheDir, repoFolderName(repoId));
  }

  blobPath(etag: string): string {
    if (!/^[\w.-]+$/.test(etag) || etag.startsWith('.')) {
      throw new HubError(`${this.repoId}: the server sent an ETag unfit for a file name: "${etag}"`, { repoId: this.repoId });
    }
    return join(this.root, 'blobs', etag);
  }

  snapshotDir(commit: string): string {
    return join(this.root, 'snapshots', commit);
  }

  pointerPath(commit: string, filename: string): string {
    return join(this.snapshotDir(commit), ...filename.split('/'));
  }

  /** Lock file guarding `blobs/<etag>.incomplete` (not Python's flock file, which may stay behind). */
  lockPath(etag: string): string {
    return join(this.cacheDir, '.locks', repoFolderName(this.repoId), `${etag}.node.lock`);
  }

  /** The commit `refs/<revision>` points to, or null. */
  readRef(revision: string): string | null {
    const path = join(this.root, 'refs', ...revision.split('/'));
    try {
      const commit = readFileSync(path, 'utf8').trim();
      return commit || null;
    } catch {
      return null;
    }
  }

  /** The commit a revision means locally: itself when a hash, else its ref. */
  localCommit(revision: string): string | null {
    return isCommitHash(revision) ? revision : this.readRef(revision);
  }

  /** Record `revision → commit` (atomically, and only when it changed), as Python does for branches and tags. */
  async writeRef(revision: string, commit: string): Promise<void> {
    if (revision === commit) return;
    if (this.readRef(revision) === commit) return;
    const path = join(this.root, 'refs', ...revision.split('/'));
    await atomicWrite(path, commit);
  }

  /** The snapshot file of `filename` at the revision, when it is cached (a pointer that resolves). */
  cachedFile(revision: string, filename: string): string | null {
    const commit = this.localCommit(revision);
    if (commit === null) return null;
    const pointer = this.pointerPath(commit, filename);
    return existsSync(pointer) ? pointer : null;
  }

  /** Remember that `filename` does not exist at `commit` (huggingface_hub's `.no_exist`). Best effort. */
  async markMissing(commit: string, filename: string): Promise<void> {
    const path = join(this.root, '.no_exist', commit, ...filename.split('/'));
    try {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, '', { flag: 'a' });
    } catch {
      // A read-only cache only loses the marker.
    }
  }

  /** Point `snapshots/<commit>/<filename>` at the blob with a relative symlink. */
  async linkPointer(blob: string, pointer: string): Promise<void> {
    await mkdir(dirname(pointer), { recursive: true });
    const target = relative(dirname(pointer), blob);
    await rm(pointer, { force: true });
    try {
      await symlink(target, pointer);
    } catch (e) {
      // Another process linked it between rm and symlink: fine when it points at the same blob.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const st = await lstat(pointer);
      if (!st.isSymbolicLink() || resolve(dirname(pointer), await readlink(pointer)) !== resolve(blob)) throw e;
    }
  }

  /** Every file of a cached snapshot, as repo paths (`unet/config.json`). */
  listSnapshot(commit: string): string[] {
    const root = this.snapshotDir(commit);
    const out: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const full = join(dir, entry.name);
        let isDir = entry.isDirectory();
        if (entry.isSymbolicLink()) {
          try {
            isDir = statSync(full).isDirectory();
          } catch {
            continue; // dangling pointer: the blob is gone
          }
        }
        if (isDir) walk(full);
        else out.push(relative(root, full).split(sep).join('/'));
      }
    };
    if (existsSync(root)) walk(root);
    return out.sort();
  }
}

/** Write a file through a temporary sibling and a rename, so readers never see half of it. */
export async function atomicWrite(path: string, data: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
}
