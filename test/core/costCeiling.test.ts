/**
 * A job's price ceiling counts every task it runs, not only its map tasks: a merge tree's merge
 * tasks and a keyed job's reduce tasks are priced as they finish, and the reducer fails the job
 * with COST_LIMIT once they take it over `maxCostUsd`; its remaining tasks are then skipped, and
 * a retry under more finishes it exactly. Task time comes from a clock that only the ops' own
 * merge and reduce steps move, so the expected dollars are list prices times known seconds.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { reducerHandler } from "../../lib/aws/handlers.js";
import { backupKey, failureKey, partKey, succeededKey } from "../../lib/core/keys.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { failJob } from "../../lib/core/pipeline/deadLetter.js";
import { JobStatus, TaskMessage, type InputObject } from "../../lib/core/job/manifest.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { startJob, taskJobOf } from "../../lib/core/pipeline/split.js";
import { cancelJob } from "../../lib/core/pipeline/cancel.js";
import type { JobSpecInput } from "../../lib/core/job/spec.js";
import { silentLogger } from "../../lib/core/log.js";
import { defineOp } from "../../lib/core/ops/defineOp.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { readJson, writeJson } from "../../lib/core/pipeline/blobJson.js";
import { costCeilingError } from "../../lib/core/pipeline/costCeiling.js";
import { resumeJob } from "../../lib/core/pipeline/resume.js";
import { runTask, type TaskOutcome } from "../../lib/core/pipeline/task.js";
import { encodeEventKey } from "../../lib/dev/emulator.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { usdOver } from "../../lib/core/report/prices.js";
import { localPipeline, OUTPUT, startJobOver } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-ceiling-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const LINES_PER_CHUNK = 10;
/** Seconds a merge of two chunk counts, or a reduce of one key, takes on the test's clock. */
const STEP_SECONDS = 60;

/** AWS's list prices (us-east-1): m7g per vCPU-hour, S3 GET/HEAD and PUT per request, SQS per request. */
const M7G_VCPU_HOUR = 0.0408;
const S3_GET = 0.0004 / 1000;
const S3_PUT = 0.005 / 1000;
const SQS = 0.4 / 1e6;
/** A fleet task's requests as the report prices them: a GET per object read, its part's PUT and GET, 2.2 SQS requests. */
const requestsUsd = (objects: number): number => (objects + 1) * S3_GET + S3_PUT + 2.2 * SQS;

const setUp = async (name: string, text: string, spec: Omit<JobSpecInput, "inputs">, chunkSize: number) => {
  const clock = { now: Date.parse("2026-12-01T00:00:00Z") };
  const step = (): void => void (clock.now += STEP_SECONDS * 1000);
  const ops = new OpRegistry(builtinOps);
  // Counting lines: merging two chunks' counts (never a line into a count) takes a minute.
  ops.register(
    defineOp({
      name: "slow-merge",
      format: "lines",
      orderFree: true,
      map: () => 1,
      combine: (a: number, b: number) => {
        if (a >= LINES_PER_CHUNK && b >= LINES_PER_CHUNK) step();
        return a + b;
      },
    }),
  );
  // Lines per first word: each key's reduce takes a minute.
  ops.register(
    defineOp({
      name: "slow-reduce",
      format: "lines",
      pairs: (line: string, emit: (key: string, value: number) => void) => emit(line.split(" ")[0]!, 1),
      reduce: (key: string, values: number[]) => {
        step();
        return { key, n: values.length };
      },
    }),
  );
  const { inputs, output, queue, deps } = localPipeline(path.join(dir, name), {
    registry: ops,
    now: () => clock.now,
    instanceType: "m7g.large",
  });
  const jobId = `${name}-1`;
  const { manifest } = await startJobOver(deps, inputs, Buffer.from(text), jobId, spec, chunkSize);
  const reducer = reducerHandler(deps);
  /** The reducer, woken as S3 wakes it when a task writes its part. */
  const wake = (key: string) =>
    reducer({
      Records: [
        {
          messageId: key,
          body: JSON.stringify({
            Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: "out" }, object: { key: encodeEventKey(key) } } }],
          }),
        },
      ],
    });
  /** Takes every queued task off the queue. */
  const takeAll = async (): Promise<TaskMessage[]> => {
    const tasks: TaskMessage[] = [];
    for (;;) {
      const [message] = await queue.receive({ maxMessages: 1, waitSeconds: 0 });
      if (!message) return tasks;
      tasks.push(TaskMessage.parse(JSON.parse(message.body)));
      await queue.delete(message.receiptHandle);
    }
  };
  const run = (task: TaskMessage): Promise<TaskOutcome> => runTask(deps, task, { checkOpDigest: false, ranOn: "fleet", worker: "w0" });
  const status = () => readJson(output, OUTPUT.status, JobStatus);
  return { deps, jobId, manifest, wake, takeAll, run, status, output };
};

