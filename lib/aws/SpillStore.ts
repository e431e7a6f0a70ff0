/**
 * Where a worker's reduce tasks spill their sorted runs: the container's own disk while it has
 * room, else S3. A run is read back only by the task that wrote it, so the disk saves a PUT, a
 * GET and a DELETE per run. But the instance's root volume is shared by every task the worker
 * runs at once and also holds its images, and a partition of a large sort spills gigabytes: a
 * run that would leave less than the reserve free goes to S3 (the output bucket, under the same
 * `_work/<jobId>/spill/` key) instead of failing the task for want of space.
 */
import { mkdtemp, readdir, rm, rmdir, statfs } from "node:fs/promises";
import path from "node:path";
import type { BlobInfo, BlobStore, GetOptions, ListOptions, PutOptions } from "../core/ports.js";
import { CloudmillError } from "../core/errors.js";
import { FsBlobStore } from "../fs/FsBlobStore.js";
import { isAlive } from "../fs/processFolders.js";

const FOLDER_PREFIX = "cloudmill-spill-";

/**
 * A spill folder of this process's own under `root` (`cloudmill-spill-<pid>-…`), once the folders
 * of workers that are gone are removed: one killed (SIGKILL, out of memory) never removed its own,
 * and on a machine that outlives its workers (`cloudmill dev`) their runs would stay for good.
 */
export const spillFolder = async (root: string): Promise<string> => {
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const pid = Number(/^cloudmill-spill-(\d+)-/.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid === process.pid || isAlive(pid)) continue;
    await rm(path.join(root, name), { recursive: true, force: true }).catch(() => undefined);
  }
  return mkdtemp(path.join(root, `${FOLDER_PREFIX}${process.pid}-`));
};

export interface SpillStoreOptions {
  /** The spill folder on the container's disk (the store's own: nothing else writes there). */
  readonly dir: string;
  /** Where runs go when the disk is short: the output bucket. */
  readonly fallback: BlobStore;
  /** Bytes the disk keeps free: a run that would leave less goes to `fallback`. */
  readonly reserveBytes: number;
  /** Free bytes of the disk `dir` is on (tests replace it). */
  readonly freeBytes?: (dir: string) => Promise<number>;
}

/** Free bytes of the disk `dir` is on (the folder itself may not be made yet). */
const diskFree = async (dir: string): Promise<number> => {
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      const s = await statfs(d);
      return s.bavail * s.bsize;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" || d === path.dirname(d)) throw err;
    }
  }
};

/** Whether a store's error is the disk running out of space. */
const isNoSpace = (err: unknown): boolean =>
  err instanceof CloudmillError && (err.cause as NodeJS.ErrnoException | undefined)?.code === "ENOSPC";

export class SpillStore implements BlobStore {
  readonly #options: SpillStoreOptions;
  readonly #disk: FsBlobStore;
  /** Runs written to the fallback: every other key is on disk. */
  readonly #elsewhere = new Set<string>();
  /** Bytes of disk puts under way, which the free space does not show yet (every task of the worker spills here). */
  #pending = 0;

  constructor(options: SpillStoreOptions) {
    this.#options = options;
    this.#disk = new FsBlobStore(options.dir);
  }

  get name(): string {
    return this.#options.dir;
  }

  #storeOf(key: string): BlobStore {
    return this.#elsewhere.has(key) ? this.#options.fallback : this.#disk;
  }

  head(key: string): Promise<BlobInfo | undefined> {
    return this.#storeOf(key).head(key);
  }

  get(key: string, options?: GetOptions): Promise<AsyncIterable<Uint8Array>> {
    return this.#storeOf(key).get(key, options);
  }

  async put(key: string, body: Uint8Array | string | AsyncIterable<Uint8Array>, options?: PutOptions): Promise<void> {
    const { fallback, reserveBytes, dir } = this.#options;
    const bytes = typeof body === "string" ? Buffer.byteLength(body) : body instanceof Uint8Array ? body.length : options?.sizeAtMost;
    const free = await (this.#options.freeBytes ?? diskFree)(dir);
    if (bytes !== undefined && free - this.#pending - bytes >= reserveBytes) {
      this.#pending += bytes;
      try {
        await this.#disk.put(key, body, options);
        this.#elsewhere.delete(key);
        return;
      } catch (err) {
        // Something else filled the disk meanwhile: bytes in hand can still go elsewhere; a stream is spent.
        const inHand = typeof body === "string" || body instanceof Uint8Array;
        if (!(inHand && isNoSpace(err))) throw err;
      } finally {
        this.#pending -= bytes;
      }
    }
    await fallback.put(key, body, options);
    this.#elsewhere.add(key);
  }

  async *list(prefix: string, options?: ListOptions): AsyncIterable<BlobInfo> {
    const all: BlobInfo[] = [];
    for await (const o of this.#disk.list(prefix, options)) if (!this.#elsewhere.has(o.key)) all.push(o);
    for (const key of this.#elsewhere) {
      if (!key.startsWith(prefix)) continue;
      if (options?.startAfter !== undefined && Buffer.compare(Buffer.from(key), Buffer.from(options.startAfter)) <= 0) continue;
      const info = await this.#options.fallback.head(key);
      if (info) all.push(info);
    }
    all.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    yield* all;
  }

  async delete(key: string): Promise<void> {
    if (this.#elsewhere.has(key)) {
      await this.#options.fallback.delete(key);
      this.#elsewhere.delete(key);
      return;
    }
    await this.#disk.delete(key);
    // A spill's runs share a folder of their own (its attempt's): gone with its last run.
    await rmdir(path.join(this.#options.dir, path.dirname(key))).catch(() => undefined);
  }
}
