/**
 * Lambda's SQS event source, as the dev cloud plays it: a poller that gathers a batch of
 * messages and hands it to a Lambda-style handler, deleting what the handler did not report
 * as failed.
 */
import type { SqsBatchResponse } from "../aws/events.js";
import { toCloudmillError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import type { TaskQueue } from "../core/ports.js";
import { sleep } from "../core/sleep.js";

/** How many messages a handler takes at most, gathered over how long once the first has come. */
export interface EventSourceBatch {
  readonly size: number;
  readonly windowMs: number;
  /** How long a receive waits for a first message (a seldom-used queue's longer poll costs fewer requests). Default 1 s. */
  readonly waitSeconds?: number;
}

/**
 * How Lambda's SQS event sources batch, as the stack configures them: the reducer takes up to
 * 100 messages gathered over a window (DEFAULTS.reducerBatchWindowSeconds in the stack, 1 s here
 * unless the dev cloud is told otherwise), the dead-letter function 10.
 */
export const REDUCER_BATCH: EventSourceBatch = { size: 100, windowMs: 1000 };
export const DEAD_LETTER_BATCH: EventSourceBatch = { size: 10, windowMs: 0 };

/** SQS's most messages per ReceiveMessage. */
const MAX_PER_RECEIVE = 10;

/** Polls a queue and hands batches to a Lambda-style SQS handler, deleting what succeeded, until `signal` aborts. */
export const pollIntoHandler = async (
  queue: TaskQueue,
  handler: (event: unknown) => Promise<SqsBatchResponse>,
  signal: AbortSignal,
  log: Logger,
  batch: EventSourceBatch,
): Promise<void> => {
  while (!signal.aborted) {
    try {
      const messages = await queue.receive({
        maxMessages: Math.min(MAX_PER_RECEIVE, batch.size),
        waitSeconds: batch.waitSeconds ?? 1,
        signal,
      });
      if (messages.length === 0) continue;
      // Gather more until the batch is full or its window closes, as Lambda's poller does: what
      // the window brought is taken at its end, ten a receive, rather than a receive every
      // 100 ms for the one or two that arrived since (a receive per four part events).
      if (batch.windowMs > 0 && messages.length < batch.size) {
        await sleep(batch.windowMs, signal).catch(() => undefined);
        while (messages.length < batch.size && !signal.aborted) {
          const ask = Math.min(MAX_PER_RECEIVE, batch.size - messages.length);
          const more = await queue.receive({ maxMessages: ask, waitSeconds: 0, signal });
          messages.push(...more);
          // A short answer: the queue has no more now; later ones go in the next batch.
          if (more.length < ask) break;
        }
      }
      const event = {
        Records: messages.map((m) => ({
          messageId: m.id,
          receiptHandle: m.receiptHandle,
          body: m.body,
          attributes: { ApproximateReceiveCount: String(m.receiveCount) },
        })),
      };
      const { batchItemFailures } = await handler(event);
      const failed = new Set(batchItemFailures.map((f) => f.itemIdentifier));
      await Promise.all(messages.filter((m) => !failed.has(m.id)).map((m) => queue.delete(m.receiptHandle)));
    } catch (err) {
      if (signal.aborted) break;
      log.error("handler poll failed", { error: toCloudmillError(err).message });
      await sleep(500, signal).catch(() => undefined);
    }
  }
};
