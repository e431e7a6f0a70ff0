/**
 * A handle on one job, like Cloudknot's futures and Lithops' ResponseFutures: its id at once,
 * its status and progress on demand, its result as a Promise. Polling reads the job's one
 * status.json (one GET per poll, backing off from 250 ms to 5 s), so waiting costs a handful of
 * requests per job, never one per chunk.
 */
import { CloudmillError, ErrorCode } from "../core/errors.js";
import { cancelledError, JobFailedError, waitTimeoutError } from "./errors.js";
import { sleep } from "../core/sleep.js";
import { backoff, deadlineSignal } from "./poll.js";
import type { JobProgress, JobStatus, PollOptions, ResultOptions, RetryOptions } from "./types.js";

/** What a future needs from its client. */
export interface JobBackend {
  /** The job's status; `known` means the spec is known to be written (skips the check for an unknown job). */
  readStatus(jobId: string, options: { readonly signal?: AbortSignal; readonly known: boolean }): Promise<JobStatus>;
  readResult(jobId: string, signal?: AbortSignal): Promise<unknown>;
  cancel(jobId: string): Promise<JobStatus>;
  /** Asks the stack to resume a failed or cancelled job; resolves once it has (the status then says running). */
  retry(jobId: string, options: RetryOptions): Promise<JobStatus>;
  readonly poll: PollOptions;
}

/** Rejects when signal aborts; leaves no listener behind once settled. */
const untilAborted = <T>(promise: Promise<T>, signal: AbortSignal): Promise<T> =>
  new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });

/** Status reads in a row that may fail (ENVIRONMENT) before result() rejects with the last failure. */
const STATUS_READ_RETRIES = 3;

const isTransient = (err: unknown): boolean => err instanceof CloudmillError && err.code === ErrorCode.ENVIRONMENT;

export class JobFuture<R = unknown> {
  /** The job id: `_jobs/<id>.json` in the input bucket, results under `_jobs/<id>/` in the output bucket. */
  readonly id: string;
  readonly #backend: JobBackend;
  readonly #submitted: Promise<void>;
  readonly #abortSubmit: AbortController | undefined;
  /** What cancel() stopped the submission with, once it did. */
  #stop: CloudmillError | undefined;
  /** Why the submission failed, when it failed by itself (not stopped by cancel()): no job exists. */
  #submitFailure: unknown;
  /** The job's end, once seen: later result() calls settle from it without a request. */
  #ended: { readonly ok: true; readonly value: R } | { readonly ok: false; readonly error: unknown } | undefined;

