/**
 * A lab's tasks on the emulated fleet: `mapItems` from the SDK and `submit --items` from the
 * CLI write the items as one JSONL object, many items per task message; worker processes run
 * them on item threads, so an item that hangs or exhausts its memory fails alone.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineTask, type TaskResult } from "../../lib/core/ops/defineTask.js";
import { Cloudmill } from "../../lib/sdk/index.js";
import { BIN, requireBuild, ROOT, startTestCloud, type TestCloud } from "../helpers/devCloud.js";
import { runProcess } from "../helpers/processes.js";
import { TASKS_MODULE } from "../helpers/tasks.js";

let dir: string;
let cloud: TestCloud;
let mill: Cloudmill;

beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-cloud-tasks-"));
  const module = path.join(dir, "tasks.mjs");
  await writeFile(module, TASKS_MODULE);
  cloud = await startTestCloud({ opsModules: [module] });
  mill = new Cloudmill({ endpoint: cloud.cloud.endpoint });
}, 90_000);

afterAll(async () => {
  mill?.close();
  await cloud?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

/** Python's answer: 3n + 1 for each item without a misbehaviour, and the indexes of those with one. */
const pythonReference = (items: readonly object[]): { results: number[]; failing: number[] } =>
  JSON.parse(
    execFileSync(
      "python3",
      [
        "-c",
        "import json,sys\n" +
          "items=json.load(sys.stdin)\n" +
          "print(json.dumps({'results':[3*x['n']+1 for x in items if set(x)=={'n'}],'failing':[i for i,x in enumerate(items) if set(x)!={'n'}]}))",
      ],
      { input: JSON.stringify(items), encoding: "utf8" },
    ),
  ) as { results: number[]; failing: number[] };

/** This process's environment without CLOUDMILL_* settings, so a child CLI sees only its flags. */
const cleanEnv = (): NodeJS.ProcessEnv => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CLOUDMILL_")));

describe("mapItems on the fleet", () => {
  it("maps 10,000 items in at most 100 messages: 9,997 results in order and the 3 failures by index", async () => {
    const failing = new Set([17, 4242, 9999]);
    const items = Array.from({ length: 10_000 }, (_, n) => (failing.has(n) ? { n, fail: true } : { n }));
    const future = mill.mapItems<number>("affine", items, { batchSize: 100 });
    const result = await future.result({ timeoutMs: 240_000 });
    const ref = pythonReference(items);
    expect(result.items).toBe(10_000);
    expect(result.results).toHaveLength(9_997);
    expect(result.results).toEqual(ref.results);
    expect(result.errors).toEqual(ref.failing.map((index) => ({ index, code: "ITEM_FAILED", message: `refused item ${index}` })));
    // One task message per chunk (docs/design.md): the job's chunks are its messages.
    const status = await future.status();
    expect(status.chunks).toBeGreaterThan(50);
    expect(status.chunks).toBeLessThanOrEqual(10_000 / 100);
  }, 300_000);

  it("with onItemError=fail, the first failed item fails the job, naming the task and the item", async () => {
    const future = mill.mapItems("affine", [{ n: 0 }, { n: 1, fail: true }, { n: 2 }], { onItemError: "fail" });
    await expect(future.result({ timeoutMs: 120_000 })).rejects.toMatchObject({
      code: "ITEM_FAILED",
      message: expect.stringContaining("task affine: item failed: refused item 1"),
    });
  }, 150_000);

  it("an unknown task, or a local task whose code is not the deployed one, fails before any item is uploaded", async () => {
    const before = await cloud.keys(cloud.input, "");
    const edited = defineTask({ name: "affine", timeoutSeconds: 3, memoryMiB: 64, run: (item: { n: number }) => 3 * item.n + 2 });
    await expect(mill.mapItems(edited, [{ n: 1 }]).result()).rejects.toMatchObject({
      code: "OP_MISMATCH",
      message: expect.stringMatching(/^op affine: your code is [0-9a-f]{16}, the deployed op is [0-9a-f]{16}; /),
    });
    const missing = defineTask({ name: "not-deployed", run: () => 1 });
    await expect(mill.mapItems(missing, [{ n: 1 }]).result()).rejects.toMatchObject({ code: "UNKNOWN_OP" });
    expect(await cloud.keys(cloud.input, "")).toEqual(before);
    // By name, the pipeline itself refuses it.
    await expect(mill.mapItems("no-such-task", [{ n: 1 }]).result({ timeoutMs: 120_000 })).rejects.toMatchObject({ code: "UNKNOWN_OP" });
  }, 150_000);
});

describe("`cloudmill submit --items` on the fleet", () => {
  it("an item that never returns and one that exhausts its memory fail alone; the workers live on", async () => {
    const pids = cloud.cloud.workerPids();
    const items = [{ n: 0 }, { n: 1, hang: "sync" }, { n: 2 }, { n: 3, hog: true }, { n: 4 }, { n: 5, hang: "async" }, { n: 6 }];
    const file = path.join(dir, "sweep.jsonl");
    await writeFile(file, `${items.map((i) => JSON.stringify(i)).join("\n")}\n`);
    const r = await runProcess(
      process.execPath,
      [
        BIN,
        "submit",
        "--items",
        file,
        "--op",
        "affine",
        "--batch-size",
        "2",
        "--endpoint",
        cloud.cloud.endpoint,
        "--wait",
        "--no-progress",
      ],
      { cwd: ROOT, env: cleanEnv() },
    );
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as TaskResult<number>;
    expect(result.results).toEqual(pythonReference(items).results);
    expect(result.errors).toEqual([
      { index: 1, code: "ITEM_TIMEOUT", message: "did not finish within 3 s (timeoutSeconds)" },
      { index: 3, code: "ITEM_OUT_OF_MEMORY", message: "used more than its 64 MiB of heap (memoryMiB)" },
      { index: 5, code: "ITEM_TIMEOUT", message: "did not finish within 3 s (timeoutSeconds)" },
    ]);
    expect(cloud.cloud.workerPids()).toEqual(pids);
    // And they take the next job.
    await expect(mill.mapItems<number>("affine", [{ n: 41 }]).result({ timeoutMs: 120_000 })).resolves.toMatchObject({ results: [124] });
  }, 240_000);

  it("refuses an items file with a line that is not JSON, naming the file and line, before submitting", async () => {
    const file = path.join(dir, "broken.jsonl");
    await writeFile(file, '{"n":1}\n\n{"n":2\n');
    const r = await runProcess(process.execPath, [BIN, "submit", "--items", file, "--op", "affine", "--endpoint", cloud.cloud.endpoint], {
      cwd: ROOT,
      env: cleanEnv(),
    });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:3: not JSON`));
  });
});
