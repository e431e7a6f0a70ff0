/**
 * The map role: one chunk in, one part out. The part's key is a pure function of
 * (job id, chunk index), so a repeated task rewrites identical bytes.
 */
import { cancelKey, chunkErrorKey, failureKey, partKey } from "../keys.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../errors.js";
import type { Chunk, TaskMessage } from "../job/manifest.js";
import type { MapContext } from "../ops/types.js";
import type { FormatOptions } from "../ops/formatReaders.js";
import { isTaskOp } from "../ops/defineTask.js";
import { opDigest } from "../ops/registry.js";
import { ownedRecordBlocks } from "../records/alignedBlocks.js";
import { recordLimitsOf } from "./recordLimits.js";
import { compressedInputError, refusingCompressed, SIGNATURE_BYTES } from "../records/compressed.js";
import { readFirstLine } from "../records/firstRecord.js";
import { parseCsvLine } from "../records/csv.js";
import { nowOf, type PipelineDeps } from "./deps.js";
import { exists, readBytes, writeJson } from "./blobJson.js";
import type { Part } from "./part.js";
import { statusErrorOf } from "./status.js";
import { logFieldsOf } from "./logFields.js";
import { readItems, runItems } from "./items.js";

export type TaskOutcome =
  | { readonly kind: "done"; readonly bytes: number; readonly skipped: number; readonly partial: unknown }
  | { readonly kind: "duplicate" }
  | { readonly kind: "job-ended" };

/** Where a chunk is, for error messages: `data.txt (bytes 0-16777216)`. */
export const chunkContext = (jobId: string, chunk: Chunk) => ({
  jobId,
  chunk: chunk.index,
  input: chunk.input.name,
  range: [chunk.start, chunk.end] as const,
});

/**
 * Errors that would recur on every attempt: retrying them only delays the failure. Not
 * OP_MISMATCH: another worker may still run the job's code, and after the last attempt the
 * dead-letter handler fails the job with it.
 */
const isDeterministic = (err: CloudmillError): boolean =>
  err.code === ErrorCode.DEADLINE ||
  err.code === ErrorCode.BAD_RECORD ||
  err.code === ErrorCode.INPUT_CHANGED ||
  err.code === ErrorCode.INPUT_NOT_FOUND ||
  err.code === ErrorCode.INVALID_SPEC ||
  err.code === ErrorCode.UNKNOWN_OP ||
  err.code === ErrorCode.ITEM_FAILED ||
  err.code === ErrorCode.ITEM_TIMEOUT ||
  err.code === ErrorCode.ITEM_OUT_OF_MEMORY;

/** A job's deadline passed: it is failed rather than left running with no end. */
export const deadlineError = (jobId: string, deadline: number): CloudmillError =>
  new CloudmillError(ErrorCode.DEADLINE, `job did not finish before its deadline (${new Date(deadline).toISOString()})`, { jobId });

/** Longest timer Node keeps (about 24.8 days); a deadline further away needs no timer yet. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface RunTaskOptions {
  readonly signal?: AbortSignal;
  /**
   * false: no part is written, and the caller alone holds the chunk's partial (a local task
   * thread merging it into its running total), so it must map the chunk again if it loses it.
   */
  readonly writePart?: boolean;
  /**
   * false: run the op without comparing its code digest with the job's. A local run loads the
   * same module files into every thread at once, so only a fleet's long-lived workers can hold
   * another version (and a test runner's module transforms change function text). Default true.
   */
  readonly checkOpDigest?: boolean;
  /** Aborted when the worker starts to stop (SIGTERM): a task's items see it as ctx.signal. */
  readonly drain?: AbortSignal;
}

export const runTask = async (deps: PipelineDeps, task: TaskMessage, options: RunTaskOptions = {}): Promise<TaskOutcome> => {
  const { signal, writePart = true, checkOpDigest = true, drain } = options;
  const { jobId, chunk, job } = task;
  const output = deps.output;
  const key = partKey(jobId, chunk.index);
  if (await exists(output, key)) return { kind: "duplicate" };
  if ((await exists(output, failureKey(jobId))) || (await exists(output, cancelKey(jobId)))) return { kind: "job-ended" };
  const deadline = job.deadline;
  const map = (s: AbortSignal | undefined) => mapChunk(deps, task, { writePart, checkOpDigest, ...(drain ? { drain } : {}) }, s);
  if (deadline === undefined) return map(signal);
  const left = deadline - nowOf(deps);
  if (left <= 0) throw deadlineError(jobId, deadline);
  if (left > MAX_TIMER_MS) return map(signal);

  // A chunk still being read when the deadline passes is abandoned, and the job failed.
  const expired = new AbortController();
  const timer = setTimeout(() => expired.abort(deadlineError(jobId, deadline)), left);
  const forward = (): void => expired.abort(signal!.reason);
  signal?.addEventListener("abort", forward, { once: true });
  if (signal?.aborted) forward();
  try {
    return await map(expired.signal);
  } catch (err) {
    const reason: unknown = expired.signal.reason;
    if (expired.signal.aborted && !signal?.aborted && reason instanceof CloudmillError) throw reason;
    throw err;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", forward);
  }
};

