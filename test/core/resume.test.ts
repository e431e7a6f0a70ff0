/**
 * Resume instead of rerun: a cancelled or failed job resumed by the splitter queues only its
 * tasks with no part, with the limits the request gives; the parts already written are left
 * as they are, and the result is the reference's. A request seen twice resumes once; a job
 * that succeeded, or is still running, is not resumed.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cancelKey, failureKey, manifestKey, mergedPrefix, parsePartKey, partKey, partsPrefix, pastEndKey } from "../../lib/core/keys.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { isMapTask, isMergeTask, JobStatus, Manifest, MapTask, type InputObject, type TaskMessage } from "../../lib/core/job/manifest.js";
import { backedUpTasks, backupRaces, launchBackups, markRunning } from "../../lib/core/pipeline/backups.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { silentLogger } from "../../lib/core/log.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { exists, readBytes, readJson, writeJson } from "../../lib/core/pipeline/blobJson.js";
import { cancelJob } from "../../lib/core/pipeline/cancel.js";
import { failJob, failJobOfTask, handleDeadLetter } from "../../lib/core/pipeline/deadLetter.js";
import { JOB_END_RECHECK_MS, TaskWorker } from "../../lib/aws/TaskWorker.js";
import type { SplitDeps } from "../../lib/core/pipeline/deps.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { afterFailedAttempt } from "../../lib/core/pipeline/attempts.js";
import { resumeJob } from "../../lib/core/pipeline/resume.js";
import { startJob, taskJobOf } from "../../lib/core/pipeline/split.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { tasksOf } from "../../lib/core/pipeline/mapTasks.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";
import { expectMatchesReference, textOf, waitFor } from "../helpers/devCloud.js";
import { localPipeline, startJobOver, takeAll } from "../helpers/jobs.js";
import { z } from "zod";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-resume-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const TEXT = textOf(12_000, 9);
const CHUNK = 1000;
const CHUNKS = Math.ceil(TEXT.length / CHUNK);
const registry = new OpRegistry(builtinOps);
const OUTPUT = { result: "out/result.json", status: "out/status.json" };

const setUp = async (name: string, now: () => number = Date.now, onBadRecord: "fail" | "skip" = "fail") => {
  const inputs = new FsBlobStore(path.join(dir, name, "in"));
  const output = new FsBlobStore(path.join(dir, name, "out"));
  await inputs.put("data.txt", TEXT);
  const info = (await inputs.head("data.txt"))!;
  const queue = new MemoryTaskQueue({ visibilitySeconds: 30 });
  const deps: SplitDeps = { output, queue, inputStore: () => inputs, registry, log: silentLogger, now };
  const object: InputObject = { bucket: "in", key: "data.txt", size: info.size, etag: info.etag, name: "data.txt" };
  const jobId = `${name}-1`;
  await startJob(deps, {
    jobId,
    job: taskJobOf(parseJobSpec({ op: "wordcount", inputs: ["data.txt"], params: { k: "0" }, onBadRecord }), registry),
    inputs: [object],
    chunkSize: CHUNK,
    output: OUTPUT,
    trigger: "test",
    deadlineSeconds: 3600,
  });
  return { deps, queue, output, jobId };
};

/** A fleet worker over the job's queue, one task at a time. */
const workerOf = (s: Awaited<ReturnType<typeof setUp>>): TaskWorker =>
  new TaskWorker({ queue: s.queue, deps: s.deps, concurrency: 1, visibilitySeconds: 30, heartbeatSeconds: 10, waitSeconds: 1 });

/** Takes every queued task; runs the first `run` of them as a worker would, drops the others. */
const work = async (s: Awaited<ReturnType<typeof setUp>>, run = Number.POSITIVE_INFINITY): Promise<MapTask[]> => {
  const ran: MapTask[] = [];
  for (;;) {
    const [message] = await s.queue.receive({ maxMessages: 1, waitSeconds: 0 });
    if (!message) break;
    const task = MapTask.parse(JSON.parse(message.body));
    if (ran.length < run) {
      await runTask(s.deps, task, { checkOpDigest: false });
      ran.push(task);
    }
    await s.queue.delete(message.receiptHandle);
  }
  return ran;
};

