/**
 * Runs a task's items on worker threads, one item at a time per thread, so that a lab's code
 * cannot take its worker down with it: an item past its time is ended with its thread
 * (ITEM_TIMEOUT), one past its heap is ended by V8 (ITEM_OUT_OF_MEMORY), a thread that dies
 * otherwise fails its item (ITEM_FAILED). The next item gets a fresh thread; idle threads are
 * kept for the next batch.
 *
 * Code an item leaves running (a timer, a listener) can take the thread down after the item
 * ended. A thread that dies between items fails none of them, and one that dies under an item
 * that was not its first (crashed, timed out, out of heap) runs that item again, once, on a fresh
 * thread: only an end of its own there fails it.
 */
import { mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { CloudmillError, ErrorCode, toCloudmillError } from "../core/errors.js";
import type { ItemBatch, ItemOutcome, ItemRunner } from "../core/pipeline/itemRunner.js";
import type { FromThread, ItemThreadData, ToThread } from "./protocol.js";
import { heapLimits } from "./heapLimits.js";
import { threadEntry } from "./threadEntry.js";
import { endThread, STUCK_GRACE_MS } from "./threadExit.js";

export interface ThreadItemRunnerOptions {
  /** The op modules the process loaded (the threads load the same). */
  readonly opsModules: readonly string[];
  /** The thread entry file. Default: itemThread.js beside this module. */
  readonly entry?: string;
  /** The least time a fresh thread has to load the modules before its first item starts. Default MODULE_LOAD_MS. */
  readonly moduleLoadMs?: number;
  /**
   * Makes a new folder for a thread's items' scratch folders, and returns its path. Default a
   * fresh `cloudmill-items-…` in the system's temporary folder.
   */
  readonly scratchRoot?: () => string;
}

type Ended = { readonly code: string; readonly message: string };

/** One thread, started with one heap limit. */
class ItemThread {
  readonly worker: Worker;
  #onMessage: ((m: FromThread) => void) | undefined;
  #onEnd: ((e: Ended) => void) | undefined;
  #ended: Ended | undefined;
  readonly #scratchGone: Promise<void>;
  /** An item ended on this thread: what runs on it may have been left by another. */
  ranOne = false;

  constructor(
    entry: string,
    opsModules: readonly string[],
    readonly memoryMiB: number,
    makeScratchRoot: () => string,
  ) {
    // The thread's items make their scratch in here. A thread ended mid-item (out of time in a
    // loop, out of heap, its own process.exit) never runs its item's clean-up: this goes with it.
    const scratchRoot = makeScratchRoot();
    const data: ItemThreadData = { opsModules, scratchRoot };
    this.worker = new Worker(entry, {
      workerData: data,
      resourceLimits: heapLimits(memoryMiB),
    });
    // Awaited by terminate(): a runner closed as its own thread exits must see it gone first.
    this.#scratchGone = new Promise((resolve) =>
      this.worker.once("exit", () => void rm(scratchRoot, { recursive: true, force: true }).then(resolve, () => resolve())),
    );
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

  /** Listens to the thread until `stop` is called: its messages, and how it ended if it does. */
  listen(onMessage: (m: FromThread) => void, onEnd: (e: Ended) => void): () => void {
    this.#onMessage = onMessage;
    this.#onEnd = onEnd;
    if (this.#ended) onEnd(this.#ended);
    return () => {
      this.#onMessage = undefined;
      this.#onEnd = undefined;
    };
  }

  post(message: ToThread): void {
    if (!this.#ended) this.worker.postMessage(message);
  }

  async terminate(why: Ended): Promise<void> {
    this.#end(why);
    await endThread(this.worker, why.code === ErrorCode.ITEM_TIMEOUT ? STUCK_GRACE_MS : undefined);
    await this.#scratchGone;
  }
}

/** The least time a thread has to load the lab's modules before its first item starts. */
const MODULE_LOAD_MS = 60_000;

/** Most items, and bytes of them (a fraction of the thread's heap), sent to a thread at once. */
const SLICE_ITEMS = 64;
const SLICE_HEAP_FRACTION = 16;

/** The items from `start` that go to the thread in one message: at least one. */
const sliceFrom = (batch: ItemBatch, start: number): { offset: number; value: unknown }[] => {
  const budget = (batch.limits.memoryMiB * 1024 * 1024) / SLICE_HEAP_FRACTION;
  const slice: { offset: number; value: unknown }[] = [];
  let bytes = 0;
  for (let i = start; i < batch.items.length && slice.length < SLICE_ITEMS; i++) {
    const item = batch.items[i]!;
    bytes += JSON.stringify(item.value)?.length ?? 0;
    if (slice.length > 0 && bytes > budget) break;
    slice.push({ offset: item.offset, value: item.value });
  }
  return slice;
};

export class ThreadItemRunner implements ItemRunner {
  readonly #opsModules: readonly string[];
  readonly #entry: string;
  readonly #idle: ItemThread[] = [];
  readonly #busy = new Set<ItemThread>();

  readonly #moduleLoadMs: number;
  readonly #scratchRoot: () => string;
  #closed = false;

  constructor(options: ThreadItemRunnerOptions) {
    this.#opsModules = [...options.opsModules];
    this.#entry = options.entry ?? threadEntry(import.meta.url, "itemThread");
    this.#moduleLoadMs = options.moduleLoadMs ?? MODULE_LOAD_MS;
    this.#scratchRoot = options.scratchRoot ?? (() => mkdtempSync(path.join(os.tmpdir(), "cloudmill-items-")));
  }

  #acquire(memoryMiB: number): ItemThread {
    // A closed runner starts no thread: its scratch folder would outlive the run.
    if (this.#closed) throw new CloudmillError(ErrorCode.CANCELLED, "the item runner is closed");
    const i = this.#idle.findIndex((t) => t.memoryMiB === memoryMiB && t.alive);
    const thread = i >= 0 ? this.#idle.splice(i, 1)[0]! : new ItemThread(this.#entry, this.#opsModules, memoryMiB, this.#scratchRoot);
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

  /**
   * Sends the items to a thread in one message and follows them as it reports each start and
   * end. When the thread dies, the item it was running fails with the reason, and the rest go
   * to a fresh thread.
   */
  async run(batch: ItemBatch): Promise<ItemOutcome[]> {
    const outcomes: ItemOutcome[] = [];
    const rerun = new Set<number>();
    while (outcomes.length < batch.items.length) {
      if (batch.signal?.aborted) throw this.#stopped(batch);
      const thread = this.#acquire(batch.limits.memoryMiB);
      try {
        const failed = await this.#runOn(thread, batch, outcomes, rerun);
        if (failed && batch.stopOnError) {
          if (outcomes.length < batch.items.length)
            await thread.terminate({ code: ErrorCode.CANCELLED, message: "stopped at a failed item" });
          break;
        }
      } finally {
        this.#release(thread);
      }
    }
    if (batch.signal?.aborted) throw this.#stopped(batch);
    return outcomes;
  }

  #stopped(batch: ItemBatch): CloudmillError {
    return toCloudmillError(batch.signal?.reason ?? new CloudmillError(ErrorCode.CANCELLED, "stopped"));
  }

  /**
   * Runs items from `outcomes.length` on, appending an outcome per item. Resolves true at a failed
   * item when the batch stops at one, at the end of the batch, or once the thread has died.
   * `rerun`: the items already run again after a crash that may have been another's.
   */
  #runOn(thread: ItemThread, batch: ItemBatch, outcomes: ItemOutcome[], rerun: Set<number>): Promise<boolean> {
    const first = outcomes.length;
    const seconds = batch.limits.timeoutMs / 1000;
    let files: string[] = [];
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    /** The item the thread is running (undefined between items). */
    let running: number | undefined;
    return new Promise<boolean>((resolve, reject) => {
      const settle = (): void => {
        settled = true;
        clearTimeout(timer);
        stop();
        batch.signal?.removeEventListener("abort", onAbort);
        batch.drain?.removeEventListener("abort", onDrain);
      };
      /** Ends the batch without an outcome for the item: the thread (which holds later items) ends too. */
      const release = (error: CloudmillError): void => {
        settle();
        void thread.terminate({ code: error.code, message: error.message });
        reject(error);
      };
      const record = (outcome: ItemOutcome): void => {
        if (!outcome.ok && batch.drain?.aborted) {
          // Most likely the item gave up because the worker is stopping: another worker runs the chunk.
          release(
            new CloudmillError(ErrorCode.CANCELLED, `task ${batch.task}: an item ended while the worker was stopping; chunk released`),
          );
          return;
        }
        if (!outcome.ok && outcome.code === ErrorCode.ENVIRONMENT) {
          // S3 failed the item (a ctx.put throttled): not the item's fault, so the chunk is tried again.
          release(new CloudmillError(ErrorCode.ENVIRONMENT, `task ${batch.task}: ${outcome.message}`));
          return;
        }
        outcomes.push(outcome);
        files = [];
        if ((!outcome.ok && batch.stopOnError) || outcomes.length === batch.items.length) {
          settle();
          resolve(!outcome.ok);
          return;
        }
        if (outcomes.length === sent) sendMore();
      };
      const stop = thread.listen(
        (m) => {
          switch (m.kind) {
            case "start":
              clearTimeout(timer);
              running = m.index;
              timer = setTimeout(() => {
                void thread.terminate({ code: ErrorCode.ITEM_TIMEOUT, message: `did not finish within ${seconds} s (timeoutSeconds)` });
              }, batch.limits.timeoutMs);
              return;
            case "done":
              clearTimeout(timer);
              running = undefined;
              thread.ranOne = true;
              // The next item must start in its time too: code an item left running can hold the thread.
              timer = setTimeout(() => {
                void thread.terminate({ code: ErrorCode.ITEM_FAILED, message: "code an item left running held its thread" });
              }, batch.limits.timeoutMs);
              record(m.ok ? { ok: true, value: m.value, files } : { ok: false, code: m.code, message: m.message, files });
              return;
            case "put": {
              const owner = files;
              batch.put(m.name, m.body).then(
                (key) => {
                  owner.push(key);
                  thread.post({ kind: "put-done", id: m.id, key });
                },
                (err: unknown) => {
                  const e = toCloudmillError(err);
                  // Only the store's own failure (S3 throttled) has the chunk tried again; any other
                  // (a name the filesystem cannot hold beside another) is the item's and would recur.
                  const code = e.code === ErrorCode.ENVIRONMENT ? e.code : ErrorCode.ITEM_FAILED;
                  thread.post({ kind: "put-failed", id: m.id, code, message: e.message });
                },
              );
              return;
            }
            case "log":
              batch.log[m.level](m.message, m.fields);
              return;
          }
        },
        (ended) => {
          if (batch.signal?.aborted) {
            settle();
            reject(this.#stopped(batch));
            return;
          }
          if (settled) return;
          // Ended on purpose (the runner closed: the run is stopping): no item of the batch runs again.
          if (ended.code === ErrorCode.CANCELLED) {
            settle();
            reject(new CloudmillError(ErrorCode.CANCELLED, `task ${batch.task}: ${ended.message}`));
            return;
          }
          const index = running ?? outcomes.length;
          // Dead between items, or under an item after others ran on it (a crash, a timeout, a heap
          // spent): the cause may be code an earlier item left running, so the item goes to a fresh
          // thread, once.
          const another = thread.ranOne && (running === undefined || !rerun.has(index));
          if (another) {
            if (running !== undefined) rerun.add(index);
            batch.log.warn(`task ${batch.task}: an item thread ended (${ended.message}); item ${index} goes to a fresh thread`, {
              item: index,
            });
            settle();
            resolve(false);
            return;
          }
          // The item it was running (or, if it died before one started, the next one) fails with the reason.
          record({ ok: false, code: ended.code, message: ended.message, files });
          if (!settled) {
            settle();
            resolve(false);
          }
        },
      );
      const onAbort = (): void => {
        thread.post({ kind: "abort", reason: "the worker is stopping" });
        void thread.terminate({ code: ErrorCode.CANCELLED, message: "the worker stopped" });
      };
      const onDrain = (): void => thread.post({ kind: "abort", reason: "the worker is stopping" });
      batch.signal?.addEventListener("abort", onAbort, { once: true });
      if (batch.drain?.aborted) onDrain();
      batch.drain?.addEventListener("abort", onDrain, { once: true });
      // Items go over in slices: the thread's heap holds a slice, not the whole batch, beside the item it runs.
      let sent = first;
      const sendMore = (): void => {
        const slice = sliceFrom(batch, sent);
        thread.post({ kind: "items", task: batch.task, params: batch.params, base: sent, items: slice });
        sent += slice.length;
      };
      // A fresh thread loads the lab's modules before its first item's clock starts: a load that
      // never ends is bounded too, by the longer of MODULE_LOAD_MS and the item's own limit.
      const loadSeconds = Math.max(this.#moduleLoadMs, batch.limits.timeoutMs) / 1000;
      timer = setTimeout(() => {
        void thread.terminate({
          code: ErrorCode.ITEM_TIMEOUT,
          message: `its thread did not load the task's modules within ${loadSeconds} s`,
        });
      }, loadSeconds * 1000);
      sendMore();
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#idle, ...this.#busy];
    this.#idle.length = 0;
    this.#busy.clear();
    await Promise.all(all.map((t) => t.terminate({ code: ErrorCode.CANCELLED, message: "the runner closed" })));
  }
}
