import { describe, expect, it } from "vitest";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";
import { describeTaskQueueContract } from "../contract/taskQueueContract.js";

describeTaskQueueContract("MemoryTaskQueue", async ({ visibilitySeconds, maxReceiveCount }) => {
  const deadLetter = new MemoryTaskQueue({ name: "dlq" });
  const queue = new MemoryTaskQueue({
    visibilitySeconds,
    ...(maxReceiveCount === undefined ? {} : { deadLetter: { queue: deadLetter, maxReceiveCount } }),
  });
  return {
    queue,
    deadLetter,
    cleanup: async () => {
      queue.close();
      deadLetter.close();
    },
  };
});

const timeouts = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

describe("MemoryTaskQueue", () => {
  it("ends pending long polls on close() and returns nothing afterwards", async () => {
    const queue = new MemoryTaskQueue();
    const polls = [queue.receive({ waitSeconds: 20 }), queue.receive({ waitSeconds: 20 })];
    // Both polls are waiting now (an empty queue makes them wait at once); close ends them.
    const closed = Date.now();
    queue.close();
    expect(await Promise.all(polls)).toEqual([[], []]);
    expect(Date.now() - closed).toBeLessThan(10_000); // well within the polls' 20 s: ended by close()
    expect(await queue.receive({ waitSeconds: 20 })).toEqual([]);
    await expect(queue.sendBatch(["late"])).rejects.toThrow(/closed/);
  });

  it("leaves no timer behind after aborted, woken and timed-out polls", async () => {
    const queue = new MemoryTaskQueue();
    const before = timeouts();
    const ac = new AbortController();
    const aborted = queue.receive({ waitSeconds: 20, signal: ac.signal });
    const woken = queue.receive({ waitSeconds: 20 });
    const timed = queue.receive({ waitSeconds: 1 });
    ac.abort();
    await queue.sendBatch(["x"]);
    expect(await aborted).toEqual([]);
    expect((await woken).map((m) => m.body)).toEqual(["x"]);
    expect(await timed).toEqual([]);
    expect(timeouts()).toBeLessThanOrEqual(before);
  });

  it("follows an injected clock for visibility", async () => {
    let now = 1_000_000;
    const queue = new MemoryTaskQueue({ visibilitySeconds: 120, clock: () => now });
    await queue.sendBatch(["tick"]);
    const [first] = await queue.receive();
    now += 119_000;
    expect(await queue.receive()).toEqual([]);
    now += 1_000;
    const [second] = await queue.receive();
    expect(second).toMatchObject({ id: first!.id, receiveCount: 2 });
    // The latest handle still deletes a message whose timeout passed but that nobody took.
    now += 200_000;
    await queue.delete(second!.receiptHandle);
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0 });
  });

  it("delivers the oldest visible message first", async () => {
    const queue = new MemoryTaskQueue({ visibilitySeconds: 30 });
    await queue.sendBatch(["a", "b", "c"]);
    const [a] = await queue.receive();
    await queue.changeVisibility(a!.receiptHandle, 0);
    const got = await queue.receive({ maxMessages: 3 });
    expect(got.map((m) => m.body)).toEqual(["a", "b", "c"]);
  });

  it("refuses a bad maxReceiveCount", () => {
    expect(() => new MemoryTaskQueue({ deadLetter: { queue: new MemoryTaskQueue(), maxReceiveCount: 0 } })).toThrow(/maxReceiveCount/);
  });
});
