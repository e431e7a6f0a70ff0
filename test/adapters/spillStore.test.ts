/**
 * The worker's spill store: runs go to the container's disk while it keeps its reserve free, and
 * to the fallback (S3; here a second folder) past it. Either way it is a BlobStore like any other,
 * and reads, listings and deletes find each run where it went.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SpillStore, spillFolder } from "../../lib/aws/SpillStore.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { collect, describeBlobStoreContract } from "../contract/blobStoreContract.js";

const tempRoot = (): Promise<string> => mkdtemp(join(tmpdir(), "cloudmill-spill-store-"));

/** A spill store over a fresh folder, its fallback another, and the disk's free bytes as `free` says. */
const spillStore = async (free: () => number, reserveBytes = 1000) => {
  const root = await tempRoot();
  const fallback = new FsBlobStore(join(root, "s3"));
  const store = new SpillStore({ dir: join(root, "disk"), fallback, reserveBytes, freeBytes: async () => free() });
  return { root, store, fallback, cleanup: () => rm(root, { recursive: true, force: true }) };
};

describeBlobStoreContract("SpillStore on its disk", async () => spillStore(() => Number.MAX_SAFE_INTEGER));
describeBlobStoreContract("SpillStore past its reserve (the fallback)", async () => spillStore(() => 0));

/** Every file under a folder, as keys. */
const filesUnder = async (dir: string): Promise<string[]> =>
  (await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []))
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();

describe("SpillStore", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    await Promise.all(cleanups.splice(0).map((c) => c()));
  });

  it("keeps a run on disk while the disk keeps its reserve, and sends the rest to the fallback", async () => {
    let free = 5000;
    const s = await spillStore(() => free);
    cleanups.push(s.cleanup);
    const prefix = "_work/j/spill/00000/attempt-1/";
    await s.store.put(`${prefix}run-00000`, Buffer.alloc(3000, 97)); // 5000 − 3000 ≥ 1000: disk
    await s.store.put(`${prefix}run-00001`, Buffer.alloc(4500, 98)); // 5000 − 4500 < 1000: fallback
    // A stream goes by the bound its writer gives, and without one where nothing can fill the disk.
    const stream = async function* () {
      yield Buffer.from("x".repeat(100));
    };
    await s.store.put(`${prefix}run-00002`, stream(), { sizeAtMost: 100 });
    await s.store.put(`${prefix}run-00003`, stream());
    free = 0;
    await s.store.put(`${prefix}run-00004`, "late");
    expect(await filesUnder(join(s.root, "disk"))).toEqual([`${prefix}run-00000`, `${prefix}run-00002`]);
    expect(await filesUnder(join(s.root, "s3"))).toEqual([`${prefix}run-00001`, `${prefix}run-00003`, `${prefix}run-00004`]);
    // Reads and the listing find each run where it went.
    expect((await collect(await s.store.get(`${prefix}run-00001`))).equals(Buffer.alloc(4500, 98))).toBe(true);
    expect((await s.store.head(`${prefix}run-00000`))?.size).toBe(3000);
    const listed: string[] = [];
    for await (const o of s.store.list(prefix)) listed.push(o.key);
    expect(listed).toEqual([0, 1, 2, 3, 4].map((i) => `${prefix}run-0000${i}`));
    // Removed, every run is gone from where it was, and the attempt's folder on disk with its last run.
    for (const key of listed) await s.store.delete(key);
    expect(await filesUnder(join(s.root, "s3"))).toEqual([]);
    expect(await readdir(join(s.root, "disk", "_work", "j", "spill", "00000"))).toEqual([]);
  });

  it("counts the disk writes under way: two runs put at once do not both take the same room", async () => {
    // The free space a disk reports does not yet show writes in progress: here it never changes.
    const s = await spillStore(() => 5000);
    cleanups.push(s.cleanup);
    const prefix = "_work/j/spill/00000/";
    await Promise.all([
      s.store.put(`${prefix}a/run-00000`, Buffer.alloc(3000, 1)),
      s.store.put(`${prefix}b/run-00000`, Buffer.alloc(3000, 2)),
    ]);
    expect(await filesUnder(join(s.root, "disk"))).toHaveLength(1);
    expect(await filesUnder(join(s.root, "s3"))).toHaveLength(1);
    // Once both are written, the room is the disk's to tell again.
    await s.store.put(`${prefix}c/run-00000`, Buffer.alloc(3000, 3));
    expect(await filesUnder(join(s.root, "disk"))).toHaveLength(2);
  });

  it("a worker's spill folder is its own, and the folders of workers that are gone are removed first", async () => {
    const root = await tempRoot();
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    // A worker killed without a chance to clean up: its process is gone, its runs are not.
    const gone = spawnSync("true").pid!;
    await mkdir(join(root, `cloudmill-spill-${gone}-abc123`, "_work", "j"), { recursive: true });
    await writeFile(join(root, `cloudmill-spill-${gone}-abc123`, "_work", "j", "run-00000"), "x");
    // Another worker still running (a child process stands in for it), and a folder that is not a worker's.
    const running = spawn("sleep", ["60"]);
    cleanups.push(async () => void running.kill());
    await mkdir(join(root, `cloudmill-spill-${running.pid}-def456`));
    await mkdir(join(root, "cloudmill-spill-notes"));
    const mine = await spillFolder(root);
    expect(mine.startsWith(join(root, `cloudmill-spill-${process.pid}-`))).toBe(true);
    expect((await readdir(root)).sort()).toEqual(
      [`cloudmill-spill-${running.pid}-def456`, "cloudmill-spill-notes", mine.slice(root.length + 1)].sort(),
    );
  });
});
