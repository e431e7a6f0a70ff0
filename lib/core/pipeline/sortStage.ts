/**
 * `sort` through the shuffle stage (reduceTask.ts): each map task writes its chunk's sorted
 * run; the plans cut all runs at splitters chosen from their samples; each reduce task merges
 * its key range of every run into its part, streaming, a fan-in of runs at a time.
 */
import { CloudmillError, ErrorCode } from "../errors.js";
import type { Format } from "../job/spec.js";
import { shuffleKey } from "../keys.js";
import type { BlobStore } from "../ports.js";
import type { SortRef } from "../shuffle/shuffleRun.js";
import type { SortSamples } from "../shuffle/sortSamples.js";
import { lineCursor, mergeLines, type LineCursor, type SortedRun, type SortFormat, type SortKey } from "../shuffle/sortRun.js";
import type { PipelineDeps } from "./deps.js";
import type { Part } from "./part.js";

/** A sort's part: its run written to the shuffle, and in its place where it is and its samples. */
export const sortedRunPart = async (deps: PipelineDeps, jobId: string, part: Part): Promise<Part> => {
  const run = part.partial as SortedRun;
  const key = shuffleKey(jobId, part.index, 0);
  // From a mapper thread the run's bytes arrive as a plain Uint8Array.
  await deps.output.put(key, Buffer.from(run.bytes.buffer, run.bytes.byteOffset, run.bytes.byteLength));
  const ref: SortRef = {
    key,
    bytes: run.bytes.byteLength,
    lines: run.lines,
    step: run.step,
    samples: run.samples,
    ...(run.cut ? { cut: run.cut } : {}),
  };
  return { ...part, partial: ref };
};

/** One partition's share of a sort: its key range, and the bracketing byte range of each run. */
export interface SortPlan {
  readonly range: { readonly lo: SortKey | null; readonly hi: SortKey | null };
  readonly segments: [string, number, number][];
}

/**
 * Each partition's plan, from every run's samples: splitters chosen once, and a partition's
 * segments cut when its plan is asked for (a 1 TB sort's plans hold 4 million segments).
 */
export const sortPlanner = (samples: SortSamples, partitions: number): ((partition: number) => SortPlan) => {
  const splitters = samples.splitters(partitions);
  return (p) => {
    // Fewer distinct keys than partitions: the last partitions are empty.
    const lo = p === 0 ? null : (splitters[p - 1] ?? undefined);
    const hi = p < splitters.length ? splitters[p]! : null;
    if (lo === undefined) return { range: { lo: null, hi: null }, segments: [] };
    return { range: { lo, hi }, segments: samples.segments(lo, hi) };
  };
};

/** Runs merged at once; more are merged a fan-in at a time into longer runs first. */
const SORT_FAN_IN = 64;

export const sortFormatOf = (format: Format): SortFormat => {
  if (format !== "numbers" && format !== "lines")
    throw new CloudmillError(ErrorCode.INTERNAL, `sort reads numbers or lines, not ${format}`);
  return format;
};

/** Runs a partition's sort merged on scratch: those still there (removed by the caller), and the bytes written in all. */
export interface SortSpill {
  readonly prefix: string;
  readonly written: string[];
  bytes: number;
}

/**
 * The pieces of a partition's output: its range of every segment, merged. Past the fan-in,
 * groups of segments are first merged into runs under `spill`; a run merged into a longer one is
 * removed at once, so scratch holds about the partition once, not once per pass.
 */
export const sortedPieces = async (
  deps: PipelineDeps & { readonly scratch?: BlobStore },
  format: SortFormat,
  plan: SortPlan,
  spill: SortSpill,
  signal?: AbortSignal,
  fanIn = SORT_FAN_IN,
): Promise<AsyncGenerator<Buffer>> => {
  const scratch = deps.scratch ?? deps.output;
  /** A run to merge: a plan's segment (kept to the key range), or a run merged on scratch. */
  interface Source {
    readonly store: BlobStore;
    readonly key: string;
    readonly start: number;
    readonly end: number;
    readonly ranged: boolean;
  }
  const open = async (sources: readonly Source[]): Promise<LineCursor[]> => {
    const cursors: LineCursor[] = [];
    for (const s of sources) {
      const reads = await s.store.get(s.key, { start: s.start, end: s.end, ...(signal ? { signal } : {}) });
      const c = await lineCursor(format, reads, s.key, s.ranged ? plan.range.lo : null, s.ranged ? plan.range.hi : null);
      if (c) cursors.push(c);
    }
    return cursors;
  };
  let sources: Source[] = plan.segments.map(([key, start, end]) => ({ store: deps.output, key, start, end, ranged: true }));
  let runs = 0;
  while (sources.length > fanIn) {
    // Merge just enough runs that the rest and the merged one fit one merge (65 runs: 2, not 64).
    const take = Math.min(fanIn, sources.length - fanIn + 1);
    const key = `${spill.prefix}run-${String(runs++).padStart(5, "0")}`;
    const group = sources.slice(0, take);
    spill.written.push(key);
    await scratch.put(key, mergeLines(await open(group)), { sizeAtMost: group.reduce((n, s) => n + s.end - s.start, 0) });
    const size = (await scratch.head(key))?.size ?? 0;
    spill.bytes += size;
    sources = [...sources.slice(take), { store: scratch, key, start: 0, end: size, ranged: false }];
    // Read to their ends: gone now, so scratch holds about the partition once, not once per pass.
    // (Never a plan's segment: scratch may be the output store, where the shuffle lives.)
    for (const merged of group.filter((s) => !s.ranged)) {
      await scratch.delete(merged.key);
      const i = spill.written.indexOf(merged.key);
      if (i >= 0) spill.written.splice(i, 1);
    }
  }
  return mergeLines(await open(sources));
};
