import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import type { TestContext } from "vitest";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import type { QueueMessage, TaskQueue } from "../../lib/core/ports.js";

export interface MakeQueueOptions {
  readonly visibilitySeconds: number;
  /** With it, the queue redrives to `deadLetter` after this many receives. */
  readonly maxReceiveCount?: number;
}

export type MakeTaskQueue = (
  options: MakeQueueOptions,
) => Promise<{ queue: TaskQueue; deadLetter: TaskQueue; cleanup?: () => Promise<void> }>;

/** Receives until `n` messages have arrived or `ms` have passed (a limit to give up at, not a bound), deleting none. */
const receiveAtLeast = async (queue: TaskQueue, n: number, ms = 30_000): Promise<QueueMessage[]> => {
  const got: QueueMessage[] = [];
  const until = Date.now() + ms;
  while (got.length < n && Date.now() < until) {
    got.push(...(await queue.receive({ maxMessages: 10, waitSeconds: 1 })));
  }
  return got;
};

/** Sleeps until about time t (ms since the epoch); callers leave margins far above a timer's jitter. */
const sleepUntil = (t: number): Promise<void> => sleep(Math.max(0, t - Date.now()) + 2);

/**
 * The longest long poll SQS allows. A test that says a long poll ended early (on a message,
 * a timeout or an abort) asserts it ended well within this, never within a narrow window:
 * the machine may be loaded, and a poll that waited its full time would take all of it.
 */
const LONG_POLL = 20;
const WELL_WITHIN_LONG_POLL_MS = (LONG_POLL * 1000) / 2;

/**
 * The TaskQueue contract (lib/ports.ts): SQS semantics that every adapter must show.
 * Each test gets its own queue, so the tests run concurrently (several wait on timeouts).
 * Visibility timeouts are checked from both sides without narrow windows: a message comes
 * back no earlier than its timeout allows (a lower bound on the clock, measured from before
 * the receive that hid it), and a check that it is still hidden is made with seconds to spare.
 */
