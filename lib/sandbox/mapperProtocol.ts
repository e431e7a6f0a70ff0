/** Messages between a mapper host and its mapper threads. */
import type { SerializedError } from "../core/errors.js";
import type { Params } from "../core/job/spec.js";
import type { RemoteMapContext } from "../core/pipeline/mappers.js";
import type { MessagePort } from "node:worker_threads";
import type { MergedReading, SpanReadings } from "../core/pipeline/spans.js";

export interface MapperThreadData {
  readonly opsModules: readonly string[];
}

export type MapperRequest =
  | { readonly kind: "open"; readonly op: string; readonly params: Params; readonly ctx: RemoteMapContext }
  | { readonly kind: "block"; readonly bytes: Uint8Array; readonly offset: number; readonly first: boolean }
  | { readonly kind: "finish" }
  | { readonly kind: "mergeOpen"; readonly op: string; readonly params: Params; readonly twoWays: boolean }
  | { readonly kind: "mergeAdd"; readonly span: SpanReadings }
  | { readonly kind: "mergeFinish" }
  /** A reduce task's merge: `scratch` is the port its spilled runs go through (scratchPort.ts). */
  | {
      readonly kind: "reduceOpen";
      readonly op: string;
      readonly params: Params;
      readonly spillBytes: number;
      readonly prefix: string;
      readonly scratch: MessagePort;
    }
  | { readonly kind: "reduceRun"; readonly bytes: Uint8Array; readonly where: string }
  /** The next piece of rows (the merge runs on while a piece waits), or, at the end, what was written. */
  | { readonly kind: "reduceNext" }
  /** Whether the thread's modules define `op` with this digest (its registry's, as the caller holds it): answered by a value. */
  | { readonly kind: "knows"; readonly op: string; readonly digest: string }
  /** A job's partials folded in order, then finalized (partMerge.ts). */
  | { readonly kind: "foldOpen"; readonly op: string; readonly params: Params }
  | { readonly kind: "foldAdd"; readonly partial: unknown }
  | { readonly kind: "foldValue" }
  | {
      readonly kind: "finalize";
      readonly partial: unknown;
      readonly inputCount: number;
      readonly names: ReadonlyMap<number, string>;
    };

export type MapperReply =
  | { readonly kind: "ok" }
  | { readonly kind: "finished"; readonly partial: unknown; readonly skipped: number; readonly firstSkipped?: SerializedError }
  | { readonly kind: "merged"; readonly outside: MergedReading; readonly inside?: MergedReading }
  | { readonly kind: "rows"; readonly bytes: Uint8Array }
  | { readonly kind: "value"; readonly value: unknown }
  | { readonly kind: "reduced"; readonly records: number; readonly spilledBytes: number }
  | { readonly kind: "error"; readonly error: SerializedError };
