/**
 * The resume role (`cloudmill retry`): a failed or cancelled job runs again from where it
 * stopped. Every part already written is kept (parts are a pure function of job and chunk, so
 * they are what a clean run writes); only the tasks with no part are queued, with the limits
 * the request gives. A merge tree's merged parts over parts that stay are kept too. The old
 * end is kept under `_work/<id>/retries/`, then its marker removed, so workers and the reducer
 * treat the job as running again.
 */
import { refuseTaskTimeoutPastQueue, taskTimeoutPastQueue } from "../queueLimits.js";
import * as z from "zod";
import { cancelKey, failureKey, manifestKey, parsePartKey, partKey, partsPrefix, pastEndKey, succeededKey } from "../keys.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../errors.js";
import { isMapTask, Manifest, taskCount, type MapTask, type TaskMessage } from "../job/manifest.js";
import { JobSpecSchema } from "../job/spec.js";
import type { SplitDeps } from "./deps.js";
import { nowOf } from "./deps.js";
import { exists, readJsonIfExists, writeJson } from "./blobJson.js";
import { enqueueTasks } from "./enqueue.js";
import { inLaneOf } from "./lanes.js";
import { unpricedCeiling } from "./costCeiling.js";
import { logFieldsOf } from "./logFields.js";
import { reduceJob } from "./reduce.js";
import { noteReduceRequeued, reduceStarted, reduceTasksOf } from "./reduceTask.js";
import { keepAwakeForLease } from "./wake.js";
import { tasksOf } from "./mapTasks.js";
import { carryMergedParts } from "./mergeTree.js";
import { CancelRecord, FailureRecord, failureOfRun, writeProgress } from "./status.js";

/**
 * What a retry may change: the limits a job failed on, checked as a job spec checks them (a new
 * deadline counts from the resume). Everything else is the job's own.
 */
export const RetryRequest = JobSpecSchema.pick({
  taskTimeoutSeconds: true,
  taskMemoryMiB: true,
  maxRecordBytes: true,
  maxCostUsd: true,
  deadlineSeconds: true,
}).extend({
  /** The resumes the job had when this was asked: a request seen twice (S3 may send an event twice) resumes once. */
  after: z.number().int().nonnegative(),
  /** When it was asked (ISO 8601, UTC): a cancel asked later wins over it. */
  at: z.iso.datetime().optional(),
});
export type RetryRequest = z.output<typeof RetryRequest>;

/** The end a job had before a resume: `_work/<jobId>/retries/<n>.json`. */
const PastEnd = z.object({ failure: FailureRecord.optional(), cancelled: z.object({ at: z.string() }).optional() });

export type ResumeOutcome =
  | { readonly kind: "resumed"; readonly tasks: number; readonly of: number }
  | { readonly kind: "refused"; readonly reason: string };

/** Indexes of the tasks that have a part. */
const tasksWithParts = async (deps: SplitDeps, jobId: string): Promise<Set<number>> => {
  const done = new Set<number>();
  for await (const info of deps.output.list(partsPrefix(jobId))) {
    const part = parsePartKey(info.key);
    if (part?.jobId === jobId) done.add(part.index);
  }
  return done;
};

/** The tasks of a job that have no part: map tasks first; a keyed job's reduce tasks once its map stage is whole. */
const missingTasks = async (deps: SplitDeps, manifest: Manifest): Promise<TaskMessage[]> => {
  const done = await tasksWithParts(deps, manifest.jobId);
  const chunks = Array.from({ length: manifest.chunks }, (_, i) => i).filter((i) => !done.has(i));
  if (chunks.length > 0) return tasksOf(deps.output, manifest, chunks);
  const partitions = taskCount(manifest) - manifest.chunks;
  if (partitions === 0 || !(await reduceStarted(deps, manifest.jobId))) return [];
  return reduceTasksOf(
    manifest,
    Array.from({ length: partitions }, (_, partition) => partition).filter((p) => !done.has(manifest.chunks + p)),
  );
};

/**
 * Why a retry cannot give a job what `request` asks, if it cannot: asked by the resume, and by
 * the SDK before it writes the request (the splitter's refusal reaches only its log).
 */
export const retryRefusal = (
  manifest: Manifest,
  request: Pick<RetryRequest, "maxRecordBytes" | "taskTimeoutSeconds">,
): string | undefined => {
  // Parts kept from before skipped records by the old bound: a new one would mix two answers.
  if (request.maxRecordBytes !== undefined && manifest.job.onBadRecord === "skip")
    return "a job that skips bad records keeps its old maxRecordBytes: start it again to change it";
  return taskTimeoutPastQueue(request.taskTimeoutSeconds);
};

