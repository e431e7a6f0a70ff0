/**
 * lockFolder (lib/fs/folderLock.ts): one process at a time holds a folder; a lock whose process
 * is gone is taken over, a live one's or another PID namespace's is not, and a release removes
 * only this process's own lock. Processes racing for one stale lock are real processes, running
 * the built module (dist/).
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCK_NAME, lockFolder, lockText } from "../../lib/fs/folderLock.js";
import { namespace } from "../../lib/fs/processFolders.js";
import { runProcess } from "../helpers/processes.js";

const ROOT = path.resolve(import.meta.dirname, "../..");

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

  it("breaks the takeover guards of processes killed during a takeover, guards of guards too, and leaves nothing behind", async () => {
    const folder = await fresh();
    const lock = path.join(folder, LOCK_NAME);
    await writeFile(lock, lockText({ pid: spawnSync("true").pid!, namespace }));
    await writeFile(`${lock}.takeover`, lockText({ pid: spawnSync("true").pid!, namespace }));
    await writeFile(`${lock}.takeover.takeover`, lockText({ pid: spawnSync("true").pid!, namespace }));
    const taken = await lockFolder(folder);
    if (!("release" in taken)) throw new Error(`not taken: ${JSON.stringify(taken)}`);
    expect(await readdir(folder)).toEqual([LOCK_NAME]);
    await taken.release();
    expect(await readdir(folder)).toEqual([]);
  });

  it("breaks a takeover guard too old for any takeover when whose it is cannot be checked: another namespace's, or naming no process", async () => {
    for (const text of [lockText({ pid: 1, namespace: "0ther-ns" }), ""]) {
      const folder = await fresh();
      const lock = path.join(folder, LOCK_NAME);
      await writeFile(lock, lockText({ pid: spawnSync("true").pid!, namespace }));
      await writeFile(`${lock}.takeover`, text);
      const longAgo = new Date(Date.now() - 60_000);
      await utimes(`${lock}.takeover`, longAgo, longAgo);
      const taken = await lockFolder(folder);
      if (!("release" in taken)) throw new Error(`not taken: ${JSON.stringify(taken)}`);
      await taken.release();
      expect(await readdir(folder)).toEqual([]);
    }
  });

  it("never breaks the takeover guard of a live process of this namespace, however old (one paused with Ctrl-Z): the lock is reported held", async () => {
    const live = spawn("sleep", ["60"]);
    try {
      const folder = await fresh();
      const lock = path.join(folder, LOCK_NAME);
      const dead = { pid: spawnSync("true").pid!, namespace };
      await writeFile(lock, lockText(dead));
      const guard = `${JSON.stringify({ pid: live.pid!, namespace, token: "0123456789abcdef" })}\n`;
      await writeFile(`${lock}.takeover`, guard);
      const longAgo = new Date(Date.now() - 60_000);
      await utimes(`${lock}.takeover`, longAgo, longAgo);
      expect(await lockFolder(folder)).toEqual({ heldBy: dead });
      expect(await readFile(`${lock}.takeover`, "utf8")).toBe(guard);
      expect(await readFile(lock, "utf8")).toBe(lockText(dead));
      expect((await readdir(folder)).sort()).toEqual([LOCK_NAME, `${LOCK_NAME}.takeover`]);
    } finally {
      live.kill();
    }
  }, 10_000);

  it("removes the guard of a process killed between removing a dead lock and taking it, when it takes the lock", async () => {
    const folder = await fresh();
    const lock = path.join(folder, LOCK_NAME);
    await writeFile(`${lock}.takeover`, lockText({ pid: spawnSync("true").pid!, namespace }));
    await writeFile(`${lock}.takeover.takeover`, lockText({ pid: spawnSync("true").pid!, namespace }));
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

  it("a lock that cannot be read (a folder in its place) names no process: reported at once, not tried for ever", async () => {
    const folder = await fresh();
    await mkdir(path.join(folder, LOCK_NAME));
    expect(await lockFolder(folder)).toEqual({ heldBy: undefined });
  }, 5_000);

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

/**
 * A racer: for each folder in turn, waits at a barrier until every racer is there (a file per
 * racer in `barrier`), then takes the folder's lock; once taken, logs `acquire`, holds it
 * `holdMs`, logs `release` and releases it. Logged lines are appended (O_APPEND): their order is
 * the order of the events, and a holder's `release` line is written before its lock goes.
 */
