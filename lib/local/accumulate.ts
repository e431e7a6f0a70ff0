/**
 * A task thread's running merge of the chunks it mapped, for ops whose merge does not
 * depend on order (Op.orderFreeMerge). Merging where the partial was made costs no part
 * read, no JSON parse and no third busy thread beside the mappers; and no part need be
 * written. A thread that dies loses its running total: the engine maps its chunks again.
 */
import { isMapTask, type TaskMessage } from "../core/job/manifest.js";
import type { OpRegistry } from "../core/ops/registry.js";
import type { Merger } from "../core/ops/types.js";
import type { MergedParts } from "../core/pipeline/partMerge.js";
import type { TaskOutcome } from "../core/pipeline/task.js";

interface Running {
  readonly merger: Merger<unknown>;
  readonly chunks: number[];
  skipped: number;
}

/** The outcome without its partial: what crosses back from a thread stays small. */
export const withoutPartial = (outcome: TaskOutcome): TaskOutcome =>
  outcome.kind === "done" ? { ...outcome, partial: undefined } : outcome;

export class Accumulators {
  readonly #byJob = new Map<string, Running>();

  constructor(private readonly registry: OpRegistry) {}

  /** Merges a mapped chunk's partial into its job's running total. */
  add(task: TaskMessage, outcome: TaskOutcome): void {
    // A reduce task's partial is its output part, merged by no one.
    if (outcome.kind !== "done" || !isMapTask(task)) return;
    let running = this.#byJob.get(task.jobId);
    if (!running) {
      const op = this.registry.get(task.job.op);
      running = { merger: op.merger(op.parseParams(task.job.params)), chunks: [], skipped: 0 };
      this.#byJob.set(task.jobId, running);
    }
    running.merger.add(outcome.partial);
    running.chunks.push(task.chunk.index);
    running.skipped += outcome.skipped;
  }

  /**
   * Merges totals taken from other threads into this job's running total (the end of a job:
   * this thread's dictionary knows their words). With no total here, theirs stay apart.
   */
  absorb(jobId: string, others: readonly MergedParts[]): MergedParts[] {
    const running = this.#byJob.get(jobId);
    if (!running) return [...others];
    // An add that throws leaves this total holding chunks it does not list: the caller must
    // then drop this thread's state (TaskThread.collect ends the thread).
    for (const o of others) {
      running.merger.add(o.partial);
      for (const i of o.chunks) running.chunks.push(i);
      running.skipped += o.skipped;
    }
    return [];
  }

  /** The job's running total, forgotten here; undefined when this thread merged none of its chunks. */
  take(jobId: string): MergedParts | undefined {
    const running = this.#byJob.get(jobId);
    if (!running) return undefined;
    this.#byJob.delete(jobId);
    return { chunks: running.chunks, partial: running.merger.value(), skipped: running.skipped };
  }
}
