/**
 * Param schemas for ops. Values arrive as strings from `--param k=v` and as JSON values
 * from job specs, so numbers and booleans accept both spellings.
 */
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import type { Params } from "../job/spec.js";

const NUMERIC = /^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$/;

const REQUIRED_OR = (expected: string) => (issue: { input?: unknown }) => (issue.input === undefined ? "is required" : expected);

const toNumber = (v: unknown): unknown => (typeof v === "string" && NUMERIC.test(v) ? Number(v) : v);

/**
 * A number param as a double. Written past a double's range it is refused, as the same number
 * in the data is: `1e-400` would be 0 and `1e400` Infinity, another bound than the one given.
 */
export const numberParam = () =>
  z.preprocess(
    (v, ctx) => {
      const n = toNumber(v);
      const digits = typeof v === "string" ? v.replace(/[eE].*$/, "") : "";
      if (typeof v === "string" && typeof n === "number" && (!Number.isFinite(n) || (n === 0 && /[1-9]/.test(digits)))) {
        ctx.addIssue({ code: "custom", message: `out of a double's range (it would be ${n})` });
        return z.NEVER;
      }
      return n;
    },
    z.number({ error: REQUIRED_OR("expected a number") }).finite({ error: "expected a finite number" }),
  );

export const intParam = (min: number, max: number) =>
  z.preprocess(
    toNumber,
    z
      .number({ error: REQUIRED_OR("expected a whole number") })
      .int({ error: "expected a whole number" })
      .min(min, { error: `must be at least ${min}` })
      .max(max, { error: `must be at most ${max}` }),
  );

const BOOLEAN_WORDS: Readonly<Record<string, boolean>> = { true: true, false: false, "1": true, "0": false, yes: true, no: false };

export const boolParam = () =>
  z.preprocess(
    (v) => (typeof v === "string" && v in BOOLEAN_WORDS ? BOOLEAN_WORDS[v] : v),
    z.boolean({ error: REQUIRED_OR("expected true or false") }),
  );

export const stringParam = (max = 1000) =>
  z
    .string({ error: REQUIRED_OR("expected text") })
    .min(1, { error: "must not be empty" })
    .max(max);

/**
 * A schema built on first use, once: building a zod object costs more than parsing with it
 * (a worker parsed each tiny chunk's params in a third of a millisecond), and building every
 * op's schemas at import would slow each command's start.
 */
export const lazySchema = <S extends z.ZodType>(build: () => S): (() => S) => {
  let schema: S | undefined;
  return () => (schema ??= build());
};

/**
 * How to give param `name`, both ways a job gets params: the CLI's flag and a job spec's field.
 * An upload to `<op>/<path>` carries none, so a message that names only the flag leaves an
 * uploader with nothing to do.
 */
export const paramHint = (name: string, value = "VALUE"): string => `--param ${name}=${value}, or params.${name} in a job spec`;

/**
 * Parses an op's params with a strict zod object; the first problem becomes one line:
 * `wordcount: param k: must be at least 1 (got "0")`, and a missing one says how to give it.
 */
export const parseOpParams = <S extends z.ZodType>(op: string, schema: S, raw: Params): z.output<S> => {
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  if (issue.code === "unrecognized_keys") {
    const known = schema instanceof z.ZodObject ? Object.keys(schema.shape).join(", ") : "";
    throw new CloudmillError(
      ErrorCode.INVALID_SPEC,
      `${op}: unknown param ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}${known ? ` (known: ${known})` : " (it takes none)"}`,
      { field: `params.${issue.keys[0]}` },
    );
  }
  const name = issue.path.map(String).join(".");
  const got = name in raw ? ` (got ${JSON.stringify(raw[name])})` : "";
  const message = issue.message === "is required" ? `is required (${paramHint(name)})` : issue.message;
  throw new CloudmillError(ErrorCode.INVALID_SPEC, `${op}: param ${name}: ${message}${got}`, { field: `params.${name}` });
};
