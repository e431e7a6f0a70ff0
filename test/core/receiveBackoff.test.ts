/**
 * A worker cut off from SQS backs off between its receives: from 1 s, doubling to 20 s, each
 * pause jittered down by at most half (so a fleet does not come back in step), and from 1 s
 * again once a receive gets through. On a fake clock: the pauses are the worker's own.
 */
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { TaskWorker } from "../../lib/aws/TaskWorker.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import type { QueueMessage, TaskQueue } from "../../lib/core/ports.js";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";
import { localPipeline } from "../helpers/jobs.js";

afterEach(() => void vi.useRealTimers());

describe("a worker whose receives fail", () => {
  it("pauses 1, 2, 4 … up to 20 s (each at least half that) with all its slots, and from 1 s again after one gets through", async () => {
    vi.useFakeTimers();
    const { deps } = localPipeline(path.join(os.tmpdir(), "cloudmill-receive-backoff"));
    /** When each receive was asked for (fake ms), and what it answered: failing 9 times, then once an empty poll, then failing. */
    const asked: { at: number; failed: boolean }[] = [];
    const queue: TaskQueue = Object.assign(Object.create(new MemoryTaskQueue()) as TaskQueue, {
      receive: async (): Promise<QueueMessage[]> => {
        const failed = asked.length !== 9;
        asked.push({ at: Date.now(), failed });
        if (failed) throw new CloudmillError(ErrorCode.ENVIRONMENT, "ReceiveMessage failed: connect ECONNREFUSED");
        return [];
      },
    });
    // Four slots: they share each poll, so they share each pause too.
    const worker = new TaskWorker({ queue, deps, concurrency: 4, visibilitySeconds: 30, heartbeatSeconds: 10, waitSeconds: 1 }).start();
    // 9 pauses of up to 1 + 2 + 4 + 8 + 16 + 20 + 20 + 20 + 20 s, then two more after the empty poll.
    await vi.advanceTimersByTimeAsync(140_000);
    await worker.stop(1000);
    expect(asked.length).toBeGreaterThanOrEqual(12);
    const pauses = asked.slice(1, 12).map((a, i) => a.at - asked[i]!.at);
    const most = [1, 2, 4, 8, 16, 20, 20, 20, 20].map((s) => s * 1000);
    // (A pause may run a millisecond or two over: the slots' shared poll starts on the next turn.)
    for (const [i, d] of most.entries()) {
      expect(pauses[i], `pause ${i + 1}`).toBeGreaterThanOrEqual(d / 2);
      expect(pauses[i], `pause ${i + 1}`).toBeLessThanOrEqual(d + 5);
    }
    // The empty poll got through: the next receive follows at once, and the pause after its failure is 1 s again.
    expect(pauses[9]).toBeLessThan(50);
    expect(pauses[10]).toBeGreaterThanOrEqual(500);
    expect(pauses[10]).toBeLessThanOrEqual(1005);
  });
});
