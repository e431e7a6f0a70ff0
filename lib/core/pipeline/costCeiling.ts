/**
 * A job's price ceiling while it runs: the splitter refuses a job whose estimate is over its
 * `maxCostUsd`, and the reducer, as parts arrive, prices what the job has done so far: each
 * kind of task it has run (map tasks, merge tasks of its merge tree, a keyed job's reduce
 * tasks) by a sample of its parts' recorded runs, as the report prices them, times the tasks of
 * that kind done, and again for each backup copy of one (a straggler's copy costs a task
 * whichever copy wins, and the loser writes no part to be sampled). Past the ceiling the job fails with COST_LIMIT; workers then skip its
 * remaining tasks, and the parts written are kept, so `cloudmill retry --max-cost-usd` resumes it.
 */
import { DEFAULTS } from "../constants.js";
import { CloudmillError, ErrorCode } from "../errors.js";
import type { Manifest } from "../job/manifest.js";
import { runCostUsd } from "../report/jobReport.js";
import { PRICES, sizedShuffle, usdOver, vcpuSecondUsd, type ShuffleRole } from "../report/prices.js";
import type { PipelineDeps } from "./deps.js";
import { inLaneOf } from "./lanes.js";
import type { Lanes } from "./deps.js";
import { backedUpTasks } from "./backups.js";
import { sampleRuns } from "./partSample.js";

/**
 * INVALID_SPEC when a ceiling could not be kept on this stack: its instance family has no price
 * in the table, so the ceiling would price the job's tasks at nothing and never stop it.
 */
export const unpricedCeiling = (deps: Pick<PipelineDeps, "instanceType" | "capacity">): CloudmillError | undefined => {
  const instanceType = deps.instanceType ?? DEFAULTS.instanceType;
  if (vcpuSecondUsd(instanceType, deps.capacity) !== undefined) return undefined;
  return new CloudmillError(
    ErrorCode.INVALID_SPEC,
    `maxCostUsd cannot be kept on this stack: its instances (${instanceType} ${deps.capacity ?? "on-demand"}) have no price in ` +
      `cloudmill's table (families ${Object.keys(PRICES.vcpuHour).join(", ")}); leave maxCostUsd out, or deploy a priced family`,
    { field: "maxCostUsd" },
  );
};

/** What a running job has done so far: the keys of the parts each kind of its tasks wrote. */
export interface JobProgress {
  readonly manifest: Manifest;
  /** Map parts, by chunk. */
  readonly mapParts: ReadonlyMap<number, string>;
  /** Merged parts of this run's merge tree. */
  readonly merged: readonly string[];
  /** A keyed job's reduce parts. */
  readonly reduced: readonly string[];
}

/**
 * The measured cost of the tasks that wrote `keys`, and of `copies` more of them: their sampled
 * mean times their number; 0 when none recorded a run (parts of another version); undefined if
 * the instance is unpriced.
 */
const spentOn = async (
  deps: PipelineDeps,
  keys: readonly string[],
  copies: number,
  instanceType: string,
  role: ShuffleRole | "merge" | undefined,
  sized: boolean,
): Promise<number | undefined> => {
  if (keys.length === 0) return 0;
  const costs = (await sampleRuns(deps, keys)).map((run) => runCostUsd(run, instanceType, deps.capacity, role, sized));
  if (costs.some((c) => c === undefined)) return undefined;
  if (costs.length === 0) return 0;
  return ((costs as number[]).reduce((a, b) => a + b, 0) / costs.length) * (keys.length + copies);
};

/** COST_LIMIT if what the job has done so far costs more than its ceiling; undefined otherwise (or if unpriced). */
export const costCeilingError = async (roleDeps: PipelineDeps & Lanes, progress: JobProgress): Promise<CloudmillError | undefined> => {
  const { manifest, mapParts, merged, reduced } = progress;
  const deps = inLaneOf(roleDeps, manifest);
  const ceiling = manifest.job.maxCostUsd;
  if (ceiling === undefined || mapParts.size + merged.length + reduced.length === 0) return undefined;
  const instanceType = deps.instanceType ?? DEFAULTS.instanceType;
  const backedUp = await backedUpTasks(deps, manifest.jobId);
  const mapCopies = backedUp.filter((i) => i < manifest.chunks).length;
  // Past the chunks, a job's tasks are its merge tasks or (a keyed job) its reduce tasks, never both.
  const laterCopies = backedUp.length - mapCopies;
  const keyed = manifest.job.partitions !== undefined;
  const kinds = [
    { tasks: [...mapParts.values()], copies: mapCopies, name: "map", role: keyed ? ("map" as const) : undefined },
    { tasks: merged, copies: keyed ? 0 : laterCopies, name: "merge", role: "merge" as const },
    { tasks: reduced, copies: keyed ? laterCopies : 0, name: "reduce", role: keyed ? ("reduce" as const) : undefined },
  ];
  const sized = sizedShuffle(manifest.job.op);
  const usd = await Promise.all(kinds.map(({ tasks, copies, role }) => spentOn(deps, tasks, copies, instanceType, role, sized)));
  if (usd.some((u) => u === undefined)) return undefined;
  const spent = (usd as number[]).reduce((a, b) => a + b, 0);
  if (spent <= ceiling) return undefined;
  const done = kinds
    .filter(({ tasks }, i) => i === 0 || tasks.length > 0)
    .map(({ tasks, name }, i) => (i === 0 ? `${tasks.length} of ${manifest.chunks} chunks` : `${tasks.length} ${name} tasks`))
    .concat(backedUp.length > 0 ? [`${backedUp.length} backup copies`] : [])
    .join(" and ");
  return new CloudmillError(
    ErrorCode.COST_LIMIT,
    `measured $${usdOver(spent, ceiling)} after ${done} is over maxCostUsd $${ceiling} ` +
      `(task time and requests at ${instanceType} ${deps.capacity ?? "on-demand"} prices, from sampled parts); the parts are kept: ` +
      `\`cloudmill retry ${manifest.jobId} --max-cost-usd <more>\` resumes the job`,
    { jobId: manifest.jobId, field: "maxCostUsd" },
  );
};
