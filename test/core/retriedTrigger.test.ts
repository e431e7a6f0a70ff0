/**
 * A trigger's event delivered again after its first invocation died between writing the
 * manifest and marking the job queued (Lambda retries a failed invocation; S3 may deliver an
 * event twice): the first plan stands. The retry neither lists a prefix again (objects added
 * since are not the job's) nor reads a spec rewritten since, nor writes over a resumed run's
 * manifest; it queues only the chunks that have no part. Expected counts come from the lines
 * the test wrote.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { Manifest, isMapTask } from "../../lib/core/job/manifest.js";
import { enqueuedKey, jobSpecOutputKeys, manifestKey } from "../../lib/core/keys.js";
import type { BlobStore } from "../../lib/core/ports.js";
import { readBytes, readJson } from "../../lib/core/pipeline/blobJson.js";
import { cancelJob } from "../../lib/core/pipeline/cancel.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { resumeJob } from "../../lib/core/pipeline/resume.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { handleObjectCreated } from "../../lib/core/pipeline/trigger.js";
import { localPipeline, takeAll } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-retried-trigger-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const KeyedResult = z.object({ parts: z.array(z.object({ key: z.string() })) });
const CONFIG = { defaultChunkSize: 4096, maxAttempts: 3, jobDeadlineSeconds: 3600 };

/** `n` lines `<prefix><i mod 5>`. */
const lines = (prefix: string, n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => `${prefix}${i % 5}\n`).join(""));

/** An output store whose first PUT of `enqueued.json` fails as S3 throttling does: the invocation dies there. */
const failingFirstEnqueued = (store: BlobStore): BlobStore => {
  let failed = false;
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === "put")
        return async (key: string, ...rest: unknown[]) => {
          if (!failed && key.endsWith("/enqueued.json")) {
            failed = true;
            throw new CloudmillError(ErrorCode.ENVIRONMENT, "SlowDown: reduce your request rate");
          }
          return (target.put as (...a: unknown[]) => Promise<unknown>).call(target, key, ...rest);
        };
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
};

const setUp = (name: string) => {
  const base = localPipeline(path.join(dir, name));
  const output = failingFirstEnqueued(base.output);
  const deps = { ...base.deps, output };
  const event = (jobId: string) => ({ bucket: "lab-in", key: `_jobs/${jobId}.json` });
  const trigger = (jobId: string) => handleObjectCreated(deps, CONFIG, event(jobId));
  const runAll = async () => {
    for (const task of await takeAll(base.queue)) await runTask(deps, task, { checkOpDigest: false, firstDelivery: true });
  };
  /** Runs tasks and the fleet's reducer until the job ends. */
  const finish = async (jobId: string) => {
    for (let round = 0; round < 10; round++) {
      await runAll();
      const r = await reduceJob(deps, jobId, { fleet: true });
      if (r.kind !== "incomplete") return r.kind;
    }
    throw new Error("the job did not end in 10 rounds");
  };
  const counts = async (jobId: string): Promise<Record<string, number>> => {
    const result = await readJson(base.output, jobSpecOutputKeys(jobId).result, KeyedResult);
    const got: Record<string, number> = {};
    for (const part of result.parts) {
      const text = (await readBytes(base.output, part.key.slice(`s3://${base.output.name}/`.length))).toString("utf8");
      for (const line of text.split("\n").filter(Boolean)) {
        const row = JSON.parse(line) as { key: string; count: number };
        got[row.key] = (got[row.key] ?? 0) + row.count;
      }
    }
    return got;
  };
  const manifestOf = (jobId: string) => readJson(base.output, manifestKey(jobId), Manifest);
  return { ...base, deps, trigger, runAll, finish, counts, manifestOf };
};

