/**
 * Runs a task's items on worker threads, one item at a time per thread, so that a lab's code
 * cannot take its worker down with it: an item past its time is ended with its thread
 * (ITEM_TIMEOUT), one past its heap is ended by V8 (ITEM_OUT_OF_MEMORY), a thread that dies
 * otherwise fails its item (ITEM_FAILED). The next item gets a fresh thread; idle threads are
 * kept for the next batch.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { CloudmillError, ErrorCode, toCloudmillError } from "../core/errors.js";
import type { ItemBatch, ItemOutcome, ItemRunner } from "../core/pipeline/items.js";
import type { FromThread, ItemThreadData, ToThread } from "./protocol.js";

/** The thread's entry beside this file, compiled: from sources (vitest, tsx), the build in dist/. */
const defaultEntry = (): string => {
  const here = fileURLToPath(import.meta.url);
  const beside = here.replace(/\.ts$/, ".js").replace(/ThreadItemRunner\.js$/, "itemThread.js");
  if (!here.endsWith(".ts")) return beside;
  const compiled = beside.replace(/([\\/])lib([\\/])sandbox([\\/])/, "$1dist$1lib$2sandbox$3");
  if (!existsSync(compiled)) throw new CloudmillError(ErrorCode.INTERNAL, `item thread not built: ${compiled} (npm run build)`);
  return compiled;
};

export interface ThreadItemRunnerOptions {
  /** The op modules the process loaded (the threads load the same). */
  readonly opsModules: readonly string[];
  /** The thread entry file. Default: itemThread.js beside this module. */
  readonly entry?: string;
}

type Ended = { readonly code: string; readonly message: string };

/** One thread, started with one heap limit. */
class ItemThread {
  readonly worker: Worker;
  #onMessage: ((m: FromThread) => void) | undefined;
  #onEnd: ((e: Ended) => void) | undefined;
  #ended: Ended | undefined;

  constructor(
    entry: string,
    data: ItemThreadData,
    readonly memoryMiB: number,
  ) {
    this.worker = new Worker(entry, {
      workerData: data,
      resourceLimits: { maxOldGenerationSizeMb: memoryMiB, maxYoungGenerationSizeMb: Math.min(64, Math.max(4, memoryMiB / 8)) },
    });
    this.worker.on("message", (m: FromThread) => this.#onMessage?.(m));
    this.worker.on("error", (err: Error & { code?: string }) =>
      this.#end(
        err.code === "ERR_WORKER_OUT_OF_MEMORY"
          ? { code: ErrorCode.ITEM_OUT_OF_MEMORY, message: `used more than its ${memoryMiB} MiB of heap (memoryMiB)` }
          : { code: ErrorCode.ITEM_FAILED, message: `its thread crashed: ${err.message}` },
      ),
    );
    this.worker.on("exit", (code) => this.#end({ code: ErrorCode.ITEM_FAILED, message: `its thread exited (code ${code})` }));
  }

  get alive(): boolean {
    return this.#ended === undefined;
  }

  #end(why: Ended): void {
    if (this.#ended) return;
    this.#ended = why;
    this.#onEnd?.(why);
  }

  /** Runs one item; resolves with the thread's answer or with how the thread ended. */
  run(message: ToThread, onMessage: (m: FromThread) => void): Promise<Ended | undefined> {
    return new Promise((resolve) => {
      if (this.#ended) return resolve(this.#ended);
      this.#onMessage = (m) => {
        if (m.kind === "done") resolve(undefined);
        onMessage(m);
      };
      this.#onEnd = (e) => resolve(e);
      this.worker.postMessage(message);
    }).finally(() => {
      this.#onMessage = undefined;
      this.#onEnd = undefined;
    }) as Promise<Ended | undefined>;
  }

  post(message: ToThread): void {
    if (!this.#ended) this.worker.postMessage(message);
  }

  async terminate(why: Ended): Promise<void> {
    this.#end(why);
    await this.worker.terminate();
  }
}

export class ThreadItemRunner implements ItemRunner {
  readonly #data: ItemThreadData;
  readonly #entry: string;
  readonly #idle: ItemThread[] = [];
  readonly #busy = new Set<ItemThread>();

  constructor(options: ThreadItemRunnerOptions) {
    this.#data = { opsModules: [...options.opsModules] };
    this.#entry = options.entry ?? defaultEntry();
  }

  #acquire(memoryMiB: number): ItemThread {
    const i = this.#idle.findIndex((t) => t.memoryMiB === memoryMiB && t.alive);
    const thread = i >= 0 ? this.#idle.splice(i, 1)[0]! : new ItemThread(this.#entry, this.#data, memoryMiB);
    thread.worker.ref();
    this.#busy.add(thread);
    return thread;
  }

  #release(thread: ItemThread): void {
    this.#busy.delete(thread);
    if (!thread.alive) return;
    thread.worker.unref();
    this.#idle.push(thread);
  }

