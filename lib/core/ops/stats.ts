/**
 * `stats`: count, sum, min, max, mean and population variance of numbers.
 * Arithmetic is exact over the numbers as written (see exactDecimal.ts): Σx and Σx² are exact
 * decimals, so the result is the same bits for any chunking and merge order, and 0.1 + 0.2 is
 * 0.3. Sum, mean and variance = (n·Σx² − (Σx)²) / n² are each rounded to a double once.
 */
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import { DecimalSum, decimalFromJson, decimalToJson, ratioToDouble, type Decimal } from "./exactDecimal.js";
import type { Op } from "./types.js";
import { lazySchema, parseOpParams } from "./params.js";
import { numberReader, refuseAbsentField, valueParamsHelp, valueParamsShape, type ValueOptions, type ValueSink } from "./formatReaders.js";

/** Partial: exact Σx and Σx² as decimals (decimalToJson), plus count, min and max. */
export interface StatsPartial {
  count: number;
  sum: string;
  squares: string;
  min: number | null;
  max: number | null;
  /** JSONL records without the field (only when some were). */
  absent?: number;
  /** JSONL records whose field is null (only when some were). */
  nulls?: number;
}

export interface StatsResult {
  count: number;
  sum: number;
  min: number | null;
  max: number | null;
  mean: number | null;
  variance: number | null;
}

/** Running stats: a sink for numberReader, and a partial at any point. */
export class StatsAccumulator implements ValueSink {
  private count = 0;
  private min = Infinity;
  private max = -Infinity;
  private readonly sum = new DecimalSum();
  private readonly squares = new DecimalSum();
  private absentRecords = 0;
  private nullRecords = 0;

  absent(): void {
    this.absentRecords++;
  }

  nullValue(): void {
    this.nullRecords++;
  }

  small(x: number, m: number, scale: number): void {
    this.count++;
    this.sum.add(m, scale);
    this.squares.addSquare(m, 2 * scale);
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
  }

  big(x: number, m: bigint, scale: number): void {
    this.count++;
    this.sum.addBig(m, scale);
    this.squares.addBig(m * m, 2 * scale);
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
  }

  /** Adds another partial. */
  merge(p: StatsPartial): void {
    this.absentRecords += p.absent ?? 0;
    this.nullRecords += p.nulls ?? 0;
    if (p.count === 0) return;
    this.count += p.count;
    this.sum.addDecimal(decimalFromJson(p.sum));
    this.squares.addDecimal(decimalFromJson(p.squares));
    if (p.min !== null && p.min < this.min) this.min = p.min;
    if (p.max !== null && p.max > this.max) this.max = p.max;
  }

  partial(): StatsPartial {
    const n = this.count;
    return {
      count: n,
      sum: decimalToJson(this.sum.value()),
      squares: decimalToJson(this.squares.value()),
      min: n ? this.min : null,
      max: n ? this.max : null,
      ...(this.absentRecords ? { absent: this.absentRecords } : {}),
      ...(this.nullRecords ? { nulls: this.nullRecords } : {}),
    };
  }
}

const StatsParamsSchema = lazySchema(() => z.strictObject(valueParamsShape));

export const stats: Op<ValueOptions, StatsPartial, StatsResult> = {
  name: "stats",
  orderFreeMerge: true,
  description: "count, sum, min, max, mean and population variance of numbers (blank lines skipped)",
  formats: ["numbers", "csv", "jsonl"],
  paramsHelp: valueParamsHelp,
  parseParams: (raw) => parseOpParams("stats", StatsParamsSchema(), raw),
  mapper(params, ctx) {
    const read = numberReader(ctx.format, params, ctx);
    const acc = new StatsAccumulator();
    return { block: (block) => read(block, acc), finish: () => acc.partial() };
  },
  merger() {
    const acc = new StatsAccumulator();
    return { add: (p) => acc.merge(p), value: () => acc.partial() };
  },
  finalize: (p, params) => {
    refuseAbsentField(p.count, p.absent, params);
    return statsResultOf(p);
  },
  missingValues: (p) => (p.absent ?? 0) + (p.nulls ?? 0),
};

/** Stats with Σx and Σx² as decimals, not their JSON text: what groupby combines in memory. */
export interface ExactStats {
  readonly count: number;
  readonly sum: Decimal;
  readonly squares: Decimal;
  readonly min: number | null;
  readonly max: number | null;
}

const ZERO: Decimal = { m: 0n, scale: 0 };

/** The result of merged stats partials; throws BAD_RECORD, naming `of`, when the sum or variance overflows a double. */
export const statsResultOf = (p: StatsPartial, of = "stats"): StatsResult => {
  // An empty partial's sums are never read (nor parsed).
  const empty = p.count === 0;
  const sum = empty ? ZERO : decimalFromJson(p.sum);
  const squares = empty ? ZERO : decimalFromJson(p.squares);
  return exactStatsResult({ count: p.count, sum, squares, min: p.min, max: p.max }, of);
};

/** statsResultOf over decimals already parsed. */
export const exactStatsResult = (p: ExactStats, of = "stats"): StatsResult => {
  const n = p.count;
  if (n === 0) return { count: 0, sum: 0, min: null, max: null, mean: null, variance: null };
  const { sum, squares } = p;
  // Σx at scale k and Σx² at scale 2k, as integers s and q: variance = (n·q − s²) / (n² · 10^2k).
  const k = Math.max(sum.scale, Math.ceil(squares.scale / 2));
  const s = sum.m * 10n ** BigInt(k - sum.scale);
  const q = squares.m * 10n ** BigInt(2 * k - squares.scale);
  const unit = 10n ** BigInt(k);
  const count = BigInt(n);
  const total = ratioToDouble(s, unit);
  const variance = ratioToDouble(count * q - s * s, count * count * unit * unit);
  if (!Number.isFinite(total) || !Number.isFinite(variance)) {
    throw new CloudmillError(ErrorCode.BAD_RECORD, `${of}: the sum or variance overflows a double (values beyond ±1e154?)`);
  }
  return { count: n, sum: total, min: p.min, max: p.max, mean: ratioToDouble(s, count * unit), variance };
};
