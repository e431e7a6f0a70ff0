/**
 * `histogram`: counts of numbers in `bins` equal-width bins over [min, max]; the last bin
 * includes max. Values outside [min, max] are counted in `below` / `above`, which appear
 * in the result only when non-zero, so nothing is dropped silently.
 */
import * as z from "zod";
import { doubleSink } from "../records/decimal.js";
import type { Op } from "./types.js";
import { intParam, numberParam, parseOpParams } from "./params.js";
import { numberReader, valueParamsHelp, valueParamsShape } from "./formatReaders.js";

const Params = z
  .strictObject({ ...valueParamsShape, bins: intParam(1, 100_000).default(10), min: numberParam(), max: numberParam() })
  .refine((p) => p.min < p.max, { error: "min must be less than max", path: ["max"] });
type Params = z.output<typeof Params>;

export interface HistogramPartial {
  bins: number[];
  below: number;
  above: number;
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
    const { min, max, bins } = params;
    const width = max - min;
    const counts = p.bins;
    const add = (x: number): void => {
      if (x < min) p.below++;
      else if (x > max) p.above++;
      else counts[Math.min(bins - 1, Math.floor(((x - min) / width) * bins))]!++;
    };
    const sink = doubleSink(add);
    return { block: (block) => read(block, sink), finish: () => p };
  },
  merger(params) {
    const acc: HistogramPartial = { bins: new Array<number>(params.bins).fill(0), below: 0, above: 0 };
    return {
      add(p) {
        for (const [i, c] of p.bins.entries()) acc.bins[i]! += c;
        acc.below += p.below;
        acc.above += p.above;
      },
      value: () => acc,
    };
  },
  finalize(p, params) {
    const r: HistogramResult = { min: params.min, max: params.max, bins: p.bins };
    if (p.below) r.below = p.below;
    if (p.above) r.above = p.above;
    return r;
  },
};
