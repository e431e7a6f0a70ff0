/** Waiting politely: an abortable sleep and an exponential backoff, with no timer left behind. */
import { POLL_DEFAULTS } from "./constants.js";
import type { PollOptions } from "./types.js";

/** Resolves after ms, or rejects with the signal's reason as soon as it aborts; clears its timer either way. */
export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });

/** Delays initial, initial·factor, … capped at max. */
export const backoff = (options: PollOptions = {}): (() => number) => {
  const initial = options.initialMs ?? POLL_DEFAULTS.initialMs;
  const max = Math.max(initial, options.maxMs ?? POLL_DEFAULTS.maxMs);
  const factor = Math.max(1, options.factor ?? POLL_DEFAULTS.factor);
  let next = initial;
  return () => {
    const d = next;
    next = Math.min(max, next * factor);
    return d;
  };
};

/**
 * A signal that aborts when `parent` does or after `timeoutMs` (with `onTimeout()` as reason).
 * Call `dispose()` when done: it clears the timer and the listener on the parent.
 */
export const deadlineSignal = (
  parent: AbortSignal | undefined,
  timeoutMs: number | undefined,
  onTimeout: () => unknown,
): { readonly signal: AbortSignal; dispose(): void } => {
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(parent!.reason);
  if (parent?.aborted) controller.abort(parent.reason);
  else parent?.addEventListener("abort", onAbort, { once: true });
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => controller.abort(onTimeout()), Math.max(0, timeoutMs));
  return {
    signal: controller.signal,
    dispose() {
      if (timer !== undefined) clearTimeout(timer);
      parent?.removeEventListener("abort", onAbort);
    },
  };
};
