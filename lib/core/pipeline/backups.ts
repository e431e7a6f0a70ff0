/**
 * Backups for straggling chunks and reduce tasks (speculative execution, as Hadoop and Spark do
 * it). Once most of a job's chunks are mapped, a chunk that has run far longer than their median
 * (a slow or overloaded worker, a bad disk) is queued once more; whichever copy writes the part
 * first wins, and the part key, a pure function of job and chunk, makes the other harmless. A
 * keyed job's reduce stage is checked the same way, by task index chunks + partition.
 *
 * On the fleet, a chunk's worker writes a running marker at its heartbeats (1st, 2nd, 4th, 8th,
 * …). Each write wakes the reducer, which decides here (timing the job on a sample of its parts); so a straggler itself keeps the check
 * going, and a job of short chunks pays nothing. The local engine decides the same way for
 * chunks, from the tasks its own threads run (its reduce tasks get no backups).
 */
import * as z from "zod";
import { DEFAULTS } from "../constants.js";
import {
  backupKey,
  backupsPrefix,
  parseBackupKey,
  parseMergedKey,
  parsePartKey,
  parseRunningKey,
  reducePlanKey,
  runningKey,
  runningPrefix,
} from "../keys.js";
import { groupRange, mergeTaskIndex, treeOf } from "./mergeTree.js";
import type { Manifest, MapTask, MergeTask, ReduceTask, TaskMessage } from "../job/manifest.js";
import type { SplitDeps } from "./deps.js";
import { nowOf } from "./deps.js";
import { exists, readJson, readJsonIfExists, writeJson } from "./blobJson.js";
import { enqueueTasks } from "./enqueue.js";
import { inLaneOf } from "./lanes.js";
import { sampleRuns } from "./partSample.js";
import { tasksOf } from "./mapTasks.js";
import { ReducePlan, reduceTasksOf } from "./reduceTask.js";
import { isTaskOp } from "../ops/defineTask.js";
import { mapInOrder } from "../mapInOrder.js";
import type { BackupRace } from "../report/jobReport.js";

/** A chunk in progress, and when its current copy started (epoch ms). */
export interface RunningChunk {
  readonly index: number;
  readonly startedAt: number;
}

export interface StragglerRule {
  readonly chunks: number;
  /** Chunks mapped. */
  readonly done: number;
  /** Median time of the mapped chunks, if any were timed. */
  readonly medianMs: number | undefined;
  /** The job's backupAfterSeconds (0: never). */
  readonly afterSeconds: number;
  readonly now: number;
  /** Share of the tasks done before any is judged (default DEFAULTS.backupQuantile). */
  readonly quantile?: number;
}

/** How long a chunk may run before it is a straggler, or undefined while too few are mapped to tell. */
export const stragglerAfterMs = (rule: StragglerRule): number | undefined => {
  if (rule.afterSeconds === 0 || rule.medianMs === undefined) return undefined;
  if (rule.done < Math.max(1, Math.ceil((rule.quantile ?? DEFAULTS.backupQuantile) * rule.chunks))) return undefined;
  return Math.max(DEFAULTS.backupMultiple * rule.medianMs, rule.afterSeconds * 1000);
};

/** The chunks of `running` that are stragglers now, by the rule. */
export const stragglers = (rule: StragglerRule, running: readonly RunningChunk[]): number[] => {
  const after = stragglerAfterMs(rule);
  return after === undefined ? [] : running.filter((r) => rule.now - r.startedAt > after).map((r) => r.index);
};