/** Runs every task as it is queued, waking the reducer after each, until the queue stays empty. */
const runToEnd = async (s: Awaited<ReturnType<typeof setUp>>): Promise<void> => {
  for (let tasks = await s.takeAll(); tasks.length > 0; tasks = await s.takeAll())
    for (const task of tasks) {
      await s.run(task);
      await s.wake(partKey(s.jobId, 0));
    }
};

/** The dollars the COST_LIMIT message names. */
const measuredOf = (message: string): number => Number(/^measured \$(\d+\.\d{6,}) after /.exec(message)?.[1]);

describe("a price ceiling over a merge tree", () => {
  it("counts the merge tasks' time: the job fails with COST_LIMIT after its first merge, and a retry finishes it", async () => {
    const chunks = 16;
    const text = Array.from({ length: chunks * LINES_PER_CHUNK }, (_, i) => `line ${String(i).padStart(4, "0")}`).join("\n") + "\n";
    const chunkSize = text.length / chunks;
    expect(Number.isInteger(chunkSize)).toBe(true);
    // 16 map tasks cost about $0.000125 in requests; one merge of 4 parts takes 3 minutes ($0.00204).
    const s = await setUp("tree", text, { op: "slow-merge", fanIn: 4, maxCostUsd: 0.0005 }, chunkSize);
    expect(s.manifest.chunks).toBe(chunks);

    for (const task of await s.takeAll()) {
      expect(await s.run(task)).toMatchObject({ kind: "done" });
      await s.wake(partKey(s.jobId, 0));
    }
    // Every map task done and priced under the ceiling: the job runs on, with its 4 merges queued.
    expect((await s.status()).state).toBe("running");
    const merges = await s.takeAll();
    expect(merges.map((t) => ("merge" in t ? t.merge.level : 0))).toEqual([1, 1, 1, 1]);

    expect(await s.run(merges[0]!)).toMatchObject({ kind: "done" });
    await s.wake(partKey(s.jobId, 0));
    const failed = await s.status();
    expect(failed.state).toBe("failed");
    expect(failed.error?.code).toBe("COST_LIMIT");
    expect(failed.error?.message).toMatch(/ after 16 of 16 chunks and 1 merge tasks is over maxCostUsd \$0\.0005 /);
    // The merge's reads of its 4 parts are priced with the map tasks (each task's part read once): none of its own.
    const merge = 3 * STEP_SECONDS * (M7G_VCPU_HOUR / 3600) + requestsUsd(0);
    expect(measuredOf(failed.error!.message)).toBeCloseTo(chunks * requestsUsd(1) + merge, 6);
    // The merges left are skipped.
    for (const task of merges.slice(1)) expect(await s.run(task)).toEqual({ kind: "job-ended" });

    const resumed = await resumeJob(s.deps, s.jobId, { maxCostUsd: 1, after: 0 }, { jobDeadlineSeconds: 3600 });
    expect(resumed.kind).toBe("resumed");
    await runToEnd(s);
    expect((await s.status()).state).toBe("succeeded");
    expect(await readJson(s.output, OUTPUT.result, z.unknown())).toBe(text.split("\n").length - 1);
  });
});

