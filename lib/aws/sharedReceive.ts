/**
 * One ReceiveMessage for all of a worker's idle slots: the slots waiting when a poll starts
 * (including those that ask in the same turn of the event loop) share it, up to SQS's 10 a
 * call, instead of each holding a long poll of its own, so a worker makes about one receive per
 * `slots` tasks. A message is only ever asked for by a slot already waiting for it, so none
 * sits received and unclaimed while its visibility runs.
 */
import type { QueueMessage } from "../core/ports.js";

/** SQS's most messages per ReceiveMessage. */
const MAX_PER_RECEIVE = 10;

interface Waiter {
  resolve(message: QueueMessage | undefined): void;
  reject(err: unknown): void;
}

export class SharedReceive {
  readonly #receive: (maxMessages: number) => Promise<QueueMessage[]>;
  readonly #waiting: Waiter[] = [];
  #polling = false;

  constructor(receive: (maxMessages: number) => Promise<QueueMessage[]>) {
    this.#receive = receive;
  }

  /** The next message for one slot; undefined when a poll came back empty (the slot looks around and asks again). */
  next(): Promise<QueueMessage | undefined> {
    const message = new Promise<QueueMessage | undefined>((resolve, reject) => this.#waiting.push({ resolve, reject }));
    if (!this.#polling) {
      this.#polling = true;
      // After this turn's promise callbacks: slots freed together (one DeleteMessageBatch
      // settles them all) come back a few callbacks apart, and then share one poll.
      setImmediate(() => void this.#poll());
    }
    return message;
  }

  async #poll(): Promise<void> {
    try {
      while (this.#waiting.length > 0) {
        const asked = this.#waiting.splice(0, Math.min(MAX_PER_RECEIVE, this.#waiting.length));
        let messages: QueueMessage[];
        try {
          messages = await this.#receive(asked.length);
        } catch (err) {
          for (const w of asked) w.reject(err);
          continue;
        }
        for (const [i, w] of asked.entries()) w.resolve(messages[i]);
        // More than asked for cannot come back; should it, they return after their visibility timeout.
      }
    } finally {
      this.#polling = false;
    }
  }
}
