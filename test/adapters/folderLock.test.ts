/**
 * lockFolder (lib/fs/folderLock.ts): one process at a time holds a folder; a lock whose process
 * is gone is taken over, a live one's or another PID namespace's is not, and a release removes
 * only this process's own lock.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCK_NAME, lockFolder, lockText } from "../../lib/fs/folderLock.js";
import { namespace } from "../../lib/fs/processFolders.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-lock-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const fresh = () => mkdtemp(path.join(dir, "f-"));

describe("lockFolder", () => {
  it("is held once: a second take (this process's own too) names the holder; after release it can be taken", async () => {
    const folder = await fresh();
    const first = await lockFolder(folder);
    if (!("release" in first)) throw new Error("not taken");
    expect(await readFile(path.join(folder, LOCK_NAME), "utf8")).toBe(lockText({ pid: process.pid, namespace }));
    expect(await lockFolder(folder)).toEqual({ heldBy: { pid: process.pid, namespace } });
    await first.release();
    expect(await readdir(folder)).toEqual([]);
    const again = await lockFolder(folder);
    expect("release" in again).toBe(true);
  });

  it("takes over the lock of a process that is gone, and leaves nothing else behind", async () => {
    const folder = await fresh();
    const gone = spawnSync("true").pid!;
    await writeFile(path.join(folder, LOCK_NAME), lockText({ pid: gone, namespace }));
    const taken = await lockFolder(folder);
    if (!("release" in taken)) throw new Error(`not taken: ${JSON.stringify(taken)}`);
    expect(await readdir(folder)).toEqual([LOCK_NAME]);
    await taken.release();
    expect(await readdir(folder)).toEqual([]);
  });

  it("leaves a live process's lock, another namespace's, and one that names no process", async () => {
    const live = spawn("sleep", ["60"]);
    try {
      const cases = [
        { text: lockText({ pid: live.pid!, namespace }), heldBy: { pid: live.pid!, namespace } },
        {
          text: lockText({ pid: spawnSync("true").pid!, namespace: "00000000" }),
          heldBy: expect.objectContaining({ namespace: "00000000" }),
        },
        { text: "", heldBy: undefined },
      ];
      for (const c of cases) {
        const folder = await fresh();
        await writeFile(path.join(folder, LOCK_NAME), c.text);
        expect(await lockFolder(folder)).toEqual({ heldBy: c.heldBy });
        expect(await readFile(path.join(folder, LOCK_NAME), "utf8")).toBe(c.text);
      }
    } finally {
      live.kill();
    }
  });

  it("a release leaves a lock that is no longer this process's", async () => {
    const folder = await fresh();
    const taken = await lockFolder(folder);
    if (!("release" in taken)) throw new Error("not taken");
    const other = lockText({ pid: spawnSync("true").pid!, namespace });
    await writeFile(path.join(folder, LOCK_NAME), other);
    await taken.release();
    expect(existsSync(path.join(folder, LOCK_NAME))).toBe(true);
  });
});
