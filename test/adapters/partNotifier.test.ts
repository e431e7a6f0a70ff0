/**
 * SqsPartNotifier against the emulator: a worker's part notices made within the window share one
 * message on the reducer's queue, no message names more than KEYS_PER_NOTICE keys, and a send
 * that fails fails every notice that waited on it.
 */
import { describe, expect, it } from "vitest";
import { SqsPartNotifier } from "../../lib/aws/SqsPartNotifier.js";
import { SqsTaskQueue } from "../../lib/aws/SqsTaskQueue.js";
import { partKey } from "../../lib/core/keys.js";
import { KEYS_PER_NOTICE, noticedKeys } from "../../lib/core/pipeline/partNotices.js";
import { useEmulator } from "../helpers/emulator.js";

const aws = useEmulator();

/** Every message on the queue, each as the keys it names (undefined: not a notice). */
const drain = async (queueUrl: string): Promise<(readonly string[] | undefined)[]> => {
  const queue = new SqsTaskQueue(aws.sqs, queueUrl);
  const named: (readonly string[] | undefined)[] = [];
  for (;;) {
    const messages = await queue.receive({ maxMessages: 10, waitSeconds: 0 });
    if (messages.length === 0) return named;
    for (const m of messages) {
      named.push(noticedKeys(JSON.parse(m.body)));
      await queue.delete(m.receiptHandle);
    }
  }
};

describe("part notices on the reducer's queue", () => {
  it("made within the window share one message, which names every part", async () => {
    const { url } = await aws.freshQueue();
    const notifier = new SqsPartNotifier(aws.sqs, url, 200);
    const keys = Array.from({ length: 25 }, (_, i) => partKey("job-a", i));
    // Eight slots finishing at about the same time, one a few parts (a worker's merge and map tasks alike).
    await Promise.all(Array.from({ length: 8 }, (_, s) => notifier.written(keys.filter((_, i) => i % 8 === s))));
    const messages = await drain(url);
    expect(messages).toHaveLength(1);
    expect([...(messages[0] ?? [])].sort()).toEqual([...keys].sort());
  });

  it(`names at most ${KEYS_PER_NOTICE} parts a message, each part once`, async () => {
    const { url } = await aws.freshQueue();
    const notifier = new SqsPartNotifier(aws.sqs, url, 50);
    const keys = Array.from({ length: 2 * KEYS_PER_NOTICE + 50 }, (_, i) => partKey("job-b", i));
    // A part named twice in one window (a copy of a task that ran twice) is named once.
    await Promise.all([notifier.written([keys[0]!]), ...keys.map((k) => notifier.written([k]))]);
    const messages = await drain(url);
    expect(messages.every((m) => m !== undefined && m.length <= KEYS_PER_NOTICE)).toBe(true);
    expect(messages.length).toBe(3);
    expect(messages.flatMap((m) => m ?? []).sort()).toEqual([...keys].sort());
  });

  it("a send that fails fails every notice waiting on it, naming the queue", async () => {
    const { url } = await aws.freshQueue();
    const missing = `${url}-gone`;
    const notifier = new SqsPartNotifier(aws.sqs, missing, 20);
    const results = await Promise.allSettled([notifier.written([partKey("job-c", 0)]), notifier.written([partKey("job-c", 1)])]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    for (const r of results) {
      const err = (r as PromiseRejectedResult).reason as { code: string; message: string };
      expect(err.code).toBe("ENVIRONMENT");
      expect(err.message).toContain(missing);
    }
  });
});
