/** The worker's slots share one long poll: what each ReceiveMessage asks for, and who gets what. */
import { describe, expect, it } from "vitest";
import { SharedReceive } from "../../lib/aws/sharedReceive.js";
import type { QueueMessage } from "../../lib/core/ports.js";

const message = (id: string): QueueMessage => ({ id, body: id, receiptHandle: `h-${id}`, receiveCount: 1 });

/** A receive the test answers by hand: each call's maxMessages and a way to settle it. */
const manual = () => {
  const calls: { max: number; answer(ms: QueueMessage[]): void; fail(err: Error): void }[] = [];
  const receive = (max: number) => new Promise<QueueMessage[]>((resolve, reject) => calls.push({ max, answer: resolve, fail: reject }));
  return { calls, receive };
};

describe("SharedReceive", () => {
  it("asks once for every slot waiting when the poll starts, and hands one message to each", async () => {
    const { calls, receive } = manual();
    const shared = new SharedReceive(receive);
    const first = shared.next();
    await new Promise((r) => setImmediate(r));
    const [second, third] = [shared.next(), shared.next()];
    expect(calls.map((c) => c.max)).toEqual([1]);
    calls[0]!.answer([message("a")]);
    expect(await first).toEqual(message("a"));
    // The two that came during the first poll share the next.
    await new Promise((r) => setImmediate(r));
    expect(calls.map((c) => c.max)).toEqual([1, 2]);
    calls[1]!.answer([message("b")]);
    // Fewer messages than slots: the slot left over is told the poll came back empty.
    expect(await Promise.all([second, third])).toEqual([message("b"), undefined]);
  });

  it("shares one poll among slots that ask a few callbacks apart in the same turn", async () => {
    const { calls, receive } = manual();
    const shared = new SharedReceive(receive);
    // As slots freed by one batch delete come back: each after its own chain of awaits.
    const hops = (n: number): Promise<void> => (n === 0 ? Promise.resolve() : Promise.resolve().then(() => hops(n - 1)));
    const waiting = [0, 3, 7].map(async (n) => {
      await hops(n);
      return shared.next();
    });
    // The slots' own hops, then the poll's turn.
    for (let turn = 0; turn < 2; turn++) await new Promise((r) => setImmediate(r));
    expect(calls.map((c) => c.max)).toEqual([3]);
    calls[0]!.answer([message("a"), message("b"), message("c")]);
    expect(await Promise.all(waiting)).toEqual([message("a"), message("b"), message("c")]);
  });

  it("never asks for more than SQS's 10 at a time", async () => {
    const { calls, receive } = manual();
    const shared = new SharedReceive(receive);
    const waiting = Array.from({ length: 13 }, () => shared.next());
    await new Promise((r) => setImmediate(r));
    expect(calls.map((c) => c.max)).toEqual([10]);
    calls[0]!.answer([message("m0")]);
    await new Promise((r) => setImmediate(r));
    expect(calls.map((c) => c.max)).toEqual([10, 3]);
    calls[1]!.answer([]);
    expect((await Promise.all(waiting)).filter(Boolean)).toEqual([message("m0")]);
  });

  it("fails the slots of a failed poll, and polls again for those that ask after", async () => {
    const { calls, receive } = manual();
    const shared = new SharedReceive(receive);
    const failed = shared.next();
    await new Promise((r) => setImmediate(r));
    calls[0]!.fail(new Error("SQS unreachable"));
    await expect(failed).rejects.toThrow("SQS unreachable");
    const again = shared.next();
    await new Promise((r) => setImmediate(r));
    calls[1]!.answer([message("c")]);
    expect(await again).toEqual(message("c"));
  });
});
