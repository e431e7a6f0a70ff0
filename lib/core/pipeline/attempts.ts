/**
 * Attempts at a task, wherever they ran. The queue counts the fleet's (its receive count); an
 * attempt the splitter made inline, before the queue had the task, is recorded with the task's
 * error, so that it counts toward the job's maxAttempts as well.
 */
import * as z from "zod";
import type { CloudmillError } from "../errors.js";
import type { TaskMessage } from "../job/manifest.js";
import type { PipelineDeps } from "./deps.js";
import { readJsonIfExists, writeJson } from "./blobJson.js";
import { StatusError, statusErrorOf } from "./status.js";
import { isDeterministic, taskErrorKey } from "./task.js";

/** A task's latest error, which the job's failure names (the dead-letter role reads it). */
export const TaskErrorRecord = z.object({
  attempt: z.number(),
  error: StatusError,
  /** Attempts made inline by the splitter, counted in `attempt`. */
  inline: z.number().int().min(0).optional(),
  /** The job run the attempts were made in (a resumed job starts counting again); absent in records of run 0 from before it was kept. */
  generation: z.number().int().min(0).optional(),
});
export type TaskErrorRecord = z.infer<typeof TaskErrorRecord>;

/**
 * A task's latest error in the task's own run of its job: a record of an earlier run (a chunk's
 * key is the same in every run) says nothing of this one's attempts, which ran under new limits.
 */
export const readTaskError = async (deps: Pick<PipelineDeps, "output">, task: TaskMessage): Promise<TaskErrorRecord | undefined> => {
  const record = await readJsonIfExists(deps.output, taskErrorKey(task), TaskErrorRecord);
  return record && (record.generation ?? 0) === (task.job.generation ?? 0) ? record : undefined;
};

/** Records a task's latest error; best effort, so that a failure to record never hides the error itself. */
export const recordTaskError = async (
  deps: PipelineDeps,
  task: TaskMessage,
  error: CloudmillError,
  attempt: number,
  inline: number,
): Promise<void> => {
  const record: TaskErrorRecord & { at: string } = {
    attempt,
    at: new Date().toISOString(),
    error: statusErrorOf(error),
    ...(inline > 0 ? { inline } : {}),
    generation: task.job.generation ?? 0,
  };
  await writeJson(deps.output, taskErrorKey(task), record).catch(() => undefined);
};

/** Attempts the splitter made at the task inline in this run of its job. */
const inlineAttempts = async (deps: PipelineDeps, task: TaskMessage): Promise<number> => {
  const record = await readTaskError(deps, task).catch(() => undefined);
  return record?.inline ?? 0;
};

/** What follows a failed attempt at a task. */
export type AfterFailure =
  /** The error would recur on every attempt (or the deadline passed): fail the job now. */
  | { readonly action: "fail-job" }
  /**
   * Try again, unless this was the `last` attempt. `attempt` counts inline attempts too: when it
   * is past the queue's receive count, the queue would deliver the task again, so the caller
   * hands it to the dead-letter role itself.
   */
  | { readonly action: "retry"; readonly attempt: number; readonly last: boolean };

/**
 * The rule every runner of tasks shares for a failed attempt: record the error, then decide.
 * `delivery` is the queue's receive count; `where` is "inline" for the splitter's own attempt.
 */
export const afterFailedAttempt = async (
  deps: PipelineDeps,
  task: TaskMessage,
  error: CloudmillError,
  delivery: number,
  where: "queue" | "inline" = "queue",
): Promise<AfterFailure> => {
  const inline = where === "inline" ? 1 : await inlineAttempts(deps, task);
  const attempt = where === "inline" ? 1 : delivery + inline;
  await recordTaskError(deps, task, error, attempt, inline);
  return isDeterministic(error) ? { action: "fail-job" } : { action: "retry", attempt, last: attempt >= task.job.maxAttempts };
};
