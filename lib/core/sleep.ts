/** Waiting, one way everywhere: abortable, and no timer left behind. */

/**
 * Resolves after `ms`; rejects with the signal's own reason as soon as it aborts, clearing its
 * timer. The timer is ref'd: a process whose only work is this wait stays alive. (The global
 * setTimeout rather than node:timers/promises, so that tests' fake clocks drive it too.)
 */
/**
 * Longest timer Node keeps (about 24.8 days): a longer one fires at once. A deadline further
 * away needs no timer yet.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

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

/** How a delay grows with each retry: base·factor^retry, capped, and jittered so that callers spread out. */
export interface Backoff {
  readonly baseMs: number;
  readonly factor: number;
  readonly capMs: number;
  /** `full`: uniform in [0, d); `half`: uniform in [d/2, d); `none` (default): d. */
  readonly jitter?: "full" | "half" | "none";
}

/** The delay before retry number `retry` (0 for the first). */
export const backoffMs = (b: Backoff, retry: number, random: () => number = Math.random): number => {
  const d = Math.min(b.capMs, b.baseMs * b.factor ** Math.max(0, retry));
  switch (b.jitter ?? "none") {
    case "full":
      return random() * d;
    case "half":
      return d * (0.5 + random() / 2);
    case "none":
      return d;
  }
};