describe("a price ceiling over backup copies", () => {
  it("prices each straggler's backup as one more task of its kind: a job under its ceiling goes over with one", async () => {
    const chunks = 4;
    const text = Array.from({ length: chunks * LINES_PER_CHUNK }, (_, i) => `line ${String(i).padStart(4, "0")}`).join("\n") + "\n";
    // The test's clock stands still: each map task costs its requests alone; the ceiling lies between 4 and 5 of them.
    const s = await setUp("backups", text, { op: "count", maxCostUsd: 4.5 * requestsUsd(1) }, text.length / chunks);
    for (const task of await s.takeAll()) expect(await s.run(task)).toMatchObject({ kind: "done" });
    const progress = {
      manifest: s.manifest,
      mapParts: new Map(Array.from({ length: chunks }, (_, i) => [i, partKey(s.jobId, i)] as const)),
      merged: [],
      reduced: [],
    };
    expect(await costCeilingError(s.deps, progress)).toBeUndefined();
    // Chunk 2 straggled and got a backup, as the reducer's check marks one it queues.
    await writeJson(s.output, backupKey(s.jobId, 2), { at: new Date(0).toISOString(), elapsedMs: 9000, afterMs: 3000 });
    const over = await costCeilingError(s.deps, progress);
    expect(over?.code).toBe("COST_LIMIT");
    expect(over?.message).toMatch(/ after 4 of 4 chunks and 1 backup copies is over maxCostUsd /);
    expect(measuredOf(over!.message)).toBeCloseTo(5 * requestsUsd(1), 6);
  });
});

describe("a job that succeeds while it is being failed", () => {
  it("stays succeeded: its exact result stands and its status says so", async () => {
    const output = new FsBlobStore(path.join(dir, "race", "out"));
    const deps = { output, inputStore: () => output, registry: new OpRegistry(builtinOps), log: silentLogger };
    const succeeded: JobStatus = { jobId: "race-1", state: "succeeded", chunks: 2, done: 2, finishedAt: "2026-12-01T00:00:01.000Z" };
    // Another reducer call, which found every part before the failure was recorded, finishes the job just after it is.
    const put = output.put.bind(output);
    output.put = async (key, body, options) => {
      await put(key, body, options);
      if (key === failureKey("race-1")) {
        await put(succeededKey("race-1"), JSON.stringify(succeeded));
        await put(OUTPUT.status, JSON.stringify(succeeded));
      }
    };
    const target = { jobId: "race-1", output: OUTPUT, chunks: 2, done: 1 };
    expect(await failJob(deps, target, new CloudmillError(ErrorCode.COST_LIMIT, "over"))).toBeUndefined();
    expect(await readJson(output, OUTPUT.status, JobStatus)).toEqual(succeeded);
    expect(await output.head(failureKey("race-1"))).toBeUndefined();
    // Failed again by a role that may not delete the marker (a worker): still no error, still succeeded.
    output.delete = async () => {
      throw new CloudmillError(ErrorCode.ENVIRONMENT, "DeleteObject: AccessDenied");
    };
    expect(await failJob(deps, target, new CloudmillError(ErrorCode.COST_LIMIT, "over"))).toBeUndefined();
    expect(await readJson(output, OUTPUT.status, JobStatus)).toEqual(succeeded);
  });

  it("leaves the status of a later job that owns the output alone", async () => {
    const output = new FsBlobStore(path.join(dir, "race-later", "out"));
    const deps = { output, inputStore: () => output, registry: new OpRegistry(builtinOps), log: silentLogger };
    // Job race-2, started after race-1, writes to the same result and status.
    const later: JobStatus = { jobId: "race-2", state: "running", chunks: 4, done: 1, startedAt: "2026-12-01T00:00:05.000Z" };
    await output.put(OUTPUT.status, JSON.stringify(later));
    const put = output.put.bind(output);
    output.put = async (key, body, options) => {
      await put(key, body, options);
      // race-1 finishes meanwhile; as its output is race-2's now, it writes its marker only.
      if (key === failureKey("race-1"))
        await put(succeededKey("race-1"), JSON.stringify({ jobId: "race-1", state: "succeeded", chunks: 2, done: 2 }));
    };
    const target = { jobId: "race-1", output: OUTPUT, chunks: 2, done: 1, startedAt: "2026-12-01T00:00:00.000Z" };
    expect(await failJob(deps, target, new CloudmillError(ErrorCode.COST_LIMIT, "over"))).toBeUndefined();
    expect(await readJson(output, OUTPUT.status, JobStatus)).toEqual(later);
  });
});

