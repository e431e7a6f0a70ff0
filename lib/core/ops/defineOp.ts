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
 *
 * The keyed form emits (key, value) pairs instead, any number per record; cloudmill combines
 * each key's values (map-side too), partitions keys over reduce tasks and writes one line per
 * key, `row(key, value)`, to the job's parts (`part-00000.jsonl`, …):
 * ```ts
 * export const bytesPerUser = defineOp({
 *   name: "bytes-per-user",
 *   format: "jsonl",
 *   pairs: (event: { user: string; bytes: number }, emit) => emit(event.user, event.bytes),
 *   combine: (a: number, b: number) => a + b,
 *   row: (user, bytes) => ({ user, bytes }),
 * });
 * ```
 * Or, where a key's values cannot be combined two at a time (a median, a distinct list), `reduce`
 * gets them all at once, in input order, and returns the key's line:
 * ```ts
 * export const medianPerStation = defineOp({
 *   name: "median-per-station",
 *   format: "csv",
 *   pairs: (row: { station: string; t: string }, emit) => emit(row.station, Number(row.t)),
 *   reduce: (station, ts: number[]) => ({ station, median: median(ts) }),
 * });
 * ```
 */
import * as z from "zod";
import { CloudmillError, ErrorCode, toCloudmillError } from "../errors.js";
import { Format, OpName, type Params } from "../job/spec.js";
import type { AnyOp, MapContext, Op } from "./types.js";
import { codeDigest, paramsOf } from "./codeDigest.js";
import { parseOpParams } from "./params.js";
import { forEachRecord, formatParams, formatParamsShape, guarded, type FormatOptions } from "./formatReaders.js";
import { jsonValueOf } from "./jsonValue.js";
import { keyedOp } from "./keyedOp.js";

export const OP_BRAND: unique symbol = Symbol.for("cloudmill.op") as never;

export interface RecordMeta {
  /** Byte offset of the record in its input: in the decoded bytes of a gzip or zstd input, a virtual offset in a BGZF one. */
  readonly offset: number;
  /** How users name the input. */
  readonly input: string;
  /** The blob format: the object's size in bytes (the record is the whole object). */
  readonly size?: number;
}

/** What a record's meta says: its offset and input, and a blob's size. */
const metaOf = (record: unknown, offset: number, ctx: MapContext): RecordMeta =>
  ctx.format === "blob" ? { offset, input: ctx.inputName, size: (record as Buffer).length } : { offset, input: ctx.inputName };

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
  /**
   * Set when the op is cheap enough to map a small job in the splitter's function, where the
   * job starts (seconds, not the minutes a cold fleet takes): linear in its input, and needing
   * nothing that only the worker image holds.
   */
  readonly inline?: boolean;
  /** Turns the merged partial (undefined when there were no records) into the result. */
  finalize?(partial: A | undefined, params: P): R;
}

/**
 * A blob op's map, in pieces: each object's bytes arrive in order, in the pieces they are read
 * in, so an object of any size is mapped in bounded memory (a hash, a header, a byte count).
 */
export interface BlobStream<P, A, S> {
  /** A new object: the state its pieces update (`meta` names it; its size comes with `finish`). */
  start(params: P, meta: RecordMeta): S;
  /** The object's next bytes (reused once it returns: copy what is kept); returns the new state, or updates it in place. */
  // biome-ignore lint/suspicious/noConfusingVoidType: an update that changes the state in place and returns nothing is typed void
  update(state: S, bytes: Buffer, params: P): S | undefined | void;
  /** The object's partial, from its state once every byte was seen (`meta.size`: how many); undefined contributes nothing. */
  finish(state: S, params: P, meta: RecordMeta): A | undefined;
}

/** A blob op that maps each object in pieces (`stream`) instead of whole (`map`). */
export interface StreamingOpDefinition<P, A, R, S> extends Omit<OpDefinition<P, A, R>, "map" | "format"> {
  readonly format: "blob" | readonly ["blob"];
  readonly stream: BlobStream<P, A, S>;
  readonly map?: never;
}

