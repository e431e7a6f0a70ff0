import { randomBytes } from "node:crypto";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import type { QueueMessage, ReceiveOptions, TaskQueue } from "../core/ports.js";
import { invalidBody, validateReceive, validateVisibility } from "../core/queueLimits.js";

export interface MemoryTaskQueueOptions {
  /** Default visibility timeout of received messages. Default 30 (as SQS). */
  readonly visibilitySeconds?: number;
  /** Where a message goes once it would be received more than maxReceiveCount times. */
  readonly deadLetter?: { readonly queue: MemoryTaskQueue; readonly maxReceiveCount: number };
  /** Milliseconds since the epoch; inject to control visibility timeouts in tests. Default Date.now. */
  readonly clock?: () => number;
  /** For messages: default "memory". */
  readonly name?: string;
}

interface Message {
  readonly id: string;
  readonly body: string;
  receiveCount: number;
  /** Clock time until which the message is in flight; visible when <= now. */
  invisibleUntil: number;
  /** Handle of the latest receipt; older handles are stale. */
  handle: string | undefined;
}

interface Waiter {
  readonly wake: () => void;
}

/**
 * An in-process TaskQueue with SQS semantics: visibility timeout, receive count, redrive to a
 * dead-letter queue, long polling, at-least-once delivery. Oldest visible message first.
 *
 * Time is checked lazily against the clock on every call; the only timers are those of pending
 * long polls, unref'd so they never keep the process alive.
 */
export class MemoryTaskQueue implements TaskQueue {
  readonly name: string;
  private readonly visibilitySeconds: number;
  private readonly deadLetter: MemoryTaskQueueOptions["deadLetter"];
  private readonly now: () => number;
  /** Every undeleted message, in send order (Map keeps insertion order). */
  private readonly messages = new Map<string, Message>();
  private readonly byHandle = new Map<string, Message>();
  private readonly waiters = new Set<Waiter>();
  private readonly prefix = randomBytes(4).toString("hex");
  private seq = 0;
  private closed = false;

  constructor(options: MemoryTaskQueueOptions = {}) {
    this.visibilitySeconds = options.visibilitySeconds ?? 30;
    validateVisibility(this.visibilitySeconds);
    this.deadLetter = options.deadLetter;
    if (this.deadLetter && !(Number.isInteger(this.deadLetter.maxReceiveCount) && this.deadLetter.maxReceiveCount >= 1)) {
      throw new CloudmillError(ErrorCode.INTERNAL, `maxReceiveCount must be an integer >= 1, got ${this.deadLetter.maxReceiveCount}`);
    }
    this.now = options.clock ?? Date.now;
    this.name = options.name ?? "memory";
  }

  async sendBatch(bodies: readonly string[], options: { signal?: AbortSignal } = {}): Promise<void> {
    options.signal?.throwIfAborted();
    if (this.closed) throw new CloudmillError(ErrorCode.ENVIRONMENT, `queue ${this.name} is closed`);
    // As SQS: what it would refuse is refused, the rest is sent, and the call rejects.
    let refused = 0;
    let why: string | undefined;
    for (const body of bodies) {
      const reason = invalidBody(body);
      if (reason === undefined) this.enqueue(this.nextId(), body);
      else {
        refused++;
        why ??= reason;
      }
    }
    if (refused > 0) {
      throw new CloudmillError(
        ErrorCode.ENVIRONMENT,
        `could not send ${refused} of ${bodies.length} messages to queue ${this.name}: ${why}`,
      );
    }
  }

  async receive(options: ReceiveOptions = {}): Promise<QueueMessage[]> {
    const { maxMessages, waitSeconds, visibilitySeconds } = validateReceive(options, this.visibilitySeconds);
    const { signal } = options;
    // The poll itself runs on real time; visibility on the (injectable) clock.
    const deadline = performance.now() + waitSeconds * 1000;
    for (;;) {
      if (this.closed || signal?.aborted) return [];
      const got = this.take(maxMessages, visibilitySeconds);
      const left = deadline - performance.now();
      if (got.length > 0 || left <= 0) return got;
      await this.waitUntil(Math.min(left, this.nextVisibleIn()), signal);
    }
  }

