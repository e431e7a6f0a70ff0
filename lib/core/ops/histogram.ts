/**
 * `histogram`: counts of numbers in `bins` equal-width bins over [min, max]; the last bin
 * includes max. Values outside [min, max] are counted in `below` / `above`, which appear
 * in the result only when non-zero, so nothing is dropped silently.
 *
 * Bins are judged on the numbers as written, exactly (as `stats` sums them): bin k holds
 * min + k·(max − min)/bins ≤ x < the next edge, min and max as their shortest decimals. A value
 * on an edge is in the bin the edge opens, which doubles alone get wrong about one time in four.
 */
import * as z from "zod";
import { decimalOfText } from "../records/decimal.js";
import type { Op } from "./types.js";
import { intParam, numberParam, parseOpParams } from "./params.js";
import { numberReader, refuseAbsentField, valueParamsHelp, valueParamsShape, type ValueSink } from "./formatReaders.js";

const Params = z
  .strictObject({ ...valueParamsShape, bins: intParam(1, 100_000).default(10), min: numberParam(), max: numberParam() })
  .refine((p) => p.min < p.max, { error: "min must be less than max", path: ["max"] });
type Params = z.output<typeof Params>;

export interface HistogramPartial {
  bins: number[];
  below: number;
  above: number;
  /** JSONL records without the field (only when some were). */
  absent?: number;
  /** JSONL records whose field is null (only when some were). */
  nulls?: number;
}

export interface HistogramResult {
  min: number;
  max: number;
  bins: number[];
  below?: number;
  above?: number;
}

export const histogram: Op<Params, HistogramPartial, HistogramResult> = {
  name: "histogram",
  orderFreeMerge: true,
  description: "counts of numbers in equal-width bins over [min, max]",
  formats: ["numbers", "csv", "jsonl"],
  paramsHelp: ["bins=10            number of bins", "min=0 max=1        the range the bins cover (required)", ...valueParamsHelp],
  parseParams: (raw) => parseOpParams("histogram", Params, raw),
  mapper(params, ctx) {
    const read = numberReader(ctx.format, params, ctx);
    const p: HistogramPartial = { bins: new Array<number>(params.bins).fill(0), below: 0, above: 0 };
    const sink = binSink(params, p);
    return { block: (block) => read(block, sink), finish: () => p };
  },
  merger(params) {
    const acc: HistogramPartial = { bins: new Array<number>(params.bins).fill(0), below: 0, above: 0 };
    return {
      add(p) {
        for (const [i, c] of p.bins.entries()) acc.bins[i]! += c;
        acc.below += p.below;
        acc.above += p.above;
        if (p.absent) acc.absent = (acc.absent ?? 0) + p.absent;
        if (p.nulls) acc.nulls = (acc.nulls ?? 0) + p.nulls;
      },
      value: () => acc,
    };
  },
  finalize(p, params) {
    refuseAbsentField(
      p.bins.reduce((n, c) => n + c, p.below + p.above),
      p.absent,
      params,
    );
    const r: HistogramResult = { min: params.min, max: params.max, bins: p.bins };
    if (p.below) r.below = p.below;
    if (p.above) r.above = p.above;
    return r;
  },
  missingValues: (p) => (p.absent ?? 0) + (p.nulls ?? 0),
};

/** m / 10^scale at the finer scale `to`. */
const atScale = (m: bigint, scale: number, to: number): bigint => m * 10n ** BigInt(to - scale);

/**
 * Counts each number into `p`. Far from every edge the doubles decide: the float formula's error
 * is a small multiple of 1e-16 · bins · (|min| + |max|) / width, and `slack` is a hundred times
 * that. A value nearer an edge (or min or max itself) is judged exactly: in integers when it, min
 * and max are small integers as written, else on its written decimal in BigInt.
 */
const binSink = ({ min, max, bins }: Params, p: HistogramPartial): ValueSink => {
  const counts = p.bins;
  const width = max - min;
  // Subnormal numbers are spaced Number.MIN_VALUE apart whatever their size: that spacing counts too.
  const slack = Number.isFinite(width)
    ? (1e-13 * bins * (Math.abs(min) + Math.abs(max)) + 4 * bins * Number.MIN_VALUE) / width
    : Number.POSITIVE_INFINITY;
  const lo = decimalOfText(String(min))!;
  const hi = decimalOfText(String(max))!;
  // Integer edges whose products with `bins` stay exact in doubles.
  const integers = lo.scale === 0 && hi.scale === 0 && (Math.abs(min) + Math.abs(max)) * bins < 2 ** 52;
  const add = (k: number): void => void counts[Math.min(bins - 1, k)]!++;
  /** Decided by the doubles alone, or false. */
  const roughly = (x: number): boolean => {
    if (x < min) p.below++;
    else if (x > max) p.above++;
    else {
      const q = ((x - min) * bins) / width;
      const k = Math.floor(q);
      if (!(q - k > slack && k + 1 - q > slack)) return false;
      add(k);
    }
    return true;
  };
  const exactly = (m: bigint, scale: number): void => {
    const to = Math.max(scale, lo.scale, hi.scale);
    const v = atScale(m, scale, to);
    const a = atScale(lo.m, lo.scale, to);
    const b = atScale(hi.m, hi.scale, to);
    if (v < a) p.below++;
    else if (v > b) p.above++;
    else add(Number(((v - a) * BigInt(bins)) / (b - a)));
  };
  return {
    small(x, m, scale) {
      if (roughly(x)) return;
      if (integers && scale === 0 && Math.abs(m) * bins < 2 ** 52) {
        // Every product below is an integer under 2^53: exact.
        if (m < min) p.below++;
        else if (m > max) p.above++;
        else {
          const d = (m - min) * bins;
          let k = Math.floor(d / width);
          if (k * width > d) k--;
          else if ((k + 1) * width <= d) k++;
          add(k);
        }
        return;
      }
      exactly(BigInt(m), scale);
    },
    big(x, m, scale) {
      if (!roughly(x)) exactly(m, scale);
    },
    absent() {
      p.absent = (p.absent ?? 0) + 1;
    },
    nullValue() {
      p.nulls = (p.nulls ?? 0) + 1;
    },
  };
};
