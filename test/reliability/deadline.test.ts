/**
 * Every job has an overall deadline (spec `deadlineSeconds`, else the deployment's); past it
 * the job is marked failed with DEADLINE, even when it makes no progress at all: the splitter
 * puts the deadline in every task, and the worker that meets a task of an overdue job fails
 * the job (the reducer does the same when a part arrives late; the local engine keeps a timer).
 */
import { spawn } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";
import { ENV } from "../../lib/core/constants.js";
import { failureKey, partsPrefix } from "../../lib/core/keys.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { CloudmillError } from "../../lib/core/errors.js";
import { JobStatus, TaskMessage, type InputObject } from "../../lib/core/job/manifest.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { silentLogger } from "../../lib/core/log.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { loadOpsModule } from "../../lib/core/ops/opModules.js";
import { compiledFile } from "../../lib/local/paths.js";
import type { SplitDeps } from "../../lib/core/pipeline/deps.js";
import { readJson } from "../../lib/core/pipeline/blobJson.js";
import { startJob, taskJobOf } from "../../lib/core/pipeline/split.js";
import type { TaskOutcome } from "../../lib/core/pipeline/task.js";
import type { BlobStore } from "../../lib/core/ports.js";
import { CODEC_SNIFF_BYTES } from "../../lib/core/records/codecs.js";
import { TaskWorker } from "../../lib/aws/TaskWorker.js";
import { getObject, listKeys, putObject, startCloud, statusAt, waitFor, type ChaosCloud } from "./helpers.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-deadline-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

/** A job of `chunks` chunks over a local file, started by the splitter role with this clock. */
const setUp = async (name: string, now: () => number, deadlineSeconds: number, input?: (store: FsBlobStore) => BlobStore) => {
  const inputs = new FsBlobStore(path.join(dir, name, "in"));
  const output = new FsBlobStore(path.join(dir, name, "out"));
  await inputs.put("data.txt", "line\n".repeat(2000));
  const info = (await inputs.head("data.txt"))!;
  const queue = new MemoryTaskQueue({ visibilitySeconds: 30 });
  const registry = new OpRegistry();
  const store = input ? input(inputs) : inputs;
  const deps: SplitDeps = { output, queue, inputStore: () => store, registry, log: silentLogger, now };
  const object: InputObject = { bucket: "in", key: "data.txt", size: info.size, etag: info.etag, name: "data.txt" };
  const job = taskJobOf(parseJobSpec({ op: "count", inputs: ["data.txt"] }), registry);
  const { manifest } = await startJob(deps, {
    jobId: `${name}-1`,
    job,
    inputs: [object],
    chunkSize: 1024,
    output: { result: "out/result.json", status: "out/status.json" },
    trigger: "test",
    deadlineSeconds,
  });
  return { deps, queue, output, manifest };
};

/** Runs an in-process worker until the queue is empty; returns what it did with each task. */
const work = async (deps: SplitDeps, queue: MemoryTaskQueue): Promise<{ failed: CloudmillError[]; done: TaskOutcome["kind"][] }> => {
  const failed: CloudmillError[] = [];
  const done: TaskOutcome["kind"][] = [];
  const worker = new TaskWorker({ queue, deps, concurrency: 1, visibilitySeconds: 30, heartbeatSeconds: 10, waitSeconds: 1 });
  worker.on("task_failed", (_t, err) => failed.push(err));
  worker.on("task_done", (_t, outcome) => done.push(outcome.kind));
  worker.start();
  try {
    await waitFor(
      "the queue to empty",
      async () => {
        const d = await queue.depth();
        return d.visible + d.inFlight === 0 ? true : undefined;
      },
      30_000,
      50,
    );
  } finally {
    await worker.stop(5_000);
    await queue.close();
  }
  return { failed, done };
};

