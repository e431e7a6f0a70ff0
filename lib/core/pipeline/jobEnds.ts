/**
 * A worker's view of which jobs (runs of a job: see TaskWorker's jobRun) have ended, so that it
 * need not make HEADs per task to skip an ended job's tasks. An end is final and kept; "still running" is
 * believed for `ttlMs`, so an ended job's tasks stop within that long of its end on every
 * worker. Concurrent asks about one job share one check.
 */
export interface JobEnds {
  ended(jobId: string): Promise<boolean>;
  /** The job has ended (this worker ended it): its other tasks stop at once. */
  markEnded(jobId: string): void;
}

/** Jobs remembered at most (the oldest answers are dropped first). */
const MAX_JOBS = 10_000;

export const cachedJobEnds = (check: (jobId: string) => Promise<boolean>, ttlMs: number, now: () => number = Date.now): JobEnds => {
  const known = new Map<string, { readonly ended: boolean; readonly at: number } | Promise<boolean>>();
  return {
    markEnded(jobId) {
      known.delete(jobId);
      known.set(jobId, { ended: true, at: now() });
    },
    async ended(jobId) {
      const seen = known.get(jobId);
      if (seen instanceof Promise) return seen;
      if (seen && (seen.ended || now() - seen.at < ttlMs)) return seen.ended;
      const asking = check(jobId);
      known.set(jobId, asking);
      try {
        const ended = await asking;
        // An end marked while the check ran stands.
        if (known.get(jobId) !== asking) return known.get(jobId) === undefined ? ended : true;
        known.delete(jobId);
        known.set(jobId, { ended, at: now() });
        if (known.size > MAX_JOBS) known.delete(known.keys().next().value!);
        return ended;
      } catch (err) {
        known.delete(jobId);
        throw err;
      }
    },
  };
};
