/**
 * `groupby`: per key (one or more CSV columns or JSONL fields), the count of records and, with
 * `value=<column>`, the exact sum, min, max, mean and population variance of its numbers (as
 * `stats` computes them: the same bits for any chunking or partitioning). One JSON line per key
 * in the job's parts.
 */
import * as z from "zod";
import { badRecord } from "../errors.js";
import { decimalText, type DecimalSink } from "../records/decimal.js";
import { addDecimals, decimalFromJson, decimalToJson, type Decimal } from "./exactDecimal.js";
import { forEachRecord, formatParamsHelp, formatParamsShape, jsonNumber, type FormatOptions } from "./formatReaders.js";
import { keyedOp } from "./keyedOp.js";
import { lazySchema, parseOpParams, stringParam } from "./params.js";
import { fieldList, fieldReader, keyOfFields, keyValue } from "./recordFields.js";
import { exactStatsResult, type ExactStats, type StatsPartial } from "./stats.js";

export interface GroupbyParams extends FormatOptions {
  readonly key: string;
  readonly value?: string | undefined;
}

/**
 * A key's values so far, as JSON carries it (a shuffle or spilled run, a partial): records, and
 * the stats of the numbers among them with their sums as text.
 */
interface Group {
  /** Records with this key. */
  c: number;
  /** Stats of their values (absent without `value`). */
  v?: StatsPartial;
}

/**
 * The same in memory: the sums as decimals. Text costs a bigint's conversion each way, which
 * for wide scales outweighs the addition many times; it is made only when a value leaves.
 */
interface HeldGroup {
  c: number;
  v?: ExactStats;
}

const isHeld = (v: StatsPartial | ExactStats): v is ExactStats => typeof v.sum !== "string";

const heldStats = (v: StatsPartial | ExactStats): ExactStats =>
  isHeld(v) ? v : { count: v.count, sum: decimalFromJson(v.sum), squares: decimalFromJson(v.squares), min: v.min, max: v.max };

/** A group as JSON carries it; the fields in the order earlier versions wrote them. */
const groupJson = (value: unknown): Group => {
  const g = value as Group | HeldGroup;
  if (!g.v || !isHeld(g.v)) return g as Group;
  const v = g.v;
  return { c: g.c, v: { count: v.count, sum: decimalToJson(v.sum), squares: decimalToJson(v.squares), min: v.min, max: v.max } };
};

const combineStats = (a: ExactStats, b: ExactStats): ExactStats => {
  if (a.count === 0) return b;
  if (b.count === 0) return a;
  return {
    count: a.count + b.count,
    sum: addDecimals(a.sum, b.sum),
    squares: addDecimals(a.squares, b.squares),
    min: Math.min(a.min!, b.min!),
    max: Math.max(a.max!, b.max!),
  };
};

const ZERO: Decimal = { m: 0n, scale: 0 };
/** No number (a blank value): a record that counts, with no value. */
const NO_VALUE: ExactStats = { count: 0, sum: ZERO, squares: ZERO, min: null, max: null };

/** The stats of one number. */
const statsOfOne = (x: number, m: bigint, scale: number): ExactStats => ({
  count: 1,
  sum: { m, scale },
  squares: { m: m * m, scale: 2 * scale },
  min: x,
  max: x,
});

const GroupbyParamsSchema = lazySchema(() =>
  z.strictObject({ ...formatParamsShape, key: stringParam(1000), value: stringParam(256).optional() }),
);

export const groupby = keyedOp<GroupbyParams>({
  name: "groupby",
  description: "per key column(s): record count and, with value=, exact sum, min, max, mean and variance; one JSON line per key",
  formats: ["csv", "jsonl"],
  paramsHelp: [
    ...formatParamsHelp,
    "key=COL[,COL]       the column(s) (csv: name or 1-based index) or field(s) (jsonl: dotted path) to group by",
    "value=COL           the column or field whose numbers are aggregated per key (blank values count as records only)",
  ],
  parseParams: (raw) => parseOpParams("groupby", GroupbyParamsSchema(), raw),
  pairs(params, ctx, fields) {
    const keysOf = keyOfFields(fieldList(params.key).map((name) => fieldReader(name, "key", ctx.format, ctx, fields)));
    const value = params.value === undefined ? undefined : fieldReader(params.value, "value", ctx.format, ctx, fields);
    const valuePath = ctx.format === "jsonl" ? params.value?.split(".") : undefined;
    return (block, emit) => {
      const keyOf = keysOf(block);
      forEachRecord(block, ctx.format, params, ctx, (record, offset, text, start, end) => {
        const group: HeldGroup = { c: 1 };
        if (value) {
          const raw = value(record, offset);
          if (typeof raw === "boolean") throw badRecord(`value ${params.value}: expected a number, got ${raw}`, offset);
          // JSON's 1e400 parses to Infinity: out of range, as stats says too.
          if (typeof raw === "number" && !Number.isFinite(raw)) throw badRecord(`value ${params.value}: number out of range`, offset);
          let v = NO_VALUE;
          const one: DecimalSink = {
            small: (x, m, scale) => void (v = statsOfOne(x, BigInt(m), scale)),
            big: (x, m, scale) => void (v = statsOfOne(x, m, scale)),
          };
          if (typeof raw === "number") jsonNumber(raw, one, offset, text, valuePath);
          else if (typeof raw === "string") decimalText(raw, offset, one);
          group.v = v;
        }
        emit(keyOf(record, offset, text, start, end), group);
      });
    };
  },
  // Either form in, the in-memory one out: values read from runs come as JSON.
  combine(a, b) {
    const x = a as Group | HeldGroup;
    const y = b as Group | HeldGroup;
    return x.v && y.v ? { c: x.c + y.c, v: combineStats(heldStats(x.v), heldStats(y.v)) } : { c: x.c + y.c };
  },
  toJson: groupJson,
  row(key, value) {
    const g = value as Group | HeldGroup;
    if (!g.v) return { key: keyValue(key), count: g.c };
    const s = exactStatsResult(heldStats(g.v), `groupby: key ${JSON.stringify(keyValue(key))}`);
    return { key: keyValue(key), count: g.c, values: s.count, sum: s.sum, min: s.min, max: s.max, mean: s.mean, variance: s.variance };
  },
});
