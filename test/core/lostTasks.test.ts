/**
 * Stage tasks lost once every chunk is mapped (a worker of an older version deletes a task kind
 * it does not know): the reducer queues a keyed job's missing reduce tasks again once their
 * lease has run out, as it does merges, but never while tasks wait on the queue; a resume that
 * queues no chunk sends the reducer's first wake-up itself. Answers are counted in the test.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { Manifest, TaskMessage } from "../../lib/core/job/manifest.js";
import { manifestKey } from "../../lib/core/keys.js";
import { noteLease } from "../../lib/core/pipeline/leases.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { readJson } from "../../lib/core/pipeline/blobJson.js";
import { cancelJob } from "../../lib/core/pipeline/cancel.js";
import type { SplitDeps } from "../../lib/core/pipeline/deps.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { resumeJob } from "../../lib/core/pipeline/resume.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { BUSY_QUEUE_LIMITS } from "../../lib/core/pipeline/wake.js";
import type { WakeSender } from "../../lib/core/ports.js";
import { prng } from "../../lib/dev/prng.js";
import type { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { expectMatchesReference, textOf } from "../helpers/devCloud.js";
import { keyedCounts, localPipeline, OUTPUT, startJobOver, takeAll } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-lost-tasks-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const registry = new OpRegistry(builtinOps);
const LEASE = 60_000;
/** The jobs' task time limit: how long the queue must look idle before a task past its lease is queued again. */
const TASK_TIMEOUT_MS = 10_000;

/** Records the wake-ups a role sends. */
class WakeLog implements WakeSender {
  readonly sent: { jobId: string; seconds: number }[] = [];
  async wakeAfter(jobId: string, seconds: number): Promise<void> {
    this.sent.push({ jobId, seconds });
  }
}

/** A store that refuses deletes, as S3 refuses the reducer's (it has no s3:DeleteObject). */
const withoutDelete = (store: FsBlobStore): FsBlobStore =>
  new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === "delete") return async (key: string) => Promise.reject(new Error(`AccessDenied: the reducer may not delete ${key}`));
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });

/** `stackTimeoutSeconds`: the stack's task time limit, for a job that sets none (then the job sets none). */
const setUp = async (name: string, bytes: Buffer, spec: Record<string, unknown>, chunkSize: number, stackTimeoutSeconds?: number) => {
  const wake = new WakeLog();
  let clock = Date.now();
  const { inputs, output, queue, deps } = localPipeline(path.join(dir, name), {
    registry,
    wake,
    taskLeaseMs: LEASE,
    now: () => clock,
    ...(stackTimeoutSeconds !== undefined ? { taskTimeoutSeconds: stackTimeoutSeconds } : {}),
  });
  // The reducer's own rights: it may write job state but delete nothing (infra/CloudmillPipeline.ts).
  const reducer: SplitDeps = { ...deps, output: withoutDelete(output) };
  const jobId = `${name}-1`;
  const timeout = stackTimeoutSeconds === undefined ? { taskTimeoutSeconds: TASK_TIMEOUT_MS / 1000 } : {};
  await startJobOver(deps, inputs, bytes, jobId, { ...spec, ...timeout } as never, chunkSize);
  const drain = (): Promise<TaskMessage[]> => takeAll(queue);
  const run = async (tasks: readonly TaskMessage[]): Promise<void> => {
    for (const task of tasks) await runTask(deps, task, { checkOpDigest: false });
  };
  const advance = (ms: number): void => {
    clock += ms;
  };
  return { deps, reducer, queue, output, wake, jobId, drain, run, advance };
};

/** Takes another job's task off the queue. */
const dropOther = async (s: Awaited<ReturnType<typeof setUp>>): Promise<void> => {
  const [other] = await s.queue.receive({ maxMessages: 1, waitSeconds: 0 });
  expect(JSON.parse(other!.body)).toEqual({ other: true });
  await s.queue.delete(other!.receiptHandle);
};