describe("the worker", () => {
  it("carries the deadline in every task, and fails an overdue job with DEADLINE when it meets one of its tasks", async () => {
    let now = Date.UTC(2030, 0, 1);
    const { deps, queue, output, manifest } = await setUp("overdue", () => now, 60);
    const [first] = await queue.receive({ maxMessages: 1 });
    expect(TaskMessage.parse(JSON.parse(first!.body)).job.deadline).toBe(manifest.deadline);
    expect(manifest.deadline).toBe(now + 60_000);
    await queue.changeVisibility(first!.receiptHandle, 0);

    now += 61_000; // no worker came for a minute: no progress at all
    const { failed, done } = await work(deps, queue);

    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({
      code: "DEADLINE",
      message: `job did not finish before its deadline (${new Date(manifest.deadline).toISOString()})`,
    });
    // Every other task of the job is dropped as the job has ended; nothing was mapped.
    expect(done.length).toBe(manifest.chunks - 1);
    expect(new Set(done)).toEqual(new Set(["job-ended"]));
    expect(await listKeys2(output, partsPrefix(manifest.jobId))).toEqual([]);
    const status = await readJson(output, "out/status.json", JobStatus);
    expect(status).toMatchObject({ state: "failed", error: { code: "DEADLINE" } });
    expect(await output.head("out/result.json")).toBeUndefined();
    expect(await output.head(failureKey(manifest.jobId))).toBeDefined();
  });

  it("abandons a chunk still being read when the deadline passes, and fails the job", async () => {
    // Reads of the input's chunks never deliver a byte until they are aborted (the splitter's
    // look at its first bytes, for its codec, goes through).
    const stalled = (store: FsBlobStore): BlobStore => ({
      name: store.name,
      head: (k) => store.head(k),
      put: (k, b, o) => store.put(k, b, o),
      list: (p) => store.list(p),
      delete: (k) => store.delete(k),
      get: async (key, options) =>
        (options?.end ?? Number.POSITIVE_INFINITY) <= CODEC_SNIFF_BYTES
          ? store.get(key, options)
          : (async function* () {
              await new Promise((_, reject) =>
                options?.signal?.addEventListener("abort", () => reject(options.signal!.reason as Error), { once: true }),
              );
              yield new Uint8Array();
            })(),
    });
    const { deps, queue, output, manifest } = await setUp("stalled", Date.now, 2, stalled);
    const started = Date.now();
    const { failed } = await work(deps, queue);
    expect(failed[0]).toMatchObject({ code: "DEADLINE" });
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(await readJson(output, "out/status.json", JobStatus)).toMatchObject({ state: "failed", error: { code: "DEADLINE" } });
    expect(await listKeys2(output, partsPrefix(manifest.jobId))).toEqual([]);
  });
});

