/**
 * The reduce role: once every part exists, merge them in chunk order and write
 * result.json, then the final status. Deterministic, so two reducers finishing at once
 * write the same bytes; repeated or concurrent calls are harmless.
 */
import { cancelKey, manifestKey, parsePartKey, partsPrefix, pastEndKey, reportKey, succeededKey } from "../keys.js";
import { DEFAULTS } from "../constants.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../errors.js";
import { inputCountOf, type JobStatus, Manifest, shownInputs, taskCount, type TaskStart } from "../job/manifest.js";
import { inputNamesAt } from "./manifestInputs.js";
import { buildReport, RunLog, type BackupRace } from "../report/jobReport.js";
import type { ShuffleRefs } from "../ops/keyedOp.js";
import type { SortSamples } from "../shuffle/sortSamples.js";
import type { TaskQueue } from "../ports.js";
import { s3Uri } from "../s3Uri.js";
import { Part, type SniffedSeparator } from "./part.js";
import { keyedResult, mapStageRuns, reduceStarted, requeueReduceTasks, startReduce } from "./reduceTask.js";
import { nowOf, type PipelineDeps } from "./deps.js";
import { exists, readJsonIfExists, writeJson } from "./blobJson.js";
import { failJob } from "./deadLetter.js";
import { OrderedPartMerge } from "./partMerge.js";
import { failedInRun, showEnd, succeededStatus, superseded, writeProgress, type WhereRan } from "./status.js";
import { logFieldsOf } from "./logFields.js";
import { backupCounts, backupRaces } from "./backups.js";
import { advanceMergeTree, fleetTreeOf, topOfTree } from "./mergeTree.js";
import { requeueWhenSettled } from "./wake.js";
import { inLaneOf } from "./lanes.js";
import type { Lanes } from "./deps.js";
import type { JobProgress } from "./costCeiling.js";

export type ReduceOutcome =
  | {
      readonly kind: "incomplete";
      readonly done: number;
      readonly chunks: number;
      /** While the job runs (not overdue): what it has done so far, for its price ceiling. */
      readonly progress?: JobProgress;
      /** Chunks are still mapping (the straggler check looks for slow ones). */
      readonly mapping?: boolean;
    }
  | { readonly kind: "succeeded"; readonly result: unknown; readonly status: JobStatus }
  | { readonly kind: "already-succeeded"; readonly status: JobStatus }
  | { readonly kind: "ended" }
  | { readonly kind: "unknown-job" };

/** Indexes of the parts that exist, from one listing. */
const listParts = async (deps: PipelineDeps, jobId: string): Promise<Map<number, string>> => {
  const parts = new Map<number, string>();
  for await (const info of deps.output.list(partsPrefix(jobId))) {
    const p = parsePartKey(info.key);
    if (p && p.jobId === jobId) parts.set(p.index, info.key);
  }
  return parts;
};

/** Writes `_jobs/<jobId>/report.json` from the runs the job's parts recorded. */
const writeReport = async (
  deps: PipelineDeps,
  manifest: Manifest,
  runs: RunLog,
  result: unknown,
  races: readonly BackupRace[],
): Promise<void> =>
  writeJson(
    deps.output,
    reportKey(manifest.jobId),
    buildReport({
      jobId: manifest.jobId,
      op: manifest.job.op,
      ...shownInputs(manifest),
      ...(manifest.triggeredAt !== undefined ? { triggeredAt: manifest.triggeredAt } : {}),
      finishedAt: new Date(nowOf(deps)).toISOString(),
      runs,
      ...(deps.instanceType !== undefined ? { instanceType: deps.instanceType } : {}),
      ...(deps.capacity !== undefined ? { capacity: deps.capacity } : {}),
      result,
      backups: races,
      chunks: manifest.chunks,
      ...(manifest.job.partitions !== undefined ? { partitions: manifest.job.partitions } : {}),
    }),
  );

/** The start a job's first part records: the lowest chunk's, a good sign of when the job began. */
const firstPartStart = async (deps: PipelineDeps, parts: ReadonlyMap<number, string>): Promise<TaskStart | undefined> => {
  let lowest: number | undefined;
  for (const i of parts.keys()) if (lowest === undefined || i < lowest) lowest = i;
  if (lowest === undefined) return undefined;
  const key = parts.get(lowest)!;
  const ran = (await readJsonIfExists(deps.output, key, Part).catch(() => undefined))?.ran;
  return ran && { on: ran.on, at: ran.at };
};

export interface ReduceJobOptions {
  /** Parts already merged as they arrived (the local engine); the rest are read here. */
  readonly merged?: OrderedPartMerge;
  /** Adds what the caller can tell of where a merge's error is (a local file's line number). */
  readonly locate?: (err: CloudmillError) => Promise<CloudmillError>;
  /**
   * The fleet's reducer: a job of more chunks than its fan-in is merged by merge tasks on the
   * fleet (mergeTree.ts), and this reads only the tree's top; merge and reduce tasks past their
   * lease are queued again. Elsewhere every part is read here.
   */
  readonly fleet?: boolean;
}