/** Lines of distinct-able text, and their counts as the test counts them. */
const tokens = (n: number, seed: number): { bytes: Buffer; counts: Map<string, number> } => {
  const next = prng(seed);
  const lines = Array.from({ length: n }, () => `t${Math.floor(next() ** 2 * 400)}`);
  const counts = new Map<string, number>();
  for (const l of lines) counts.set(l, (counts.get(l) ?? 0) + 1);
  return { bytes: Buffer.from(`${lines.join("\n")}\n`), counts };
};

const resultCounts = (s: Awaited<ReturnType<typeof setUp>>): Promise<Map<string, number>> => keyedCounts(s.output);

describe("a keyed job's reduce tasks lost after the map stage", () => {
  it("are queued again once their lease runs out and the queue holds nothing, and the job ends exact", async () => {
    const { bytes, counts } = tokens(6000, 31);
    const s = await setUp("reduce", bytes, { op: "distinct", partitions: 3 }, 2048);
    await s.run(await s.drain());
    expect((await reduceJob(s.reducer, s.jobId, { fleet: true })).kind).toBe("incomplete");
    const lost = await s.drain();
    expect(lost.map((t) => ("reduce" in t ? t.reduce.partition : -1))).toEqual([0, 1, 2]);

    // Within the lease: nothing is queued again.
    s.advance(LEASE / 2);
    expect((await reduceJob(s.reducer, s.jobId, { fleet: true })).kind).toBe("incomplete");
    expect(await s.drain()).toEqual([]);
    // Just past it, but with a task waiting on the queue (another job's backlog): still nothing.
    s.advance(LEASE / 2 + 1);
    await s.queue.sendBatch([JSON.stringify({ other: true })]);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect((await s.queue.depth()).visible).toBe(1);
    await dropOther(s);
    // The backlog gone: the first idle sighting only starts the wait for the task time limit (a
    // task received just before may still run).
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect(await s.drain()).toEqual([]);
    s.advance(TASK_TIMEOUT_MS - 1);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect(await s.drain()).toEqual([]);
    // Idle for the whole limit: the three are queued again, once.
    s.advance(1);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    const again = await s.drain();
    expect(again.map((t) => ("reduce" in t ? t.reduce.partition : -1))).toEqual([0, 1, 2]);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect(await s.drain()).toEqual([]);

    await s.run(again.slice(0, 2));
    // Partition 2's copy is lost too: after another lease and another idle spell, only it is queued again.
    s.advance(LEASE + 1);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect(await s.drain()).toEqual([]);
    s.advance(TASK_TIMEOUT_MS);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    const last = await s.drain();
    expect(last.map((t) => ("reduce" in t ? t.reduce.partition : -1))).toEqual([2]);
    await s.run(last);
    expect((await reduceJob(s.reducer, s.jobId, { fleet: true })).kind).toBe("succeeded");
    expect(await resultCounts(s)).toEqual(counts);
  });
});

describe("a lost reduce task behind a backlog that never clears", () => {
  it("is queued again once it has been past its lease for BUSY_QUEUE_LIMITS task time limits, and the job ends exact", async () => {
    const { bytes, counts } = tokens(4000, 33);
    const s = await setUp("busy", bytes, { op: "distinct", partitions: 2 }, 2048);
    await s.run(await s.drain());
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect((await s.drain()).length).toBe(2);
    // Another job's task waits on the queue throughout.
    await s.queue.sendBatch([JSON.stringify({ other: true })]);
    // 1 ms past the lease, then BUSY_QUEUE_LIMITS limits past it less 1 ms: nothing.
    s.advance(LEASE + 1);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    s.advance(BUSY_QUEUE_LIMITS * TASK_TIMEOUT_MS - 2);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect((await s.queue.depth()).visible).toBe(1);
    s.advance(1);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect((await s.queue.depth()).visible).toBe(3);
    await dropOther(s);
    const again = await s.drain();
    expect(again.map((t) => ("reduce" in t ? t.reduce.partition : -1))).toEqual([0, 1]);
    await s.run(again);
    expect((await reduceJob(s.reducer, s.jobId, { fleet: true })).kind).toBe("succeeded");
    expect(await resultCounts(s)).toEqual(counts);
  });
});

