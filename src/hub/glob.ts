/**
 * Python's `fnmatch.fnmatchcase`, as huggingface_hub's `filter_repo_objects` uses it: `*` matches
 * any run of characters (`/` included), `?` one, `[seq]` / `[!seq]` a set; a pattern ending in `/`
 * matches everything under that folder.
 */

function escapeRegExp(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}

/** The RegExp equivalent of one fnmatch pattern. */
export function globToRegExp(pattern: string): RegExp {
  const p = pattern.replace(/\\/g, '/').replace(/\/$/, '/*');
  let out = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '*') out += '.*';
    else if (c === '?') out += '.';
    else if (c === '[') {
      let j = i + 1;
      if (p[j] === '!') j++;
      if (p[j] === ']') j++;
      while (j < p.length && p[j] !== ']') j++;
      if (j >= p.length) {
        out += '\\[';
        continue;
      }
      let set = p.slice(i + 1, j).replace(/\\/g, '\\\\');
      if (set.startsWith('!')) set = `^${set.slice(1)}`;
      else if (set.startsWith('^')) set = `\\${set}`;
      out += `[${set}]`;
      i = j;
    } else out += escapeRegExp(c);
  }
  return new RegExp(`^${out}$`, 's');
}

/** Repo paths kept by allow patterns (all when none) and not dropped by ignore patterns. */
export function filterRepoFiles(files: readonly string[], allowPatterns?: readonly string[], ignorePatterns?: readonly string[]): string[] {
  const allow = allowPatterns?.map(globToRegExp);
  const ignore = ignorePatterns?.map(globToRegExp) ?? [];
  return files.filter((f) => (!allow || allow.some((r) => r.test(f))) && !ignore.some((r) => r.test(f)));
}
