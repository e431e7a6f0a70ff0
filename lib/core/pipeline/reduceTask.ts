/**
 * A keyed job's second stage. Once every map part exists, the reducer writes each partition's
 * plan (the shuffle segments it merges) and enqueues one reduce task per partition; a reduce
 * task on the fleet merges its segments in bounded memory (RunMerge) and writes its partition
 * of the output, one JSON line per key in key order, then its part. Keys of everything it
 * writes are pure functions of (job, partition), and its bytes of the shuffle alone, so a
 * duplicated or repeated reduce task writes the very same objects.
 */
import { randomUUID } from "node:crypto";
import { PassThrough } from "node:stream";
import * as z from "zod";
import { DEFAULTS } from "../constants.js";
import { CloudmillError, ErrorCode } from "../errors.js";
import {
  backupWonKey,
  outputPartKey,
  partKey,
  reduceEnqueuedKey,
  reducePlanKey,
  reduceRequeuedKey,
  reduceRunsKey,
  shuffleKey,
  spillPrefix,
} from "../keys.js";
import { RunLog, RunLogJson } from "../report/jobReport.js";
import { mapInOrder } from "../mapInOrder.js";
import { JobStatus, TaskRun, TaskStart, type Manifest, type ReduceTask } from "../job/manifest.js";
import { encodeShuffle, sumFieldCounts, type KeyedPartial, type ShuffleRef } from "../shuffle/shuffleRun.js";
import { refuseAbsentFields } from "../ops/recordFields.js";
import { sortedPieces, sortFormatOf, sortPlanner, type SortSpill } from "./sortStage.js";
import type { SortSamples } from "../shuffle/sortSamples.js";
import type { ShuffleRefs } from "../ops/keyedOp.js";
import { RunMerge } from "../shuffle/runMerge.js";
import { mergeRows, type RowsWritten } from "../shuffle/keyedRows.js";
import type { AnyOp } from "../ops/types.js";
import type { BlobStore, TaskQueue } from "../ports.js";
import { nowOf, type PipelineDeps } from "./deps.js";
import { exists, readBytes, readJson, readJsonIfExists, writeJson } from "./blobJson.js";
import type { Part, Reading } from "./part.js";
import { SniffedSeparator } from "./part.js";
import { enqueueTasks } from "./enqueue.js";
import type { WhereRan } from "./status.js";
import { guardOf } from "./opGuard.js";
import { TASK_LEASE_MS } from "./wake.js";
import { heldLeases } from "./leases.js";

/** The segments one reduce task merges: [shuffle object, start, end], in chunk order. */
const SortKeySchema = z.tuple([z.union([z.literal(0), z.literal(1)]), z.number(), z.string()]);
export const ReducePlan = z.strictObject({
  v: z.literal(1),
  jobId: z.string(),
  partition: z.number().int().nonnegative(),
  segments: z.array(z.tuple([z.string(), z.number().int().nonnegative(), z.number().int().nonnegative()])),
  /** A sort's key range [lo, hi) (null: unbounded); its segments bracket it, and the merge keeps exactly it. */
  range: z.strictObject({ lo: SortKeySchema.nullable(), hi: SortKeySchema.nullable() }).optional(),
});
export type ReducePlan = z.infer<typeof ReducePlan>;

/** What a reduce task's part holds: its output object and what is in it. */
export const ReducedPartition = z.strictObject({
  key: z.string(),
  records: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  /** Bytes the merge wrote to scratch (0: it fit in memory). */
  spilledBytes: z.number().int().nonnegative(),
});
export type ReducedPartition = z.infer<typeof ReducedPartition>;

/** Written once a keyed job's reduce tasks are enqueued: what the map stage's merge learnt. */
export const ReduceStarted = z.strictObject({
  at: z.string(),
  skipped: z.number().int().nonnegative(),
  sniffed: z.array(SniffedSeparator),
  /** The map stage's first task and where its tasks ran. */
  firstChunk: TaskStart.optional(),
  ranOn: JobStatus.shape.ranOn,
});
export type ReduceStarted = z.infer<typeof ReduceStarted>;

/** A keyed job's result: where its parts are. */
export interface KeyedResult {
  readonly records: number;
  readonly partitions: number;
  /** Bytes the reduce tasks wrote to scratch and read back (0: every partition merged in memory). */
  readonly spilledBytes: number;
  readonly parts: readonly { readonly key: string; readonly records: number; readonly bytes: number }[];
}

/** Shuffle objects and plans written at once. */
const WRITES_AT_ONCE = 16;
/** Segments a reduce task reads ahead of the one it merges. */
const READ_AHEAD = 4;