describe("resuming a job", () => {
  it("a cancelled job queues only its chunks with no part, keeps the parts written, and ends exact", async () => {
    const s = await setUp("cancelled");
    expect(CHUNKS).toBeGreaterThan(8);
    const first = await work(s, 5);
    const kept = await Promise.all(first.map((t) => readBytes(s.output, partKey(s.jobId, t.chunk.index))));
    await cancelJob(s.deps, s.jobId, OUTPUT);

    const outcome = await resumeJob(s.deps, s.jobId, { after: 0, taskTimeoutSeconds: 120 }, { jobDeadlineSeconds: 600 });
    expect(outcome).toEqual({ kind: "resumed", tasks: CHUNKS - 5, of: CHUNKS });
    expect(await exists(s.output, cancelKey(s.jobId))).toBe(false);
    expect(await readJson(s.output, pastEndKey(s.jobId, 1), JobStatus.partial().loose())).toHaveProperty("cancelled");
    const status = await readJson(s.output, OUTPUT.status, JobStatus);
    expect(status).toMatchObject({ state: "running", done: 5, retries: 1, resumed: { tasks: CHUNKS - 5 } });

    // The same request again (S3 may deliver an event twice) changes nothing.
    expect(await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).toMatchObject({ kind: "refused" });
    const again = await work(s);
    expect(again.map((t) => t.chunk.index).sort((a, b) => a - b)).toEqual(
      Array.from({ length: CHUNKS }, (_, i) => i).filter((i) => !first.some((t) => t.chunk.index === i)),
    );
    expect(again.every((t) => t.job.taskTimeoutSeconds === 120)).toBe(true);
    for (const [i, t] of first.entries()) expect(await readBytes(s.output, partKey(s.jobId, t.chunk.index))).toEqual(kept[i]);

    await reduceJob(s.deps, s.jobId);
    expect(await readJson(s.output, OUTPUT.status, JobStatus)).toMatchObject({ state: "succeeded" });
    expectMatchesReference("wordcount", { k: "0" }, TEXT, await readJson(s.output, OUTPUT.result, z.unknown()));
    expect(await resumeJob(s.deps, s.jobId, { after: 1 }, { jobDeadlineSeconds: 600 })).toEqual({
      kind: "refused",
      reason: "it succeeded",
    });
  });

  it("a failed job loses its failure marker (kept under retries/), and only a job that ended is resumed", async () => {
    const s = await setUp("failed");
    expect(await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).toEqual({
      kind: "refused",
      reason: "it is still running",
    });
    await work(s, 3);
    const manifest = await readJson(s.output, `_work/${s.jobId}/manifest.json`, Manifest);
    await failJob(
      s.deps,
      { jobId: s.jobId, output: OUTPUT, chunks: CHUNKS, done: 3, startedAt: manifest.createdAt },
      new CloudmillError(ErrorCode.TASK_TIMEOUT, "the chunk did not finish within 1 s (taskTimeoutSeconds)"),
    );
    const outcome = await resumeJob(s.deps, s.jobId, { after: 0, taskMemoryMiB: 512, taskTimeoutSeconds: 30 }, { jobDeadlineSeconds: 600 });
    expect(outcome).toEqual({ kind: "resumed", tasks: CHUNKS - 3, of: CHUNKS });
    expect(await exists(s.output, failureKey(s.jobId))).toBe(false);
    const past = await readJson(s.output, pastEndKey(s.jobId, 1), JobStatus.partial().loose());
    expect(past).toMatchObject({ failure: { error: { code: "TASK_TIMEOUT" } } });
    const resumed = await readJson(s.output, `_work/${s.jobId}/manifest.json`, Manifest);
    expect(resumed.job).toMatchObject({ taskMemoryMiB: 512, taskTimeoutSeconds: 30, generation: 1 });
    expect(resumed.deadline).toBeGreaterThan(manifest.deadline - 3600_000 + 500_000);
    expect((await work(s)).length).toBe(CHUNKS - 3);
    await reduceJob(s.deps, s.jobId);
    expect(await readJson(s.output, OUTPUT.status, JobStatus)).toMatchObject({ state: "succeeded", done: CHUNKS });
  });

  it("tasks queued before the resume are stale: past their old deadline, or in the dead-letter queue, they fail nothing", async () => {
    let clock = Date.now();
    const s = await setUp("stale", () => clock);
    await cancelJob(s.deps, s.jobId, OUTPUT);
    // Every first-run task is still queued when the job is resumed, an hour and a half later.
    const old = (await s.queue.receive({ maxMessages: 1, waitSeconds: 0 }))[0]!;
    await s.queue.changeVisibility(old.receiptHandle, 0);
    clock += 90 * 60_000;
    const outcome = await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 3600 });
    expect(outcome).toEqual({ kind: "resumed", tasks: CHUNKS, of: CHUNKS });
    expect(await handleDeadLetter(s.deps, old.body, 3)).toBe("ignored");
    const worker = workerOf(s);
    let stale = 0;
    worker.on("task_done", (_t, o) => void (o.kind === "job-ended" && stale++));
    worker.start();
    try {
      await waitFor(
        "the queue to drain",
        async () => {
          const d = await s.queue.depth();
          return d.visible + d.inFlight === 0 ? true : undefined;
        },
        20_000,
        20,
      );
    } finally {
      await worker.stop(5_000);
    }
    // The old copies met their deadline (an hour after the first run began) and were dropped.
    expect(stale).toBe(CHUNKS);
    await reduceJob(s.deps, s.jobId);
    expect(await readJson(s.output, OUTPUT.status, JobStatus)).toMatchObject({ state: "succeeded", retries: 1 });
    expectMatchesReference("wordcount", { k: "0" }, TEXT, await readJson(s.output, OUTPUT.result, z.unknown()));
  });

  it("a resume cut short (the queue failed it) is finished by the next invocation of the same request", async () => {
    const s = await setUp("cut-short");
    await work(s, 4);
    await cancelJob(s.deps, s.jobId, OUTPUT);
    const send = s.queue.sendBatch.bind(s.queue);
    let failures = 1;
    s.queue.sendBatch = async (bodies, options) => {
      if (failures-- > 0) throw new CloudmillError(ErrorCode.ENVIRONMENT, "SendMessageBatch failed: throttled");
      return send(bodies, options);
    };
    await expect(resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).rejects.toMatchObject({ code: "ENVIRONMENT" });
    // Lambda's retry of the same event: the end marker is gone, but the resume is finished, once.
    expect(await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).toEqual({
      kind: "resumed",
      tasks: CHUNKS - 4,
      of: CHUNKS,
    });
    expect(await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).toMatchObject({ kind: "refused" });
    expect((await work(s)).length).toBe(CHUNKS - 4);
    await reduceJob(s.deps, s.jobId);
    expectMatchesReference("wordcount", { k: "0" }, TEXT, await readJson(s.output, OUTPUT.result, z.unknown()));
  });

  it("a merge that failed on a chunk's kept part maps that chunk again, replacing its part", async () => {
    const s = await setUp("redo");
    await work(s);
    const manifest = await readJson(s.output, `_work/${s.jobId}/manifest.json`, Manifest);
    // As if the merge had met a kept reading's error in chunk 2 (a CSV record past maxRecordBytes).
    const stale = `${(await readBytes(s.output, partKey(s.jobId, 2))).toString("utf8").slice(0, -1)},"stale":true}`;
    await s.output.put(partKey(s.jobId, 2), stale);
    await failJob(
      s.deps,
      { jobId: s.jobId, output: OUTPUT, chunks: CHUNKS, done: CHUNKS, startedAt: manifest.createdAt },
      new CloudmillError(ErrorCode.BAD_RECORD, "record longer than 1048576 bytes (maxRecordBytes)", { chunk: 2, input: "data.txt" }),
    );
    expect(await resumeJob(s.deps, s.jobId, { after: 0, maxRecordBytes: 4 * 1024 * 1024 }, { jobDeadlineSeconds: 600 })).toEqual({
      kind: "resumed",
      tasks: 1,
      of: CHUNKS,
    });
    // A reducer woken before the redo ends (by a kept merge's event, say) must not merge the old part.
    await reduceJob(s.deps, s.jobId);
    expect(await exists(s.output, `_work/${s.jobId}/succeeded.json`)).toBe(false);
    expect(await exists(s.output, failureKey(s.jobId))).toBe(false);
    const [redo] = await work(s);
    expect(redo).toMatchObject({ chunk: { index: 2 }, redo: true, job: { maxRecordBytes: 4 * 1024 * 1024, generation: 1 } });
    expect((await readBytes(s.output, partKey(s.jobId, 2))).toString("utf8")).not.toContain("stale");
    await reduceJob(s.deps, s.jobId);
    expect(await readJson(s.output, OUTPUT.status, JobStatus)).toMatchObject({ state: "succeeded" });
    expectMatchesReference("wordcount", { k: "0" }, TEXT, await readJson(s.output, OUTPUT.result, z.unknown()));
  });

  it("a copy of the redone chunk's task from the run before is dropped, and a judge of that run fails nothing", async () => {
    const s = await setUp("redo-stale");
    await work(s);
    const manifest = await readJson(s.output, manifestKey(s.jobId), Manifest);
    const target = { jobId: s.jobId, output: OUTPUT, chunks: CHUNKS, done: CHUNKS, startedAt: manifest.createdAt, run: 0 };
    const kept = new CloudmillError(ErrorCode.BAD_RECORD, "record longer than 1048576 bytes (maxRecordBytes)", {
      chunk: 2,
      input: "data.txt",
    });
    await failJob(s.deps, target, kept);
    // SQS delivers chunk 2's task of the first run once more, after the job failed.
    const [copy] = await tasksOf(s.output, manifest, [2]);
    await s.queue.sendBatch([JSON.stringify(copy)]);
    expect(await resumeJob(s.deps, s.jobId, { after: 0, maxRecordBytes: 4 * 1024 * 1024 }, { jobDeadlineSeconds: 600 })).toMatchObject({
      kind: "resumed",
      tasks: 1,
    });
    // A reducer still merging the first run meets the same kept error: the resumed run is not failed by it.
    expect(await failJob(s.deps, target, kept)).toBeUndefined();
    expect(await exists(s.output, failureKey(s.jobId))).toBe(false);
    const worker = workerOf(s);
    const outcomes: string[] = [];
    worker.on("task_done", (t: TaskMessage, o: { kind: string }) => void outcomes.push(`${t.job.generation ?? 0}:${o.kind}`));
    worker.start();
    try {
      await waitFor("both copies", async () => (outcomes.length === 2 ? true : undefined), 20_000, 20);
    } finally {
      await worker.stop(5_000);
    }
    // The first run's copy would have mapped the chunk with that run's limits, over the part the resume removed.
    expect(outcomes.sort()).toEqual(["0:job-ended", "1:done"]);
    await reduceJob(s.deps, s.jobId);
    expectMatchesReference("wordcount", { k: "0" }, TEXT, await readJson(s.output, OUTPUT.result, z.unknown()));
  });

  it("a copy of the run before still mapping when its worker sees the resume writes no part", async () => {
    let clock = Date.now();
    const s = await setUp("mid-map", () => clock);
    await work(s);
    const manifest = await readJson(s.output, manifestKey(s.jobId), Manifest);
    const kept = new CloudmillError(ErrorCode.BAD_RECORD, "record longer than 1048576 bytes (maxRecordBytes)", {
      chunk: 2,
      input: "data.txt",
    });
    // A late copy of chunk 2's task: its worker finds the job running and starts reading, which
    // holds until the gate opens. Meanwhile the job fails (on chunk 2's kept reading) and is resumed.
    const [copy] = await tasksOf(s.output, manifest, [2]);
    await s.queue.sendBatch([JSON.stringify(copy)]);
    const inputs = s.deps.inputStore("in");
    let reading = false;
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const deps: SplitDeps = {
      ...s.deps,
      inputStore: () =>
        Object.assign(Object.create(inputs) as typeof inputs, {
          get: async (key: string, options?: Parameters<typeof inputs.get>[1]) => {
            reading = true;
            await gate;
            return inputs.get(key, options);
          },
        }),
    };
    const worker = workerOf({ ...s, deps });
    const outcomes: string[] = [];
    worker.on("task_done", (t: TaskMessage, o: { kind: string }) => void outcomes.push(`${t.job.generation ?? 0}:${o.kind}`));
    worker.start();
    try {
      await waitFor("the copy to start reading", async () => (reading ? true : undefined), 20_000, 20);
      await failJob(s.deps, { jobId: s.jobId, output: OUTPUT, chunks: CHUNKS, done: CHUNKS, startedAt: manifest.createdAt }, kept);
      expect(await resumeJob(s.deps, s.jobId, { after: 0, maxRecordBytes: 4 * 1024 * 1024 }, { jobDeadlineSeconds: 600 })).toMatchObject({
        kind: "resumed",
        tasks: 1,
      });
      expect(await exists(s.output, partKey(s.jobId, 2))).toBe(false);
      // Past the time the worker believes its last look: it looks again before writing the part.
      clock += JOB_END_RECHECK_MS + 1;
      open();
      await waitFor("the copy to end", async () => (outcomes.length > 0 ? true : undefined), 20_000, 20);
      // The resume removed chunk 2's part to map it again with the new limits; the old copy left it removed.
      expect(outcomes[0]).toBe("0:job-ended");
      if (outcomes.length === 1) expect(await exists(s.output, partKey(s.jobId, 2))).toBe(false);
      await waitFor("the redo", async () => (outcomes.length === 2 ? true : undefined), 20_000, 20);
    } finally {
      await worker.stop(5_000);
    }
    expect(outcomes).toEqual(["0:job-ended", "1:done"]);
    await reduceJob(s.deps, s.jobId);
    expectMatchesReference("wordcount", { k: "0" }, TEXT, await readJson(s.output, OUTPUT.result, z.unknown()));
  });

  it("a failure of the run before that lands while a resume begins is taken back: the resumed run goes on", async () => {
    const s = await setUp("late-failure");
    await work(s, 4);
    await cancelJob(s.deps, s.jobId, OUTPUT);
    const manifest = await readJson(s.output, manifestKey(s.jobId), Manifest);
    // A judge of run 0 found no resume begun; its marker's write is slow, and lands after the
    // resume kept the old end and removed the markers.
    const slow = Object.assign(Object.create(s.output) as typeof s.output, {
      put: async (key: string, body: Parameters<typeof s.output.put>[1], options?: Parameters<typeof s.output.put>[2]) => {
        if (key === failureKey(s.jobId)) {
          expect(await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).toMatchObject({ kind: "resumed" });
        }
        return s.output.put(key, body, options);
      },
    });
    const error = new CloudmillError(ErrorCode.BAD_RECORD, "record longer than 1048576 bytes (maxRecordBytes)", { chunk: 7 });
    const target = { jobId: s.jobId, output: OUTPUT, chunks: CHUNKS, done: 4, startedAt: manifest.createdAt, run: 0 };
    expect(await failJob({ ...s.deps, output: slow }, target, error)).toBeUndefined();
    expect(await exists(s.output, failureKey(s.jobId))).toBe(false);
    expect((await work(s)).length).toBe(CHUNKS - 4);
    await reduceJob(s.deps, s.jobId);
    expectMatchesReference("wordcount", { k: "0" }, TEXT, await readJson(s.output, OUTPUT.result, z.unknown()));
  });

  it("the resumed run's tasks run while that late marker of the run before is there: none is dropped", async () => {
    const s = await setUp("late-failure-seen");
    await work(s, 4);
    await cancelJob(s.deps, s.jobId, OUTPUT);
    const manifest = await readJson(s.output, manifestKey(s.jobId), Manifest);
    const outcomes: string[] = [];
    const slow = Object.assign(Object.create(s.output) as typeof s.output, {
      put: async (key: string, body: Parameters<typeof s.output.put>[1], options?: Parameters<typeof s.output.put>[2]) => {
        if (key !== failureKey(s.jobId)) return s.output.put(key, body, options);
        expect(await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).toMatchObject({ kind: "resumed" });
        const written = await s.output.put(key, body, options);
        // While the marker is there, before its judge takes it back: a fleet worker takes the
        // resumed run's tasks. Each is this run's, which no marker of run 0 ends.
        const worker = workerOf(s);
        const all = new Promise<void>((resolve) =>
          worker.on("task_done", (_task: unknown, outcome: { kind: string }) => {
            outcomes.push(outcome.kind);
            if (outcomes.length === CHUNKS - 4) resolve();
          }),
        );
        worker.start();
        await all;
        await worker.stop(1000);
        return written;
      },
    });
    const error = new CloudmillError(ErrorCode.BAD_RECORD, "record longer than 1048576 bytes (maxRecordBytes)", { chunk: 7 });
    const target = { jobId: s.jobId, output: OUTPUT, chunks: CHUNKS, done: 4, startedAt: manifest.createdAt, run: 0 };
    expect(await failJob({ ...s.deps, output: slow }, target, error)).toBeUndefined();
    expect(outcomes).toEqual(Array.from({ length: CHUNKS - 4 }, () => "done"));
    expect(await readJson(s.output, OUTPUT.status, JobStatus)).toMatchObject({ state: "running" });
    await reduceJob(s.deps, s.jobId);
    expect(await readJson(s.output, OUTPUT.status, JobStatus)).toMatchObject({ state: "succeeded" });
    expectMatchesReference("wordcount", { k: "0" }, TEXT, await readJson(s.output, OUTPUT.result, z.unknown()));
  });

  it("a marker of the run before, left by a judge that died before taking it back, does not let a running job be resumed", async () => {
    const s = await setUp("stale-marker");
    await work(s, 4);
    await cancelJob(s.deps, s.jobId, OUTPUT);
    expect(await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).toMatchObject({ kind: "resumed" });
    // Run 1 runs; run 0's judge wrote its marker late and died.
    await writeJson(s.output, failureKey(s.jobId), {
      error: { code: "CHUNK_FAILED", message: "run 0's" },
      at: new Date().toISOString(),
      run: 0,
    });
    expect(await resumeJob(s.deps, s.jobId, { after: 1 }, { jobDeadlineSeconds: 600 })).toEqual({
      kind: "refused",
      reason: "it is still running",
    });
  });

  it("a retried resume that finds the job cancelled again since it began leaves it cancelled", async () => {
    let clock = Date.now();
    const s = await setUp("cancelled-again", () => clock);
    await work(s, 3);
    await cancelJob(s.deps, s.jobId, OUTPUT);
    const first = await readJson(s.output, cancelKey(s.jobId), z.object({ at: z.string() }));
    // The first invocation kept the old end and removed the marker, then died before the manifest.
    await writeJson(s.output, pastEndKey(s.jobId, 1), { cancelled: first });
    await s.output.delete(cancelKey(s.jobId));
    // The user cancels again; then the platform retries the resume.
    clock += 60_000;
    expect(await cancelJob(s.deps, s.jobId, OUTPUT)).toMatchObject({ kind: "cancelled" });
    expect(await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).toEqual({
      kind: "refused",
      reason: "it was cancelled again after this resume began",
    });
    expect(await exists(s.output, cancelKey(s.jobId))).toBe(true);
    expect(await readJson(s.output, OUTPUT.status, JobStatus)).toMatchObject({ state: "cancelled" });
  });

  it("a cancel asked after a retry was asked, before its resume ran, keeps the job cancelled; a retry asked later resumes it", async () => {
    let clock = Date.UTC(2026, 11, 6, 10, 0, 0);
    const at = (): string => new Date(clock).toISOString();
    const s = await setUp("cancel-after-retry", () => clock);
    await work(s, 3);
    await cancelJob(s.deps, s.jobId, OUTPUT);
    clock += 1_000;
    const asked = { after: 0, at: at() };
    // The user cancels again, 5 ms after asking for the retry, whose resume has not run yet.
    clock += 5;
    expect(await cancelJob(s.deps, s.jobId, OUTPUT)).toMatchObject({ kind: "cancelled" });
    expect(await resumeJob(s.deps, s.jobId, asked, { jobDeadlineSeconds: 600 })).toEqual({
      kind: "refused",
      reason: "it was cancelled after this retry was asked",
    });
    expect(await exists(s.output, cancelKey(s.jobId))).toBe(true);
    expect(await readJson(s.output, OUTPUT.status, JobStatus)).toMatchObject({ state: "cancelled" });
    expect(await s.queue.depth()).toEqual({ visible: 0, inFlight: 0 });

    clock += 1_000;
    expect(await resumeJob(s.deps, s.jobId, { after: 0, at: at() }, { jobDeadlineSeconds: 600 })).toMatchObject({ kind: "resumed" });
    expect(await exists(s.output, cancelKey(s.jobId))).toBe(false);
  });

  it("a job that fails on its retry names the retried run's errors, not the run before's", async () => {
    const s = await setUp("old-error");
    await work(s, 4);
    const manifest = await readJson(s.output, manifestKey(s.jobId), Manifest);
    const [old] = await tasksOf(s.output, manifest, [6]);
    const timeout = new CloudmillError(ErrorCode.TASK_TIMEOUT, "past its time limit of 60 s (taskTimeoutSeconds)");
    await afterFailedAttempt(s.deps, old!, timeout, 3);
    await failJob(s.deps, { jobId: s.jobId, output: OUTPUT, chunks: CHUNKS, done: 4, startedAt: manifest.createdAt }, timeout);
    expect(await resumeJob(s.deps, s.jobId, { after: 0, taskTimeoutSeconds: 600 }, { jobDeadlineSeconds: 600 })).toMatchObject({
      kind: "resumed",
    });
    // Chunk 6's task of the new run: its worker is killed on every attempt, recording nothing.
    const again = (await takeAll(s.queue)).find((t) => isMapTask(t) && t.chunk.index === 6)!;
    expect(again.job.generation).toBe(1);
    expect(await handleDeadLetter(s.deps, JSON.stringify(again), 3)).toBe("failed");
    const status = await readJson(s.output, OUTPUT.status, JobStatus);
    expect(status.error).toMatchObject({ code: "CHUNK_FAILED" });
    expect(status.error?.message).toContain("without reporting an error");
    expect(status.error?.message).not.toContain("60 s");
  });

  it("a cancel taken while the reducer merges stands: the reducer writes no result over it", async () => {
    const s = await setUp("cancel-mid-merge");
    await work(s);
    let cancelled: Awaited<ReturnType<typeof cancelJob>> | undefined;
    // The user cancels once the reducer has begun reading the parts.
    const reading = Object.assign(Object.create(s.output) as typeof s.output, {
      get: async (key: string, options?: Parameters<typeof s.output.get>[1]) => {
        if (!cancelled && parsePartKey(key)) cancelled = await cancelJob(s.deps, s.jobId, OUTPUT);
        return s.output.get(key, options);
      },
    });
    expect(await reduceJob({ ...s.deps, output: reading }, s.jobId)).toEqual({ kind: "ended" });
    expect(cancelled).toMatchObject({ kind: "cancelled" });
    expect(await exists(s.output, OUTPUT.result)).toBe(false);
    expect(await readJson(s.output, OUTPUT.status, JobStatus)).toMatchObject({ state: "cancelled" });
  });

  it("a task of the resumed run fails its own run, even before the resume has written the manifest that counts it", async () => {
    const s = await setUp("own-run");
    await cancelJob(s.deps, s.jobId, OUTPUT);
    // The resume's first step: the old end kept. The manifest still says no resume.
    await writeJson(s.output, pastEndKey(s.jobId, 1), { cancelled: { at: new Date().toISOString() } });
    await s.output.delete(cancelKey(s.jobId));
    const error = new CloudmillError(ErrorCode.BAD_RECORD, "record longer than 1048576 bytes (maxRecordBytes)");
    await failJobOfTask(s.deps, s.jobId, 0, error);
    expect(await exists(s.output, failureKey(s.jobId))).toBe(false);
    await failJobOfTask(s.deps, s.jobId, 1, error);
    expect(await exists(s.output, failureKey(s.jobId))).toBe(true);
  });

  it("a resume cut short after it removed a redone chunk's part queues that chunk when it is retried", async () => {
    const s = await setUp("redo-cut");
    await work(s);
    const manifest = await readJson(s.output, manifestKey(s.jobId), Manifest);
    await failJob(
      s.deps,
      { jobId: s.jobId, output: OUTPUT, chunks: CHUNKS, done: CHUNKS, startedAt: manifest.createdAt },
      new CloudmillError(ErrorCode.BAD_RECORD, "record longer than 1048576 bytes (maxRecordBytes)", { chunk: 2, input: "data.txt" }),
    );
    // The first invocation dies once the part is gone, as it removes the failure marker.
    const deps: SplitDeps = {
      ...s.deps,
      output: Object.assign(Object.create(s.output) as FsBlobStore, {
        delete: async (key: string) => {
          await s.output.delete(key);
          if (key === failureKey(s.jobId)) throw new Error("invocation timed out");
        },
      }),
    };
    await expect(resumeJob(deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).rejects.toThrow("invocation timed out");
    expect(await exists(s.output, partKey(s.jobId, 2))).toBe(false);
    expect(await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).toEqual({ kind: "resumed", tasks: 1, of: CHUNKS });
    expect((await work(s)).map((t) => t.chunk.index)).toEqual([2]);
    await reduceJob(s.deps, s.jobId);
    expectMatchesReference("wordcount", { k: "0" }, TEXT, await readJson(s.output, OUTPUT.result, z.unknown()));
  });

  it("a job that skips bad records keeps its record bound: a new one would mix two answers", async () => {
    const s = await setUp("skip", Date.now, "skip");
    await cancelJob(s.deps, s.jobId, OUTPUT);
    expect(await resumeJob(s.deps, s.jobId, { after: 0, maxRecordBytes: 4 * 1024 * 1024 }, { jobDeadlineSeconds: 600 })).toEqual({
      kind: "refused",
      reason: "a job that skips bad records keeps its old maxRecordBytes: start it again to change it",
    });
  });

  it("a job that never started is not resumed", async () => {
    const s = await setUp("unknown");
    expect(await resumeJob(s.deps, "no-such-job", { after: 0 }, { jobDeadlineSeconds: 600 })).toEqual({
      kind: "refused",
      reason: "no such job (it never started)",
    });
  });
});

