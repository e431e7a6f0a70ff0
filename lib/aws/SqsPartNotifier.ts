/**
 * Part notices (lib/core/pipeline/partNotices.ts) on the reducer's queue. Notices made within
 * a window of each other share one SendMessage, up to KEYS_PER_NOTICE keys: a worker's slots
 * finish tasks within milliseconds of each other, and no slot waits for its notice (its task's
 * delete does).
 */
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import { KEYS_PER_NOTICE, type PartNotice } from "../core/pipeline/partNotices.js";
import type { PartNotifier } from "../core/ports.js";

interface Waiting {
  readonly keys: readonly string[];
  resolve(): void;
  reject(err: unknown): void;
}

export class SqsPartNotifier implements PartNotifier {
  #waiting: Waiting[] = [];
  #keys = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** `windowMs`: how long a notice waits for others to share its message. */
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
    private readonly windowMs: number,
  ) {}

  written(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#waiting.push({ keys, resolve, reject });
      this.#keys += keys.length;
      if (this.#keys >= KEYS_PER_NOTICE) this.#flush();
      else this.#timer ??= setTimeout(() => this.#flush(), this.windowMs);
    });
  }

  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#waiting;
    this.#waiting = [];
    this.#keys = 0;
    void this.#send(batch);
  }

  /** Sends the batch's keys, KEYS_PER_NOTICE to a message; each waiting call settles with all of them. */
  async #send(batch: readonly Waiting[]): Promise<void> {
    const keys = [...new Set(batch.flatMap((w) => w.keys))];
    try {
      for (let at = 0; at < keys.length; at += KEYS_PER_NOTICE) {
        const body: PartNotice = { written: { keys: keys.slice(at, at + KEYS_PER_NOTICE) } };
        await this.sqs.send(new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: JSON.stringify(body) }));
      }
      for (const w of batch) w.resolve();
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      const error = new CloudmillError(ErrorCode.ENVIRONMENT, `SendMessage of a part notice to ${this.queueUrl} failed: ${why}`);
      for (const w of batch) w.reject(error);
    }
  }
}
