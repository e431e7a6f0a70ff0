/**
 * The two ports every role is written against. Each has a local adapter and an AWS
 * adapter, and all adapters of a port pass one contract suite (test/contract/).
 */

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
}

export interface PutOptions {
  readonly contentType?: string;
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
   */
  get(key: string, options?: GetOptions): Promise<AsyncIterable<Uint8Array>>;
  /** Writes a whole object atomically: readers see the old bytes or the new, never a mix. */
  put(key: string, body: Uint8Array | string, options?: PutOptions): Promise<void>;
  /** Every object whose key starts with prefix, in ascending key order (UTF-8 byte order). */
  list(prefix: string): AsyncIterable<BlobInfo>;
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
  /** Sends any number of messages (in batches of ten). Rejects if any could not be sent. */
  sendBatch(bodies: readonly string[], options?: { signal?: AbortSignal }): Promise<void>;
  receive(options?: ReceiveOptions): Promise<QueueMessage[]>;
  delete(receiptHandle: string): Promise<void>;
  changeVisibility(receiptHandle: string, seconds: number): Promise<void>;
  /** Approximate counts, for progress and autoscaling views. */
  depth(): Promise<{ readonly visible: number; readonly inFlight: number }>;
}