export const resumeJob = async (
  deps: SplitDeps,
  jobId: string,
  request: RetryRequest,
  defaults: { readonly jobDeadlineSeconds: number },
): Promise<ResumeOutcome> => {
  const log = deps.log.child({ jobId });
  const manifest = await readJsonIfExists(deps.output, manifestKey(jobId), Manifest);
  if (!manifest) return { kind: "refused", reason: "no such job (it never started)" };
  const retries = manifest.retries ?? 0;
  const generation = retries + 1;
  if (request.after < retries) return { kind: "refused", reason: `already resumed (${retries} times)` };
  if (await exists(deps.output, succeededKey(jobId))) return { kind: "refused", reason: "it succeeded" };
  // A marker of an earlier run, written late (and not yet taken back), is no end of this one.
  const failure = await failureOfRun(deps.output, jobId, retries);
  const cancelled = await readJsonIfExists(deps.output, cancelKey(jobId), CancelRecord);
  // An earlier invocation that stopped part-way (its end record written, the manifest not yet) is finished here.
  const pastEnd = await readJsonIfExists(deps.output, pastEndKey(jobId, generation), PastEnd);
  if (!failure && !cancelled && !pastEnd) return { kind: "refused", reason: "it is still running" };
  // A retry of an invocation that began this resume (its old end kept) meets an end recorded
  // since: the job was cancelled, or failed, again meanwhile, and it stays so.
  if (pastEnd && ((failure && failure.at !== pastEnd.failure?.at) || (cancelled && cancelled.at !== pastEnd.cancelled?.at)))
    return { kind: "refused", reason: `it was ${failure ? "failed" : "cancelled"} again after this resume began` };
  // Cancelled (again) after this retry was asked: the later word stands.
  if (cancelled && request.at !== undefined && (cancelled.asked ?? cancelled.at) > request.at)
    return { kind: "refused", reason: "it was cancelled after this retry was asked" };
  const refused = retryRefusal(manifest, request);
  if (refused) return { kind: "refused", reason: refused };
  const unpriced = request.maxCostUsd !== undefined ? unpricedCeiling(inLaneOf(deps, manifest)) : undefined;
  if (unpriced) return { kind: "refused", reason: unpriced.message };
  const ended = pastEnd ?? { ...(failure ? { failure } : {}), ...(cancelled ? { cancelled } : {}) };

  const now = nowOf(deps);
  const deadline = now + (request.deadlineSeconds ?? defaults.jobDeadlineSeconds) * 1000;
  const { after: _, deadlineSeconds: __, at: ___, ...limits } = request;
  const job = { ...manifest.job, ...limits, deadline, generation };
  const draft: Manifest = { ...manifest, job, deadline, retries: generation };
  // A merge that failed on a chunk's kept reading (a CSV record past maxRecordBytes, say) would
  // fail again from the same part: that chunk is mapped again, its part replaced.
  const failedChunk = ended.failure?.error.chunk;
  const tasks = (await missingTasks(deps, draft)).map((t) => ({ ...t, job }));
  const redo =
    failedChunk !== undefined && failedChunk < manifest.chunks && !tasks.some((t) => isMapTask(t) && t.chunk.index === failedChunk)
      ? (await tasksOf(deps.output, draft, [failedChunk])).map((t): MapTask => ({ ...t, redo: true }))
      : [];
  const queued = [...tasks, ...redo];
  // Before anything else changes (a retry of this invocation carries the same parts again).
  const carried = await carryMergedParts(deps, manifest, generation, new Set(queued.flatMap((t) => (isMapTask(t) ? [t.chunk.index] : []))));
  const resumed: Manifest = { ...draft, resumed: { at: new Date(now).toISOString(), tasks: queued.length } };

  // Each step may be redone by a later invocation: the old end is kept first, then the markers
  // go (workers then take the job's tasks again), then the tasks are queued, and the manifest,
  // which clients watch, counts the resume last, after the status says running. Its own reduce
  // after that is not redone by a retry; the reducer's wake-ups do it.
  await writeJson(deps.output, pastEndKey(jobId, generation), ended);
  // The part a redo replaces goes first: a reducer woken before the redo ends (by a wake-up, or
  // another task's notice) then waits for the new part instead of merging the old one. A retry of this
  // invocation finds the chunk without a part and queues it as any missing chunk.
  for (const t of redo) await deps.output.delete(partKey(jobId, t.chunk.index));
  await deps.output.delete(failureKey(jobId));
  await deps.output.delete(cancelKey(jobId));
  if (queued.length > 0 && deps.fleet) {
    await deps.fleet
      .wake(queued.length, resumed.prefer)
      .catch((err: unknown) => log.warn("could not wake the fleet", logFieldsOf(toCloudmillError(err))));
  }
  // The reducer's wake-ups: with no chunk to map, no part's notice will wake it; with chunks, they
  // find a part none named, as a new job's do (split.ts). Sent before the manifest counts the
  // resume, so that an invocation that fails here is retried whole. The reduce tasks' lease
  // starts now, noted before they are queued (a reducer in between must not queue them again).
  if (queued.length > 0 && !queued.some(isMapTask)) await noteReduceRequeued(deps, jobId);
  await keepAwakeForLease(deps, jobId);
  await enqueueTasks(inLaneOf(deps, resumed).queue, queued);
  await writeProgress(deps, resumed, taskCount(resumed) - queued.length);
  await writeJson(deps.output, manifestKey(jobId), resumed);
  log.info("job resumed", { tasks: queued.length, of: taskCount(resumed), retries: generation, mergesKept: carried, ...limits });
  // Nothing left to map: the merge (or a keyed job's reduce stage) is what failed or was cut short.
  if (queued.length === 0) await reduceJob(deps, jobId, { fleet: true });
  return { kind: "resumed", tasks: queued.length, of: taskCount(resumed) };
};

/** A retry request's body, parsed: one line naming the field on a bad one. */
export const parseRetryRequest = (text: string, where: string): RetryRequest => {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `${where}: not JSON`);
  }
  const parsed = RetryRequest.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `${where}: ${issue.path.join(".") || "request"}: ${issue.message}`);
  }
  refuseTaskTimeoutPastQueue(parsed.data.taskTimeoutSeconds, where);
  return parsed.data;
};
