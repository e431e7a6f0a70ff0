/**
 * An op that allocates without bound cannot take its worker down: each chunk's mapper thread
 * has a heap limit (the job's taskMemoryMiB, else the worker's share of its container), and a
 * chunk past it fails its attempt with OUT_OF_MEMORY naming the chunk; after the last attempt
 * the job fails with that code. The worker processes live on. A worker whose container nears
 * its memory limit takes no new chunk until the memory falls.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { once } from "node:events";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { containerMemory, mapperHeap } from "../../lib/aws/containerMemory.js";
import { TaskWorker } from "../../lib/aws/TaskWorker.js";
import type { CloudmillError } from "../../lib/core/errors.js";
import type { InputObject } from "../../lib/core/job/manifest.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { silentLogger } from "../../lib/core/log.js";
import { opsRegistry } from "../../lib/core/ops/opModules.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { readJson } from "../../lib/core/pipeline/blobJson.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import type { SplitDeps } from "../../lib/core/pipeline/deps.js";
import { startJob, taskJobOf } from "../../lib/core/pipeline/split.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { expectMatchesReference, requireBuild, ROOT, startTestCloud, textOf, type TestCloud } from "../helpers/devCloud.js";
import { refCount } from "../helpers/reference.js";
import { z } from "zod";

let dir: string;
let cloud: TestCloud;
let module: string;

beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-oom-"));
  module = path.join(dir, "hungry-ops.mjs");
  const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
  await writeFile(
    module,
    `import { defineOp } from ${JSON.stringify(defineOp)};
// On a line that says so, keeps every array it makes: the heap grows until something ends it.
export const hungry = defineOp({
  name: "hungry",
  format: "lines",
  map: (line) => {
    if (line === "hog") { const kept = []; for (;;) kept.push(new Array(100_000).fill(kept.length)); }
    return 1;
  },
  combine: (a, b) => a + b,
});
// Merging two chunks' counts (a merge task's work) keeps every array it makes.
export const hungryMerge = defineOp({
  name: "hungry-merge",
  format: "lines",
  orderFree: true,
  map: () => 1,
  combine: (a, b) => {
    if (a >= 8 && b >= 8) { const kept = []; for (;;) kept.push(new Array(100_000).fill(kept.length)); }
    return a + b;
  },
});
// A reduce task's reduce keeps every array it makes for one key.
export const hungryReduce = defineOp({
  name: "hungry-reduce",
  format: "lines",
  pairs: (line, emit) => emit(line.slice(-1), 1),
  reduce: (key, values) => {
    if (key === "3") { const kept = []; for (;;) kept.push(new Array(100_000).fill(kept.length)); }
    return values.length;
  },
});
`,
  );
  cloud = await startTestCloud({ chunkSize: 64, maxAttempts: 2, opsModules: [module] });
}, 90_000);

afterAll(async () => {
  await cloud?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("a chunk past its heap limit", () => {
  it("fails its job with OUT_OF_MEMORY naming the chunk; the workers live on and take the next job", async () => {
    const pids = cloud.cloud.workerPids();
    const lines = Array.from({ length: 40 }, (_, i) => (i === 25 ? "hog" : `line ${i}`));
    await cloud.put("_inputs/hungry.txt", `${lines.join("\n")}\n`);
    const spec = { op: "hungry", inputs: [`s3://${cloud.input}/_inputs/hungry.txt`], taskMemoryMiB: 64 };
    await cloud.put("_jobs/hungry-1.json", JSON.stringify(spec));
    const status = await cloud.waitForEnd("_jobs/hungry-1/status.json", 120_000);
    expect(status.state).toBe("failed");
    expect(status.error).toMatchObject({
      code: "OUT_OF_MEMORY",
      message: expect.stringContaining("failed after 2 attempts: the op used more than 64 MiB of heap (taskMemoryMiB)"),
    });
    expect(status.error?.message).toMatch(/hungry\.txt \(bytes \d+-\d+\): chunk \d+ failed/);
    await cloud.waitForIdle();
    expect(cloud.cloud.workerPids()).toEqual(pids);

    const bytes = textOf(5_000, 4);
    await cloud.put("_inputs/after-hog.txt", bytes);
    await cloud.put(
      "_jobs/after-hog.json",
      JSON.stringify({ op: "count", inputs: [`s3://${cloud.input}/_inputs/after-hog.txt`], chunkSize: 4096 }),
    );
    expect((await cloud.waitForEnd("_jobs/after-hog/status.json")).state).toBe("succeeded");
    expectMatchesReference("count", {}, bytes, await cloud.getJson(cloud.output, "_jobs/after-hog/result.json"));
  }, 180_000);

  it("a lab op's merge task past its heap limit fails its job with OUT_OF_MEMORY; the workers live on", async () => {
    const pids = cloud.cloud.workerPids();
    // Lines of 8 bytes, 8 to a 64-byte chunk: each merge task of two chunks merges 8 and 8.
    const lines = Array.from({ length: 48 }, (_, i) => `l${String(i).padStart(6, "0")}`);
    await cloud.put("_inputs/hungry-merge.txt", `${lines.join("\n")}\n`);
    const spec = { op: "hungry-merge", inputs: [`s3://${cloud.input}/_inputs/hungry-merge.txt`], taskMemoryMiB: 64, fanIn: 2 };
    await cloud.put("_jobs/hungry-merge-1.json", JSON.stringify(spec));
    const status = await cloud.waitForEnd("_jobs/hungry-merge-1/status.json", 120_000);
    expect(status.state).toBe("failed");
    expect(status.error).toMatchObject({
      code: "OUT_OF_MEMORY",
      message: expect.stringMatching(
        /^merge task [0-2] of level 1 failed after 2 attempts: the op used more than 64 MiB of heap \(taskMemoryMiB\)$/,
      ),
    });
    await cloud.waitForIdle();
    expect(cloud.cloud.workerPids()).toEqual(pids);
  }, 180_000);

  it("a lab op's reduce task past its heap limit fails its job with OUT_OF_MEMORY naming the partition; the workers live on", async () => {
    const pids = cloud.cloud.workerPids();
    const lines = Array.from({ length: 48 }, (_, i) => `l${String(i).padStart(6, "0")}`);
    await cloud.put("_inputs/hungry-reduce.txt", `${lines.join("\n")}\n`);
    const spec = { op: "hungry-reduce", inputs: [`s3://${cloud.input}/_inputs/hungry-reduce.txt`], taskMemoryMiB: 64, partitions: 1 };
    await cloud.put("_jobs/hungry-reduce-1.json", JSON.stringify(spec));
    const status = await cloud.waitForEnd("_jobs/hungry-reduce-1/status.json", 120_000);
    expect(status.state).toBe("failed");
    expect(status.error).toMatchObject({
      code: "OUT_OF_MEMORY",
      message: expect.stringMatching(/^partition 0: .*the op used more than 64 MiB of heap \(taskMemoryMiB\)$/),
    });
    await cloud.waitForIdle();
    expect(cloud.cloud.workerPids()).toEqual(pids);
  }, 180_000);

  it("on this machine, --task-memory ends the task's thread with OUT_OF_MEMORY; the next run is exact", async () => {
    const registry = await opsRegistry([module]);
    const file = path.join(dir, "hungry.txt");
    await writeFile(file, "a\nb\nhog\nc\n");
    const err = await runLocal({
      spec: parseJobSpec({ op: "hungry", inputs: [file], maxAttempts: 2, taskMemoryMiB: 64 }),
      registry,
      opsModules: [module],
      workers: 2,
    }).then(
      () => undefined,
      (e: unknown) => e as CloudmillError,
    );
    expect(err?.code).toBe("OUT_OF_MEMORY");
    expect(err?.describe()).toBe(
      `${file} (bytes 0-10): chunk 0 failed after 2 attempts: the op used more than 64 MiB of heap (taskMemoryMiB)`,
    );
    const bytes = textOf(3_000, 6);
    const ok = path.join(dir, "ok.txt");
    await writeFile(ok, bytes);
    const run = await runLocal({ spec: parseJobSpec({ op: "count", inputs: [ok], taskMemoryMiB: 64 }), registry, workers: 2 });
    expect(run.result).toEqual(refCount(bytes));
  }, 60_000);
});

describe("the container's memory", () => {
  /** A cgroup v2 directory as the kernel shows one: limit, use and reclaimable cache. */
  const cgroup = async (name: string, max: string, current: number, inactiveFile = 0): Promise<string> => {
    const root = path.join(dir, name);
    await mkdir(root, { recursive: true });
    await writeFile(path.join(root, "memory.max"), `${max}\n`);
    await writeFile(path.join(root, "memory.current"), `${current}\n`);
    await writeFile(path.join(root, "memory.stat"), `anon ${current - inactiveFile}\ninactive_file ${inactiveFile}\nactive_file 0\n`);
    return root;
  };

  it("is read from cgroup v2 or v1, less reclaimable cache; no limit is no watch", async () => {
    expect(await containerMemory(await cgroup("v2", "1000000", 700_000, 100_000))()).toEqual({ used: 600_000, limit: 1_000_000 });
    expect(await containerMemory(await cgroup("unlimited", "max", 700_000))()).toBeUndefined();
    const v1 = path.join(dir, "v1");
    await mkdir(path.join(v1, "memory"), { recursive: true });
    await writeFile(path.join(v1, "memory", "memory.limit_in_bytes"), "2000000\n");
    await writeFile(path.join(v1, "memory", "memory.usage_in_bytes"), "900000\n");
    await writeFile(path.join(v1, "memory", "memory.stat"), "cache 50000\ntotal_inactive_file 40000\n");
    expect(await containerMemory(v1)()).toEqual({ used: 860_000, limit: 2_000_000 });
    await writeFile(path.join(v1, "memory", "memory.limit_in_bytes"), "9223372036854771712\n");
    expect(await containerMemory(v1)()).toBeUndefined();
    expect(await containerMemory(path.join(dir, "none"))()).toBeUndefined();
  });

  it("sizes each mapper thread's heap as a share of the container", () => {
    // 4 GiB and 2 chunks at once: 384 MiB kept for the process, the rest shared; a job may ask for less, not more.
    expect(mapperHeap(4096 * 2 ** 20, 2)).toEqual({ memoryMiB: (4096 - 384) / 2, maxMemoryMiB: (4096 - 384) / 2 });
    expect(mapperHeap(512 * 2 ** 20, 4)).toEqual({ memoryMiB: 128, maxMemoryMiB: 128 });
  });

  it("near its limit, the worker takes no chunk until the memory falls, then maps it exactly", async () => {
    const root = await cgroup("pressure", String(1_000_000), 950_000);
    const inputs = new FsBlobStore(path.join(dir, "pressure-in"));
    const output = new FsBlobStore(path.join(dir, "pressure-out"));
    const bytes = textOf(4_000, 7);
    await inputs.put("data.txt", bytes);
    const info = (await inputs.head("data.txt"))!;
    const queue = new MemoryTaskQueue({ visibilitySeconds: 30 });
    const registry = new OpRegistry();
    const deps: SplitDeps = { output, queue, inputStore: () => inputs, registry, log: silentLogger };
    const object: InputObject = { bucket: "in", key: "data.txt", size: info.size, etag: info.etag, name: "data.txt" };
    const { manifest } = await startJob(deps, {
      jobId: "pressure-1",
      job: taskJobOf(parseJobSpec({ op: "count", inputs: ["data.txt"] }), registry),
      inputs: [object],
      chunkSize: 1024,
      output: { result: "out/result.json", status: "out/status.json" },
      trigger: "test",
      deadlineSeconds: 600,
    });
    const worker = new TaskWorker({
      queue,
      deps,
      concurrency: 2,
      visibilitySeconds: 30,
      heartbeatSeconds: 10,
      waitSeconds: 1,
      memory: containerMemory(root),
    });
    const full = once(worker, "memory_full");
    worker.start();
    try {
      const [use] = (await full) as [{ used: number; limit: number }];
      expect(use).toEqual({ used: 950_000, limit: 1_000_000 });
      // Every loop checks memory before it receives: nothing has been taken.
      expect(await queue.depth()).toEqual({ visible: manifest.chunks, inFlight: 0 });

      await writeFile(path.join(root, "memory.current"), "300000\n");
      let done = 0;
      await new Promise<void>((resolve) =>
        worker.on("task_done", () => {
          if (++done === manifest.chunks) resolve();
        }),
      );
    } finally {
      await worker.stop(5_000);
    }
    await reduceJob(deps, "pressure-1");
    expect(await readJson(output, "out/result.json", z.object({ records: z.number() }))).toEqual(refCount(bytes));
  }, 30_000);
});