interface KeyedOpBase<P, V> {
  readonly name: string;
  readonly description?: string;
  readonly format: Format | readonly Format[];
  readonly params?: z.ZodType<P>;
  /** Calls emit with each of the record's pairs (none, one or many). Keys are strings; values must be JSON values. */
  pairs(record: unknown, emit: (key: string, value: V) => void, params: P, meta: RecordMeta): void;
}

/** Values of a key combined two at a time (map-side too), one output line per key. */
export interface CombiningOpDefinition<P, V> extends KeyedOpBase<P, V> {
  /** Merges two values of one key; must be associative and commutative. */
  combine(a: V, b: V, params: P): V;
  /** The output line (a JSON value, never undefined) of a key; default `{ key, value }`. */
  row?(key: string, value: V, params: P): unknown;
  readonly reduce?: never;
}

/**
 * Every value of a key handed over at once, in input order, for its output line. The values of
 * one key are held in memory on its reduce task; the shuffle carries every pair (nothing to
 * combine map-side).
 */
export interface ReducingOpDefinition<P, V> extends KeyedOpBase<P, V> {
  /** The output line (a JSON value, never undefined) of a key, from all its values. */
  reduce(key: string, values: V[], params: P): unknown;
  readonly combine?: never;
  readonly row?: never;
}

/** A keyed op: pairs out of each record, then `combine` (and `row`) or `reduce` per key. */
export type KeyedOpDefinition<P, V> = CombiningOpDefinition<P, V> | ReducingOpDefinition<P, V>;

/** A reducing op's values travel as lists: one per pair, appended in input order as runs merge. */
const appendValues = (a: unknown, b: unknown): unknown => {
  const list = a as unknown[];
  for (const v of b as unknown[]) list.push(v);
  return list;
};

/** Internally a user op's partial says whether it holds anything. */
type Wrapped<A> = { some: false } | { some: true; value: A };

/**
 * A value as it arrives after travelling as JSON: a copy, so that an op that reuses one object
 * for each record, or a combine that appends into its first argument, gets the answer it would
 * get had the value crossed a chunk boundary (which JSON copies); -0 as the 0 JSON makes it.
 */
const asTravelled = <T>(v: T): T => {
  if (typeof v === "object" && v !== null) return JSON.parse(JSON.stringify(v)) as T;
  return Object.is(v, -0) ? (0 as T) : v;
};

/**
 * Calls a lab's function on the record at `offset`. What it throws of its own (not a bad record
 * it reports, nor ours) is located at that record, so the chunk's failure names its line and
 * byte, not only the chunk's range; it is still retried, as a driver that crashed may not again.
 */
const atRecord = <T>(offset: number, fn: () => T): T => {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CloudmillError) throw err;
    throw toCloudmillError(err).withContext({ offset });
  }
};

/** A combine's result, refused when undefined: a combine that forgot its `return` would pass as a null value. */
const combined = <T>(name: string, v: T): T => {
  if (v === undefined)
    throw new CloudmillError(
      ErrorCode.OP_FAILED,
      `op ${name}: combine returned undefined (a missing return?); it must return the combined value`,
    );
  return jsonValueOf(name, "combine", v, false);
};

/** Adds a value to a user op's partial with its `combine` (its result's top checked on every call: see jsonValue.ts). */
const joinWith =
  <P, A>(def: Pick<OpDefinition<P, A, unknown>, "combine" | "name">) =>
  (params: P) =>
  (acc: Wrapped<A>, v: A): Wrapped<A> => ({
    some: true,
    value: acc.some ? combined(def.name, def.combine(acc.value, v, params)) : v,
  });