/**
 * A keyed op's part: each reading's table written to the shuffle (partitioned and sorted by
 * key), and in its place the reference a reduce task follows.
 */
export const shufflePart = async (deps: PipelineDeps, jobId: string, partitions: number, part: Part): Promise<Part> => {
  const write = async (partial: unknown, reading: number): Promise<ShuffleRef> => {
    const key = shuffleKey(jobId, part.index, reading);
    const { pairs, fields } = partial as KeyedPartial;
    const { bytes, segments } = encodeShuffle(pairs, partitions);
    await deps.output.put(key, bytes);
    return { key, segments, ...(fields ? { fields } : {}) };
  };
  const q = part.quotes;
  const inside = q?.inside;
  const [outRef, insideRef] = await Promise.all([
    // A reading that ended in an error has no table (its partial is null): it is never chosen.
    part.partial === null ? Promise.resolve(null) : write(part.partial, 0),
    inside && !inside.error ? write(inside.partial, 1) : Promise.resolve(undefined),
  ]);
  const insideReading: Reading | undefined = inside ? { ...inside, partial: insideRef ?? null } : undefined;
  return { ...part, partial: outRef, ...(q ? { quotes: { ...q, ...(insideReading ? { inside: insideReading } : {}) } } : {}) };
};

/** A sort's plans, cut one partition at a time from its packed samples. */
const sortPlanOf = (samples: SortSamples, partitions: number, jobId: string): ((partition: number) => ReducePlan) => {
  const cut = sortPlanner(samples, partitions);
  return (partition) => ({ v: 1, jobId, partition, ...cut(partition) });
};

/** A hash-partitioned job's plans: each partition's segment of every map part, gathered once. */
const hashPlanOf = (refs: ShuffleRefs, partitions: number, jobId: string): ((partition: number) => ReducePlan) => {
  const plans: ReducePlan[] = Array.from({ length: partitions }, (_, partition) => ({ v: 1, jobId, partition, segments: [] }));
  for (const ref of refs) for (const [p, start, end] of ref.segments) plans[p]!.segments.push([ref.key, start, end]);
  return (partition) => plans[partition]!;
};

/**
 * Writes each partition's plan and enqueues the reduce tasks, then marks them enqueued (so a
 * later call does nothing). Two reducers may both get this far: their tasks are duplicates,
 * which find their part written and stop.
 */
export const startReduce = async (
  deps: PipelineDeps & { readonly queue: TaskQueue },
  manifest: Manifest,
  refs: ShuffleRefs | SortSamples,
  merged: { readonly skipped: number; readonly sniffed: readonly SniffedSeparator[]; readonly ran: WhereRan; readonly runs?: RunLog },
): Promise<ReduceStarted> => {
  const { jobId, job } = manifest;
  const partitions = job.partitions!;
  const sorts = deps.registry.get(job.op).sorts;
  // Before any reduce task: a field no record had fails the job, with nothing written.
  if (!sorts) refuseAbsentFields(sumFieldCounts((refs as ShuffleRefs).map((ref) => ref.fields)));
  const planOf = sorts ? sortPlanOf(refs as SortSamples, partitions, jobId) : hashPlanOf(refs as ShuffleRefs, partitions, jobId);
  const all = Array.from({ length: partitions }, (_, partition) => partition);
  await mapInOrder(all, WRITES_AT_ONCE, (partition) => writeJson(deps.output, reducePlanKey(jobId, partition), planOf(partition)));
  // The map stage's runs, which the job's report needs once its reduce tasks are done.
  if (merged.runs?.size) await writeJson(deps.output, reduceRunsKey(jobId), merged.runs);
  await enqueueTasks(deps.queue, reduceTasksOf(manifest, all));
  const started: ReduceStarted = {
    at: new Date(nowOf(deps)).toISOString(),
    skipped: merged.skipped,
    sniffed: [...merged.sniffed],
    ...merged.ran,
  };
  await writeJson(deps.output, reduceEnqueuedKey(jobId), started);
  return started;
};

/** The reduce tasks of a keyed job's partitions. */
export const reduceTasksOf = (manifest: Manifest, partitions: readonly number[]): ReduceTask[] =>
  partitions.map((partition) => ({ v: 1, jobId: manifest.jobId, reduce: { partition, chunks: manifest.chunks }, job: manifest.job }));

/** When the reduce tasks were last queued again (ms), for their lease. */
const Requeued = z.strictObject({ at: z.number() });

