/**
 * Parts no notice names: during a deploy, workers of the release before part notices write
 * parts and tell no one (their S3 events are gone with the new stack's notification). Every job
 * queued on the fleet keeps the reducer's wake-ups (wake.ts), which find those parts and end the
 * job rather than leave it running for good.
 */
import { describe, expect, it } from "vitest";
import { awsClients, destroyClients } from "../../lib/aws/clients.js";
import { cloudDeps } from "../../lib/aws/cloudDeps.js";
import { SqsTaskQueue } from "../../lib/aws/SqsTaskQueue.js";
import { TaskWorker } from "../../lib/aws/TaskWorker.js";
import { silentLogger } from "../../lib/core/log.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { wakeKey } from "../../lib/core/keys.js";
import { textOf, useDevCloud, waitFor } from "../helpers/devCloud.js";

const CHUNK = 2048;
// No worker process of its own; a short lease, so that the wake-ups come seconds apart.
const t = useDevCloud({ workers: 0, inlineMaxBytes: 0, chunkSize: CHUNK, taskLeaseSeconds: 2 });

describe("parts no notice names", () => {
  it("a job mapped by workers that send no notices ends by the reducer's wake-ups, with the exact count", async () => {
    const c = t();
    const bytes = textOf(10 * CHUNK, 7);
    await c.put("count/rollout/older workers.txt", bytes);
    const { jobId } = (await waitFor(
      "the job to start",
      () => c.getJson(c.output, "count/rollout/older workers.txt/status.json"),
      30_000,
    )) as {
      jobId: string;
    };
    // While no chunk is mapped, each wake-up sends the next: the first is followed by a second.
    const dueOf = async () => ((await c.getJson(c.output, wakeKey(jobId))) as { due: number } | undefined)?.due;
    const first = await waitFor("the first wake-up", dueOf, 30_000);
    await waitFor("a wake-up sent by a wake-up", async () => ((await dueOf()) ?? first) > first || undefined, 30_000);
    // A worker of the older release: it maps and writes parts, and names none of them.
    const clients = awsClients({ endpoint: c.cloud.endpoint, region: "us-east-1" }, {});
    const deps = { ...cloudDeps({ outputBucket: c.output }, silentLogger, clients), registry: new OpRegistry(builtinOps) };
    const worker = new TaskWorker({
      queue: new SqsTaskQueue(clients.sqs, c.cloud.taskQueueUrl),
      deps,
      concurrency: 2,
      visibilitySeconds: 30,
      heartbeatSeconds: 10,
      waitSeconds: 1,
    }).start();
    let done = 0;
    worker.on("task_done", () => void done++);
    try {
      const status = await c.waitForEnd("count/rollout/older workers.txt/status.json", 60_000);
      expect(done).toBeGreaterThan(1);
      expect(status).toMatchObject({ state: "succeeded", done, chunks: done });
      // Every line, the last one without its newline (by construction: the text has no final newline).
      const lines = bytes.toString("latin1").split("\n").length;
      expect(await c.getJson(c.output, "count/rollout/older workers.txt/result.json")).toEqual({ records: lines });
    } finally {
      await worker.stop(5_000);
      destroyClients(clients);
    }
  }, 90_000);
});