/** A partial as it leaves a task, checked whole. */
const checkedPartial = <A>(name: string, acc: Wrapped<A>): Wrapped<A> => {
  if (acc.some) jsonValueOf(name, "combine", acc.value);
  return acc;
};

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
  codeDigest(def.name, [
    def.name,
    def.description ?? "",
    formats,
    def.orderFree === true,
    def.map,
    def.combine,
    def.finalize ?? null,
    ...paramsOf(def.params),
  ]);

/** A keyed op as defineOp makes it. */
export type UserKeyedOp<P> = Op<UserParams<P>, unknown, never> & { readonly [OP_BRAND]: true };

/** Name and formats of a definition, checked. */
const checkedFormats = (def: { readonly name: string; readonly format: Format | readonly Format[] }): readonly Format[] => {
  const name = OpName.safeParse(def.name);
  if (!name.success)
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `defineOp: name ${JSON.stringify(def.name)}: ${name.error.issues[0]!.message}`);
  const formats = (Array.isArray(def.format) ? def.format : [def.format]) as readonly Format[];
  if (formats.length === 0 || !formats.every((f) => Format.safeParse(f).success)) {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `defineOp ${def.name}: format must be one of ${Format.options.join(", ")}`);
  }
  return formats;
};

/** A user op's params: format options (csv header, separator) are the engine's; the op sees only its own. */
const userParams =
  <P>(name: string, schema: z.ZodType<P>) =>
  (raw: Params): UserParams<P> => {
    // Own keys only, on objects with no prototype: a lab's param named constructor or toString is
    // neither an inherited format option nor, when not given, Object's own method.
    const own = Object.create(null) as Record<string, unknown>;
    const format = Object.create(null) as Record<string, unknown>;
    for (const [k, v] of Object.entries(raw)) (Object.hasOwn(formatParamsShape, k) ? format : own)[k] = v;
    const formatOptions: FormatOptions = parseOpParams(name, formatParams(), format as Params);
    return { ...formatOptions, own: parseOpParams(name, schema, own as Params) };
  };

export function defineOp<P = Record<string, never>, V = unknown>(def: KeyedOpDefinition<P, V>): UserKeyedOp<P>;
export function defineOp<P = Record<string, never>, A = unknown, R = A | undefined, S = unknown>(
  def: StreamingOpDefinition<P, A, R, S>,
): UserOp<P, A, R>;
export function defineOp<P = Record<string, never>, A = unknown, R = A | undefined>(def: OpDefinition<P, A, R>): UserOp<P, A, R>;
export function defineOp<P, A, R>(
  def: OpDefinition<P, A, R> | StreamingOpDefinition<P, A, R, unknown> | KeyedOpDefinition<P, A>,
): UserOp<P, A, R> | UserKeyedOp<P> {
  if ("pairs" in def) return defineKeyedOp(def);
  return "stream" in def && def.stream !== undefined ? defineStreamingOp(def) : defineMapOp(def as OpDefinition<P, A, R>);
}

