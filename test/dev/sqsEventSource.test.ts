/**
 * The dev cloud's Lambda SQS event source: a batch is gathered over its window and taken at the
 * window's end, ten messages a receive, not polled for every 100 ms (a receive per four part
 * events in the tasks/s bench); a batch without a window goes to its handler at once.
 */
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../lib/core/log.js";
import type { ReceiveOptions } from "../../lib/core/ports.js";
import { pollIntoHandler } from "../../lib/dev/sqsEventSource.js";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";

/** A queue that counts its receives. */
class CountingQueue extends MemoryTaskQueue {
  receives = 0;
  override receive(options?: ReceiveOptions) {
    this.receives++;
    return super.receive(options);
  }
}

const bodies = (from: number, n: number): string[] => Array.from({ length: n }, (_, i) => `m${from + i}`);

/** Runs the poller until its handler's first call, which it returns with the receives made. */
const firstBatch = async (queue: CountingQueue, batch: { size: number; windowMs: number }) => {
  const stop = new AbortController();
  let seen: string[] = [];
  const polling = pollIntoHandler(
    queue,
    async (event) => {
      seen = (event as { Records: { body: string }[] }).Records.map((r) => r.body);
      stop.abort();
      return { batchItemFailures: [] };
    },
    stop.signal,
    silentLogger,
    batch,
  );
  return { polling, done: () => ({ seen, receives: queue.receives }) };
};

describe("the dev cloud's SQS event source", () => {
  it("takes what its window gathered at the window's end, ten a receive", async () => {
    const queue = new CountingQueue();
    await queue.sendBatch(bodies(0, 5));
    // A window far longer than the sends take (some 200 ms), so that a busy machine still sends them all inside it.
    const { polling, done } = await firstBatch(queue, { size: 100, windowMs: 1_500 });
    // 40 more arrive over the window, five every 25 ms.
    for (let i = 0; i < 8; i++) {
      await new Promise((r) => setTimeout(r, 25));
      await queue.sendBatch(bodies(5 + i * 5, 5));
    }
    await polling;
    const { seen, receives } = done();
    expect(seen).toEqual(bodies(0, 45));
    // The first, four full ones at the window's end, and the short one that ends the batch.
    expect(receives).toBe(6);
    // Handled: deleted.
    expect(await queue.receive({ maxMessages: 10, waitSeconds: 0 })).toEqual([]);
  });

  it("hands a batch without a window to its handler at once", async () => {
    const queue = new CountingQueue();
    await queue.sendBatch(bodies(0, 3));
    const { polling, done } = await firstBatch(queue, { size: 10, windowMs: 0 });
    await polling;
    expect(done()).toEqual({ seen: bodies(0, 3), receives: 1 });
  });
});
