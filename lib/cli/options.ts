/** Flag parsing shared by commands: `--param k=v` pairs, worker counts, numbers within a range. */
import * as z from "zod";
import { invalidSpec } from "../core/errors.js";
import { MaxRecordBytes } from "../core/job/spec.js";

/** Collects repeated `--param k=v` into an object (values stay strings; ops parse them). */
export const collectParam = (value: string, previous: Record<string, string> = {}): Record<string, string> => {
  const eq = value.indexOf("=");
  if (eq <= 0) throw invalidSpec(`--param ${JSON.stringify(value)}: expected NAME=VALUE, e.g. --param k=20`, "params");
  const name = value.slice(0, eq);
  if (Object.hasOwn(previous, name)) throw invalidSpec(`--param ${name} given twice`, `params.${name}`);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  Object.assign(out, previous);
  out[name] = value.slice(eq + 1);
  return out;
};

export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** Where a number flag's value must lie: `min` or more (or over `above`), `max` or less; whole unless `fraction`. */
export interface FlagRange {
  readonly min?: number;
  readonly above?: number;
  readonly max?: number;
  readonly fraction?: boolean;
}

/** A range as words: "from 1 to 20", "≥ 1", "> 0 and ≤ 1000000". */
const rangeText = ({ min, above, max }: FlagRange): string => {
  if (min !== undefined && max !== undefined) return ` from ${min} to ${max}`;
  const bounds = [min !== undefined ? `≥ ${min}` : "", above !== undefined ? `> ${above}` : "", max !== undefined ? `≤ ${max}` : ""];
  const said = bounds.filter((b) => b !== "").join(" and ");
  return said ? ` ${said}` : "";
};

/**
 * A number flag, coerced from its text (`--workers 4`). A schema-level error replaces every
 * check's message, so the one message says the range too, whatever is wrong: a word, a
 * fraction, or a value out of range (`--workers: expected a whole number from 1 to 1000`).
 */
export const numberFlag = (what: string, range: FlagRange = {}): z.ZodCoercedNumber => {
  const error = `expected ${what}${rangeText(range)}`;
  let schema = z.coerce.number({ error });
  if (range.fraction !== true) schema = schema.int({ error });
  if (range.min !== undefined) schema = schema.min(range.min, { error });
  if (range.above !== undefined) schema = schema.gt(range.above, { error });
  if (range.max !== undefined) schema = schema.max(range.max, { error });
  return schema;
};

/**
 * The flags of a job's limits, one name and one parse for every command that takes them (run,
 * submit, retry): the spec field each sets is in `limitsOf`.
 */
export const LIMIT_FLAGS = {
  maxAttempts: "--max-attempts <n>",
  taskTimeout: "--task-timeout <seconds>",
  taskMemory: "--task-memory <MiB>",
  maxRecordBytes: "--max-record-bytes <size>",
  maxCostUsd: "--max-cost-usd <dollars>",
  deadline: "--deadline <seconds>",
} as const;

/** How each limit flag is parsed, within the job spec's bounds (lib/core/job/spec.ts). */
export const limitFlag = {
  maxAttempts: numberFlag("a whole number", { min: 1, max: 20 }).optional(),
  taskTimeout: numberFlag("whole seconds", { min: 1, max: 86_400 }).optional(),
  taskMemory: numberFlag("whole MiB", { min: 64, max: 65_536 }).optional(),
  maxRecordBytes: MaxRecordBytes.optional(),
  maxCostUsd: numberFlag("dollars", { above: 0, max: 1_000_000, fraction: true }).optional(),
  deadline: numberFlag("whole seconds", { min: 1, max: 7 * 86_400 }).optional(),
} as const;

type LimitFlagValues = { readonly [K in Exclude<keyof typeof limitFlag, "maxAttempts">]?: z.output<(typeof limitFlag)[K]> };

/** The spec fields the limit flags given set (a retry's options take the same names). */
export const limitsOf = (
  flags: LimitFlagValues,
): {
  taskTimeoutSeconds?: number;
  taskMemoryMiB?: number;
  maxRecordBytes?: number;
  maxCostUsd?: number;
  deadlineSeconds?: number;
} => ({
  ...(flags.taskTimeout !== undefined ? { taskTimeoutSeconds: flags.taskTimeout } : {}),
  ...(flags.taskMemory !== undefined ? { taskMemoryMiB: flags.taskMemory } : {}),
  ...(flags.maxRecordBytes !== undefined ? { maxRecordBytes: flags.maxRecordBytes } : {}),
  ...(flags.maxCostUsd !== undefined ? { maxCostUsd: flags.maxCostUsd } : {}),
  ...(flags.deadline !== undefined ? { deadlineSeconds: flags.deadline } : {}),
});