/** A streaming blob op: the map op it would be, with a mapper that feeds each object's pieces to `stream`. */
const defineStreamingOp = <P, A, R>(def: StreamingOpDefinition<P, A, R, unknown>): UserOp<P, A, R> => {
  const formats = checkedFormats(def);
  const { stream, name } = def;
  // Checked at run time too: a lab's .mjs module has no types to stop it.
  if (formats.length !== 1 || formats[0] !== "blob" || (def as { map?: unknown }).map !== undefined)
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `defineOp ${name}: stream is for the blob format only, instead of map`);
  if (typeof stream !== "object" || stream === null)
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `defineOp ${name}: stream must be { start, update, finish }`);
  for (const fn of ["start", "update", "finish"] as const)
    if (typeof stream[fn] !== "function")
      throw new CloudmillError(ErrorCode.INVALID_SPEC, `defineOp ${name}: stream.${fn} is not a function`);
  const base = defineMapOp({ ...def, map: () => undefined } as OpDefinition<P, A, R>);
  const { start, update, finish } = stream;
  return {
    ...base,
    digest: codeDigest(name, [
      name,
      def.description ?? "",
      formats,
      def.orderFree === true,
      "stream",
      start,
      update,
      finish,
      def.combine,
      def.finalize ?? null,
      ...paramsOf(def.params),
    ]),
    streamsBlobs: true,
    mapper({ own: params }, ctx) {
      let acc: Wrapped<A> = { some: false };
      const add = joinWith(def)(params);
      let state: unknown;
      let started = false;
      /** A bad record (onBadRecord: skip) leaves the object out: none of its pieces or its finish count. */
      let skipped = false;
      let size = 0;
      const meta = (): RecordMeta => ({ offset: 0, input: ctx.inputName, size });
      // As a record of any format: a bad record fails the chunk or is skipped, and any other error fails it.
      const safely = (offset: number, fn: () => void): void => {
        if (skipped) return;
        let done = false;
        guarded(ctx, offset, () => {
          fn();
          done = true;
        });
        if (!done) skipped = true;
      };
      const begin = (): void => {
        started = true;
        safely(0, () => {
          state = start(params, { offset: 0, input: ctx.inputName });
        });
      };
      return {
        block(block) {
          if (!started) begin();
          size += block.bytes.length;
          safely(block.offset, () => {
            const next = update(state, block.bytes, params);
            if (typeof (next as { then?: unknown } | undefined)?.then === "function")
              throw new CloudmillError(
                ErrorCode.OP_FAILED,
                `${name}: stream.update returned a promise; it must update the state synchronously`,
              );
            if (next !== undefined) state = next;
          });
        },
        finish: () => {
          if (!started) begin();
          safely(size, () => {
            const v = jsonValueOf(name, "stream.finish", finish(state, params, meta()));
            if (v !== undefined) acc = add(acc, v);
          });
          return checkedPartial(name, acc);
        },
      };
    },
  };
};

