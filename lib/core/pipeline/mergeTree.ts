/**
 * The merge tree of an order-free job with many chunks, on the fleet. Level 1 merges map parts
 * in groups of `fanIn` consecutive chunks, each level above merges the one below the same way,
 * until a level has at most `fanIn` merged parts: the reducer merges those into the result. So
 * no function or task reads more than `fanIn` partials, and the reducer's work stays small
 * however many chunks a job has. Groups are a pure function of (chunks, fanIn), so a merge
 * task run twice, or queued by two reducers at once, writes the same merged part.
 */
import * as z from "zod";
import { enqueuedKey, manifestKey, mergedKey, mergedPrefix, mergeQueuedKey, parseMergedKey, partKey } from "../keys.js";
import { Manifest, type MergeTask } from "../job/manifest.js";
import type { TaskQueue } from "../ports.js";
import { appendAll } from "../appendAll.js";
import { mapInOrder } from "../mapInOrder.js";
import { nowOf, type PipelineDeps } from "./deps.js";
import { readJson, readJsonIfExists, writeJson } from "./blobJson.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../errors.js";
import { MergedPart, spanOfMerged, spanOfPart, type Span } from "./spans.js";
import { Part } from "./part.js";
import type { SpanSource } from "./partMerge.js";
import { enqueueTasks } from "./enqueue.js";
import { TASK_LEASE_MS } from "./wake.js";
import { heldLeases } from "./leases.js";

export interface MergeLevel {
  /** 1: merges map parts; n: merges level n - 1's merged parts. */
  readonly level: number;
  /** Merged parts this level writes. */
  readonly groups: number;
  /** Parts it reads: the job's chunks at level 1, else the level below's groups. */
  readonly children: number;
}

/** The merge levels of a job of `chunks` chunks: none when the reducer can read every part. */
export const mergeLevels = (chunks: number, fanIn: number): MergeLevel[] => {
  const levels: MergeLevel[] = [];
  for (let children = chunks; children > fanIn; children = Math.ceil(children / fanIn))
    levels.push({ level: levels.length + 1, groups: Math.ceil(children / fanIn), children });
  return levels;
};

/** The children group `group` of a level merges: [from, to). */
export const groupRange = (level: MergeLevel, fanIn: number, group: number): { from: number; to: number } => ({
  from: group * fanIn,
  to: Math.min(level.children, (group + 1) * fanIn),
});

export interface MergeTree {
  readonly fanIn: number;
  readonly levels: readonly MergeLevel[];
}

/**
 * The index a merge task has in the job's report: after the chunks, level by level (the
 * report's tasks are numbered; a keyed job's reduce tasks, numbered the same way, have no tree).
 */
export const mergeTaskIndex = (levels: readonly MergeLevel[], chunks: number, level: number, group: number): number => {
  let index = chunks;
  for (const l of levels) if (l.level < level) index += l.groups;
  return index + group;
};

/** A job's merge levels when its reducer merges in a tree (an order-free job planned with a fan-in), else none. */
export const treeOf = (manifest: Manifest): MergeTree | undefined => {
  const { fanIn } = manifest;
  if (fanIn === undefined || manifest.job.partitions !== undefined) return undefined;
  const levels = mergeLevels(manifest.chunks, fanIn);
  return levels.length > 0 ? { fanIn, levels } : undefined;
};

/**
 * A merge task's index (mergeTaskIndex), from its job's manifest: its running and backup markers
 * are keyed by it, as a chunk's are by its index. Undefined for a task of another run of the job
 * (queued before a resume): its merged part is not this run's, and nor are its markers.
 */
export const mergeIndexOf = async (deps: Pick<PipelineDeps, "output">, task: MergeTask): Promise<number | undefined> => {
  const manifest = await readJson(deps.output, manifestKey(task.jobId), Manifest);
  if ((manifest.job.generation ?? 0) !== (task.job.generation ?? 0)) return undefined;
  const tree = treeOf(manifest);
  if (!tree) throw new CloudmillError(ErrorCode.INTERNAL, `job ${task.jobId} merges in no tree, but a merge task names it`);
  return mergeTaskIndex(tree.levels, manifest.chunks, task.merge.level, task.merge.group);
};

/** Marker writes at once. */
const WRITES_AT_ONCE = 16;

/** `enqueued.json`, as far as the tree reads it. */
const Enqueued = z.object({ chunks: z.number(), inline: z.number().optional() });

/**
 * A job's tree on the fleet: none for a job the splitter mapped whole (it merges the job
 * itself, and a tree would wake a fleet for nothing), nor before the splitter has queued all
 * of its tasks (`enqueued.json`), when it may still map the job itself.
 */
