/**
 * The keyed path broken on purpose: a groupby job on the emulated cloud under seeded S3/SQS
 * faults in workers and roles, a worker SIGKILLed as its reduce tasks start, every reduce task
 * and some map tasks sent again, and reducers called concurrently throughout. Its parts must
 * equal Python's GROUP BY, and late duplicates afterwards must change no byte of them.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cloudSplitDeps } from "../../lib/aws/cloudDeps.js";
import { SqsTaskQueue } from "../../lib/aws/SqsTaskQueue.js";
import { toCloudmillError } from "../../lib/core/errors.js";
import { Manifest, type MapTask, type ReduceTask } from "../../lib/core/job/manifest.js";
import { planChunks } from "../../lib/core/job/planner.js";
import { manifestKey, reduceEnqueuedKey } from "../../lib/core/keys.js";
import { silentLogger } from "../../lib/core/log.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { parseS3Uri } from "../../lib/core/s3Uri.js";
import { pythonGroupby, type PythonGroup } from "../helpers/csv.js";
import { getObject, prng, putObject, sleep, startCloud, statusAt, VERBOSE, waitFor, type ChaosCloud } from "./helpers.js";

const JOB = "keyed-chaos";
const PARTITIONS = 5;
let dir: string;
let bytes: Buffer;
let expected: Map<string, PythonGroup>;
let c: ChaosCloud;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-keyed-chaos-"));
  const next = prng(77);
  const rows = ["site,depth,flag"];
  for (let i = 0; i < 2500; i++) rows.push(`site-${Math.floor(next() * 400)},${(next() * 90).toFixed(4)},${i % 17 === 0 ? '"a\nb"' : "x"}`);
  bytes = Buffer.from(`${rows.join("\n")}\n`);
  const file = path.join(dir, "sites.csv");
  await writeFile(file, bytes);
  // Before the cloud starts: Python blocks this event loop, which the emulator shares.
  expected = pythonGroupby(file, ["site"], "depth");
  c = await startCloud({
    workers: 3,
    workerConcurrency: 2,
    maxAttempts: 8,
    visibilitySeconds: 5,
    chunkSize: 1024,
    workerFaults: { rate: 0.05, seed: 31 },
    roleFaults: { rate: 0.05, seed: 32 },
  });
}, 90_000);

afterAll(async () => {
  await c?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

const partsOf = async (): Promise<{ keys: string[]; bodies: Buffer[] }> => {
  const result = JSON.parse((await getObject(c, c.outputBucket, `_jobs/${JOB}/result.json`))!.toString("utf8")) as {
    parts: { key: string }[];
  };
  const keys = result.parts.map((p) => p.key);
  const bodies = await Promise.all(keys.map(async (k) => (await getObject(c, c.outputBucket, parseS3Uri(k).key))!));
  return { keys, bodies };
};

describe("keyed chaos over the emulated cloud", () => {
  it("groupby with 5% faults, a SIGKILL, duplicated map and reduce tasks and concurrent reducers: exact, and late duplicates change nothing", async () => {
    const registry = new OpRegistry();
    // The reducer as a second Lambda would run it: reliable clients, the same queue.
    const rogue = {
      ...cloudSplitDeps({ outputBucket: c.outputBucket, taskQueueUrl: c.cloud.taskQueueUrl }, silentLogger, c.clients),
      registry,
    };
    const queue = new SqsTaskQueue(c.clients.sqs, c.cloud.taskQueueUrl);
    await putObject(c, "_inputs/sites.csv", bytes);
    const spec = {
      op: "groupby",
      inputs: [`s3://${c.inputBucket}/_inputs/sites.csv`],
      params: { key: "site", value: "depth" },
      partitions: PARTITIONS,
    };
    await putObject(c, `_jobs/${JOB}.json`, JSON.stringify(spec));

    let stopRogues = false;
    let rogueCalls = 0;
    const rogues = (async () => {
      while (!stopRogues) {
        rogueCalls++;
        await Promise.all(
          [0, 1].map(() =>
            reduceJob(rogue, JOB).catch((err: unknown) => {
              if (toCloudmillError(err).code !== "ENVIRONMENT") throw err;
            }),
          ),
        );
        await sleep(200);
      }
    })();

    const manifest = await waitFor("the manifest", async () => {
      const b = await getObject(c, c.outputBucket, manifestKey(JOB));
      return b && Manifest.parse(JSON.parse(b.toString("utf8")));
    });
    const reduceTasks = (): string[] =>
      Array.from({ length: PARTITIONS }, (_, partition) =>
        JSON.stringify({ v: 1, jobId: JOB, reduce: { partition, chunks: manifest.chunks }, job: manifest.job } satisfies ReduceTask),
      );
    const plan = planChunks(manifest.inputs!, manifest.chunkSize);
    const mapTasks = Array.from({ length: 10 }, (_, i) =>
      JSON.stringify({ v: 1, jobId: JOB, chunk: plan.chunkAt((i * 7) % manifest.chunks), job: manifest.job } satisfies MapTask),
    );

    // As the reduce stage starts: kill a worker, and send every reduce task and some map tasks again.
    await waitFor(
      "the reduce tasks to be enqueued",
      async () => ((await getObject(c, c.outputBucket, reduceEnqueuedKey(JOB))) ? true : undefined),
      200_000,
      100,
    );
    const pidBefore = c.cloud.workerPids()[0];
    c.cloud.killWorker(0);
    await queue.sendBatch([...reduceTasks(), ...mapTasks]);

    const status = await waitFor(
      "the job to end",
      async () => {
        const s = await statusAt(c, `_jobs/${JOB}/status.json`);
        return s && s.state !== "running" ? s : undefined;
      },
      240_000,
      250,
    );
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expect([status.chunks, status.done]).toEqual([manifest.chunks + PARTITIONS, manifest.chunks + PARTITIONS]);

    const first = await partsOf();
    const got = new Map<string, unknown>();
    for (const body of first.bodies) {
      for (const line of body
        .toString("utf8")
        .split("\n")
        .filter((l) => l !== "")) {
        const { key, ...rest } = JSON.parse(line) as { key: string };
        expect(got.has(JSON.stringify([key]))).toBe(false);
        got.set(JSON.stringify([key]), rest);
      }
    }
    expect(got).toEqual(expected);

    // Late duplicates of every task, and more reducers: no byte of the output changes.
    await queue.sendBatch([...reduceTasks(), ...mapTasks]);
    await waitFor("the queues to drain", async () => ((await c.idle()) ? true : undefined), 120_000, 250);
    stopRogues = true;
    await rogues;
    const again = await partsOf();
    expect(again.keys).toEqual(first.keys);
    for (const [i, body] of again.bodies.entries()) expect(body.equals(first.bodies[i]!), first.keys[i]).toBe(true);

    const faults = c.lines.filter((l) => l.json?.["message"] === "fault injected").length;
    const roleFaults = c.counts.get("fault injected") ?? 0;
    if (VERBOSE) process.stderr.write(`keyed chaos: ${faults} worker faults, ${roleFaults} lines of faults, ${rogueCalls} rogue rounds\n`);
    process.stdout.write(
      `\n[reliability] keyed chaos (seed 31/32)\n  injected: ${faults} faults, 1 SIGKILL (worker pid ${pidBefore}), ` +
        `${PARTITIONS} reduce and ${mapTasks.length} map tasks sent twice more, ${rogueCalls} rounds of 2 concurrent reducers\n` +
        `  verified: ${expected.size} keys in ${PARTITIONS} parts equal Python's GROUP BY; late duplicates changed no byte\n`,
    );
    expect(faults).toBeGreaterThan(0);
    expect(c.cloud.workerPids()[0]).not.toBe(pidBefore);
  }, 400_000);
});
