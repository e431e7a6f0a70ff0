/** The cancel role (lib/core/pipeline/cancel.ts) over the filesystem BlobStore: markers, statuses, races. */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { cancelKey, failureKey, jobSpecOutputKeys, manifestKey, succeededKey } from "../../lib/core/keys.js";
import { JobStatus, type Manifest } from "../../lib/core/job/manifest.js";
import { silentLogger } from "../../lib/core/log.js";
import type { BlobStore } from "../../lib/core/ports.js";
import { cancelJob } from "../../lib/core/pipeline/cancel.js";
import { readJson, readJsonIfExists, writeJson } from "../../lib/core/pipeline/blobJson.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { TaskWorker } from "../../lib/aws/TaskWorker.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { failJob } from "../../lib/core/pipeline/deadLetter.js";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";
import { waitFor } from "../helpers/devCloud.js";

const AtRecord = z.object({ at: z.string() });
const JOB = "job-20261121T101500-0badcafe";
const out = jobSpecOutputKeys(JOB);
const NOW = Date.parse("2026-11-21T10:20:00Z");

const manifest: Manifest = {
  v: 1,
  jobId: JOB,
  job: { op: "count", params: {}, format: "lines", onBadRecord: "fail", maxAttempts: 3 },
  inputs: [{ bucket: "in", key: "data.txt", size: 100, etag: '"e"', name: "s3://in/data.txt" }],
  chunkSize: 10,
  chunks: 10,
  output: out,
  createdAt: "2026-11-21T10:15:00.000Z",
  deadline: NOW + 3_600_000,
  trigger: "s3://in/_jobs/x.json",
};

let dir: string;
let store: FsBlobStore;
const deps = () => ({ output: store as BlobStore, log: silentLogger, now: () => NOW });

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-cancel-"));
  store = new FsBlobStore(dir);
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const startRunning = async (done: number): Promise<void> => {
  await writeJson(store, manifestKey(JOB), manifest);
  await writeJson(store, out.status, {
    jobId: JOB,
    state: "running",
    chunks: 10,
    done,
    op: "count",
    inputs: ["s3://in/data.txt"],
    startedAt: manifest.createdAt,
  });
};

