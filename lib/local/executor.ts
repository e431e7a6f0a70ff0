/**
 * Where tasks run in the local engine: inline (this thread) or on worker threads, one
 * task at a time per thread. A thread that dies is replaced; its task fails and is retried.
 * Either way a task may also be merged into its thread's running total (accumulate.ts).
 */
import { Worker } from "node:worker_threads";
import { DEFAULTS } from "../core/constants.js";
import { MAX_TIMER_MS } from "../core/sleep.js";
import { CloudmillError, ErrorCode, toCloudmillError, type SerializedError } from "../core/errors.js";
import type { TaskMessage } from "../core/job/manifest.js";
import type { PipelineDeps } from "../core/pipeline/deps.js";
import { runTask, type TaskOutcome } from "../core/pipeline/task.js";
import { heapLimits, outOfMemory } from "../sandbox/heapLimits.js";
import { threadEntry } from "../sandbox/threadEntry.js";
import { endThread, STUCK_GRACE_MS, type ExitRequest } from "../sandbox/threadExit.js";
import type { MergedParts } from "../core/pipeline/partMerge.js";
import { Accumulators, withoutPartial } from "./accumulate.js";
import type { ThreadLog } from "../core/log.js";

export interface RunOptions {
  readonly signal?: AbortSignal;
  /** Also merge the chunk's partial into the running total of the thread that maps it. */
  readonly accumulate?: boolean;
  /**
   * false (with accumulate): write no part, so the thread's running total alone holds the
   * chunk, and a thread that dies loses it (collect() then names no total with it).
   */
  readonly writePart?: boolean;
}

/** A chunk not merged into a thread's total must have its part: only an accumulated one may skip it. */
const writesPart = (options: RunOptions): boolean => !(options.accumulate ?? false) || (options.writePart ?? true);

export interface TaskExecutor {
  /** Starts up to `tasks` threads now, ahead of their first task (no-op inline). */
  warm(tasks: number): void;
  run(task: TaskMessage, options?: RunOptions): Promise<TaskOutcome>;
  /**
   * The running totals of the job, one per thread that still holds one (and forgets them).
   * A thread that died took its total with it: its chunks are in no list.
   */
  collect(jobId: string): Promise<MergedParts[]>;
  close(): Promise<void>;
}

export const inlineExecutor = (deps: PipelineDeps): TaskExecutor => {
  const accumulators = new Accumulators(deps.registry);
  return {
    warm: () => {},
    async run(task, options = {}) {
      const outcome = await runTask(deps, task, { signal: options.signal, writePart: writesPart(options), checkOpDigest: false });
      if (options.accumulate) accumulators.add(task, outcome);
      return withoutPartial(outcome);
    },
    collect: async (jobId) => {
      const taken = accumulators.take(jobId);
      return taken ? [taken] : [];
    },
    close: async () => {},
  };
};

/** What a task thread is started with. */
export interface ThreadData {
  readonly outputRoot: string;
  /** What the output root's failures name first (FsBlobStore's label): `TMPDIR /tmp` for a run's work folder there. */
  readonly outputLabel?: string;
  readonly opsModules: readonly string[];
  /** What the thread logs (a lab's ctx.log, the item runner's warnings): as the run's own log shows. */
  readonly log?: ThreadLog;
  /** The job's heap limit per thread (taskMemoryMiB); past it V8 ends the thread and its task fails with OUT_OF_MEMORY. */
  readonly memoryMiB?: number;
}

export type ThreadRequest =
  | { readonly kind: "run"; readonly task: TaskMessage; readonly accumulate: boolean; readonly writePart: boolean }
  /** The thread's total, with `absorb` (other threads' totals) merged into it. */
  | { readonly kind: "collect"; readonly jobId: string; readonly absorb: readonly MergedParts[] }
  | ExitRequest;

export type ThreadReply =
  | { ok: true; outcome: TaskOutcome }
  | { ok: true; collected: MergedParts[] }
  | { ok: false; error: SerializedError };

/** What a thread says unasked: its modules (and the job's op modules) are loaded. */
export interface ThreadReady {
  readonly ready: true;
}

/** One worker thread that handles one request at a time. */
class TaskThread {
  #worker: Worker | undefined;
  #pending: { resolve: (r: ThreadReply & { ok: true }) => void; reject: (e: unknown) => void } | undefined;
  /** Threads ended on purpose and not yet gone. */
  readonly #ending = new Set<Promise<void>>();

  constructor(
    private readonly data: ThreadData,
    private readonly taskTimeoutSeconds: number,
  ) {}

  /** Settles once the current thread has loaded its modules (or died trying). */
  #booted: Promise<void> = Promise.resolve();

  #start(): Worker {
    const memoryMiB = this.data.memoryMiB;
    const worker = new Worker(threadEntry(import.meta.url, "taskThread"), {
      workerData: this.data,
      ...(memoryMiB !== undefined ? { resourceLimits: heapLimits(memoryMiB) } : {}),
    });
    let booted!: () => void;
    this.#booted = new Promise((resolve) => (booted = resolve));
    worker.once("exit", () => booted());
    worker.on("message", (reply: ThreadReply | ThreadReady) => {
      if ("ready" in reply) return booted();
      // A thread being ended may still answer the task it was ended for: that answer is no one's.
      if (this.#worker !== worker) return;
      const p = this.#pending;
      this.#pending = undefined;
      if (!p) return;
      if (reply.ok) p.resolve(reply);
      else p.reject(toCloudmillError(reply.error));
    });
    const die = (why: string, cause?: CloudmillError) => {
      // An "error" is followed by an "exit": only the first, of the current worker, counts.
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      const p = this.#pending;
      this.#pending = undefined;
      p?.reject(cause ?? new CloudmillError(ErrorCode.ENVIRONMENT, `worker thread ${why}`));
    };
    worker.on("error", (err: Error & { code?: string }) =>
      die(`crashed: ${err.message}`, err.code === "ERR_WORKER_OUT_OF_MEMORY" ? outOfMemory(memoryMiB, "taskMemoryMiB") : undefined),
    );
    worker.on("exit", (code) => die(`exited with code ${code}`));
    return worker;
  }