describe("a resumed run's stragglers", () => {
  it("a backup whose send failed is queued by the next look: no marker stands for a backup never queued", async () => {
    let clock = Date.parse("2026-12-05T10:00:00Z");
    const { inputs, output, queue, deps } = localPipeline(path.join(dir, "backup-send"), { now: () => clock });
    const jobId = "backup-send-1";
    const bytes = Buffer.from(Array.from({ length: 400 }, (_, i) => `line ${i}\n`).join(""));
    const chunk = Math.ceil(bytes.length / 4);
    const { manifest } = await startJobOver(deps, inputs, bytes, jobId, { op: "count", backupAfterSeconds: 1 }, chunk);
    const tasks = (await takeAll(queue)).filter(isMapTask);
    for (const t of tasks.slice(0, -1)) await runTask(deps, t, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    const parts = new Map<number, string>();
    for await (const { key } of output.list(partsPrefix(jobId))) parts.set(parsePartKey(key)!.index, key);
    const last = tasks.at(-1)!.chunk.index;
    await markRunning(deps, jobId, last, new Date(clock).toISOString(), "slow", 0);
    clock += 120_000;
    const send = queue.sendBatch.bind(queue);
    queue.sendBatch = async () => {
      queue.sendBatch = send;
      throw new CloudmillError(ErrorCode.ENVIRONMENT, "SendMessageBatch failed: throttled");
    };
    await expect(launchBackups(deps, manifest, parts)).rejects.toMatchObject({ code: "ENVIRONMENT" });
    expect(await launchBackups(deps, manifest, parts)).toBe(1);
    expect((await takeAll(queue)).filter(isMapTask)).toMatchObject([{ chunk: { index: last }, backup: true }]);
  });

  it("are backed up again, whatever the run before backed up, and a copy of the run before cannot hide them", async () => {
    let clock = Date.parse("2026-12-05T10:00:00Z");
    const root = path.join(dir, "rebackup");
    const { inputs, output, queue, deps } = localPipeline(root, { now: () => clock });
    const jobId = "rebackup-1";
    const bytes = Buffer.from(Array.from({ length: 800 }, (_, i) => `line ${i}\n`).join(""));
    const { manifest } = await startJobOver(
      deps,
      inputs,
      bytes,
      jobId,
      { op: "count", backupAfterSeconds: 1 },
      Math.ceil(bytes.length / 8),
    );
    const tasks = (await takeAll(queue)).filter(isMapTask);
    const last = tasks.at(-1)!.chunk.index;
    // Every chunk but the last maps; the last runs on and on, in this run and the next.
    for (const t of tasks.slice(0, -1)) await runTask(deps, t, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    const parts = async (): Promise<Map<number, string>> => {
      const found = new Map<number, string>();
      for await (const { key } of output.list(partsPrefix(jobId))) {
        const part = parsePartKey(key);
        if (part) found.set(part.index, key);
      }
      return found;
    };
    await markRunning(deps, jobId, last, new Date(clock).toISOString(), "slow-0", 0);
    clock += 120_000;
    expect(await launchBackups(deps, manifest, await parts())).toBe(1);
    // Neither copy finishes: the job is cancelled and resumed, and the last chunk is queued again.
    expect((await takeAll(queue)).filter(isMapTask).map((t) => t.chunk.index)).toEqual([last]);
    await cancelJob(deps, jobId, OUTPUT);
    clock += 1000;
    expect(await resumeJob(deps, jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).toMatchObject({ kind: "resumed", tasks: 1 });
    const resumed = await readJson(output, manifestKey(jobId), Manifest);
    const [again] = (await takeAll(queue)).filter(isMapTask);
    expect(again).toMatchObject({ chunk: { index: last }, job: { generation: 1 } });

    clock += 1000;
    await markRunning(deps, jobId, last, new Date(clock).toISOString(), "slow-1", 1);
    // The first run's copy, still mapping, beats again after the new one.
    clock += 1000;
    await markRunning(deps, jobId, last, new Date(clock).toISOString(), "slow-0", 0);
    clock += 120_000;
    expect(await launchBackups(deps, resumed, await parts())).toBe(1);
    const [backup] = (await takeAll(queue)).filter(isMapTask);
    expect(backup).toMatchObject({ chunk: { index: last }, backup: true, job: { generation: 1 } });
    // Once per run: the next wake-up queues nothing more.
    expect(await launchBackups(deps, resumed, await parts())).toBe(0);
    expect(await backedUpTasks(deps, jobId)).toEqual([last, last]);

    // The backup wins; its run's race says so, the first run's does not.
    await runTask(deps, backup!, { checkOpDigest: false, ranOn: "fleet", worker: "backup" });
    const races = await backupRaces(deps, jobId, resumed.resumed);
    expect(races.map((r) => r.backupWon).sort()).toEqual([false, true]);
    await reduceJob(deps, jobId);
    expect(await readJson(output, OUTPUT.result, z.object({ records: z.number() }))).toEqual({ records: 800 });
  });
});

describe("a resumed job's merge tree", () => {
  it("keeps the merged parts over parts that stay, and merges again only above the chunks mapped anew", async () => {
    const root = path.join(dir, "carry");
    const { inputs, output, queue, deps } = localPipeline(root);
    const jobId = "carry-1";
    const lines = Array.from({ length: 800 }, (_, i) => `line ${i}`);
    const bytes = Buffer.from(`${lines.join("\n")}\n`);
    // 8 chunks at fan-in 2: level 1 merges pairs of parts (4 groups), level 2 pairs of those (2).
    const { manifest } = await startJobOver(deps, inputs, bytes, jobId, { op: "count", fanIn: 2 }, Math.ceil(bytes.length / 8));
    expect(manifest.chunks).toBe(8);
    const run = async (tasks: readonly TaskMessage[]) => {
      for (const t of tasks) await runTask(deps, t, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    };
    // Every chunk but the last maps; every merge that can be made is made.
    await run((await takeAll(queue)).filter((t) => !(isMapTask(t) && t.chunk.index === 7)));
    await reduceJob(deps, jobId, { fleet: true });
    const first = (await takeAll(queue)).filter(isMergeTask);
    expect(first.map((t) => `${t.merge.level}-${t.merge.group}`)).toEqual(["1-0", "1-1", "1-2"]);
    await run(first);
    await reduceJob(deps, jobId, { fleet: true });
    const second = (await takeAll(queue)).filter(isMergeTask);
    expect(second.map((t) => `${t.merge.level}-${t.merge.group}`)).toEqual(["2-0"]);
    await run(second);

    await cancelJob(deps, jobId, OUTPUT);
    expect(await resumeJob(deps, jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).toMatchObject({ kind: "resumed", tasks: 1 });
    const carried = async (generation: number): Promise<string[]> => {
      const keys: string[] = [];
      for await (const { key } of output.list(mergedPrefix(jobId, generation)))
        keys.push(key.slice(mergedPrefix(jobId, generation).length));
      return keys.sort();
    };
    // The highest merged part of each subtree that stays: level 2's first (over chunks 0-3), and level 1's third (4-5).
    expect(await carried(1)).toEqual(["1-0000002.part.json", "2-0000000.part.json"]);
    // Cancelled and resumed again before the last chunk maps: the same parts are kept, though the
    // first resume wrote no part under level 2's first.
    await takeAll(queue);
    await cancelJob(deps, jobId, OUTPUT);
    expect(await resumeJob(deps, jobId, { after: 1 }, { jobDeadlineSeconds: 600 })).toMatchObject({ kind: "resumed", tasks: 1 });
    expect(await carried(2)).toEqual(["1-0000002.part.json", "2-0000000.part.json"]);
    // The last chunk maps; the tree merges only its pair, then the pair above it.
    await run((await takeAll(queue)).filter(isMapTask));
    await reduceJob(deps, jobId, { fleet: true });
    const third = (await takeAll(queue)).filter(isMergeTask);
    expect(third.map((t) => `${t.merge.level}-${t.merge.group}`)).toEqual(["1-3"]);
    await run(third);
    await reduceJob(deps, jobId, { fleet: true });
    const fourth = (await takeAll(queue)).filter(isMergeTask);
    expect(fourth.map((t) => `${t.merge.level}-${t.merge.group}`)).toEqual(["2-1"]);
    await run(fourth);
    expect((await reduceJob(deps, jobId, { fleet: true })).kind).toBe("succeeded");
    expect(await readJson(output, OUTPUT.result, z.object({ records: z.number() }))).toEqual({ records: lines.length });
  });
});

describe("a reducer woken while a resume is under way", () => {
  it("judges nothing by the run before's deadline once the resume has begun", async () => {
    let clock = Date.parse("2026-12-05T10:00:00Z");
    const root = path.join(dir, "gap");
    const { inputs, output, queue, deps } = localPipeline(root, { now: () => clock });
    const jobId = "gap-1";
    const bytes = Buffer.from(Array.from({ length: 400 }, (_, i) => `line ${i}\n`).join(""));
    await startJobOver(deps, inputs, bytes, jobId, { op: "count", fanIn: 2 }, Math.ceil(bytes.length / 8));
    const tasks = await takeAll(queue);
    for (const t of tasks.slice(0, 4)) await runTask(deps, t, { checkOpDigest: false });
    // Past its deadline the job fails.
    clock += 2 * 3600_000;
    expect((await reduceJob(deps, jobId, { fleet: true })).kind).toBe("ended");
    expect(await exists(output, failureKey(jobId))).toBe(true);
    // A resume's first steps, as resumeJob takes them: the old end kept, its marker removed; the new manifest not yet written.
    const failure = await readJson(output, failureKey(jobId), z.unknown());
    await writeJson(output, pastEndKey(jobId, 1), { failure });
    await output.delete(failureKey(jobId));
    // A part event wakes the reducer in that moment: it must not fail the job by the old deadline.
    expect((await reduceJob(deps, jobId, { fleet: true })).kind).toBe("incomplete");
    expect(await exists(output, failureKey(jobId))).toBe(false);
    expect((await takeAll(queue)).filter(isMergeTask)).toEqual([]);
  });
});
