/**
 * A started job's map tasks rebuilt from its manifest, as the splitter sent them: what a backup,
 * a resume or a lost task sends again. A chunk's range is a pure function of (inputs, chunk size, index).
 */
import type { Manifest, MapTask } from "../job/manifest.js";
import { planChunks, planOptionsOf } from "../job/planner.js";
import type { BlobStore } from "../ports.js";
import { inputsOf } from "./manifestInputs.js";

/** The task messages of these chunks of a started job (its inputs read from `store` when in pieces). */
export const tasksOf = async (store: BlobStore, manifest: Manifest, indexes: readonly number[]): Promise<MapTask[]> => {
  if (indexes.length === 0) return [];
  const plan = planChunks(await inputsOf(store, manifest), manifest.chunkSize, planOptionsOf(manifest.job.format));
  return indexes.map((i) => ({ v: 1, jobId: manifest.jobId, chunk: plan.chunkAt(i), job: manifest.job }));
};
