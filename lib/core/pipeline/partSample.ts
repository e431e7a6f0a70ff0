/** A few parts' recorded runs, spread over a job: what the reducer times a job by while it maps. */
import type { TaskRun } from "../job/manifest.js";
import type { PipelineDeps } from "./deps.js";
import { readJsonIfExists } from "./blobJson.js";
import { Part } from "./part.js";

/** Parts read per look: enough for a median or a mean, few enough for every reducer call. */
export const RUN_SAMPLE = 16;

/** The runs of up to RUN_SAMPLE of `parts` (by chunk), evenly spaced; parts without a run are skipped. */
export const sampleRuns = async (deps: Pick<PipelineDeps, "output">, parts: ReadonlyMap<number, string>): Promise<TaskRun[]> => {
  const keys = [...parts.values()];
  const step = Math.max(1, Math.floor(keys.length / RUN_SAMPLE));
  const runs: TaskRun[] = [];
  for (let i = 0; i < keys.length && runs.length < RUN_SAMPLE; i += step) {
    const ran = (await readJsonIfExists(deps.output, keys[i]!, Part).catch(() => undefined))?.ran;
    if (ran) runs.push(ran);
  }
  return runs;
};
