/**
 * Threads end by exiting when asked, not by `terminate()`: a terminate that lands inside a call
 * into Node's fs aborts the whole process on Node 20. Exit code 0 is a thread that obeyed; 1 is
 * one terminated (V8's code for a terminated isolate).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { endThread } from "../../lib/sandbox/threadExit.js";
import { requireBuild, ROOT } from "../helpers/devCloud.js";

let dir: string;
beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-thread-exit-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const exitCode = (worker: Worker): Promise<number> => new Promise((resolve) => worker.once("exit", resolve));

/** Resolves once the thread has said something: its modules are loaded and it is working. */
const heard = (worker: Worker): Promise<void> => new Promise((resolve) => worker.once("message", () => resolve()));

describe("ending a thread", () => {
  it.each([
    ["the local engine's task thread", "dist/lib/local/taskThread.js", () => ({ outputRoot: dir, opsModules: [] })],
    ["the worker's mapper thread", "dist/lib/sandbox/mapperThread.js", () => ({ opsModules: [] })],
    ["the item thread", "dist/lib/sandbox/itemThread.js", () => ({ opsModules: [] })],
  ])("%s exits by itself when asked", async (_name, entry, data) => {
    const worker = new Worker(path.join(ROOT, entry), { workerData: data() });
    const code = exitCode(worker);
    await endThread(worker, 30_000);
    expect(await code).toBe(0);
  });

  it("a thread in the middle of fs/promises calls exits between them, and the process lives on", async () => {
    const worker = new Worker(
      `const { stat } = require("node:fs/promises");
const { parentPort } = require("node:worker_threads");
parentPort.on("message", (m) => { if (m.kind === "exit") process.exit(0); });
(async () => { for (let i = 0; ; i++) { await stat(${JSON.stringify(dir)}); if (i === 100) parentPort.postMessage("busy"); } })();`,
      { eval: true },
    );
    const code = exitCode(worker);
    await heard(worker);
    await endThread(worker, 30_000);
    expect(await code).toBe(0);
  });

  it("a thread that never yields is terminated once its grace is past; one already gone ends at once", async () => {
    const worker = new Worker(`require("node:worker_threads").parentPort.postMessage("spinning"); for (;;) {}`, { eval: true });
    const code = exitCode(worker);
    await heard(worker);
    await endThread(worker, 200);
    expect(await code).toBe(1);
    await endThread(worker, 60_000);
  });
});