describe("merge tasks past their lease", () => {
  it("are not queued again while tasks wait on the queue", async () => {
    const bytes = textOf(20 * 150, 5);
    const s = await setUp("merge", bytes, { op: "count", fanIn: 4 }, Math.ceil(bytes.length / 20));
    await s.run(await s.drain());
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect((await s.drain()).length).toBe(5);
    s.advance(LEASE + 1);
    await s.queue.sendBatch([JSON.stringify({ other: true })]);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    s.advance(TASK_TIMEOUT_MS);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect((await s.queue.depth()).visible).toBe(1);
    await dropOther(s);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect(await s.drain()).toEqual([]);
    s.advance(TASK_TIMEOUT_MS);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    const again = await s.drain();
    expect(again.map((t) => ("merge" in t ? t.merge.group : -1))).toEqual([0, 1, 2, 3, 4]);
    await s.run(again);
    for (let round = 0; round < 5; round++) {
      const outcome = await reduceJob(s.reducer, s.jobId, { fleet: true });
      if (outcome.kind === "succeeded") break;
      await s.run(await s.drain());
    }
    expectMatchesReference("count", {}, bytes, await readJson(s.output, OUTPUT.result, z.unknown()));
  });
});

describe("merge and reduce tasks still running past their lease", () => {
  it("a reduce task whose worker notes its lease is not queued again; once the notes stop, it is", async () => {
    const { bytes, counts } = tokens(6000, 35);
    const s = await setUp("held-reduce", bytes, { op: "distinct", partitions: 3 }, 2048);
    await s.run(await s.drain());
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    const { chunks } = await readJson(s.output, manifestKey(s.jobId), Manifest);
    // All three are received; partition 1's worker runs it past the lease and notes it, as a heartbeat does.
    const running = await s.drain();
    expect(running.length).toBe(3);
    const note = () => noteLease(s.deps, s.jobId, chunks + 1);
    s.advance(LEASE + 1);
    await note();
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    s.advance(TASK_TIMEOUT_MS);
    await note();
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    const again = await s.drain();
    expect(again.map((t) => ("reduce" in t ? t.reduce.partition : -1))).toEqual([0, 2]);
    await s.run(again);
    // Its notes stop (the worker died): past another lease and idle spell, it is queued again.
    s.advance(LEASE + 1);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect(await s.drain()).toEqual([]);
    s.advance(TASK_TIMEOUT_MS);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    const last = await s.drain();
    expect(last.map((t) => ("reduce" in t ? t.reduce.partition : -1))).toEqual([1]);
    await s.run(last);
    expect((await reduceJob(s.reducer, s.jobId, { fleet: true })).kind).toBe("succeeded");
    expect(await resultCounts(s)).toEqual(counts);
  });

  it("a merge task whose worker notes its lease is not queued again", async () => {
    const bytes = textOf(20 * 150, 7);
    const s = await setUp("held-merge", bytes, { op: "count", fanIn: 4 }, Math.ceil(bytes.length / 20));
    await s.run(await s.drain());
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    const merges = await s.drain();
    expect(merges.length).toBe(5);
    // Merge groups 0 … 4 of level 1 are tasks 20 … 24; group 3's worker notes its lease.
    s.advance(LEASE + 1);
    await noteLease(s.deps, s.jobId, 23);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    s.advance(TASK_TIMEOUT_MS);
    await noteLease(s.deps, s.jobId, 23);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    const again = await s.drain();
    expect(again.map((t) => ("merge" in t ? t.merge.group : -1))).toEqual([0, 1, 2, 4]);
    await s.run([...again, merges[3]!]);
    for (let round = 0; round < 5; round++) {
      const outcome = await reduceJob(s.reducer, s.jobId, { fleet: true });
      if (outcome.kind === "succeeded") break;
      await s.run(await s.drain());
    }
    expectMatchesReference("count", {}, bytes, await readJson(s.output, OUTPUT.result, z.unknown()));
  });
});

describe("the idle spell of a job that sets no task time limit", () => {
  it("lasts the stack's limit, not the default's", async () => {
    const bytes = textOf(20 * 150, 7);
    const s = await setUp("stack-limit", bytes, { op: "count", fanIn: 4 }, Math.ceil(bytes.length / 20), 1800);
    await s.run(await s.drain());
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect((await s.drain()).length).toBe(5);
    s.advance(LEASE + 1);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    // Past the default's 15 minutes, within the stack's 30: nothing yet.
    s.advance(20 * 60_000);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect(await s.drain()).toEqual([]);
    s.advance(11 * 60_000);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect((await s.drain()).length).toBe(5);
  });
});

