/**
 * Backups for a keyed job's straggling reduce task. A worker running a reduce task past its
 * first heartbeat writes the task's running marker; the reducer, woken by it, queues one copy of
 * a reduce task that has run far longer than the finished ones' median, once three quarters of
 * them are done. Either copy's output is the same bytes; the first to finish wins. Answers are
 * counted in the test.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TaskWorker } from "../../lib/aws/TaskWorker.js";
import { reducerHandler } from "../../lib/aws/handlers.js";
import { failureKey, leaseNoteKey, outputPartKey, partsPrefix, reducePlanKey, runningKey, workPrefix } from "../../lib/core/keys.js";
import { cancelJob } from "../../lib/core/pipeline/cancel.js";
import type { ReduceTask } from "../../lib/core/job/manifest.js";
import { readBytes } from "../../lib/core/pipeline/blobJson.js";
import { handleDeadLetter } from "../../lib/core/pipeline/deadLetter.js";
import { ReducePlan } from "../../lib/core/pipeline/reduceTask.js";
import { silentLogger } from "../../lib/core/log.js";
import type { BlobStore, GetOptions } from "../../lib/core/ports.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { backupCounts, backupRaces, launchReduceBackups, markRunning } from "../../lib/core/pipeline/backups.js";
import type { SplitDeps } from "../../lib/core/pipeline/deps.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { prng } from "../../lib/dev/prng.js";
import { encodeEventKey } from "../../lib/dev/emulator.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";
import { waitFor } from "../helpers/devCloud.js";
import { keyedCounts, localPipeline, OUTPUT, startJobOver, takeAll, untilSucceededAndDrained } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-reduce-backups-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

/**
 * An output store whose reads of keys under `prefix` (a job's shuffle) first await `before`: a
 * slow worker's disk or network, or a reduce task held mid-merge.
 */
class DelayedShuffle implements BlobStore {
  constructor(
    private readonly store: BlobStore,
    private readonly prefix: string,
    private readonly before: (signal?: AbortSignal) => Promise<void>,
  ) {}
  get name() {
    return this.store.name;
  }
  head = (key: string) => this.store.head(key);
  async get(key: string, options?: GetOptions) {
    if (key.startsWith(this.prefix)) await this.before(options?.signal);
    return this.store.get(key, options);
  }
  put: BlobStore["put"] = (key, body, options) => this.store.put(key, body, options);
  list = (prefix: string) => this.store.list(prefix);
  delete = (key: string) => this.store.delete(key);
}

