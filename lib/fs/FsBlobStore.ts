import { createHash } from "node:crypto";
import type { BigIntStats, Dirent } from "node:fs";
import { mkdir, open, readdir, stat, unlink } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { join, resolve } from "node:path";
import { DEFAULTS } from "../core/constants.js";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import type { BlobInfo, BlobStore, GetOptions, ListOptions, PutOptions } from "../core/ports.js";
import { resolveRange } from "../core/byteRange.js";
import { ATOMIC_TEMP_NAME, writeFileAtomically } from "./atomicFile.js";
import { fileFailure } from "./fsErrors.js";

/** How many files list() stats at once. */
const STAT_CONCURRENCY = 64;

/**
 * A BlobStore over a directory: key `a/b.txt` is the file `<root>/a/b.txt`.
 *
 * The ETag is a digest of (size, mtime in ns, inode). A put always writes a new inode and renames
 * it over the old one, so consecutive versions differ even within one mtime tick; an
 * in-place edit by another program changes mtime or size. (An old inode number can be reused
 * by a later file, so version N and N+2 of the same size written within one clock tick could
 * in theory share an ETag; nothing in cloudmill rewrites an input that fast.)
 *
 * Unlike S3, a key cannot be both an object and a "directory" (`a` and `a/b`): such a put fails
 * with ENVIRONMENT.
 */
export class FsBlobStore implements BlobStore {
  readonly name: string;
  private readonly root: string;
  /** What its failures to write name first (`TMPDIR /tmp`): where the root is, as a user would free it. */
  private readonly label: string | undefined;

  constructor(root: string, options: { readonly label?: string } = {}) {
    this.root = resolve(root);
    this.name = this.root;
    this.label = options.label;
  }

  /** `[<label>: ]put <path>: no space left on device (ENOSPC)`: lasting when the disk would refuse every attempt. */
  private fsError(op: string, path: string, err: unknown): CloudmillError {
    return fileFailure(`${this.label === undefined ? "" : `${this.label}: `}${op} ${path}`, err);
  }

  async head(key: string): Promise<BlobInfo | undefined> {
    const path = this.pathOf(key);
    let st: BigIntStats;
    try {
      st = await stat(path, { bigint: true });
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw this.fsError("head", path, err);
    }
    return st.isFile() ? { key, size: Number(st.size), etag: etagOf(st) } : undefined;
  }

  async get(key: string, options: GetOptions = {}): Promise<AsyncIterable<Uint8Array>> {
    const path = this.pathOf(key);
    const { start, end } = resolveRange(options);
    if (end !== undefined && start === end) return empty();
    options.signal?.throwIfAborted();
    // Check existence and ETag now, so the promise settles as the port promises; the stream
    // reopens the file so that a stream nobody iterates holds no descriptor.
    const fh = await openForRead(path);
    let seen: string;
    try {
      seen = etagOf(await checkedStat(fh, path, options.etag));
    } finally {
      await fh.close();
    }
    return readRange(path, start, end, seen, options.signal, options.reuseBuffers ?? false);
  }

