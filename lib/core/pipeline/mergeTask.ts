/**
 * A merge task on the fleet (mergeTree.ts): reads its group's parts in chunk order, a few
 * ahead, merges their readings both ways where the quote state before the group matters
 * (spans.ts), and writes one merged part. Its key is a pure function of (job, run, level,
 * group) and its partials of the parts it read, so a repeated merge writes the same answer.
 */
import { backupWonKey, mergedKey } from "../keys.js";
import type { MergeTask, TaskRun } from "../job/manifest.js";
import type { AnyOp } from "../ops/types.js";
import { isTaskOp } from "../ops/defineTask.js";
import { nowOf, type PipelineDeps } from "./deps.js";
import { exists, writeJson } from "./blobJson.js";
import type { SniffedSeparator } from "./part.js";
import { ReadingChain, readingsOf, type MergedPart, type MergeRun, type Span } from "./spans.js";
import type { RemoteMerged } from "./mappers.js";
import { mergeIndexOf, readMergedSpan, readPartSpan } from "./mergeTree.js";
import { guardOf } from "./opGuard.js";
import type { GuardedTask } from "../ports.js";

/** Parts read ahead of the one being merged. */
const READ_AHEAD = 8;

/** The span of child `index` of a merge task's group: a map part at level 1, else a merged part of the level below. */
const readChild = async (deps: PipelineDeps, task: MergeTask, index: number, signal?: AbortSignal): Promise<Span> => {
  const { jobId, job, merge } = task;
  return merge.level === 1
    ? readPartSpan(deps, jobId, index, undefined, signal)
    : readMergedSpan(deps, { jobId, generation: job.generation ?? 0, level: merge.level - 1, group: index }, signal);
};

export interface MergeOptions {
  readonly signal?: AbortSignal;
  /** The run to record in the merged part. */
  readonly ran?: () => TaskRun;
  /** True when another copy of the merge may have written its part (this one ran long enough to get a backup). */
  readonly firstCopyWins?: () => boolean;
}

/** Merges the task's group and writes its merged part. */
export const runMergeTask = async (deps: PipelineDeps, task: MergeTask, op: AnyOp, options: MergeOptions = {}): Promise<void> => {
  const { jobId, job, merge } = task;
  // A lab op's merges run on a mapper thread where the worker has them, under the task's time and
  // heap limits: one that never returns or grows without bound fails its task, not the worker. A
  // task op's merge is cloudmill's own (its items' results), as a built-in op's is.
  if (op.digest !== undefined && !isTaskOp(op) && deps.mappers) {
    const host = deps.mappers;
    const merger = (twoWays: boolean): Merging => {
      const remote = host.merge({
        op: op.name,
        params: job.params,
        twoWays,
        ...(options.signal ? { signal: options.signal } : {}),
        ...(job.taskTimeoutSeconds !== undefined ? { timeoutSeconds: job.taskTimeoutSeconds } : {}),
        ...(job.taskMemoryMiB !== undefined ? { memoryMiB: job.taskMemoryMiB } : {}),
      });
      return { signal: remote.signal, add: (span) => remote.add(readingsOf(span)), finish: () => remote.finish(), close: remote.close };
    };
    await mergeGroup(deps, task, merger, options);
    return;
  }
  const params = op.parseParams(job.params);
  // Elsewhere on this thread: guarded, so that one that never returns ends the worker.
  const guard = guardOf(deps, op, `merge task ${merge.group} of level ${merge.level} of job ${jobId}`, job.taskTimeoutSeconds);
  try {
    await mergeGroup(deps, task, (twoWays) => mergingHere(op, params, twoWays, guard), options);
  } finally {
    guard.close();
  }
};

/** A group's merge, here or on another thread: spans go in in order, the readings come out. */
interface Merging {
  /** Aborted when the merge is past its limits (on a thread). */
  readonly signal?: AbortSignal;
  add(span: Span): Promise<void> | void;
  finish(): Promise<RemoteMerged> | RemoteMerged;
  close(): void;
}

const mergingHere = (op: AnyOp, params: unknown, twoWays: boolean, guard: GuardedTask): Merging => {
  const outside = new ReadingChain(op.merger(params), false);
  const inside = twoWays ? new ReadingChain(op.merger(params), true) : undefined;
  return {
    add: (span) =>
      guard.run(() => {
        outside.add(span);
        inside?.add(span);
      }),
    finish: () => ({ outside: guard.run(() => outside.reading()), ...(inside ? { inside: guard.run(() => inside.reading()) } : {}) }),
    close: () => undefined,
  };
};

const mergeGroup = async (
  deps: PipelineDeps,
  task: MergeTask,
  merger: (twoWays: boolean) => Merging,
  options: MergeOptions,
): Promise<void> => {
  const { jobId, job, merge } = task;
  const ahead: Promise<Span>[] = [];
  let next = merge.from;
  let merging: Merging | undefined;
  // A merge ended on its thread (past its limits) ends the reads ahead too.
  const signal = (): AbortSignal | undefined =>
    merging?.signal && options.signal ? AbortSignal.any([merging.signal, options.signal]) : (merging?.signal ?? options.signal);
  const fill = (): void => {
    while (ahead.length < READ_AHEAD && next < merge.to) {
      const p = readChild(deps, task, next++, signal());
      // Awaited in turn: a read failing while an earlier one is awaited must not go unhandled.
      p.catch(() => undefined);
      ahead.push(p);
    }
  };
  const sniffed: SniffedSeparator[] = [];
  const runs: [number, TaskRun][] = [];
  const merges: MergeRun[] = [];
  let readings: RemoteMerged;
  try {
    fill();
    while (ahead.length > 0) {
      options.signal?.throwIfAborted();
      const span = await ahead.shift()!;
      fill();
      // The group's first part decides whether the state before the group matters.
      merging ??= merger(span.dependsOnStart);
      await merging.add(span);
      // One at a time: a spread of a level's hundreds of thousands would overflow the stack.
      for (const s of span.sniffed) sniffed.push(s);
      for (const [i, run] of span.runs) runs.push([i, run]);
      for (const m of span.merges) merges.push(m);
    }
    readings = await merging!.finish();
  } finally {
    merging?.close();
  }
  const merged: MergedPart = {
    v: 1,
    jobId,
    generation: job.generation ?? 0,
    ...merge,
    ...readings,
    sniffed,
    runs,
    ...(merges.length > 0 ? { merges } : {}),
    ...(options.ran ? { ran: options.ran() } : {}),
  };
  const key = mergedKey(jobId, merged.generation, merge.level, merge.group);
  // Either copy of a raced merge (a backup, or an original that may have one): the first to finish
  // wins, and the other writes nothing. Both hold the same answer, but the part's run says which ran.
  if ((task.backup || options.firstCopyWins?.()) && (await exists(deps.output, key))) return;
  if (task.backup) {
    const index = await mergeIndexOf(deps, task);
    if (index !== undefined)
      await writeJson(deps.output, backupWonKey(jobId, index, task.job.generation), { at: new Date(nowOf(deps)).toISOString() });
  }
  await writeJson(deps.output, key, merged);
};
