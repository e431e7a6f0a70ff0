/**
 * `stats`: count, sum, min, max, mean and population variance of numbers.
 * Sums are exact (see exactSum.ts), so the result is the same bits for any chunking and
 * any merge order; variance = (n·Σx² − (Σx)²) / n², its numerator computed exactly.
 */
import { z } from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import { addSquareTo, addTo, multiply, roundExpansion, twoProduct } from "./exactSum.js";
import type { Op } from "./types.js";
import { parseOpParams } from "./params.js";
import { numberReader, valueParamsHelp, valueParamsShape, type ValueOptions } from "./formatReaders.js";

/** Partial: exact Σx and Σx² as expansions, plus count, min and max. */
export interface StatsPartial {
  count: number;
  sum: number[];
  squares: number[];
  min: number | null;
  max: number | null;
}

export interface StatsResult {
  count: number;
  sum: number;
  min: number | null;
  max: number | null;
  mean: number | null;
  variance: number | null;
}

export const stats: Op<ValueOptions, StatsPartial, StatsResult> = {
  name: "stats",
  orderFreeMerge: true,
  description: "count, sum, min, max, mean and population variance of numbers (blank lines skipped)",
  formats: ["numbers", "csv", "jsonl"],
  paramsHelp: valueParamsHelp,
  parseParams: (raw) => parseOpParams("stats", z.strictObject(valueParamsShape), raw),
  mapper(params, ctx) {
    const read = numberReader(ctx.format, params, ctx);
    const p: StatsPartial = { count: 0, sum: [], squares: [], min: null, max: null };
    let min = Infinity;
    let max = -Infinity;
    const add = (x: number): void => {
      p.count++;
      addTo(p.sum, x);
      addSquareTo(p.squares, x);
      if (x < min) min = x;
      if (x > max) max = x;
    };
    return {
      block: (block) => read(block, add),
      finish: () => ({ ...p, min: p.count ? min : null, max: p.count ? max : null }),
    };
  },
  merger() {
    const acc: StatsPartial = { count: 0, sum: [], squares: [], min: null, max: null };
    return {
      add(p) {
        acc.count += p.count;
        // A part stores an overflowed term (±Infinity, NaN) as JSON null: keep it non-finite, never 0.
        for (const x of p.sum) addTo(acc.sum, Number.isFinite(x) ? x : NaN);
        for (const x of p.squares) addTo(acc.squares, Number.isFinite(x) ? x : NaN);
        if (p.min !== null && (acc.min === null || p.min < acc.min)) acc.min = p.min;
        if (p.max !== null && (acc.max === null || p.max > acc.max)) acc.max = p.max;
      },
      value: () => acc,
    };
  },
  finalize: (p) => statsResultOf(p),
};

/** The result of merged stats partials; throws BAD_RECORD when the sum or variance overflows. */
export const statsResultOf = (p: StatsPartial): StatsResult => {
  const n = p.count;
  const sum = roundExpansion(p.sum);
  if (n === 0) return { count: 0, sum: 0, min: null, max: null, mean: null, variance: null };
  // n·Σx² − (Σx)², exactly.
  const numerator: number[] = [];
  for (const x of p.squares) {
    const [hi, lo] = twoProduct(x, n);
    addTo(numerator, hi);
    if (lo !== 0) addTo(numerator, lo);
  }
  for (const x of multiply(p.sum, p.sum)) addTo(numerator, -x);
  const variance = roundExpansion(numerator) / (n * n);
  if (!Number.isFinite(sum) || !Number.isFinite(variance)) {
    throw new CloudmillError(ErrorCode.BAD_RECORD, "stats: the sum or variance overflows a double (values beyond ±1e150?)");
  }
  return { count: n, sum, min: p.min, max: p.max, mean: sum / n, variance };
};
