/**
 * Where tasks run in the local engine: inline (this thread) or on worker threads, one
 * task at a time per thread. A thread that dies is replaced; its task fails and is retried.
 */
import { Worker } from "node:worker_threads";
import { CloudmillError, ErrorCode, toCloudmillError, type SerializedError } from "../errors.js";
import type { TaskMessage } from "../job/manifest.js";
import type { PipelineDeps } from "../pipeline/deps.js";
import { runTask, type TaskOutcome } from "../pipeline/task.js";
import { compiledFile } from "../paths.js";

export interface TaskExecutor {
  run(task: TaskMessage, signal?: AbortSignal): Promise<TaskOutcome>;
  close(): Promise<void>;
}

export const inlineExecutor = (deps: PipelineDeps): TaskExecutor => ({
  run: (task, signal) => runTask(deps, task, signal),
  close: async () => {},
});

/** What a task thread is started with. */
export interface ThreadData {
  readonly outputRoot: string;
  readonly opsModules: readonly string[];
}

export type ThreadReply = { ok: true; outcome: TaskOutcome } | { ok: false; error: SerializedError };

/** The compiled thread entry (under vitest, too, the build in dist/ is what runs). */
const threadEntry = (): string => compiledFile("lib/engine/taskThread.js");

/** One worker thread that runs one task at a time. */
class TaskThread {
  #worker: Worker | undefined;
  #pending: { resolve: (r: TaskOutcome) => void; reject: (e: unknown) => void } | undefined;

  constructor(private readonly data: ThreadData) {}

  #start(): Worker {
    const worker = new Worker(threadEntry(), { workerData: this.data });
    worker.on("message", (reply: ThreadReply) => {
      const p = this.#pending;
      this.#pending = undefined;
      if (!p) return;
      if (reply.ok) p.resolve(reply.outcome);
      else p.reject(toCloudmillError(reply.error));
    });
    const die = (why: string) => {
      this.#worker = undefined;
      const p = this.#pending;
      this.#pending = undefined;
      p?.reject(new CloudmillError(ErrorCode.ENVIRONMENT, `worker thread ${why}`));
    };
    worker.on("error", (err) => die(`crashed: ${err.message}`));
    worker.on("exit", (code) => die(`exited with code ${code}`));
    return worker;
  }

  run(task: TaskMessage): Promise<TaskOutcome> {
    this.#worker ??= this.#start();
    const worker = this.#worker;
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
      worker.postMessage(task);
    });
  }

  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    if (w) await w.terminate();
  }
}

/** A pool of `size` threads; callers never run more than `size` tasks at once. */
export const threadExecutor = (size: number, data: ThreadData): TaskExecutor => {
  const idle: TaskThread[] = Array.from({ length: size }, () => new TaskThread(data));
  const all = [...idle];
  return {
    async run(task) {
      const thread = idle.pop();
      if (!thread) throw new CloudmillError(ErrorCode.INTERNAL, "more tasks than threads");
      try {
        return await thread.run(task);
      } finally {
        idle.push(thread);
      }
    },
    close: async () => {
      await Promise.all(all.map((t) => t.close()));
    },
  };
};
