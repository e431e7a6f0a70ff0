/**
 * Which chunks a worker maps on its main thread: a built-in op's small uncompressed ranges and
 * objects, where a mapper thread's round trips cost more than the mapping. A compressed input,
 * a larger range and every lab op keep their thread. Counts come from `wc -l`.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as z from "zod";
import { ErrorCode } from "../../lib/core/errors.js";
import { TaskMessage } from "../../lib/core/job/manifest.js";
import type { BlobStore, GetOptions } from "../../lib/core/ports.js";
import { readJson } from "../../lib/core/pipeline/blobJson.js";
import type { MapperHost, RemoteMapperRequest } from "../../lib/core/pipeline/mappers.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { INLINE_FEED_BYTES, INLINE_MAP_BYTES } from "../../lib/core/pipeline/laneMapper.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { count } from "../../lib/core/ops/count.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { ThreadMapperHost } from "../../lib/sandbox/ThreadMapperHost.js";
import { localPipeline, OUTPUT, startJobOver } from "../helpers/jobs.js";

let dir: string;
let threads: ThreadMapperHost;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-inline-"));
  threads = new ThreadMapperHost({ opsModules: [], taskTimeoutSeconds: 60 });
});
afterAll(async () => {
  await threads.close();
  await rm(dir, { recursive: true, force: true });
});

/** The real thread host, counting the chunks handed to it. */
const countingHost = (): { host: MapperHost; opened: () => number } => {
  let opened = 0;
  return {
    host: {
      taskTimeoutSeconds: threads.taskTimeoutSeconds,
      open(request: RemoteMapperRequest) {
        opened++;
        return threads.open(request);
      },
      merge: (request) => threads.merge(request),
      reduce: (request, scratch) => threads.reduce(request, scratch),
      fold: (request) => threads.fold(request),
      close: () => threads.close(),
    },
    opened: () => opened,
  };
};

const lines = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => `line ${i} ${"x".repeat(i % 37)}\n`).join(""));
const wcLines = (bytes: Buffer): number => Number(execFileSync("wc", ["-l"], { input: bytes }).toString().trim());

/** Runs a count job of `bytes` in `chunkSize` chunks as a worker would; its record count and the chunks mapped on threads. */
const runCount = async (name: string, bytes: Buffer, chunkSize: number, registry = new OpRegistry(builtinOps)) => {
  const { host, opened } = countingHost();
  const { inputs, output, queue, deps } = localPipeline(path.join(dir, name), { registry });
  const { manifest } = await startJobOver(deps, inputs, bytes, name, { op: "count", maxRecordBytes: 4 * INLINE_FEED_BYTES }, chunkSize);
  for (;;) {
    const [m] = await queue.receive({ maxMessages: 1, waitSeconds: 0 });
    if (!m) break;
    await runTask({ ...deps, mappers: host }, TaskMessage.parse(JSON.parse(m.body)), { ranOn: "fleet", checkOpDigest: false });
    await queue.delete(m.receiptHandle);
  }
  await reduceJob(deps, name);
  const { records } = await readJson(output, OUTPUT.result, z.object({ records: z.number() }));
  return { records, chunks: manifest.chunks, threaded: opened() };
};