describe("a price ceiling over a keyed job's reduce stage", () => {
  it("counts the reduce tasks' time: the job fails with COST_LIMIT after its first reduce task, and a retry finishes it", async () => {
    const words = ["ants", "bees", "cats", "dogs", "eels", "foxes", "gnus", "hens", "ibis"].map((w) => w.slice(0, 4));
    const lines = Array.from({ length: 12 * LINES_PER_CHUNK }, (_, i) => `${words[(i * 7) % words.length]} ${String(i).padStart(4, "0")}`);
    const text = `${lines.join("\n")}\n`;
    const chunkSize = text.length / 12;
    expect(Number.isInteger(chunkSize)).toBe(true);
    const s = await setUp("keyed", text, { op: "slow-reduce", partitions: 3, maxCostUsd: 0.0003 }, chunkSize);
    expect(s.manifest.chunks).toBe(12);

    for (const task of await s.takeAll()) {
      await s.run(task);
      await s.wake(partKey(s.jobId, 0));
    }
    expect((await s.status()).state).toBe("running");
    const reduces = await s.takeAll();
    expect(reduces.map((t) => ("reduce" in t ? t.reduce.partition : -1)).sort()).toEqual([0, 1, 2]);

    expect(await s.run(reduces[0]!)).toMatchObject({ kind: "done" });
    await s.wake(partKey(s.jobId, 12));
    const failed = await s.status();
    expect(failed.error?.code, JSON.stringify(failed)).toBe("COST_LIMIT");
    expect(failed.error?.message).toMatch(/ after 12 of 12 chunks and 1 reduce tasks is over maxCostUsd \$0\.0003 /);
    // Progress counts every task of the job, its reduce tasks too: 12 map tasks and 1 of 3 reduce tasks done.
    expect(failed).toMatchObject({ chunks: 15, done: 13 });
    // The reduce task's keys each took a minute: at least that, and no more than every task's requests on top
    // (with the shuffle's: at most a plan's PUT and GET and an output part's PUT a task).
    const keys = (await readJson(s.output, partKey(s.jobId, 12), z.object({ partial: z.object({ records: z.number() }) }))).partial.records;
    expect(keys).toBeGreaterThan(0);
    const compute = keys * STEP_SECONDS * (M7G_VCPU_HOUR / 3600);
    const measured = measuredOf(failed.error!.message);
    expect(measured).toBeGreaterThanOrEqual(compute);
    expect(measured).toBeLessThan(compute + 13 * (requestsUsd(12) + 2 * S3_PUT + S3_GET));
    for (const task of reduces.slice(1)) expect(await s.run(task)).toEqual({ kind: "job-ended" });

    expect((await resumeJob(s.deps, s.jobId, { maxCostUsd: 1, after: 0 }, { jobDeadlineSeconds: 3600 })).kind).toBe("resumed");
    await runToEnd(s);
    expect((await s.status()).state).toBe("succeeded");
    // Each first word's lines, counted here from the text.
    const expected = new Map<string, number>();
    for (const line of lines) expected.set(line.split(" ")[0]!, (expected.get(line.split(" ")[0]!) ?? 0) + 1);
    const got = new Map<string, number>();
    const result = await readJson(s.output, OUTPUT.result, z.object({ parts: z.array(z.object({ key: z.string() })) }));
    for (const part of result.parts) {
      const key = part.key.slice(`s3://${s.output.name}/`.length);
      const pieces: Uint8Array[] = [];
      for await (const piece of await s.output.get(key)) pieces.push(piece);
      const body = Buffer.concat(pieces).toString();
      for (const row of body.split("\n").filter(Boolean)) {
        const { key: word, n } = JSON.parse(row) as { key: string; n: number };
        got.set(word, n);
      }
    }
    expect(got).toEqual(expected);
  });
});

