/**
 * Where an op's mapper runs. In process by default; a worker process hands it to a mapper host
 * (lib/sandbox/ThreadMapperHost.ts) that runs it on a thread of its own, so that a lab's op that
 * never returns is ended at the chunk's time limit (TASK_TIMEOUT) while the worker's own loop,
 * its heartbeats and its reads stay on the main thread, and one that allocates without bound
 * fails its chunk with OUT_OF_MEMORY instead of taking the worker down. A built-in op's small
 * uncompressed chunk maps on the main thread all the same (laneMapper.ts).
 */
import { CloudmillError, ErrorCode, type SerializedError } from "../errors.js";
import type { Format, OnBadRecord, Params } from "../job/spec.js";
import type { RecordBlock } from "../records/alignedBlocks.js";
import type { MergedReading, SpanReadings } from "./spans.js";
import type { BlobStore } from "../ports.js";
import type { RowsWritten } from "../shuffle/keyedRows.js";

/** What a mapper on another thread needs to know of its chunk. */
export interface RemoteMapContext {
  readonly inputIndex: number;
  readonly inputName: string;
  readonly format: Format;
  readonly header?: readonly string[];
  readonly onBadRecord: OnBadRecord;
}

/** A task's work for another thread: the op, and the task's limits there. */
export interface RemoteRequest {
  readonly op: string;
  /** The job's params, raw: parsed again by the op on its thread. */
  readonly params: Params;
  readonly signal?: AbortSignal;
  /** The job's own time limit for the task; default the host's. */
  readonly timeoutSeconds?: number;
  /** The job's own heap limit for the task, in MiB; default the host's. */
  readonly memoryMiB?: number;
}

export interface RemoteMapperRequest extends RemoteRequest {
  readonly ctx: RemoteMapContext;
}

export interface RemoteMapped {
  readonly partial: unknown;
  readonly skipped: number;
  readonly firstSkipped?: SerializedError;
}

/** One chunk's mapper on another thread: blocks go in one at a time, the partial comes back. */
export interface RemoteMapper {
  /** Aborted when the chunk is past its time or heap limit (TASK_TIMEOUT, OUT_OF_MEMORY) or stopped: the chunk's reads end too. */
  readonly signal: AbortSignal;
  /** Rejects with the op's error (a bad record under onBadRecord: fail), or TASK_TIMEOUT. */
  block(block: RecordBlock): Promise<void>;
  finish(): Promise<RemoteMapped>;
  /** Gives the thread back (or ends it, if the chunk did not finish). */
  close(): void;
}

/** A keyed reduce task's merge of a lab op's runs, on another thread (reduceTask.ts). */
export interface RemoteReduceRequest extends RemoteRequest {
  /** Names the task in its errors ("partition 3's reduce task of job …"). */
  readonly what: string;
  /** Bytes of pairs held before they are spilled to scratch, and the prefix of the spilled runs. */
  readonly spillBytes: number;
  readonly prefix: string;
}

/** One reduce task's merge on another thread: runs go in one at a time, in order; the rows come out. */
export interface RemoteReducer {
  /** Aborted when the task is past its time or heap limit (TASK_TIMEOUT, OUT_OF_MEMORY) or stopped. */
  readonly signal: AbortSignal;
  /** Adds one run's `[key, value]` lines; rejects with the op's error, or TASK_TIMEOUT / OUT_OF_MEMORY. */
  addRun(bytes: Uint8Array, where: string): Promise<void>;
  /** Merges to the end, handing `piece` the rows a MiB or so at a time, in key order. */
  finish(piece: (bytes: Buffer) => Promise<void>): Promise<RowsWritten>;
  /** Gives the thread back (or ends it, if the merge did not finish); removes the spilled runs it left. */
  close(): Promise<void>;
}

/** A lab op's partials folded and finalized on another thread: the reducer's calls into its code (partMerge.ts). */
export interface RemoteFoldRequest extends RemoteRequest {
  /** Names the job in its errors ("job x's finalize did not finish …"). */
  readonly what: string;
}

/**
 * One job's fold on another thread. Each call, not the fold, has the time limit: a fold waits
 * between parts while the job maps (the local engine merges as chunks finish).
 */
export interface RemoteFolder {
  /** Rejects with the op's error, or TASK_TIMEOUT / OUT_OF_MEMORY (the thread is then ended). */
  add(partial: unknown): Promise<void>;
  value(): Promise<unknown>;
  /** The op's result of the folded partial; `names` are the inputs' names its finalize may ask for. */
  finalize(partial: unknown, inputCount: number, names: ReadonlyMap<number, string>): Promise<unknown>;
  /** Gives the thread back. */
  close(): void;
}

/** A merge task's merge of a lab op's spans, on another thread. */
export interface RemoteMergeRequest extends RemoteRequest {
  /** Merge both ways: as if the byte before the first span were outside quotes, and as if inside. */
  readonly twoWays: boolean;
}

export interface RemoteMerged {
  readonly outside: MergedReading;
  readonly inside?: MergedReading;
}

/** One merge task's merge on another thread: spans go in one at a time, in order; the readings come back. */
export interface RemoteMerger {
  /** Aborted when the task is past its time or heap limit (TASK_TIMEOUT, OUT_OF_MEMORY) or stopped. */
  readonly signal: AbortSignal;
  /** Rejects with the op's error, or TASK_TIMEOUT / OUT_OF_MEMORY. */
  add(span: SpanReadings): Promise<void>;
  finish(): Promise<RemoteMerged>;
  /** Gives the thread back (or ends it, if the merge did not finish). */
  close(): void;
}

export interface MapperHost {
  /** A chunk's time limit when its job sets none, in seconds. */
  readonly taskTimeoutSeconds: number;
  open(request: RemoteMapperRequest): RemoteMapper;
  /** A lab op's merges, under the same limits as its mappers: a merge that never returns or grows without bound fails its task alone. */
  merge(request: RemoteMergeRequest): RemoteMerger;
  /** A lab keyed op's reduce, under the same limits, spilling through `scratch` (which stays on this thread). */
  reduce(request: RemoteReduceRequest, scratch: BlobStore): RemoteReducer;
  /** A lab op's fold and finalize for the reducer, each call under the time and heap limits. */
  fold(request: RemoteFoldRequest): RemoteFolder;
  close(): Promise<void>;
}

/** The error of a task past its time limit: a chunk's, or `what` else. */
export const taskTimeoutError = (seconds: number, what = "the chunk"): CloudmillError =>
  new CloudmillError(ErrorCode.TASK_TIMEOUT, `${what} did not finish within ${seconds} s (taskTimeoutSeconds)`);
