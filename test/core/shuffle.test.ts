/**
 * The shuffle's pieces on their own: key order against Buffer.compare of the UTF-8 bytes,
 * partitioning, the shuffle object's segments, and the reduce merge spilling to disk with a
 * threshold small enough that every path (spill, multi-pass merge, in-memory tail) runs,
 * checked against a plain count of the same pairs.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prng } from "../../lib/dev/prng.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { countingStore } from "../helpers/countingStore.js";
import { compareKeys, partitionOf } from "../../lib/core/shuffle/keyOrder.js";
import { RunMerge } from "../../lib/core/shuffle/runMerge.js";
import { encodeShuffle, forEachPair, type KeyedTable } from "../../lib/core/shuffle/shuffleRun.js";

/** Strings from a small alphabet that has ASCII, 2- and 3-byte characters near the surrogates, and astral ones. */
const ALPHABET = ["a", "b", "Z", " ", "\t", "é", "\u07ff", "\ud7ff", "\ue000", "\uff01", "\uffff", "😀", "𝄞", "\u0000", '"', "\\"];
const randomKey = (next: () => number, max = 6): string =>
  Array.from({ length: Math.floor(next() * max) }, () => ALPHABET[Math.floor(next() * ALPHABET.length)]!).join("");

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-shuffle-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("key order", () => {
  it("is the order of the keys' UTF-8 bytes (astral characters after U+FFFF's neighbours)", () => {
    const next = prng(7);
    const keys = Array.from({ length: 2000 }, () => randomKey(next));
    const byBytes = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
    expect([...keys].sort(compareKeys)).toEqual(byBytes);
    // Plain code-unit order would put the astral 😀 (D83D DE00) before U+FF01.
    expect(compareKeys("\uff01", "😀")).toBeLessThan(0);
  });

  it("places every key in one partition in range, the same on every call", () => {
    const next = prng(11);
    const counts = new Array<number>(7).fill(0);
    for (let i = 0; i < 7000; i++) {
      const key = `${randomKey(next)}-${i}`;
      const p = partitionOf(key, 7);
      expect(p).toBe(partitionOf(key, 7));
      counts[p]!++;
    }
    // Spread: no partition is starved or swamped (uniform would be 1000 each).
    for (const c of counts) expect(c).toBeGreaterThan(800);
    for (const c of counts) expect(c).toBeLessThan(1200);
  });
});

describe("a shuffle object", () => {
  it("holds each partition's pairs as one sorted segment, and reads back as the table", () => {
    const next = prng(3);
    const table: KeyedTable = Array.from(new Set(Array.from({ length: 500 }, () => randomKey(next, 8))), (k, i) => [k, { n: i }]);
    const { bytes, segments } = encodeShuffle(table, 5);
    const back = new Map<string, unknown>();
    let at = 0;
    for (const [p, start, end, records] of segments) {
      expect(start).toBe(at);
      at = end;
      const keys: string[] = [];
      forEachPair(bytes.subarray(start, end), "segment", (k, v) => {
        expect(partitionOf(k, 5)).toBe(p);
        keys.push(k);
        back.set(k, v);
      });
      expect(keys.length).toBe(records);
      expect(keys).toEqual([...keys].sort(compareKeys));
    }
    expect(at).toBe(bytes.length);
    expect(back).toEqual(new Map(table));
  });
});

