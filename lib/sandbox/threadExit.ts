/**
 * Ending a worker thread without crashing the process. `worker.terminate()` that lands while the
 * thread is inside a call into Node (an `fs/promises` stat, say) aborts the whole process on Node
 * 20 ("Assertion failed: (req_wrap_async) != nullptr"). So a thread is first asked to exit, which
 * it does between two turns of its event loop; only one that does not answer in time (busy in
 * code that never yields) is terminated.
 */
import type { Worker } from "node:worker_threads";

/**
 * What a thread obeys by exiting at once (`process.exit`, which in a worker ends the thread); every
 * thread entry checks for it before its own requests.
 */
export const EXIT_REQUEST = { kind: "exit" } as const;
export type ExitRequest = typeof EXIT_REQUEST;

export const isExitRequest = (message: unknown): message is ExitRequest =>
  typeof message === "object" && message !== null && (message as { kind?: unknown }).kind === EXIT_REQUEST.kind;

/** How long a thread asked to exit has before it is terminated (one still loading its modules needs a while). */
export const EXIT_GRACE_MS = 5_000;
/**
 * The same for a thread ended because its task overran: most likely busy in code that never
 * yields, where the request is never read, while a thread whose event loop turns reads it in
 * milliseconds. A stuck one should not spin (and hold its heap) beside its replacement for long.
 */
export const STUCK_GRACE_MS = 200;

/** Ends `worker`: asks it to exit, and terminates it past `graceMs`. Settles once it has exited. */
export const endThread = (worker: Worker, graceMs: number = EXIT_GRACE_MS): Promise<void> => {
  // An exited worker has no thread id, and emits no second "exit".
  if (worker.threadId === -1) return Promise.resolve();
  // Waiting for an idle (unref'd) thread must hold the process open, or it ends with the wait unsettled.
  worker.ref();
  return new Promise((resolve) => {
    const timer = setTimeout(() => void worker.terminate(), graceMs);
    worker.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    worker.postMessage(EXIT_REQUEST);
  });
};
