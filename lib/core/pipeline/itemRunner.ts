/**
 * The item-runner port: how a task chunk's items are run, one outcome per item. The runner that
 * puts each item on a thread under its limits is lib/sandbox/ThreadItemRunner.ts.
 */
import type { Params } from "../job/spec.js";
import type { Logger } from "../log.js";
import type { TaskLimits } from "../ops/defineTask.js";

/** One item, located by its byte offset in the chunk's input. */
export interface Item {
  readonly offset: number;
  readonly value: unknown;
}

export type ItemOutcome = { readonly files: readonly string[] } & (
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly code: string; readonly message: string }
);

export interface ItemBatch {
  readonly task: string;
  /** The job's params, raw: the runner's thread parses them with the task's own schema. */
  readonly params: Params;
  readonly limits: TaskLimits;
  readonly items: readonly Item[];
  /** Stop after the first failed item (onItemError: fail); the outcomes end there. */
  readonly stopOnError: boolean;
  /** Ends the batch at once (its threads too): the chunk is released, not failed. */
  readonly signal?: AbortSignal;
  /** The worker is stopping: items see ctx.signal abort, and an item that fails after it releases the chunk. */
  readonly drain?: AbortSignal;
  readonly log: Logger;
  /** Stores an object an item put (ctx.put); resolves with its key in the output bucket. */
  put(name: string, body: Uint8Array): Promise<string>;
}

/**
 * Runs a task's items: one outcome per item, in order. A failed item is an outcome, never a
 * rejection; the promise rejects only when the signal aborts or the runner itself breaks.
 */
export interface ItemRunner {
  run(batch: ItemBatch): Promise<ItemOutcome[]>;
  /** Ends the runner's threads. */
  close(): Promise<void>;
}
