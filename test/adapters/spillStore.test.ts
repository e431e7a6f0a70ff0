/**
 * The worker's spill store: runs go to the container's disk while it keeps its reserve free, and
 * to the fallback (S3; here a second folder) past it. Either way it is a BlobStore like any other,
 * and reads, listings and deletes find each run where it went.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { SpillStore, spillFolder } from "../../lib/aws/SpillStore.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { collect, describeBlobStoreContract } from "../contract/blobStoreContract.js";

const ROOT = join(import.meta.dirname, "../..");

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

  it("a run the disk cannot hold after all (it filled since its free space was read) goes to the fallback; a stream fails, leaving nothing", async () => {
    const root = await tempRoot();
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    const disk = join(root, "disk");
    await mkdir(disk);
    // A real full disk: a 64 KiB tmpfs in a mount namespace of its own, no privilege needed.
    // The free space is read as 1 MiB, as a reading taken before another task filled the disk.
    const script = join(root, "spill.mjs");
    const dist = (m: string) => JSON.stringify(pathToFileURL(join(ROOT, "dist/lib", m)).href);
    await writeFile(
      script,
      `import { readdirSync } from "node:fs";
import { SpillStore } from ${dist("aws/SpillStore.js")};
import { FsBlobStore } from ${dist("fs/FsBlobStore.js")};
const [disk, s3] = process.argv.slice(2);
const store = new SpillStore({ dir: disk, fallback: new FsBlobStore(s3), reserveBytes: 0, freeBytes: async () => 1 << 20 });
const out = {};
await store.put("_work/j/spill/00000/small", Buffer.alloc(1000, 1));
await store.put("_work/j/spill/00000/big", Buffer.alloc(200 * 1024, 2));
const chunks = [];
for await (const c of await store.get("_work/j/spill/00000/big")) chunks.push(c);
out.readBack = Buffer.concat(chunks).equals(Buffer.alloc(200 * 1024, 2));
out.listed = [];
for await (const o of store.list("_work/j/")) out.listed.push(o.key);
const stream = async function* () { for (let i = 0; i < 100; i++) yield Buffer.alloc(4096, 3); };
out.stream = await store.put("_work/j/spill/00001/streamed", stream(), { sizeAtMost: 100 * 4096 }).then(() => "written", (e) => e.message);
out.onDisk = readdirSync(disk, { recursive: true }).sort();
process.stdout.write(JSON.stringify(out));
`,
    );
    const s3 = join(root, "s3");
    const run = spawnSync(
      "unshare",
      ["-rm", "sh", "-c", 'mount -t tmpfs -o size=64k none "$1" && exec node "$2" "$1" "$3"', "sh", disk, script, s3],
      {
        encoding: "utf8",
      },
    );
    expect(run.stderr).toBe("");
    const out = JSON.parse(run.stdout) as { readBack: boolean; listed: string[]; stream: string; onDisk: string[] };
    expect(out.readBack).toBe(true);
    expect(out.listed).toEqual(["_work/j/spill/00000/big", "_work/j/spill/00000/small"]);
    expect(await filesUnder(s3)).toEqual(["_work/j/spill/00000/big"]);
    // A stream is spent once it has been written from: it cannot be sent elsewhere, so its put fails.
    expect(out.stream).toMatch(/ENOSPC/);
    expect(out.stream).toContain("streamed");
    // Nothing half-written stays on the disk: only the run that fitted, and its folders.
    expect(out.onDisk.filter((f) => !/^_work(\/j(\/spill(\/0000[01])?)?)?$/.test(f))).toEqual(["_work/j/spill/00000/small"]);
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
