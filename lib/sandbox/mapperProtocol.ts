/** Messages between a mapper host and its mapper threads. */
import type { SerializedError } from "../core/errors.js";
import type { Params } from "../core/job/spec.js";
import type { RemoteMapContext } from "../core/pipeline/mappers.js";

export interface MapperThreadData {
  readonly opsModules: readonly string[];
}

export type MapperRequest =
  | { readonly kind: "open"; readonly op: string; readonly params: Params; readonly ctx: RemoteMapContext }
  | { readonly kind: "block"; readonly bytes: Uint8Array; readonly offset: number; readonly first: boolean }
  | { readonly kind: "finish" };

export type MapperReply =
  | { readonly kind: "ok" }
  | { readonly kind: "finished"; readonly partial: unknown; readonly skipped: number; readonly firstSkipped?: SerializedError }
  | { readonly kind: "error"; readonly error: SerializedError };
