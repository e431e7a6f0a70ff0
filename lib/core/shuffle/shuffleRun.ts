/**
 * The shuffle's on-store format. A keyed op's map task writes, per reading of its chunk, one
 * object holding every partition's pairs: a segment per non-empty partition, each a sorted
 * run of JSON lines `[key, value]`. Its part names the object and where each segment is, so a
 * reduce task reads only its own partition's bytes, with one ranged GET per chunk.
 */
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import { compareKeys, partitionOf } from "./keyOrder.js";

/** A keyed op's pairs from one chunk, combined by key (one entry per key), in no set order. */
export type KeyedTable = [key: string, value: unknown][];

/**
 * Per field an op reads by name (`key=station`), the JSONL records read and those that had it,
 * so that a job can refuse a name no record has (a misspelling) rather than group all under null.
 */
export const FieldCounts = z.record(z.string(), z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]));
export type FieldCounts = z.infer<typeof FieldCounts>;

/** A keyed op's map partial: its table, and the counts of the fields it read by name. */
export interface KeyedPartial {
  readonly pairs: KeyedTable;
  readonly fields?: FieldCounts;
}

/** Field counts summed (a chunk's objects, or a job's chunks); undefined where none has any. */
export const sumFieldCounts = (all: readonly (FieldCounts | undefined)[]): FieldCounts | undefined => {
  let sum: FieldCounts | undefined;
  for (const counts of all) {
    if (!counts) continue;
    sum ??= {};
    for (const [label, [seen, had]] of Object.entries(counts)) {
      const [s, h] = sum[label] ?? [0, 0];
      sum[label] = [s + seen, h + had];
    }
  }
  return sum;
};

/** Where one partition's run is in a shuffle object: [partition, start, end, records]. */
export const Segment = z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative(), z.number().int(), z.number().int()]);
export type Segment = z.infer<typeof Segment>;

/** A map task's shuffle output, as its part records it. */
export const ShuffleRef = z.strictObject({
  key: z.string(),
  /** The non-empty partitions, in partition order. */
  segments: z.array(Segment),
  fields: FieldCounts.optional(),
});
export type ShuffleRef = z.infer<typeof ShuffleRef>;

/** A sort map task's run, as its part records it: where it is, and its samples (sortRun.ts). */
export const SortRef = z.strictObject({
  key: z.string(),
  bytes: z.number().int().nonnegative(),
  lines: z.number().int().nonnegative(),
  step: z.number().int().positive(),
  samples: z.array(z.tuple([z.tuple([z.union([z.literal(0), z.literal(1)]), z.number(), z.string()]), z.number().int().nonnegative()])),
  /** Indexes of the samples that hold only the start of their line. */
  cut: z.array(z.number().int().nonnegative()).optional(),
});
export type SortRef = z.infer<typeof SortRef>;

export const pairLine = (key: string, value: unknown): string => `${JSON.stringify([key, value])}\n`;

/** Sorts a table's entries by key (byte order) in place. */
export const sortTable = (table: KeyedTable): KeyedTable => table.sort((a, b) => compareKeys(a[0], b[0]));

/** The bytes of a shuffle object for a table, and its segments. */
export const encodeShuffle = (table: KeyedTable, partitions: number): { bytes: Buffer; segments: Segment[] } => {
  const byPartition = new Map<number, KeyedTable>();
  for (const entry of table) {
    const p = partitionOf(entry[0], partitions);
    let list = byPartition.get(p);
    if (!list) byPartition.set(p, (list = []));
    list.push(entry);
  }
  const buffers: Buffer[] = [];
  const segments: Segment[] = [];
  let at = 0;
  for (const p of [...byPartition.keys()].sort((a, b) => a - b)) {
    const entries = sortTable(byPartition.get(p)!);
    const bytes = Buffer.from(entries.map(([k, v]) => pairLine(k, v)).join(""), "utf8");
    buffers.push(bytes);
    segments.push([p, at, at + bytes.length, entries.length]);
    at += bytes.length;
  }
  return { bytes: Buffer.concat(buffers, at), segments };
};

/** Calls fn with each pair of a run's bytes (whole lines only). */
export const forEachPair = (bytes: Buffer, where: string, fn: (key: string, value: unknown) => void): void => {
  let start = 0;
  while (start < bytes.length) {
    let end = bytes.indexOf(0x0a, start);
    if (end === -1) end = bytes.length;
    const line = bytes.toString("utf8", start, end);
    let pair: unknown;
    try {
      pair = JSON.parse(line);
    } catch {
      pair = undefined;
    }
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string")
      throw new CloudmillError(ErrorCode.INTERNAL, `${where}: byte ${start} is not a [key, value] line`);
    fn(pair[0], pair[1]);
    start = end + 1;
  }
};