const RACER = `
import { appendFileSync, readdirSync, writeFileSync } from "node:fs";
const [module, log, barrier, racers, me, holdMs, ...folders] = process.argv.slice(1);
const { lockFolder } = await import(module);
const nap = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
for (const [round, folder] of folders.entries()) {
  writeFileSync(barrier + "/" + round + "-" + me, "");
  while (readdirSync(barrier).filter((f) => f.startsWith(round + "-")).length < Number(racers)) nap(1);
  const got = await lockFolder(folder);
  if (!("release" in got)) {
    appendFileSync(log, round + " refused " + me + (got.heldBy ? "" : " none") + "\\n");
    continue;
  }
  appendFileSync(log, round + " acquire " + me + "\\n");
  await new Promise((resolve) => setTimeout(resolve, Number(holdMs)));
  appendFileSync(log, round + " release " + me + "\\n");
  await got.release();
}
`;

/** Races `racers` processes (RACER) for each of `folders` in turn, each holding it `holdMs`; resolves with the log's lines. */
const race = async (base: string, folders: readonly string[], racers: number, holdMs: number): Promise<string[]> => {
  const barrier = path.join(base, "barrier");
  await mkdir(barrier);
  const log = path.join(base, "log");
  await writeFile(log, "");
  const module = pathToFileURL(path.join(ROOT, "dist/lib/fs/folderLock.js")).href;
  const ran = await Promise.all(
    Array.from({ length: racers }, (_, me) =>
      runProcess(
        process.execPath,
        ["--input-type=module", "-e", RACER, module, log, barrier, String(racers), String(me), String(holdMs), ...folders],
        { cwd: ROOT, env: process.env },
      ),
    ),
  );
  for (const r of ran) expect(r, r.stderr).toMatchObject({ code: 0, stderr: "" });
  return (await readFile(log, "utf8")).split("\n").filter((l) => l !== "");
};

describe("racing for a stale lock", () => {
  beforeAll(() => {
    if (!existsSync(path.join(ROOT, "dist/lib/fs/folderLock.js"))) throw new Error("racers run dist/: build first (npm run build)");
  });

  it("many processes taking over one dead process's lock at once: never two holders at a time", async () => {
    const rounds = 25;
    const racers = 6;
    const base = await fresh();
    const folders: string[] = [];
    for (let r = 0; r < rounds; r++) {
      const folder = path.join(base, `round-${r}`);
      await mkdir(folder);
      await writeFile(path.join(folder, LOCK_NAME), lockText({ pid: spawnSync("true").pid!, namespace }));
      folders.push(folder);
    }
    const lines = await race(base, folders, racers, 150);
    const overlapping: string[] = [];
    for (let r = 0; r < rounds; r++) {
      const events = lines.filter((l) => l.startsWith(`${r} `)).map((l) => l.slice(`${r} `.length));
      // Every racer took the lock once or was refused it.
      expect(events.filter((e) => !e.startsWith("release")).sort(), `round ${r}`).toHaveLength(racers);
      // Holders one at a time: each acquire is followed by its own release before any other acquire.
      const holds = events.filter((e) => !e.startsWith("refused"));
      expect(holds.length).toBeGreaterThan(0);
      const paired = holds.every((e, i) =>
        i % 2 === 0 ? e.startsWith("acquire ") && holds[i + 1] === e.replace("acquire", "release") : true,
      );
      if (!paired) overlapping.push(`round ${r}: ${events.join(", ")}`);
      // Nothing left: no lock, no guard, no file moved aside.
      expect(await readdir(folders[r]!), `round ${r}`).toEqual([]);
    }
    expect(overlapping).toEqual([]);
    expect(lines.filter((l) => l.endsWith(" none"))).toEqual([]);
  }, 120_000);

  it("many processes taking one free folder at once: a loser always reads the holder, never a lock naming no one", async () => {
    const rounds = 60;
    const racers = 12;
    const base = await fresh();
    const folders: string[] = [];
    for (let r = 0; r < rounds; r++) {
      const folder = path.join(base, `round-${r}`);
      await mkdir(folder);
      folders.push(folder);
    }
    const lines = await race(base, folders, racers, 1);
    expect(lines.filter((l) => l.includes(" acquire ")).length).toBeGreaterThanOrEqual(rounds);
    expect(lines.filter((l) => l.endsWith(" none"))).toEqual([]);
    for (const folder of folders) expect(await readdir(folder)).toEqual([]);
  }, 120_000);
});