  #request(worker: Worker, request: ThreadRequest): Promise<ThreadReply & { ok: true }> {
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
      worker.postMessage(request);
    });
  }

  /**
   * Ends `worker` on purpose: from now on it is not this slot's thread (the next request starts
   * a fresh one, and whatever it still answers is dropped), and its request fails with `why`.
   */
  #end(worker: Worker, why: CloudmillError, graceMs?: number): void {
    if (this.#worker !== worker) return;
    this.#worker = undefined;
    const p = this.#pending;
    this.#pending = undefined;
    p?.reject(why);
    // close() waits for it: a thread still ending may still write into the work directory.
    const ending = endThread(worker, graceMs).finally(() => this.#ending.delete(ending));
    this.#ending.add(ending);
  }

  /** Starts the thread ahead of its first task, so that its boot overlaps the job's planning. */
  warm(): void {
    this.#worker ??= this.#start();
  }

  async run(task: TaskMessage, options: RunOptions): Promise<TaskOutcome> {
    const worker = (this.#worker ??= this.#start());
    // Past its time (the job's own, else the run's) the task's thread is ended: an op that never returns cannot be interrupted.
    // The time counts from the thread's boot: loading modules on a busy machine is not the chunk's time.
    const seconds = task.job.taskTimeoutSeconds ?? this.taskTimeoutSeconds;
    // No limit (a task's chunk, whose items have their own): no timer, which past Node's longest would fire at once.
    const limited = seconds * 1000 <= MAX_TIMER_MS;
    await (limited
      ? Promise.race([this.#booted, new Promise<void>((resolve) => setTimeout(resolve, seconds * 1000).unref())])
      : this.#booted);
    if (this.#worker !== worker) throw new CloudmillError(ErrorCode.ENVIRONMENT, "worker thread exited while it started");
    // Stopped (the job ended, or another copy of the chunk finished first): the thread goes with
    // its total, whose chunks the engine maps again if it needs them.
    const stop = (): void => this.#end(worker, new CloudmillError(ErrorCode.CANCELLED, "the task was stopped"));
    if (options.signal?.aborted) {
      stop();
      throw new CloudmillError(ErrorCode.CANCELLED, "the task was stopped");
    }
    const timer = limited
      ? setTimeout(
          () =>
            this.#end(
              worker,
              new CloudmillError(ErrorCode.TASK_TIMEOUT, `the chunk did not finish within ${seconds} s (taskTimeoutSeconds)`),
              STUCK_GRACE_MS,
            ),
          seconds * 1000,
        )
      : undefined;
    options.signal?.addEventListener("abort", stop, { once: true });
    let reply: ThreadReply & { ok: true };
    try {
      reply = await this.#request(worker, {
        kind: "run",
        task,
        accumulate: options.accumulate ?? false,
        writePart: writesPart(options),
      });
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", stop);
    }
    if (!("outcome" in reply)) throw new CloudmillError(ErrorCode.INTERNAL, "worker thread answered a task with no outcome");
    return reply.outcome;
  }

  /**
   * The thread's total with `absorb` merged in (or beside it, when it has none). Only a
   * thread that is alive holds a total; one never started, dead, or dying now has none, and
   * one that dies now takes `absorb` with it.
   */
  async collect(jobId: string, absorb: readonly MergedParts[] = []): Promise<MergedParts[]> {
    if (!this.#worker) return [...absorb];
    try {
      const reply = await this.#request(this.#worker, { kind: "collect", jobId, absorb });
      if ("collected" in reply) return reply.collected;
    } catch {
      // Dead, or it failed mid-merge: what it holds is not to be trusted. Ending it makes the
      // loss real, and the chunks of these totals are mapped again.
    }
    await this.close();
    return [];
  }

  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    if (w) await endThread(w);
    await Promise.all(this.#ending);
  }
}

/**
 * A pool of `size` threads; callers never run more than `size` tasks at once. A task past
 * `taskTimeoutSeconds` ends its thread and fails with TASK_TIMEOUT (a failed attempt).
 */
export const threadExecutor = (size: number, data: ThreadData, taskTimeoutSeconds: number = DEFAULTS.taskTimeoutSeconds): TaskExecutor => {
  const idle: TaskThread[] = Array.from({ length: size }, () => new TaskThread(data, taskTimeoutSeconds));
  const all = [...idle];
  return {
    warm: (tasks) => {
      // The threads run() takes first: the last ones.
      for (const t of all.slice(Math.max(0, all.length - tasks))) t.warm();
    },
    async run(task, options = {}) {
      const thread = idle.pop();
      if (!thread) throw new CloudmillError(ErrorCode.INTERNAL, "more tasks than threads");
      try {
        return await thread.run(task, options);
      } finally {
        idle.push(thread);
      }
    },
    async collect(jobId) {
      if (idle.length !== all.length) throw new CloudmillError(ErrorCode.INTERNAL, "collect while tasks run");
      // The last thread merges the others' totals: its dictionary knows their words, and the
      // main thread, whose code is cold, then has one total to finalize, not several to merge.
      const [last, ...others] = [...all].reverse();
      const taken = await Promise.all(others.map((t) => t.collect(jobId)));
      return last ? last.collect(jobId, taken.flat()) : [];
    },
    close: async () => {
      await Promise.all(all.map((t) => t.close()));
    },
  };
};
