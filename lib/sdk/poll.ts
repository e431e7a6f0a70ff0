/** Waiting politely for a job: a growing poll interval, and a deadline as a signal. */
import { backoffMs, MAX_TIMER_MS } from "../core/sleep.js";
import { POLL_DEFAULTS } from "./constants.js";
import type { PollOptions } from "./types.js";

/** Delays initial, initial·factor, … capped at max. */
export const backoff = (options: PollOptions = {}): (() => number) => {
  const initial = options.initialMs ?? POLL_DEFAULTS.initialMs;
  const max = Math.max(initial, options.maxMs ?? POLL_DEFAULTS.maxMs);
  const factor = Math.max(1, options.factor ?? POLL_DEFAULTS.factor);
  let retry = 0;
  return () => backoffMs({ baseMs: initial, factor, capMs: max }, retry++);
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
  // A timeout past Node's longest timer would fire at once: a wait of over 24 days has none.
  const timer =
    timeoutMs === undefined || timeoutMs > MAX_TIMER_MS
      ? undefined
      : setTimeout(() => controller.abort(onTimeout()), Math.max(0, timeoutMs));
  return {
    signal: controller.signal,
    dispose() {
      if (timer !== undefined) clearTimeout(timer);
      parent?.removeEventListener("abort", onAbort);
    },
  };
};
