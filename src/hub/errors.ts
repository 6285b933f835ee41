/**
 * Named errors of the Hub client. Each message is one line naming the repo, the file and the
 * revision, and what to do about it.
 */
import { ControlNetXSError } from '../errors.js';

/**
 * Where a Hub error happened. Each field may be given as `undefined` (callers pass through what
 * they know, e.g. a request context without a filename); HubError stores them as such.
 */
export interface HubErrorDetails {
  repoId?: string | undefined;
  filename?: string | undefined;
  revision?: string | undefined;
  /** HTTP status, when the server answered. */
  status?: number | undefined;
  /** Commit the server resolved the revision to (X-Repo-Commit), when it said. */
  commit?: string | undefined;
  cause?: unknown;
}

/** A Hub download or cache look-up failed. Subclasses say why. */
export class HubError extends ControlNetXSError {
  readonly repoId: string | undefined;
  readonly filename: string | undefined;
  readonly revision: string | undefined;
  readonly status: number | undefined;
  readonly commit: string | undefined;

  constructor(message: string, details: HubErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.repoId = details.repoId;
    this.filename = details.filename;
    this.revision = details.revision;
    this.status = details.status;
    this.commit = details.commit;
  }
}

/** The repo does not exist, or it is private or gated and no (valid) token was sent. */
export class HubRepoNotFoundError extends HubError {}

/** The repo exists but the branch, tag or commit does not. */
export class HubRevisionNotFoundError extends HubError {}

/** The repo and revision exist but the file does not ("file not found in repo"). */
export class HubEntryNotFoundError extends HubError {}

/** 401/403: the token is missing, invalid or lacks access. */
export class HubAuthError extends HubError {}

/** The repo is gated: its conditions must be accepted on the Hub, then a token sent. */
export class HubGatedRepoError extends HubAuthError {}

/** The server's answer lacks what the Hub always sends (X-Repo-Commit, ETag, size, JSON): not a Hub, or a proxy in the way. */
export class HubProtocolError extends HubError {}

/** The file is not in the cache and the Hub cannot be asked (offline mode, or unreachable). */
export class HubNotCachedError extends HubError {}

/** `org/name` file "path" at revision "main": the phrase every message starts from. */
export function describeFile(repoId: string, filename: string | undefined, revision: string): string {
  return filename === undefined ? `${repoId} at revision "${revision}"` : `${repoId} file "${filename}" at revision "${revision}"`;
}
