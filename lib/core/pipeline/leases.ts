/**
 * Lease notes of long merge and reduce tasks. Nothing shorter than the job's deadline bounds a
 * reduce task (the task time limit bounds each op call, not the merge of a partition), so a
 * queue that showed nothing for a task time limit does not say such a task has ended. The
 * worker running one rewrites its note every LEASE_NOTE_EVERY_MS; the reducer does not queue
 * again, as lost, a task whose note is younger than the lease.
 */
import * as z from "zod";
import { leaseNoteKey } from "../keys.js";
import { mapInOrder } from "../mapInOrder.js";
import { readJsonIfExists, writeJson } from "./blobJson.js";
import { nowOf, type PipelineDeps } from "./deps.js";
import { TASK_LEASE_MS } from "./wake.js";

/** How often a running merge or reduce task's worker rewrites its note: a few times per default lease. */
export const LEASE_NOTE_EVERY_MS = TASK_LEASE_MS / 4;

const LeaseNote = z.object({ at: z.number() });

/** Notes that task `index` of the job's run `generation` is running now. */
export const noteLease = (deps: Pick<PipelineDeps, "output" | "now">, jobId: string, index: number, generation = 0): Promise<void> =>
  writeJson(deps.output, leaseNoteKey(jobId, index, generation), { at: nowOf(deps) });

/** Notes read at once. */
const READS_AT_ONCE = 16;

/** Those of `indexes` whose task noted within `leaseMs` that it runs: not lost. An unreadable note says nothing. */
export const heldLeases = async (
  deps: Pick<PipelineDeps, "output" | "now">,
  jobId: string,
  indexes: readonly number[],
  generation: number,
  leaseMs: number,
): Promise<Set<number>> => {
  const now = nowOf(deps);
  const notes = await mapInOrder(indexes, READS_AT_ONCE, (index) =>
    readJsonIfExists(deps.output, leaseNoteKey(jobId, index, generation), LeaseNote).catch(() => undefined),
  );
  return new Set(indexes.filter((_, i) => notes[i] !== undefined && now - notes[i].at < leaseMs));
};
