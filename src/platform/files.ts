/**
 * The file access that code shared by the Node and browser builds needs, in one seam: paths here are
 * local paths; in the browser build `files.browser.ts` takes this module's place and the same calls
 * read URLs (through Cache Storage). Everything is async because the browser's I/O is.
 */
import { readFile, realpath, stat, open } from 'node:fs/promises';
import { join } from 'node:path';

/** `base` with `parts` appended, as the platform spells locations (here: `path.join`). */
export function joinPath(base: string, ...parts: string[]): string {
  return join(base, ...parts);
}

/** Whether `path` is an existing file. */
export async function fileExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Whether `path` is an existing folder (a URL "folder" cannot be listed: the browser says yes and its files answer). */
export async function folderExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** A whole text file, UTF-8; throws the platform's error (callers name the file in their own). */
export async function readTextFile(path: string): Promise<string> {
  return readFile(path, 'utf8');
}

/** Where a file's bytes really are (symlinks resolved: Hub cache snapshots link into blobs/) and its size. */
export async function statFile(path: string): Promise<{ realPath: string; size: number }> {
  const realPath = await realpath(path);
  return { realPath, size: (await stat(realPath)).size };
}

/** `length` bytes at `offset`; fewer when the file ends first (the caller checks). */
export async function readFileRange(path: string, offset: number, length: number): Promise<Uint8Array> {
  const handle = await open(path, 'r');
  try {
    const buf = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await handle.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buf.subarray(0, done);
  } finally {
    await handle.close();
  }
}
