/** What the pipeline roles run against: ports, the op registry and a logger. */
import type { Logger } from "../log.js";
import type { OpRegistry } from "../ops/registry.js";
import type { BlobStore, ContinuationSender, FleetWaker, MainThreadGuard, TaskQueue, WakeSender } from "../ports.js";
import type { ItemRunner } from "./itemRunner.js";
import type { MapperHost } from "./mappers.js";
import type { Capacity } from "../report/prices.js";

export interface PipelineDeps {
  /** The output bucket: manifests, parts, results and statuses. */
  readonly output: BlobStore;
  /** The store that holds an input bucket's objects. */
  inputStore(bucket: string): BlobStore;
  readonly registry: OpRegistry;
  readonly log: Logger;
  /** Runs the items of task jobs (defineTask); roles that map chunks have one. */
  readonly items?: ItemRunner;
  /**
   * Runs ops' mappers off the main thread, under a time limit (the fleet's worker), all but a
   * built-in op's small uncompressed readings (laneMapper.ts); unset: in process.
   */
  readonly mappers?: MapperHost;
  /** Ends the process when op code on the main thread runs past its task's limit (the fleet's worker); unset: unguarded. */
  readonly guard?: MainThreadGuard;
  /** Where a reduce task spills runs (the worker's local disk); default: the output store. */
  readonly scratch?: BlobStore;
  /** Bytes a reduce task holds before it spills (default DEFAULTS.reduceSpillBytes). */
  readonly spillBytes?: number;
  /** The fleet's instance type, for the dollars of a job's report (unset: none counted). */
  readonly instanceType?: string;
  /** How the fleet's instances are bought, for the same dollars (default on demand). */
  readonly capacity?: Capacity;
  /** Clock (ms since epoch); tests move it. */
  readonly now?: () => number;
}

/** What a role needs to choose a job's lane: the spot lane's queue, when the stack has one. */
export interface Lanes {
  /** The spot lane's task queue (a stack with `spot: "per-job"`); unset: one lane, `queue`. */
  readonly spotQueue?: TaskQueue;
}

export interface SplitDeps extends PipelineDeps, Lanes {
  /** The task queue: the on-demand lane's, when the stack has two (lanes.ts). */
  readonly queue: TaskQueue;
  /** Woken when tasks are enqueued (unset: the fleet scales on its backlog alone). */
  readonly fleet?: FleetWaker;
  /** Sends the reducer's delayed wake-ups (wake.ts); unset: none (a caller that polls instead). */
  readonly wake?: WakeSender;
  /** Hands a listing out of time on to a later invocation (listing.ts); unset: a listing runs to its end. */
  readonly continuations?: ContinuationSender;
  /** How long a queued merge or reduce task is left to its worker before it is queued again (default TASK_LEASE_MS). */
  readonly taskLeaseMs?: number;
  /** The workers' task time limit for jobs that set none (the stack's `taskTimeout`; default DEFAULTS.taskTimeoutSeconds). */
  readonly taskTimeoutSeconds?: number;
  /** Inputs a manifest lists itself, and per piece of a longer list (default INPUTS_PER_PIECE, manifestInputs.ts). */
  readonly inputsPerPiece?: number;
  /** Inputs a job may have (default DEFAULTS.maxInputs); tests lower it. */
  readonly maxInputs?: number;
  /**
   * The buckets a job may read inputs from (the stack's input bucket and extraInputBuckets);
   * unset: any. Others are refused, so that a spec cannot read cloudmill's own state, or
   * another job's, through the roles' grants on the output bucket.
   */
  readonly inputBuckets?: readonly string[];
}

export const nowOf = (deps: Pick<PipelineDeps, "now">): number => (deps.now ? deps.now() : Date.now());