describe("a trigger retried after its first invocation died before queueing all of the job", () => {
  it("keeps the first plan: objects added to the prefix since are not the job's, and each key is counted once", async () => {
    const s = setUp("prefix");
    await s.inputs.put("plate/b.txt", lines("b", 50));
    await s.inputs.put("_jobs/grown.json", Buffer.from(JSON.stringify({ op: "distinct", inputs: ["s3://lab-in/plate/"], partitions: 3 })));
    await expect(s.trigger("grown")).rejects.toThrow(/SlowDown/);
    const first = await s.manifestOf("grown");
    // The lab's sync adds an object that sorts first: a new listing would plan other chunks.
    await s.inputs.put("plate/a.txt", lines("a", 70));
    expect(await s.trigger("grown")).toEqual({ kind: "duplicate", jobId: "grown", chunks: first.chunks });
    expect(await s.manifestOf("grown")).toEqual(first);
    expect(await s.output.head(enqueuedKey("grown"))).toBeDefined();
    expect(await s.finish("grown")).toBe("succeeded");
    // b.txt: b0 … b4, 10 lines each.
    expect(await s.counts("grown")).toEqual({ b0: 10, b1: 10, b2: 10, b3: 10, b4: 10 });
  });

  it("keeps the first plan's partitions when the spec was rewritten since", async () => {
    const s = setUp("spec");
    await s.inputs.put("plate/k.txt", Buffer.from(Array.from({ length: 400 }, (_, i) => `k${i % 8}\n`).join("")));
    const spec = { op: "distinct", inputs: ["s3://lab-in/plate/"], chunkSize: 1024, partitions: 2 };
    await s.inputs.put("_jobs/rewritten.json", Buffer.from(JSON.stringify(spec)));
    await expect(s.trigger("rewritten")).rejects.toThrow(/SlowDown/);
    await s.inputs.put("_jobs/rewritten.json", Buffer.from(JSON.stringify({ ...spec, partitions: 4 })));
    await s.trigger("rewritten");
    expect((await s.manifestOf("rewritten")).job.partitions).toBe(2);
    expect(await s.finish("rewritten")).toBe("succeeded");
    // 400 lines over k0 … k7: 50 each, every key in one part only.
    expect(await s.counts("rewritten")).toEqual(Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`k${i}`, 50])));
  });

  it("queues only the chunks that have no part", async () => {
    const s = setUp("rest");
    await s.inputs.put("plate/w.txt", lines("w", 3000));
    await s.inputs.put("_jobs/rest.json", Buffer.from(JSON.stringify({ op: "count", inputs: ["s3://lab-in/plate/"], chunkSize: 2048 })));
    await expect(s.trigger("rest")).rejects.toThrow(/SlowDown/);
    const { chunks } = await s.manifestOf("rest");
    // 3000 lines of 3 bytes in chunks of 2 KiB.
    expect(chunks).toBe(Math.ceil(9000 / 2048));
    // The first invocation's tasks: two of them are mapped before the retry.
    const queued = await takeAll(s.queue);
    expect(queued.filter(isMapTask).map((t) => t.chunk.index)).toEqual(Array.from({ length: chunks }, (_, i) => i));
    for (const task of queued.slice(0, 2)) await runTask(s.deps, task, { checkOpDigest: false, firstDelivery: true });
    await s.trigger("rest");
    const again = await takeAll(s.queue);
    expect(again.filter(isMapTask).map((t) => t.chunk.index)).toEqual(Array.from({ length: chunks - 2 }, (_, i) => i + 2));
    for (const task of again) await runTask(s.deps, task, { checkOpDigest: false, firstDelivery: true });
    expect(await s.finish("rest")).toBe("succeeded");
    expect(await readJson(s.output, jobSpecOutputKeys("rest").result, z.object({ records: z.number() }))).toEqual({ records: 3000 });
  });

  it("an upload deleted before the retry: the earlier start stands, its tasks are queued, and the job ends (not running for good)", async () => {
    const s = setUp("deleted");
    await s.inputs.put("count/data.txt", lines("d", 300));
    const { etag } = (await s.inputs.head("count/data.txt"))!;
    const event = { bucket: "lab-in", key: "count/data.txt", etag };
    await expect(handleObjectCreated(s.deps, CONFIG, event)).rejects.toThrow(/SlowDown/);
    await takeAll(s.queue);
    await s.inputs.delete("count/data.txt");
    const retried = await handleObjectCreated(s.deps, CONFIG, event);
    expect(retried).toMatchObject({ kind: "duplicate" });
    const jobId = (retried as { jobId: string }).jobId;
    expect(await s.output.head(enqueuedKey(jobId))).toBeDefined();
    expect((await takeAll(s.queue)).length).toBeGreaterThan(0);
  });

  it("a job cancelled before the retry: nothing is queued, and it is marked queued", async () => {
    const s = setUp("cancelled");
    await s.inputs.put("plate/c.txt", lines("c", 3000));
    await s.inputs.put(
      "_jobs/cancelled.json",
      Buffer.from(JSON.stringify({ op: "count", inputs: ["s3://lab-in/plate/"], chunkSize: 2048 })),
    );
    await expect(s.trigger("cancelled")).rejects.toThrow(/SlowDown/);
    await takeAll(s.queue);
    await cancelJob(s.deps, "cancelled", jobSpecOutputKeys("cancelled"));
    expect(await s.trigger("cancelled")).toMatchObject({ kind: "duplicate" });
    expect(await takeAll(s.queue)).toEqual([]);
    expect(await s.output.head(enqueuedKey("cancelled"))).toBeDefined();
  });

  it("leaves a resumed run's manifest alone, and the resumed job ends", async () => {
    const s = setUp("resumed");
    await s.inputs.put("plate/r.txt", lines("r", 100));
    await s.inputs.put("_jobs/resumed.json", Buffer.from(JSON.stringify({ op: "distinct", inputs: ["s3://lab-in/plate/"] })));
    await expect(s.trigger("resumed")).rejects.toThrow(/SlowDown/);
    await cancelJob(s.deps, "resumed", jobSpecOutputKeys("resumed"));
    expect(await resumeJob(s.deps, "resumed", { after: 0 }, CONFIG)).toMatchObject({ kind: "resumed" });
    const resumed = await s.manifestOf("resumed");
    expect(resumed.job.generation).toBe(1);
    // The original event, retried by Lambda a minute later.
    await s.trigger("resumed");
    expect(await s.manifestOf("resumed")).toEqual(resumed);
    expect(await s.finish("resumed")).toBe("succeeded");
    expect(await s.counts("resumed")).toEqual({ r0: 20, r1: 20, r2: 20, r3: 20, r4: 20 });
  });
});