/**
 * A result as JSON text, or OP_FAILED when it is more than one string holds (about 512 MiB): a
 * task's many mid-sized outputs, each under the size stored apart, can add up to that.
 */
const resultText = (result: unknown): string => {
  try {
    return JSON.stringify(result);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    throw new CloudmillError(
      ErrorCode.OP_FAILED,
      "the job's result is more than one JSON text holds (about 512 MiB): store large outputs as objects (a task's ctx.put) " +
        "and answer with their keys",
    );
  }
};

export const reduceJob = async (
  roleDeps: PipelineDeps & Lanes & { readonly queue?: TaskQueue; readonly taskLeaseMs?: number; readonly taskTimeoutSeconds?: number },
  jobId: string,
  options: ReduceJobOptions = {},
): Promise<ReduceOutcome> => {
  const { merged, locate = async (err: CloudmillError) => err } = options;
  const manifest = await readJsonIfExists(roleDeps.output, manifestKey(jobId), Manifest);
  if (!manifest) return { kind: "unknown-job" };
  // The job's merge and reduce tasks go to its lane's queue; its report prices that lane.
  const deps = inLaneOf(roleDeps, manifest);
  const log = deps.log.child({ jobId });

  // An end already recorded: the status users read is made to say so (a late progress write, or
  // a lost write of the end, may have left it running); one that says so already is left as it
  // is, byte for byte, and so is a later job's at the same key.
  const end = await showEnd(deps, manifest);
  if (end?.state === "succeeded") return { kind: "already-succeeded", status: end };
  if (end) return { kind: "ended" };
  // A resume of this run has begun (its end is kept, its markers may be gone, the new manifest
  // not written yet): nothing is judged by this run's deadline and limits, nor merged for it.
  if (await exists(deps.output, pastEndKey(jobId, (manifest.job.generation ?? 0) + 1)))
    return { kind: "incomplete", done: 0, chunks: taskCount(manifest) };

  const listed = await listParts(deps, jobId);
  const partitions = manifest.job.partitions;
  // A keyed job's reduce parts follow its map parts (ReduceTask).
  const parts = partitions === undefined ? listed : new Map([...listed].filter(([i]) => i < manifest.chunks));
  const reduced = listed.size - parts.size;
  // Chunks merged on the local engine's task threads may have no part.
  const done = merged ? merged.covered(parts) : parts.size;
  const target = {
    jobId,
    output: manifest.output,
    chunks: taskCount(manifest),
    done: done + reduced,
    startedAt: manifest.createdAt,
    run: manifest.retries ?? 0,
  };
  const overdue = nowOf(deps) > manifest.deadline;
  const tree = options.fleet && deps.queue && !merged ? await fleetTreeOf(deps, manifest) : undefined;
  const requeue =
    deps.queue &&
    requeueWhenSettled(
      { ...deps, queue: deps.queue },
      jobId,
      manifest.job.taskTimeoutSeconds ?? deps.taskTimeoutSeconds ?? DEFAULTS.taskTimeoutSeconds,
      // Before its chunks are all mapped, a job's merges wait behind its own: no backlog bound.
      { mapped: done >= manifest.chunks },
    );
  // Merges are queued as their groups' parts arrive, while the rest still map (an overdue job's are not).
  const merging =
    tree &&
    (await advanceMergeTree({ ...deps, queue: deps.queue! }, manifest, tree, parts, {
      queue: !overdue,
      ...(deps.taskLeaseMs !== undefined ? { leaseMs: deps.taskLeaseMs } : {}),
      ...(requeue ? { requeue } : {}),
    }));
  if (merging && merging.queued > 0) log.info("merge tasks queued", { tasks: merging.queued, merged: merging.merged.length });
  const progress: JobProgress = {
    manifest,
    mapParts: parts,
    merged: merging?.merged ?? [],
    reduced: [...listed].flatMap(([i, key]) => (i >= manifest.chunks ? [key] : [])),
  };
  if (done < manifest.chunks || (partitions !== undefined && reduced < partitions) || (merging && !merging.top)) {
    if (overdue) {
      const still = done === manifest.chunks && merging ? ", parts still merging" : "";
      const of = `${done + reduced} of ${taskCount(manifest)} tasks done${still}`;
      await failJob(deps, target, new CloudmillError(ErrorCode.DEADLINE, `job did not finish before its deadline (${of})`, { jobId }));
      return { kind: "ended" };
    }
  }
  if (done < manifest.chunks) {
    await writeProgress(deps, manifest, done, () => firstPartStart(deps, parts));
    return { kind: "incomplete", done, chunks: taskCount(manifest), progress, mapping: true };
  }
  if (merging && !merging.top) {
    await writeProgress(deps, manifest, done);
    return { kind: "incomplete", done, chunks: taskCount(manifest), progress };
  }
  // A resume that began since the check above: the next run merges, from the parts it maps again.
  if (merging && (await exists(deps.output, pastEndKey(jobId, (manifest.job.generation ?? 0) + 1))))
    return { kind: "incomplete", done, chunks: taskCount(manifest) };

  try {
    let result: unknown;
    let skipped: number;
    let sniffed: readonly SniffedSeparator[];
    let ran: WhereRan;
    let runs: RunLog | undefined;
    let missing = 0;
    if (partitions !== undefined) {
      let started = await reduceStarted(deps, jobId);
      if (!started) {
        if (!deps.queue) throw new CloudmillError(ErrorCode.INTERNAL, `job ${jobId}: this reducer cannot enqueue reduce tasks`);
        const merge = merged ?? new OrderedPartMerge(deps, manifest);
        const stage = await merge.complete(parts);
        started = await startReduce({ ...deps, queue: deps.queue }, manifest, stage.partial as ShuffleRefs | SortSamples, stage);
        log.info("map stage done; reduce tasks enqueued", { chunks: manifest.chunks, partitions });
      }
      if (reduced < partitions) {
        // A reduce task lost past its lease (the fleet's reducer): queued again, as merges are.
        if (options.fleet && deps.queue && requeue) {
          const again = await requeueReduceTasks({ ...deps, queue: deps.queue }, manifest, started, listed, requeue);
          if (again > 0) log.info("reduce tasks queued again", { tasks: again, partitions });
        }
        await writeProgress(deps, manifest, done + reduced);
        return { kind: "incomplete", done: done + reduced, chunks: taskCount(manifest), progress };
      }
      // The report's runs: the map stage's, as kept when its reduce tasks were queued, and the
      // reduce tasks'. Only the report needs them: unreadable ones cost it its map tasks, not the job.
      runs = await mapStageRuns(deps, jobId).catch((err: unknown) => {
        const error = toCloudmillError(err);
        if (error.code === ErrorCode.ENVIRONMENT) throw error;
        log.warn("the map stage's runs are unreadable; the report leaves them out", logFieldsOf(error));
        return new RunLog();
      });
      result = await keyedResult(deps, manifest, (key) => s3Uri(deps.output.name, key), runs);
      ({ skipped, sniffed } = started);
      ran = { ...(started.firstChunk ? { firstChunk: started.firstChunk } : {}), ...(started.ranOn ? { ranOn: started.ranOn } : {}) };
    } else {
      const own = merged ? undefined : new OrderedPartMerge(deps, manifest, [], tree ? topOfTree(deps, manifest, tree.levels) : undefined);
      const merge = merged ?? own!;
      try {
        const stage = await merge.complete(merging?.top ?? parts);
        ({ skipped, sniffed, ran } = stage);
        // JSON has no undefined: an op with nothing to say (a lab op over no records) answers null.
        const named = await inputNamesAt(deps.output, manifest, merge.op.namedInputs?.(stage.partial) ?? []);
        result = (await merge.finalize(stage.partial, inputCountOf(manifest), named)) ?? null;
        missing = merge.op.missingValues?.(stage.partial) ?? 0;
        runs = stage.runs;
      } finally {
        own?.close();
      }
    }
    const races = await backupRaces(deps, jobId, manifest.resumed);
    const backups = backupCounts(races);
    const status = {
      ...succeededStatus(manifest, skipped, nowOf(deps), sniffed, ran),
      ...(missing ? { missing } : {}),
      ...(backups.launched ? { backups } : {}),
    };
    if (await superseded(deps, manifest.output.status, jobId, manifest.createdAt)) {
      await writeJson(deps.output, succeededKey(jobId), status);
      log.info("job succeeded but a later job owns its output; result not written", { chunks: manifest.chunks });
      return { kind: "succeeded", result, status };
    }
    // A cancel (or failure) taken while this merged, minutes maybe, has told its caller the job
    // ended so: no result is written over it. One that comes later loses to the succeeded marker.
    if ((await exists(deps.output, cancelKey(jobId))) || (await failedInRun(deps.output, jobId, manifest.retries ?? 0))) {
      log.info("job ended while it was merged; result not written");
      await showEnd(deps, manifest);
      return { kind: "ended" };
    }
    // Result first: whoever sees the succeeded marker may rely on result.json being there, and
    // on the report. The report is a view of the parts: a failure to write it leaves the job as it is.
    await deps.output.put(manifest.output.result, resultText(result), { contentType: "application/json" });
    if (runs?.size)
      await writeReport(deps, manifest, runs, result, races).catch((err: unknown) =>
        log.warn("report not written", logFieldsOf(toCloudmillError(err))),
      );
    await writeJson(deps.output, succeededKey(jobId), status);
    await writeJson(deps.output, manifest.output.status, status);
    log.info("job succeeded", { chunks: manifest.chunks, skipped });
    return { kind: "succeeded", result, status };
  } catch (err) {
    const error = toCloudmillError(err).withContext({ jobId });
    // S3 failing us (throttling, 5xx, a reset connection) is not the job's fault: throw, and
    // the reducer's event is retried (SQS redelivers it), rather than failing an exact job.
    if (error.code === ErrorCode.ENVIRONMENT) throw error;
    log.error("reduce failed", logFieldsOf(error));
    const located = await locate(error);
    await failJob(deps, target, located);
    return { kind: "ended" };
  }
};