export const median = (values: readonly number[]): number | undefined => {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** A task is running since `at`, in the job's run `generation` (absent: the first run, or a marker written before runs were named). */
export const RunningMarker = z.object({ at: z.string(), worker: z.string().optional(), generation: z.number().int().optional() });
/** A backup is queued: at `at`, its original had run `elapsedMs`, against a straggler bar of `afterMs`. */
export const BackupMarker = z.object({ at: z.string(), elapsedMs: z.number(), afterMs: z.number() });

/** A task's worker says it is still running it (a chunk, or a reduce task at index chunks + partition), since `at`. */
export const markRunning = (
  deps: Pick<SplitDeps, "output">,
  jobId: string,
  index: number,
  at: string,
  worker: string,
  generation = 0,
): Promise<void> => writeJson(deps.output, runningKey(jobId, index, generation), { at, worker, ...(generation > 0 ? { generation } : {}) });

/** A stage of a job's tasks, as the straggler check sees it: its task indexes [from, from + count), those done, and their copies. */
interface Stage {
  readonly from: number;
  readonly count: number;
  /** Parts of the stage's done tasks, by task index. */
  readonly parts: ReadonlyMap<number, string>;
  readonly backupsOf: (indexes: readonly number[]) => TaskMessage[] | Promise<TaskMessage[]>;
  readonly what: string;
  /**
   * How much bigger than the done tasks' median a running task's input is (at least 1): its time
   * limit grows with it. Chunks are equal; a partition is as big as its keys make it.
   */
  readonly sizeOf?: (index: number, medianBytes: number) => Promise<number>;
  /** Share of the stage done before any task is judged (default DEFAULTS.backupQuantile). */
  readonly quantile?: number;
}

/**
 * The reducer's check, on a job still mapping: queues a backup of each straggler that has none
 * yet. `parts`: the job's map parts by chunk. Returns how many it queued.
 */
export const launchBackups = (deps: SplitDeps, manifest: Manifest, parts: ReadonlyMap<number, string>): Promise<number> =>
  backupStragglers(deps, manifest, {
    from: 0,
    count: manifest.chunks,
    parts,
    backupsOf: async (indexes) => (await tasksOf(deps.output, manifest, indexes)).map((t): MapTask => ({ ...t, backup: true })),
    what: "chunks",
  });

/**
 * The same for a keyed job's reduce stage: a partition whose task has run far longer than the
 * finished ones' median (a slow worker, not a big partition, is what a copy helps) is queued
 * once more. Its output and part keys are pure functions of (job, partition), so the copy that
 * finishes second writes the same bytes or finds the part written. `reduced`: the reduce parts' keys.
 */
export const launchReduceBackups = (deps: SplitDeps, manifest: Manifest, reduced: readonly string[]): Promise<number> => {
  const parts = new Map<number, string>();
  for (const key of reduced) {
    const p = parsePartKey(key);
    if (p && p.index >= manifest.chunks) parts.set(p.index, key);
  }
  return backupStragglers(deps, manifest, {
    from: manifest.chunks,
    count: manifest.job.partitions ?? 0,
    parts,
    backupsOf: (indexes) =>
      reduceTasksOf(
        manifest,
        indexes.map((i) => i - manifest.chunks),
      ).map((t): ReduceTask => ({ ...t, backup: true })),
    what: "reduce tasks",
    // A big partition is slow by its size, not its worker: a copy would start from nothing.
    sizeOf: async (index, medianBytes) => {
      const plan = await readJson(deps.output, reducePlanKey(manifest.jobId, index - manifest.chunks), ReducePlan);
      const bytes = plan.segments.reduce((n, [, start, end]) => n + end - start, 0);
      return medianBytes > 0 ? Math.max(1, bytes / medianBytes) : 1;
    },
  });
};

/**
 * The same for an order-free job's merge tree, level by level (a level's merges read equal
 * groups of the level below, so they are measured against each other): a merge task that has run
 * far longer than its level's finished ones is queued once more. Its merged part's key is a pure
 * function of (job, run, level, group), and both copies write the same answer. `merged`: the keys
 * of this run's merged parts.
 */
export const launchMergeBackups = async (deps: SplitDeps, manifest: Manifest, merged: readonly string[]): Promise<number> => {
  const tree = treeOf(manifest);
  if (!tree) return 0;
  const done = tree.levels.map(() => new Map<number, string>());
  for (const key of merged) {
    const m = parseMergedKey(key);
    if (m?.jobId === manifest.jobId && m.queuedAt === undefined && m.level <= tree.levels.length) done[m.level - 1]!.set(m.group, key);
  }
  let launched = 0;
  for (const level of tree.levels) {
    const parts = done[level.level - 1]!;
    // A level not begun has nothing to measure against; one done has nothing to back up.
    if (parts.size === 0 || parts.size === level.groups) continue;
    const from = mergeTaskIndex(tree.levels, manifest.chunks, level.level, 0);
    launched += await backupStragglers(deps, manifest, {
      from,
      count: level.groups,
      parts: new Map([...parts].map(([group, key]) => [from + group, key])),
      backupsOf: (indexes) =>
        indexes.map((i): MergeTask => {
          const group = i - from;
          const merge = { level: level.level, group, ...groupRange(level, tree.fanIn, group) };
          return { v: 1, jobId: manifest.jobId, merge, job: manifest.job, backup: true };
        }),
      what: `merge tasks of level ${level.level}`,
      // A tree's top levels hold two or three merges: one done is measure enough there. A longer level
      // waits as others do, or its short last group (done first) would set the bar alone.
      ...(level.groups <= 3 ? { quantile: 0 } : {}),
    });
  }
  return launched;
};

const backupStragglers = async (deps: SplitDeps, manifest: Manifest, stage: Stage): Promise<number> => {
  const { jobId } = manifest;
  // A task's items may have effects outside their output (ctx.put, a lab's own calls): never run twice on purpose.
  if (isTaskOp(deps.registry.get(manifest.job.op)) || stage.count === 0) return 0;
  const afterSeconds = manifest.job.backupAfterSeconds ?? DEFAULTS.backupAfterSeconds;
  // Markers of an earlier run of a resumed job say nothing of this one's copies.
  const since = manifest.resumed ? Date.parse(manifest.resumed.at) : 0;
  const now = nowOf(deps);
  const early = {
    chunks: stage.count,
    done: stage.parts.size,
    medianMs: 0,
    afterSeconds,
    now,
    ...(stage.quantile !== undefined ? { quantile: stage.quantile } : {}),
  };
  const generation = manifest.job.generation ?? 0;
  if (stragglerAfterMs(early) === undefined) return 0;
  const running: RunningChunk[] = [];
  for await (const info of deps.output.list(runningPrefix(jobId))) {
    const task = parseRunningKey(info.key);
    // A key without its run is the first run's, or (written by a worker of an earlier version) says its run inside.
    if (!task || task.jobId !== jobId || (task.generation !== generation && task.generation !== 0)) continue;
    if (task.index < stage.from || task.index >= stage.from + stage.count) continue;
    if (stage.parts.has(task.index)) continue;
    const marker = await readJsonIfExists(deps.output, info.key, RunningMarker).catch(() => undefined);
    // A copy of another run (a task queued before a resume, still running) is not this run's straggler.
    if (marker && Date.parse(marker.at) >= since && (marker.generation ?? 0) === generation)
      running.push({ index: task.index, startedAt: Date.parse(marker.at) });
  }
  if (running.length === 0) return 0;
  const runs = await sampleRuns(deps, stage.parts.values());
  const rule = { ...early, medianMs: median(runs.flatMap((r) => (r.ms === undefined ? [] : [r.ms]))) };
  const afterMs = stragglerAfterMs(rule)!;
  const medianBytes = median(runs.flatMap((r) => (r.bytes === undefined ? [] : [r.bytes]))) ?? 0;
  const late: number[] = [];
  for (const r of running) {
    const scale = stage.sizeOf ? await stage.sizeOf(r.index, medianBytes) : 1;
    if (now - r.startedAt > afterMs * scale) late.push(r.index);
  }
  const launched: number[] = [];
  for (const index of late) if (!(await exists(deps.output, backupKey(jobId, index, generation)))) launched.push(index);
  // The tasks before their markers: a marker stands for a backup that is queued.
  const backups = await stage.backupsOf(launched);
  // A send that fails leaves no marker, so the next look queues the backup again.
  await enqueueTasks(inLaneOf(deps, manifest).queue, backups);
  for (const index of launched) {
    const startedAt = running.find((r) => r.index === index)!.startedAt;
    await writeJson(deps.output, backupKey(jobId, index, generation), {
      at: new Date(now).toISOString(),
      elapsedMs: now - startedAt,
      afterMs,
    });
  }
  if (launched.length) deps.log.info(`backups queued for straggling ${stage.what}`, { jobId, tasks: launched, afterMs });
  return launched.length;
};

/** One backup of a task, in one run of its job. */
interface QueuedBackup {
  readonly index: number;
  readonly generation: number;
}

/** A job's backup markers, one listing: the backups queued (a task may have one in each run), and those that wrote the part first. */
const backupMarkers = async (deps: Pick<SplitDeps, "output">, jobId: string): Promise<{ queued: QueuedBackup[]; won: Set<string> }> => {
  const queued: QueuedBackup[] = [];
  const won = new Set<string>();
  for await (const { key } of deps.output.list(backupsPrefix(jobId))) {
    const marker = parseBackupKey(jobId, key);
    if (marker?.won) won.add(`${marker.index}.${marker.generation}`);
    else if (marker) queued.push({ index: marker.index, generation: marker.generation });
  }
  return { queued, won };
};

/**
 * The tasks a job queued backups of, by index (a chunk, or a task after the chunks), once per
 * backup: each one ran, or runs, twice, whichever copy wins (a task backed up in two runs is listed twice).
 */
export const backedUpTasks = async (deps: Pick<SplitDeps, "output">, jobId: string): Promise<number[]> =>
  (await backupMarkers(deps, jobId)).queued.map((b) => b.index);

/** Backup markers read at once for the report. */
const MARKER_READS = 16;

/**
 * Every backup a job queued, as its markers tell it (one listing, then one read per backup): which
 * copy wrote the part first, and when each copy began, for the report to price the one that lost.
 */
export const backupRaces = async (
  deps: Pick<SplitDeps, "output">,
  jobId: string,
  resumed?: { readonly at: string },
): Promise<BackupRace[]> => {
  const resumedAt = resumed ? Date.parse(resumed.at) : Number.NaN;
  const { queued, won } = await backupMarkers(deps, jobId);
  return mapInOrder(queued, MARKER_READS, async ({ index, generation }): Promise<BackupRace> => {
    const race = { index, backupWon: won.has(`${index}.${generation}`) };
    // A marker that cannot be read still counts the backup; the report leaves its losing copy unpriced.
    const marker = await readJsonIfExists(deps.output, backupKey(jobId, index, generation), BackupMarker).catch(() => undefined);
    const queuedAt = marker ? Date.parse(marker.at) : Number.NaN;
    if (!marker || !Number.isFinite(queuedAt)) return race;
    // A race of a run before the last resume: a task mapped again since is neither of its copies.
    const before = queuedAt < resumedAt ? { before: resumedAt } : {};
    return { ...race, queuedAt, originalStart: queuedAt - marker.elapsedMs, ...before };
  });
};

/** How many backups were queued, and how many of them wrote their task's part first. */
export const backupCounts = (races: readonly BackupRace[]): { launched: number; won: number } => ({
  launched: races.length,
  won: races.filter((r) => r.backupWon).length,
});
