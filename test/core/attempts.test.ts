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
import { JobStatus } from "../../lib/core/job/manifest.js";
import { jobSpecOutputKeys } from "../../lib/core/keys.js";
import { readJson, readJsonIfExists } from "../../lib/core/pipeline/blobJson.js";
import { handleObjectCreated } from "../../lib/core/pipeline/trigger.js";
import type { BlobStore } from "../../lib/core/ports.js";
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
});
