/**
 * Backups for a straggling merge task of an order-free job's merge tree. A worker running a
 * merge task past its first heartbeat writes the task's running marker (keyed by its index after
 * the chunks, as the report numbers it); the reducer, woken by it, queues one copy of a merge that
 * has run far longer than its level's finished ones. Both copies merge the same parts into the
 * same answer; the first to finish wins, and the job's count is exact. The expected count is the
 * test's own: the lines it wrote.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskWorker } from "../../lib/aws/TaskWorker.js";
import { reducerHandler } from "../../lib/aws/handlers.js";
import { backupKey, failureKey, manifestKey, mergedKey, mergeErrorKey, partsPrefix, runningKey } from "../../lib/core/keys.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { isMergeTask, type MergeTask, type TaskMessage } from "../../lib/core/job/manifest.js";
import type { BlobStore, GetOptions } from "../../lib/core/ports.js";
import { backupCounts, backupRaces, launchMergeBackups, markRunning } from "../../lib/core/pipeline/backups.js";
import { READ_ATTEMPTS, readJson } from "../../lib/core/pipeline/blobJson.js";
import { handleDeadLetter } from "../../lib/core/pipeline/deadLetter.js";
import type { SplitDeps } from "../../lib/core/pipeline/deps.js";
import { mergeIndexOf, mergeLevels, mergeTaskIndex } from "../../lib/core/pipeline/mergeTree.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { JobReport } from "../../lib/core/report/jobReport.js";
import { reportKey } from "../../lib/core/keys.js";
import { encodeEventKey } from "../../lib/dev/emulator.js";
import { waitFor } from "../helpers/devCloud.js";
import { localPipeline, OUTPUT, startJobOver, takeAll, untilSucceededAndDrained } from "../helpers/jobs.js";
import * as z from "zod";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-merge-backups-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

/** An output store whose reads of map parts wait `delayMs` first: a slow worker's network. */
const slowParts = (store: BlobStore, prefix: string, delayMs: number): BlobStore =>
  Object.assign(Object.create(store) as BlobStore, {
    name: store.name,
    async get(key: string, options?: GetOptions) {
      if (key.startsWith(prefix)) await new Promise((r) => setTimeout(r, delayMs));
      return store.get(key, options);
    },
  });

/** Waits for a task's running marker: its worker writes it at a heartbeat. */
const untilMarkedRunning = (output: BlobStore, jobId: string, index: number): Promise<true> =>
  waitFor("the merge task's running marker", async () => ((await output.head(runningKey(jobId, index))) ? true : undefined), 20_000, 50);

const eventOf = (bucket: string, key: string) => ({
  Records: [
    {
      messageId: "m0",
      body: JSON.stringify({
        Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: bucket }, object: { key: encodeEventKey(key) } } }],
      }),
    },
  ],
});

