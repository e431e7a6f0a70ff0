/**
 * The cancel role: mark a job cancelled so that workers skip its queued chunks (runTask checks
 * `_work/<id>/cancelled.json` before mapping) and the reducer never merges it, then show it in
 * the status users read. A job that has already ended keeps its end: a succeeded job's result
 * is exact and stays; a failed job stays failed.
 *
 * The marker is written first and the status after it; then the terminal markers are read
 * again, so a reducer or failure handler racing this call can never leave a status that
 * disagrees with them (precedence as in status.ts: succeeded, then failed, then cancelled).
 */
import { cancelKey, manifestKey, succeededKey, type OutputKeys } from "../keys.js";
import { JobStatus, Manifest, shownInputs, taskCount } from "../job/manifest.js";
import type { PipelineDeps } from "./deps.js";
import { readJsonIfExists, writeJson } from "./blobJson.js";
import { CancelRecord, describingFields, failureOfRun, isSuperseded } from "./status.js";

/** What cancelling needs: the output bucket, a clock and a logger (no queue: chunks are skipped, not purged). */
export type CancelDeps = Pick<PipelineDeps, "output" | "log" | "now">;

export type CancelOutcome =
  /** The job is cancelled now (or was already): its remaining chunks will be skipped. */
  | { readonly kind: "cancelled"; readonly status: JobStatus }
  /** The job had succeeded or failed before the cancel took effect; nothing changed. */
  | { readonly kind: "already-ended"; readonly status: JobStatus };

/** The status a terminal marker implies: succeeded, then failed. Cancelled is handled by the caller. */
const endedStatus = async (deps: CancelDeps, jobId: string, current: JobStatus, run: number): Promise<JobStatus | undefined> => {
  const succeeded = await readJsonIfExists(deps.output, succeededKey(jobId), JobStatus);
  if (succeeded) return succeeded;
  const failure = await failureOfRun(deps.output, jobId, run);
  if (failure) return { ...current, state: "failed", finishedAt: failure.at, error: failure.error };
  return undefined;
};

/**
 * Cancels job `jobId` whose status lives at `output.status`. Idempotent; safe to call before
 * the splitter has run (the marker then makes every task of the job a no-op).
 */
export const cancelJob = async (deps: CancelDeps, jobId: string, output: OutputKeys): Promise<CancelOutcome> => {
  const log = deps.log.child({ jobId });
  const manifest = await readJsonIfExists(deps.output, manifestKey(jobId), Manifest);
  const shown = await readJsonIfExists(deps.output, output.status, JobStatus);
  const own = shown?.jobId === jobId ? shown : undefined;
  // Counted as its progress is (a keyed job's reduce tasks too), with what the status said of the job.
  const base: JobStatus = {
    ...(manifest?.hidden ? { hidden: manifest.hidden } : {}),
    ...(own ? describingFields(own) : {}),
    jobId,
    state: "running",
    chunks: manifest ? taskCount(manifest) : (own?.chunks ?? 0),
    done: own?.done ?? 0,
    ...(manifest ? { op: manifest.job.op, ...shownInputs(manifest), startedAt: manifest.createdAt } : {}),
  };

  // A later job's status at the same key (the upload overwritten) is never written over.
  const later = isSuperseded(shown, jobId, manifest?.createdAt);
  const show = async (status: JobStatus): Promise<void> => {
    if (!later) await writeJson(deps.output, output.status, status);
  };

  const before = await endedStatus(deps, jobId, base, manifest?.retries ?? 0);
  if (before) {
    // An end whose status write was lost is shown now.
    if (own?.state !== before.state) await show(before);
    return { kind: "already-ended", status: before };
  }

  const existing = await readJsonIfExists(deps.output, cancelKey(jobId), CancelRecord);
  const now = new Date(deps.now ? deps.now() : Date.now()).toISOString();
  const at = existing?.at ?? now;
  // Asked again, the marker says when: a retry asked before this cancel (its resume not yet
  // run) must not resume the job and take the marker away (resume.ts).
  await writeJson(deps.output, cancelKey(jobId), existing ? { at, asked: now } : { at });
  const cancelled: JobStatus = { ...base, state: "cancelled", finishedAt: at };
  await show(cancelled);

  // A reducer or failure that got past its own check before the marker existed wins.
  const after = await endedStatus(deps, jobId, base, manifest?.retries ?? 0);
  if (after) {
    await show(after);
    return { kind: "already-ended", status: after };
  }
  if (!existing) log.info("job cancelled", { done: cancelled.done, chunks: cancelled.chunks });
  return { kind: "cancelled", status: cancelled };
};
