/**
 * Two copies of a listing continuation, on the emulated cloud whose continuation queue invokes
 * the splitter twice at once (as the stack's event source, maxConcurrency 2, may). Each copy that
 * SQS's deduplication cannot drop (DevCloudOptions.continuationCopies) is in the job's message
 * group: the FIFO queue hands out one at a time, so only one invocation reaches the end of the
 * listing and plans the job. Every byte range the test cut is queued once, and the answer is the
 * count the test made.
 */
import { GetQueueAttributesCommand, GetQueueUrlCommand } from "@aws-sdk/client-sqs";
import { describe, expect, it } from "vitest";
import { SqsTaskQueue } from "../../lib/aws/SqsTaskQueue.js";
import { DEV_QUEUES } from "../../lib/core/constants.js";
import { mapInOrder } from "../../lib/core/mapInOrder.js";
import { queueDepth, useDevCloud, waitFor } from "../helpers/devCloud.js";

const OBJECTS = 12;
const PER_PIECE = 4;
/** Smaller than every object, so no two share a chunk and each is cut into ranges of this size. */
const CHUNK = 10;
const cloud = useDevCloud({
  workers: 0,
  maxWorkers: 0,
  inputsPerPiece: PER_PIECE,
  // Every invocation is out of time once it has listed a piece: three pieces, two hand-offs.
  listingReserveMs: 10 * 60_000,
  continuationCopies: 2,
});

describe("copies of a listing continuation", () => {
  it("run one at a time: the job is planned once, each of its ranges queued once", async () => {
    const bodies = Array.from({ length: OBJECTS }, (_, i) => "row\n".repeat(3 + (i % 4)));
    const keys = bodies.map((_, i) => `_inputs/copies/obj-${String(i).padStart(2, "0")}.txt`);
    await mapInOrder(bodies, 8, (body, i) => cloud().put(keys[i]!, body));
    // The ranges the job must map, cut here: [0, c), [c, 2c), … of each object.
    const expected = bodies
      .flatMap((body, i) =>
        Array.from(
          { length: Math.ceil(body.length / CHUNK) },
          (_, k) => `${keys[i]}:${k * CHUNK}-${Math.min(body.length, (k + 1) * CHUNK)}`,
        ),
      )
      .sort();
    const lines = bodies.reduce((n, body) => n + body.split("\n").length - 1, 0);

    await cloud().put(
      "_jobs/copies-count.json",
      JSON.stringify({ op: "count", inputs: [`s3://${cloud().input}/_inputs/copies/`], chunkSize: CHUNK }),
    );
    await waitFor("every task queued", () => cloud().get(cloud().output, "_work/copies-count/enqueued.json"), 120_000);
    // Every copy handled (a message leaves the queue once its invocation returns): none left to plan the job again.
    const { QueueUrl } = await cloud().sqs.send(new GetQueueUrlCommand({ QueueName: DEV_QUEUES.continuations }));
    await waitFor("every continuation handled", async () => {
      const d = await queueDepth(cloud().sqs, QueueUrl!);
      return d.visible + d.inFlight + d.delayed === 0 ? true : undefined;
    });

    // What the task queue holds, read whole (no worker runs yet), then handed back.
    const queue = new SqsTaskQueue(cloud().sqs, cloud().cloud.taskQueueUrl);
    const messages = [];
    for (;;) {
      const batch = await queue.receive({ maxMessages: 10, waitSeconds: 0, visibilitySeconds: 120 });
      if (batch.length === 0) break;
      messages.push(...batch);
    }
    const queued = messages
      .map((m) => JSON.parse(m.body) as { jobId: string; chunk: { input: { key: string }; start: number; end: number } })
      .map((t) => `${t.chunk.input.key}:${t.chunk.start}-${t.chunk.end}`)
      .sort();
    expect(queued).toEqual(expected);
    await Promise.all(messages.map((m) => queue.changeVisibility(m.receiptHandle, 0)));

    cloud().cloud.startWorkers(2);
    const status = await cloud().waitForEnd("_jobs/copies-count/status.json", 300_000);
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expect(status.inputCount).toBe(OBJECTS);
    expect(await cloud().getJson(cloud().output, "_jobs/copies-count/result.json")).toEqual({ records: lines });
  }, 600_000);

  it("stay hidden while one runs for as long as the stack's: six times the splitter's five minutes", async () => {
    // A shorter timeout hands a continuation still listing to the second poller, beside it.
    const { QueueUrl } = await cloud().sqs.send(new GetQueueUrlCommand({ QueueName: DEV_QUEUES.continuations }));
    const { Attributes } = await cloud().sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ["VisibilityTimeout"] }));
    expect(Attributes?.["VisibilityTimeout"]).toBe(String(6 * 5 * 60));
  });
});