  async run(batch: ItemBatch): Promise<ItemOutcome[]> {
    const outcomes: ItemOutcome[] = [];
    let thread: ItemThread | undefined;
    const stopped = (): never => {
      throw toCloudmillError(batch.signal?.reason ?? new CloudmillError(ErrorCode.CANCELLED, "stopped"));
    };
    try {
      for (const item of batch.items) {
        if (batch.signal?.aborted) stopped();
        thread ??= this.#acquire(batch.limits.memoryMiB);
        const outcome = await this.#runOne(thread, batch, item.offset, item.value);
        if (!thread.alive) {
          this.#busy.delete(thread);
          thread = undefined;
        }
        if (batch.signal?.aborted) stopped();
        if (!outcome.ok && batch.drain?.aborted) {
          // Most likely the item gave up because the worker is stopping: another worker runs the chunk.
          throw new CloudmillError(ErrorCode.CANCELLED, `task ${batch.task}: an item ended while the worker was stopping; chunk released`);
        }
        outcomes.push(outcome);
        if (!outcome.ok && batch.stopOnError) break;
      }
    } finally {
      if (thread) this.#release(thread);
    }
    return outcomes;
  }

  async #runOne(thread: ItemThread, batch: ItemBatch, offset: number, value: unknown): Promise<ItemOutcome> {
    const files: string[] = [];
    let answer: ItemOutcome | undefined;
    const seconds = batch.limits.timeoutMs / 1000;
    const timer = setTimeout(() => {
      void thread.terminate({ code: ErrorCode.ITEM_TIMEOUT, message: `did not finish within ${seconds} s (timeoutSeconds)` });
    }, batch.limits.timeoutMs);
    const onAbort = (): void => {
      thread.post({ kind: "abort", reason: "the worker is stopping" });
      void thread.terminate({ code: ErrorCode.CANCELLED, message: "the worker stopped" });
    };
    batch.signal?.addEventListener("abort", onAbort, { once: true });
    const onDrain = (): void => thread.post({ kind: "abort", reason: "the worker is stopping" });
    if (batch.drain?.aborted) onDrain();
    batch.drain?.addEventListener("abort", onDrain, { once: true });
    try {
      const ended = await thread.run({ kind: "item", task: batch.task, params: batch.params, offset, value }, (m) => {
        switch (m.kind) {
          case "done":
            answer = m.ok ? { ok: true, value: m.value, files } : { ok: false, code: m.code, message: m.message, files };
            return;
          case "put":
            batch.put(m.name, m.body).then(
              (key) => {
                files.push(key);
                thread.post({ kind: "put-done", id: m.id, key });
              },
              (err: unknown) => thread.post({ kind: "put-failed", id: m.id, message: toCloudmillError(err).message }),
            );
            return;
          case "log":
            batch.log[m.level](m.message, m.fields);
            return;
        }
      });
      return answer ?? { ok: false, code: ended!.code, message: ended!.message, files };
    } finally {
      clearTimeout(timer);
      batch.signal?.removeEventListener("abort", onAbort);
      batch.drain?.removeEventListener("abort", onDrain);
    }
  }

  async close(): Promise<void> {
    const all = [...this.#idle, ...this.#busy];
    this.#idle.length = 0;
    this.#busy.clear();
    await Promise.all(all.map((t) => t.terminate({ code: ErrorCode.CANCELLED, message: "the runner closed" })));
  }
}