  async put(key: string, body: Uint8Array | string | AsyncIterable<Uint8Array>, _options?: PutOptions): Promise<void> {
    const path = this.pathOf(key);
    const dir = path.slice(0, path.lastIndexOf("/"));
    try {
      await mkdir(dir, { recursive: true });
      await writeFileAtomically(path, body);
    } catch (err) {
      // A streamed body's own error (the pieces' producer failed) is not the filesystem's.
      if (err instanceof CloudmillError) throw err;
      // A key a folder of files cannot hold beside the others (x, then x/y), or a name too long
      // for it: S3 would take it, and trying again here gives the same answer.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST" || code === "ENOTDIR" || code === "EISDIR" || code === "ENAMETOOLONG")
        throw new CloudmillError(
          ErrorCode.INVALID_SPEC,
          `put ${path}: ${code}: ${code === "ENAMETOOLONG" ? "a name too long for this filesystem" : "a file and a folder of one name"}`,
        );
      throw this.fsError("put", path, err);
    }
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<BlobInfo> {
    // Walk only the directory the prefix pins down: `a/b/c` → walk `a/b/`, keep keys starting `a/b/c`.
    const cut = prefix.lastIndexOf("/") + 1;
    const base = prefix.slice(0, cut);
    if (base) this.pathOf(base.slice(0, -1));
    const files: string[] = [];
    const after = options.startAfter === undefined ? undefined : Buffer.from(options.startAfter);
    await this.walk(base, (key) => {
      if (key.startsWith(prefix) && (after === undefined || Buffer.compare(Buffer.from(key), after) > 0)) files.push(key);
    });
    const bytes = new Map(files.map((k) => [k, Buffer.from(k)]));
    files.sort((a, b) => Buffer.compare(bytes.get(a)!, bytes.get(b)!));
    for (let i = 0; i < files.length; i += STAT_CONCURRENCY) {
      const infos = await Promise.all(files.slice(i, i + STAT_CONCURRENCY).map((k) => this.head(k)));
      // A file deleted since the walk is simply not listed.
      for (const info of infos) if (info) yield info;
    }
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    try {
      await unlink(path);
    } catch (err) {
      // A directory is not an object either: deleting "it" deletes nothing.
      if (isMissing(err) || (err as NodeJS.ErrnoException).code === "EISDIR") return;
      throw this.fsError("delete", path, err);
    }
  }

  private async walk(dirKey: string, found: (key: string) => void): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await readdir(dirKey ? join(this.root, dirKey) : this.root, { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return;
      throw this.fsError("list", join(this.root, dirKey), err);
    }
    const dirs: string[] = [];
    for (const e of entries) {
      if (ATOMIC_TEMP_NAME.test(e.name)) continue;
      const key = `${dirKey}${e.name}`;
      if (e.isDirectory()) dirs.push(`${key}/`);
      else if (e.isFile()) found(key);
      else if (e.isSymbolicLink()) {
        // Follow links to files; never links to directories (they could loop).
        const st = await stat(join(this.root, key)).catch(() => undefined);
        if (st?.isFile()) found(key);
      }
    }
    await Promise.all(dirs.map((d) => this.walk(d, found)));
  }

  /** The file of a key, refusing keys that could escape the root or that are not canonical. */
  private pathOf(key: string): string {
    const bad = (why: string): CloudmillError =>
      new CloudmillError(ErrorCode.INVALID_SPEC, `invalid key ${JSON.stringify(key)} for ${this.root}: ${why}`);
    if (key === "") throw bad("empty key");
    if (key.includes("\0")) throw bad("contains NUL");
    if (key.startsWith("/")) throw bad("absolute key");
    for (const seg of key.split("/")) {
      if (seg === "") throw bad("empty path segment");
      if (seg === "." || seg === "..") throw bad(`"${seg}" segment`);
      if (ATOMIC_TEMP_NAME.test(seg)) throw bad("reserved temp-file name");
    }
    // The root "/" (local inputs) with its key is "/tmp/x", not "//tmp/x".
    return this.root.endsWith("/") ? `${this.root}${key}` : `${this.root}/${key}`;
  }
}

const etagOf = (st: BigIntStats): string =>
  `"${createHash("sha1").update(`${st.size}:${st.mtimeNs}:${st.ino}`).digest("hex").slice(0, 32)}"`;

const openForRead = async (path: string): Promise<FileHandle> => {
  try {
    return await open(path, "r");
  } catch (err) {
    if (isMissing(err)) throw notFound(path);
    throw fsError("get", path, err);
  }
};

const checkedStat = async (fh: FileHandle, path: string, etag: string | undefined): Promise<BigIntStats> => {
  const st = await fh.stat({ bigint: true });
  if (!st.isFile()) throw notFound(path);
  if (etag !== undefined && etagOf(st) !== etag) {
    throw new CloudmillError(
      ErrorCode.INPUT_CHANGED,
      `${path} changed since the job listed its inputs (expected ETag ${etag}, found ${etagOf(st)})`,
    );
  }
  return st;
};

async function* readRange(
  path: string,
  start: number,
  end: number | undefined,
  etag: string,
  signal: AbortSignal | undefined,
  reuseBuffers: boolean,
): AsyncGenerator<Uint8Array> {
  const fh = await openForRead(path);
  // Two buffers are enough to reuse: one the caller holds, one being read ahead into.
  const ring: Buffer[] = [];
  let reads = 0;
  const bufferFor = (want: number): Buffer => {
    if (!reuseBuffers) return Buffer.allocUnsafe(want);
    const i = reads++ % 2;
    // The first read is the largest; a later one is a whole block or the range's remainder.
    if (!ring[i] || ring[i].length < want) ring[i] = Buffer.allocUnsafe(want);
    return ring[i].subarray(0, want);
  };
  let pending: Promise<Uint8Array> | undefined;
  try {
    const size = Number((await checkedStat(fh, path, etag)).size);
    const stop = Math.min(end ?? size, size);
    const readAt = async (pos: number): Promise<Uint8Array> => {
      const want = Math.min(DEFAULTS.readBlockBytes, stop - pos);
      const buf = bufferFor(want);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, pos + got);
        if (bytesRead === 0) throw changed(path, etag);
        got += bytesRead;
      }
      return buf;
    };
    // Read one block ahead so the disk works while the consumer parses.
    let pos = start;
    if (pos < stop) pending = readAt(pos);
    while (pending) {
      signal?.throwIfAborted();
      const block = await pending;
      pending = undefined;
      pos += block.length;
      if (pos < stop) pending = readAt(pos);
      else await checkedStat(fh, path, etag); // an in-place edit during the read must not pass silently
      yield block;
    }
    signal?.throwIfAborted();
  } finally {
    await pending?.catch(() => undefined);
    await fh.close();
  }
}

async function* empty(): AsyncGenerator<Uint8Array> {}

const changed = (path: string, etag: string): CloudmillError =>
  new CloudmillError(ErrorCode.INPUT_CHANGED, `${path} changed since the job listed its inputs (expected ETag ${etag})`);

const notFound = (path: string): CloudmillError => new CloudmillError(ErrorCode.INPUT_NOT_FOUND, `${path} does not exist`);

const isMissing = (err: unknown): boolean => {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
};

const fsError = (op: string, path: string, err: unknown): CloudmillError => fileFailure(`${op} ${path}`, err);
