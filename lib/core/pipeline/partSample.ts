/** A few parts' recorded runs, spread over a job: what the reducer times a job by while it runs. */
import * as z from "zod";
import { TaskRun } from "../job/manifest.js";
import type { PipelineDeps } from "./deps.js";
import { readJsonIfExists } from "./blobJson.js";

/** Parts read per look: enough for a median or a mean, few enough for every reducer call. */
export const RUN_SAMPLE = 16;

/** Any part's run (a map, merged or reduce part records it the same way); the rest of the part is not checked. */
const Ran = z.object({ ran: TaskRun.optional() });

/** The runs of up to RUN_SAMPLE of the parts at `keys`, evenly spaced, read at once; parts without a run are skipped. */
export const sampleRuns = async (deps: Pick<PipelineDeps, "output">, keys: Iterable<string>): Promise<TaskRun[]> => {
  const all = [...keys];
  const step = Math.max(1, Math.floor(all.length / RUN_SAMPLE));
  const picked: string[] = [];
  for (let i = 0; i < all.length && picked.length < RUN_SAMPLE; i += step) picked.push(all[i]!);
  const read = await Promise.all(picked.map((key) => readJsonIfExists(deps.output, key, Ran).catch(() => undefined)));
  return read.flatMap((part) => (part?.ran ? [part.ran] : []));
};
