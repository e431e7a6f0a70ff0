/**
 * `groupby`: per key (one or more CSV columns or JSONL fields), the count of records and, with
 * `value=<column>`, the exact sum, min, max, mean and population variance of its numbers (as
 * `stats` computes them: the same bits for any chunking or partitioning). One JSON line per key
 * in the job's parts.
 */
import * as z from "zod";
import { badRecord } from "../errors.js";
import { decimalText, type DecimalSink } from "../records/decimal.js";
import { atCommonScale, decimalFromJson, decimalToJson } from "./exactDecimal.js";
import { forEachRecord, formatParamsHelp, formatParamsShape, jsonNumber, type FormatOptions } from "./formatReaders.js";
import { keyedOp } from "./keyedOp.js";
import { lazySchema, parseOpParams, stringParam } from "./params.js";
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

const combineStats = (a: StatsPartial, b: StatsPartial): StatsPartial => {
  if (a.count === 0) return b;
  if (b.count === 0) return a;
  const sum = atCommonScale(decimalFromJson(a.sum), decimalFromJson(b.sum));
  const squares = atCommonScale(decimalFromJson(a.squares), decimalFromJson(b.squares));
  return {
    count: a.count + b.count,
    sum: decimalToJson({ m: sum.a + sum.b, scale: sum.scale }),
    squares: decimalToJson({ m: squares.a + squares.b, scale: squares.scale }),
    min: Math.min(a.min!, b.min!),
    max: Math.max(a.max!, b.max!),
  };
};

/** No number (a blank value): a record that counts, with no value. */
const NO_VALUE: StatsPartial = { count: 0, sum: "0e-0", squares: "0e-0", min: null, max: null };

/** The stats of one number. */
const statsOfOne = (x: number, m: bigint, scale: number): StatsPartial => ({
  count: 1,
  sum: decimalToJson({ m, scale }),
  squares: decimalToJson({ m: m * m, scale: 2 * scale }),
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
        const group: Group = { c: 1 };
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
  combine(a, b) {
    const x = a as Group;
    const y = b as Group;
    return x.v && y.v ? { c: x.c + y.c, v: combineStats(x.v, y.v) } : { c: x.c + y.c };
  },
  row(key, value) {
    const g = value as Group;
    if (!g.v) return { key: keyValue(key), count: g.c };
    const s = statsResultOf(g.v, `groupby: key ${JSON.stringify(keyValue(key))}`);
    return { key: keyValue(key), count: g.c, values: s.count, sum: s.sum, min: s.min, max: s.max, mean: s.mean, variance: s.variance };
  },
});