/** Notes that a job's missing reduce tasks were queued again just now (their lease starts over). */
export const noteReduceRequeued = (deps: PipelineDeps, jobId: string): Promise<void> =>
  writeJson(deps.output, reduceRequeuedKey(jobId), { at: nowOf(deps) });

/**
 * Queues again each reduce task with no part once the lease has run out since the tasks were
 * last queued: its message was lost (a worker of an older version deletes a task kind it does
 * not know). Queued first, then noted: a reducer that dies between the two queues them again,
 * and a copy finds its part written or writes the same bytes. Returns how many were queued.
 */
export const requeueReduceTasks = async (
  deps: PipelineDeps & { readonly queue: TaskQueue; readonly taskLeaseMs?: number },
  manifest: Manifest,
  started: ReduceStarted,
  parts: ReadonlyMap<number, string>,
  requeue: (pastLeaseSince: number) => Promise<boolean>,
): Promise<number> => {
  const requeued = await readJsonIfExists(deps.output, reduceRequeuedKey(manifest.jobId), Requeued);
  const last = Math.max(Date.parse(started.at), requeued?.at ?? 0);
  const lease = deps.taskLeaseMs ?? TASK_LEASE_MS;
  if (nowOf(deps) - last < lease) return 0;
  const missing = Array.from({ length: manifest.job.partitions! }, (_, p) => p).filter((p) => !parts.has(manifest.chunks + p));
  if (missing.length === 0) return 0;
  // A task whose worker still notes its lease runs on: a long partition, not a lost message.
  const held = await heldLeases(
    deps,
    manifest.jobId,
    missing.map((p) => manifest.chunks + p),
    manifest.job.generation ?? 0,
    lease,
  );
  const partitions = missing.filter((p) => !held.has(manifest.chunks + p));
  if (partitions.length === 0 || !(await requeue(last + lease))) return 0;
  await enqueueTasks(deps.queue, reduceTasksOf(manifest, partitions));
  await noteReduceRequeued(deps, manifest.jobId);
  return partitions.length;
};

export interface ReduceOptions {
  readonly signal?: AbortSignal;
  /** The run to record in the task's part, given the bytes and the shuffle segments it read. */
  readonly ran?: (bytes: number, objects: number) => TaskRun;
}

/** Where a reduce task spills, and past how many bytes: the worker's local disk, or else the output store. */
export interface SpillConfig {
  readonly scratch?: BlobStore;
  readonly spillBytes?: number;
}

const keyedOf = (op: AnyOp) => {
  if (!op.keyed) throw new CloudmillError(ErrorCode.INTERNAL, `op ${op.name} is not keyed, but a reduce task names it`);
  return op.keyed;
};

/** Runs one reduce task: merges its partition's segments and writes its output part, then its part. */
export const reducePartition = async (
  deps: PipelineDeps & SpillConfig,
  task: ReduceTask,
  options: ReduceOptions = {},
): Promise<{ readonly bytes: number; readonly partial: ReducedPartition }> => {
  const { jobId, job } = task;
  const { partition, chunks } = task.reduce;
  const plan = await readJson(deps.output, reducePlanKey(jobId, partition), ReducePlan, options.signal);
  const { bytes, partial } = deps.registry.get(job.op).sorts
    ? await sortPartition(deps, task, plan, options)
    : await combinePartition(deps, task, plan, options);
  const part: Part = {
    v: 1,
    jobId,
    index: chunks + partition,
    partial,
    skipped: 0,
    ...(options.ran ? { ran: options.ran(bytes, plan.segments.length) } : {}),
  };
  const key = partKey(jobId, chunks + partition);
  // The other copy (a backup, or the original) finished first: its part stands, and the output
  // this copy wrote is the same bytes.
  if (await exists(deps.output, key)) return { bytes, partial };
  await writeJson(deps.output, key, part);
  if (task.backup)
    await writeJson(deps.output, backupWonKey(jobId, chunks + partition, task.job.generation), { at: new Date(nowOf(deps)).toISOString() });
  return { bytes, partial };
};

/** Merges one partition's plan into its output part: the input bytes read, and what the part holds. */
type PartitionReducer = (
  deps: PipelineDeps & SpillConfig,
  task: ReduceTask,
  plan: ReducePlan,
  options: ReduceOptions,
) => Promise<{ readonly bytes: number; readonly partial: ReducedPartition }>;

