/**
 * A splitter's listing handed on (lib/core/pipeline/listing.ts), as a message on its own
 * continuation queue, whose event source invokes the splitter again. The body is the job spec's
 * S3 notification with the continuation beside it: a copy that fails on every try reaches the
 * continuations' dead-letter queue, whose handler fails the job as it does an event the splitter
 * failed on.
 *
 * The queue is FIFO. Its message group is the job: SQS hands out no message of a group while
 * another is in flight, so two copies of a job's continuation never list at once (and both plan
 * the job, queueing its tasks twice); other jobs go on in parallel. The deduplication id is a pure
 * function of the continuation, so a copy sent within SQS's 5 minutes is dropped.
 */
import { createHash } from "node:crypto";
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { ContinuationSender, ListingContinuation } from "../core/ports.js";
import { continuationBody } from "./events.js";

/** What SQS takes as a message group or deduplication id: 1 to 128 printable ASCII characters. */
const FIFO_ID = /^[\x21-\x7e]{1,128}$/;

const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex");

/** A job's message group: its id (job ids are 128 letters, digits, `.`, `_` or `-` at most), else a digest of it. */
export const continuationGroupId = (jobId: string): string => (FIFO_ID.test(jobId) ? jobId : sha256(jobId));

/**
 * One hand-off's deduplication id: the job, the pieces it went on from and hands on after, and the
 * write of the spec that started the listing. An invocation run again hands on the same four; a
 * spec uploaded again after its listing failed lists afresh, and its hand-offs must not be taken
 * for the old one's; nor must a hand-off of a range listed again from a break (its own `from`).
 */
export const continuationDeduplicationId = ({ jobId, seq, from, object }: ListingContinuation): string =>
  sha256(JSON.stringify([jobId, from, seq, object.sequencer ?? object.etag ?? null]));

export class SqsContinuationSender implements ContinuationSender {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async handOn(continuation: ListingContinuation): Promise<void> {
    await this.send(continuation, continuationDeduplicationId(continuation));
  }

  /** Sends `continuation` under `deduplicationId` (tests send copies SQS cannot drop with ids of their own). */
  async send(continuation: ListingContinuation, deduplicationId: string): Promise<void> {
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: JSON.stringify(continuationBody(continuation)),
        MessageGroupId: continuationGroupId(continuation.jobId),
        MessageDeduplicationId: deduplicationId,
      }),
    );
  }
}
