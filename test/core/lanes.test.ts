/**
 * Capacity lanes (`spot: "per-job"`): a job that prefers `cheapest` is queued on the spot lane's
 * queue, every other job on the on-demand one, and its reduce tasks and resumes follow it there;
 * its report and price ceiling price spot. A stack of one lane queues every job on its one queue.
 * Answers are counted in the test.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { manifestKey, partsPrefix, parsePartKey, reportKey } from "../../lib/core/keys.js";
import { Manifest } from "../../lib/core/job/manifest.js";
import type { Preference } from "../../lib/core/job/spec.js";
import { silentLogger } from "../../lib/core/log.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { readJson } from "../../lib/core/pipeline/blobJson.js";
import { cancelJob } from "../../lib/core/pipeline/cancel.js";
import { costCeilingError } from "../../lib/core/pipeline/costCeiling.js";
import type { SplitDeps } from "../../lib/core/pipeline/deps.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { resumeJob } from "../../lib/core/pipeline/resume.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import type { TaskQueue } from "../../lib/core/ports.js";
import { prng } from "../../lib/dev/prng.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";
import { expectMatchesReference } from "../helpers/devCloud.js";
import { keyedCounts, OUTPUT, startJobOver, takeAll } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-lanes-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const registry = new OpRegistry(builtinOps);

const lines = (() => {
  const next = prng(51);
  return Array.from({ length: 4000 }, () => `w${Math.floor(next() ** 2 * 300)}`);
})();
const expected = new Map<string, number>();
for (const l of lines) expected.set(l, (expected.get(l) ?? 0) + 1);
const bytes = Buffer.from(`${lines.join("\n")}\n`);

const setUp = async (name: string, options: { spotLane: boolean; prefer?: Preference; maxCostUsd?: number }) => {
  const inputs = new FsBlobStore(path.join(dir, name, "in"));
  const output = new FsBlobStore(path.join(dir, name, "out"));
  const onDemand = new MemoryTaskQueue({ visibilitySeconds: 30 });
  const spot = new MemoryTaskQueue({ visibilitySeconds: 30 });
  const deps: SplitDeps = {
    output,
    queue: onDemand,
    ...(options.spotLane ? { spotQueue: spot } : {}),
    inputStore: () => inputs,
    registry,
    log: silentLogger,
    instanceType: "m7g.large",
    capacity: "on-demand",
  };
  const jobId = `${name}-1`;
  const spec = {
    op: "distinct",
    partitions: 2,
    ...(options.prefer ? { prefer: options.prefer } : {}),
    ...(options.maxCostUsd !== undefined ? { maxCostUsd: options.maxCostUsd } : {}),
  };
  await startJobOver(deps, inputs, bytes, jobId, spec as never, 2048);
  return { deps, output, onDemand, spot, jobId };
};
type Setup = Awaited<ReturnType<typeof setUp>>;

/** Runs what is on `from`, checking that `other` stays empty, until the job ends; returns the task kinds seen. */
const runLane = async (s: Setup, from: TaskQueue, other: TaskQueue): Promise<string[]> => {
  const kinds: string[] = [];
  for (let round = 0; round < 5; round++) {
    expect(await takeAll(other)).toEqual([]);
    const tasks = await takeAll(from);
    for (const task of tasks) {
      kinds.push("reduce" in task ? "reduce" : "map");
      await runTask(s.deps, task, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    }
    const outcome = await reduceJob(s.deps, s.jobId, { fleet: true });
    if (outcome.kind === "succeeded") return kinds;
  }
  throw new Error("the job did not end");
};

const counts = (s: Setup): Promise<Map<string, number>> => keyedCounts(s.output);

const reportCapacity = async (s: Setup): Promise<unknown> =>
  (await readJson(s.output, reportKey(s.jobId), z.object({ cost: z.object({ capacity: z.string().optional() }) }))).cost.capacity;

describe("a stack with a spot lane", () => {
  it("queues a job that prefers cheapest, map and reduce tasks alike, on the spot queue, and prices its report as spot", async () => {
    const s = await setUp("cheapest", { spotLane: true, prefer: "cheapest" });
    const kinds = await runLane(s, s.spot, s.onDemand);
    expect(kinds.filter((k) => k === "map").length).toBe(Math.ceil(bytes.length / 2048));
    expect(kinds.filter((k) => k === "reduce").length).toBe(2);
    expect(await counts(s)).toEqual(expected);
    expect(await reportCapacity(s)).toBe("spot");
  });

  it("queues every other job on the on-demand queue, priced on demand", async () => {
    for (const prefer of [undefined, "fastest"] as const) {
      const s = await setUp(`default-${prefer ?? "none"}`, { spotLane: true, ...(prefer ? { prefer } : {}) });
      const kinds = await runLane(s, s.onDemand, s.spot);
      expect(kinds).toContain("reduce");
      expect(await counts(s)).toEqual(expected);
      expect(await reportCapacity(s)).toBe("on-demand");
    }
  });

  it("queues a cheapest job's merge tasks (an order-free job merged in a tree) on the spot queue", async () => {
    const inputs = new FsBlobStore(path.join(dir, "tree", "in"));
    const output = new FsBlobStore(path.join(dir, "tree", "out"));
    const onDemand = new MemoryTaskQueue({ visibilitySeconds: 30 });
    const spot = new MemoryTaskQueue({ visibilitySeconds: 30 });
    const deps: SplitDeps = { output, queue: onDemand, spotQueue: spot, inputStore: () => inputs, registry, log: silentLogger };
    await startJobOver(deps, inputs, bytes, "tree-1", { op: "count", fanIn: 2, prefer: "cheapest" }, 1024);
    let merges = 0;
    for (let round = 0; round < 20; round++) {
      expect(await takeAll(onDemand)).toEqual([]);
      for (const task of await takeAll(spot)) {
        if ("merge" in task) merges++;
        await runTask(deps, task, { checkOpDigest: false });
      }
      if ((await reduceJob(deps, "tree-1", { fleet: true })).kind === "succeeded") break;
    }
    expect(merges).toBeGreaterThan(2);
    expectMatchesReference("count", {}, bytes, await readJson(output, OUTPUT.result, z.unknown()));
  });

  it("resumes a cheapest job on the spot queue", async () => {
    const s = await setUp("resume", { spotLane: true, prefer: "cheapest" });
    const maps = await takeAll(s.spot);
    for (const task of maps.slice(2)) await runTask(s.deps, task, { checkOpDigest: false });
    await cancelJob(s.deps, s.jobId, OUTPUT);
    expect(await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 3600 })).toMatchObject({ kind: "resumed", tasks: 2 });
    expect(await takeAll(s.onDemand)).toEqual([]);
    await runLane(s, s.spot, s.onDemand);
    expect(await counts(s)).toEqual(expected);
  });

  it("measures a cheapest job's spending against its ceiling at spot prices", async () => {
    const s = await setUp("ceiling", { spotLane: true, prefer: "cheapest", maxCostUsd: 1e-12 });
    for (const task of await takeAll(s.spot)) await runTask(s.deps, task, { checkOpDigest: false, ranOn: "fleet", worker: "w" });
    const manifest = await readJson(s.output, manifestKey(s.jobId), Manifest);
    const mapParts = new Map<number, string>();
    for await (const { key } of s.output.list(partsPrefix(s.jobId))) mapParts.set(parsePartKey(key)!.index, key);
    const error = await costCeilingError(s.deps, { manifest, mapParts, merged: [], reduced: [] });
    expect(error?.message).toContain("m7g.large spot prices");
  });
});

describe("a stack of one lane", () => {
  it("queues a job that prefers cheapest on its one queue, priced as the stack's capacity", async () => {
    const s = await setUp("one-lane", { spotLane: false, prefer: "cheapest" });
    await runLane(s, s.onDemand, s.spot);
    expect(await counts(s)).toEqual(expected);
    expect(await reportCapacity(s)).toBe("on-demand");
  });
});
