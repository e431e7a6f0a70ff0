/**
 * A task's chunk: its items (the JSONL records the chunk owns) go to an item runner, which
 * runs each under the task's limits on a thread of its own (lib/sandbox), and come back as one
 * outcome per item. The part holds the outcomes; the reducer numbers them in item order.
 */
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import type { MapTask } from "../job/manifest.js";
import { itemResultKey, jobFilesPrefix, JOBS_PREFIX } from "../keys.js";
import type { ItemEntry, TaskOp, TaskResult } from "../ops/defineTask.js";
import type { BlobStore } from "../ports.js";
import { readBytes } from "./blobJson.js";
import { mapInOrder } from "../mapInOrder.js";
import { forEachRecord } from "../ops/formatReaders.js";
import type { MapContext } from "../ops/types.js";
import { rangeRecordBlocks } from "../records/alignedBlocks.js";
import { inputRangeBytes } from "../records/inputBytes.js";
import { refusingCompressed } from "../records/compressed.js";
import type { PipelineDeps } from "./deps.js";
import type { Item } from "./itemRunner.js";
import { recordLimitsOf } from "./recordLimits.js";
import { whyNotJson } from "../ops/jsonValue.js";

/** An item's output larger than this is stored as its own object (as Lithops cannot: its results travel in the invocation). */
export const LARGE_ITEM_RESULT_BYTES = 256 * 1024;

/** Names ctx.put accepts: relative paths of plain segments. */
const FILE_NAME = /^(?!.*(?:^|\/)\.\.?(?:\/|$))[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/;

/** The longest segment of a ctx.put name: what a filesystem holds in one name (`cloudmill run` keeps them as files). */
const MAX_SEGMENT = 255;

const putName = (task: string, name: string): string => {
  if (name.length > 512 || !FILE_NAME.test(name)) {
    throw new CloudmillError(
      ErrorCode.ITEM_FAILED,
      `task ${task}: ctx.put name ${JSON.stringify(name)} must be a relative path of letters, digits, '.', '_' or '-' segments`,
    );
  }
  if (name.split("/").some((s) => s.length > MAX_SEGMENT))
    throw new CloudmillError(
      ErrorCode.ITEM_FAILED,
      `task ${task}: ctx.put name ${JSON.stringify(name)} has a segment over ${MAX_SEGMENT} characters`,
    );
  return name;
};

/** An item and the input it is read from (a packed chunk's items come from several). */
export interface ChunkItem extends Item {
  readonly inputIndex: number;
  readonly inputName: string;
}

/** The items of a chunk of one input: its JSONL records, each with its byte offset. Bad lines follow onBadRecord. */
export const readItems = async (deps: PipelineDeps, task: MapTask, ctx: MapContext, signal?: AbortSignal): Promise<ChunkItem[]> => {
  const { chunk } = task;
  const items: ChunkItem[] = [];
  const from = { inputIndex: chunk.inputIndex, inputName: chunk.input.name };
  const store = deps.inputStore(chunk.input.bucket);
  const source = inputRangeBytes(store, chunk.input, chunk, signal ? { signal } : {});
  for await (const block of refusingCompressed(
    rangeRecordBlocks(source, recordLimitsOf(ctx, task.job)),
    chunk.input.name,
    chunk.input.member !== undefined,
  )) {
    forEachRecord(block, "jsonl", {}, ctx, (value, offset) => items.push({ offset, value, ...from }));
  }
  return items;
};

/** Runs a chunk's items and returns the part's partial; under onItemError: fail, the first failed item throws. */
export const runItems = async (
  deps: PipelineDeps,
  task: MapTask,
  op: TaskOp,
  items: readonly ChunkItem[],
  { signal, drain }: { readonly signal?: AbortSignal | undefined; readonly drain?: AbortSignal | undefined } = {},
): Promise<{ items: ItemEntry[] }> => {
  const runner = deps.items;
  if (!runner) throw new CloudmillError(ErrorCode.INTERNAL, `task ${op.name}: this role has no item runner`);
  const { jobId, job, chunk } = task;
  const stopOnError = op.parseParams(job.params).onItemError === "fail";
  const outcomes = await runner.run({
    task: op.name,
    params: job.params,
    limits: op.limits,
    items: items.map(({ offset, value }) => ({ offset, value })),
    stopOnError,
    ...(signal ? { signal } : {}),
    ...(drain ? { drain } : {}),
    log: deps.log.child({ jobId, chunk: chunk.index, task: op.name }),
    put: async (name, body) => {
      const key = `${jobFilesPrefix(jobId)}${putName(op.name, name)}`;
      await deps.output.put(key, body);
      return key;
    },
  });
  const entries: ItemEntry[] = [];
  for (const [i, outcome] of outcomes.entries()) {
    const item = items[i]!;
    const at = { input: item.inputIndex, offset: item.offset, ...(outcome.files.length > 0 ? { files: outcome.files } : {}) };
    if (!outcome.ok) {
      if (stopOnError) {
        throw new CloudmillError(outcome.code as ErrorCode, `task ${op.name}: item failed: ${outcome.message}`, {
          input: item.inputName,
          offset: at.offset,
        });
      }
      entries.push({ ...at, error: { code: outcome.code, message: outcome.message } });
      continue;
    }
    const text = JSON.stringify(outcome.value ?? null);
    if (Buffer.byteLength(text) <= LARGE_ITEM_RESULT_BYTES) {
      entries.push({ ...at, value: outcome.value ?? null });
      continue;
    }
    const key = itemResultKey(jobId, item.inputIndex, at.offset);
    await deps.output.put(key, text, { contentType: "application/json" });
    entries.push({ ...at, value: { [RESULT_REF]: key } });
  }
  return { items: entries };
};

/** The field of a stand-in for an item output stored on its own: `{ "$cloudmill:result": "<key>" }`. */
export const RESULT_REF = "$cloudmill:result";

const refOf = (v: unknown): string | undefined => {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return undefined;
  const keys = Object.keys(v);
  const ref = (v as Record<string, unknown>)[RESULT_REF];
  return keys.length === 1 && typeof ref === "string" ? ref : undefined;
};

/** Item outputs read back at once, at most. */
const RESOLVE_CONCURRENCY = 8;

/** A task job's result with every output that was stored on its own read back in its place. */
export const resolveItemResults = async (
  store: BlobStore,
  result: TaskResult,
  jobId: string,
  signal?: AbortSignal,
): Promise<TaskResult> => {
  const results = [...result.results];
  // Only this job's own stored outputs: an item's output that merely looks like a reference stays as it is.
  const own = `${JOBS_PREFIX}${jobId}/results/`;
  const refs = results.flatMap((v, i) => {
    const key = refOf(v);
    return key === undefined || !key.startsWith(own) ? [] : [{ i, key }];
  });
  await mapInOrder(refs, RESOLVE_CONCURRENCY, async ({ i, key }) => {
    results[i] = JSON.parse((await readBytes(store, key, signal)).toString("utf8")) as unknown;
  });
  return { ...result, results };
};

/** Messages a mapItems job makes at most when the caller names no batch size. */
export const DEFAULT_ITEM_MESSAGES = 1000;

/** Items per task message: as given, or as few as keep the job within DEFAULT_ITEM_MESSAGES. */
export const batchSizeFor = (items: number, given?: number): number => {
  if (given !== undefined && (!Number.isInteger(given) || given < 1))
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `batchSize: expected a whole number ≥ 1, got ${given}`, { field: "batchSize" });
  return given ?? Math.max(1, Math.ceil(items / DEFAULT_ITEM_MESSAGES));
};

