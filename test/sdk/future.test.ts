/**
 * JobFuture, waitAll and asCompleted over a scripted backend with fake timers: how often they
 * poll, that they stop polling when they should, and that they leave no timer behind. The
 * same behaviours against the emulated cloud are in cloud.test.ts and timeout.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { asCompleted, waitAll } from "../../lib/sdk/futures.js";
import { JobFuture, type JobBackend } from "../../lib/sdk/JobFuture.js";
import type { JobStatus } from "../../lib/sdk/types.js";

interface Scripted extends JobBackend {
  readonly reads: number[];
}

/** A job whose status at time t (ms since start) the script gives; its result is `result`. */
const scripted = (script: (t: number) => Omit<JobStatus, "jobId">, result: unknown = { ok: true }): Scripted => {
  const start = Date.now();
  const reads: number[] = [];
  return {
    reads,
    poll: {},
    readStatus: async (jobId) => {
      reads.push(Date.now() - start);
      return { jobId, ...script(Date.now() - start) };
    },
    readResult: async () => result,
    cancel: async (jobId) => ({ jobId, state: "cancelled", chunks: 0, done: 0 }),
    retry: async () => {
      throw new Error("not scripted");
    },
  };
};

const running = (done = 0, chunks = 200): Omit<JobStatus, "jobId"> => ({ state: "running", chunks, done });

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("JobFuture.result", () => {
  it("polls status once per poll, backing off from 250 ms to 5 s: a 200-chunk job of 60 s costs under 20 reads", async () => {
    const backend = scripted((t) => (t >= 60_000 ? { state: "succeeded", chunks: 200, done: 200 } : running(Math.floor(t / 300))), {
      records: 7,
    });
    const future = new JobFuture("job-a", backend);
    const result = future.result();
    await vi.advanceTimersByTimeAsync(70_000);
    await expect(result).resolves.toEqual({ records: 7 });
    expect(backend.reads.length).toBeLessThan(20);
    const gaps = backend.reads.slice(1).map((t, i) => t - backend.reads[i]!);
    expect(gaps[0]).toBe(250);
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]!).toBeGreaterThanOrEqual(gaps[i - 1]!);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(5000);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("reads the status again after a read that failed (ENVIRONMENT); rejects only when reads keep failing", async () => {
    let failures = 1;
    const base = scripted((t) => (t >= 2000 ? { state: "succeeded", chunks: 1, done: 1 } : running()), { records: 3 });
    const blip: JobBackend = {
      ...base,
      readStatus: async (jobId, options) => {
        if (failures-- > 0) throw new CloudmillError(ErrorCode.ENVIRONMENT, "cannot read status.json: socket hang up");
        return base.readStatus(jobId, options);
      },
    };
    const future = new JobFuture("job-blip", blip);
    const order: string[] = [];
    const done = (async () => {
      for await (const f of asCompleted([future])) order.push(`${f.id}: ${(await f.status()).state}`);
    })();
    await vi.advanceTimersByTimeAsync(10_000);
    await done;
    // Yielded once its job ended, not at the failed read.
    expect(order).toEqual(["job-blip: succeeded"]);
    await expect(future.result()).resolves.toEqual({ records: 3 });

    const down: JobBackend = {
      ...base,
      readStatus: async () => {
        throw new CloudmillError(ErrorCode.ENVIRONMENT, "cannot read status.json: ECONNREFUSED");
      },
    };
    const lost = new JobFuture("job-down", down).result().catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(await lost).toMatchObject({ code: "ENVIRONMENT", message: expect.stringContaining("ECONNREFUSED") });
    expect(vi.getTimerCount()).toBe(0);
  });

  it("reads a succeeded job's result again after a read that failed (ENVIRONMENT), as it does its status", async () => {
    let failures = 2;
    const base = scripted(() => ({ state: "succeeded", chunks: 1, done: 1 }), { records: 5 });
    const blip: JobBackend = {
      ...base,
      readResult: async (jobId, signal) => {
        if (failures-- > 0) throw new CloudmillError(ErrorCode.ENVIRONMENT, "cannot read result.json: SlowDown");
        return base.readResult(jobId, signal);
      },
    };
    const result = new JobFuture("job-slow", blip).result();
    await vi.advanceTimersByTimeAsync(10_000);
    await expect(result).resolves.toEqual({ records: 5 });
    expect(vi.getTimerCount()).toBe(0);
  });

  it("cancel() of a future whose submission failed by itself rejects with that failure and cancels nothing", async () => {
    const cancels: string[] = [];
    const backend: JobBackend = {
      ...scripted(() => running()),
      cancel: async (jobId) => {
        cancels.push(jobId);
        return { jobId, state: "cancelled", chunks: 0, done: 0 };
      },
    };
    const missing = new CloudmillError(ErrorCode.INPUT_NOT_FOUND, "no such file or directory", { input: "gone.txt" });
    const future = new JobFuture("job-never", backend, { submitted: Promise.reject(missing), abort: new AbortController() });
    await expect(future.submitted).rejects.toBe(missing);
    await expect(future.cancel()).rejects.toBe(missing);
    await expect(future.result()).rejects.toBe(missing);
    expect(cancels).toEqual([]);

    // The same failure arriving after cancel() was asked (the inputs are checked before the stop is looked at).
    let fail: (err: unknown) => void = () => undefined;
    const late = new JobFuture("job-late", backend, {
      submitted: new Promise<void>((_, reject) => (fail = reject)),
      abort: new AbortController(),
    });
    const cancelled = late.cancel();
    const waited = late.result();
    fail(missing);
    await expect(cancelled).rejects.toBe(missing);
    await expect(waited).rejects.toBe(missing);
    expect(cancels).toEqual([]);

    // A submission the cancel stopped (it rejects with the stop) is cancelled as before.
    const stopped = new AbortController();
    const upload = new JobFuture("job-stopped", backend, {
      submitted: new Promise<void>((_, reject) => stopped.signal.addEventListener("abort", () => reject(stopped.signal.reason))),
      abort: stopped,
    });
    await expect(upload.cancel()).resolves.toMatchObject({ state: "cancelled" });
    expect(cancels).toEqual(["job-stopped"]);
  });

  it("settles once: after the job ended, result() answers without reading again", async () => {
    const backend = scripted(() => ({
      state: "failed",
      chunks: 3,
      done: 1,
      error: { code: "BAD_RECORD", message: 'data.txt:3 (byte 9): expected a number, got "x"', chunk: 1 },
    }));
    const future = new JobFuture("job-b", backend);
    const first = await future.result().catch((e: unknown) => e);
    expect(first).toBeInstanceOf(CloudmillError);
    expect((first as CloudmillError).code).toBe("BAD_RECORD");
    expect((first as CloudmillError).context).toMatchObject({ jobId: "job-b", chunk: 1 });
    const second = await future.result().catch((e: unknown) => e);
    expect(second).toBe(first);
    expect(backend.reads).toHaveLength(1);
  });

  it("rejects with NOT_FINISHED when the timeout fires mid-sleep, then reads no more and leaves no timer", async () => {
    const backend = scripted(() => running(5));
    const future = new JobFuture("job-c", backend);
    const outcome = future.result({ timeoutMs: 1_000 }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(1_000);
    const err = (await outcome) as CloudmillError;
    expect(err.code).toBe("NOT_FINISHED");
    expect(err.message).toMatch(/job-c had not ended after 1s \(running, 5\/200 chunks\)/);
    expect(vi.getTimerCount()).toBe(0);
    const reads = backend.reads.length;
    await vi.advanceTimersByTimeAsync(30_000);
    expect(backend.reads).toHaveLength(reads);
  });

  it("rejects with the signal's reason when it aborts, and leaves no timer", async () => {
    const backend = scripted(() => running());
    const controller = new AbortController();
    const outcome = new JobFuture("job-d", backend).result({ signal: controller.signal }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(2_000);
    const reason = new Error("user stopped");
    controller.abort(reason);
    expect(await outcome).toBe(reason);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("rejects a cancelled job with CANCELLED", async () => {
    const future = new JobFuture(
      "job-e",
      scripted(() => ({ state: "cancelled", chunks: 10, done: 4 })),
    );
    await expect(future.result()).rejects.toMatchObject({ code: "CANCELLED", message: "job job-e was cancelled (4 of 10 chunks done)" });
  });

  it("after a retry that gave up waiting for the stack, waits for the resumed run instead of repeating the old end", async () => {
    let resumed = false;
    const backend: JobBackend = {
      ...scripted(() => (resumed ? { state: "succeeded", chunks: 10, done: 10 } : { state: "cancelled", chunks: 10, done: 4 }), {
        records: 9,
      }),
      // The stack takes the request, but only after the caller's wait ran out.
      retry: async (jobId) => {
        resumed = true;
        throw new CloudmillError(ErrorCode.NOT_FINISHED, `job ${jobId}: the stack had not taken the retry within 1 ms; it may yet`);
      },
    };
    const future = new JobFuture("job-r", backend);
    await expect(future.result()).rejects.toMatchObject({ code: "CANCELLED" });
    await expect(future.retry({ timeoutMs: 1 })).rejects.toMatchObject({ code: "NOT_FINISHED" });
    await expect(future.result()).resolves.toEqual({ records: 9 });
  });

  it("a timeout past Node's longest timer (24.8 days) does not fire at once", async () => {
    const future = new JobFuture(
      "job-long",
      scripted((t) => (t >= 10_000 ? { state: "succeeded", chunks: 1, done: 1 } : running(0, 1)), { records: 1 }),
    );
    const result = future.result({ timeoutMs: 3_000_000 * 1000 });
    await vi.advanceTimersByTimeAsync(15_000);
    await expect(result).resolves.toEqual({ records: 1 });
  });

  it("progress() is chunks done of total", async () => {
    const future = new JobFuture(
      "job-f",
      scripted(() => running(50, 200)),
    );
    await expect(future.progress()).resolves.toEqual({ state: "running", done: 50, total: 200, fraction: 0.25 });
  });
});

describe("waitAll and asCompleted", () => {
  it("waitAll rejects with the first failure and stops polling the others", async () => {
    const slow = scripted(() => running());
    const failing = scripted((t) =>
      t < 1_000 ? running() : { state: "failed", chunks: 2, done: 0, error: { code: "CHUNK_FAILED", message: "chunk 0 failed" } },
    );
    const outcome = waitAll([new JobFuture("slow", slow), new JobFuture("failing", failing)]).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(await outcome).toMatchObject({ code: "CHUNK_FAILED" });
    const reads = slow.reads.length;
    await vi.advanceTimersByTimeAsync(30_000);
    expect(slow.reads).toHaveLength(reads);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("waitAll gives results in the futures' order, whatever order they end in", async () => {
    const a = new JobFuture(
      "a",
      scripted((t) => (t > 4_000 ? { state: "succeeded", chunks: 1, done: 1 } : running()), "A"),
    );
    const b = new JobFuture(
      "b",
      scripted(() => ({ state: "succeeded", chunks: 1, done: 1 }), "B"),
    );
    const outcome = waitAll([a, b]);
    await vi.advanceTimersByTimeAsync(10_000);
    await expect(outcome).resolves.toEqual(["A", "B"]);
  });

  it("asCompleted stops polling when the loop breaks", async () => {
    const fast = new JobFuture(
      "fast",
      scripted(() => ({ state: "succeeded", chunks: 1, done: 1 })),
    );
    const never = scripted(() => running());
    const seen: string[] = [];
    const loop = (async () => {
      for await (const f of asCompleted([new JobFuture("never", never), fast])) {
        seen.push(f.id);
        break;
      }
    })();
    await vi.advanceTimersByTimeAsync(1_000);
    await loop;
    expect(seen).toEqual(["fast"]);
    const reads = never.reads.length;
    await vi.advanceTimersByTimeAsync(30_000);
    expect(never.reads).toHaveLength(reads);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("asCompleted throws NOT_FINISHED after its timeout", async () => {
    const outcome = (async () => {
      for await (const f of asCompleted(
        [
          new JobFuture(
            "never",
            scripted(() => running()),
          ),
        ],
        { timeoutMs: 2_000 },
      ))
        void f;
    })().catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(await outcome).toMatchObject({ code: "NOT_FINISHED", message: expect.stringMatching(/1 job\(s\) had not ended after 2s/) });
    expect(vi.getTimerCount()).toBe(0);
  });
});
