/**
 * Part notices (lib/core/pipeline/partNotices.ts): a worker names each finished task's part to
 * the reducer before it deletes the task's message, so that a notice is never lost while its
 * message is gone.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskWorker } from "../../lib/aws/TaskWorker.js";
import { partKey } from "../../lib/core/keys.js";
import { readJsonIfExists } from "../../lib/core/pipeline/blobJson.js";
import { JobStatus } from "../../lib/core/job/manifest.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import type { BlobStore, GetOptions, PartNotifier } from "../../lib/core/ports.js";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { waitFor } from "../helpers/devCloud.js";
import { localPipeline, OUTPUT, startJobOver } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-notices-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe("a finished task's part notice", () => {
  it("goes before its message's delete; one that fails keeps the message, whose next run names the part it finds", async () => {
    const queue = new MemoryTaskQueue({ visibilitySeconds: 2 });
    const { inputs, output, deps } = localPipeline(path.join(dir, "lost-notice"), { queue });
    const bytes = Buffer.from("a\nb\nc\n");
    const started = await startJobOver(deps, inputs, bytes, "notice-1", { op: "count" }, bytes.length);
    const { jobId } = started.manifest;
    /** What each notice named, and the task queue as it stood when the notice was made. */
    const notices: { keys: readonly string[]; queued: number }[] = [];
    const notifier: PartNotifier = {
      async written(keys) {
        const d = await queue.depth();
        notices.push({ keys, queued: d.visible + d.inFlight });
        // The first is lost (SQS unreachable, or the worker died before it was sent).
        if (notices.length === 1) throw new CloudmillError(ErrorCode.ENVIRONMENT, "SendMessage failed: connection reset");
      },
    };
    const received: number[] = [];
    const worker = new TaskWorker({
      queue,
      deps,
      concurrency: 1,
      visibilitySeconds: 2,
      heartbeatSeconds: 1,
      waitSeconds: 1,
      notices: notifier,
    });
    worker.on("message_received", (_task, message) => void received.push(message.receiveCount));
    const outcomes: string[] = [];
    worker.on("task_done", (_task, outcome) => void outcomes.push(outcome.kind));
    worker.start();
    try {
      await waitFor(
        "the task's message to be gone after a notice that went",
        async () => {
          const d = await queue.depth();
          return notices.length >= 2 && d.visible + d.inFlight === 0 ? true : undefined;
        },
        20_000,
        20,
      );
    } finally {
      await worker.stop(5_000);
    }
    // The message came back once, after the lost notice, and its second run found the part.
    expect(received).toEqual([1, 2]);
    expect(outcomes).toEqual(["done", "duplicate"]);
    expect(notices).toEqual([
      { keys: [partKey(jobId, 0)], queued: 1 },
      { keys: [partKey(jobId, 0)], queued: 1 },
    ]);
    // The part the notices named is there: the reducer it wakes finishes the job (3 lines, by construction).
    expect(await reduceJob(deps, jobId)).toMatchObject({ kind: "succeeded", result: { records: 3 } });
    expect(await readJsonIfExists(output, OUTPUT.status, JobStatus)).toMatchObject({ state: "succeeded" });
  });

  it("a copy stopped because its other copy wrote the part names that part too (its writer may name none)", async () => {
    const queue = new MemoryTaskQueue({ visibilitySeconds: 4 });
    const { inputs, output, deps } = localPipeline(path.join(dir, "other-copy"), { queue });
    const bytes = Buffer.from("a\nb\n");
    const started = await startJobOver(deps, inputs, bytes, "notice-2", { op: "count" }, bytes.length);
    const { jobId } = started.manifest;
    // This copy's read hangs until it is stopped; meanwhile its other copy (an older worker, or the
    // splitter past its time, neither of which names its part) writes the part.
    const stalled = Object.assign(Object.create(inputs) as BlobStore, {
      get: async (_key: string, options?: GetOptions) => {
        await output.put(partKey(jobId, 0), "{}");
        return new Promise<never>((_, reject) => {
          const signal = options?.signal;
          signal?.addEventListener("abort", () => reject(signal.reason), { once: true });
        });
      },
    });
    const notices: (readonly string[])[] = [];
    const outcomes: string[] = [];
    const worker = new TaskWorker({
      queue,
      deps: { ...deps, inputStore: () => stalled },
      concurrency: 1,
      visibilitySeconds: 4,
      heartbeatSeconds: 1,
      waitSeconds: 1,
      notices: { written: async (keys) => void notices.push(keys) },
    });
    worker.on("task_done", (_task, outcome) => void outcomes.push(outcome.kind));
    worker.start();
    try {
      await waitFor("the stopped copy's message to be gone", async () => {
        const d = await queue.depth();
        return outcomes.length > 0 && d.visible + d.inFlight === 0 ? true : undefined;
      });
    } finally {
      await worker.stop(5_000);
    }
    expect(outcomes).toEqual(["duplicate"]);
    expect(notices).toEqual([[partKey(jobId, 0)]]);
  });
});