describe("the reduce merge", () => {
  const runs = (seed: number, count: number): Buffer[] => {
    const next = prng(seed);
    return Array.from({ length: count }, () => {
      const table: KeyedTable = [];
      const seen = new Set<string>();
      for (let i = 0; i < 300; i++) {
        const key = randomKey(next, 4);
        if (seen.has(key)) continue;
        seen.add(key);
        table.push([key, 1 + Math.floor(next() * 5)]);
      }
      return encodeShuffle(table, 1).bytes;
    });
  };

  /** The same pairs counted in one Map: the reference. */
  const plainSums = (buffers: readonly Buffer[]): [string, number][] => {
    const sums = new Map<string, number>();
    for (const b of buffers) forEachPair(b, "run", (k, v) => sums.set(k, (sums.get(k) ?? 0) + (v as number)));
    return [...sums].sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
  };

  it.each([
    { what: "in memory", spillBytes: 1 << 30, fanIn: 64, spills: false },
    { what: "spilling, merged in one pass", spillBytes: 20_000, fanIn: 64, spills: true },
    { what: "spilling, merged in several passes (fan-in 3)", spillBytes: 4_000, fanIn: 3, spills: true },
  ])("combines every key once, in byte order: $what", async ({ spillBytes, fanIn, spills }) => {
    const input = runs(5, 40);
    const scratch = new FsBlobStore(path.join(dir, `scratch-${spillBytes}`));
    const merge = new RunMerge({ combine: (a, b) => (a as number) + (b as number), spillBytes, fanIn, scratch, prefix: "job/p0/" });
    for (const [i, b] of input.entries()) await merge.addRun(b, `run ${i}`);
    const out: [string, number][] = [];
    const stats = await merge.finish((k, v) => void out.push([k, v as number]));
    expect(out).toEqual(plainSums(input));
    expect(stats.spilledBytes > 0).toBe(spills);
    if (spills && fanIn === 3) expect(stats.runs).toBeGreaterThan(3);
    // The runs it spilled are removed.
    expect(await readdir(path.join(dir, `scratch-${spillBytes}`)).catch(() => [])).toEqual(spills ? ["job"] : []);
    const left: string[] = [];
    for await (const o of scratch.list("")) left.push(o.key);
    expect(left).toEqual([]);
  });

  it("merging in passes, removes each pass's runs once merged: scratch never holds them all", async () => {
    const input = runs(5, 40);
    const disk = new FsBlobStore(path.join(dir, "scratch-passes"));
    const counting = countingStore(disk);
    const scratch = counting.store;
    const merge = new RunMerge({
      combine: (a, b) => (a as number) + (b as number),
      spillBytes: 4_000,
      fanIn: 3,
      scratch,
      prefix: "job/p0/",
    });
    for (const [i, b] of input.entries()) await merge.addRun(b, `run ${i}`);
    const out: [string, number][] = [];
    const spilled = counting.held();
    const stats = await merge.finish((k, v) => void out.push([k, v as number]));
    expect(out).toEqual(plainSums(input));
    // Every pass rewrites what it merges: kept, the passes' runs would add all they wrote (several
    // times what was spilled) to what scratch holds; removed once merged, they add about one run.
    expect(stats.runs).toBeGreaterThan(6);
    expect(stats.spilledBytes - spilled).toBeGreaterThan(2 * spilled);
    expect(counting.peak() - spilled).toBeLessThan((stats.spilledBytes - spilled) / 4);
    expect(counting.held()).toBe(0);
  });

  it.each([
    { what: "spilling, merged in one pass", spillBytes: 20_000, fanIn: 64 },
    { what: "spilling, merged in several passes (fan-in 3)", spillBytes: 4_000, fanIn: 3 },
  ])("keeps a combine's in-memory form out of its runs, writing toJson's: $what", async ({ spillBytes, fanIn }) => {
    // Runs carry sums as decimal text; combine holds bigints, which JSON cannot carry.
    const input = runs(5, 40).map((b) => {
      const table: KeyedTable = [];
      forEachPair(b, "run", (k, v) => table.push([k, String(BigInt(v as number) << 80n)]));
      return encodeShuffle(table, 1).bytes;
    });
    const held = (v: unknown): bigint => (typeof v === "bigint" ? v : BigInt(v as string));
    const scratch = new FsBlobStore(path.join(dir, `to-json-${spillBytes}-${fanIn}`));
    const merge = new RunMerge({
      combine: (a, b) => held(a) + held(b),
      toJson: (v) => String(v),
      spillBytes,
      fanIn,
      scratch,
      prefix: "job/p0/",
    });
    for (const [i, b] of input.entries()) await merge.addRun(b, `run ${i}`);
    const out: [string, number][] = [];
    const stats = await merge.finish((k, v) => void out.push([k, Number(held(v) >> 80n)]));
    expect(stats.spilledBytes).toBeGreaterThan(0);
    expect(out).toEqual(plainSums(runs(5, 40)));
  });

  it("a merge that fails part-way closes every run it was reading, and removes them", async () => {
    const input = runs(5, 40);
    const scratchDir = path.join(dir, "scratch-fails");
    const merge = new RunMerge({
      combine: (a, b) => (a as number) + (b as number),
      spillBytes: 4_000,
      fanIn: 64,
      scratch: new FsBlobStore(scratchDir),
      prefix: "job/p0/",
    });
    for (const [i, b] of input.entries()) await merge.addRun(b, `run ${i}`);
    const openFiles = async () => (await readdir("/proc/self/fd")).length;
    const before = await openFiles();
    let emitted = 0;
    const failing = merge.finish(() => {
      if (++emitted === 10) throw new Error("the output's upload failed");
    });
    await expect(failing).rejects.toThrow("the output's upload failed");
    expect(await openFiles()).toBe(before);
    expect(await readdir(path.join(scratchDir, "job", "p0")).catch(() => [])).toEqual([]);
  });

  it.each([
    { what: "in memory", spillBytes: 1 << 30, fanIn: 64 },
    { what: "spilling, merged in one pass", spillBytes: 20_000, fanIn: 64 },
    { what: "spilling, merged in several passes (fan-in 3)", spillBytes: 4_000, fanIn: 3 },
  ])("hands a non-commutative combine each key's values in the order the runs came: $what", async ({ spillBytes, fanIn }) => {
    // Each value is a list [run, position]; combine appends, so the result shows the order it was given.
    const next = prng(9);
    const input = Array.from({ length: 40 }, (_, run) => {
      const table = new Map<string, [number, number][]>();
      for (let i = 0; i < 200; i++) {
        const key = randomKey(next, 3);
        table.set(key, [...(table.get(key) ?? []), [run, i]]);
      }
      return encodeShuffle([...table], 1).bytes;
    });
    const expected = new Map<string, unknown[]>();
    for (const b of input) forEachPair(b, "run", (k, v) => expected.set(k, [...(expected.get(k) ?? []), ...(v as unknown[])]));
    const scratch = new FsBlobStore(path.join(dir, `ordered-${spillBytes}`));
    const append = (a: unknown, b: unknown) => [...(a as unknown[]), ...(b as unknown[])];
    const merge = new RunMerge({ combine: append, spillBytes, fanIn, scratch, prefix: "job/p0/" });
    for (const [i, b] of input.entries()) await merge.addRun(b, `run ${i}`);
    const got = new Map<string, unknown>();
    await merge.finish((k, v) => void got.set(k, v));
    expect(got).toEqual(expected);
  });
});