const defineKeyedOp = <P, V>(def: KeyedOpDefinition<P, V>): UserKeyedOp<P> => {
  const formats = checkedFormats(def);
  const { reduce, combine } = def;
  // Checked at run time too: a lab's .mjs module has no types to stop it.
  const { name } = def;
  if ((typeof reduce === "function") === (typeof combine === "function"))
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `defineOp ${name}: a keyed op needs combine (with row) or reduce, one of them`);
  if (typeof reduce === "function" && def.row !== undefined)
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `defineOp ${name}: reduce returns each key's line itself; drop row`);
  const checked = (key: string, row: unknown): unknown => {
    if (row === undefined)
      throw new CloudmillError(
        ErrorCode.OP_FAILED,
        `${def.name}: ${reduce ? "reduce" : "row"}() returned undefined for key ${JSON.stringify(key)}`,
      );
    return jsonValueOf(def.name, () => `${reduce ? "reduce" : "row"} for key ${JSON.stringify(key)}`, row);
  };
  const parseParams = userParams(def.name, (def.params ?? z.strictObject({})) as z.ZodType<P>);
  const op = keyedOp<UserParams<P>>({
    name: def.name,
    description: def.description ?? "user op (keyed)",
    formats,
    paramsHelp: [],
    parseParams,
    pairs({ own: params, ...formatOptions }, ctx) {
      return (block, emit) =>
        forEachRecord(block, ctx.format, formatOptions, ctx, (record, offset) => {
          const returned: unknown = atRecord(offset, () =>
            def.pairs(
              record,
              (key, value) => {
                // A lab's bug, not its data's: it fails the chunk whatever onBadRecord says.
                if (typeof key !== "string")
                  throw new CloudmillError(
                    ErrorCode.OP_FAILED,
                    `op ${def.name}: emit at byte ${offset}: keys must be strings, got ${typeof key}`,
                  );
                // Values travel as JSON between tasks: what JSON cannot hold would arrive changed.
                if (value === undefined)
                  throw new CloudmillError(
                    ErrorCode.OP_FAILED,
                    `op ${def.name}: emit for key ${JSON.stringify(key)} at byte ${offset}: the value is undefined`,
                  );
                jsonValueOf(def.name, () => `emit for key ${JSON.stringify(key)} at byte ${offset}`, value);
                const travelled = asTravelled(value);
                emit(key, reduce ? [travelled] : travelled);
              },
              params,
              metaOf(record, offset, ctx),
            ),
          );
          // An async pairs would emit after its chunk was written: those pairs would be lost.
          if (typeof (returned as { then?: unknown } | undefined)?.then === "function")
            throw new CloudmillError(
              ErrorCode.OP_FAILED,
              `op ${def.name}: pairs returned a promise; it must emit its pairs before it returns (op code runs synchronously)`,
            );
        });
    },
    combine: reduce ? appendValues : (a, b, { own }) => combined(def.name, combine!(a as V, b as V, own)),
    // Emitted values were checked whole; a combined one is, as its chunk's shuffle takes it.
    ...(reduce
      ? { gathers: true }
      : { checkValue: (key: string, v: unknown) => void jsonValueOf(def.name, () => `combine for key ${JSON.stringify(key)}`, v) }),
    row: (key, value, { own }) => {
      if (reduce) return checked(key, reduce(key, value as V[], own));
      return checked(key, def.row ? def.row(key, value as V, own) : { key, value });
    },
  });
  const digest = codeDigest(
    def.name,
    reduce
      ? [def.name, def.description ?? "", formats, "keyed", def.pairs, "reduce", reduce, ...paramsOf(def.params)]
      : [def.name, def.description ?? "", formats, "keyed", def.pairs, combine!, def.row ?? null, ...paramsOf(def.params)],
  );
  return { ...op, [OP_BRAND]: true, digest };
};

const defineMapOp = <P = Record<string, never>, A = unknown, R = A | undefined>(def: OpDefinition<P, A, R>): UserOp<P, A, R> => {
  const formats = checkedFormats(def);
  const schema = (def.params ?? z.strictObject({})) as z.ZodType<P>;
  const join = joinWith(def);
  return {
    [OP_BRAND]: true,
    name: def.name,
    digest: definitionDigest(def as unknown as OpDefinition<never, never, never>, formats),
    description: def.description ?? "user op",
    formats,
    paramsHelp: [],
    ...(def.orderFree ? { orderFreeMerge: true } : {}),
    ...(def.inline ? { inline: true } : {}),
    parseParams: userParams(def.name, schema),
    mapper({ own: params, ...formatOptions }, ctx) {
      let acc: Wrapped<A> = { some: false };
      const add = join(params);
      return {
        block(block) {
          forEachRecord(block, ctx.format, formatOptions, ctx, (record, offset) => {
            const v = jsonValueOf(
              def.name,
              () => `map of the record at byte ${offset}`,
              atRecord(offset, () => def.map(record, params, metaOf(record, offset, ctx))),
            );
            if (v !== undefined) acc = add(acc, asTravelled(v));
          });
        },
        finish: () => checkedPartial(def.name, acc),
      };
    },
    merger({ own: params }) {
      let acc: Wrapped<A> = { some: false };
      const add = join(params);
      return {
        add: (p) => void (p.some ? (acc = add(acc, p.value)) : undefined),
        value: () => checkedPartial(def.name, acc),
      };
    },
    finalize: (p, { own: params }) =>
      jsonValueOf(def.name, "finalize", def.finalize ? def.finalize(p.some ? p.value : undefined, params) : p.some ? p.value : undefined),
  };
};

export const isOp = (v: unknown): v is AnyOp => typeof v === "object" && v !== null && (v as { [OP_BRAND]?: unknown })[OP_BRAND] === true;
