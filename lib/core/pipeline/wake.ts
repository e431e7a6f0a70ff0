/**
 * A job's merge and reduce tasks are the fleet's, and the reducer runs only when something
 * wakes it: a part written, or a long chunk's marker. Once a job's chunks are all mapped and
 * only such tasks are left, nothing else may come. So while that lasts the reducer wakes itself:
 * a delayed message on its own queue, one chain per job, each wake queuing again a merge task
 * past its lease (a worker of an older version deletes a task kind it does not know) and sending
 * the next. A job past its deadline is failed by the same wake rather than left running. (A
 * keyed job's lost reduce task is not queued again: its job fails at its deadline.)
 */
import * as z from "zod";
import { wakeKey } from "../keys.js";
import type { PipelineDeps } from "./deps.js";
import { readJsonIfExists, writeJson } from "./blobJson.js";
import { nowOf } from "./deps.js";

/** The reducer's own wake-up for a job, on the queue that brings it part events; `due`: when it was meant to arrive (ms). */
export const WakeMessage = z.object({ wake: z.object({ jobId: z.string().min(1), due: z.number().optional() }) });
export type WakeMessage = z.infer<typeof WakeMessage>;

/** Sends a job's wake-up, to arrive after a delay (SQS allows at most 15 minutes). */
export interface WakeSender {
  wakeAfter(jobId: string, seconds: number, due: number): Promise<void>;
}

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