describe("through the emulated cloud", () => {
  let c: ChaosCloud;
  beforeAll(async () => {
    // No worker at first: the job can make no progress at all.
    c = await startCloud({ workers: 0, maxAttempts: 2, visibilitySeconds: 10 });
  }, 90_000);
  afterAll(async () => c?.stop(), 60_000);

  it("a job with no progress ends failed with DEADLINE once its deadline passes and a worker meets one of its tasks", async () => {
    const input = "_inputs/no progress.txt";
    await putObject(c, input, "x\n".repeat(5000));
    await putObject(
      c,
      "_jobs/no-progress-1.json",
      JSON.stringify({ op: "count", inputs: [`s3://${c.inputBucket}/${input}`], chunkSize: 1024, deadlineSeconds: 2 }),
    );
    const running = await waitFor("the job to start", () => statusAt(c, "_jobs/no-progress-1/status.json"), 60_000);
    expect(running).toMatchObject({ state: "running", done: 0, chunks: 10 });
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await statusAt(c, "_jobs/no-progress-1/status.json")).toMatchObject({ state: "running", done: 0 });

    // A worker process arrives (as ECS would start one) after the deadline.
    const worker = spawn(process.execPath, [compiledFile("worker/main.js")], {
      env: {
        ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CLOUDMILL_"))),
        [ENV.OUTPUT_BUCKET]: c.outputBucket,
        [ENV.TASK_QUEUE_URL]: c.cloud.taskQueueUrl,
        [ENV.PARTS_QUEUE_URL]: c.cloud.partsQueueUrl,
        [ENV.VISIBILITY_TIMEOUT_SECONDS]: "10",
        [ENV.WORKER_CONCURRENCY]: "2",
        AWS_ENDPOINT_URL: c.cloud.endpoint,
        AWS_REGION: "us-east-1",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: string[] = [];
    for (const stream of [worker.stdout!, worker.stderr!]) stream.on("data", (b: Buffer) => out.push(b.toString("utf8")));
    try {
      const status = await waitFor(
        "the job to fail",
        async () => {
          const s = await statusAt(c, "_jobs/no-progress-1/status.json");
          return s && s.state !== "running" ? s : undefined;
        },
        90_000,
        250,
      );
      expect(status).toMatchObject({ state: "failed", error: { code: "DEADLINE" } });
      expect(status.error!.message).toMatch(/^job did not finish before its deadline \(\d{4}-\d\d-\d\dT/);
      await waitFor("the task queue to drain", async () => ((await c.idle()) ? true : undefined), 60_000, 250);
      expect(await getObject(c, c.outputBucket, "_jobs/no-progress-1/result.json")).toBeUndefined();
      expect(await listKeys(c, c.outputBucket, `_work/no-progress-1/parts/`)).toEqual([]);
      expect(out.join("")).toContain("job past its deadline; job failed");
    } finally {
      worker.kill("SIGTERM");
      await new Promise((r) => worker.once("exit", r));
    }
  }, 150_000);
});

describe("the local engine", () => {
  it("fails a job still running at its deadline with DEADLINE", async () => {
    const opFile = path.join(dir, "slow.mjs");
    await writeFile(
      opFile,
      `import { defineOp } from ${JSON.stringify(pathToFileURL(compiledFile("lib/core/ops/defineOp.js")).href)};
const pause = new Int32Array(new SharedArrayBuffer(4));
export const slow = defineOp({ name: "slow", format: "lines", map() { Atomics.wait(pause, 0, 0, 200); return 1; }, combine: (a, b) => a + b });
`,
    );
    const input = path.join(dir, "slow.txt");
    await writeFile(input, "r\n".repeat(40));
    const registry = new OpRegistry();
    await loadOpsModule(opFile, registry);
    const started = Date.now();
    const err = await runLocal({
      spec: parseJobSpec({ op: "slow", inputs: [input], chunkSize: 8, deadlineSeconds: 1 }),
      registry,
      opsModules: [opFile],
      workers: 1,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CloudmillError);
    expect(err).toMatchObject({ code: "DEADLINE" });
    expect(Date.now() - started).toBeLessThan(30_000);
  }, 60_000);

  it("covers a keyed job's reduce stage: a reduce still running at the deadline fails the job, no part is published", async () => {
    const opFile = path.join(dir, "slow-reduce.mjs");
    await writeFile(
      opFile,
      `import { defineOp } from ${JSON.stringify(pathToFileURL(compiledFile("lib/core/ops/defineOp.js")).href)};
const pause = new Int32Array(new SharedArrayBuffer(4));
export const slowReduce = defineOp({
  name: "slow-reduce",
  format: "lines",
  pairs: (line, emit) => emit(line, 1),
  reduce(key, ones) { Atomics.wait(pause, 0, 0, 400); return { key, n: ones.length }; },
});
`,
    );
    // 40 keys at 0.4 s each in one partition: a 16 s reduce task, begun before a 3 s deadline.
    const input = path.join(dir, "keys.txt");
    await writeFile(input, Array.from({ length: 40 }, (_, i) => `key${i}\n`).join(""));
    const registry = new OpRegistry();
    await loadOpsModule(opFile, registry);
    const outDir = path.join(dir, "slow-reduce-out");
    const err = await runLocal({
      spec: parseJobSpec({ op: "slow-reduce", inputs: [input], partitions: 1, deadlineSeconds: 3 }),
      registry,
      opsModules: [opFile],
      workers: 1,
      outDir,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CloudmillError);
    expect(err).toMatchObject({ code: "DEADLINE" });
    // The one reduce task began before the deadline; the job still ends at it, with no part out.
    expect((await readdir(outDir).catch(() => [])).filter((f) => f.startsWith("part-"))).toEqual([]);
  }, 60_000);
});

const listKeys2 = async (store: BlobStore, prefix: string): Promise<string[]> => {
  const keys: string[] = [];
  for await (const info of store.list(prefix)) keys.push(info.key);
  return keys;
};
