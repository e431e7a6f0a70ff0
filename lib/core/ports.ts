/**
 * The two ports every role is written against. Each has a local adapter and an AWS
 * adapter, and all adapters of a port pass one contract suite (test/contract/).
 */
import type { Preference } from "./job/spec.js";

/** What a store knows of an object without reading it. */
export interface BlobInfo {
  readonly key: string;
  readonly size: number;
  /** Opaque version tag (S3 ETag, quotes included; a stat digest for files). */
  readonly etag: string;
}

export interface GetOptions {
  /** First byte to read (inclusive). Default 0. */
  readonly start?: number;
  /** One past the last byte to read (exclusive). Default: the object's end. */
  readonly end?: number;
  /** Read only if the object still has this ETag; otherwise fail with INPUT_CHANGED. */
  readonly etag?: string;
  readonly signal?: AbortSignal;
  /**
   * The caller is done with each chunk once it asks for the next one, so a store may read
   * the next chunks into the same memory (fewer large allocations: less GC). Default false:
   * every chunk is the caller's to keep.
   */
  readonly reuseBuffers?: boolean;
}

export interface ListOptions {
  /** List only keys after this one (S3's StartAfter): a listing resumed where an earlier one stopped. */
  readonly startAfter?: string;
}

export interface PutOptions {
  readonly contentType?: string;
  /** At most this many bytes, for a streamed body whose length is not known ahead: a scratch store picks where it fits. */
  readonly sizeAtMost?: number;
}

/**
 * Objects in one bucket (or one directory). Keys are `/`-separated, never start with `/`.
 * Errors: a missing object is a CloudmillError INPUT_NOT_FOUND; an ETag mismatch is INPUT_CHANGED.
 */
export interface BlobStore {
  /** Bucket name or root directory, for messages. */
  readonly name: string;
  /** Size and ETag, or undefined when there is no such object. */
  head(key: string): Promise<BlobInfo | undefined>;
  /**
   * Streams bytes [start, end) of an object. The promise settles once the object is known
   * to exist (and match the ETag); the stream then yields the bytes in order.
   * An empty range yields nothing and makes no request.
   *
   * Ranges past the end are clamped, never an error (as S3 clamps): [size-2, size+100) yields
   * the last 2 bytes, and a range starting at or after the end yields nothing (once the object
   * is known to exist and match). So a reader may over-read past a chunk's end freely.
   * A malformed range (negative, fractional, end < start) is a bug: CloudmillError INTERNAL.
   * The stream may still fail with INPUT_CHANGED if the object changes while it is read.
   * Read it to the end or break out of the loop: either releases the file or socket.
   */
  get(key: string, options?: GetOptions): Promise<AsyncIterable<Uint8Array>>;
  /**
   * Writes a whole object atomically: readers see the old bytes or the new, never a mix.
   * A string is written as UTF-8; a stream of pieces is written as it comes, in bounded memory
   * (a reduce task's output), and nothing is left if it fails. Every put gives the object a new ETag.
   */
  put(key: string, body: Uint8Array | string | AsyncIterable<Uint8Array>, options?: PutOptions): Promise<void>;
  /** Every object whose key starts with prefix (and comes after `startAfter`), in ascending key order (UTF-8 byte order). */
  list(prefix: string, options?: ListOptions): AsyncIterable<BlobInfo>;
  /** Removes an object; removing a missing object is not an error. */
  delete(key: string): Promise<void>;
}

export interface QueueMessage {
  readonly id: string;
  readonly body: string;
  /** Handle for delete / changeVisibility of this receipt. */
  readonly receiptHandle: string;
  /** How many times the message has been received, this time included (1 on first delivery). */
  readonly receiveCount: number;
}

export interface ReceiveOptions {
  /** 1 to 10. Default 1. */
  readonly maxMessages?: number;
  /** Long poll: wait up to this long for a message. Default 0. */
  readonly waitSeconds?: number;
  /** Override the queue's visibility timeout for these messages. */
  readonly visibilitySeconds?: number;
  readonly signal?: AbortSignal;
}

/**
 * An at-least-once queue with SQS semantics: a received message is invisible for the
 * visibility timeout, then delivered again unless deleted; each delivery counts, and
 * a message received more than the queue's maxReceiveCount goes to its dead-letter queue.
 */
