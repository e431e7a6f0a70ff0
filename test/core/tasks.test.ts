/**
 * Tasks (defineTask): one call per item, under per-item limits, on item threads. Run through
 * the local engine over JSONL items; expected values come from Python over the same file.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { CloudmillError } from "../../lib/core/errors.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { silentLogger, type Logger } from "../../lib/core/log.js";
import { TaskWorker } from "../../lib/aws/TaskWorker.js";
import { errorsPrefix, failureKey } from "../../lib/core/keys.js";
import { exists } from "../../lib/core/pipeline/blobJson.js";
import { localPipeline, startJobOver } from "../helpers/jobs.js";
import { defineTask, type TaskResult } from "../../lib/core/ops/defineTask.js";
import { opsRegistry } from "../../lib/core/ops/opModules.js";
import type { OpRegistry } from "../../lib/core/ops/registry.js";
import {
  batchSizeFor,
  itemsChunkSize,
  itemsJsonl,
  LARGE_ITEM_RESULT_BYTES,
  RESULT_REF,
  resolveStoredResult,
} from "../../lib/core/pipeline/items.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { ThreadItemRunner } from "../../lib/sandbox/ThreadItemRunner.js";
import { BIN, requireBuild, ROOT } from "../helpers/devCloud.js";
import { runProcess } from "../helpers/processes.js";
import { TASKS_MODULE } from "../helpers/tasks.js";

let dir: string;
let module: string;
let registry: OpRegistry;

beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-tasks-"));
  module = path.join(dir, "tasks.mjs");
  await writeFile(module, TASKS_MODULE);
  registry = await opsRegistry([module]);
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const writeItems = async (name: string, items: readonly unknown[]): Promise<string> => {
  const file = path.join(dir, name);
  await writeFile(file, items.map((i) => JSON.stringify(i)).join("\n") + "\n");
  return file;
};

/** Folders of cloudmill's under the system's temporary folder, or one folder down, that hold a file of this name. */
const scratchesHolding = (name: string): string[] => {
  const within = (d: string): string[] => {
    try {
      return readdirSync(d).map((s) => path.join(d, s));
    } catch {
      return [];
    }
  };
  const tops = within(os.tmpdir()).filter((d) => path.basename(d).startsWith("cloudmill-"));
  return [...tops, ...tops.flatMap(within)].filter((d) => existsSync(path.join(d, name)));
};

const runItems = async (
  file: string,
  params: Record<string, string> = {},
  extra: { workDir?: string; chunkSize?: number; outDir?: string } = {},
) =>
  runLocal({
    spec: parseJobSpec({ op: "affine", inputs: [file], params, chunkSize: extra.chunkSize ?? 512 }),
    registry,
    opsModules: [module],
    workers: 2,
    log: silentLogger,
    ...(extra.workDir ? { workDir: extra.workDir } : {}),
    outDir: extra.outDir ?? path.join(dir, "out", path.basename(file)),
  });

/** Python's answer over the items file: outputs of the items that do not fail, and the indexes that do. */
const pythonReference = (file: string): { results: number[]; failing: number[] } =>
  JSON.parse(
    execFileSync(
      "python3",
      [
        "-c",
        "import json,sys\n" +
          "items=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]\n" +
          "bad=[i for i,x in enumerate(items) if set(x)-{'n'}]\n" +
          "print(json.dumps({'results':[3*x['n']+1 for x in items if not set(x)-{'n'}],'failing':bad}))",
        file,
      ],
      { encoding: "utf8" },
    ),
  ) as { results: number[]; failing: number[] };

