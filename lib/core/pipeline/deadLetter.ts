/**
 * Failing a job: a failure marker first (it wins over any later progress update), then
 * the status users read. A job that already succeeded stays succeeded: its result is exact.
 */
import type { OutputKeys } from "../keys.js";
import { failureKey, manifestKey, pastEndKey, succeededKey } from "../keys.js";
import { CloudmillError, ErrorCode, locate, oneLine, type ErrorContext } from "../errors.js";
import { isMergeTask, isReduceTask, JobStatus, Manifest, TaskMessage, taskCount } from "../job/manifest.js";
import { nowOf, type PipelineDeps } from "./deps.js";
import { exists, readJsonIfExists, writeJson } from "./blobJson.js";
import { describingFields, failureOfRun, FailureRecord, statusContext, statusErrorOf, superseded } from "./status.js";
import { logFieldsOf } from "./logFields.js";
import { chunkContext, isStaleTask, taskPartKey } from "./task.js";
import { readTaskError } from "./attempts.js";

export interface FailTarget {
  readonly jobId: string;
  readonly output: OutputKeys;
  readonly chunks: number;
  readonly done: number;
  /** When the job started; a status of a later job at the same key is then left alone. */
  readonly startedAt?: string;
  /**
   * The run of the job this failure judges (its manifest's `retries`): once a resume has begun a
   * later run, a judge of an earlier one (a reducer still merging it, say) fails nothing.
   */
  readonly run?: number;
}

/** A task out of time or memory on its last attempt says so by its code; any other last error is CHUNK_FAILED's. */
const failedCode = (recorded: { readonly error: { readonly code: string } }): ErrorCode =>
  recorded.error.code === ErrorCode.TASK_TIMEOUT || recorded.error.code === ErrorCode.OUT_OF_MEMORY
    ? recorded.error.code
    : ErrorCode.CHUNK_FAILED;

export const failJob = async (deps: PipelineDeps, target: FailTarget, error: CloudmillError): Promise<JobStatus | undefined> => {
  if (await exists(deps.output, succeededKey(target.jobId))) return undefined;
  if (target.run !== undefined && (await exists(deps.output, pastEndKey(target.jobId, target.run + 1)))) {
    deps.log.info("a resume superseded the run this failure judged; nothing failed", { jobId: target.jobId, run: target.run });
    return undefined;
  }
  // The first failure judged of a run stands: what `wait` reported is what `status` says later.
  // (Another chunk failing a moment after is shown as the same end, again if its status write was
  // lost.) A failure before any run (a spec's, uploaded again with another mistake) is its own.
  // A HEAD first: the marker is almost always absent, and a GET is what S3 throttles first (a job
  // whose every read is throttled must still be failed).
  const earlier =
    target.run === undefined || !(await exists(deps.output, failureKey(target.jobId)))
      ? undefined
      : await failureOfRun(deps.output, target.jobId, target.run);
  const at = earlier?.at ?? new Date(nowOf(deps)).toISOString();
  const statusError = earlier?.error ?? statusErrorOf(error);
  // What the status said of the job is kept (its op, inputs, resumes, first chunk), and its
  // progress: a failure judged from a dead letter knows no count of the chunks done.
  const shown = await readJsonIfExists(deps.output, target.output.status, JobStatus).catch(() => undefined);
  const own = shown?.jobId === target.jobId ? shown : undefined;
  const record: FailureRecord = { error: statusError, at, ...(target.run !== undefined ? { run: target.run } : {}) };
  if (!earlier) await writeJson(deps.output, failureKey(target.jobId), record);
  // A resume that began while the marker was being written (past the look above) removes the
  // marker first and then runs on: a marker landing after that removal is this run's failure,
  // which the next run must not end on. It is taken back while it is still this one's.
  if (target.run !== undefined && (await exists(deps.output, pastEndKey(target.jobId, target.run + 1)))) {
    const written = await readJsonIfExists(deps.output, failureKey(target.jobId), FailureRecord);
    if (!earlier && written?.at === at && written.error.message === statusError.message) await deps.output.delete(failureKey(target.jobId));
    deps.log.info("a resume superseded the run this failure judged; nothing failed", { jobId: target.jobId, run: target.run });
    return undefined;
  }
  const status: JobStatus = {
    ...(own ? describingFields(own) : {}),
    jobId: target.jobId,
    state: "failed",
    chunks: target.chunks,
    done: Math.max(target.done, own?.done ?? 0),
    ...(target.startedAt ? { startedAt: target.startedAt } : {}),
    finishedAt: at,
    error: statusError,
  };
  if (!(await superseded(deps, target.output.status, target.jobId, target.startedAt)))
    await writeJson(deps.output, target.output.status, status);
  // A reducer that found every part before this failure was recorded may have finished the job
  // meanwhile: its exact result stands, and the status says so again.
  const succeeded = await readJsonIfExists(deps.output, succeededKey(target.jobId), JobStatus).catch(() => undefined);
  if (succeeded) {
    // Unless a later job owns the output now (the reducer leaves its status alone then too).
    if (!(await superseded(deps, target.output.status, target.jobId, target.startedAt)))
      await writeJson(deps.output, target.output.status, succeeded);
    // Tidiness only: every reader of the markers takes succeeded first. A role that may not delete
    // it (a worker, the reducer) leaves it, rather than retry the task into the same refusal.
    await deps.output.delete(failureKey(target.jobId)).catch(() => undefined);
    deps.log.info("job succeeded while it was being failed; it stays succeeded", { jobId: target.jobId });
    return undefined;
  }
  if (earlier) deps.log.info("job had failed already; its first failure stands", { ...logFieldsOf(error), jobId: target.jobId });
  else deps.log.error("job failed", { ...logFieldsOf(error), jobId: target.jobId });
  return status;
};

