/**
 * Files a folder's or a prefix's listing leaves out, as Hadoop's and Spark's input formats do:
 * those with a part of their path below it that starts with "." or "_" (.DS_Store, .git/,
 * _SUCCESS, _logs/, a committer's _temporary/). Named on its own (a path, an s3:// object, a
 * manifest's line), such a file is read. A job counts what it left out (its status's `hidden`).
 */
export const isHiddenName = (name: string): boolean => name.startsWith(".") || name.startsWith("_");

/** Whether a path below a listed folder or prefix (`a/b.txt`, no leading slash) is hidden. */
export const isHiddenBelow = (relative: string): boolean => relative.split("/").some(isHiddenName);

/**
 * What of a hidden relative key a listing names and counts: up to its first hidden part, with a
 * `/` when that part is a folder (`.git/objects/ab` → `.git/`), as a local folder's walk counts
 * the folder once. Undefined: nothing in it is hidden.
 */
export const hiddenRootBelow = (relative: string): string | undefined => {
  const parts = relative.split("/");
  const at = parts.findIndex(isHiddenName);
  if (at < 0) return undefined;
  return parts.slice(0, at + 1).join("/") + (at < parts.length - 1 ? "/" : "");
};

/** What a listing left out (a local folder counts as one): how many, and the first few, for a message. */
export class HiddenFiles {
  count = 0;
  readonly first: string[] = [];

  add(name: string): void {
    if (this.count++ < SHOWN) this.first.push(name);
  }

  /** Adds what another listing left out. */
  addAll(other: HiddenFiles): void {
    for (const name of other.first.slice(0, Math.max(0, SHOWN - this.first.length))) this.first.push(name);
    this.count += other.count;
  }
}

/** Hidden files a message names. */
const SHOWN = 3;

/** The line that tells a user what a job left out (`cloudmill run`, `wait`). */
export const hiddenNotice = (hidden: { readonly count: number; readonly first: readonly string[] }): string =>
  `left out ${hidden.count} hidden file(s) or folder(s) (${hidden.first.join(", ")}${hidden.count > hidden.first.length ? ", …" : ""}): ` +
  "a folder's names starting with . or _ are not read, as in Hadoop; name one to read it";

/** Why a folder or prefix of hidden files alone gives no input. */
export const onlyHidden = (example: string): string =>
  `holds only hidden files (${example}: names starting with . or _ are not read from a folder, as in Hadoop): name one to read it`;
