/**
 * `defineOp`: how users add their own ops. A user op maps each record to a partial and
 * combines partials; cloudmill does the chunking, record alignment, retries and merging.
 *
 * ```ts
 * export const longest = defineOp({
 *   name: "longest-line",
 *   format: "lines",
 *   map: (line: string) => line.length,
 *   combine: (a, b) => Math.max(a, b),
 *   finalize: (max) => ({ longest: max ?? 0 }),
 * });
 * ```
 * `combine` must be associative and commutative; partials must be JSON values.
 */
import { z } from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import { Format, OpName, type Params } from "../job/spec.js";
import type { AnyOp, Op } from "./types.js";
import { codeDigest } from "./codeDigest.js";
import { parseOpParams } from "./params.js";
import { forEachRecord, formatParamsShape, type FormatOptions } from "./formatReaders.js";

export const OP_BRAND: unique symbol = Symbol.for("cloudmill.op") as never;

export interface RecordMeta {
  /** Byte offset of the record in its input: in the decoded bytes of a gzip or zstd input, a virtual offset in a BGZF one. */
  readonly offset: number;
  /** How users name the input. */
  readonly input: string;
}

export interface OpDefinition<P, A, R> {
  readonly name: string;
  readonly description?: string;
  /** Record format(s) accepted; the first is the default. */
  readonly format: Format | readonly Format[];
  /** Schema of the op's params (values arrive as strings from the CLI); default: none. */
  readonly params?: z.ZodType<P>;
  /** Maps one record to a partial; undefined contributes nothing. */
  map(record: unknown, params: P, meta: RecordMeta): A | undefined;
  /** Merges two partials; must be associative and commutative. */
  combine(a: A, b: A, params: P): A;
  /**
   * Set when `combine` gives the very same value in any order and grouping (integer sums, max,
   * sorted set union): on a local run each task thread then merges its own chunks as they finish.
   */
  readonly orderFree?: boolean;
  /** Turns the merged partial (undefined when there were no records) into the result. */
  finalize?(partial: A | undefined, params: P): R;
}

/** Internally a user op's partial says whether it holds anything. */
type Wrapped<A> = { some: false } | { some: true; value: A };

/** A user op's parsed params: its own, plus the format options the engine reads the input with. */
export interface UserParams<P> extends FormatOptions {
  readonly own: P;
}

export type UserOp<P, A, R> = Op<UserParams<P>, Wrapped<A>, R | A | undefined> & { readonly [OP_BRAND]: true };

/**
 * The digest of an op's definition: its name, formats and the code of its functions (printer
 * choices aside, see codeDigest.ts). A module loaded as written and the same module bundled for
 * a deploy get the same digest; an edit to any of its functions changes it. (Code the functions
 * call into is not covered: bump the op's name or description when only a dependency changes.)
 */
const definitionDigest = (def: OpDefinition<never, never, never>, formats: readonly Format[]): string =>
  codeDigest([def.name, def.description ?? "", formats, def.orderFree === true, def.map, def.combine, def.finalize ?? null]);

export const defineOp = <P = Record<string, never>, A = unknown, R = A | undefined>(def: OpDefinition<P, A, R>): UserOp<P, A, R> => {
  const name = OpName.safeParse(def.name);
  if (!name.success)
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `defineOp: name ${JSON.stringify(def.name)}: ${name.error.issues[0]!.message}`);
  const formats = (Array.isArray(def.format) ? def.format : [def.format]) as readonly Format[];
  if (formats.length === 0 || !formats.every((f) => Format.safeParse(f).success)) {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `defineOp ${def.name}: format must be one of ${Format.options.join(", ")}`);
  }
  const schema = (def.params ?? z.strictObject({})) as z.ZodType<P>;
  const formatSchema = z.strictObject(formatParamsShape);
  const join =
    (params: P) =>
    (acc: Wrapped<A>, v: A): Wrapped<A> => ({ some: true, value: acc.some ? def.combine(acc.value, v, params) : v });
  return {
    [OP_BRAND]: true,
    name: def.name,
    digest: definitionDigest(def as unknown as OpDefinition<never, never, never>, formats),
    description: def.description ?? "user op",
    formats,
    paramsHelp: [],
    ...(def.orderFree ? { orderFreeMerge: true } : {}),
    parseParams: (raw: Params): UserParams<P> => {
      // Format options (csv header, separator) are the engine's; the op sees only its own.
      const own: Record<string, unknown> = {};
      const format: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(raw)) (k in formatParamsShape ? format : own)[k] = v;
      const formatOptions: FormatOptions = parseOpParams(def.name, formatSchema, format as Params);
      return { ...formatOptions, own: parseOpParams(def.name, schema, own as Params) };
    },
    mapper({ own: params, ...formatOptions }, ctx) {
      let acc: Wrapped<A> = { some: false };
      const add = join(params);
      return {
        block(block) {
          forEachRecord(block, ctx.format, formatOptions, ctx, (record, offset) => {
            const v = def.map(record, params, { offset, input: ctx.inputName });
            if (v !== undefined) acc = add(acc, v);
          });
        },
        finish: () => acc,
      };
    },
    merger({ own: params }) {
      let acc: Wrapped<A> = { some: false };
      const add = join(params);
      return {
        add: (p) => void (p.some ? (acc = add(acc, p.value)) : undefined),
        value: () => acc,
      };
    },
    finalize: (p, { own: params }) => (def.finalize ? def.finalize(p.some ? p.value : undefined, params) : p.some ? p.value : undefined),
  };
};

export const isOp = (v: unknown): v is AnyOp => typeof v === "object" && v !== null && (v as { [OP_BRAND]?: unknown })[OP_BRAND] === true;
