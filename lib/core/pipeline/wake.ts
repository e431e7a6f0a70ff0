/**
 * The reducer runs only when something wakes it: a worker's notice of parts written, or a long
 * task's running marker. So it also wakes itself: a delayed message on its own queue, one chain
 * per job, each wake sending the next while the job runs. The splitter starts a chain for every
 * job it queues on the fleet (or maps whole, and reduces itself, which may fail), and so does a
 * resume. While the job maps, a wake finds parts no notice named (a worker of an older release,
 * during a deploy); once only merge and reduce tasks are left, it queues again those past their
 * lease (a worker of an older version deletes a task kind it does not know). A job past its
 * deadline is failed by the same wake rather than left running.
 */
import * as z from "zod";
import { idleKey, wakeKey } from "../keys.js";
import type { TaskQueue, WakeSender } from "../ports.js";
import type { PipelineDeps } from "./deps.js";
import { readJsonIfExists, writeJson } from "./blobJson.js";
import { nowOf } from "./deps.js";

/** The reducer's own wake-up for a job, on the queue that brings it part events; `due`: when it was meant to arrive (ms). */
export const WakeMessage = z.object({ wake: z.object({ jobId: z.string().min(1), due: z.number().optional() }) });
export type WakeMessage = z.infer<typeof WakeMessage>;

/**
 * A queued merge or reduce task with no part after this long is queued again when the reducer
 * next runs. A copy of a task still running finds its part written, or writes the same bytes.
 */
export const TASK_LEASE_MS = 10 * 60_000;

/** A wake-up comes a little after the lease it waits for, so that the lease has surely run out. */
const wakeDelayMs = (leaseMs: number): number => Math.ceil(leaseMs * 1.05) + 1000;

/** Since when (ms) the task queue has looked idle while a job's merge or reduce tasks were past their lease; `{}`: not now. */
const IdleSince = z.strictObject({ since: z.number().optional() });

/** Task time limits a task may stay past its lease behind a backlog that never clears before it is queued again anyway. */
export const BUSY_QUEUE_LIMITS = 3;

/**
 * Whether a job's merge or reduce tasks past their lease may be queued again now, asked with
 * when the longest-waiting of them went past it. A task still waiting on the queue is not lost,
 * nor is one still running; so only once the queue has shown nothing visible for the job's task
 * time limit: a task received before that spell began has ended by then (done, or failed and
 * visible again). Behind a backlog that never clears (other jobs' tasks), a lost task would wait
 * for the job's deadline: once it has been past its lease for BUSY_QUEUE_LIMITS time limits it is
 * queued again all the same (a copy of a task still waiting costs its run, never a byte of the
 * output), but only once the job's chunks are all mapped (`mapped`): before, its merges wait
 * behind its own chunks. The first idle sighting is noted in `_work/<jobId>/idle.json`; a backlog
 * clears it, and so does queuing the tasks again (the copies need a spell of their own): written
 * over, never deleted (the reducer may not delete). The queue is asked once per call, and only
 * when a task is past its lease.
 */
export const requeueWhenSettled = (
  deps: PipelineDeps & { readonly queue: TaskQueue },
  jobId: string,
  taskTimeoutSeconds: number,
  options: { readonly mapped: boolean },
): ((pastLeaseSince: number) => Promise<boolean>) => {
  const limitMs = taskTimeoutSeconds * 1000;
  const now = nowOf(deps);
  const key = idleKey(jobId);
  /** The note as last read or written by this call. */
  let since: number | undefined;
  let backlog = false;
  let idle: Promise<boolean> | undefined;
  const idleSpellOver = async (): Promise<boolean> => {
    since = (await readJsonIfExists(deps.output, key, IdleSince))?.since;
    backlog = (await deps.queue.depth()).visible > 0;
    if (backlog) return false;
    if (since !== undefined && now - since >= limitMs) return true;
    if (since === undefined) await writeJson(deps.output, key, { since: (since = now) });
    return false;
  };
  let cleared: Promise<void> | undefined;
  const clear = () => (cleared ??= since === undefined ? Promise.resolve() : writeJson(deps.output, key, {}));
  return async (pastLeaseSince) => {
    const spellOver = await (idle ??= idleSpellOver());
    const over = spellOver || (options.mapped && now - pastLeaseSince >= BUSY_QUEUE_LIMITS * limitMs);
    // A backlog ends the idle spell; the copies about to be queued need a spell of their own.
    if (over || backlog) await clear();
    return over;
  };
};

/** SQS's longest delay. */
export const MAX_WAKE_DELAY_SECONDS = 15 * 60;

/** When the job's pending wake is due: while it is, no other is sent. */
const PendingWake = z.object({ due: z.number() });

/** A parts-queue message that is a wake-up: its job, and when it was due; else undefined. */
export const wakeOf = (body: unknown): WakeMessage["wake"] | undefined => WakeMessage.safeParse(body).data?.wake;

/**
 * Makes sure a wake-up is on its way for the job, `afterMs` from now (capped at SQS's limit).
 * None is sent while the pending one is still due. A call that is a wake-up (`woken`: the due
 * time it carried) sends the next unless a later one is pending already: a wake delivered twice,
 * or met by one sent meanwhile, ends its chain there, so one chain runs per job. Sent first,
 * then noted: a send that fails throws (the caller's event is retried), and a note that fails
 * costs one extra wake.
 */
export const keepAwake = async (
  deps: PipelineDeps & { readonly wake: WakeSender },
  jobId: string,
  afterMs: number,
  woken?: number,
): Promise<boolean> => {
  const now = nowOf(deps);
  const pending = await readJsonIfExists(deps.output, wakeKey(jobId), PendingWake);
  if (pending && (woken === undefined ? pending.due > now : pending.due > woken)) return false;
  const seconds = Math.min(MAX_WAKE_DELAY_SECONDS, Math.max(1, Math.ceil(afterMs / 1000)));
  const due = now + seconds * 1000;
  await deps.wake.wakeAfter(jobId, seconds, due);
  await writeJson(deps.output, wakeKey(jobId), { due }).catch(() => undefined);
  return true;
};

/** keepAwake for a role that may send wake-ups: the next a little past the lease of the job's tasks (no sender: none). */
export const keepAwakeForLease = (
  deps: PipelineDeps & { readonly wake?: WakeSender; readonly taskLeaseMs?: number },
  jobId: string,
  woken?: number,
): Promise<boolean> =>
  deps.wake
    ? keepAwake({ ...deps, wake: deps.wake }, jobId, wakeDelayMs(deps.taskLeaseMs ?? TASK_LEASE_MS), woken)
    : Promise.resolve(false);