describe("a task over items", () => {
  it("runs once per item across many chunks: outputs in item order, thrown errors listed by index", async () => {
    const items = Array.from({ length: 3000 }, (_, n) => (n % 797 === 13 ? { n, fail: true } : { n }));
    const file = await writeItems("plain.jsonl", items);
    const { result, status } = await runItems(file);
    const r = result as TaskResult<number>;
    const ref = pythonReference(file);
    expect(status.chunks).toBeGreaterThan(20);
    expect(r.items).toBe(3000);
    expect(r.results).toEqual(ref.results);
    expect(r.errors.map((e) => e.index)).toEqual(ref.failing);
    expect(r.errors).toHaveLength(4);
    for (const e of r.errors) expect(e).toEqual({ index: e.index, code: "ITEM_FAILED", message: `refused item ${e.index}` });
  });

  it("an item that never returns, sync or async, fails alone with ITEM_TIMEOUT naming its index", async () => {
    const items = [{ n: 0 }, { n: 1, hang: "sync" }, { n: 2 }, { n: 3, hang: "async" }, { n: 4 }];
    const file = await writeItems("hang.jsonl", items);
    const r = (await runItems(file, {}, { chunkSize: 10_000 })).result as TaskResult<number>;
    expect(r.results).toEqual(pythonReference(file).results);
    expect(r.errors).toEqual([
      { index: 1, code: "ITEM_TIMEOUT", message: "did not finish within 3 s (timeoutSeconds)" },
      { index: 3, code: "ITEM_TIMEOUT", message: "did not finish within 3 s (timeoutSeconds)" },
    ]);
  });

  it("an item whose output JSON would change (a Map, NaN, a Set, an array hole) fails, saying what of it is not JSON", async () => {
    const items = [{ n: 0 }, { n: 1, give: "map" }, { n: 2, give: "nan" }, { n: 3, give: "set" }, { n: 4, give: "hole" }, { n: 5 }];
    const file = await writeItems("not-json.jsonl", items);
    const r = (await runItems(file, {}, { chunkSize: 10_000 })).result as TaskResult<number>;
    expect(r.results).toEqual(pythonReference(file).results);
    const failed = (index: number, why: string) => ({ index, code: "ITEM_FAILED", message: `output is not JSON: ${why}` });
    expect(r.errors).toEqual([
      failed(1, "the output is a Map, not a plain object or array"),
      failed(2, "the output.x is NaN"),
      failed(3, "the output.seen is a Set, not a plain object or array"),
      failed(4, "the output[1] is undefined"),
    ]);
  });

  it("an item that throws what is not an Error says what it threw", async () => {
    const items = [{ n: 0, throws: "undefined" }, { n: 1, throws: "object" }, { n: 2 }, { n: 3, throws: "bare" }];
    const file = await writeItems("throws.jsonl", items);
    const r = (await runItems(file, {}, { chunkSize: 10_000 })).result as TaskResult<number>;
    expect(r.results).toEqual([7]);
    expect(r.errors).toEqual([
      { index: 0, code: "ITEM_FAILED", message: "it threw undefined" },
      { index: 1, code: "ITEM_FAILED", message: 'it threw {"code":42,"why":"a lab\'s own error object"}' },
      // An object with no prototype has no text of its own: its JSON says what it was.
      { index: 3, code: "ITEM_FAILED", message: 'it threw {"why":"no prototype"}' },
    ]);
  });

  it("a promise an item leaves rejected is its own: the next item keeps its result", async () => {
    const file = await writeItems("orphan.jsonl", [{ n: 0, orphan: true }, { n: 1, sleep: 300 }, { n: 2 }]);
    const r = (await runItems(file, {}, { chunkSize: 10_000 })).result as TaskResult<number>;
    expect(r.results).toEqual([1, 4, 7]);
    expect(r.errors).toEqual([]);
  });

  it("an item past its time has its signal aborted first: what it started with it ends, and its scratch goes", async () => {
    // A duration no other process here runs: its sleep is found by its arguments.
    const seconds = "37.2468";
    const file = await writeItems("child.jsonl", [{ n: 0, child: seconds }, { n: 1 }]);
    const sleeping = () =>
      execFileSync("ps", ["-eo", "args"], { encoding: "utf8" })
        .split("\n")
        .filter((l) => l.trim() === `sleep ${seconds}`);
    const running = runItems(file, {}, { chunkSize: 10_000 });
    // While the item runs, its child and its scratch mark are where the checks below look.
    await vi.waitFor(
      () => {
        expect(sleeping()).toHaveLength(1);
        expect(scratchesHolding(seconds)).toHaveLength(1);
      },
      { timeout: 10_000, interval: 50 },
    );
    const r = (await running).result as TaskResult<number>;
    expect(r.errors).toEqual([{ index: 0, code: "ITEM_TIMEOUT", message: "did not finish within 3 s (timeoutSeconds)" }]);
    expect(r.results).toEqual([4]);
    expect(sleeping()).toEqual([]);
    expect(scratchesHolding(seconds)).toEqual([]);
  });

  it("an item ended in a loop, by its own process.exit or out of heap leaves no scratch directory behind", async () => {
    const marks = ["sync", "exit", "hog"].map((how) => `mark-${how}-${process.pid}-${Date.now()}`);
    const items = [
      { n: 0, mark: marks[0], hang: "sync" },
      { n: 1, mark: marks[1], exit: true },
      { n: 2, mark: marks[2], hog: true },
      { n: 3 },
    ];
    const file = await writeItems("scratch-ends.jsonl", items);
    const running = runItems(file, {}, { chunkSize: 10_000 });
    // The looping item's mark is seen while it loops: the search below looks where scratch is.
    await vi.waitFor(() => expect(scratchesHolding(marks[0]!)).toHaveLength(1), { timeout: 10_000, interval: 50 });
    const r = (await running).result as TaskResult<number>;
    expect(r.errors.map((e) => [e.index, e.code])).toEqual([
      [0, "ITEM_TIMEOUT"],
      [1, "ITEM_FAILED"],
      [2, "ITEM_OUT_OF_MEMORY"],
    ]);
    expect(r.results).toEqual([10]);
    // Each item made its mark (the thread ends after), and none is left.
    await vi.waitFor(() => expect(marks.flatMap(scratchesHolding)).toEqual([]), { timeout: 10_000 });
  });

  it("a module that takes longer to load than an item may run spends none of the items' time", async () => {
    const slow = path.join(dir, "slow-tasks.mjs");
    await writeFile(
      slow,
      `import { defineTask } from ${JSON.stringify(pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineTask.js")).href)};
await new Promise((resolve) => setTimeout(resolve, 1500));
export const settle = defineTask({
  name: "settle",
  timeoutSeconds: 1,
  run: async (item) => { await new Promise((resolve) => setTimeout(resolve, 100)); return item.n * 2; },
});
`,
    );
    const slowRegistry = await opsRegistry([slow]);
    const file = await writeItems("slow.jsonl", [{ n: 1 }, { n: 2 }, { n: 3 }]);
    const { result } = await runLocal({
      spec: parseJobSpec({ op: "settle", inputs: [file], chunkSize: 10_000 }),
      registry: slowRegistry,
      opsModules: [slow],
      workers: 1,
      log: silentLogger,
    });
    expect(result).toMatchObject({ items: 3, results: [2, 4, 6], errors: [] });
  });

  it("an item that allocates past its memory, or exits, fails alone; the process and later items go on", async () => {
    const items = [{ n: 0 }, { n: 1, hog: true }, { n: 2 }, { n: 3, exit: true }, { n: 4 }];
    const file = await writeItems("hog.jsonl", items);
    const r = (await runItems(file, {}, { chunkSize: 10_000 })).result as TaskResult<number>;
    expect(r.results).toEqual(pythonReference(file).results);
    expect(r.errors).toEqual([
      { index: 1, code: "ITEM_OUT_OF_MEMORY", message: "used more than its 64 MiB of heap (memoryMiB)" },
      { index: 3, code: "ITEM_FAILED", message: "its thread exited (code 3)" },
    ]);
  });

  it("onItemError=fail ends the job with the item's error, naming the task, the input and the byte offset", async () => {
    const items = [{ n: 0 }, { n: 1 }, { n: 2, fail: true }, { n: 3 }];
    const file = await writeItems("fail.jsonl", items);
    const offset = readFileSync(file, "utf8").indexOf('{"n":2');
    const err = await runItems(file, { onItemError: "fail" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CloudmillError);
    expect((err as CloudmillError).code).toBe("ITEM_FAILED");
    expect((err as CloudmillError).describe()).toContain(`(byte ${offset})`);
    expect((err as CloudmillError).message).toContain("task affine: item failed: refused item 2");
  });

  it("ctx.put stores an item's objects, listed in the result; an output over 256 KiB is stored alone and read back", async () => {
    const big = LARGE_ITEM_RESULT_BYTES + 10;
    const items = [{ n: 0, put: "out/zero.txt" }, { n: 1, big }, { n: 2 }, { n: 3, put: "../escape" }];
    const file = await writeItems("put.jsonl", items);
    const workDir = await mkdtemp(path.join(dir, "work-"));
    const outDir = path.join(dir, "put-out");
    const { result, jobId } = await runItems(file, {}, { workDir, chunkSize: 10_000, outDir });
    const r = result as TaskResult;
    const key = `_jobs/${jobId}/files/out/zero.txt`;
    // Kept when the run's work directory goes: under the out dir, as a keyed job's parts are.
    expect(r.files).toEqual([path.join(outDir, "files/out/zero.txt")]);
    expect(readFileSync(r.files[0]!, "utf8")).toBe("item 0");
    expect(r.results).toEqual([{ stored: key }, "x".repeat(big), 7]);
    expect(existsSync(path.join(workDir, `_jobs/${jobId}/results`))).toBe(true);
    expect(r.errors).toEqual([{ index: 3, code: "ITEM_FAILED", message: expect.stringContaining('ctx.put name "../escape"') }]);
  });
});

describe("ctx.put names a folder of files cannot hold", () => {
  it("fail their own item, not the job: x then x/y, and a segment past 255 characters", async () => {
    // One chunk: the items run in order on one thread, so x is stored before x/y is asked for.
    const items = [{ n: 0, put: "x" }, { n: 1, put: "x/y" }, { n: 2, put: "a".repeat(300) }, { n: 3 }];
    const file = await writeItems("clash.jsonl", items);
    const { result } = await runItems(file, {}, { chunkSize: 1 << 20 });
    const r = result as TaskResult;
    expect(r.items).toBe(4);
    expect(r.errors).toEqual([
      { index: 1, code: "ITEM_FAILED", message: expect.stringContaining("a file and a folder of one name") },
      { index: 2, code: "ITEM_FAILED", message: expect.stringContaining("has a segment over 255 characters") },
    ]);
    expect(r.results).toHaveLength(2);
  });
});

describe("`cloudmill run` with a task", () => {
  it("shows a lab's ctx.log from its task threads as the run's own log: errors always, everything with -v", async () => {
    const file = await writeItems("say.jsonl", [
      { n: 1, say: "one" },
      { n: 2, say: "two" },
    ]);
    const run = (...extra: string[]) =>
      runProcess(process.execPath, [BIN, "run", file, "--op", "affine", "--ops", module, "--workers", "2", "--no-progress", ...extra], {
        cwd: dir,
        env: process.env,
      });
    const quiet = await run();
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stderr).toMatch(/^cloudmill: error: shouted one /m);
    expect(quiet.stderr).toMatch(/^cloudmill: error: shouted two /m);
    expect(quiet.stderr).not.toContain("said");
    const verbose = await run("-v");
    const said = verbose.stderr.split("\n").filter((l) => l.includes('"message":"said '));
    expect(said.map((l) => (JSON.parse(l) as { level: string }).level)).toEqual(["INFO", "INFO"]);
  });

  it("refuses --backup-after, which a task's chunks do not take (its items have their own time limit)", async () => {
    const file = await writeItems("backup.jsonl", [{ n: 1 }]);
    const r = await runProcess(process.execPath, [BIN, "run", file, "--op", "affine", "--ops", module, "--backup-after", "5"], {
      cwd: dir,
      env: process.env,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--backup-after: not for a task");
  });

  it("runs the items file in --batch-size items per chunk, exact against Python", async () => {
    const items = Array.from({ length: 1000 }, (_, n) => (n === 500 ? { n, fail: true } : { n }));
    const file = await writeItems("cli.jsonl", items);
    const r = await runProcess(
      process.execPath,
      [BIN, "run", file, "--op", "affine", "--ops", module, "--batch-size", "40", "--no-progress", "--verbose"],
      { cwd: dir, env: process.env },
    );
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as TaskResult<number>;
    const ref = pythonReference(file);
    expect(result.results).toEqual(ref.results);
    expect(result.errors.map((e) => e.index)).toEqual(ref.failing);
    const planned = /"chunks":(\d+)/.exec(r.stderr);
    expect(Number(planned?.[1])).toBeLessThanOrEqual(1000 / 40);
    expect(Number(planned?.[1])).toBeGreaterThan(20);
  });

  it("keeps the objects items store under --out-dir, and gives a batch no time limit but its items'", async () => {
    // Three items of 1.2 s each in one batch, under a 2 s chunk limit: each item is within its own 3 s.
    const file = await writeItems("kept.jsonl", [
      { n: 0, put: "out/zero.txt" },
      { n: 1, sleep: 1200 },
      { n: 2, sleep: 1200 },
      { n: 3, sleep: 1200 },
    ]);
    const outDir = path.join(dir, "kept-out");
    // The lab's own file in the out dir stays: only objects of the same name are replaced.
    await mkdir(path.join(outDir, "files"), { recursive: true });
    await writeFile(path.join(outDir, "files", "mine.txt"), "the lab's\n");
    const args = [BIN, "run", file, "--op", "affine", "--ops", module, "--batch-size", "4", "-w", "1", "--task-timeout", "2"];
    const r = await runProcess(process.execPath, [...args, "--out-dir", outDir, "--no-progress"], { cwd: dir, env: process.env });
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as TaskResult;
    expect(result.errors).toEqual([]);
    expect(result.results.slice(1)).toEqual([4, 7, 10]);
    expect(result.files).toEqual([path.join(outDir, "files", "out", "zero.txt")]);
    expect(readFileSync(result.files[0]!, "utf8")).toBe("item 0");
    expect(readFileSync(path.join(outDir, "files", "mine.txt"), "utf8")).toBe("the lab's\n");

    // A task that stores nothing needs no out dir: it runs where none could be made.
    const plain = await writeItems("plain-cwd.jsonl", [{ n: 1 }, { n: 2 }]);
    const where = await runProcess(process.execPath, [BIN, "run", plain, "--op", "affine", "--ops", module, "--no-progress"], {
      cwd: "/proc",
      env: process.env,
    });
    expect(where.code, where.stderr).toBe(0);
    expect((JSON.parse(where.stdout) as TaskResult).results).toEqual([4, 7]);
  });
});

describe("an item thread", () => {
  it("that never finishes loading the task's modules fails its item, past the load's own limit", async () => {
    const hanging = path.join(dir, "hanging-load.mjs");
    await writeFile(
      hanging,
      `import { isMainThread } from "node:worker_threads";
import { defineTask } from ${JSON.stringify(pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineTask.js")).href)};
if (!isMainThread) await new Promise(() => {});
export const stuck = defineTask({ name: "stuck", timeoutSeconds: 1, run: async () => 1 });
`,
    );
    const runner = new ThreadItemRunner({ opsModules: [hanging], moduleLoadMs: 2000 });
    try {
      const outcomes = await runner.run({
        task: "stuck",
        params: {},
        limits: { timeoutMs: 1000, memoryMiB: 64 },
        items: [{ offset: 0, value: {} }],
        stopOnError: false,
        log: silentLogger,
        put: () => Promise.reject(new Error("no puts")),
      });
      expect(outcomes).toEqual([
        { ok: false, code: "ITEM_TIMEOUT", message: "its thread did not load the task's modules within 2 s", files: [] },
      ]);
    } finally {
      await runner.close();
    }
  });

  it("aborts ctx.signal when the worker starts to stop; an item that then ends still returns", async () => {
    const runner = new ThreadItemRunner({ opsModules: [module] });
    const drain = new AbortController();
    try {
      const outcomes = await runner.run({
        task: "affine",
        params: {},
        limits: { timeoutMs: 30_000, memoryMiB: 64 },
        items: [{ offset: 0, value: { n: 0, wait: true } }],
        stopOnError: false,
        drain: drain.signal,
        log: { ...silentLogger, info: (m: string) => m === "waiting" && drain.abort() },
        put: () => Promise.reject(new Error("no puts")),
      });
      expect(outcomes).toEqual([{ ok: true, value: { aborted: true }, files: [] }]);
    } finally {
      await runner.close();
    }
  });
});

describe("an item runner under stress", () => {
  let runnerModule: string;
  beforeAll(async () => {
    runnerModule = path.join(dir, "runner-tasks.mjs");
    await writeFile(
      runnerModule,
      `import { defineTask } from ${JSON.stringify(pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineTask.js")).href)};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const slow = defineTask({
  name: "slow",
  run: async (item, ctx) => {
    if (item.giveUpOnStop) {
      ctx.log.info("waiting");
      while (!ctx.signal.aborted) await sleep(10);
      throw new Error("gave up on stop");
    }
    await sleep(item.ms);
    return { from: item.id };
  },
});
export const size = defineTask({ name: "size", memoryMiB: 32, run: (item) => item.s.length });
export const store = defineTask({ name: "store", run: async (item, ctx) => ctx.put("x.txt", "x") });
// Items that leave code running when they return, and an item that the leftovers would catch.
export const leaver = defineTask({
  name: "leaver",
  run: async (item) => {
    if (item.leaveThrow) {
      globalThis.leftBehind = true;
      setInterval(() => { if (globalThis.bystander) throw new Error("thrown by code item " + item.n + " left"); }, 5);
    }
    // The loop's timer is due before the item returns, so it runs before the thread reads its next message.
    if (item.leaveSpin) { setTimeout(() => { for (;;) {} }, 0); const due = Date.now() + 5; while (Date.now() < due); }
    if (item.bystander && globalThis.leftBehind) { globalThis.bystander = true; await sleep(60_000); }
    if (item.own) { setTimeout(() => { throw new Error("its own crash"); }, 0); await sleep(60_000); }
    return { n: item.n };
  },
});
`,
    );
  });
  const base = { params: {}, stopOnError: false, log: silentLogger, put: () => Promise.resolve("k") };

  it("a batch released at a drain ends its thread: the next chunk's items are its own", async () => {
    const runner = new ThreadItemRunner({ opsModules: [runnerModule] });
    const drain = new AbortController();
    try {
      const released = runner.run({
        ...base,
        task: "slow",
        limits: { timeoutMs: 30_000, memoryMiB: 64 },
        drain: drain.signal,
        log: { ...silentLogger, info: (m: string) => m === "waiting" && drain.abort() },
        items: [
          { offset: 0, value: { giveUpOnStop: true } },
          { offset: 1, value: { id: "A1", ms: 200 } },
          { offset: 2, value: { id: "A2", ms: 200 } },
        ],
      });
      await expect(released).rejects.toMatchObject({ code: "CANCELLED" });
      const next = await runner.run({
        ...base,
        task: "slow",
        limits: { timeoutMs: 30_000, memoryMiB: 64 },
        items: [
          { offset: 100, value: { id: "B0", ms: 400 } },
          { offset: 101, value: { id: "B1", ms: 400 } },
        ],
      });
      expect(next.map((o) => (o.ok ? o.value : o.code))).toEqual([{ from: "B0" }, { from: "B1" }]);
    } finally {
      await runner.close();
    }
  });

  it("a batch larger than an item's heap runs: items go to the thread in slices", async () => {
    const runner = new ThreadItemRunner({ opsModules: [runnerModule] });
    try {
      const items = Array.from({ length: 100 }, (_, i) => ({ offset: i, value: { s: "ab".repeat(250_000) } }));
      const outcomes = await runner.run({ ...base, task: "size", limits: { timeoutMs: 60_000, memoryMiB: 32 }, items });
      expect(outcomes.filter((o) => !o.ok)).toEqual([]);
      expect(outcomes.map((o) => (o.ok ? o.value : null))).toEqual(items.map(() => 500_000));
    } finally {
      await runner.close();
    }
  });

  it("code an item leaves running fails no other item: a crash under the next runs it again, on a fresh thread", async () => {
    const runner = new ThreadItemRunner({ opsModules: [runnerModule] });
    try {
      const outcomes = await runner.run({
        ...base,
        task: "leaver",
        limits: { timeoutMs: 30_000, memoryMiB: 64 },
        items: [
          { offset: 0, value: { n: 0, leaveThrow: true } },
          { offset: 1, value: { n: 1, bystander: true } },
          { offset: 2, value: { n: 2 } },
          { offset: 3, value: { n: 3, own: true } },
          { offset: 4, value: { n: 4 } },
        ],
      });
      expect(outcomes.map((o) => (o.ok ? o.value : `${o.code}: ${o.message}`))).toEqual([
        { n: 0 },
        { n: 1 },
        { n: 2 },
        // A crash of its own, on a fresh thread too, fails the item.
        "ITEM_FAILED: its thread crashed: its own crash",
        { n: 4 },
      ]);
    } finally {
      await runner.close();
    }
  });

  it("a thread held between items by code an item left (at a slice's end) is ended: the next items run", async () => {
    const runner = new ThreadItemRunner({ opsModules: [runnerModule] });
    try {
      // Items go to a thread 64 at a time: the 64th leaves a loop, which holds the thread before the next slice.
      const items = Array.from({ length: 70 }, (_, n) => ({ offset: n, value: { n, ...(n === 63 ? { leaveSpin: true } : {}) } }));
      const outcomes = await runner.run({ ...base, task: "leaver", limits: { timeoutMs: 2000, memoryMiB: 64 }, items });
      expect(outcomes.map((o) => (o.ok ? o.value : `${o.code}: ${o.message}`))).toEqual(items.map((i) => ({ n: i.value.n })));
    } finally {
      await runner.close();
    }
  });

  it("an item whose ctx.put S3 failed fails the chunk (tried again), not the item", async () => {
    const runner = new ThreadItemRunner({ opsModules: [runnerModule] });
    try {
      const throttled = runner.run({
        ...base,
        task: "store",
        limits: { timeoutMs: 30_000, memoryMiB: 64 },
        items: [{ offset: 0, value: {} }],
        put: () => Promise.reject(new CloudmillError("ENVIRONMENT", "PutObject failed: SlowDown")),
      });
      await expect(throttled).rejects.toMatchObject({ code: "ENVIRONMENT", message: expect.stringContaining("SlowDown") });
    } finally {
      await runner.close();
    }
  });
});

describe("items as task messages", () => {
  it("⌈items ÷ batchSize⌉ chunks at most, for any item sizes", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 3000 }),
        fc.integer({ min: 1, max: 500 }),
        (sizes, batch) => {
          const bytes = sizes.reduce((a, b) => a + b, 0);
          const chunkSize = itemsChunkSize(bytes, sizes.length, batch);
          expect(Math.ceil(bytes / chunkSize)).toBeLessThanOrEqual(Math.ceil(sizes.length / batch));
        },
      ),
    );
  });

  it("defaults to one item per message up to 1,000 items, then to at most 1,000 messages", () => {
    expect(batchSizeFor(10)).toBe(1);
    expect(batchSizeFor(1000)).toBe(1);
    expect(batchSizeFor(100_000)).toBe(100);
    expect(batchSizeFor(100_001)).toBe(101);
    expect(batchSizeFor(5, 3)).toBe(3);
    expect(() => batchSizeFor(5, 0)).toThrow("batchSize: expected a whole number ≥ 1, got 0");
  });

  it("refuses an item JSON cannot hold, naming its index", () => {
    expect(itemsJsonl([{ a: 1 }, "b"]).body).toBe('{"a":1}\n"b"\n');
    expect(() => itemsJsonl([1, undefined])).toThrow("item 1: undefined is not a JSON value");
    expect(() => itemsJsonl([1, 2, 3n])).toThrow(/^item 2: not JSON/);
  });

  it("refuses an item JSON would carry as another value, where the task would get what JSON.parse makes of it", () => {
    const cases: [unknown, RegExp][] = [
      [Number.NaN, /^item 1 is NaN, which JSON cannot carry unchanged/],
      [new Map([[1, 2]]), /^item 1 is a Map, not a plain object/],
      [[1, undefined], /^item 1\[1\] is undefined/],
      [{ when: new Date(0) }, /^item 1\.when is a Date/],
      [new Set([1]), /^item 1 is a Set/],
    ];
    for (const [item, message] of cases) {
      // What JSON.parse gives back differs from the item: the reason a task must not see it.
      expect(JSON.parse(JSON.stringify(item) ?? "null")).not.toStrictEqual(item);
      expect(() => itemsJsonl(["ok", item])).toThrow(message);
    }
  });
});

