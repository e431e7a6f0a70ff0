/**
 * Breaking the emulated cloud on purpose, and checking the design's invariants hold:
 * a worker killed mid-chunk loses nothing; duplicated S3 events and task messages change
 * nothing; a chunk that kills its worker every time ends in the dead-letter queue and fails
 * its job naming the input and byte range; a bad record fails fast naming its byte offset;
 * an input overwritten mid-job fails that job instead of mixing versions.
 *
 * Workers are real processes with debug logs: tests watch their "chunk received" lines.
 * To hold a worker at a known point, tests play the ECS agent (ECS_AGENT_URI): a worker asks
 * it for scale-in protection after receiving a chunk and before mapping it, and waits for
 * the answer, so an agent that answers late keeps that worker mid-chunk.
 */
import { HeadObjectCommand, CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { SendMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqsTaskQueue } from "../../lib/aws/SqsTaskQueue.js";
import { PROTECTION_IDLE_MS_ENV } from "../../lib/aws/env.js";
import { cloudDeps } from "../../lib/aws/cloudDeps.js";
import { encodeEventKey } from "../../lib/dev/emulator.js";
import { Manifest } from "../../lib/core/job/manifest.js";
import { silentLogger } from "../../lib/core/log.js";
import { splitterHandler } from "../../lib/aws/handlers.js";
import type { TaskQueue } from "../../lib/core/ports.js";
import {
  chunksOf,
  expectMatchesReference,
  linesOf,
  numbersOf,
  requireBuild,
  startFakeEcsAgent,
  textOf,
  useDevCloud,
  waitFor,
  type FakeEcsAgent,
  type TestCloud,
  type WorkerLine,
} from "../helpers/devCloud.js";
import { refWordcount } from "../helpers/reference.js";

const KiB = 1024;
const CHUNK = 4 * KiB;
const TIMEOUT = 150_000;

let agent: FakeEcsAgent;
beforeAll(async () => {
  requireBuild();
  agent = await startFakeEcsAgent();
});
afterAll(async () => {
  await agent?.close();
});

/** Calls onReceived for every "chunk received" line (from now on) that matches the filter. */
const onChunkReceived = (c: TestCloud, fields: Readonly<Record<string, unknown>>, onReceived: (line: WorkerLine) => void): (() => void) =>
  c.onLine((line) => {
    if (linesOf([line], "chunk received", fields).length) onReceived(line);
  });

const jobIdAt = async (c: TestCloud, statusKey: string): Promise<string> =>
  waitFor(`status.json at ${statusKey}`, async () => ((await c.getJson(c.output, statusKey)) as { jobId?: string } | undefined)?.jobId);

describe("crashes (2 workers, 3 s visibility, 2 attempts)", () => {
  const cloud = useDevCloud(() => ({
    chunkSize: CHUNK,
    workers: 2,
    visibilitySeconds: 3,
    maxAttempts: 2,
    // Protection given up after each chunk: each chunk asks for it again, where a test holds it.
    workerEnv: { POWERTOOLS_LOG_LEVEL: "DEBUG", ECS_AGENT_URI: agent.uri, [PROTECTION_IDLE_MS_ENV]: "0" },
    extraInputBuckets: ["cloudmill-elsewhere"],
  }));

  it(
    "a worker SIGKILLed mid-chunk: the chunk is delivered again and the result is exact",
    async () => {
      const c = cloud();
      const key = "wordcount/killed mid-chunk.txt";
      const bytes = textOf(24 * KiB, 41);

      // Protection requests wait until the first chunk's worker is dead: that worker is then
      // certainly between receiving its chunk and mapping it.
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      agent.onRequest = (req) => (req.body.ProtectionEnabled ? gate : undefined);
      let killed: { slot: number; pid: number; jobId: string; chunk: number } | undefined;
      const off = onChunkReceived(c, { input: `s3://${c.input}/${key}`, attempt: 1 }, (line) => {
        if (killed) return;
        killed = {
          slot: line.worker,
          pid: c.cloud.workerPids()[line.worker]!,
          jobId: String(line.json!["jobId"]),
          chunk: Number(line.json!["chunk"]),
        };
        c.cloud.killWorker(line.worker, "SIGKILL");
        open();
      });
      try {
        await c.put(key, bytes);
        const status = await c.waitForEnd(`${key}/status.json`);
        const chunks = chunksOf(bytes.length, CHUNK);
        expect(status).toMatchObject({ state: "succeeded", chunks, done: chunks });
        expectMatchesReference("wordcount", {}, bytes, await c.getJson(c.output, `${key}/result.json`));

        expect(killed).toBeDefined();
        const { jobId, chunk, slot, pid } = killed!;
        expect(status.jobId).toBe(jobId);
        // The killed chunk came back after its visibility timeout, as attempt 2, and was mapped then.
        expect(linesOf(c.lines, "chunk received", { jobId, chunk, attempt: 2 }).length).toBeGreaterThanOrEqual(1);
        expect(linesOf(c.lines, "chunk done", { jobId, chunk }).length).toBeGreaterThanOrEqual(1);
        // The dead worker was replaced by a new process.
        expect(c.cloud.workerPids()[slot]).not.toBe(pid);
        await c.waitForIdle();
      } finally {
        off();
        open();
        agent.onRequest = undefined;
      }
    },
    TIMEOUT,
  );

  it(
    "a chunk that kills its worker on every attempt ends in the dead-letter queue; the job fails naming the input and byte range",
    async () => {
      const c = cloud();
      // grep with a pattern that backtracks catastrophically on one line only, in chunk 2: the
      // worker mapping that chunk is stuck in it until killed, as if it ran out of memory.
      const head = textOf(9 * KiB, 42);
      const poison = `${"a".repeat(40)}!\n`;
      const bytes = Buffer.concat([head, Buffer.from("\n"), Buffer.from(poison), textOf(4 * KiB, 43)]);
      const poisonAt = head.length + 1;
      const K = Math.floor(poisonAt / CHUNK);
      expect(K).toBe(2);
      const input = "_inputs/poison pill.txt";
      const jobId = "poisoned-1";

      const kills: number[] = [];
      const off = onChunkReceived(c, { jobId, chunk: K }, (line) => {
        kills.push(Number(line.json!["attempt"]));
        c.cloud.killWorker(line.worker, "SIGKILL");
      });
      try {
        await c.put(input, bytes);
        await c.put(
          `_jobs/${jobId}.json`,
          JSON.stringify({ op: "grep", inputs: [`s3://${c.input}/${input}`], params: { pattern: "^(a+)+$" } }),
        );
        const status = await c.waitForEnd(`_jobs/${jobId}/status.json`);
        expect(status.state).toBe("failed");
        expect(status.error).toMatchObject({
          code: "CHUNK_FAILED",
          input: `s3://${c.input}/${input}`,
          range: [K * CHUNK, (K + 1) * CHUNK],
          chunk: K,
        });
        expect(status.error!.message).toContain(`s3://${c.input}/${input} (bytes ${K * CHUNK}-${(K + 1) * CHUNK})`);
        expect(status.error!.message).toMatch(/chunk 2 failed .*without reporting an error/);
        // Exactly maxAttempts deliveries, each one killed; then the dead-letter queue took it.
        expect(kills).toEqual([1, 2]);
        expect(await c.get(c.output, `_jobs/${jobId}/result.json`)).toBeUndefined();
        await c.waitForIdle();
        expect(linesOf(c.lines, "chunk received", { jobId, chunk: K }).length).toBe(2);
      } finally {
        off();
      }
    },
    TIMEOUT,
  );
});

describe("duplicates, bad records and overwrites (1 worker, 30 s visibility)", () => {
  const cloud = useDevCloud(() => ({
    chunkSize: CHUNK,
    workers: 1,
    visibilitySeconds: 30,
    maxAttempts: 3,
    // Protection given up after each chunk: each chunk asks for it again, where a test holds it.
    workerEnv: { POWERTOOLS_LOG_LEVEL: "DEBUG", ECS_AGENT_URI: agent.uri, [PROTECTION_IDLE_MS_ENV]: "0" },
    extraInputBuckets: ["cloudmill-elsewhere"],
  }));

  it(
    "a duplicated S3 event and duplicated task messages change nothing: one job, one set of tasks, the same bytes",
    async () => {
      const c = cloud();
      // The input lives in a bucket the dev cloud does not watch, so this test delivers its
      // S3 events itself, to the same splitter handler the dev cloud (and Lambda) runs.
      const bucket = "cloudmill-elsewhere";
      await c.s3.send(new CreateBucketCommand({ Bucket: bucket }));
      const key = "count/dup ü+% 50%.txt";
      const bytes = textOf(20 * KiB, 44);
      const chunks = chunksOf(bytes.length, CHUNK);
      await c.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }));
      const { ETag } = await c.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      const event = {
        Records: [
          {
            eventVersion: "2.1",
            eventSource: "aws:s3",
            awsRegion: "us-east-1",
            eventName: "ObjectCreated:Put",
            s3: { bucket: { name: bucket }, object: { key: encodeEventKey(key), eTag: ETag!.replaceAll('"', ""), size: bytes.length } },
          },
        ],
      };

      const deps = cloudDeps({ outputBucket: c.output, endpoint: c.cloud.endpoint }, silentLogger, c.cloud.clients);
      const real = new SqsTaskQueue(c.cloud.clients.sqs, c.cloud.taskQueueUrl);
      const sent: string[] = [];
      const queue: TaskQueue = {
        sendBatch: async (bodies, options) => {
          sent.push(...bodies);
          await real.sendBatch(bodies, options);
        },
        receive: (o) => real.receive(o),
        delete: (h) => real.delete(h),
        changeVisibility: (h, s) => real.changeVisibility(h, s),
        depth: () => real.depth(),
      };
      const split = splitterHandler({ ...deps, queue }, { defaultChunkSize: CHUNK, maxAttempts: 3, jobDeadlineSeconds: 3600 });

      const [first] = await split(event);
      expect(first).toMatchObject({ kind: "started", chunks });
      const jobId = (first as { jobId: string }).jobId;
      expect(sent).toHaveLength(chunks);
      // The same event again, at once: the same job id, and nothing enqueued.
      expect(await split(event)).toEqual([{ kind: "duplicate", jobId, chunks }]);
      expect(sent).toHaveLength(chunks);
      // Duplicated task messages while the job runs (SQS delivers at least once).
      const taskBodies = [...sent];
      for (const body of taskBodies.slice(0, 3))
        await c.sqs.send(new SendMessageCommand({ QueueUrl: c.cloud.taskQueueUrl, MessageBody: body }));

      const status = await c.waitForEnd(`${key}/status.json`);
      expect(status).toMatchObject({ jobId, state: "succeeded", chunks, done: chunks });
      await c.waitForIdle();
      const resultBytes = await c.get(c.output, `${key}/result.json`);
      const statusBytes = await c.get(c.output, `${key}/status.json`);
      expectMatchesReference("count", {}, bytes, JSON.parse(resultBytes!.toString("utf8")));

      // After the job: every task again, and the event again. Nothing changes. A copy is mapped
      // again (a first delivery does not look for its part; one that finds the job ended is
      // dropped), and writes its part again: the same partial, which the succeeded job never reads.
      const handled = () => linesOf(c.lines, "chunk done", { jobId }).length;
      const before = handled();
      for (const body of taskBodies) await c.sqs.send(new SendMessageCommand({ QueueUrl: c.cloud.taskQueueUrl, MessageBody: body }));
      await waitFor("every duplicated task to be handled", () => (handled() - before >= chunks ? true : undefined));
      expect(await split(event)).toEqual([{ kind: "duplicate", jobId, chunks }]);
      expect(sent).toHaveLength(chunks);
      await c.waitForIdle();
      expect(await c.get(c.output, `${key}/result.json`)).toEqual(resultBytes);
      expect(await c.get(c.output, `${key}/status.json`)).toEqual(statusBytes);

      // One job for this input: one manifest, one enqueued marker, one part per chunk.
      const manifests = (await c.keys(c.output, "_work/")).filter((k) => k.endsWith("/manifest.json"));
      const triggered: string[] = [];
      for (const k of manifests) {
        const m = Manifest.parse(await c.getJson(c.output, k));
        if (m.trigger === `s3://${bucket}/${key}`) triggered.push(m.jobId);
      }
      expect(triggered).toEqual([jobId]);
      expect(await c.getJson(c.output, `_work/${jobId}/enqueued.json`)).toMatchObject({ chunks });
      expect((await c.keys(c.output, `_work/${jobId}/parts/`)).length).toBe(chunks);
      expect(await c.taskDepth()).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
    },
    TIMEOUT,
  );

  it(
    "a malformed number in chunk 2 fails the job at once, naming the input and byte offset; no result.json",
    async () => {
      const c = cloud();
      const head = numbersOf(9 * KiB, 45);
      const bad = "12x\n";
      const bytes = Buffer.concat([head, Buffer.from(bad), numbersOf(4 * KiB, 46)]);
      const offset = head.length;
      expect(Math.floor(offset / CHUNK)).toBe(2);
      const key = "stats/bad numbers ü.txt";
      await c.put(key, bytes);
      const status = await c.waitForEnd(`${key}/status.json`);
      expect(status.state).toBe("failed");
      expect(status.error).toMatchObject({ code: "BAD_RECORD", input: `s3://${c.input}/${key}`, offset });
      expect(status.error!.message).toBe(`s3://${c.input}/${key} (byte ${offset}): expected a number, got "12x"`);
      await c.waitForIdle();
      expect(await c.get(c.output, `${key}/result.json`)).toBeUndefined();
      expect(await c.get(c.output, `_work/${status.jobId}/failure.json`)).toBeDefined();
      // Fail fast: a bad record is not retried.
      expect(linesOf(c.lines, "chunk received", { jobId: status.jobId, chunk: 2 }).map((l) => l.json!["attempt"])).toEqual([1]);
    },
    TIMEOUT,
  );

  it(
    "an input overwritten mid-job fails that job with INPUT_CHANGED; the result is the new bytes', never a mix",
    async () => {
      const c = cloud();
      const key = "wordcount/overwritten mid-job.txt";
      const before = textOf(32 * KiB, 47);
      const after = textOf(16 * KiB, 48);
      // The two versions' answers differ, so a result mixing or confusing them cannot pass.
      expect(refWordcount(after)).not.toEqual(refWordcount(before));

      // The first chunk maps; the second waits (for protection) until the object is overwritten.
      let enabled = 0;
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      agent.onRequest = (req) => (req.body.ProtectionEnabled && ++enabled > 1 ? gate : undefined);
      try {
        await c.put(key, before);
        const firstJob = await jobIdAt(c, `${key}/status.json`);
        await waitFor(
          "the first part",
          async () => ((await c.keys(c.output, `_work/${firstJob}/parts/`)).length > 0 ? true : undefined),
          60_000,
          50,
        );
        await c.put(key, after);
        open();

        // The first job ends one way or the other; it must be a failure, never a success.
        const [failure, succeeded] = await waitFor("the first job to end", async () => {
          const ended = await Promise.all([
            c.getJson(c.output, `_work/${firstJob}/failure.json`),
            c.getJson(c.output, `_work/${firstJob}/succeeded.json`),
          ]);
          return ended.some((x) => x !== undefined) ? ended : undefined;
        });
        expect(succeeded).toBeUndefined();
        expect(failure).toMatchObject({ error: { code: "INPUT_CHANGED", input: `s3://${c.input}/${key}` } });
        expect((failure as { error: { message: string } }).error.message).toContain("changed since the job listed its inputs");

        // The overwrite started its own job, over the new bytes only.
        const status = await waitFor("the second job to finish", async () => {
          const s = (await c.getJson(c.output, `${key}/status.json`)) as { jobId: string; state: string } | undefined;
          return s && s.jobId !== firstJob && s.state !== "running" ? s : undefined;
        });
        expect(status).toMatchObject({ state: "succeeded", chunks: chunksOf(after.length, CHUNK) });
        expectMatchesReference("wordcount", {}, after, await c.getJson(c.output, `${key}/result.json`));
        await c.waitForIdle();
      } finally {
        open();
        agent.onRequest = undefined;
      }
    },
    TIMEOUT,
  );
});