export const fleetTreeOf = async (deps: PipelineDeps, manifest: Manifest): Promise<MergeTree | undefined> => {
  const tree = treeOf(manifest);
  if (!tree) return undefined;
  const enqueued = await readJsonIfExists(deps.output, enqueuedKey(manifest.jobId), Enqueued);
  return enqueued && enqueued.inline !== manifest.chunks ? tree : undefined;
};

/**
 * The reducer's step of a job's merge tree: queues a merge task for each group whose parts all
 * exist and that has no merged part and was not queued yet (or whose lease ran out), then marks
 * it queued (queued first: a reducer that dies between the two queues it again, and the copy
 * finds its part written). `queue: false` only looks (an overdue job). Returns the top level's
 * merged parts, by group, once every one exists, and every merged part's key.
 */
export const advanceMergeTree = async (
  deps: PipelineDeps & { readonly queue: TaskQueue },
  manifest: Manifest,
  tree: MergeTree,
  mapParts: ReadonlyMap<number, string>,
  options: {
    readonly queue: boolean;
    readonly leaseMs?: number;
    /**
     * Whether merges past their lease may be queued again now (default: yes), given when the
     * first went past it; asked only when one is.
     */
    readonly requeue?: (pastLeaseSince: number) => Promise<boolean>;
  } = { queue: true },
): Promise<{ readonly top?: ReadonlyMap<number, string>; readonly queued: number; readonly merged: readonly string[] }> => {
  const { jobId, job } = manifest;
  const generation = job.generation ?? 0;
  const { fanIn, levels } = tree;
  const now = nowOf(deps);
  const lease = options.leaseMs ?? TASK_LEASE_MS;
  const done = levels.map(() => new Map<number, string>());
  const queuedAt = levels.map(() => new Map<number, number>());
  for await (const { key } of deps.output.list(mergedPrefix(jobId, generation))) {
    const m = parseMergedKey(key);
    if (!m || m.jobId !== jobId || m.generation !== generation || m.level > levels.length) continue;
    if (m.queuedAt === undefined) done[m.level - 1]!.set(m.group, key);
    else queuedAt[m.level - 1]!.set(m.group, Math.max(m.queuedAt, queuedAt[m.level - 1]!.get(m.group) ?? 0));
  }
  /** Whether a merged part above the group exists (a resume kept it: carryMergedParts): nothing under it is merged again. */
  const covered = (level: number, group: number): boolean => {
    for (let above = level + 1, g = Math.floor(group / fanIn); above <= levels.length; above++, g = Math.floor(g / fanIn))
      if (done[above - 1]!.has(g)) return true;
    return false;
  };
  const tasks: MergeTask[] = [];
  const expired: MergeTask[] = [];
  for (const level of options.queue ? levels : []) {
    const below = level.level === 1 ? mapParts : done[level.level - 2]!;
    for (let group = 0; group < level.groups; group++) {
      const queued = queuedAt[level.level - 1]!.get(group);
      if (done[level.level - 1]!.has(group) || covered(level.level, group) || (queued !== undefined && now - queued < lease)) continue;
      const { from, to } = groupRange(level, fanIn, group);
      let ready = true;
      for (let i = from; i < to && ready; i++) ready = below.has(i);
      if (ready) (queued === undefined ? tasks : expired).push({ v: 1, jobId, merge: { level: level.level, group, from, to }, job });
    }
  }
  // A merge whose worker still notes its lease runs on: a long merge, not a lost message.
  const indexOf = ({ merge }: MergeTask): number => mergeTaskIndex(levels, manifest.chunks, merge.level, merge.group);
  const held = expired.length > 0 ? await heldLeases(deps, jobId, expired.map(indexOf), generation, lease) : new Set<number>();
  const lost = expired.filter((t) => !held.has(indexOf(t)));
  let firstPastLease = Number.POSITIVE_INFINITY;
  for (const { merge } of lost) firstPastLease = Math.min(firstPastLease, queuedAt[merge.level - 1]!.get(merge.group)! + lease);
  if (lost.length > 0 && (await (options.requeue?.(firstPastLease) ?? true))) appendAll(tasks, lost);
  if (tasks.length > 0) {
    await enqueueTasks(deps.queue, tasks);
    await mapInOrder(tasks, WRITES_AT_ONCE, ({ merge }) =>
      writeJson(deps.output, mergeQueuedKey(jobId, generation, merge.level, merge.group, now), {}),
    );
  }
  const top = done.at(-1)!;
  const merged = done.flatMap((d) => [...d.values()]);
  return { ...(top.size === levels.at(-1)!.groups ? { top } : {}), queued: tasks.length, merged };
};