describe("cancelJob", () => {
  it("marks a running job cancelled: the marker, then a cancelled status with its progress", async () => {
    await startRunning(4);
    const outcome = await cancelJob(deps(), JOB, out);
    expect(outcome.kind).toBe("cancelled");
    expect(await readJson(store, cancelKey(JOB), AtRecord)).toEqual({ at: "2026-11-21T10:20:00.000Z" });
    const status = await readJson(store, out.status, JobStatus);
    expect(status).toEqual({
      jobId: JOB,
      state: "cancelled",
      chunks: 10,
      done: 4,
      op: "count",
      inputs: ["s3://in/data.txt"],
      startedAt: manifest.createdAt,
      finishedAt: "2026-11-21T10:20:00.000Z",
    });
    expect(outcome.status).toEqual(status);
  });

  it("a keyed job's cancel counts its reduce tasks as its progress does, and keeps what the status said of the job", async () => {
    // 10 map chunks and 3 partitions: 13 tasks, of which 11 are done (every chunk, one reduce task).
    const keyed: Manifest = { ...manifest, job: { ...manifest.job, op: "distinct", partitions: 3 } };
    await writeJson(store, manifestKey(JOB), keyed);
    const running = { jobId: JOB, state: "running", chunks: 13, done: 11, op: "distinct", startedAt: keyed.createdAt };
    await writeJson(store, out.status, {
      ...running,
      inputs: ["s3://in/data.txt"],
      firstChunk: { on: "fleet", at: "2026-11-21T10:16:00.000Z" },
    });
    await cancelJob(deps(), JOB, out);
    const status = await readJson(store, out.status, JobStatus);
    expect(status).toMatchObject({ state: "cancelled", chunks: 13, done: 11, firstChunk: { on: "fleet", at: "2026-11-21T10:16:00.000Z" } });
  });

  it("makes every later task of the job a no-op", async () => {
    await startRunning(0);
    await cancelJob(deps(), JOB, out);
    const task = {
      v: 1 as const,
      jobId: JOB,
      job: manifest.job,
      chunk: { index: 3, inputIndex: 0, input: manifest.inputs![0]!, start: 30, end: 40 },
    };
    await expect(runTask({ ...deps(), inputStore: () => store, registry: new OpRegistry() }, task)).resolves.toEqual({ kind: "job-ended" });
  });

  it("works before the splitter has run (no manifest, no status yet)", async () => {
    const outcome = await cancelJob(deps(), JOB, out);
    expect(outcome).toMatchObject({ kind: "cancelled", status: { jobId: JOB, state: "cancelled", chunks: 0, done: 0 } });
    expect(await readJsonIfExists(store, cancelKey(JOB), AtRecord)).toBeDefined();
  });

  it("leaves a succeeded job succeeded, with no marker", async () => {
    const succeeded = { jobId: JOB, state: "succeeded", chunks: 10, done: 10, finishedAt: "2026-11-21T10:19:00.000Z" } as const;
    await startRunning(10);
    await writeJson(store, succeededKey(JOB), succeeded);
    await writeJson(store, out.status, succeeded);
    const outcome = await cancelJob(deps(), JOB, out);
    expect(outcome).toEqual({ kind: "already-ended", status: succeeded });
    expect(await store.head(cancelKey(JOB))).toBeUndefined();
    expect(await readJson(store, out.status, JobStatus)).toEqual(succeeded);
  });

  it("leaves a failed job failed, naming its error", async () => {
    await startRunning(2);
    const error = { code: "BAD_RECORD", message: "s3://in/data.txt (byte 5): expected a number" };
    await writeJson(store, failureKey(JOB), { error, at: "2026-11-21T10:18:00.000Z" });
    const outcome = await cancelJob(deps(), JOB, out);
    expect(outcome).toMatchObject({ kind: "already-ended", status: { state: "failed", error, finishedAt: "2026-11-21T10:18:00.000Z" } });
    expect(await store.head(cancelKey(JOB))).toBeUndefined();
  });

  it("is idempotent: a second cancel keeps the first time and repairs a status the splitter overwrote", async () => {
    await startRunning(1);
    await cancelJob(deps(), JOB, out);
    await startRunning(0); // the splitter's first status, written after the cancel
    const again = await cancelJob({ ...deps(), now: () => NOW + 60_000 }, JOB, out);
    expect(again.kind).toBe("cancelled");
    expect((await readJson(store, out.status, JobStatus)).finishedAt).toBe("2026-11-21T10:20:00.000Z");
    expect((await readJson(store, out.status, JobStatus)).state).toBe("cancelled");
  });

  it("a reducer that succeeds while the cancel is written wins: the status says succeeded", async () => {
    await startRunning(9);
    const succeeded = { jobId: JOB, state: "succeeded", chunks: 10, done: 10, finishedAt: "2026-11-21T10:20:00.500Z" } as const;
    // The reducer passed its cancel check just before the marker existed, and finishes now.
    const racing: BlobStore = {
      name: store.name,
      head: (k) => store.head(k),
      get: (k, o) => store.get(k, o),
      list: (p) => store.list(p),
      delete: (k) => store.delete(k),
      put: async (k, body, o) => {
        await store.put(k, body, o);
        if (k === cancelKey(JOB)) {
          await writeJson(store, succeededKey(JOB), succeeded);
          await writeJson(store, out.status, succeeded);
        }
      },
    };
    const outcome = await cancelJob({ ...deps(), output: racing }, JOB, out);
    expect(outcome).toEqual({ kind: "already-ended", status: succeeded });
    expect(await readJson(store, out.status, JobStatus)).toEqual(succeeded);
  });

  it("an end whose status write was lost is shown again by a cancel, the reducer, and a worker that drops the job's task", async () => {
    const error = { code: "BAD_RECORD", message: "s3://in/data.txt (byte 5): expected a number" };
    const lost = async () => {
      // The failure handler wrote its marker; its write of the status failed.
      await startRunning(2);
      await writeJson(store, failureKey(JOB), { error, at: "2026-11-21T10:18:00.000Z" });
    };
    const failed = { jobId: JOB, state: "failed", done: 2, error, finishedAt: "2026-11-21T10:18:00.000Z" };

    await lost();
    expect(await cancelJob(deps(), JOB, out)).toMatchObject({ kind: "already-ended" });
    expect(await readJson(store, out.status, JobStatus)).toMatchObject(failed);

    await lost();
    const roleDeps = { ...deps(), inputStore: () => store, registry: new OpRegistry() };
    expect(await reduceJob(roleDeps, JOB)).toEqual({ kind: "ended" });
    expect(await readJson(store, out.status, JobStatus)).toMatchObject(failed);

    await lost();
    const queue = new MemoryTaskQueue({ visibilitySeconds: 30 });
    const chunk = { index: 3, inputIndex: 0, input: manifest.inputs![0]!, start: 30, end: 40 };
    await queue.sendBatch([JSON.stringify({ v: 1, jobId: JOB, job: manifest.job, chunk })]);
    const worker = new TaskWorker({ queue, deps: roleDeps, concurrency: 1, visibilitySeconds: 30, heartbeatSeconds: 10, waitSeconds: 1 });
    const outcomes: string[] = [];
    worker.on("task_done", (_t, o: { kind: string }) => void outcomes.push(o.kind));
    worker.start();
    try {
      await waitFor("the task to be dropped", async () => (outcomes.length > 0 ? true : undefined), 10_000, 10);
    } finally {
      await worker.stop(5_000);
    }
    expect(outcomes).toEqual(["job-ended"]);
    expect(await readJson(store, out.status, JobStatus)).toMatchObject(failed);
  });

  it("never writes over a later job's status at the same key: neither an older job's cancel nor its late reducer", async () => {
    // The upload was overwritten: job 2 started later at the same key, and has failed.
    const later = {
      jobId: "job-20261121T101900-0c0ffee0",
      state: "failed",
      chunks: 1,
      done: 0,
      startedAt: "2026-11-21T10:19:00.000Z",
      finishedAt: "2026-11-21T10:19:30.000Z",
      error: { code: "BAD_RECORD", message: "s3://in/data.txt (byte 0): expected a number" },
    } as const;
    await writeJson(store, manifestKey(JOB), manifest);
    await writeJson(store, out.status, later);
    expect(await cancelJob(deps(), JOB, out)).toMatchObject({ kind: "cancelled" });
    expect(await readJson(store, out.status, JobStatus)).toEqual(later);

    await store.delete(cancelKey(JOB));
    await writeJson(store, succeededKey(JOB), { jobId: JOB, state: "succeeded", chunks: 10, done: 10, startedAt: manifest.createdAt });
    const roleDeps = { ...deps(), inputStore: () => store, registry: new OpRegistry() };
    expect(await reduceJob(roleDeps, JOB)).toMatchObject({ kind: "already-succeeded" });
    expect(await readJson(store, out.status, JobStatus)).toEqual(later);
    expect(await cancelJob(deps(), JOB, out)).toMatchObject({ kind: "already-ended" });
    expect(await readJson(store, out.status, JobStatus)).toEqual(later);
  });

  it("a failure keeps what the status said of the job: its op, its inputs and the chunks done", async () => {
    await startRunning(7);
    // A dead letter's judge knows no count of the chunks done.
    const error = new CloudmillError(ErrorCode.CHUNK_FAILED, "chunk 3 failed after 3 attempts: worker killed");
    const roleDeps = { ...deps(), inputStore: () => store, registry: new OpRegistry() };
    await failJob(roleDeps, { jobId: JOB, output: out, chunks: 10, done: 0, startedAt: manifest.createdAt }, error);
    expect(await readJson(store, out.status, JobStatus)).toMatchObject({
      state: "failed",
      done: 7,
      op: "count",
      inputs: ["s3://in/data.txt"],
      startedAt: manifest.createdAt,
      error: { code: "CHUNK_FAILED" },
    });
  });

  it("the first failure judged stands: a second chunk failing after it changes neither the error nor the end time", async () => {
    await startRunning(2);
    const roleDeps = { ...deps(), inputStore: () => store, registry: new OpRegistry() };
    const target = { jobId: JOB, output: out, chunks: 10, done: 2, startedAt: manifest.createdAt, run: 0 };
    const first = new CloudmillError(ErrorCode.BAD_RECORD, 'expected a number, got "x"', { input: "data.txt", offset: 262188 });
    await failJob(roleDeps, target, first);
    const reported = await readJson(store, out.status, JobStatus);
    expect(reported.error?.message).toContain("262188");
    const second = new CloudmillError(ErrorCode.BAD_RECORD, 'expected a number, got "y"', { input: "data.txt", offset: 0 });
    await failJob({ ...roleDeps, now: () => NOW + 5_000 }, target, second);
    expect(await readJson(store, out.status, JobStatus)).toEqual(reported);
    expect(await readJson(store, failureKey(JOB), z.object({ at: z.string(), error: z.object({ message: z.string() }) }))).toMatchObject({
      at: reported.finishedAt,
      error: { message: reported.error?.message },
    });
  });
});
