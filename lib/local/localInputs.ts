/**
 * Local inputs: files and directories (walked recursively, in path order) as input objects, and
 * manifests (`manifest:list.txt`: a path per line, from the list's folder) as the inputs they list.
 */
import { readdir, readFile, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { HiddenFiles, isHiddenName, onlyHidden } from "../core/hiddenNames.js";
import { appendAll } from "../core/appendAll.js";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import type { InputObject } from "../core/job/manifest.js";
import { isManifestInput, listEntries, manifestKind, manifestLocation, shownEntry } from "../core/pipeline/inputManifests.js";
import type { BlobStore } from "../core/ports.js";

/** The bucket name local inputs use: the filesystem store rooted at `/`. */
export const LOCAL_BUCKET = "file";

/** Key of an absolute path in the filesystem store rooted at `/`. */
export const localKey = (absolute: string): string => path.resolve(absolute).slice(1);

/**
 * Regular files under dir, recursively, in byte order of their paths (the SDK uploads the same).
 * Symbolic links are followed as `find -L -type f` follows them: a link to a folder the walk is
 * already inside is a loop, not walked again, and a link to nothing is no file. Sockets and
 * devices are not files either. Hidden names (hiddenNames.ts) are left out, and go to `hidden`.
 */
export const walk = async (dir: string, hidden?: HiddenFiles): Promise<string[]> => {
  const files = await walkFrom(dir, new Set(), hidden);
  // By whole paths, as S3 lists keys: `a.txt` comes before the folder `a`'s `a/x.txt` ('.' < '/').
  const bytes = new Map(files.map((f) => [f, Buffer.from(f)]));
  return files.sort((a, b) => Buffer.compare(bytes.get(a)!, bytes.get(b)!));
};

const walkFrom = async (dir: string, within: ReadonlySet<string>, hidden: HiddenFiles | undefined): Promise<string[]> => {
  const inside = new Set(within).add(await realpath(dir));
  // In byte order, so that what is left out is named in the same order on any filesystem.
  const entries = (await readdir(dir, { withFileTypes: true, encoding: "buffer" })).sort((a, b) => Buffer.compare(a.name, b.name));
  const files: string[] = [];
  for (const e of entries) {
    const name = utf8Name(e.name, dir);
    const p = path.join(dir, name);
    // .DS_Store, .git/, _SUCCESS: left out, and counted (hiddenNames.ts).
    if (isHiddenName(name)) {
      hidden?.add(p);
      continue;
    }
    let isDirectory = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      // A link to nothing (an editor's lock file) holds no bytes, as `find -L -type f` passes it by.
      const target = await stat(p).catch(() => undefined);
      isDirectory = target?.isDirectory() === true && !inside.has(await realpath(p));
      isFile = target?.isFile() === true;
    }
    if (isDirectory) appendAll(files, await walkFrom(p, inside, hidden));
    else if (isFile) files.push(p);
  }
  return files;
};

/**
 * A file name as text. A name that is not UTF-8 (Latin-1 `caf\xe9.txt`) cannot be a key: read as
 * text it would become another name (U+FFFD for the byte), even a sibling's, read in its place.
 */
const utf8Name = (name: Buffer, dir: string): string => {
  const text = name.toString("utf8");
  if (!Buffer.from(text, "utf8").equals(name))
    throw new CloudmillError(
      ErrorCode.INVALID_SPEC,
      `a file name is not UTF-8 (${JSON.stringify(text)}, bytes ${name.toString("hex")}): rename it (convmv -f latin1 -t utf8)`,
      { input: dir },
    );
  return text;
};

/**
 * The inputs with each local manifest replaced by the paths it lists (relative ones from the
 * manifest's folder), in order. A manifest in S3 (`manifest:s3://…`) stays as it is.
 */
export const expandLocalManifests = async (inputs: readonly string[]): Promise<string[]> => {
  const out: string[] = [];
  for (const given of inputs) {
    const where = manifestLocation(given);
    if (!isManifestInput(given) || where.startsWith("s3://")) {
      out.push(given);
      continue;
    }
    if (manifestKind(where) !== "list")
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        "a local manifest lists paths, one per line (CSV and inventory manifests are read in S3)",
        {
          input: where,
        },
      );
    const file = await readFile(where).catch(() => {
      throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, "no such manifest file", { input: where });
    });
    const entries = listEntries(file, where);
    if (entries.length === 0) throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, "the manifest lists no inputs", { input: where });
    for (const { line, text: entry } of entries) {
      if (isManifestInput(entry) || entry.startsWith("s3://"))
        throw new CloudmillError(ErrorCode.INVALID_SPEC, `${entry}: a local manifest lists local paths`, { input: where, line });
      const listed = path.resolve(path.dirname(where), entry);
      if (!(await stat(listed).catch(() => undefined)))
        throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, `${shownEntry(entry)}: no such file or directory`, { input: where, line });
      out.push(listed);
    }
  }
  return out;
};

/** The inputs' files; `hidden` gets what their folders' listings left out (hiddenNames.ts). */
export const resolveLocalInputs = async (inputs: readonly string[], root: BlobStore, hidden?: HiddenFiles): Promise<InputObject[]> => {
  const out: InputObject[] = [];
  for (const given of await expandLocalManifests(inputs)) {
    const absolute = path.resolve(given);
    const st = await stat(absolute).catch(() => undefined);
    if (!st) {
      // A name that is not UTF-8 arrives with U+FFFD for its bytes, and names no file.
      const why = given.includes("\uFFFD") ? " (a name that is not UTF-8 cannot be given: rename it)" : "";
      throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, `no such file or directory${why}`, { input: given });
    }
    const left = new HiddenFiles();
    const files = st.isDirectory() ? await walk(absolute, left) : [absolute];
    hidden?.addAll(left);
    if (st.isDirectory() && files.length === 0)
      throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, left.count ? onlyHidden(left.first[0]!) : "directory holds no files", {
        input: given,
      });
    for (const file of files) {
      const key = localKey(file);
      const info = await root.head(key);
      if (!info) throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, "not a readable regular file", { input: file });
      const name = st.isDirectory() ? path.join(given, path.relative(absolute, file)) : given;
      out.push({ bucket: LOCAL_BUCKET, key, size: info.size, etag: info.etag, name });
    }
  }
  return out;
};