/** A sort's partition: its key range of every run, merged in order, as its output part's lines. */
const sortPartition: PartitionReducer = async (deps, task, plan, { signal }) => {
  const { jobId, job } = task;
  const { partition } = task.reduce;
  if (!plan.range) throw new CloudmillError(ErrorCode.INTERNAL, `the plan of partition ${partition} has no key range`);
  const spill: SortSpill = { prefix: spillPrefix(jobId, partition, randomUUID()), written: [], bytes: 0 };
  const scratch = deps.scratch ?? deps.output;
  try {
    const pieces = await sortedPieces(deps, sortFormatOf(job.format), { range: plan.range, segments: plan.segments }, spill, signal);
    let records = 0;
    let bytes = 0;
    const counted = async function* (): AsyncGenerator<Buffer> {
      for await (const piece of pieces) {
        for (let i = piece.indexOf(0x0a); i !== -1; i = piece.indexOf(0x0a, i + 1)) records++;
        bytes += piece.length;
        yield piece;
      }
    };
    const key = outputPartKey(jobId, partition, ".txt");
    await deps.output.put(key, counted(), { contentType: "text/plain" });
    const read = plan.segments.reduce((n, [, start, end]) => n + end - start, 0);
    return { bytes: read, partial: { key, records, bytes, spilledBytes: spill.bytes } };
  } finally {
    await Promise.all(spill.written.map((k) => scratch.delete(k).catch(() => undefined)));
  }
};

/** A partition's merge, here or on a mapper thread: runs go in in order, the rows come out. */
interface Reducing {
  addRun(bytes: Buffer, where: string): Promise<void>;
  /** Merges to the end, handing `piece` the rows a MiB or so at a time, in key order. */
  finish(piece: (bytes: Buffer) => Promise<void>): Promise<RowsWritten>;
  /** Removes the spilled runs left, and gives the thread back. */
  close(): Promise<void>;
}

/**
 * A keyed op's partition: its segments' pairs combined by key, one line per key in key order.
 * A lab's op merges on a mapper thread where the worker has them, under the task's time and heap
 * limits, as its map and merge tasks do: a `combine`, `reduce` or `row` that never returns or
 * grows without bound fails its task, and the worker's main thread keeps every slot's heartbeats.
 */
const combinePartition: PartitionReducer = async (deps, task, plan, { signal }) => {
  const { jobId, job } = task;
  const { partition } = task.reduce;
  const op = deps.registry.get(job.op);
  const keyed = keyedOf(op);
  const what = `partition ${partition}'s reduce task of job ${jobId}`;
  const spillBytes = deps.spillBytes ?? DEFAULTS.reduceSpillBytes;
  const scratch = deps.scratch ?? deps.output;
  const prefix = spillPrefix(jobId, partition, randomUUID());
  if (op.digest !== undefined && deps.mappers) {
    const remote = deps.mappers.reduce(
      {
        op: op.name,
        params: job.params,
        what,
        spillBytes,
        prefix,
        ...(signal ? { signal } : {}),
        ...(job.taskTimeoutSeconds !== undefined ? { timeoutSeconds: job.taskTimeoutSeconds } : {}),
        ...(job.taskMemoryMiB !== undefined ? { memoryMiB: job.taskMemoryMiB } : {}),
      },
      scratch,
    );
    return reduceSegments(deps, task, plan, AbortSignal.any([remote.signal, ...(signal ? [signal] : [])]), remote);
  }
  const params = op.parseParams(job.params);
  // Elsewhere (no mapper threads, or cloudmill's own op) on this thread: guarded, so that one that never returns ends the worker.
  const guard = guardOf(deps, op, what, job.taskTimeoutSeconds);
  const merge = new RunMerge({
    combine: (a, b) => guard.run(() => keyed.combine(a, b, params)),
    ...(keyed.toJson ? { toJson: keyed.toJson } : {}),
    ...(keyed.gathers ? { gathers: true } : {}),
    spillBytes,
    scratch,
    prefix,
    ...(signal ? { signal } : {}),
  });
  return reduceSegments(deps, task, plan, signal, {
    addRun: (bytes, where) => merge.addRun(bytes, where),
    finish: (piece) => mergeRows(merge, (k, value) => guard.run(() => keyed.row(k, value, params)), piece),
    close: async () => {
      guard.close();
      await merge.discard();
    },
  });
};

