/** A job started the way the splitter starts one, over one object of a test's input store. */
import path from "node:path";
import * as z from "zod";
import { TaskMessage, type InputObject } from "../../lib/core/job/manifest.js";
import { parseJobSpec, type JobSpecInput } from "../../lib/core/job/spec.js";
import type { SplitDeps } from "../../lib/core/pipeline/deps.js";
import { startJob, taskJobOf } from "../../lib/core/pipeline/split.js";
import type { BlobStore, TaskQueue } from "../../lib/core/ports.js";
import { readBytes, readJson } from "../../lib/core/pipeline/blobJson.js";
import { silentLogger } from "../../lib/core/log.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { waitFor } from "./devCloud.js";

export const OUTPUT = { result: "out/result.json", status: "out/status.json" };

/**
 * The cloud's parts on this machine: an input and an output store under `root`, a task queue in
 * memory (30 s visibility) and the built-in ops, as the splitter, workers and reducer share
 * them; `extra` adds to or replaces any of the splitter's deps.
 */
export const localPipeline = (root: string, extra: Partial<SplitDeps> = {}) => {
  const inputs = new FsBlobStore(path.join(root, "in"));
  const output = new FsBlobStore(path.join(root, "out"));
  const queue = new MemoryTaskQueue({ visibilitySeconds: 30 });
  const deps: SplitDeps = {
    output,
    queue,
    inputStore: () => inputs,
    registry: new OpRegistry(builtinOps),
    log: silentLogger,
    ...extra,
  };
  return { inputs, output, queue, deps };
};

/** Writes `bytes` as object `data` of `inputs` and starts job `jobId` over it with `spec`, in chunks of `chunkSize`. */
export const startJobOver = async (
  deps: SplitDeps,
  inputs: BlobStore,
  bytes: Buffer,
  jobId: string,
  spec: Omit<JobSpecInput, "inputs">,
  chunkSize: number,
) => {
  await inputs.put("data", bytes);
  const info = (await inputs.head("data"))!;
  const object: InputObject = { bucket: "in", key: "data", size: info.size, etag: info.etag, name: "data" };
  return startJob(deps, {
    jobId,
    job: taskJobOf(parseJobSpec({ ...spec, inputs: ["data"] }), deps.registry),
    ...(spec.fanIn !== undefined ? { fanIn: spec.fanIn } : {}),
    ...(spec.prefer !== undefined ? { prefer: spec.prefer } : {}),
    inputs: [object],
    chunkSize,
    output: OUTPUT,
    trigger: "test",
    deadlineSeconds: 3600,
  });
};

/** Every visible task on a queue, taken off it (deleted), in the order received. */
export const takeAll = async (queue: TaskQueue): Promise<TaskMessage[]> => {
  const tasks: TaskMessage[] = [];
  for (
    let [m] = await queue.receive({ maxMessages: 1, waitSeconds: 0 });
    m;
    [m] = await queue.receive({ maxMessages: 1, waitSeconds: 0 })
  ) {
    tasks.push(TaskMessage.parse(JSON.parse(m.body)));
    await queue.delete(m.receiptHandle);
  }
  return tasks;
};

/** A keyed count job's result (distinct), read from its parts in `store`: key → count. */
export const keyedCounts = async (store: BlobStore): Promise<Map<string, number>> => {
  const manifest = await readJson(store, OUTPUT.result, z.object({ parts: z.array(z.object({ key: z.string() })) }));
  const counts = new Map<string, number>();
  for (const part of manifest.parts) {
    const text = (await readBytes(store, part.key.slice(`s3://${store.name}/`.length))).toString("utf8");
    for (const line of text.split("\n").filter((l) => l !== "")) {
      const row = z.object({ key: z.string(), count: z.number() }).parse(JSON.parse(line));
      counts.set(row.key, row.count);
    }
  }
  return counts;
};

/**
 * Runs the fleet's reducer on job `jobId` until it succeeds, then waits for every copy of its tasks
 * (a straggler and its backup) to leave the queue: a race's loser is stopped, or finds its part written.
 */
export const untilSucceededAndDrained = async (deps: SplitDeps, jobId: string, queue: TaskQueue): Promise<void> => {
  await waitFor(
    "the job to succeed",
    async () => ((await reduceJob(deps, jobId, { fleet: true })).kind === "succeeded" ? true : undefined),
    30_000,
    100,
  );
  await waitFor("both copies to leave the queue", async () => ((await queue.depth()).inFlight === 0 ? true : undefined), 20_000, 50);
};