describe("a keyed job's straggling reduce task", () => {
  it("is marked running by its worker, backed up once by the reducer, and the job ends exact", async () => {
    const next = prng(71);
    const lines = Array.from({ length: 4000 }, () => `k${Math.floor(next() ** 2 * 500)}`);
    const expected = new Map<string, number>();
    for (const l of lines) expected.set(l, (expected.get(l) ?? 0) + 1);
    const { inputs, output, queue, deps } = localPipeline(dir);
    const jobId = "straggling-reduce-1";
    const { manifest } = await startJobOver(
      deps,
      inputs,
      Buffer.from(`${lines.join("\n")}\n`),
      jobId,
      { op: "distinct", partitions: 4, backupAfterSeconds: 1 },
      2048,
    );
    for (const task of await takeAll(queue)) await runTask(deps, task, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    expect((await reduceJob(deps, jobId, { fleet: true })).kind).toBe("incomplete");
    const reduces = await takeAll(queue);
    expect(reduces.length).toBe(4);
    // Three partitions done quickly; the fourth goes to a worker whose shuffle reads are slow.
    for (const task of reduces.slice(0, 3)) await runTask(deps, task, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    const slowStore = new DelayedShuffle(output, `${workPrefix(jobId)}shuffle/`, () => new Promise((r) => setTimeout(r, 3_000)));
    const slowDeps: SplitDeps = { ...deps, output: slowStore };
    await queue.sendBatch([JSON.stringify(reduces[3])]);
    const worker = new TaskWorker({ queue, deps: slowDeps, concurrency: 2, visibilitySeconds: 5, heartbeatSeconds: 1, waitSeconds: 1 });
    worker.start();
    try {
      const index = manifest.chunks + 3;
      await waitFor(
        "the reduce task's running marker",
        async () => ((await output.head(runningKey(jobId, index))) ? true : undefined),
        20_000,
        50,
      );
      // The reducer, woken by the marker a minute on: the copy is queued once, however often it is woken.
      const later = { ...deps, now: () => Date.now() + 60_000 };
      const event = {
        Records: [0, 1].map((i) => ({
          messageId: `m${i}`,
          body: JSON.stringify({
            Records: [
              {
                eventName: "ObjectCreated:Put",
                s3: { bucket: { name: output.name }, object: { key: encodeEventKey(runningKey(jobId, index)) } },
              },
            ],
          }),
        })),
      };
      await reducerHandler(later)(event);
      await reducerHandler(later)(event);
      expect(backupCounts(await backupRaces(deps, jobId))).toEqual({ launched: 1, won: 0 });
      // The copy runs on the same worker's second slot, as slowly: the first to finish writes the part.
      await untilSucceededAndDrained(deps, jobId, queue);
    } finally {
      await worker.stop(5_000);
      await queue.close();
    }
    expect(await keyedCounts(output)).toEqual(expected);
  }, 60_000);

  it("waits longer for a bigger partition: its time limit grows with its share of the input", async () => {
    const next = prng(72);
    const lines = Array.from({ length: 4000 }, () => `k${Math.floor(next() * 500)}`);
    let now = Date.now();
    const { inputs, output, queue, deps } = localPipeline(path.join(dir, "big"), { now: () => now });
    const jobId = "big-partition-1";
    const spec = { op: "distinct", partitions: 4, backupAfterSeconds: 60 };
    const { manifest } = await startJobOver(deps, inputs, Buffer.from(`${lines.join("\n")}\n`), jobId, spec, 2048);
    for (const task of await takeAll(queue)) await runTask(deps, task, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    await reduceJob(deps, jobId, { fleet: true });
    const reduces = await takeAll(queue);
    for (const task of reduces.slice(0, 3)) await runTask(deps, task, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    // Partition 3's plan made three times the size of its others' (its segments thrice): its limit is 180 s, not 60.
    const planKey = reducePlanKey(jobId, 3);
    const plan = ReducePlan.parse(JSON.parse((await readBytes(output, planKey)).toString("utf8")));
    const sizes = await Promise.all(
      [0, 1, 2].map(async (p) => {
        const other = ReducePlan.parse(JSON.parse((await readBytes(output, reducePlanKey(jobId, p))).toString("utf8")));
        return other.segments.reduce((n, [, a, b]) => n + b - a, 0);
      }),
    );
    const own = plan.segments.reduce((n, [, a, b]) => n + b - a, 0);
    const medianSize = [...sizes].sort((a, b) => a - b)[1]!;
    const factor = Math.ceil((3 * medianSize) / own);
    await output.put(planKey, JSON.stringify({ ...plan, segments: Array.from({ length: factor }, () => plan.segments).flat() }));
    const scale = (factor * own) / medianSize;
    const started = now;
    await markRunning(deps, jobId, manifest.chunks + 3, new Date(started).toISOString(), "w");
    const reduced: string[] = [];
    for await (const { key } of output.list(partsPrefix(jobId))) reduced.push(key);
    now = started + 60_000 * scale * 0.9;
    expect(await launchReduceBackups(deps, manifest, reduced)).toBe(0);
    now = started + 60_000 * scale * 1.1;
    expect(await launchReduceBackups(deps, manifest, reduced)).toBe(1);
    const [backup] = await takeAll(queue);
    expect(backup).toMatchObject({ reduce: { partition: 3 }, backup: true });
  });

  it("a backup copy that fails every attempt is dropped; the original's failure fails the job", async () => {
    const inputs = new FsBlobStore(path.join(dir, "dead-in"));
    const output = new FsBlobStore(path.join(dir, "dead-out"));
    const queue = new MemoryTaskQueue({ visibilitySeconds: 30 });
    const deps: SplitDeps = { output, queue, inputStore: () => inputs, registry: new OpRegistry(builtinOps), log: silentLogger };
    const jobId = "dead-backup-1";
    const { manifest } = await startJobOver(deps, inputs, Buffer.from("a\nb\n"), jobId, { op: "distinct", partitions: 4 }, 2048);
    const task: ReduceTask = { v: 1, jobId, reduce: { partition: 3, chunks: manifest.chunks }, job: manifest.job };
    expect(await handleDeadLetter(deps, JSON.stringify({ ...task, backup: true }), 3)).toBe("ignored");
    expect(await output.head(failureKey(jobId))).toBeUndefined();
    expect(await handleDeadLetter(deps, JSON.stringify(task), 3)).toBe("failed");
    expect(await output.head(failureKey(jobId))).toBeDefined();
  });
});

/** A gate: `until` resolves once `open()` is called, and rejects if its signal aborts first. */
const gate = () => {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const until = (signal?: AbortSignal): Promise<void> =>
    Promise.race([
      opened,
      new Promise<never>((_, reject) => signal?.addEventListener("abort", () => reject(new Error("aborted")), { once: true })),
    ]);
  return { open, until };
};

describe("a long reduce task on a worker", () => {
  it("notes its lease while it runs, and stops when its job is cancelled, writing no output part", async () => {
    const lines = Array.from({ length: 3000 }, (_, i) => `k${i % 97}`);
    const { inputs, output, queue, deps } = localPipeline(path.join(dir, "cancelled"));
    const jobId = "cancelled-reduce-1";
    const { manifest } = await startJobOver(
      deps,
      inputs,
      Buffer.from(`${lines.join("\n")}\n`),
      jobId,
      { op: "distinct", partitions: 2 },
      2048,
    );
    for (const task of await takeAll(queue)) await runTask(deps, task, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    expect((await reduceJob(deps, jobId, { fleet: true })).kind).toBe("incomplete");
    const [first] = await takeAll(queue);
    await queue.sendBatch([JSON.stringify(first)]);
    const held = gate();
    const worker = new TaskWorker({
      queue,
      deps: { ...deps, output: new DelayedShuffle(output, `${workPrefix(jobId)}shuffle/`, held.until) },
      concurrency: 1,
      visibilitySeconds: 5,
      heartbeatSeconds: 1,
      waitSeconds: 1,
    });
    const ended = new Promise<unknown>((resolve) => worker.on("task_done", (_task, outcome) => resolve(outcome)));
    worker.start();
    try {
      const index = manifest.chunks + 0;
      await waitFor(
        "the reduce task's lease note",
        async () => ((await output.head(leaseNoteKey(jobId, index))) ? true : undefined),
        20_000,
        50,
      );
      expect(await cancelJob(deps, jobId, OUTPUT)).toMatchObject({ kind: "cancelled" });
      // Within the worker's recheck of ended jobs (5 s), the task stops: its held reads abort.
      expect(await ended).toEqual({ kind: "job-ended" });
      held.open();
      await waitFor("the queue to drain", async () =>
        (await queue.depth()).inFlight + (await queue.depth()).visible === 0 ? true : undefined,
      );
    } finally {
      await worker.stop(5_000);
      await queue.close();
    }
    expect(await output.head(outputPartKey(jobId, 0))).toBeUndefined();
  }, 60_000);
});