describe("a resume that queues no chunk", () => {
  it("of a keyed job cut short in its reduce stage: sends the reducer's first wake-up, and the lease starts afresh", async () => {
    const { bytes, counts } = tokens(3000, 32);
    const s = await setUp("resume-reduce", bytes, { op: "distinct", partitions: 2 }, 2048);
    await s.run(await s.drain());
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect((await s.drain()).length).toBe(2);
    await cancelJob(s.deps, s.jobId, OUTPUT);
    s.advance(2 * LEASE);
    // The job's start sent the first of its wake-ups (every job queued on the fleet keeps them); it is past.
    const sent = s.wake.sent.length;
    expect(await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 3600 })).toEqual({
      kind: "resumed",
      tasks: 2,
      of: expect.any(Number),
    });
    expect(s.wake.sent.slice(sent)).toEqual([{ jobId: s.jobId, seconds: Math.ceil((LEASE * 1.05 + 1000) / 1000) }]);
    // Workers take them (in flight, not visible). The resume noted them queued just now: past the
    // old lease, and past an idle spell, the reducer still does not queue them a second time.
    const taken = await s.queue.receive({ maxMessages: 10, waitSeconds: 0 });
    expect(taken.length).toBe(2);
    s.advance(LEASE / 2);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    s.advance(TASK_TIMEOUT_MS);
    await reduceJob(s.reducer, s.jobId, { fleet: true });
    expect(await s.queue.depth()).toEqual({ visible: 0, inFlight: 2 });
    const queued = taken.map((m) => TaskMessage.parse(JSON.parse(m.body)));
    expect(queued.map((t) => ("reduce" in t ? t.reduce.partition : -1))).toEqual([0, 1]);
    await s.run(queued);
    expect((await reduceJob(s.reducer, s.jobId, { fleet: true })).kind).toBe("succeeded");
    expect(await resultCounts(s)).toEqual(counts);
  });

  it("of a job cut short in its merge tree, or one that maps chunks again: sends a wake-up unless one is on its way", async () => {
    const bytes = textOf(20 * 150, 6);
    const s = await setUp("resume-merge", bytes, { op: "count", fanIn: 4 }, Math.ceil(bytes.length / 20));
    const maps = await s.drain();
    await s.run(maps);
    await cancelJob(s.deps, s.jobId, OUTPUT);
    s.advance(2 * LEASE);
    const sent = s.wake.sent.length;
    expect(await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 3600 })).toMatchObject({ kind: "resumed", tasks: 0 });
    expect(s.wake.sent.slice(sent).map((w) => w.jobId)).toEqual([s.jobId]);
    // The resumed run's merges, queued by the resume's own reduce.
    expect((await s.drain()).every((t) => "merge" in t)).toBe(true);

    const t = await setUp("resume-map", bytes, { op: "count", fanIn: 4 }, Math.ceil(bytes.length / 20));
    const all = await t.drain();
    await t.run(all.slice(1));
    await cancelJob(t.deps, t.jobId, OUTPUT);
    // The start's wake-up is still on its way: the resume sends none of its own.
    expect(t.wake.sent.map((w) => w.jobId)).toEqual([t.jobId]);
    expect(await resumeJob(t.deps, t.jobId, { after: 0 }, { jobDeadlineSeconds: 3600 })).toMatchObject({ kind: "resumed", tasks: 1 });
    expect(t.wake.sent.map((w) => w.jobId)).toEqual([t.jobId]);
    // Once it is past, a resume that maps chunks again sends one: no part's notice may come (wake.ts).
    await cancelJob(t.deps, t.jobId, OUTPUT);
    t.advance(2 * LEASE);
    expect(await resumeJob(t.deps, t.jobId, { after: 1 }, { jobDeadlineSeconds: 3600 })).toMatchObject({ kind: "resumed", tasks: 1 });
    expect(t.wake.sent.map((w) => w.jobId)).toEqual([t.jobId, t.jobId]);
  });
});