/** Feeds a partition's segments to its merge, a few read ahead, and uploads the rows as they come. */
const reduceSegments = async (
  deps: PipelineDeps,
  task: ReduceTask,
  plan: ReducePlan,
  signal: AbortSignal | undefined,
  reducing: Reducing,
): Promise<{ readonly bytes: number; readonly partial: ReducedPartition }> => {
  const { jobId } = task;
  const { partition } = task.reduce;
  // A copy that fails or is abandoned part-way (a read fails, a backup wins) removes its runs too.
  try {
    let read = 0;
    const segments = plan.segments;
    const fetch = (i: number) => {
      const [key, start, end] = segments[i]!;
      const p = readBytes(deps.output, key, signal, { start, end });
      p.catch(() => undefined);
      return p;
    };
    const ahead: Promise<Buffer>[] = [];
    for (let i = 0; i < Math.min(READ_AHEAD, segments.length); i++) ahead.push(fetch(i));
    for (let i = 0; i < segments.length; i++) {
      const bytes = await ahead.shift()!;
      if (i + READ_AHEAD < segments.length) ahead.push(fetch(i + READ_AHEAD));
      read += bytes.length;
      await reducing.addRun(bytes, `${segments[i]![0]} bytes ${segments[i]![1]}-${segments[i]![2]}`);
    }
    // The part streams out as the merge emits it: memory holds a piece of it, not the partition's output.
    const key = outputPartKey(jobId, partition);
    const out = new PassThrough();
    // Its errors reach the caller through the merge and the upload; destroyed before the upload
    // reads it (a row that throws at once), it would otherwise be an unhandled 'error' event.
    out.on("error", () => undefined);
    let bytes = 0;
    const merged = reducing
      .finish(async (piece) => {
        bytes += piece.length;
        if (!out.write(piece)) await drained(out);
      })
      .then((written) => {
        out.end();
        return written;
      });
    // A failed merge fails the upload (nothing is published), and a failed upload stops the merge.
    merged.catch((err: unknown) => out.destroy(err as Error));
    const [{ records, spilledBytes }] = await Promise.all([
      merged,
      deps.output.put(key, out, { contentType: "application/x-ndjson" }),
    ]).catch((err: unknown) => {
      out.destroy(err as Error);
      throw err;
    });
    return { bytes: read, partial: { key, records, bytes, spilledBytes } };
  } finally {
    await reducing.close();
  }
};

/** Resolves when the stream wants more, rejects when it fails (its reader failed, or it was destroyed). */
const drained = (stream: PassThrough): Promise<void> =>
  new Promise((resolve, reject) => {
    if (stream.destroyed) return reject(stream.errored ?? new CloudmillError(ErrorCode.INTERNAL, "the output part's stream was closed"));
    const onDrain = (): void => {
      stream.off("error", onError);
      resolve();
    };
    const onError = (err: Error): void => {
      stream.off("drain", onDrain);
      reject(err);
    };
    stream.once("drain", onDrain);
    stream.once("error", onError);
  });

/** A keyed job's result once every reduce part exists: its parts, in partition order; their runs go to `runs` (the report). */
export const keyedResult = async (
  deps: PipelineDeps,
  manifest: Manifest,
  uri: (key: string) => string,
  runs?: RunLog,
): Promise<KeyedResult> => {
  const partitions = manifest.job.partitions!;
  const read = await mapInOrder(
    Array.from({ length: partitions }, (_, p) => p),
    WRITES_AT_ONCE,
    async (p) =>
      readJson(
        deps.output,
        partKey(manifest.jobId, manifest.chunks + p),
        z.object({ partial: ReducedPartition, ran: z.unknown().optional() }),
      ),
  );
  // A run only the report reads: one this version cannot read is left out, never failing the job.
  read.forEach(({ ran }, p) => {
    const run = TaskRun.safeParse(ran);
    if (run.success) runs?.add(manifest.chunks + p, run.data);
  });
  const parts = read.map((r) => r.partial);
  return {
    records: parts.reduce((n, p) => n + p.records, 0),
    partitions,
    spilledBytes: parts.reduce((n, p) => n + p.spilledBytes, 0),
    parts: parts.map((p) => ({ key: uri(p.key), records: p.records, bytes: p.bytes })),
  };
};

/** A keyed job's map-stage runs, as its reducer kept them (empty: none kept, e.g. a job started by 0.2). */
export const mapStageRuns = async (deps: PipelineDeps, jobId: string): Promise<RunLog> => {
  const json = await readJsonIfExists(deps.output, reduceRunsKey(jobId), RunLogJson);
  return json ? RunLog.fromJSON(json) : new RunLog();
};

/** Whether the reduce tasks are enqueued, and what the map stage's merge learnt. */
export const reduceStarted = (deps: PipelineDeps, jobId: string): Promise<ReduceStarted | undefined> =>
  readJsonIfExists(deps.output, reduceEnqueuedKey(jobId), ReduceStarted);
