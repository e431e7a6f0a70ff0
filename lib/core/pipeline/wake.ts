/**
 * A job's merge and reduce tasks are the fleet's, but only the reducer re-queues one that is
 * lost (a worker of an older version deletes a task kind it does not know), and the reducer runs
 * only when something wakes it: a part written, or a long chunk's marker. Once a job's chunks are
 * all mapped and only such tasks are left, nothing else may come. So while that lasts the reducer
 * wakes itself: a delayed message on its own queue, one pending at a time per job, each wake
 * re-queuing what is past its lease and sending the next. A job past its deadline is failed by the
 * same wake, rather than left running.
 */
import * as z from "zod";
import { wakeKey } from "../keys.js";
import type { PipelineDeps } from "./deps.js";
import { readJsonIfExists, writeJson } from "./blobJson.js";
import { nowOf } from "./deps.js";

/** The reducer's own wake-up for a job, on the queue that brings it part events. */
export const WakeMessage = z.object({ wake: z.object({ jobId: z.string().min(1) }) });
export type WakeMessage = z.infer<typeof WakeMessage>;

/** Sends a job's wake-up, to arrive after a delay (SQS allows at most 15 minutes). */
export interface WakeSender {
  wakeAfter(jobId: string, seconds: number): Promise<void>;
}

/** SQS's longest delay. */
export const MAX_WAKE_DELAY_SECONDS = 15 * 60;

/** When the job's pending wake is due: while it is, no other is sent. */
const PendingWake = z.object({ due: z.number() });

/** The job id of a parts-queue message that is a wake-up, else undefined. */
export const wokenJob = (body: unknown): string | undefined => WakeMessage.safeParse(body).data?.wake.jobId;

/**
 * Makes sure a wake-up is on its way for the job, `afterMs` from now (capped at SQS's limit):
 * none is sent while an earlier one is still due, unless this call is that wake-up (`woken`).
 * Sent first, then noted: a send that fails throws (the caller's event is retried), and a note
 * that fails costs one extra wake.
 */
export const keepAwake = async (
  deps: PipelineDeps & { readonly wake: WakeSender },
  jobId: string,
  afterMs: number,
  woken = false,
): Promise<boolean> => {
  const now = nowOf(deps);
  const pending = woken ? undefined : await readJsonIfExists(deps.output, wakeKey(jobId), PendingWake).catch(() => undefined);
  if (pending && pending.due > now) return false;
  const seconds = Math.min(MAX_WAKE_DELAY_SECONDS, Math.max(1, Math.ceil(afterMs / 1000)));
  await deps.wake.wakeAfter(jobId, seconds);
  await writeJson(deps.output, wakeKey(jobId), { due: now + seconds * 1000 }).catch(() => undefined);
  return true;
};
