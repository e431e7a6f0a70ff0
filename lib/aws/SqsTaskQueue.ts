import {
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
} from "@aws-sdk/client-sqs";
import type { SQSClient, SendMessageBatchRequestEntry } from "@aws-sdk/client-sqs";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import type { QueueMessage, ReceiveOptions, TaskQueue } from "../core/ports.js";
import { sendBatches, validateReceive, validateVisibility } from "../core/queueLimits.js";
import { backoffMs, sleep, type Backoff } from "../core/sleep.js";

export interface SqsTaskQueueOptions {
  /** SendMessageBatch requests in flight at once. Default 8. */
  readonly sendConcurrency?: number;
  /** Further attempts for entries SQS could not take (on top of the SDK's own retries). Default 5. */
  readonly maxSendRetries?: number;
  /**
   * How long a delete waits for others to share its DeleteMessageBatch. Default DELETE_WINDOW_MS;
   * a caller that does not wait on its deletes (the worker's loop) can afford a longer one.
   */
  readonly deleteWindowMs?: number;
}

const SEND_BACKOFF: Backoff = { baseMs: 50, factor: 2, capMs: 2_000, jitter: "full" };

/**
 * How long a delete waits for others to share its DeleteMessageBatch (up to 10): a worker's
 * slots and the reducer's batch finish within a few milliseconds of each other, and a message
 * deleted 5 ms later costs nothing.
 */
const DELETE_WINDOW_MS = 5;
const DELETES_PER_BATCH = 10;

interface PendingDelete {
  readonly receiptHandle: string;
  resolve(): void;
  reject(err: unknown): void;
}

/** Why some entries of a batch were not sent: the reason, and whether trying again may help. */
interface Failure {
  readonly reason: string;
  readonly retryable: boolean;
}

