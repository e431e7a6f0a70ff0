/** Errors a JobFuture rejects with. All are CloudmillErrors, so `err.code` tells what happened. */
import { CloudmillError, ErrorCode } from "../core/errors.js";
import type { JobStatus } from "./types.js";

const codeOf = (code: string | undefined): ErrorCode =>
  code !== undefined && (Object.values(ErrorCode) as string[]).includes(code) ? (code as ErrorCode) : ErrorCode.INTERNAL;

/**
 * The job failed: `code` and `message` are the failing chunk's (e.g. BAD_RECORD naming the
 * input and byte range), `status` the job's final status.json.
 */
export class JobFailedError extends CloudmillError {
  readonly status: JobStatus;

  constructor(status: JobStatus) {
    const e = status.error;
    super(codeOf(e?.code), e?.message ?? `job ${status.jobId} failed`, {
      jobId: status.jobId,
      ...(e?.chunk !== undefined ? { chunk: e.chunk } : {}),
    });
    this.name = "JobFailedError";
    this.status = status;
  }
}

/** The job was cancelled (code CANCELLED). */
export const cancelledError = (status: JobStatus): CloudmillError =>
  new CloudmillError(ErrorCode.CANCELLED, `job ${status.jobId} was cancelled (${status.done} of ${status.chunks} chunks done)`, {
    jobId: status.jobId,
  });

/** result() gave up waiting (code NOT_FINISHED); the job itself goes on. */
export const waitTimeoutError = (jobId: string, timeoutMs: number, last: JobStatus | undefined): CloudmillError =>
  new CloudmillError(
    ErrorCode.NOT_FINISHED,
    `job ${jobId} had not ended after ${timeoutMs / 1000}s ` +
      `(${last ? `${last.state}, ${last.done}/${last.chunks} chunks` : "no status yet"}); it goes on: wait again, or cancel it`,
    { jobId },
  );