describe("a worker's small chunks of a built-in op", () => {
  it("maps small plain ranges on its main thread, exactly", async () => {
    const bytes = lines(400);
    const run = await runCount("small", bytes, 1024);
    expect(run.chunks).toBeGreaterThan(5);
    expect(run.threaded).toBe(0);
    expect(run.records).toBe(wcLines(bytes));
  });

  it("keeps a thread for ranges past the inline size", async () => {
    const bytes = lines(12_000);
    const run = await runCount("large", bytes, 2 * INLINE_MAP_BYTES);
    expect(run.chunks).toBeGreaterThan(1);
    expect(run.threaded).toBe(run.chunks);
    expect(run.records).toBe(wcLines(bytes));
  });

  it("maps a small object read whole on its main thread once its first bytes show it is not compressed", async () => {
    const bytes = lines(300);
    const run = await runCount("whole", bytes, 1 << 20);
    expect(run.chunks).toBe(1);
    expect(run.threaded).toBe(0);
    expect(run.records).toBe(wcLines(bytes));
  });

  it("keeps a thread for a compressed input, which may decode to far more than its stored bytes", async () => {
    const plain = lines(3_000);
    const run = await runCount("gz", gzipSync(plain), 1 << 20);
    expect(run.chunks).toBe(1);
    expect(run.threaded).toBe(1);
    expect(run.records).toBe(wcLines(plain));
  });

  it("keeps a thread for every op that is not a built-in, however small its chunk", async () => {
    const bytes = lines(400);
    // The same code under another identity is a lab's op: the worker cannot vouch for it.
    const lab = new OpRegistry([{ ...count }, ...builtinOps.filter((op) => op !== count)]);
    const run = await runCount("lab", bytes, 1024, lab);
    expect(run.threaded).toBe(run.chunks);
    expect(run.records).toBe(wcLines(bytes));
  });

  it("moves a reading to a thread when its last record runs far past its range, and maps it once", async () => {
    // A 1 KiB chunk whose last line is twice what a reading may map on the main thread.
    const bytes = Buffer.concat([lines(20), Buffer.from(`${"y".repeat(2 * INLINE_FEED_BYTES)}\n`), lines(20)]);
    const run = await runCount("long-record", bytes, 1024);
    expect(run.threaded).toBe(1);
    expect(run.records).toBe(wcLines(bytes));
  });

  it("keeps the chunk's time limit: a read that stalls ends in TASK_TIMEOUT", async () => {
    const { host } = countingHost();
    const { inputs, queue, deps } = localPipeline(path.join(dir, "stalled"));
    await startJobOver(deps, inputs, lines(400), "stalled", { op: "count", taskTimeoutSeconds: 1 }, 1024);
    const [m] = await queue.receive({ maxMessages: 1, waitSeconds: 0 });
    // The input's reads hang until they are aborted, as a GET to a dead connection would.
    const stalled: BlobStore = Object.assign(Object.create(inputs) as BlobStore, {
      name: inputs.name,
      get: (_key: string, options?: GetOptions) =>
        new Promise<never>((_, reject) => options?.signal?.addEventListener("abort", () => reject(options.signal!.reason as Error))),
    });
    const run = runTask({ ...deps, inputStore: () => stalled, mappers: host }, TaskMessage.parse(JSON.parse(m!.body)), {
      ranOn: "fleet",
      checkOpDigest: false,
    });
    await expect(run).rejects.toMatchObject({ code: ErrorCode.TASK_TIMEOUT });
  });

  it("a thread opened for a reading whose task was already stopped ends at once, as the task's signal says", async () => {
    const stopped = new AbortController();
    stopped.abort(new Error("the task was stopped"));
    const mapper = threads.open({
      op: "count",
      params: {},
      ctx: { inputIndex: 0, inputName: "a.txt", format: "lines", onBadRecord: "fail" },
      signal: stopped.signal,
    });
    try {
      expect(mapper.signal.aborted).toBe(true);
      await expect(mapper.finish()).rejects.toThrow("the task was stopped");
    } finally {
      await mapper.close();
    }
  });

  it("leaves no timer behind when the op refuses its params as the reading opens", async () => {
    const { host } = countingHost();
    const { inputs, queue, deps } = localPipeline(path.join(dir, "refused"));
    const csv = Buffer.from(`site,value\n${Array.from({ length: 50 }, (_, i) => `s${i % 3},${i}`).join("\n")}\n`);
    await startJobOver(deps, inputs, csv, "refused", { op: "groupby", format: "csv", params: { key: "station" } }, 256);
    const [m] = await queue.receive({ maxMessages: 1, waitSeconds: 0 });
    const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    await expect(
      runTask({ ...deps, mappers: host }, TaskMessage.parse(JSON.parse(m!.body)), { ranOn: "fleet", checkOpDigest: false }),
    ).rejects.toThrow(/station/);
    // The chunk's time limit (15 minutes) would keep a stopped worker's process alive.
    expect(timers()).toBe(before);
  });
});
