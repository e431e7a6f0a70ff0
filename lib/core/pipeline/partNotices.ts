/**
 * Part notices: how the reducer learns that a task's part is there. A worker names the parts
 * of the tasks it finished in one message per batch on the reducer's queue, before it deletes
 * their task messages; an S3 event per part cost a request per task. A notice lost with its
 * worker is no loss: the task's message comes back, and its next run finds the part and names
 * it again. A part no notice names (a worker of an older release, during a deploy) is found by
 * the job's wake-ups (wake.ts), which every job queued on the fleet keeps.
 */
import * as z from "zod";
import type { TaskMessage } from "../job/manifest.js";
import { taskPartKey, type TaskOutcome } from "./task.js";

/** A notice's body: the keys of parts (a chunk's, a merge's, a reduce task's) written under `_work/`. */
export const PartNotice = z.object({ written: z.object({ keys: z.array(z.string().min(1)).min(1) }) });
export type PartNotice = z.infer<typeof PartNotice>;

/** Keys one notice names at most: 100 keys of S3's longest (1 KiB) stay well inside SQS's 256 KiB message. */
export const KEYS_PER_NOTICE = 100;

/** The keys a parts-queue message names as written, if it is a notice. */
export const noticedKeys = (body: unknown): readonly string[] | undefined => PartNotice.safeParse(body).data?.written.keys;

/**
 * The part a finished task's notice names: its own, when it wrote it or found it written (a
 * copy's run may have died between its write and its notice). None when its job had ended.
 */
export const noticeOf = (task: TaskMessage, outcome: TaskOutcome): string | undefined =>
  outcome.kind === "job-ended" ? undefined : taskPartKey(task);