const mapChunk = async (
  deps: PipelineDeps,
  task: TaskMessage,
  options: { readonly writePart: boolean; readonly checkOpDigest: boolean; readonly drain?: AbortSignal },
  signal?: AbortSignal,
): Promise<TaskOutcome> => {
  const { writePart, checkOpDigest, drain } = options;
  const { jobId, chunk, job } = task;
  const output = deps.output;
  const key = partKey(jobId, chunk.index);
  try {
    const op = deps.registry.get(job.op);
    const digest = opDigest(op);
    if (checkOpDigest && job.opDigest !== undefined && job.opDigest !== digest) {
      throw new CloudmillError(
        ErrorCode.OP_MISMATCH,
        `op ${job.op}: this worker runs code ${digest}, the job was started with ${job.opDigest}; ` +
          "a job runs on one version of its op: start it again once every worker runs the new code",
      );
    }
    const params = op.parseParams(job.params);
    const store = deps.inputStore(chunk.input.bucket);
    const formatOptions = params as FormatOptions;
    let header: string[] | undefined;
    if (job.format === "csv" && (formatOptions.header ?? true)) {
      const line = await readFirstLine(store, chunk.input, signal);
      header = line === undefined ? [] : parseCsvLine(line, 0, { separator: formatOptions.separator ?? ",", quote: '"' });
    }
    let skipped = 0;
    let firstSkipped: CloudmillError | undefined;
    const ctx: MapContext = {
      inputIndex: chunk.inputIndex,
      inputName: chunk.input.name,
      format: job.format,
      ...(header ? { header } : {}),
      bad(error) {
        if (job.onBadRecord === "fail") throw error;
        skipped++;
        firstSkipped ??= error;
      },
    };
    let partial: unknown;
    if (isTaskOp(op)) {
      partial = await runItems(deps, task, op, await readItems(deps, task, ctx, signal), { signal, drain });
    } else {
      const range = { ...chunk.input, start: chunk.start, end: chunk.end };
      const blocksOf = (s: AbortSignal | undefined) =>
        refusingCompressed(ownedRecordBlocks(store, range, s, recordLimitsOf(ctx)), chunk.input.name);
      if (deps.mappers) {
        // On a thread of its own: the chunk's time limit can end an op that never returns.
        const remote = deps.mappers.open({
          op: job.op,
          params: job.params,
          ctx: {
            inputIndex: chunk.inputIndex,
            inputName: chunk.input.name,
            format: job.format,
            onBadRecord: job.onBadRecord,
            ...(header ? { header } : {}),
          },
          ...(signal ? { signal } : {}),
        });
        try {
          // The time limit ends a read that stalls, too.
          const reads = signal ? AbortSignal.any([signal, remote.signal]) : remote.signal;
          try {
            for await (const block of blocksOf(reads)) await remote.block(block);
          } catch (err) {
            throw remote.signal.aborted ? remote.signal.reason : err;
          }
          const mapped = await remote.finish();
          partial = mapped.partial;
          skipped += mapped.skipped;
          if (mapped.firstSkipped) firstSkipped ??= toCloudmillError(mapped.firstSkipped);
        } finally {
          remote.close();
        }
      } else {
        const mapper = op.mapper(params, ctx);
        for await (const block of blocksOf(signal)) mapper.block(block);
        partial = mapper.finish();
      }
    }
    const part: Part = { v: 1, jobId, index: chunk.index, partial, skipped };
    if (writePart) await writeJson(output, key, part);
    if (firstSkipped)
      deps.log.warn("bad records skipped", { ...logFieldsOf(firstSkipped.withContext(chunkContext(jobId, chunk))), skipped });
    return { kind: "done", bytes: chunk.end - chunk.start, skipped, partial: part.partial };
  } catch (err) {
    const error = toCloudmillError(err);
    // Garbled records past an input's first chunk may be compressed data: say so, not "bad number".
    const compressed = error.code === ErrorCode.BAD_RECORD && chunk.start > 0 ? await compressedInputOf(deps, task, signal) : undefined;
    throw (compressed ?? error).withContext(chunkContext(jobId, chunk));
  }
};

/** The refusal of the chunk's input if its first bytes are a compressed or archive format (best effort). */
const compressedInputOf = async (deps: PipelineDeps, task: TaskMessage, signal?: AbortSignal): Promise<CloudmillError | undefined> => {
  const { input } = task.chunk;
  const range = { start: 0, end: SIGNATURE_BYTES, etag: input.etag };
  const first = await readBytes(deps.inputStore(input.bucket), input.key, signal, range).catch(() => undefined);
  return first && compressedInputError(first, input.name);
};

/** Records a chunk's latest error, so the job's failure can name it (the dead-letter handler reads it). */
const recordChunkError = async (deps: PipelineDeps, task: TaskMessage, error: CloudmillError, attempt: number): Promise<void> => {
  await writeJson(deps.output, chunkErrorKey(task.jobId, task.chunk.index), {
    attempt,
    at: new Date().toISOString(),
    error: statusErrorOf(error),
  });
};

/** What follows a failed attempt at a chunk. */
export type AfterFailure =
  /** The error would recur on every attempt (or the deadline passed): fail the job now. */
  | { readonly action: "fail-job" }
  /** Try again; after the `last` attempt the queue moves the task to the dead-letter queue. */
  | { readonly action: "retry"; readonly last: boolean };

/**
 * The rule the fleet's worker and the local engine share for a failed attempt: record the
 * chunk's error (best effort: a failure to record must not hide the error itself), then decide.
 */
export const afterFailedAttempt = async (
  deps: PipelineDeps,
  task: TaskMessage,
  error: CloudmillError,
  attempt: number,
): Promise<AfterFailure> => {
  await recordChunkError(deps, task, error, attempt).catch(() => undefined);
  return isDeterministic(error) ? { action: "fail-job" } : { action: "retry", last: attempt >= task.job.maxAttempts };
};