describe("a stored result read back", () => {
  it("keeps every field of a result shaped like a task's (a lab op may answer so), resolving only the job's own stored outputs", async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), "cloudmill-resolve-"));
    try {
      const store = new FsBlobStore(root);
      await store.put("_jobs/j1/results/000001.json", JSON.stringify({ big: "output" }));
      const stored = {
        items: 2,
        results: ["small", { [RESULT_REF]: "_jobs/j1/results/000001.json" }],
        errors: [{ index: 3, code: "ITEM_FAILED", message: "no", line: 7 }],
        files: [],
        elapsed: 42,
        note: "kept?",
      };
      const resolved = (await resolveStoredResult(store, stored, "j1")) as typeof stored;
      expect(resolved).toMatchObject({ elapsed: 42, note: "kept?", errors: [{ line: 7 }], results: ["small", { big: "output" }] });
      expect(Object.keys(resolved).sort()).toEqual(Object.keys(stored).sort());
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe("defineTask", () => {
  it("refuses a bad name or limit with one line", () => {
    expect(() => defineTask({ name: "Bad Name", run: () => 1 })).toThrow(/^defineTask: name "Bad Name": must be a lowercase name/);
    expect(() => defineTask({ name: "t", timeoutSeconds: 0, run: () => 1 })).toThrow(/^defineTask t: timeoutSeconds: /);
    expect(() => defineTask({ name: "t", memoryMiB: 1.5, run: () => 1 })).toThrow(/^defineTask t: memoryMiB: /);
  });

  it("refuses an unknown onItemError or param of its own", () => {
    const t = defineTask({ name: "t", run: () => 1 });
    expect(() => t.parseParams({ onItemError: "ignore" })).toThrow(/^t: param onItemError: /);
    expect(() => t.parseParams({ k: "1" })).toThrow('t: unknown param "k" (it takes none)');
    expect(t.parseParams({})).toEqual({ onItemError: "collect", own: {} });
  });
});

describe("a fleet worker told to stop while idle", () => {
  it("lets the polls in flight end and starts none after, whatever its slots (more than one receive's 10)", async () => {
    const { queue, deps } = localPipeline(path.join(dir, "idle-stop"));
    const receives: number[] = [];
    let stoppedAt = Number.POSITIVE_INFINITY;
    const counted = Object.assign(Object.create(queue) as typeof queue, {
      receive: (options: Parameters<typeof queue.receive>[0]) => {
        receives.push(Date.now());
        return queue.receive(options);
      },
    });
    const worker = new TaskWorker({ queue: counted, deps, concurrency: 11, visibilitySeconds: 30, heartbeatSeconds: 10, waitSeconds: 2 });
    worker.start();
    // Every slot waits: 11 slots are two receives of at most 10.
    await vi.waitFor(() => expect(receives.length).toBeGreaterThanOrEqual(1), { timeout: 10_000 });
    stoppedAt = Date.now();
    await worker.stop(60_000);
    expect(receives.filter((t) => t >= stoppedAt)).toEqual([]);
  });
});

describe("a fleet worker stopping while a task's item runs", () => {
  it("an item that gives up at the stop releases its chunk: no attempt is used, and the job goes on elsewhere", async () => {
    const giveUp = path.join(dir, "give-up.mjs");
    await writeFile(
      giveUp,
      `import { defineTask } from ${JSON.stringify(pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineTask.js")).href)};
export const giveUp = defineTask({
  name: "give-up",
  run: async (item, ctx) => {
    if (!item.wait) return 3 * item.n + 1;
    ctx.log.info("waiting");
    while (!ctx.signal.aborted) await new Promise((r) => setTimeout(r, 10));
    throw new Error("gave up on stop");
  },
});
`,
    );
    const runner = new ThreadItemRunner({ opsModules: [giveUp] });
    let worker: TaskWorker | undefined;
    let stopped: Promise<void> | undefined;
    // The item's first line says it runs: the worker is told to stop then (ECS's SIGTERM), with time to spare.
    const log: Logger = { ...silentLogger, info: (m) => void (m === "waiting" && (stopped ??= worker!.stop(60_000))), child: () => log };
    const { inputs, output, queue, deps } = localPipeline(path.join(dir, "give-up"), {
      registry: await opsRegistry([giveUp]),
      items: runner,
      log,
    });
    try {
      // One attempt allowed, three by the queue: were the release counted as a failed attempt, it would fail the job.
      await startJobOver(deps, inputs, Buffer.from('{"n":1,"wait":true}\n'), "give-up-1", { op: "give-up", maxAttempts: 1 }, 1 << 20);
      worker = new TaskWorker({
        queue,
        deps,
        concurrency: 1,
        visibilitySeconds: 30,
        heartbeatSeconds: 10,
        waitSeconds: 1,
        queueAttempts: 3,
      });
      const failed = new Promise<boolean>((resolve) =>
        worker!.on("task_failed", (_t: unknown, _e: unknown, retried: boolean) => resolve(retried)),
      );
      worker.start();
      expect(await failed).toBe(true);
      await stopped;
      // Handed back at once, for another worker; nothing recorded against the chunk or the job.
      expect(await queue.depth()).toMatchObject({ visible: 1, inFlight: 0 });
      const errors: string[] = [];
      for await (const o of output.list(errorsPrefix("give-up-1"))) errors.push(o.key);
      expect(errors).toEqual([]);
      expect(await exists(output, failureKey("give-up-1"))).toBe(false);
    } finally {
      await runner.close();
    }
  });
});
