/**
 * A splitter's listing handed on (lib/core/pipeline/listing.ts), as a message on its own
 * continuation queue, whose event source invokes the splitter again. The body is the job spec's
 * S3 notification with the continuation beside it: a copy that fails on every try reaches the
 * splitter's dead-letter queue, whose handler fails the job as it does an event the splitter
 * failed on.
 */
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { ContinuationSender, ListingContinuation } from "../core/ports.js";
import { continuationBody } from "./events.js";

export class SqsContinuationSender implements ContinuationSender {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async handOn(continuation: ListingContinuation): Promise<void> {
    await this.sqs.send(new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: JSON.stringify(continuationBody(continuation)) }));
  }
}
