/**
 * A job's own maxAttempts on the fleet: its task queue hands a task to the dead-letter queue
 * after the stack's attempts, so a job may ask for fewer (its worker then fails the job at its
 * own last attempt) but not for more (its spec is refused, naming the stack's limit).
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskWorker } from "../../lib/aws/TaskWorker.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { JobStatus, Manifest } from "../../lib/core/job/manifest.js";
import { jobSpecOutputKeys } from "../../lib/core/keys.js";
import { exists, readJson, readJsonIfExists } from "../../lib/core/pipeline/blobJson.js";
import { handleObjectCreated } from "../../lib/core/pipeline/trigger.js";
import { parseRetryRequest, retryRefusal } from "../../lib/core/pipeline/resume.js";
import type { BlobStore, TaskQueue } from "../../lib/core/ports.js";
import { errorsPrefix, manifestKey, partKey } from "../../lib/core/keys.js";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";
import { waitFor } from "../helpers/devCloud.js";
import { localPipeline, OUTPUT, startJobOver } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-attempts-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

/** The stack's attempts: its task queue's maxReceiveCount. */
const STACK_ATTEMPTS = 3;

describe("a job's own maxAttempts on the fleet", () => {
  it("fewer than the stack's: the task is tried that many times, and the job fails with its error", async () => {
    const deadLetters = new MemoryTaskQueue({ name: "dead-letters" });
    const queue = new MemoryTaskQueue({ visibilitySeconds: 30, deadLetter: { queue: deadLetters, maxReceiveCount: STACK_ATTEMPTS } });
    const { inputs, output, deps } = localPipeline(path.join(dir, "fewer"), { queue });
    const bytes = Buffer.from("a\nb\nc\n");
    await startJobOver(deps, inputs, bytes, "once-1", { op: "count", maxAttempts: 1 }, bytes.length);
    let reads = 0;
    // Every read of the input fails as S3 might (a retryable error, not the job's fault).
    const failing = Object.assign(Object.create(inputs) as BlobStore, {
      get: async () => {
        reads++;
        throw new CloudmillError(ErrorCode.ENVIRONMENT, "GetObject failed: 503 Slow Down");
      },
    });
    const worker = new TaskWorker({
      queue,
      deps: { ...deps, inputStore: () => failing },
      concurrency: 1,
      visibilitySeconds: 30,
      heartbeatSeconds: 10,
      waitSeconds: 1,
      queueAttempts: STACK_ATTEMPTS,
    });
    const failures: boolean[] = [];
    worker.on("task_failed", (_t, _e, willRetry: boolean) => void failures.push(willRetry));
    worker.start();
    try {
      await waitFor(
        "the job to fail, or a second attempt",
        async () => ((await readJsonIfExists(output, OUTPUT.status, JobStatus))?.state === "failed" || reads > 1 ? true : undefined),
        20_000,
        20,
      );
    } finally {
      await worker.stop(5_000);
    }
    expect(reads).toBe(1);
    expect(failures).toEqual([false]);
    const status = await readJson(output, OUTPUT.status, JobStatus);
    expect(status).toMatchObject({ state: "failed", error: { code: "CHUNK_FAILED" } });
    expect(status.error?.message).toContain("GetObject failed: 503 Slow Down");
    expect(await deadLetters.depth()).toMatchObject({ visible: 0 });
  });

  it("more than the stack's: the spec is refused, naming the stack's limit", async () => {
    const { inputs, output, deps } = localPipeline(path.join(dir, "more"));
    await inputs.put("data.txt", Buffer.from("a\n"));
    await inputs.put("_jobs/many-1.json", Buffer.from(JSON.stringify({ op: "count", inputs: ["s3://lab-in/data.txt"], maxAttempts: 5 })));
    const config = { defaultChunkSize: 1024, maxAttempts: STACK_ATTEMPTS, jobDeadlineSeconds: 600 };
    await handleObjectCreated(deps, config, { bucket: "lab-in", key: "_jobs/many-1.json" });
    const status = await readJson(output, jobSpecOutputKeys("many-1").status, JobStatus);
    expect(status).toMatchObject({ state: "failed", error: { code: "INVALID_SPEC" } });
    expect(status.error?.message).toMatch(/maxAttempts 5 is more than this stack's 3/);
  });

  it("a refused spec uploaded again with another mistake shows the new one, not the first", async () => {
    const { inputs, output, deps } = localPipeline(path.join(dir, "again"));
    await inputs.put("data.txt", Buffer.from("a\n"));
    const config = { defaultChunkSize: 1024, maxAttempts: STACK_ATTEMPTS, jobDeadlineSeconds: 600 };
    const statusOf = async () => (await readJson(output, jobSpecOutputKeys("again-1").status, JobStatus)).error?.message;
    await inputs.put("_jobs/again-1.json", Buffer.from(JSON.stringify({ op: "count", inputs: ["s3://lab-in/data.txt"], maxAttempts: 9 })));
    await handleObjectCreated(deps, config, { bucket: "lab-in", key: "_jobs/again-1.json" });
    expect(await statusOf()).toMatch(/maxAttempts 9 is more than this stack's 3/);
    const next = { op: "count", inputs: ["s3://lab-in/data.txt"], taskTimeoutSeconds: 50_000 };
    await inputs.put("_jobs/again-1.json", Buffer.from(JSON.stringify(next)));
    await handleObjectCreated(deps, config, { bucket: "lab-in", key: "_jobs/again-1.json" });
    expect(await statusOf()).toMatch(/taskTimeoutSeconds 50000 is more than the fleet's/);
  });

  it("a task time limit past what SQS can hide a task for (12 hours) is refused, for a spec and for a retry", async () => {
    const { inputs, output, deps } = localPipeline(path.join(dir, "long"));
    await inputs.put("data.txt", Buffer.from("a\n"));
    const config = { defaultChunkSize: 1024, maxAttempts: STACK_ATTEMPTS, jobDeadlineSeconds: 600 };
    // 11 h 50 min is the most: 12 h of SQS's visibility less 10 min for the last heartbeat and the part.
    for (const [id, seconds] of [
      ["long-1", 12 * 3600],
      ["fits-1", 12 * 3600 - 600],
    ] as const) {
      const spec = { op: "count", inputs: ["s3://lab-in/data.txt"], taskTimeoutSeconds: seconds };
      await inputs.put(`_jobs/${id}.json`, Buffer.from(JSON.stringify(spec)));
      await handleObjectCreated(deps, config, { bucket: "lab-in", key: `_jobs/${id}.json` });
    }
    const long = await readJson(output, jobSpecOutputKeys("long-1").status, JobStatus);
    expect(long).toMatchObject({ state: "failed", error: { code: "INVALID_SPEC" } });
    expect(long.error?.message).toMatch(/taskTimeoutSeconds 43200 is more than the fleet's 42600: SQS hides a task/);
    expect(await readJson(output, jobSpecOutputKeys("fits-1").status, JobStatus)).toMatchObject({ state: "running" });
    expect(() => parseRetryRequest(JSON.stringify({ after: 0, taskTimeoutSeconds: 43_200 }), "retry long-1")).toThrow(
      /retry long-1: taskTimeoutSeconds 43200 is more than the fleet's 42600/,
    );
    // The SDK's retry refuses it before it writes the request, which the splitter would only log.
    const manifest = await readJson(output, manifestKey("fits-1"), Manifest);
    expect(retryRefusal(manifest, { taskTimeoutSeconds: 43_200 })).toMatch(/taskTimeoutSeconds 43200 is more than the fleet's 42600/);
    expect(retryRefusal(manifest, { taskTimeoutSeconds: 42_600 })).toBeUndefined();
  });
});

describe("a task's message after its attempt", () => {
  it("a failed attempt is visible again after its retry delay, even with a heartbeat still in flight", async () => {
    const queue = new MemoryTaskQueue({ visibilitySeconds: 30 });
    const { inputs, deps } = localPipeline(path.join(dir, "late-beat"), { queue });
    const bytes = Buffer.from("a\nb\n");
    await startJobOver(deps, inputs, bytes, "beat-1", { op: "count", maxAttempts: 3 }, bytes.length);
    let sent!: () => void;
    const heartbeatSent = new Promise<void>((r) => (sent = r));
    let handBack!: () => void;
    const handedBack = new Promise<void>((r) => (handBack = r));
    // A slow network: the heartbeat's request lands once the attempt has been handed back (or 3 s on).
    const slow: TaskQueue = Object.assign(Object.create(queue) as TaskQueue, {
      changeVisibility: async (handle: string, seconds: number) => {
        if (seconds !== 30) {
          await queue.changeVisibility(handle, seconds);
          handBack();
          return;
        }
        sent();
        await Promise.race([handedBack, new Promise((r) => setTimeout(r, 3000))]);
        await queue.changeVisibility(handle, seconds);
      },
    });
    // The read fails (retryably) once the first heartbeat is on its way.
    const failing = Object.assign(Object.create(inputs) as BlobStore, {
      get: async () => {
        await heartbeatSent;
        throw new CloudmillError(ErrorCode.ENVIRONMENT, "GetObject failed: 503 Slow Down");
      },
    });
    const worker = new TaskWorker({
      queue: slow,
      deps: { ...deps, inputStore: () => failing },
      concurrency: 1,
      visibilitySeconds: 30,
      heartbeatSeconds: 1,
      waitSeconds: 1,
    });
    const failed = new Promise<boolean>((r) => worker.on("task_failed", (_t, _e, willRetry: boolean) => r(willRetry)));
    worker.start();
    expect(await failed).toBe(true);
    await worker.stop(5_000);
    // Its retry delay is 1 s; a heartbeat landing after the hand-back would hide it for 30 s.
    await waitFor("the task to be visible again", async () => ((await queue.depth()).visible === 1 ? true : undefined), 15_000, 50);
  });

  it("a done task whose delete fails is no failed attempt: its next delivery finds the part and is dropped", async () => {
    const queue = new MemoryTaskQueue({ visibilitySeconds: 2 });
    const { inputs, output, deps } = localPipeline(path.join(dir, "lost-delete"), { queue });
    const bytes = Buffer.from("a\nb\n");
    await startJobOver(deps, inputs, bytes, "delete-1", { op: "count", maxAttempts: 3 }, bytes.length);
    let deletes = 0;
    const flaky: TaskQueue = Object.assign(Object.create(queue) as TaskQueue, {
      delete: async (handle: string) => {
        if (deletes++ === 0) throw new CloudmillError(ErrorCode.ENVIRONMENT, "DeleteMessage failed: connection reset");
        return queue.delete(handle);
      },
    });
    const worker = new TaskWorker({ queue: flaky, deps, concurrency: 1, visibilitySeconds: 2, heartbeatSeconds: 1, waitSeconds: 1 });
    const done: string[] = [];
    const failures: boolean[] = [];
    worker.on("task_failed", (_t, _e, willRetry: boolean) => void failures.push(willRetry));
    const twice = new Promise<void>((r) =>
      worker.on("task_done", (_t, outcome: { kind: string }) => {
        done.push(outcome.kind);
        if (done.length === 2) r();
      }),
    );
    worker.start();
    try {
      await twice;
    } finally {
      await worker.stop(5_000);
    }
    expect(done).toEqual(["done", "duplicate"]);
    expect(failures).toEqual([]);
    const errors: string[] = [];
    for await (const o of output.list(errorsPrefix("delete-1"))) errors.push(o.key);
    expect(errors).toEqual([]);
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0 });
  });
});

describe("a task its worker is stopped under", () => {
  it("goes back as a fresh message: a stop (ECS's, a spot interruption) uses none of its attempts", async () => {
    // A queue that gives up on a task at its first redelivery: one counted stop would dead-letter it.
    const deadLetters = new MemoryTaskQueue({ name: "dead-letters" });
    const queue = new MemoryTaskQueue({ visibilitySeconds: 30, deadLetter: { queue: deadLetters, maxReceiveCount: 1 } });
    const { inputs, output, deps } = localPipeline(path.join(dir, "stopped"), { queue });
    const bytes = Buffer.from("a\nb\nc\n");
    await startJobOver(deps, inputs, bytes, "stopped-1", { op: "count", maxAttempts: 1 }, bytes.length);
    // The read hangs until the worker's stop aborts it.
    const hanging = Object.assign(Object.create(inputs) as BlobStore, {
      get: (_key: string, options?: { signal?: AbortSignal }) =>
        new Promise<never>((_, reject) => options?.signal?.addEventListener("abort", () => reject(options.signal!.reason), { once: true })),
    });
    const stopped = new TaskWorker({
      queue,
      deps: { ...deps, inputStore: () => hanging },
      concurrency: 1,
      visibilitySeconds: 30,
      heartbeatSeconds: 10,
      waitSeconds: 1,
    });
    const received = new Promise<void>((r) => stopped.once("message_received", () => r()));
    stopped.start();
    await received;
    await stopped.stop(50);
    expect(await queue.depth()).toEqual({ visible: 1, inFlight: 0 });
    // Another worker takes it at once and maps it: its first receive again.
    const next = new TaskWorker({ queue, deps, concurrency: 1, visibilitySeconds: 30, heartbeatSeconds: 10, waitSeconds: 1 });
    const done = new Promise<string>((r) => next.once("task_done", (_t, outcome: { kind: string }) => r(outcome.kind)));
    next.start();
    try {
      expect(await done).toBe("done");
    } finally {
      await next.stop(5_000);
    }
    expect(await deadLetters.depth()).toEqual({ visible: 0, inFlight: 0 });
    expect(await exists(output, partKey("stopped-1", 0))).toBe(true);
  });
});
