/**
 * A manifest too long for one splitter invocation, on the emulated cloud: the splitter keeps
 * back all its time (listingReserveMs past its timeout), so each invocation resolves one piece
 * of the list's lines (a HEAD each), stores it and hands the rest on, each continuation sent
 * twice (the copy past deduplication). The job is planned once: the task queue holds, once each,
 * the byte ranges this test cut from the objects it wrote, and a late copy of a continuation
 * queues nothing more. A missing object on a line of a later piece fails the job at that line.
 */
import { GetQueueUrlCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { describe, expect, it } from "vitest";
import { SqsTaskQueue } from "../../lib/aws/SqsTaskQueue.js";
import { DEV_QUEUES } from "../../lib/core/constants.js";
import { mapInOrder } from "../../lib/core/mapInOrder.js";
import { queueDepth, useDevCloud, waitFor } from "../helpers/devCloud.js";

const OBJECTS = 95;
const PER_PIECE = 10;
/** Smaller than every object, so no two share a chunk and each is cut into ranges of this size. */
const CHUNK = 10;
const cloud = useDevCloud({
  workers: 0,
  maxWorkers: 0,
  inputsPerPiece: PER_PIECE,
  // Every invocation is out of time once it has resolved a piece.
  listingReserveMs: 10 * 60_000,
  continuationCopies: 2,
});

const continuationsHandled = async (): Promise<void> => {
  const { QueueUrl } = await cloud().sqs.send(new GetQueueUrlCommand({ QueueName: DEV_QUEUES.continuations }));
  await waitFor("every continuation handled", async () => {
    const d = await queueDepth(cloud().sqs, QueueUrl!);
    return d.visible + d.inFlight + d.delayed === 0 ? true : undefined;
  });
};

/** Every task the queue holds, as `key:start-end`, read whole (no worker runs) and handed back. */
const queuedRanges = async (): Promise<string[]> => {
  const queue = new SqsTaskQueue(cloud().sqs, cloud().cloud.taskQueueUrl);
  const messages = [];
  for (;;) {
    const batch = await queue.receive({ maxMessages: 10, waitSeconds: 0, visibilitySeconds: 120 });
    if (batch.length === 0) break;
    messages.push(...batch);
  }
  await Promise.all(messages.map((m) => queue.changeVisibility(m.receiptHandle, 0)));
  return messages
    .map((m) => JSON.parse(m.body) as { chunk: { input: { key: string }; start: number; end: number } })
    .map((t) => `${t.chunk.input.key}:${t.chunk.start}-${t.chunk.end}`)
    .sort();
};

describe("a manifest resolved across splitter invocations", () => {
  it(`${OBJECTS} lines in pieces of ${PER_PIECE}, each continuation sent twice: every range queued once`, async () => {
    const bodies = Array.from({ length: OBJECTS }, (_, i) => "row\n".repeat(3 + (i % 4)));
    const keys = bodies.map((_, i) => `_inputs/picks/obj-${String(i).padStart(3, "0")}.txt`);
    await mapInOrder(bodies, 16, (body, i) => cloud().put(keys[i]!, body));
    // A comment, keys of the list's bucket and full URIs: 96 lines, so 10 pieces; the last ends the listing.
    const lines = keys.map((k, i) => (i % 3 === 0 ? `s3://${cloud().input}/${k}` : k));
    await cloud().put("_lists/picks.txt", `# the picks\n${lines.join("\n")}\n`);
    // The ranges the job must map, cut here: [0, c), [c, 2c), … of each object.
    const expected = bodies
      .flatMap((body, i) =>
        Array.from(
          { length: Math.ceil(body.length / CHUNK) },
          (_, k) => `${keys[i]}:${k * CHUNK}-${Math.min(body.length, (k + 1) * CHUNK)}`,
        ),
      )
      .sort();

    await cloud().put(
      "_jobs/picks-count.json",
      JSON.stringify({ op: "count", inputs: [`manifest:s3://${cloud().input}/_lists/picks.txt`], chunkSize: CHUNK }),
    );
    await waitFor("every task queued", () => cloud().get(cloud().output, "_work/picks-count/enqueued.json"), 180_000);
    await continuationsHandled();
    // Each piece but the last was stored by an invocation that handed the rest on, at the line it ended.
    const pieces = (await cloud().keys(cloud().output, "_work/picks-count/listing/")).filter((k) => /\/\d+\.json$/.test(k));
    expect(pieces).toHaveLength(9);
    const ninth = (await cloud().getJson(cloud().output, pieces.at(-1)!)) as { to: { taken: number; manifest?: { line: number } } };
    expect(ninth.to).toMatchObject({ taken: 89, manifest: { line: 90 } });
    expect(await queuedRanges()).toEqual(expected);

    // A late copy of a continuation, past SQS's deduplication window: the job is planned, nothing more is queued.
    const { QueueUrl } = await cloud().sqs.send(new GetQueueUrlCommand({ QueueName: DEV_QUEUES.continuations }));
    const late = {
      Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: cloud().input }, object: { key: "_jobs/picks-count.json" } } }],
      cloudmillListing: { jobId: "picks-count", seq: 4 },
    };
    await cloud().sqs.send(
      new SendMessageCommand({
        QueueUrl,
        MessageBody: JSON.stringify(late),
        MessageGroupId: "picks-count",
        MessageDeduplicationId: "late",
      }),
    );
    await continuationsHandled();
    expect(await queuedRanges()).toEqual(expected);
  }, 600_000);

  it("fails the job at a missing object's line in a later piece, naming the manifest", async () => {
    const keys = Array.from({ length: 40 }, (_, i) => `_inputs/gone/obj-${String(i).padStart(2, "0")}.txt`);
    await mapInOrder(keys, 16, (k) => cloud().put(k, "row\n"));
    await cloud().put("_lists/gone.txt", `${keys.map((k, i) => (i === 32 ? "_inputs/gone/missing.txt" : k)).join("\n")}\n`);
    await cloud().put("_jobs/gone-count.json", JSON.stringify({ op: "count", inputs: [`manifest:s3://${cloud().input}/_lists/gone.txt`] }));
    const status = await cloud().waitForEnd("_jobs/gone-count/status.json", 180_000);
    expect(status.state).toBe("failed");
    expect(status.error).toMatchObject({ code: "INPUT_NOT_FOUND", input: `s3://${cloud().input}/_lists/gone.txt`, line: 33 });
    expect(status.error?.message).toContain(`s3://${cloud().input}/_inputs/gone/missing.txt`);
    // Lines 1 to 30 were resolved and handed on first, a piece of 10 per invocation.
    const pieces = (await cloud().keys(cloud().output, "_work/gone-count/listing/")).filter((k) => /\/\d+\.json$/.test(k));
    expect(pieces).toHaveLength(3);
  }, 600_000);
});
