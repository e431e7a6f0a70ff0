/**
 * A job's price ceiling while it runs: the splitter refuses a job whose estimate is over its
 * `maxCostUsd`, and the reducer, as parts arrive, prices what the job has done so far (a sample
 * of its parts' recorded runs, as the report prices them, times the chunks done). Past the
 * ceiling the job fails with COST_LIMIT; workers then skip its remaining tasks, and the parts
 * written are kept, so `cloudmill retry --max-cost-usd` resumes it.
 */
import { DEFAULTS } from "../constants.js";
import { CloudmillError, ErrorCode } from "../errors.js";
import type { Manifest } from "../job/manifest.js";
import { runCostUsd } from "../report/jobReport.js";
import type { PipelineDeps } from "./deps.js";
import { sampleRuns } from "./partSample.js";

/** COST_LIMIT if what the job has done so far costs more than its ceiling; undefined otherwise (or if unpriced). */
export const costCeilingError = async (
  deps: PipelineDeps,
  manifest: Manifest,
  parts: ReadonlyMap<number, string>,
): Promise<CloudmillError | undefined> => {
  const ceiling = manifest.job.maxCostUsd;
  if (ceiling === undefined || parts.size === 0) return undefined;
  const instanceType = deps.instanceType ?? DEFAULTS.instanceType;
  const costs = (await sampleRuns(deps, parts)).map((run) => runCostUsd(run, instanceType));
  if (costs.length === 0 || costs.some((c) => c === undefined)) return undefined;
  const spent = ((costs as number[]).reduce((a, b) => a + b, 0) / costs.length) * parts.size;
  if (spent <= ceiling) return undefined;
  return new CloudmillError(
    ErrorCode.COST_LIMIT,
    `measured $${spent.toFixed(6)} after ${parts.size} of ${manifest.chunks} chunks is over maxCostUsd $${ceiling} ` +
      `(task time and requests at ${instanceType} list prices, from ${costs.length} sampled parts); the parts are kept: ` +
      `\`cloudmill retry ${manifest.jobId} --max-cost-usd <more>\` resumes the job`,
    { jobId: manifest.jobId, field: "maxCostUsd" },
  );
};