/**
 * Fails the job of a task whose error would recur on every attempt, of run `run` (its
 * `job.generation`): nothing for a job not yet planned, nor once a later run has begun.
 */
export const failJobOfTask = async (deps: PipelineDeps, jobId: string, run: number, error: CloudmillError, done = 0): Promise<void> => {
  const manifest = await readJsonIfExists(deps.output, manifestKey(jobId), Manifest);
  // Its tasks in all, as its progress counts them (a keyed job's reduce tasks too).
  if (manifest)
    await failJob(deps, { jobId, output: manifest.output, chunks: taskCount(manifest), done, startedAt: manifest.createdAt, run }, error);
};

/** "1 attempt", "3 attempts". */
const attempts = (n: number): string => (n === 1 ? "1 attempt" : `${n} attempts`);

/** Why a merge or reduce task may have failed every attempt with no error recorded: its worker ended mid-task. */
const UNREPORTED =
  "without reporting an error (worker killed, out of memory, or past its time limit in op code on the worker's main thread?)";

/**
 * The dead-letter role: a task that failed every attempt fails its job, naming the chunk's
 * last error, its input and its byte range. A task whose part exists after all is ignored.
 */
export const handleDeadLetter = async (
  deps: PipelineDeps,
  body: string,
  receiveCount?: number,
  /** Adds what only the caller can find to a chunk's error: its record's line (the local engine reads its input). */
  located: (err: CloudmillError) => Promise<CloudmillError> = async (err) => err,
): Promise<"failed" | "ignored"> => {
  let task: TaskMessage;
  try {
    task = TaskMessage.parse(JSON.parse(body));
  } catch {
    deps.log.error("dead letter is not a task message; dropped", { bytes: body.length });
    return "ignored";
  }
  const { jobId } = task;
  if (await exists(deps.output, taskPartKey(task))) return "ignored";
  // A straggler's backup that failed leaves its original running; a task queued before its job
  // was resumed carried the earlier run's limits.
  if (task.backup) return "ignored";
  if (await isStaleTask(deps, task)) return "ignored";
  const recorded = await readTaskError(deps, task);
  const manifest = await readJsonIfExists(deps.output, manifestKey(jobId), Manifest);
  if (!manifest) return "ignored";
  const target = {
    jobId,
    output: manifest.output,
    chunks: taskCount(manifest),
    done: 0,
    startedAt: manifest.createdAt,
    // The task's own run: one queued by a resume whose manifest is not written yet fails its own run.
    run: task.job.generation ?? 0,
  };
  if (isMergeTask(task)) {
    const { level, group } = task.merge;
    const what = `merge task ${group} of level ${level} failed`;
    const error = recorded
      ? new CloudmillError(failedCode(recorded), `${what} after ${attempts(recorded.attempt)}: ${recorded.error.message}`, { jobId })
      : new CloudmillError(ErrorCode.CHUNK_FAILED, `${what} ${UNREPORTED}`, { jobId });
    await failJob(deps, target, error);
    return "failed";
  }
  if (isReduceTask(task)) {
    const { partition } = task.reduce;
    // The error's context names the partition ("partition 3: …").
    const what = "its reduce task failed";
    const error = recorded
      ? new CloudmillError(failedCode(recorded), `${what} after ${attempts(recorded.attempt)}: ${recorded.error.message}`, {
          jobId,
          partition,
        })
      : new CloudmillError(ErrorCode.CHUNK_FAILED, `${what} ${UNREPORTED}`, {
          jobId,
          partition,
        });
    await failJob(deps, target, error);
    return "failed";
  }
  const { chunk } = task;
  // A packed chunk's recorded error names its own object, and one of a record (a lab's op that
  // threw on it) its record; without one, the chunk names its range, or its first object and how many more.
  const where: ErrorContext =
    recorded?.error.offset !== undefined && recorded.error.input !== undefined
      ? { ...statusContext(recorded.error), jobId, chunk: chunk.index }
      : !chunk.more
        ? chunkContext(jobId, chunk)
        : recorded
          ? { ...statusContext(recorded.error), jobId, chunk: chunk.index }
          : { jobId, chunk: chunk.index, input: `${chunk.input.name} and ${chunk.more.length} more objects` };
  // The recorded message already names the chunk's input and range (it is a described error, on one line).
  const prefix = oneLine(locate(where));
  const recordedMessage = recorded?.error.message;
  const last = recordedMessage?.startsWith(prefix) ? recordedMessage.slice(prefix.length).trimStart() : recordedMessage;
  const error = recorded
    ? await located(
        new CloudmillError(failedCode(recorded), `chunk ${chunk.index} failed after ${attempts(recorded.attempt)}: ${last}`, where),
      )
    : new CloudmillError(
        ErrorCode.CHUNK_FAILED,
        `chunk ${chunk.index} failed ${receiveCount ? `${receiveCount} times ` : ""}without reporting an error (worker killed or out ` +
          `of memory?)`,
        where,
      );
  await failJob(deps, target, error);
  return "failed";
};