describe("a straggling merge task", () => {
  it("is marked running by its worker, backed up once by the reducer, and the job's count is exact", async () => {
    const lines = Array.from({ length: 3000 }, (_, i) => `line ${i}`);
    const { inputs, output, queue, deps } = localPipeline(path.join(dir, "tree"));
    const jobId = "straggling-merge-1";
    const bytes = Buffer.from(`${lines.join("\n")}\n`);
    // 8 chunks, fan-in 2: level 1 merges 4 pairs of parts, level 2 two pairs of those.
    const chunkSize = Math.ceil(bytes.length / 8);
    const { manifest } = await startJobOver(deps, inputs, bytes, jobId, { op: "count", fanIn: 2, backupAfterSeconds: 1 }, chunkSize);
    expect(manifest.chunks).toBe(8);
    for (const task of await takeAll(queue)) await runTask(deps, task, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    expect((await reduceJob(deps, jobId, { fleet: true })).kind).toBe("incomplete");
    const merges = (await takeAll(queue)).filter(isMergeTask);
    expect(merges.map((m) => m.merge.group)).toEqual([0, 1, 2, 3]);
    // Three merges done quickly; the fourth goes to a worker whose reads of map parts are slow.
    for (const task of merges.slice(0, 3)) await runTask(deps, task, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    const slowDeps: SplitDeps = { ...deps, output: slowParts(output, partsPrefix(jobId), 3_000) };
    await queue.sendBatch([JSON.stringify(merges[3])]);
    const worker = new TaskWorker({ queue, deps: slowDeps, concurrency: 2, visibilitySeconds: 5, heartbeatSeconds: 1, waitSeconds: 1 });
    worker.start();
    const index = mergeTaskIndex(mergeLevels(8, 2), 8, 1, 3);
    expect(index).toBe(11);
    try {
      await untilMarkedRunning(output, jobId, index);
      // The reducer, woken by the marker a minute on: the copy is queued once, however often it is woken.
      const later = { ...deps, now: () => Date.now() + 60_000 };
      await reducerHandler(later)(eventOf(output.name, runningKey(jobId, index)));
      await reducerHandler(later)(eventOf(output.name, runningKey(jobId, index)));
      expect(backupCounts(await backupRaces(deps, jobId))).toEqual({ launched: 1, won: expect.any(Number) });
      expect(await output.head(backupKey(jobId, index))).toBeDefined();
      await untilSucceededAndDrained(deps, jobId, queue);
    } finally {
      await worker.stop(5_000);
      await queue.close();
    }
    expect(await readJson(output, OUTPUT.result, z.unknown())).toEqual({ records: lines.length });
    // The report lists the merge task once, under its index, and counts its backup.
    const report = await readJson(output, reportKey(jobId), JobReport);
    expect(report.tasks.filter((t) => t.index === index)).toHaveLength(1);
    expect(report.backups).toMatchObject({ launched: 1 });
  }, 60_000);

  it("a worker whose read of the manifest fails at a merge's first heartbeat reads it again at the next", async () => {
    const lines = Array.from({ length: 2000 }, (_, i) => `line ${i}`);
    const { inputs, output, queue, deps } = localPipeline(path.join(dir, "manifest-retry"));
    const jobId = "manifest-retry-1";
    const bytes = Buffer.from(`${lines.join("\n")}\n`);
    await startJobOver(deps, inputs, bytes, jobId, { op: "count", fanIn: 2 }, Math.ceil(bytes.length / 8));
    for (const task of await takeAll(queue)) await runTask(deps, task, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    await reduceJob(deps, jobId, { fleet: true });
    const [merge] = (await takeAll(queue)).filter(isMergeTask);
    // The merge's reads of its parts wait until its running marker exists; the first heartbeat's
    // read of the manifest, made meanwhile, fails.
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let slowReads = 0;
    let manifestReads = 0;
    let failed = 0;
    const flaky: BlobStore = Object.assign(Object.create(output) as BlobStore, {
      name: output.name,
      async get(key: string, options?: GetOptions) {
        if (key.startsWith(partsPrefix(jobId))) {
          slowReads++;
          try {
            await gate;
          } finally {
            slowReads--;
          }
        }
        if (key === manifestKey(jobId) && slowReads > 0) {
          manifestReads++;
          // As many times as a read is tried: that heartbeat's read of the manifest fails.
          if (failed < READ_ATTEMPTS) {
            failed++;
            throw new CloudmillError(ErrorCode.ENVIRONMENT, "S3 read failed (injected)");
          }
        }
        return output.get(key, options);
      },
    });
    await queue.sendBatch([JSON.stringify(merge)]);
    const worker = new TaskWorker({
      queue,
      deps: { ...deps, output: flaky },
      concurrency: 1,
      visibilitySeconds: 5,
      heartbeatSeconds: 1,
      waitSeconds: 1,
    });
    worker.start();
    const index = mergeTaskIndex(mergeLevels(8, 2), 8, 1, merge!.merge.group);
    try {
      await untilMarkedRunning(output, jobId, index);
    } finally {
      release();
      await worker.stop(10_000);
      await queue.close();
    }
    expect(failed).toBe(READ_ATTEMPTS);
    expect(manifestReads).toBeGreaterThan(READ_ATTEMPTS);
  }, 60_000);

  it("a backup copy that fails every attempt is dropped; the original's failure fails the job", async () => {
    const { inputs, queue, deps } = localPipeline(path.join(dir, "dead"));
    const jobId = "dead-merge-backup-1";
    const bytes = Buffer.from(Array.from({ length: 200 }, (_, i) => `l${i}\n`).join(""));
    await startJobOver(deps, inputs, bytes, jobId, { op: "count", fanIn: 2 }, Math.ceil(bytes.length / 4));
    await takeAll(queue);
    const manifestJob = (await readJson(deps.output, `_work/${jobId}/manifest.json`, z.object({ job: z.unknown() }))).job;
    const task = { v: 1, jobId, merge: { level: 1, group: 0, from: 0, to: 2 }, job: manifestJob } as MergeTask;
    expect(await handleDeadLetter(deps, JSON.stringify({ ...task, backup: true }), 3)).toBe("ignored");
    expect(await handleDeadLetter(deps, JSON.stringify(task), 3)).toBe("failed");
  });

  it("a small level is judged once one merge is done; a copy of another run, or a second copy, changes nothing", async () => {
    const { inputs, output, queue, deps } = localPipeline(path.join(dir, "levels"));
    const jobId = "small-level-1";
    const bytes = Buffer.from(Array.from({ length: 800 }, (_, i) => `l${i}\n`).join(""));
    const { manifest } = await startJobOver(
      deps,
      inputs,
      bytes,
      jobId,
      { op: "count", fanIn: 2, backupAfterSeconds: 1 },
      Math.ceil(bytes.length / 8),
    );
    const run = async (tasks: readonly TaskMessage[]) => {
      for (const t of tasks) await runTask(deps, t, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    };
    await run(await takeAll(queue));
    for (let level = 1; level <= 2; level++) {
      await reduceJob(deps, jobId, { fleet: true });
      const merges = (await takeAll(queue)).filter(isMergeTask);
      expect(merges.map((m) => m.merge.level)).toEqual(level === 1 ? [1, 1, 1, 1] : [2, 2]);
      // Level 2 holds two merges: the first finishes, the second runs on.
      await run(level === 1 ? merges : merges.slice(0, 1));
    }
    const levels = mergeLevels(8, 2);
    const index = mergeTaskIndex(levels, 8, 2, 1);
    const merged: string[] = [];
    for await (const { key } of output.list(`_work/${jobId}/merged/`)) merged.push(key);
    const started = new Date(Date.now() - 120_000).toISOString();
    const later = { ...deps, now: () => Date.now() };
    // Its running marker says it runs in another run of the job (queued before a resume): no backup.
    await markRunning(deps, jobId, index, started, "w", 1);
    expect(await launchMergeBackups(later, manifest, merged)).toBe(0);
    // In this run, one done merge of its level is measure enough: two minutes is past 3× its time and a second.
    await markRunning(deps, jobId, index, started, "w", 0);
    expect(await launchMergeBackups(later, manifest, merged)).toBe(1);
    const [backup] = (await takeAll(queue)).filter(isMergeTask);
    expect(backup).toMatchObject({ merge: { level: 2, group: 1 }, backup: true });
    // A worker knows the merge's index from the manifest; a copy of another run has none (it writes no marker).
    expect(await mergeIndexOf(deps, backup!)).toBe(index);
    expect(await mergeIndexOf(deps, { ...backup!, job: { ...backup!.job, generation: 1 } })).toBeUndefined();
    // The original, reading slowly, is overtaken: the backup writes the merged part first, and the
    // original, finishing later, writes nothing over it.
    const original: MergeTask = { ...backup!, backup: undefined };
    delete (original as { backup?: true }).backup;
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const held: BlobStore = Object.assign(Object.create(output) as BlobStore, {
      name: output.name,
      async get(key: string, options?: GetOptions) {
        if (key.startsWith(`_work/${jobId}/merged/`)) await gate;
        return output.get(key, options);
      },
    });
    const late = runTask({ ...deps, output: held }, original, {
      checkOpDigest: false,
      ranOn: "fleet",
      worker: "original",
      mayHaveBackup: () => true,
    });
    await runTask(deps, backup!, { checkOpDigest: false, ranOn: "fleet", worker: "backup" });
    release();
    await late;
    const part = await readJson(
      output,
      mergedKey(jobId, 0, 2, 1),
      z.object({ ran: z.object({ worker: z.string(), backup: z.literal(true) }) }),
    );
    expect(part.ran).toMatchObject({ worker: "backup", backup: true });
    expect(backupCounts(await backupRaces(deps, jobId))).toEqual({ launched: 1, won: 1 });
  });

  it("a backup whose merge cannot run (its children are not there) is dropped by the worker, never failing the job", async () => {
    const { inputs, output, queue, deps } = localPipeline(path.join(dir, "stale"));
    const jobId = "stale-backup-1";
    const bytes = Buffer.from(Array.from({ length: 800 }, (_, i) => `l${i}\n`).join(""));
    const { manifest } = await startJobOver(deps, inputs, bytes, jobId, { op: "count", fanIn: 2 }, Math.ceil(bytes.length / 8));
    await takeAll(queue);
    // A level-2 merge's backup, queued as a stale marker would have it: level 1 has not run.
    const backup: MergeTask = { v: 1, jobId, merge: { level: 2, group: 0, from: 0, to: 2 }, job: manifest.job, backup: true };
    await queue.sendBatch([JSON.stringify(backup)]);
    const worker = new TaskWorker({ queue, deps, concurrency: 1, visibilitySeconds: 5, heartbeatSeconds: 1, waitSeconds: 1 });
    const dropped = new Promise<void>((resolve) => {
      worker.once("task_done", () => resolve());
      worker.once("task_failed", () => resolve());
    });
    worker.start();
    try {
      await dropped;
    } finally {
      await worker.stop(5_000);
      await queue.close();
    }
    expect(await output.head(failureKey(jobId))).toBeUndefined();
    // Nor is its error recorded where its original's would go: the job's failure, if any, names the original's.
    expect(await output.head(mergeErrorKey(jobId, 0, 2, 0))).toBeUndefined();
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0 });
  });
});
