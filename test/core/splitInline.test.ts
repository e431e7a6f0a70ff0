/**
 * Small jobs run where they start: the splitter maps a job under its inline limit itself,
 * while its function's time allows, writing the parts a worker would; the rest goes to the
 * queue, and an idle fleet is woken for it. An invocation that dies mid-way (its function
 * timed out) leaves its parts: the next invocation hands only the others to the fleet.
 * Every answer is checked against the reference implementation over the same bytes.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";
import { enqueuedKey, inlineKey, partKey } from "../../lib/core/keys.js";
import { JobStatus, MapTask, type InputObject } from "../../lib/core/job/manifest.js";
import { parseJobSpec, type Params } from "../../lib/core/job/spec.js";
import { silentLogger } from "../../lib/core/log.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { defineOp } from "../../lib/core/ops/defineOp.js";
import type { SplitDeps } from "../../lib/core/pipeline/deps.js";
import type { BlobStore, WakeSender } from "../../lib/core/ports.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { readJson, readJsonIfExists } from "../../lib/core/pipeline/blobJson.js";
import { Part } from "../../lib/core/pipeline/part.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { startJob, taskJobOf, type JobPlan } from "../../lib/core/pipeline/split.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { dyingAfterParts } from "../../lib/dev/dyingInvocation.js";
import { refCount, refStats } from "../helpers/reference.js";
import { z } from "zod";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-split-inline-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

/** 10 chunks of 1 KiB: lines of varying length, so chunk boundaries fall mid-line. */
const TEXT = Buffer.from(Array.from({ length: 900 }, (_, i) => `${i * 37}${i % 3 === 0 ? ".5" : ""}`).join("\n") + "\n");
const CHUNK = 1024;
const CHUNKS = Math.ceil(TEXT.length / CHUNK);

const lateOp = defineOp({ name: "late", format: "lines", map: () => 1, combine: (a: number, b: number) => a + b });
/** The same op, saying it is cheap enough to run where the job starts. */
const cheapOp = defineOp({ name: "cheap", format: "lines", map: () => 1, combine: (a: number, b: number) => a + b, inline: true });
/** Cheap, but its first line fails it every time, as a crashing driver would (not a bad record: retried). */
const crashOp = defineOp({
  name: "crash",
  format: "lines",
  inline: true,
  map: (line: string) => {
    if (line === "37") throw new Error("the instrument's driver crashed");
    return 1;
  },
  combine: (a: number, b: number) => a + b,
});
const registry = new OpRegistry([...builtinOps, lateOp, cheapOp, crashOp]);

interface Setup {
  readonly deps: SplitDeps;
  readonly queue: MemoryTaskQueue;
  readonly output: FsBlobStore;
  readonly wakes: number[];
  readonly object: InputObject;
}

const setUp = async (name: string, body: Buffer = TEXT): Promise<Setup> => {
  const inputs = new FsBlobStore(path.join(dir, name, "in"));
  const output = new FsBlobStore(path.join(dir, name, "out"));
  await inputs.put("data.txt", body);
  const info = (await inputs.head("data.txt"))!;
  const queue = new MemoryTaskQueue({ visibilitySeconds: 30 });
  const wakes: number[] = [];
  const fleet = {
    wake: async (tasks: number) => {
      wakes.push(tasks);
      return 1;
    },
  };
  const deps: SplitDeps = { output, queue, inputStore: () => inputs, registry, log: silentLogger, fleet };
  const object: InputObject = { bucket: "in", key: "data.txt", size: info.size, etag: info.etag, name: "data.txt" };
  return { deps, queue, output, wakes, object };
};

const start = (
  s: Setup,
  op: string,
  remainingMs: () => number,
  options: { maxBytes?: number; params?: Params; maxAttempts?: number } = {},
) => startJob(s.deps, planOf(s, op, remainingMs, options));

/** The plan of job `job-<op>` over the setup's object, mapped inline while `remainingMs` allows. */
const planOf = (
  s: Setup,
  op: string,
  remainingMs: () => number,
  options: { maxBytes?: number; params?: Params; maxAttempts?: number } = {},
): JobPlan => ({
  jobId: `job-${op}`,
  job: taskJobOf(
    parseJobSpec({
      op,
      inputs: ["data.txt"],
      params: options.params ?? {},
      ...(options.maxAttempts ? { maxAttempts: options.maxAttempts } : {}),
    }),
    registry,
  ),
  inputs: [s.object],
  chunkSize: CHUNK,
  output: { result: "out/result.json", status: "out/status.json" },
  trigger: "test",
  triggeredAt: "2026-12-03T10:00:00.000Z",
  deadlineSeconds: 3600,
  inline: { maxBytes: options.maxBytes ?? 64 * 1024 * 1024, remainingMs, reserveMs: 1000 },
});