/** Merged parts a resume keeps at most: the rest are merged again (a resume must finish within its function's time). */
const MAX_CARRIED = 10_000;

/**
 * A resumed run's merge tree starts from the run before's: each merged part whose map parts all
 * stay as they were (none of its chunks is mapped again in the new run) is kept, written again
 * under the new run with its run renamed. Only the highest such part of each unchanged subtree
 * is written (the reducer merges nothing under a merged part that exists: advanceMergeTree), the
 * highest levels first, at most MAX_CARRIED; one that cannot be read as this version reads
 * merged parts is merged again. A merge whose chunks are mapped again, and every merge above
 * it, is done afresh. Returns the merged parts kept.
 */
export const carryMergedParts = async (
  deps: Pick<PipelineDeps, "output">,
  manifest: Manifest,
  generation: number,
  remapped: ReadonlySet<number>,
): Promise<number> => {
  const tree = treeOf(manifest);
  if (!tree) return 0;
  const { jobId } = manifest;
  const before = manifest.job.generation ?? 0;
  const kept = tree.levels.map(() => new Set<number>());
  for await (const { key } of deps.output.list(mergedPrefix(jobId, before))) {
    const m = parseMergedKey(key);
    if (m && m.jobId === jobId && m.generation === before && m.queuedAt === undefined && m.level <= tree.levels.length)
      kept[m.level - 1]!.add(m.group);
  }
  // A group stays as it was while none of its chunks is mapped again: level L's group g holds
  // chunks g × fanIn^L up to (g + 1) × fanIn^L (groups are consecutive at every level).
  for (const chunk of remapped)
    for (const level of tree.levels) kept[level.level - 1]!.delete(Math.floor(chunk / tree.fanIn ** level.level));
  const roots: { level: number; group: number }[] = [];
  for (let level = tree.levels.length; level >= 1 && roots.length < MAX_CARRIED; level--)
    for (const group of kept[level - 1]!)
      if (level === tree.levels.length || !kept[level]!.has(Math.floor(group / tree.fanIn))) roots.push({ level, group });
  const carried = await mapInOrder(roots.slice(0, MAX_CARRIED), WRITES_AT_ONCE, async ({ level, group }) => {
    let part: MergedPart;
    try {
      part = await readJson(deps.output, mergedKey(jobId, before, level, group), MergedPart);
    } catch (err) {
      // S3 failing us fails the resume (its retry carries again); a part this version cannot read is merged again.
      if (toCloudmillError(err).code === ErrorCode.ENVIRONMENT) throw err;
      return 0;
    }
    await writeJson(deps.output, mergedKey(jobId, generation, level, group), { ...part, generation });
    return 1;
  });
  return carried.reduce<number>((a, b) => a + b, 0);
};

/** Map part `index` of a job, as a span; one that names another is refused. */
export const readPartSpan = async (
  deps: PipelineDeps,
  jobId: string,
  index: number,
  key = partKey(jobId, index),
  signal?: AbortSignal,
): Promise<Span> => {
  const part = await readJson(deps.output, key, Part, signal);
  if (part.jobId !== jobId || part.index !== index)
    throw new CloudmillError(ErrorCode.INTERNAL, `part ${index} of job ${jobId} holds job ${part.jobId} chunk ${part.index}`);
  return spanOfPart(part);
};

/** Merged part (level, group) of a job's run, as a span; one that names another is refused. */
export const readMergedSpan = async (
  deps: PipelineDeps,
  want: { readonly jobId: string; readonly generation: number; readonly level: number; readonly group: number },
  signal?: AbortSignal,
): Promise<Span> => {
  const key = mergedKey(want.jobId, want.generation, want.level, want.group);
  const m = await readJson(deps.output, key, MergedPart, signal);
  if (m.jobId !== want.jobId || m.generation !== want.generation || m.level !== want.level || m.group !== want.group)
    throw new CloudmillError(ErrorCode.INTERNAL, `${key} holds job ${m.jobId} run ${m.generation} level ${m.level} group ${m.group}`);
  return spanOfMerged(m);
};

/** The top level's merged parts of a job's tree, as the reducer merges them. */
export const topOfTree = (deps: PipelineDeps, manifest: Manifest, levels: readonly MergeLevel[]): SpanSource => {
  const top = levels.at(-1)!;
  const want = { jobId: manifest.jobId, generation: manifest.job.generation ?? 0, level: top.level };
  return { count: top.groups, read: (group) => readMergedSpan(deps, { ...want, group }) };
};
