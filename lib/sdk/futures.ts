/** Waiting on many jobs: all of them in order, or each as it completes. */
import { setMaxListeners } from "node:events";
import type { JobFuture } from "./JobFuture.js";
import { deadlineSignal } from "./poll.js";
import { CloudmillError, ErrorCode } from "../core/errors.js";

export interface WaitOptions {
  /** Give up after this long (NOT_FINISHED); the jobs go on. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

type ResultsOf<F extends readonly JobFuture<unknown>[]> = { -readonly [K in keyof F]: F[K] extends JobFuture<infer R> ? R : never };

const timeoutError = (n: number, timeoutMs: number): CloudmillError =>
  new CloudmillError(
    ErrorCode.NOT_FINISHED,
    `${n} job(s) had not ended after ${timeoutMs / 1000}s; they go on: wait again, or cancel them`,
  );

/**
 * The signal every future's wait listens on: one listener each, so as many as there are futures
 * (Node would warn of a leak past 10).
 */
const sharedSignal = (deadline: AbortSignal, stop: AbortSignal, futures: number): AbortSignal => {
  const signal = AbortSignal.any([deadline, stop]);
  setMaxListeners(Math.max(10, futures + 1), signal);
  return signal;
};

/**
 * The results of all the futures, in their order. Rejects with the first job's error (its
 * code says why: BAD_RECORD, CANCELLED, …) and then stops polling the others, which go on.
 */
export const waitAll = async <F extends readonly JobFuture<unknown>[]>(futures: F, options: WaitOptions = {}): Promise<ResultsOf<F>> => {
  const waiting = new Set(futures);
  const deadline = deadlineSignal(options.signal, options.timeoutMs, () => timeoutError(waiting.size, options.timeoutMs!));
  const stop = new AbortController();
  const signal = sharedSignal(deadline.signal, stop.signal, futures.length);
  try {
    return (await Promise.all(
      futures.map((f) =>
        f.result({ signal }).then((v) => {
          waiting.delete(f);
          return v;
        }),
      ),
    )) as ResultsOf<F>;
  } catch (err) {
    if (deadline.signal.aborted) throw deadline.signal.reason;
    throw err;
  } finally {
    stop.abort();
    deadline.dispose();
  }
};

/**
 * Yields each future as its job ends (succeeded, failed or cancelled), in completion order;
 * then `await future.result()` gives its result or error without another request. Breaking
 * out of the loop stops the polling; a timeout or abort throws from the loop.
 */
export async function* asCompleted<R>(
  futures: readonly JobFuture<R>[],
  options: WaitOptions = {},
): AsyncGenerator<JobFuture<R>, void, undefined> {
  let left = futures.length;
  const deadline = deadlineSignal(options.signal, options.timeoutMs, () => timeoutError(left, options.timeoutMs!));
  const stop = new AbortController();
  const signal = sharedSignal(deadline.signal, stop.signal, futures.length);
  const pending = new Map<number, Promise<number>>();
  futures.forEach((f, i) => {
    pending.set(
      i,
      f.result({ signal }).then(
        () => i,
        () => i,
      ),
    );
  });
  try {
    while (pending.size > 0) {
      const i = await Promise.race(pending.values());
      pending.delete(i);
      if (deadline.signal.aborted) throw deadline.signal.reason;
      left--;
      yield futures[i]!;
    }
  } finally {
    stop.abort();
    deadline.dispose();
  }
}