/** Runs every queued task as a fleet worker would, then the reducer. */
const drain = async (s: Setup, jobId: string): Promise<number[]> => {
  const ran: number[] = [];
  for (;;) {
    const [message] = await s.queue.receive({ maxMessages: 1, waitSeconds: 0 });
    if (!message) break;
    const task = MapTask.parse(JSON.parse(message.body));
    await runTask(s.deps, task, { ranOn: "fleet", checkOpDigest: false });
    await s.queue.delete(message.receiptHandle);
    ran.push(task.chunk.index);
  }
  await reduceJob(s.deps, jobId);
  return ran;
};

const partOf = (s: Setup, jobId: string, index: number) => readJsonIfExists(s.output, partKey(jobId, index), Part);

describe("the splitter maps a small job where it starts", () => {
  it("maps every chunk when its time allows and reduces the job: no message, no wake, the reference's answer, ranOn lambda", async () => {
    const s = await setUp("all");
    await start(s, "count", () => 60_000);
    expect((await s.queue.depth()).visible).toBe(0);
    expect(s.wakes).toEqual([]);
    for (let i = 0; i < CHUNKS; i++) expect((await partOf(s, "job-count", i))?.ran?.on).toBe("lambda");
    expect(await readJson(s.output, enqueuedKey("job-count"), z.object({ inline: z.number() }).loose())).toMatchObject({ inline: CHUNKS });
    // Reduced by the splitter itself: the result is there when it returns.
    expect(await readJson(s.output, "out/result.json", z.unknown())).toEqual(refCount(TEXT));
    const status = await readJson(s.output, "out/status.json", JobStatus);
    expect(status).toMatchObject({ state: "succeeded", ranOn: "lambda", triggeredAt: "2026-12-03T10:00:00.000Z" });
    expect(status.firstChunk?.on).toBe("lambda");
    expect(Date.parse(status.firstChunk!.at)).toBeLessThanOrEqual(Date.parse(status.finishedAt!));
  });

  it("stops when the time left would not cover twice its slowest chunk plus the reserve, and wakes the fleet for the rest", async () => {
    const s = await setUp("budget");
    // Each chunk takes 50 s of the function's 300 s (the clock moves as its part is written); the
    // reserve is 20 s. Before chunk k, 300 - 50k - 20 must exceed 2 × 50: chunks 0 to 3 run here.
    const begin = Date.now();
    let now = begin;
    const output = s.deps.output;
    const slow: BlobStore = {
      name: output.name,
      head: (k) => output.head(k),
      get: (k, o) => output.get(k, o),
      list: (p) => output.list(p),
      delete: (k) => output.delete(k),
      put: async (k, body, o) => {
        if (k.includes("/parts/")) now += 50_000;
        return output.put(k, body, o);
      },
    };
    const timed = { ...s, deps: { ...s.deps, output: slow, now: () => now } };
    await startJob(timed.deps, {
      jobId: "job-stats",
      job: taskJobOf(parseJobSpec({ op: "stats", inputs: ["data.txt"] }), registry),
      inputs: [s.object],
      chunkSize: CHUNK,
      output: { result: "out/result.json", status: "out/status.json" },
      trigger: "test",
      deadlineSeconds: 3600,
      inline: { maxBytes: 64 * 1024 * 1024, remainingMs: () => 300_000 - (now - begin), reserveMs: 20_000 },
    });
    const mapped = [0, 1, 2, 3];
    for (const i of mapped) expect((await partOf(s, "job-stats", i))?.ran?.on).toBe("lambda");
    expect(await partOf(s, "job-stats", 4)).toBeUndefined();
    expect(s.wakes).toEqual([CHUNKS - mapped.length]);
    expect(await drain(s, "job-stats")).toEqual(Array.from({ length: CHUNKS - 4 }, (_, i) => i + 4));
    expect(await readJson(s.output, "out/result.json", z.unknown())).toEqual(refStats(TEXT));
    const status = await readJson(s.output, "out/status.json", JobStatus);
    expect(status).toMatchObject({ state: "succeeded", ranOn: "lambda+fleet", firstChunk: { on: "lambda" } });
  });

  it("abandons a chunk still running when only the reserve is left, and hands it and the rest to the fleet", async () => {
    const s = await setUp("outran");
    const input = s.deps.inputStore("in");
    // The first read of a chunk never ends by itself: only the splitter's budget stops it. (The
    // splitter's own sniff of the input's first bytes, with no signal, reads as usual.)
    let stalled = false;
    const stalling: BlobStore = {
      ...input,
      name: input.name,
      head: (k) => input.head(k),
      list: (p) => input.list(p),
      put: (k, b, o) => input.put(k, b, o),
      delete: (k) => input.delete(k),
      get: (k, o) => {
        if (stalled || !o?.signal) return input.get(k, o);
        stalled = true;
        return new Promise((_, reject) => o?.signal?.addEventListener("abort", () => reject(o.signal!.reason), { once: true }));
      },
    };
    const deps = { ...s.deps, inputStore: () => stalling };
    await start({ ...s, deps }, "count", () => 1_050, {});
    expect(stalled).toBe(true);
    expect(await partOf(s, "job-count", 0)).toBeUndefined();
    expect((await s.queue.depth()).visible).toBe(CHUNKS);
    expect(s.wakes).toEqual([CHUNKS]);
    expect(await drain(s, "job-count")).toEqual(Array.from({ length: CHUNKS }, (_, i) => i));
    expect(await readJson(s.output, "out/result.json", z.unknown())).toEqual(refCount(TEXT));
    expect(await readJson(s.output, "out/status.json", JobStatus)).toMatchObject({ state: "succeeded", ranOn: "fleet" });
  });

  it("hands a job to the fleet untouched when it is over the limit, keyed, or a lab op that does not say it is cheap", async () => {
    for (const [op, maxBytes, params] of [
      ["count", TEXT.length - 1, {}],
      ["distinct", undefined, {}],
      ["late", undefined, {}],
    ] as const) {
      const s = await setUp(`none-${op}`);
      await start(s, op, () => 60_000, { ...(maxBytes !== undefined ? { maxBytes } : {}), params });
      expect(await readJsonIfExists(s.output, inlineKey(`job-${op}`), z.unknown())).toBeUndefined();
      expect((await s.queue.depth()).visible, op).toBe(CHUNKS);
      expect(s.wakes, op).toEqual([CHUNKS]);
    }
  });

  it("maps a lab op that says it is cheap (inline: true), recording its digest", async () => {
    const s = await setUp("cheap");
    await start(s, "cheap", () => 60_000);
    expect((await s.queue.depth()).visible).toBe(0);
    expect(await readJson(s.output, "out/result.json", z.unknown())).toBe(refCount(TEXT).records);
    expect(await readJson(s.output, "out/status.json", JobStatus)).toMatchObject({ ranOn: "lambda", opDigest: cheapOp.digest });
  });

  it("fails the job on a bad record met inline, naming the input and line, and enqueues nothing", async () => {
    const s = await setUp("bad", Buffer.from(`${TEXT.toString()}twelve\n${TEXT.toString()}`));
    await start(s, "stats", () => 60_000);
    const status = await readJson(s.output, "out/status.json", JobStatus);
    expect(status.state).toBe("failed");
    expect(status.error).toMatchObject({ code: "BAD_RECORD", input: "data.txt" });
    expect(status.error!.message).toMatch(/twelve/);
    expect((await s.queue.depth()).visible).toBe(0);
    expect(s.wakes).toEqual([]);
  });

  it("a chunk failing inline with maxAttempts 1 has had its one attempt: the job fails naming it, and nothing is enqueued", async () => {
    const s = await setUp("one-attempt");
    await start(s, "crash", () => 60_000, { maxAttempts: 1 });
    const status = await readJson(s.output, "out/status.json", JobStatus);
    expect(status.state).toBe("failed");
    expect(status.error!.message).toMatch(/chunk 0 failed after 1 attempt: .*driver crashed/);
    expect((await s.queue.depth()).visible).toBe(0);
    expect(s.wakes).toEqual([]);
  });

  it("after an invocation dies mid-way, the next maps nothing itself and hands the fleet exactly the chunks without parts", async () => {
    const s = await setUp("died");
    const dying = { ...s, deps: dyingAfterParts(s.deps, 3) };
    await expect(start(dying, "count", () => 60_000)).rejects.toThrow(/timed out/);
    expect((await s.queue.depth()).visible).toBe(0);
    expect(await readJsonIfExists(s.output, enqueuedKey("job-count"), z.unknown())).toBeUndefined();

    await start(s, "count", () => 60_000); // Lambda's retry of the event
    expect(s.wakes).toEqual([CHUNKS - 3]);
    expect(await drain(s, "job-count")).toEqual(Array.from({ length: CHUNKS - 3 }, (_, i) => i + 3));
    for (const i of [0, 1, 2]) expect((await partOf(s, "job-count", i))?.ran?.on).toBe("lambda");
    expect(await readJson(s.output, "out/result.json", z.unknown())).toEqual(refCount(TEXT));
    expect(await readJson(s.output, "out/status.json", JobStatus)).toMatchObject({ state: "succeeded", ranOn: "lambda+fleet" });
  });
});

