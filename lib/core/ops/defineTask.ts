/**
 * `defineTask`: one call of a lab's function per item, any JSON in and out, no combine (the
 * SPMD half of Cloudknot's `Knot.map` and MyCloud's `cluster.map`).
 *
 * ```ts
 * export const resize = defineTask({
 *   name: "resize",
 *   timeoutSeconds: 60,
 *   run: async (item: { key: string; width: number }, ctx) => ({ key: item.key, bytes: await shrink(item, ctx) }),
 * });
 * ```
 * Items are the records of a JSONL input (`mapItems` and `submit --items` write one). Each
 * chunk's items run one after another on a worker thread of their own, under the task's
 * per-item time and memory limits; a thrown error is the item's, not the worker's.
 */
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import { OpName, type Params } from "../job/spec.js";
import type { LogFields } from "../log.js";
import { codeDigest, paramsOf } from "./codeDigest.js";
import { OP_BRAND } from "./defineOp.js";
import { parseOpParams } from "./params.js";
import type { Op } from "./types.js";

/** What a task's `run` gets besides its item. */
export interface TaskContext {
  /** The item's byte offset in its input: a key for the item that is stable across retries. */
  readonly offset: number;
  /** A directory of this item's own, emptied once the item is done. */
  readonly scratch: string;
  /** Lines go to the worker's log, with the task, job and item offset added. */
  readonly log: {
    info(message: string, fields?: LogFields): void;
    warn(message: string, fields?: LogFields): void;
    error(message: string, fields?: LogFields): void;
  };
  /** Aborted when the item's time is up or the worker is stopping (SIGTERM): stop soon. */
  readonly signal: AbortSignal;
  /**
   * Stores an object of the task's own (a resized image, a table) in the output bucket under
   * `_jobs/<jobId>/files/<name>`; resolves with its key there, which the job's result lists.
   */
  put(name: string, body: Uint8Array | string): Promise<string>;
}

export interface TaskDefinition<I, O, P> {
  readonly name: string;
  readonly description?: string;
  /** Schema of the task's params (values arrive as strings from the CLI); default: none. */
  readonly params?: z.ZodType<P>;
  run(item: I, ctx: TaskContext, params: P): O | Promise<O>;
  /** Longest one item may run; past it the item fails with ITEM_TIMEOUT. Default 300. */
  readonly timeoutSeconds?: number;
  /** Heap one item may use; past it the item fails with ITEM_OUT_OF_MEMORY. Default 1024. */
  readonly memoryMiB?: number;
}

export const ON_ITEM_ERROR = ["collect", "fail"] as const;
export type OnItemError = (typeof ON_ITEM_ERROR)[number];

/** A task's parsed params: its own, plus what the engine does with a failed item. */
export interface TaskParams<P = unknown> {
  readonly own: P;
  /** `collect` (default): the failed item is listed in the result's errors; `fail`: it fails the job. */
  readonly onItemError: OnItemError;
}

/** How an item ended. Items are located by (input index, byte offset) until the result numbers them. */
export type ItemEntry = {
  readonly input: number;
  readonly offset: number;
  /** Keys of objects the item stored with ctx.put. */
  readonly files?: readonly string[];
} & ({ readonly value: unknown } | { readonly error: { readonly code: string; readonly message: string } });

export interface TaskPartial {
  readonly items: readonly ItemEntry[];
}

/** An item that failed, by its position among the job's items (0-based). */
export interface ItemError {
  readonly index: number;
  readonly code: string;
  readonly message: string;
}

/** A task job's result: one output per item that did not fail, in item order, and the ones that did. */
export interface TaskResult<O = unknown> {
  readonly items: number;
  readonly results: O[];
  readonly errors: ItemError[];
  /** Keys (in the output bucket) of every object the items stored with ctx.put, in item order. */
  readonly files: string[];
}

export interface TaskLimits {
  readonly timeoutMs: number;
  readonly memoryMiB: number;
}

export const TASK_BRAND: unique symbol = Symbol.for("cloudmill.task") as never;