/**
 * The chunk size that gives at most ⌈items ÷ batchSize⌉ chunks of a JSONL body: a chunk owns
 * the records that start in it, so ⌈bytes ÷ chunkSize⌉ chunks hold every item.
 */
export const itemsChunkSize = (bytes: number, items: number, batchSize: number): number =>
  Math.max(1, Math.ceil(bytes / Math.max(1, Math.ceil(items / batchSize))));

/** Items as a JSONL body, one per line; an item JSON cannot hold is refused, naming its index. */
export const itemsJsonl = (items: Iterable<unknown>): { body: string; count: number } => {
  const lines: string[] = [];
  for (const item of items) {
    let line: string | undefined;
    try {
      line = JSON.stringify(item);
    } catch (err) {
      throw new CloudmillError(ErrorCode.INVALID_SPEC, `item ${lines.length}: not JSON (${(err as Error).message})`, { field: "items" });
    }
    if (line === undefined)
      throw new CloudmillError(ErrorCode.INVALID_SPEC, `item ${lines.length}: ${typeof item} is not a JSON value`, { field: "items" });
    // JSON.stringify writes NaN as null and a Map or Date as something else: the task would get another item.
    const why = whyNotJson(item, `item ${lines.length}`);
    if (why) throw new CloudmillError(ErrorCode.INVALID_SPEC, `${why}, which JSON cannot carry unchanged`, { field: "items" });
    lines.push(line);
  }
  return { body: lines.length > 0 ? `${lines.join("\n")}\n` : "", count: lines.length };
};

const TaskResultShape = z.object({
  items: z.number(),
  results: z.array(z.unknown()),
  errors: z.array(z.object({ index: z.number(), code: z.string(), message: z.string() })),
  files: z.array(z.string()),
});

/** A job's result as stored, with item outputs stored on their own read back if it is a task's. */
export const resolveStoredResult = async (store: BlobStore, result: unknown, jobId: string, signal?: AbortSignal): Promise<unknown> => {
  // The shape is only checked: the result read on is the one stored, every field kept (zod's
  // parse drops those it does not name, and a lab's own op may answer in this shape and more).
  return TaskResultShape.safeParse(result).success ? resolveItemResults(store, result as TaskResult, jobId, signal) : result;
};
