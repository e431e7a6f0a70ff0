/**
 * The sort's stage boundary, packed: splitters from every run's samples (or an even thinning
 * of them) cut the lines into partitions of about equal size, and each partition's segment of
 * a run holds every line of the run in its key range, and at most a sample step more at each
 * end. Runs are built here: lines sorted by their keys, every step-th one sampled, as a map
 * task samples its run.
 */
import { describe, expect, it } from "vitest";
import { prng } from "../../lib/dev/prng.js";
import type { SortRef } from "../../lib/core/shuffle/shuffleRun.js";
import { compareSortKeys, type SortKey } from "../../lib/core/shuffle/sortRun.js";
import { SortSamples } from "../../lib/core/shuffle/sortSamples.js";

interface Run {
  readonly ref: SortRef;
  /** Each line's key and byte range in the run. */
  readonly lines: { key: SortKey; start: number; end: number }[];
}

/** A run of `n` lines: numbers drawn from `distinct` values (ties), some spelled two ways, and a few blank lines. */
const runOf = (name: string, n: number, step: number, distinct: number, next: () => number, blanks = 0.02, even = false): Run => {
  const keys: SortKey[] = [];
  for (let i = 0; i < n; i++) {
    if (next() < blanks) keys.push([0, 0, ""]);
    else if (even) {
      // Spread evenly over [0, 1): the run's k-th sample sits at the k/256 quantile of all runs.
      const v = (i + next()) / n;
      keys.push([1, v, String(v)]);
    } else {
      const v = Math.floor(next() * distinct) / 4;
      // The same value spelled two ways (1.5 and 1.50): equal values, ordered by their bytes.
      keys.push([1, v, next() < 0.5 ? String(v) : `${v}${Number.isInteger(v) ? ".0" : "0"}`]);
    }
  }
  keys.sort(compareSortKeys);
  const lines: Run["lines"] = [];
  let at = 0;
  for (const key of keys) {
    lines.push({ key, start: at, end: at + key[2].length + 1 });
    at += key[2].length + 1;
  }
  const samples: SortRef["samples"] = [];
  for (let i = 0; i < n; i += step) samples.push([lines[i]!.key, lines[i]!.start]);
  return { ref: { key: name, bytes: at, lines: n, step, samples }, lines };
};

const inRange = (key: SortKey, lo: SortKey | null, hi: SortKey | null): boolean =>
  (!lo || compareSortKeys(key, lo) >= 0) && (!hi || compareSortKeys(key, hi) < 0);

/** Checks every partition's segments against the runs' lines; returns the lines in each partition. */
const check = (runs: readonly Run[], partitions: number, most: number): number[] => {
  const table = new SortSamples();
  for (const r of runs) table.add(r.ref);
  const splitters = table.splitters(partitions, most);
  for (let i = 1; i < splitters.length; i++) expect(compareSortKeys(splitters[i - 1]!, splitters[i]!)).toBeLessThan(0);
  const total = runs.reduce((n, r) => n + r.lines.length, 0);
  const counts: number[] = [];
  for (let p = 0; p <= splitters.length; p++) {
    const lo = p === 0 ? null : splitters[p - 1]!;
    const hi = p < splitters.length ? splitters[p]! : null;
    const segments = new Map(table.segments(lo, hi).map(([key, start, end]) => [key, [start, end] as const]));
    let count = 0;
    for (const run of runs) {
      const mine = run.lines.filter((l) => inRange(l.key, lo, hi));
      count += mine.length;
      const seg = segments.get(run.ref.key);
      if (mine.length === 0) continue;
      // Every line of the range is inside the run's segment...
      expect(seg, `partition ${p} has no segment of ${run.ref.key}`).toBeDefined();
      expect(seg![0]).toBeLessThanOrEqual(mine[0]!.start);
      expect(seg![1]).toBeGreaterThanOrEqual(mine.at(-1)!.end);
      // ...and it holds at most a sample step of other lines at each end.
      const inside = run.lines.filter((l) => l.start >= seg![0] && l.end <= seg![1]).length;
      expect(inside - mine.length).toBeLessThanOrEqual(2 * run.ref.step);
    }
    counts.push(count);
  }
  expect(counts.reduce((a, b) => a + b, 0)).toBe(total);
  return counts;
};

const expectBalanced = (counts: readonly number[], partitions: number, spread: number): void => {
  expect(counts.length).toBe(partitions);
  const share = counts.reduce((a, b) => a + b, 0) / partitions;
  for (const c of counts) expect(Math.abs(c - share)).toBeLessThanOrEqual(spread * share);
};

describe("a sort's samples, packed", () => {
  it("cut runs into partitions of about equal size, every line of a range inside its segments", () => {
    const next = prng(3);
    const runs = Array.from({ length: 40 }, (_, r) => runOf(`run-${r}`, 2000 + Math.floor(next() * 2000), 16, 1_000_000, next));
    expectBalanced(check(runs, 7, Number.POSITIVE_INFINITY), 7, 0.2);
  });

  it("do the same from a thinned set of samples, as a job of many runs does", () => {
    const next = prng(4);
    const runs = Array.from({ length: 60 }, (_, r) => runOf(`run-${r}`, 3000, 12, 1_000_000, next));
    const table = new SortSamples();
    for (const r of runs) table.add(r.ref);
    expect(table.samples).toBe(60 * 250);
    // 1,500 of 15,000 samples: every tenth.
    expectBalanced(check(runs, 5, 1500), 5, 0.25);
  });

  it("stay balanced when thinned to fewer levels than partitions: each run's picks start elsewhere", () => {
    // Runs of the same data: sample k of every run sits near the same quantile, as in a big sort.
    const next = prng(6);
    const runs = Array.from({ length: 40 }, (_, r) => runOf(`run-${r}`, 2560, 10, 0, next, 0, true));
    // 10,240 samples thinned to every tenth: 26 levels per run, for 60 partitions.
    expectBalanced(check(runs, 60, 1024), 60, 0.25);
  });

  it("keep splitters increasing with heavy ties, and leave the partitions past the distinct keys empty", () => {
    const next = prng(5);
    const runs = Array.from({ length: 8 }, (_, r) => runOf(`run-${r}`, 500, 4, 3, next));
    // 3 values spelled two ways and blank lines: at most 7 distinct keys, so at most 7 partitions hold lines.
    const counts = check(runs, 20, Number.POSITIVE_INFINITY);
    expect(counts.length).toBeGreaterThan(2);
    expect(counts.length).toBeLessThanOrEqual(7);
  });
});
