/** Messages between an item runner and its item thread. */
import type { Params } from "../core/job/spec.js";
import type { LogFields } from "../core/log.js";

export interface ItemThreadData {
  /** The op modules the process loaded: the thread loads the same ones to find the task. */
  readonly opsModules: readonly string[];
  /** Where the thread makes its items' scratch directories: the runner removes it when the thread ends, however it ends. */
  readonly scratchRoot: string;
}

export type ToThread =
  /** Items to run one after another; the thread reports each one's start and end. */
  | {
      readonly kind: "items";
      readonly task: string;
      readonly params: Params;
      /** The position of the first of these items in the runner's batch: what `start` and `done` report. */
      readonly base: number;
      readonly items: readonly { readonly offset: number; readonly value: unknown }[];
    }
  | { readonly kind: "put-done"; readonly id: number; readonly key: string }
  | { readonly kind: "put-failed"; readonly id: number; readonly code: string; readonly message: string }
  /** The worker is stopping: the item's ctx.signal aborts. */
  | { readonly kind: "abort"; readonly reason: string };

export type FromThread =
  /** Item `index` of the last batch started: its time starts now. */
  | { readonly kind: "start"; readonly index: number }
  | { readonly kind: "done"; readonly index: number; readonly ok: true; readonly value: unknown }
  | { readonly kind: "done"; readonly index: number; readonly ok: false; readonly code: string; readonly message: string }
  | { readonly kind: "put"; readonly id: number; readonly name: string; readonly body: Uint8Array }
  | { readonly kind: "log"; readonly level: "info" | "warn" | "error"; readonly message: string; readonly fields?: LogFields };