/** A TaskQueue over one SQS queue. Take the URL from CreateQueue / GetQueueUrl, never build it. */
export class SqsTaskQueue implements TaskQueue {
  readonly name: string;
  private readonly sendConcurrency: number;
  private readonly maxSendRetries: number;
  readonly #deleteWindowMs: number;
  #deletes: PendingDelete[] = [];
  #deleteTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
    options: SqsTaskQueueOptions = {},
  ) {
    this.name = queueUrl.slice(queueUrl.lastIndexOf("/") + 1) || queueUrl;
    this.sendConcurrency = Math.max(1, options.sendConcurrency ?? 8);
    this.maxSendRetries = Math.max(0, options.maxSendRetries ?? 5);
    this.#deleteWindowMs = Math.max(0, options.deleteWindowMs ?? DELETE_WINDOW_MS);
  }

  async sendBatch(bodies: readonly string[], options: { signal?: AbortSignal } = {}): Promise<void> {
    // A batch is at most 10 messages and at most 1 MiB in all (a packed chunk's message may be 100 KiB).
    const batches = sendBatches(bodies);
    let next = 0;
    let unsent = 0;
    let firstReason: string | undefined;
    const lane = async (): Promise<void> => {
      while (next < batches.length) {
        const batch = batches[next++]!;
        const failure = await this.sendOne(batch, options.signal);
        if (failure) {
          unsent += failure.count;
          firstReason ??= failure.reason;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.sendConcurrency, batches.length) }, lane));
    if (unsent > 0) {
      throw new CloudmillError(
        ErrorCode.ENVIRONMENT,
        `could not send ${unsent} of ${bodies.length} messages to SQS queue ${this.name}: ${firstReason}`,
      );
    }
  }

  async receive(options: ReceiveOptions = {}): Promise<QueueMessage[]> {
    const { maxMessages, waitSeconds } = validateReceive(options, 0);
    if (options.signal?.aborted) return [];
    try {
      const res = await this.client.send(
        new ReceiveMessageCommand({
          QueueUrl: this.queueUrl,
          MaxNumberOfMessages: maxMessages,
          WaitTimeSeconds: waitSeconds,
          VisibilityTimeout: options.visibilitySeconds,
          MessageSystemAttributeNames: ["ApproximateReceiveCount"],
        }),
        { abortSignal: options.signal },
      );
      return (res.Messages ?? []).map((m) => ({
        id: m.MessageId ?? "",
        body: m.Body ?? "",
        receiptHandle: m.ReceiptHandle ?? "",
        receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1),
      }));
    } catch (err) {
      // Stopping a long poll is how a worker shuts down: not an error.
      if (options.signal?.aborted) return [];
      throw this.awsError("ReceiveMessage", err);
    }
  }

  /** Resolves once SQS has deleted the message, sent with the deletes made within the delete window of it. */
  delete(receiptHandle: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#deletes.push({ receiptHandle, resolve, reject });
      if (this.#deletes.length >= DELETES_PER_BATCH) this.#flushDeletes();
      else this.#deleteTimer ??= setTimeout(() => this.#flushDeletes(), this.#deleteWindowMs);
    });
  }

  #flushDeletes(): void {
    clearTimeout(this.#deleteTimer);
    this.#deleteTimer = undefined;
    while (this.#deletes.length > 0) void this.#deleteBatch(this.#deletes.splice(0, DELETES_PER_BATCH));
  }

  async #deleteBatch(batch: readonly PendingDelete[]): Promise<void> {
    if (batch.length === 1) {
      const [one] = batch;
      try {
        await this.client.send(new DeleteMessageCommand({ QueueUrl: this.queueUrl, ReceiptHandle: one!.receiptHandle }));
        one!.resolve();
      } catch (err) {
        // As the in-process queue: an unknown handle deletes nothing (SQS already ignores stale ones).
        if (errName(err) === "ReceiptHandleIsInvalid") one!.resolve();
        else one!.reject(this.awsError("DeleteMessage", err));
      }
      return;
    }
    try {
      const res = await this.client.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.queueUrl,
          Entries: batch.map((d, i) => ({ Id: String(i), ReceiptHandle: d.receiptHandle })),
        }),
      );
      const failed = new Map((res.Failed ?? []).map((f) => [f.Id, f]));
      const done = new Set((res.Successful ?? []).map((s) => s.Id));
      for (const [i, d] of batch.entries()) {
        const f = failed.get(String(i));
        // An entry the answer names neither way is not known to be deleted (as sendBatch treats one).
        const why = f ? (f.Code ?? "error") : done.has(String(i)) ? undefined : "no answer for it";
        if (why === undefined || why === "ReceiptHandleIsInvalid") d.resolve();
        else
          d.reject(new CloudmillError(ErrorCode.ENVIRONMENT, `DeleteMessageBatch on SQS queue ${this.name} failed for a message: ${why}`));
      }
    } catch (err) {
      const error = this.awsError("DeleteMessageBatch", err);
      for (const d of batch) d.reject(error);
    }
  }

  async changeVisibility(receiptHandle: string, seconds: number): Promise<void> {
    validateVisibility(seconds);
    try {
      await this.client.send(
        new ChangeMessageVisibilityCommand({ QueueUrl: this.queueUrl, ReceiptHandle: receiptHandle, VisibilityTimeout: seconds }),
      );
    } catch (err) {
      const n = errName(err);
      // Real SQS reports a stale handle as InvalidParameterValue naming the ReceiptHandle.
      const stale =
        n === "MessageNotInflight" ||
        n === "ReceiptHandleIsInvalid" ||
        (n === "InvalidParameterValue" && err instanceof Error && /ReceiptHandle/i.test(err.message));
      if (stale) {
        throw new CloudmillError(
          ErrorCode.ENVIRONMENT,
          `cannot change visibility on ${this.name}: message not in flight (receipt handle stale or unknown; SQS: ${n})`,
          {},
          { cause: err },
        );
      }
      throw this.awsError("ChangeMessageVisibility", err);
    }
  }

  async depth(): Promise<{ readonly visible: number; readonly inFlight: number }> {
    try {
      const res = await this.client.send(
        new GetQueueAttributesCommand({
          QueueUrl: this.queueUrl,
          AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        }),
      );
      return {
        visible: Number(res.Attributes?.ApproximateNumberOfMessages ?? 0),
        inFlight: Number(res.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0),
      };
    } catch (err) {
      throw this.awsError("GetQueueAttributes", err);
    }
  }

  /** Sends one batch of ≤ 10, retrying only the entries that failed. Resolves to what stayed unsent. */
  private async sendOne(
    bodies: readonly string[],
    signal: AbortSignal | undefined,
  ): Promise<{ count: number; reason: string } | undefined> {
    let pending: SendMessageBatchRequestEntry[] = bodies.map((body, i) => ({ Id: String(i), MessageBody: body }));
    let failure: Failure | undefined;
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      try {
        const res = await this.client.send(new SendMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: pending }), {
          abortSignal: signal,
        });
        const failed = new Map((res.Failed ?? []).map((f) => [f.Id, f]));
        // An entry in neither list was not acknowledged: treat it as failed, to be safe.
        const ok = new Set((res.Successful ?? []).map((s) => s.Id));
        pending = pending.filter((e) => failed.has(e.Id) || !ok.has(e.Id));
        if (pending.length === 0) return undefined;
        const first = failed.get(pending[0]!.Id);
        failure = {
          reason: first ? `${first.Code ?? "error"}${first.Message ? `: ${first.Message}` : ""}` : "not acknowledged",
          // A sender fault (bad body, too large) fails the same way every time.
          retryable: pending.every((e) => failed.get(e.Id)?.SenderFault !== true),
        };
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        failure = { reason: this.awsError("SendMessageBatch", err).message, retryable: isTransient(err) };
      }
      if (!failure.retryable || attempt >= this.maxSendRetries) {
        return { count: pending.length, reason: `${failure.reason} (${attempt + 1} attempt${attempt ? "s" : ""})` };
      }
      await sleep(backoffMs(SEND_BACKOFF, attempt), signal);
    }
  }

  private awsError(op: string, err: unknown): CloudmillError {
    const detail = err instanceof Error && err.message && err.message !== errName(err) ? `: ${err.message}` : "";
    return new CloudmillError(
      ErrorCode.ENVIRONMENT,
      `${op} on SQS queue ${this.name} failed: ${errName(err)}${detail}`.replace(/\s*\n\s*/g, " "),
      {},
      { cause: err },
    );
  }
}

/** The SQS error code; errors not in the model arrive named with their query-protocol code. */
const errName = (err: unknown): string => (err instanceof Error ? err.name.replace(/^AWS\.SimpleQueueService\./, "") : String(err));

/** Worth another try after the SDK's own retries: server faults, throttling, broken connections. */
const isTransient = (err: unknown): boolean => {
  const e = err as { $fault?: string; $retryable?: unknown } | undefined;
  if (e?.$retryable) return true;
  return e?.$fault !== "client";
};