export interface TaskQueue {
  /**
   * Sends any number of messages (in batches of ten). Rejects if any could not be sent, with
   * one line saying how many and why; the others are sent. Bodies must be what SQS accepts
   * (XML-safe characters, ≤ 1 MiB); the in-process queue refuses the same ones.
   */
  sendBatch(bodies: readonly string[], options?: { signal?: AbortSignal }): Promise<void>;
  /**
   * Up to maxMessages visible messages, each now in flight for the visibility timeout.
   * Resolves to [] when the wait ends empty or options.signal aborts (never rejects for that).
   * Options outside SQS's limits (maxMessages 1–10, waitSeconds 0–20) are CloudmillError INTERNAL.
   */
  receive(options?: ReceiveOptions): Promise<QueueMessage[]>;
  /** Deletes the message of this receipt. A stale or unknown handle deletes nothing and does not fail. */
  delete(receiptHandle: string): Promise<void>;
  /**
   * Sets how long the message stays in flight from now (0: visible again at once); a heartbeat
   * calls this to keep a long task hidden. Fails with CloudmillError ENVIRONMENT ("not in
   * flight") if the handle is stale: the message timed out and may be another worker's now.
   */
  changeVisibility(receiptHandle: string, seconds: number): Promise<void>;
  /** Approximate counts, for progress and autoscaling views. */
  depth(): Promise<{ readonly visible: number; readonly inFlight: number }>;
}

/** The worker fleet as the splitter sees it: woken the moment work arrives, not when a metric says so. */
export interface FleetWaker {
  /**
   * Asks for workers at once if none are running or starting: enough for `tasks` tasks, within
   * the fleet's maximum, or (a job that prefers `cheapest`) one. Resolves to how many it asked
   * for (0: the fleet was awake already).
   */
  wake(tasks: number, prefer?: Preference): Promise<number>;
}

/** Op code on a worker's main thread, run under a time limit (pipeline/opGuard.ts; lib/sandbox/MainThreadWatchdog.ts). */
/** One task's calls into op code on the main thread. */
export interface GuardedTask {
  /** Runs `fn`, a synchronous call into op code, under the task's time limit. */
  run<T>(fn: () => T): T;
  /** The task makes no more such calls. */
  close(): void;
}

export interface MainThreadGuard {
  /** A task about to call op code on the main thread; `label` names it if the guard ends the worker. */
  task(label: string, limitSeconds?: number): GuardedTask;
}

/** Sends a job's wake-up, to arrive after a delay (SQS allows at most 15 minutes). */
/** One created object, as an S3 event names it (key already URL-decoded). */
export interface CreatedObject {
  readonly bucket: string;
  readonly key: string;
  /** ETag from the event (S3 sends it without quotes). */
  readonly etag?: string;
  readonly versionId?: string;
  /**
   * The event's sequencer: the same for an event delivered twice, another for each write of the
   * key (in an unversioned bucket, content A, then B, then A again has A's ETag twice).
   */
  readonly sequencer?: string;
  /** When S3 created it (the event's time). */
  readonly eventTime?: string;
}

/** A splitter's listing handed on to a later invocation (listing.ts): the job, its last stored piece, and what started it. */
export interface ListingContinuation {
  readonly jobId: string;
  readonly seq: number;
  /** The piece the handing invocation went on from (0: it began the listing). */
  readonly from: number;
  /** The job spec's object, as its S3 event named it (key decoded). */
  readonly object: CreatedObject;
}

/** Starts the splitter again, later, on a listing it handed on (at least once: a copy goes on from the store). */
export interface ContinuationSender {
  handOn(continuation: ListingContinuation): Promise<void>;
}

export interface WakeSender {
  wakeAfter(jobId: string, seconds: number, due: number): Promise<void>;
}

/**
 * Tells the reducer which parts a worker wrote (or found written): its queue's messages, sent
 * in batches, in place of an S3 event per part (partNotices.ts).
 */
export interface PartNotifier {
  /** Resolves once a message naming the keys is on the reducer's queue. */
  written(keys: readonly string[]): Promise<void>;
}
