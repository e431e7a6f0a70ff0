/**
 * `groupby`: per key (one or more CSV columns or JSONL fields), the count of records and, with
 * `value=<column>`, the exact sum, min, max, mean and population variance of its numbers (as
 * `stats` computes them: the same bits for any chunking or partitioning). One JSON line per key
 * in the job's parts.
 */
import { z } from "zod";
import { badRecord } from "../errors.js";
import { parseNumberText } from "../records/numbers.js";
import { addSquareTo, addTo } from "./exactSum.js";
import { forEachRecord, formatParamsHelp, formatParamsShape, type FormatOptions } from "./formatReaders.js";
import { keyedOp } from "./keyedOp.js";
import { parseOpParams, stringParam } from "./params.js";
import { fieldList, fieldReader, keyOfFields, keyValue } from "./recordFields.js";
import { statsResultOf, type StatsPartial } from "./stats.js";

export interface GroupbyParams extends FormatOptions {
  readonly key: string;
  readonly value?: string | undefined;
}

/** A key's values so far: records, and the stats of the numbers among them. */
interface Group {
  /** Records with this key. */
  c: number;
  /** Stats of their values (absent without `value`). */
  v?: StatsPartial;
}

const finite = (x: number | null): number => (x !== null && Number.isFinite(x) ? x : NaN);

const combineStats = (a: StatsPartial, b: StatsPartial): StatsPartial => {
  const sum = a.sum.map(finite);
  const squares = a.squares.map(finite);
  // A stored overflowed term (±Infinity, NaN) is JSON null: keep it non-finite, never 0.
  for (const x of b.sum) addTo(sum, finite(x));
  for (const x of b.squares) addTo(squares, finite(x));
  const min = a.min === null ? b.min : b.min === null ? a.min : Math.min(a.min, b.min);
  const max = a.max === null ? b.max : b.max === null ? a.max : Math.max(a.max, b.max);
  return { count: a.count + b.count, sum, squares, min, max };
};

export const groupby = keyedOp<GroupbyParams>({
  name: "groupby",
  description: "per key column(s): record count and, with value=, exact sum, min, max, mean and variance; one JSON line per key",
  formats: ["csv", "jsonl"],
  paramsHelp: [
    ...formatParamsHelp,
    "key=COL[,COL]       the column(s) (csv: name or 1-based index) or field(s) (jsonl: dotted path) to group by",
    "value=COL           the column or field whose numbers are aggregated per key (blank values count as records only)",
  ],
  parseParams: (raw) =>
    parseOpParams("groupby", z.strictObject({ ...formatParamsShape, key: stringParam(1000), value: stringParam(256).optional() }), raw),
  pairs(params, ctx) {
    const keyOf = keyOfFields(fieldList(params.key).map((name) => fieldReader(name, "key", ctx.format, ctx)));
    const value = params.value === undefined ? undefined : fieldReader(params.value, "value", ctx.format, ctx);
    return (block, emit) =>
      forEachRecord(block, ctx.format, params, ctx, (record, offset) => {
        const group: Group = { c: 1 };
        if (value) {
          const raw = value(record, offset);
          const x =
            raw === undefined || raw === null
              ? undefined
              : typeof raw === "number"
                ? raw
                : typeof raw === "string"
                  ? parseNumberText(raw, offset)
                  : undefined;
          if (typeof raw === "boolean") throw badRecord(`value ${params.value}: expected a number, got ${raw}`, offset);
          // JSON's 1e400 parses to Infinity: out of range, as stats says too.
          if (x !== undefined && !Number.isFinite(x)) throw badRecord(`value ${params.value}: number out of range`, offset);
          const v: StatsPartial = { count: 0, sum: [], squares: [], min: null, max: null };
          if (x !== undefined) {
            v.count = 1;
            addTo(v.sum, x);
            addSquareTo(v.squares, x);
            v.min = x;
            v.max = x;
          }
          group.v = v;
        }
        emit(keyOf(record, offset), group);
      });
  },
  combine(a, b) {
    const x = a as Group;
    const y = b as Group;
    return x.v && y.v ? { c: x.c + y.c, v: combineStats(x.v, y.v) } : { c: x.c + y.c };
  },
  row(key, value) {
    const g = value as Group;
    if (!g.v) return { key: keyValue(key), count: g.c };
    const s = statsResultOf(g.v);
    return { key: keyValue(key), count: g.c, values: s.count, sum: s.sum, min: s.min, max: s.max, mean: s.mean, variance: s.variance };
  },
});