  async delete(receiptHandle: string): Promise<void> {
    // As SQS: a stale or unknown handle deletes nothing and is not an error.
    const msg = this.byHandle.get(receiptHandle);
    if (!msg) return;
    this.byHandle.delete(receiptHandle);
    this.messages.delete(msg.id);
  }

  async changeVisibility(receiptHandle: string, seconds: number): Promise<void> {
    validateVisibility(seconds);
    const msg = this.byHandle.get(receiptHandle);
    const now = this.now();
    if (!msg || msg.invisibleUntil <= now) {
      throw new CloudmillError(
        ErrorCode.ENVIRONMENT,
        `cannot change visibility on ${this.name}: message not in flight (receipt handle stale or unknown)`,
      );
    }
    msg.invisibleUntil = now + seconds * 1000;
    if (seconds === 0) this.wakeAll();
  }

  async depth(): Promise<{ readonly visible: number; readonly inFlight: number }> {
    const now = this.now();
    let inFlight = 0;
    for (const msg of this.byHandle.values()) if (msg.invisibleUntil > now) inFlight++;
    return { visible: this.messages.size - inFlight, inFlight };
  }

  /** Ends every pending long poll (they resolve to []); later receives return [] at once. */
  close(): void {
    this.closed = true;
    this.wakeAll();
  }

  /** Takes up to max visible messages, oldest first, redriving those past maxReceiveCount. */
  private take(max: number, visibilitySeconds: number): QueueMessage[] {
    const now = this.now();
    const out: QueueMessage[] = [];
    for (const msg of this.messages.values()) {
      if (out.length >= max) break;
      if (msg.invisibleUntil > now) continue;
      if (msg.handle !== undefined) this.byHandle.delete(msg.handle);
      msg.handle = undefined;
      if (this.deadLetter && msg.receiveCount + 1 > this.deadLetter.maxReceiveCount) {
        // As SQS redrive: moved on the receive that would exceed the limit, not delivered.
        this.messages.delete(msg.id);
        this.deadLetter.queue.enqueue(msg.id, msg.body);
        continue;
      }
      msg.receiveCount++;
      msg.invisibleUntil = now + visibilitySeconds * 1000;
      msg.handle = `${this.prefix}.${msg.id}.${msg.receiveCount}.${randomBytes(4).toString("hex")}`;
      this.byHandle.set(msg.handle, msg);
      out.push({ id: msg.id, body: msg.body, receiptHandle: msg.handle, receiveCount: msg.receiveCount });
    }
    return out;
  }

  private enqueue(id: string, body: string): void {
    this.messages.set(id, { id, body, receiveCount: 0, invisibleUntil: 0, handle: undefined });
    this.wakeAll();
  }

  /** Milliseconds until the earliest in-flight message becomes visible again (Infinity if none). */
  private nextVisibleIn(): number {
    const now = this.now();
    let next = Infinity;
    for (const msg of this.byHandle.values()) {
      if (msg.invisibleUntil > now) next = Math.min(next, msg.invisibleUntil - now);
    }
    return next;
  }

  private waitUntil(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.waiters.delete(waiter);
        resolve();
      };
      const waiter: Waiter = { wake: done };
      const timer = setTimeout(done, Math.max(1, Math.ceil(ms)));
      timer.unref();
      signal?.addEventListener("abort", done, { once: true });
      this.waiters.add(waiter);
    });
  }

  private wakeAll(): void {
    for (const w of [...this.waiters]) w.wake();
  }

  private nextId(): string {
    return `${this.prefix}-${(this.seq++).toString(36).padStart(6, "0")}`;
  }
}