describe("usdOver", () => {
  it("gives six decimals, or as many more as it takes to read as past the ceiling", () => {
    expect(usdOver(0.5, 0.1)).toBe("0.500000");
    expect(usdOver(0.0002944, 0.000294)).toBe("0.0002944");
    expect(usdOver(0.00029400001, 0.000294)).toBe("0.00029400001");
  });
});

describe("a price ceiling before the job starts", () => {
  /** Job `jobId` over `n` objects of `size` bytes each, under `maxCostUsd`, on a fleet of `instanceType`. */
  const startOver = async (name: string, n: number, size: number, maxCostUsd: number, instanceType: string) => {
    const { inputs, output, deps } = localPipeline(path.join(dir, name), { instanceType });
    const objects: InputObject[] = [];
    for (let i = 0; i < n; i++) {
      const key = `plate/f${String(i).padStart(3, "0")}.txt`;
      await inputs.put(key, Buffer.from(`${"x".repeat(size - 1)}\n`));
      const info = (await inputs.head(key))!;
      objects.push({ bucket: "in", key, size: info.size, etag: info.etag, name: key });
    }
    const job = taskJobOf(parseJobSpec({ op: "count", inputs: ["plate/"], maxCostUsd }), deps.registry);
    const plan = { jobId: `${name}-1`, job, inputs: objects, chunkSize: 64 * 1024 * 1024, output: OUTPUT, trigger: "test" };
    return { deps, output, plan: { ...plan, deadlineSeconds: 3600, maxCostUsd } };
  };

  it("prices small objects as the tasks they are packed into, not as a task each", async () => {
    // 300 objects of 690 bytes: 2 packed tasks (256 objects at most in one). As 300 tasks, their
    // requests alone (two GETs, a PUT, 2.2 SQS requests each) would pass $0.001.
    expect(300 * requestsUsd(1)).toBeGreaterThan(0.001);
    const s = await startOver("packed", 300, 690, 0.001, "m7g.large");
    const { manifest } = await startJob(s.deps, s.plan);
    expect(manifest.chunks).toBe(Math.ceil(300 / 256));
  });

  it("refuses a ceiling it could not keep: instances of a family the price table lacks, at the start or on a retry", async () => {
    const s = await startOver("unpriced", 3, 10, 1, "t4g.large");
    await expect(startJob(s.deps, s.plan)).rejects.toMatchObject({
      code: "INVALID_SPEC",
      message: expect.stringMatching(/^maxCostUsd cannot be kept on this stack: its instances \(t4g\.large on-demand\) have no price/),
    });
    const { maxCostUsd: _, ...unlimited } = s.plan;
    await startJob(s.deps, { ...unlimited, job: { ...unlimited.job, maxCostUsd: undefined } });
    await cancelJob(s.deps, unlimited.jobId, OUTPUT);
    expect(await resumeJob(s.deps, unlimited.jobId, { after: 0, maxCostUsd: 1 }, { jobDeadlineSeconds: 600 })).toMatchObject({
      kind: "refused",
      reason: expect.stringContaining("maxCostUsd cannot be kept on this stack"),
    });
  });
});