export type TaskOp<I = unknown, O = unknown, P = unknown> = Op<TaskParams<P>, TaskPartial, TaskResult<O>> & {
  readonly [OP_BRAND]: true;
  readonly [TASK_BRAND]: true;
  readonly limits: TaskLimits;
  /** Runs one item (on an item thread; see lib/sandbox). */
  runItem(item: I, ctx: TaskContext, params: TaskParams<P>): Promise<O>;
};

export const DEFAULT_TASK_TIMEOUT_SECONDS = 300;
export const DEFAULT_TASK_MEMORY_MIB = 1024;

const Limits = z.strictObject({
  timeoutSeconds: z.number().positive().max(86_400).default(DEFAULT_TASK_TIMEOUT_SECONDS),
  memoryMiB: z.number().int().min(16).max(65_536).default(DEFAULT_TASK_MEMORY_MIB),
});

const OnItemErrorParam = z.strictObject({ onItemError: z.enum(ON_ITEM_ERROR).default("collect") });

const byPosition = (a: ItemEntry, b: ItemEntry): number => a.input - b.input || a.offset - b.offset;

export const defineTask = <I = unknown, O = unknown, P = Record<string, never>>(def: TaskDefinition<I, O, P>): TaskOp<I, O, P> => {
  const name = OpName.safeParse(def.name);
  if (!name.success)
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `defineTask: name ${JSON.stringify(def.name)}: ${name.error.issues[0]!.message}`);
  if (typeof def.run !== "function") throw new CloudmillError(ErrorCode.INVALID_SPEC, `defineTask ${def.name}: run must be a function`);
  const limits = Limits.safeParse({ timeoutSeconds: def.timeoutSeconds, memoryMiB: def.memoryMiB });
  if (!limits.success) {
    const issue = limits.error.issues[0]!;
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `defineTask ${def.name}: ${issue.path.join(".")}: ${issue.message}`);
  }
  const schema = (def.params ?? z.strictObject({})) as z.ZodType<P>;
  return {
    [OP_BRAND]: true,
    [TASK_BRAND]: true,
    name: def.name,
    digest: codeDigest(def.name, ["task", def.name, def.description ?? "", limits.data, def.run, ...paramsOf(def.params)]),
    description: def.description ?? "user task",
    formats: ["jsonl"],
    paramsHelp: ["onItemError=collect|fail  a failed item is listed in the result's errors (collect) or fails the job"],
    orderFreeMerge: true,
    limits: { timeoutMs: Math.round(limits.data.timeoutSeconds * 1000), memoryMiB: limits.data.memoryMiB },
    parseParams: (raw: Params): TaskParams<P> => {
      const { onItemError, ...own } = raw;
      const engine = parseOpParams(def.name, OnItemErrorParam, onItemError === undefined ? {} : { onItemError });
      return { onItemError: engine.onItemError, own: parseOpParams(def.name, schema, own) };
    },
    mapper() {
      throw new CloudmillError(ErrorCode.INTERNAL, `task ${def.name}: items run through an item runner, not a chunk mapper`);
    },
    merger() {
      const items: ItemEntry[] = [];
      return {
        // One at a time: a merged partial's items are too many to spread as arguments.
        add: (p) => {
          for (const item of p.items) items.push(item);
        },
        value: () => ({ items }),
      };
    },
    finalize(partial) {
      const results: O[] = [];
      const errors: ItemError[] = [];
      const files: string[] = [];
      const items = [...partial.items].sort(byPosition);
      for (const [index, entry] of items.entries()) {
        if ("error" in entry) errors.push({ index, ...entry.error });
        else results.push(entry.value as O);
        if (entry.files) files.push(...entry.files);
      }
      return { items: items.length, results, errors, files };
    },
    runItem: async (item, ctx, params) => def.run(item, ctx, params.own),
  };
};

export const isTaskOp = (v: unknown): v is TaskOp =>
  typeof v === "object" && v !== null && (v as { [TASK_BRAND]?: unknown })[TASK_BRAND] === true;
