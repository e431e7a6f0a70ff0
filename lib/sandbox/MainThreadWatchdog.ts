/**
 * Guards op code that runs on the worker's main thread (lib/core/pipeline/opGuard.ts). A thread
 * of its own watches a few shared integers the guarded calls set as they enter and leave: when
 * one call has been running longer than its task's limit, the main thread is stuck in op code
 * (nothing else can run there until it returns), so the watchdog writes one line naming the
 * task to standard error, straight to the descriptor (the main thread, which would carry
 * `process.stderr`, is stuck), and ends the process. ECS starts a new worker; the task's message
 * returns after its visibility timeout, and after its last attempt the dead-letter handler
 * fails the job. The thread is a few lines of plain JavaScript, started from source, so every
 * bundle that runs the worker carries it.
 */
import { Worker } from "node:worker_threads";
import type { GuardedTask, MainThreadGuard } from "../core/ports.js";

/**
 * Slots of the shared state: a counter every enter and leave moves, calls in progress, whose
 * call, its limit, and whether that limit is the one every call has (mostSeconds), not its task's.
 */
const SEQ = 0;
const DEPTH = 1;
const SLOT = 2;
const LIMIT_SECONDS = 3;
const CAPPED = 4;

export interface MainThreadWatchdogOptions {
  /** A task's limit when it names none (the worker's task timeout). */
  readonly defaultLimitSeconds: number;
  /**
   * The longest any one call may run, whatever its task's limit: the main thread sends the
   * heartbeats of every task on the worker, and past this their messages would return to the
   * queue while they still run (a visibility timeout less a heartbeat, and a margin). Default: none.
   */
  readonly mostSeconds?: number;
  /** How often the watchdog looks. Default 250 ms. */
  readonly pollMs?: number;
  /** Told if the watchdog's own thread fails. */
  readonly onError?: (err: Error) => void;
}

const WATCHDOG_SOURCE = `
const { workerData, parentPort } = require("node:worker_threads");
const { writeSync } = require("node:fs");
const state = workerData.state;
const labels = new Map();
parentPort.on("message", (m) => (m.done ? labels.delete(m.slot) : labels.set(m.slot, m.label)));
let seen = -1;
let since = Date.now();
setInterval(() => {
  const seq = Atomics.load(state, ${SEQ});
  const now = Date.now();
  if (Atomics.load(state, ${DEPTH}) === 0 || seq !== seen) {
    seen = seq;
    since = now;
    return;
  }
  const limitSeconds = Atomics.load(state, ${LIMIT_SECONDS});
  if (now - since < limitSeconds * 1000) return;
  const task = labels.get(Atomics.load(state, ${SLOT})) || "a task";
  const limit = Atomics.load(state, ${CAPPED})
    ? "past the " + limitSeconds + "s one call there may take before the worker's task messages return to the queue " +
      "(its visibility timeout, less a heartbeat and 5 s; a longer call needs a longer visibilityTimeout)"
    : "past its task's limit of " + limitSeconds + "s";
  const message = "op code ran on the worker's main thread " + limit + ": ending the worker, so that its tasks run again elsewhere";
  try {
    const stuckSeconds = Math.round((now - since) / 1000);
    writeSync(2, JSON.stringify({ level: "ERROR", message, task, stuckSeconds, pid: process.pid }) + "\\n");
  } finally {
    // Needs an init process when node is PID 1 (ECS's initProcessEnabled; \`docker run --init\`).
    process.kill(process.pid, "SIGKILL");
  }
}, workerData.pollMs);
`;

export class MainThreadWatchdog implements MainThreadGuard {
  readonly #state = new Int32Array(new SharedArrayBuffer(5 * Int32Array.BYTES_PER_ELEMENT));
  readonly #thread: Worker;
  readonly #defaultLimitSeconds: number;
  readonly #mostSeconds: number;
  #nextSlot = 0;

  constructor(options: MainThreadWatchdogOptions) {
    this.#defaultLimitSeconds = options.defaultLimitSeconds;
    this.#mostSeconds = options.mostSeconds ?? Number.POSITIVE_INFINITY;
    this.#thread = new Worker(WATCHDOG_SOURCE, {
      eval: true,
      // Not the process's flags: under --input-type=module the source would be read as a module, without require.
      execArgv: [],
      workerData: { state: this.#state, pollMs: options.pollMs ?? 250 },
    });
    // It watches; it does not keep the process alive. A watchdog that fails leaves the worker unguarded, not ended.
    this.#thread.unref();
    this.#thread.on("error", (err) => options.onError?.(err));
  }

  task(label: string, limitSeconds = this.#defaultLimitSeconds): GuardedTask {
    const slot = (this.#nextSlot = (this.#nextSlot % 0x7fff_fffe) + 1);
    const state = this.#state;
    const capped = this.#mostSeconds < limitSeconds ? 1 : 0;
    const limit = Math.max(1, Math.min(0x7fff_ffff, Math.ceil(Math.min(limitSeconds, this.#mostSeconds))));
    this.#thread.postMessage({ slot, label });
    return {
      // Plain writes, not Atomics: a guarded call is on a hot path (a reduce's every combine),
      // and the watchdog, reading with Atomics, needs to see them within a poll, not at once.
      run: <T>(fn: () => T): T => {
        const outerSlot = state[SLOT]!;
        const outerLimit = state[LIMIT_SECONDS]!;
        const outerCapped = state[CAPPED]!;
        state[SLOT] = slot;
        state[LIMIT_SECONDS] = limit;
        state[CAPPED] = capped;
        state[DEPTH]!++;
        state[SEQ]!++;
        try {
          return fn();
        } finally {
          state[SEQ]!++;
          state[DEPTH]!--;
          state[SLOT] = outerSlot;
          state[LIMIT_SECONDS] = outerLimit;
          state[CAPPED] = outerCapped;
        }
      },
      close: () => this.#thread.postMessage({ slot, done: true }),
    };
  }

  async close(): Promise<void> {
    await this.#thread.terminate();
  }
}
