/**
 * Small jobs run where they start. A job under the stack's inline limit is mapped by the
 * splitter itself, chunk by chunk, with the task code a worker runs and the parts a worker
 * would write, so the reducer cannot tell the difference. Whatever the function's time
 * cannot cover goes to the queue. Parts are keyed by chunk, so a chunk mapped twice (inline,
 * then again on the fleet after a timeout) is counted once.
 */
import * as z from "zod";
import { inlineKey } from "../keys.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../errors.js";
import type { InputObject, MapTask } from "../job/manifest.js";
import { isTaskOp } from "../ops/defineTask.js";
import { isShuffled, type AnyOp } from "../ops/types.js";
import { nowOf, type SplitDeps } from "./deps.js";
import { readJsonIfExists, writeJson } from "./blobJson.js";
import { failJobOfTask, handleDeadLetter } from "./deadLetter.js";
import { logFieldsOf } from "./logFields.js";
import { afterFailedAttempt, readTaskError, recordTaskError } from "./attempts.js";
import { runTask } from "./task.js";

export interface InlineOptions {
  /** Jobs of at most this many input bytes run inline (0: none). */
  readonly maxBytes: number;
  /** Milliseconds this invocation has left (Lambda's `context.getRemainingTimeInMillis`). */
  readonly remainingMs: () => number;
  /** Time kept back to hand the remaining chunks to the fleet. */
  readonly reserveMs: number;
  /**
   * Shows how many chunks are mapped (the job's status), at most once per PROGRESS_EVERY_MS: no
   * part of an inline chunk wakes the reducer, which shows a fleet job's.
   */
  readonly progress?: (mapped: number) => Promise<void>;
}

/** How often an inline run shows its progress. */
const PROGRESS_EVERY_MS = 1000;

/** Written before the first inline chunk: a later invocation that finds it knows an earlier one died. */
export const InlineMarker = z.object({ at: z.string() });

/**
 * Whether a job may run inline: small enough, one stage (a keyed op's reduce tasks need the
 * fleet), no item tasks (they run a lab's code in threads of the image), and an op that is
 * cheap enough: a built-in, or a lab op that says so.
 */
export const runsInline = (op: AnyOp, inputs: readonly InputObject[], maxBytes: number): boolean =>
  inputs.reduce((n, i) => n + i.size, 0) <= maxBytes &&
  // A compressed input of several chunks may decode to far more than its size says.
  !inputs.some((i) => i.codec !== undefined) &&
  !isShuffled(op) &&
  !isTaskOp(op) &&
  (op.digest === undefined || op.inline === true);

/**
 * After an invocation died inline (out of time or memory), counts an attempt at the chunk it
 * had reached: the first without a part. (It may have died just before starting it: then the
 * chunk is counted as tried once too often, never too seldom.)
 */
export const countDiedAttempt = async (deps: SplitDeps, task: MapTask): Promise<void> => {
  // An error the chunk met inline before the invocation died says more, and counts already.
  const recorded = await readTaskError(deps, task).catch(() => undefined);
  if (recorded?.inline !== undefined && recorded.generation === (task.job.generation ?? 0)) return;
  const died = new CloudmillError(ErrorCode.ENVIRONMENT, "the splitter ended while mapping it inline (out of time or memory?)");
  await recordTaskError(deps, task, died, 1, 1);
};

/** True when an earlier invocation began this job inline and did not finish handing it on. */
export const inlineBegun = async (deps: SplitDeps, jobId: string): Promise<boolean> =>
  (await readJsonIfExists(deps.output, inlineKey(jobId), InlineMarker)) !== undefined;

export interface InlineRun {
  /** Chunks mapped here, from the first: the fleet gets the rest. */
  readonly mapped: number;
  /** The job ended meanwhile (a chunk failed it, or it was cancelled): nothing more to enqueue. */
  readonly ended: boolean;
}

/**
 * Maps the job's chunks in order while the time left covers the slowest chunk so far twice
 * over plus the reserve; a chunk still running when only the reserve is left is abandoned.
 * A chunk whose error would recur anywhere fails the job, as on the fleet; any other error,
 * or an abandoned chunk, stops the inline run, and the fleet takes that chunk and the rest.
 */
export const mapInline = async (deps: SplitDeps, tasks: Iterable<MapTask>, options: InlineOptions): Promise<InlineRun> => {
  let mapped = 0;
  let slowest = 0;
  let shown = nowOf(deps);
  // A lab's map runs on a thread (when the splitter has them), where the budget's abort ends
  // even a map that never yields, and its heap is capped; a built-in runs here, sooner.
  const { mappers: _, ...here } = deps;
  /** The progress write on its way, if any; waited for before the run returns (its end is written after). */
  let showing: Promise<void> | undefined;
  try {
    for (const task of tasks) {
      const runDeps = deps.registry.get(task.job.op).digest !== undefined ? deps : here;
      const spare = options.remainingMs() - options.reserveMs;
      if (spare <= 2 * slowest) break;
      if (mapped === 0) await writeJson(deps.output, inlineKey(task.jobId), { at: new Date(nowOf(deps)).toISOString() });
      const began = nowOf(deps);
      const budget = new AbortController();
      const timer = setTimeout(() => budget.abort(new Error("the splitter's time is nearly up")), spare);
      try {
        const outcome = await runTask(runDeps, task, { ranOn: "lambda", worker: "splitter", signal: budget.signal });
        if (outcome.kind === "job-ended") return { mapped, ended: true };
      } catch (err) {
        if (budget.signal.aborted) {
          deps.log.info("inline chunk outran the splitter's time; the fleet takes it from here", { chunk: task.chunk.index });
          break;
        }
        const error = toCloudmillError(err);
        const next = await afterFailedAttempt(deps, task, error, 0, "inline");
        if (next.action === "fail-job") {
          await failJobOfTask(deps, task.jobId, task.job.generation ?? 0, error, mapped);
          return { mapped, ended: true };
        }
        // maxAttempts 1: this was the chunk's one attempt.
        if (next.last && (await handleDeadLetter(deps, JSON.stringify(task))) === "failed") return { mapped, ended: true };
        deps.log.warn("inline chunk failed; the fleet takes it from here", logFieldsOf(error));
        break;
      } finally {
        clearTimeout(timer);
      }
      slowest = Math.max(slowest, nowOf(deps) - began);
      mapped++;
      // Not waited for: the next chunk maps meanwhile (at most one on its way).
      if (options.progress && showing === undefined && nowOf(deps) - shown >= PROGRESS_EVERY_MS) {
        shown = nowOf(deps);
        const jobId = task.jobId;
        showing = options
          .progress(mapped)
          .catch((err: unknown) => deps.log.warn("inline progress not shown", { jobId, ...logFieldsOf(toCloudmillError(err)) }))
          .finally(() => {
            showing = undefined;
          });
      }
    }
    return { mapped, ended: false };
  } finally {
    await showing;
  }
};
