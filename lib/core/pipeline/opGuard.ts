/**
 * Op code that runs on a worker's main thread: a merge or reduce task's calls where no mapper
 * thread takes them (mergeTask.ts, reduceTask.ts). A call that never returns there would stop the worker's loop
 * and its heartbeats for good, and the task's next attempt would stop the next worker. So the
 * fleet's worker guards such calls (lib/sandbox/MainThreadWatchdog.ts): one that runs past the
 * task's time limit ends the worker process, which ECS replaces; the task's message returns
 * for its next attempt, and after the last the dead-letter handler fails the job.
 */
import type { AnyOp } from "../ops/types.js";
import type { GuardedTask } from "../ports.js";
import type { PipelineDeps } from "./deps.js";

const UNGUARDED: GuardedTask = { run: (fn) => fn(), close: () => undefined };

/**
 * The task's guard over `op`'s calls: none for cloudmill's own ops (their merges are ours, and
 * on a hot path), nor where nothing guards the main thread (a local run, the reducer).
 */
export const guardOf = (deps: Pick<PipelineDeps, "guard">, op: AnyOp, label: string, limitSeconds?: number): GuardedTask =>
  (op.digest !== undefined && deps.guard?.task(label, limitSeconds)) || UNGUARDED;
