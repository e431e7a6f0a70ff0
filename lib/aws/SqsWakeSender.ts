/** The reducer's delayed wake-ups (lib/core/pipeline/wake.ts), sent on the queue that brings it part events. */
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { WakeMessage } from "../core/pipeline/wake.js";
import type { WakeSender } from "../core/ports.js";

export class SqsWakeSender implements WakeSender {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async wakeAfter(jobId: string, seconds: number, due: number): Promise<void> {
    const body: WakeMessage = { wake: { jobId, due } };
    await this.sqs.send(new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: JSON.stringify(body), DelaySeconds: seconds }));
  }
}
