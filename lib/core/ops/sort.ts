/**
 * `sort`: the input's lines in order, as GNU `sort -g` orders numbers or `LC_ALL=C sort` orders
 * lines (sortRun.ts). Range-partitioned: part p holds the p-th range of keys, so the parts
 * concatenated in order are the sorted input. Each line is written with its exact bytes.
 */
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import { RunBuilder, type SortFormat, type SortedRun } from "../shuffle/sortRun.js";
import { SortRef } from "../shuffle/shuffleRun.js";
import { SortSamples } from "../shuffle/sortSamples.js";
import { lazySchema, parseOpParams } from "./params.js";
import type { Op } from "./types.js";

const SortParamsSchema = lazySchema(() => z.strictObject({}));

export const sort: Op<Record<string, never>, unknown, never> = {
  name: "sort",
  description: "the lines in order: numbers as sort -g orders them, lines as LC_ALL=C sort does; parts concatenate to the whole",
  formats: ["numbers", "lines"],
  paramsHelp: [],
  sorts: true,
  parseParams: (raw) => parseOpParams("sort", SortParamsSchema(), raw),
  mapper(_params, ctx) {
    const runs = new RunBuilder(ctx.format as SortFormat);
    return {
      block: (block) => runs.add(block.bytes, block.offset, (err) => ctx.bad(err)),
      finish: (): SortedRun => runs.finish(),
    };
  },
  // Packed as parts arrive: a 1 TB sort's 15 million samples must fit the reducer.
  merger() {
    const samples = new SortSamples();
    return { add: (p) => samples.add(SortRef.parse(p)), value: () => samples };
  },
  finalize() {
    throw new CloudmillError(ErrorCode.INTERNAL, "sort: its result is written by its reduce tasks");
  },
};