  /** @internal Made by Cloudmill.submit, map and job. */
  constructor(id: string, backend: JobBackend, submission?: { readonly submitted: Promise<void>; readonly abort: AbortController }) {
    this.id = id;
    this.#backend = backend;
    this.#submitted = submission?.submitted ?? Promise.resolve();
    this.#abortSubmit = submission?.abort;
    // Observed through status() and result(); never an unhandled rejection.
    this.#submitted.catch((err: unknown) => {
      if (!this.#stoppedBy(err)) this.#submitFailure = err;
    });
  }

  /**
   * `read` until it answers: a read that failed past the AWS SDK's own retries (a network blip)
   * says nothing of the job, so it is tried again; only a failure that lasts is the caller's.
   */
  async #read<T>(read: () => Promise<T>, signal: AbortSignal, delay: () => number): Promise<T> {
    for (let failed = 0; ; ) {
      try {
        return await untilAborted(read(), signal);
      } catch (err) {
        if (signal.aborted || !isTransient(err) || ++failed > STATUS_READ_RETRIES) throw err;
        await sleep(delay(), signal);
      }
    }
  }

  /** Resolves once local inputs are uploaded and the job spec is written; rejects if that failed. */
  get submitted(): Promise<void> {
    return this.#submitted;
  }

  /** Whether `err` is the submission's stop by cancel(): its own reason, or the cancel an abort became. */
  #stoppedBy(err: unknown): boolean {
    return this.#stop !== undefined && (err === this.#stop || (err instanceof CloudmillError && err.code === ErrorCode.CANCELLED));
  }

  /** Settles the submission; a submission stopped by cancel() counts as done. */
  async #afterSubmit(signal?: AbortSignal): Promise<void> {
    try {
      await (signal ? untilAborted(this.#submitted, signal) : this.#submitted);
    } catch (err) {
      if (!this.#stoppedBy(err) || signal?.aborted) throw err;
    }
  }

  /** The job's status now: `pending` until the pipeline has started it. */
  async status(options: { readonly signal?: AbortSignal } = {}): Promise<JobStatus> {
    await this.#afterSubmit(options.signal);
    return this.#backend.readStatus(this.id, { ...options, known: true });
  }

  /** Chunks done of total, from the same one read as status(). */
  async progress(options: { readonly signal?: AbortSignal } = {}): Promise<JobProgress> {
    const s = await this.status(options);
    const total = s.chunks;
    const done = s.state === "succeeded" ? total : Math.min(s.done, total);
    return { state: s.state, done, total, fraction: s.state === "succeeded" ? 1 : total > 0 ? done / total : 0 };
  }

  /**
   * The job's result, once it has succeeded. Rejects with the job's error if it failed
   * (a JobFailedError whose code is the failing chunk's, e.g. BAD_RECORD), with CANCELLED if
   * it was cancelled, with NOT_FINISHED after `timeoutMs`, or with the signal's reason if it aborts.
   * Giving up waiting leaves the job running and no timer behind.
   */
  async result(options: ResultOptions = {}): Promise<R> {
    if (this.#ended) {
      if (this.#ended.ok) return this.#ended.value;
      throw this.#ended.error;
    }
    let last: JobStatus | undefined;
    const deadline = deadlineSignal(options.signal, options.timeoutMs, () => waitTimeoutError(this.id, options.timeoutMs!, last));
    const { signal } = deadline;
    try {
      await this.#afterSubmit(signal);
      const delay = backoff(this.#backend.poll);
      for (;;) {
        // A failed read is not a running job (asCompleted would yield it): it is read again.
        const status = await this.#read(() => this.#backend.readStatus(this.id, { signal, known: true }), signal, delay);
        last = status;
        options.onStatus?.(status);
        switch (status.state) {
          case "succeeded": {
            const value = (await this.#read(() => this.#backend.readResult(this.id, signal), signal, delay)) as R;
            this.#ended = { ok: true, value };
            return value;
          }
          case "failed":
          case "cancelled": {
            const error = status.state === "failed" ? new JobFailedError(status) : cancelledError(status);
            this.#ended = { ok: false, error };
            throw error;
          }
          default:
            await sleep(delay(), signal);
        }
      }
    } finally {
      deadline.dispose();
    }
  }

  /**
   * Cancels the job: its status becomes `cancelled` (result() then rejects with CANCELLED), and
   * workers skip its queued chunks once they next look at its end, within 5 s. A job that
   * already succeeded or failed keeps its end; the status returned says which. An upload still in progress is stopped. A future
   * whose submission failed by itself rejects with that failure: no job was started.
   */
  async cancel(): Promise<JobStatus> {
    // A submission that failed by itself (a missing file, say) wrote no spec: there is no job to cancel.
    if (this.#submitFailure !== undefined) throw this.#submitFailure;
    this.#stop ??= new CloudmillError(ErrorCode.CANCELLED, `job ${this.id} was cancelled before it was submitted`, { jobId: this.id });
    this.#abortSubmit?.abort(this.#stop);
    const failed = await this.#submitted.then(
      () => undefined,
      (err: unknown) => err,
    );
    // Failed by itself before it saw the stop (a missing file, say): there is no job to cancel.
    if (failed !== undefined && !this.#stoppedBy(failed)) throw failed;
    return this.#backend.cancel(this.id);
  }

  /**
   * Resumes a failed or cancelled job: only its tasks with no part run again, with the limits
   * given (a longer taskTimeoutSeconds, more taskMemoryMiB); every part already written is kept,
   * so the result is what a clean run gives. Resolves with the running status; result() then
   * waits for the resumed job.
   */
  async retry(options: RetryOptions = {}): Promise<JobStatus> {
    await this.#submitted.catch(() => undefined);
    // Forgotten first: a request the stack takes after this call gave up waiting still resumes
    // the job, and result() must then wait for the new run rather than repeat the old end.
    this.#ended = undefined;
    this.#stop = undefined;
    return this.#backend.retry(this.id, options);
  }

  /** The job id (so futures print as their ids). */
  toString(): string {
    return this.id;
  }
}