export const describeTaskQueueContract = (name: string, makeQueue: MakeTaskQueue): void => {
  describe.concurrent(`TaskQueue contract: ${name}`, () => {
    // Cleanup is tied to each test's own context: the tests run concurrently.
    const fresh = async (ctx: TestContext, options: MakeQueueOptions): Promise<{ queue: TaskQueue; deadLetter: TaskQueue }> => {
      const made = await makeQueue(options);
      if (made.cleanup) ctx.onTestFinished(made.cleanup);
      return made;
    };

    it("sends, receives (count 1) and deletes", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 30 });
      await queue.sendBatch(['{"chunk":1}']);
      const [msg, ...rest] = await queue.receive({ waitSeconds: 1 });
      expect(rest).toEqual([]);
      expect(msg).toMatchObject({ body: '{"chunk":1}', receiveCount: 1 });
      expect(msg!.id).toBeTruthy();
      expect(msg!.receiptHandle).toBeTruthy();
      await queue.delete(msg!.receiptHandle);
      expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0 });
      expect(await queue.receive()).toEqual([]);
    });

    it("keeps bodies intact (unicode, JSON, 200 KB)", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 30 });
      const bodies = ['{"k":"ü ✓ 😀"}', "x".repeat(200_000), " leading and trailing \n"];
      await queue.sendBatch(bodies);
      const got = await receiveAtLeast(queue, 3);
      expect(got.map((m) => m.body).sort()).toEqual([...bodies].sort());
    });

    it("refuses bodies SQS would refuse, sends the rest, and says how many failed", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 30 });
      const err = await queue.sendBatch(["fine", "bad \u0001 control", "lone \ud800 surrogate", "also fine"]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CloudmillError);
      expect((err as CloudmillError).message).toMatch(/could not send 2 of 4 messages .*InvalidMessageContents/);
      expect((await receiveAtLeast(queue, 2)).map((m) => m.body).sort()).toEqual(["also fine", "fine"]);
    });

    it("sends nothing for an empty batch", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 30 });
      await queue.sendBatch([]);
      expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0 });
    });

    it("redelivers after the visibility timeout with receiveCount + 1 and a new handle", async (ctx) => {
      // 3 s: the check that it is hidden right after the receive has seconds to spare.
      const { queue } = await fresh(ctx, { visibilitySeconds: 3 });
      await queue.sendBatch(["again"]);
      const asked = Date.now();
      const [first] = await queue.receive({ waitSeconds: 1 });
      expect(first!.receiveCount).toBe(1);
      expect(await queue.receive()).toEqual([]); // hidden while in flight
      const [second] = await queue.receive({ waitSeconds: LONG_POLL });
      // Not before the timeout (it started after `asked`), and back within one long poll.
      expect(Date.now() - asked).toBeGreaterThanOrEqual(3_000);
      expect(second).toMatchObject({ id: first!.id, body: "again", receiveCount: 2 });
      expect(second!.receiptHandle).not.toBe(first!.receiptHandle);
    });

    it("honours a per-receive visibility timeout", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 60 });
      await queue.sendBatch(["short"]);
      const asked = Date.now();
      await queue.receive({ waitSeconds: 1, visibilitySeconds: 1 });
      const [again] = await queue.receive({ waitSeconds: LONG_POLL });
      // Back after the receive's 1 s, long before the queue's 60 s.
      expect(Date.now() - asked).toBeGreaterThanOrEqual(1_000);
      expect(again).toMatchObject({ body: "short", receiveCount: 2 });
    });

    it("redelivers at once after changeVisibility(0)", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 60 });
      await queue.sendBatch(["now"]);
      const [first] = await queue.receive({ waitSeconds: 1 });
      await queue.changeVisibility(first!.receiptHandle, 0);
      const [second] = await queue.receive();
      expect(second).toMatchObject({ id: first!.id, receiveCount: 2 });
    });

    it("keeps a message hidden while a heartbeat extends its visibility", async (ctx) => {
      // The queue hides a message for 1 s; each heartbeat hides it for 5 s from when it is sent.
      // Each check comes after the previous hiding has surely ended (so only the latest heartbeat
      // can be what hides it) and seconds before the latest one ends (so a loaded machine's
      // delays cannot make it visible for real).
      const { queue } = await fresh(ctx, { visibilitySeconds: 1 });
      await queue.sendBatch(["busy"]);
      const [msg] = await queue.receive({ waitSeconds: 1 });
      const received = Date.now(); // the queue's own 1 s ends by received + 1 s
      await queue.changeVisibility(msg!.receiptHandle, 5);
      const firstBeat = Date.now(); // the first heartbeat's 5 s end by firstBeat + 5 s
      await sleepUntil(received + 1_500);
      expect(await queue.receive()).toEqual([]); // past the queue's timeout: the heartbeat hides it
      await sleepUntil(firstBeat + 2_500);
      await queue.changeVisibility(msg!.receiptHandle, 5);
      await sleepUntil(firstBeat + 5_500);
      expect(await queue.receive()).toEqual([]); // past the first heartbeat's 5 s: the second hides it
      expect(await queue.depth()).toEqual({ visible: 0, inFlight: 1 });
      await queue.delete(msg!.receiptHandle);
      expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0 });
    });

    it("returns from a long poll as soon as a message arrives", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 30 });
      const polling = queue.receive({ waitSeconds: LONG_POLL });
      await sleep(200); // the poll is waiting (or, on a slow machine, finds the message at once)
      const sent = Date.now();
      await queue.sendBatch(["wake"]);
      const got = await polling;
      expect(got.map((m) => m.body)).toEqual(["wake"]);
      expect(Date.now() - sent).toBeLessThan(WELL_WITHIN_LONG_POLL_MS);
    });

    it("returns from a long poll when an in-flight message times out", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 1 });
      await queue.sendBatch(["back"]);
      const asked = Date.now();
      await queue.receive();
      const got = await queue.receive({ waitSeconds: LONG_POLL });
      expect(got.map((m) => m.body)).toEqual(["back"]);
      const took = Date.now() - asked;
      expect(took).toBeGreaterThanOrEqual(1_000); // not before the timeout
      expect(took).toBeLessThan(WELL_WITHIN_LONG_POLL_MS); // woken by it, not by the poll's end
    });

    it("waits the full long poll, then returns nothing", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 30 });
      const t0 = Date.now();
      expect(await queue.receive({ waitSeconds: 1 })).toEqual([]);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    });

    it("ends a long poll promptly when its signal aborts, losing no message", async (ctx) => {
      const visibilitySeconds = 2;
      const { queue } = await fresh(ctx, { visibilitySeconds });
      const ac = new AbortController();
      const polling = queue.receive({ waitSeconds: LONG_POLL, signal: ac.signal });
      await sleep(100);
      const aborted = Date.now();
      ac.abort();
      expect(await polling).toEqual([]);
      expect(Date.now() - aborted).toBeLessThan(WELL_WITHIN_LONG_POLL_MS);
      // SQS may hand the next message to the poll that was left (hidden for its visibility
      // timeout, that receive counted: why a worker lets its poll end on a stop). It is not lost.
      await queue.sendBatch(["after abort"]);
      const [msg] = await receiveAtLeast(queue, 1);
      expect(msg).toMatchObject({ body: "after abort" });
      expect(msg!.receiveCount).toBeLessThanOrEqual(2);
    });

    it("returns nothing at once for an already aborted signal", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 30 });
      await queue.sendBatch(["kept"]);
      const ac = new AbortController();
      ac.abort();
      expect(await queue.receive({ waitSeconds: 20, signal: ac.signal })).toEqual([]);
      expect(await queue.depth()).toEqual({ visible: 1, inFlight: 0 });
    });

    it("delivers a batch of 25 exactly once each when every message is deleted", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 30 });
      const bodies = Array.from({ length: 25 }, (_, i) => `task-${i}`);
      await queue.sendBatch(bodies);
      const seen: string[] = [];
      const until = Date.now() + 30_000; // a limit to give up at, not a bound
      while (seen.length < 25 && Date.now() < until) {
        const got = await queue.receive({ maxMessages: 10, waitSeconds: 1 });
        expect(got.length).toBeLessThanOrEqual(10);
        for (const m of got) {
          seen.push(m.body);
          await queue.delete(m.receiptHandle);
        }
      }
      expect([...seen].sort()).toEqual([...bodies].sort());
      expect(await queue.receive()).toEqual([]);
      expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0 });
    });

    it("moves a message to the dead-letter queue after maxReceiveCount receives, body intact", async (ctx) => {
      const { queue, deadLetter } = await fresh(ctx, { visibilitySeconds: 30, maxReceiveCount: 2 });
      await queue.sendBatch(['{"poison":true,"note":"ü"}']);
      for (let attempt = 1; attempt <= 2; attempt++) {
        const [msg] = await queue.receive({ waitSeconds: 1 });
        expect(msg!.receiveCount).toBe(attempt);
        await queue.changeVisibility(msg!.receiptHandle, 0);
      }
      expect(await queue.receive()).toEqual([]);
      expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0 });
      const [dead] = await deadLetter.receive({ waitSeconds: LONG_POLL });
      expect(dead!.body).toBe('{"poison":true,"note":"ü"}');
    });

    it("counts visible and in-flight messages", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 30 });
      expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0 });
      await queue.sendBatch(["1", "2", "3"]);
      expect(await queue.depth()).toEqual({ visible: 3, inFlight: 0 });
      const got = await queue.receive({ maxMessages: 2 });
      expect(got.length).toBe(2);
      expect(await queue.depth()).toEqual({ visible: 1, inFlight: 2 });
      await queue.delete(got[0]!.receiptHandle);
      expect(await queue.depth()).toEqual({ visible: 1, inFlight: 1 });
    });

    it("takes a stale handle on delete without an error and refuses it on changeVisibility", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 30 });
      await queue.sendBatch(["m"]);
      const [first] = await queue.receive();
      await queue.changeVisibility(first!.receiptHandle, 0);
      const [second] = await queue.receive();
      // SQS says such a delete "will still succeed, but the message might not be deleted", and may
      // delete one another consumer holds: cloudmill relies on neither (a part is written once).
      await queue.delete(first!.receiptHandle);
      const err = await queue.changeVisibility(first!.receiptHandle, 10).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CloudmillError);
      expect((err as CloudmillError).message).toMatch(/not in flight/);
      await queue.delete(second!.receiptHandle);
      expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0 });
      await queue.delete(second!.receiptHandle); // already deleted: still fine
    });

    it("refuses receive options outside SQS's limits", async (ctx) => {
      const { queue } = await fresh(ctx, { visibilitySeconds: 30 });
      for (const bad of [{ maxMessages: 0 }, { maxMessages: 11 }, { waitSeconds: 21 }, { visibilitySeconds: -1 }]) {
        const err = await queue.receive(bad).catch((e: unknown) => e);
        expect(err, JSON.stringify(bad)).toBeInstanceOf(CloudmillError);
        expect((err as CloudmillError).code).toBe(ErrorCode.INTERNAL);
      }
    });
  });
};