describe("a job mapped whole where it starts, whose own reduce fails", () => {
  it("is reduced by the reducer's wake-up: a retried invocation finds it queued and does nothing more", async () => {
    const s = await setUp("reduce-fails");
    // The result's write fails once (S3 throttling the SDK gave up on), as the splitter reduces.
    let failing = true;
    const output = Object.assign(Object.create(s.output) as BlobStore, {
      put: async (key: string, ...rest: Parameters<BlobStore["put"]> extends [string, ...infer R] ? R : never) => {
        if (failing && key === "out/result.json") {
          failing = false;
          throw new CloudmillError(ErrorCode.ENVIRONMENT, "PutObject failed: SlowDown");
        }
        return s.output.put(key, ...rest);
      },
    });
    const wakes: string[] = [];
    const wake: WakeSender = { wakeAfter: async (jobId) => void wakes.push(jobId) };
    const deps: SplitDeps = { ...s.deps, output, wake };
    await expect(
      startJob(
        deps,
        planOf(s, "count", () => 60_000),
      ),
    ).rejects.toThrow(/SlowDown/);
    // Lambda's retry of the event finds the job queued (mapped whole): it reduces nothing itself.
    expect(
      await startJob(
        deps,
        planOf(s, "count", () => 60_000),
      ),
    ).toMatchObject({ duplicate: true });
    expect(await readJsonIfExists(s.output, "out/status.json", JobStatus)).toMatchObject({ state: "running" });
    expect(wakes).toEqual(["job-count"]);
    // The wake-up, 10 minutes on: the reducer finds every part and writes the reference's answer.
    expect(await reduceJob(deps, "job-count", { fleet: true })).toMatchObject({ kind: "succeeded" });
    expect(await readJson(s.output, "out/result.json", z.unknown())).toEqual(refCount(TEXT));
  });
});

