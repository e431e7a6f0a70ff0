/**
 * The splitter's continuation queue as the dev cloud creates it (FIFO, as the stack's) and
 * SqsContinuationSender sends to it, against the emulator: a job's continuations are handed out
 * one at a time, other jobs' meanwhile; a continuation sent twice is queued once; one that fails
 * on every try reaches its own dead-letter queue.
 */
import { randomBytes } from "node:crypto";
import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import { beforeAll, describe, expect, it } from "vitest";
import { continuationOf } from "../../lib/aws/events.js";
import { continuationDeduplicationId, continuationGroupId, SqsContinuationSender } from "../../lib/aws/SqsContinuationSender.js";
import { SqsTaskQueue } from "../../lib/aws/SqsTaskQueue.js";
import type { ListingContinuation } from "../../lib/core/ports.js";
import { createDevResources } from "../../lib/dev/emulator.js";
import { useEmulator } from "../helpers/emulator.js";

const aws = useEmulator();

const spec = (jobId: string, sequencer = "0055AED6DCD90281E5"): ListingContinuation["object"] => ({
  bucket: "cloudmill-input",
  key: `_jobs/${jobId}.json`,
  etag: "9b2cf535f27731c974343645a3985328",
  sequencer,
});

describe("the continuation queue", () => {
  let queueUrl: string;
  let deadLetterUrl: string;
  beforeAll(async () => {
    const name = `continuations-${randomBytes(3).toString("hex")}`;
    const resources = await createDevResources(aws, {
      taskQueue: `${name}-tasks`,
      deadLetterQueue: `${name}-tasks-dlq`,
      continuationQueue: `${name}.fifo`,
      continuationDeadLetterQueue: `${name}-dlq.fifo`,
      visibilitySeconds: 60,
    });
    queueUrl = resources.continuationQueueUrl!;
    deadLetterUrl = resources.continuationDeadLetterQueueUrl!;
  });

  const received = async (queue: SqsTaskQueue) => {
    const messages = await queue.receive({ maxMessages: 10, waitSeconds: 0 });
    return messages.map((m) => ({ ...m, continuation: continuationOf(JSON.parse(m.body)) }));
  };

  it("is FIFO, with deduplication ids its sender names, as the stack's", async () => {
    const { Attributes } = await aws.sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["All"] }));
    expect(Attributes).toMatchObject({ FifoQueue: "true", ContentBasedDeduplication: "false" });
    expect(JSON.parse(Attributes!["RedrivePolicy"]!)).toMatchObject({ maxReceiveCount: 3 });
  });

  it("hands out one continuation of a job at a time, another job's meanwhile, and a copy sent twice once", async () => {
    const sender = new SqsContinuationSender(aws.sqs, queueUrl);
    const queue = new SqsTaskQueue(aws.sqs, queueUrl);
    await sender.handOn({ jobId: "job-a", seq: 3, from: 2, object: spec("job-a") });
    // The same hand-off again (a copy): dropped.
    await sender.handOn({ jobId: "job-a", seq: 3, from: 2, object: spec("job-a") });
    await sender.handOn({ jobId: "job-a", seq: 4, from: 3, object: spec("job-a") });
    await sender.handOn({ jobId: "job-b", seq: 1, from: 0, object: spec("job-b") });

    const first = await received(queue);
    expect(first.map((m) => [m.continuation?.object.key, m.continuation?.seq]).sort()).toEqual([
      ["_jobs/job-a.json", 3],
      ["_jobs/job-b.json", 1],
    ]);
    // While job-a's is in flight, nothing more of job-a.
    expect(await received(queue)).toEqual([]);
    await Promise.all(first.map((m) => queue.delete(m.receiptHandle)));
    const second = await received(queue);
    expect(second.map((m) => [m.continuation?.object.key, m.continuation?.seq])).toEqual([["_jobs/job-a.json", 4]]);
    await queue.delete(second[0]!.receiptHandle);
    expect(await received(queue)).toEqual([]);
  });

  it("goes to its own FIFO dead-letter queue after 3 receives", async () => {
    const sender = new SqsContinuationSender(aws.sqs, queueUrl);
    const queue = new SqsTaskQueue(aws.sqs, queueUrl);
    const deadLetters = new SqsTaskQueue(aws.sqs, deadLetterUrl);
    await sender.handOn({ jobId: "job-failing", seq: 1, from: 0, object: spec("job-failing") });
    for (let i = 0; i < 3; i++) {
      const [m] = await received(queue);
      expect(m?.continuation?.seq).toBe(1);
      await queue.changeVisibility(m!.receiptHandle, 0);
    }
    expect(await received(queue)).toEqual([]);
    const [letter] = await received(deadLetters);
    expect(letter?.continuation).toMatchObject({ seq: 1, object: { key: "_jobs/job-failing.json" } });
    await deadLetters.delete(letter!.receiptHandle);
  });

  it("groups by job id, and names a hand-off by its job, pieces and spec write, within SQS's 128 characters", () => {
    const jobId = `j${"x".repeat(127)}`;
    expect(continuationGroupId(jobId)).toBe(jobId);
    const id = continuationDeduplicationId({ jobId, seq: 7, from: 5, object: spec(jobId) });
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(continuationDeduplicationId({ jobId, seq: 7, from: 5, object: spec(jobId) })).toBe(id);
    expect(continuationDeduplicationId({ jobId, seq: 8, from: 5, object: spec(jobId) })).not.toBe(id);
    // The same piece handed on again by an invocation that listed again from a break: not a copy either.
    expect(continuationDeduplicationId({ jobId, seq: 7, from: 7, object: spec(jobId) })).not.toBe(id);
    // The spec uploaded again (its listing failed, and it lists afresh): not taken for a copy.
    expect(continuationDeduplicationId({ jobId, seq: 7, from: 5, object: spec(jobId, "0055AED6DCD90281F0") })).not.toBe(id);
  });
});
