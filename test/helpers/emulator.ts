import { randomBytes } from "node:crypto";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import { CreateQueueCommand, GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import type { SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll } from "vitest";
import { awsClients } from "../../lib/aws/clients.js";
import { startEmulator } from "../../lib/dev/emulator.js";
import type { Emulator } from "../../lib/dev/emulator.js";

export interface FreshQueueOptions {
  /** Default 30. */
  readonly visibilitySeconds?: number;
  /** With it, the queue redrives to a fresh dead-letter queue after this many receives. */
  readonly maxReceiveCount?: number;
}

export interface FreshQueue {
  readonly url: string;
  /** Always created, so tests can look into it; the redrive points at it only with maxReceiveCount. */
  readonly deadLetterUrl: string;
}

export interface EmulatorFixture {
  readonly emulator: Emulator;
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  /** A new, empty bucket with a unique name. */
  freshBucket(): Promise<string>;
  /** A new, empty queue (and its dead-letter queue) with unique names. */
  freshQueue(options?: FreshQueueOptions): Promise<FreshQueue>;
}

let counter = 0;
const unique = (): string => `${process.pid}-${++counter}-${randomBytes(3).toString("hex")}`;

/**
 * Starts the emulator on 127.0.0.1, port 0, before the file's tests and stops it after them.
 * Read the fixture's fields inside tests or hooks (they are set in beforeAll).
 */
export const useEmulator = (): EmulatorFixture => {
  let state: { emulator: Emulator; s3: S3Client; sqs: SQSClient } | undefined;
  const get = (): NonNullable<typeof state> => {
    if (!state) throw new Error("useEmulator(): the emulator is not started yet (use it inside tests or hooks)");
    return state;
  };

  beforeAll(async () => {
    const emulator = await startEmulator({ port: 0 });
    state = { emulator, ...awsClients({ endpoint: emulator.endpoint, region: "us-east-1" }, {}) };
  });

  afterAll(async () => {
    if (!state) return;
    state.s3.destroy();
    state.sqs.destroy();
    await state.emulator.stop();
    state = undefined;
  });

  return {
    get emulator() {
      return get().emulator;
    },
    get s3() {
      return get().s3;
    },
    get sqs() {
      return get().sqs;
    },
    async freshBucket() {
      const bucket = `test-${unique()}`;
      await get().s3.send(new CreateBucketCommand({ Bucket: bucket }));
      return bucket;
    },
    async freshQueue(options = {}) {
      const { sqs } = get();
      const name = `test-${unique()}`;
      const dlq = await sqs.send(new CreateQueueCommand({ QueueName: `${name}-dlq` }));
      const attributes: Record<string, string> = { VisibilityTimeout: String(options.visibilitySeconds ?? 30) };
      if (options.maxReceiveCount !== undefined) {
        const { Attributes } = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlq.QueueUrl, AttributeNames: ["QueueArn"] }));
        attributes["RedrivePolicy"] = JSON.stringify({
          deadLetterTargetArn: Attributes?.["QueueArn"],
          maxReceiveCount: options.maxReceiveCount,
        });
      }
      const queue = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
      return { url: queue.QueueUrl!, deadLetterUrl: dlq.QueueUrl! };
    },
  };
};