describe("a job mapped where it starts shows its progress", () => {
  it("its status counts the chunks mapped so far, about once a second, before the job ends", async () => {
    const s = await setUp("progress");
    // Every chunk's read takes 400 ms of the job's clock.
    let clock = Date.parse("2026-12-07T10:00:00.000Z");
    const inputs = s.deps.inputStore("in");
    const slow = Object.assign(Object.create(inputs) as BlobStore, {
      get: (...args: Parameters<BlobStore["get"]>) => {
        clock += 400;
        return inputs.get(...args);
      },
    });
    const shown: { state: string; done: number }[] = [];
    const output = Object.assign(Object.create(s.output) as BlobStore, {
      put: async (key: string, ...rest: Parameters<BlobStore["put"]> extends [string, ...infer R] ? R : never) => {
        await s.output.put(key, ...rest);
        if (key === "out/status.json") shown.push(JobStatus.parse(JSON.parse(String(rest[0]))));
      },
    });
    const deps: SplitDeps = { ...s.deps, output, inputStore: () => slow, now: () => clock };
    await startJob(
      deps,
      planOf(s, "count", () => 60_000),
    );
    const running = shown.filter((st) => st.state === "running").map((st) => st.done);
    // Started at 0; then some, never all, while it mapped; then the end.
    expect(running[0]).toBe(0);
    expect(running.some((done) => done > 0 && done < CHUNKS)).toBe(true);
    expect(running).toEqual([...running].sort((a, b) => a - b));
    expect(shown.at(-1)).toMatchObject({ state: "succeeded", done: CHUNKS });
  });
});
