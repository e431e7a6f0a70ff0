/**
 * The SDK against the emulated cloud (`cloudmill dev` in this process, workers as processes
 * running the compiled dist/): map resolves to the reference implementation's answers
 * (test/helpers/reference.ts), as `cloudmill run` does, a failing job
 * rejects with its chunk's error, asCompleted yields in completion order, cancel stops a long
 * job and leaves it cancelled. Run `npm run build` first (the workers run dist/worker/main.js).
 */
import { getEventListeners } from "node:events";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { CliIO } from "../../lib/cli/io.js";
import { runCli } from "../../lib/cli/main.js";
import { S3BlobStore } from "../../lib/aws/S3BlobStore.js";
import { cancelKey, partsPrefix } from "../../lib/core/keys.js";
import { startDevCloud, type DevCloud } from "../../lib/dev/devCloud.js";
import { CloudmillError } from "../../lib/core/errors.js";
import { silentLogger } from "../../lib/core/log.js";
import { asCompleted, Cloudmill, JobFailedError, waitAll, type JobFuture } from "../../lib/sdk/index.js";
import { chunksOf, expectMatchesReference, queueDepth } from "../helpers/devCloud.js";
import { countingS3 } from "./support.js";
import { FILES_AT_ONCE } from "../../lib/sdk/constants.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const KiB = 1024;

let cloud: DevCloud;
let mill: Cloudmill;
let counter: ReturnType<typeof countingS3>;
let dir: string;

/** What `cloudmill run <file> ...args` prints, run in this process on the main thread (checked against the reference, never used as one). */
const cloudmillRun = async (file: string, args: readonly string[]): Promise<unknown> => {
  let stdout = "";
  let stderr = "";
  const io: CliIO = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: {} };
  const code = await runCli(["run", file, ...args, "--workers", "0", "--no-progress"], io);
  expect(code, stderr).toBe(0);
  return JSON.parse(stdout);
};

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-sdk-"));
  cloud = await startDevCloud({ port: 0, workers: 2, chunkSize: 8 * KiB, maxAttempts: 2, log: silentLogger });
  counter = countingS3(cloud.endpoint);
  mill = new Cloudmill({ endpoint: cloud.endpoint, s3: counter.s3, poll: { initialMs: 100, maxMs: 1_000 } });
}, 60_000);

afterAll(async () => {
  mill?.close();
  counter?.s3.destroy();
  await cloud?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("Cloudmill against cloudmill dev", () => {
  it("map over three inputs (two local files, one S3 object in place) resolves three futures to the reference's answers, as `cloudmill run` gives", async () => {
    const local = ["examples/words.txt", "examples/numbers.txt"].map((f) => path.join(ROOT, f));
    // The third input is already in S3: a key under `_` starts no job of its own.
    const head = (await readFile(path.join(ROOT, "examples/events.jsonl"))).subarray(0, 40 * KiB);
    const headFile = path.join(dir, "events-head.txt");
    await writeFile(headFile, head);
    await cloud.clients.s3.send(new PutObjectCommand({ Bucket: cloud.inputBucket, Key: "_fixtures/events-head.txt", Body: head }));
    const inputs = [...local, `s3://${cloud.inputBucket}/_fixtures/events-head.txt`];

    const before = counter.total();
    const futures = mill.map("wordcount", inputs, { k: 5 });
    expect(futures).toHaveLength(3);
    expect(new Set(futures.map((f) => f.id)).size).toBe(3);
    for (const f of futures) expect(f.id).toMatch(/^job-\d{8}T\d{6}-[0-9a-f]{16}$/);

    const results = await waitAll(futures, { timeoutMs: 90_000 });
    const files = [...local, headFile];
    const bytes = await Promise.all(files.map((f) => readFile(f)));
    expect(results).toHaveLength(files.length);
    for (const [i, file] of files.entries()) {
      expectMatchesReference("wordcount", { k: 5 }, bytes[i]!, results[i]);
      // The local engine agrees, checked against the same reference.
      expectMatchesReference("wordcount", { k: 5 }, bytes[i]!, await cloudmillRun(file, ["--op", "wordcount", "-p", "k=5"]));
    }

    const chunks = (await Promise.all(futures.map((f) => f.progress()))).map((p) => {
      expect(p).toMatchObject({ state: "succeeded", fraction: 1 });
      return p.total;
    });
    // One chunk per 8 KiB of each input. Waiting read status.json per poll, not per chunk.
    expect(chunks).toEqual(bytes.map((b) => chunksOf(b.length, 8 * KiB)));
    const reads = (counter.counts.get("GetObjectCommand") ?? 0) + (counter.counts.get("HeadObjectCommand") ?? 0);
    expect(reads).toBeGreaterThan(0);
    expect(counter.total() - before).toBeLessThan(3 * 30);
  }, 120_000);

  it("a failing job rejects its future with the chunk's error (BAD_RECORD, naming the input and byte)", async () => {
    const lines = Array.from({ length: 3000 }, (_, i) => String(i));
    lines[2500] = "oops";
    const file = path.join(dir, "bad-numbers.txt");
    await writeFile(file, `${lines.join("\n")}\n`);
    const offset = Buffer.byteLength(lines.slice(0, 2500).join("\n")) + 1;

    const future = mill.submit({ op: "stats", inputs: [file], chunkSize: "4KiB" });
    const err = await future.result({ timeoutMs: 90_000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(JobFailedError);
    const failed = err as JobFailedError;
    expect(failed).toBeInstanceOf(CloudmillError);
    expect(failed.code).toBe("BAD_RECORD");
    expect(failed.message).toContain(`s3://${cloud.inputBucket}/_uploads/${future.id}/bad-numbers.txt`);
    expect(failed.message).toContain(`(byte ${offset})`);
    expect(failed.message).toContain('"oops"');
    expect(failed.context).toMatchObject({ jobId: future.id });
    expect(failed.status).toMatchObject({ state: "failed", error: { code: "BAD_RECORD", offset } });
    expect((await future.status()).state).toBe("failed");
  }, 120_000);

  it("asCompleted yields futures in the order their jobs end, not the order given", async () => {
    // early: fails at once in the splitter (no such object); small: one chunk; large: 17 chunks, submitted after small ended.
    const early = mill.submit({ op: "count", inputs: [`s3://${cloud.inputBucket}/_fixtures/missing.txt`] });
    await expect(early.result({ timeoutMs: 30_000 })).rejects.toMatchObject({ code: "INPUT_NOT_FOUND" });
    const small = mill.submit({ op: "count", inputs: [path.join(ROOT, "examples/numbers.txt")], chunkSize: "1MiB" });
    // The large job starts once the small one has ended: which ends first is then a fact, not a race.
    await small.result({ timeoutMs: 60_000 });
    const large = mill.submit({ op: "count", inputs: [path.join(ROOT, "examples/words.txt")], chunkSize: "4KiB" });

    const order: JobFuture<unknown>[] = [];
    for await (const f of asCompleted([large, early, small], { timeoutMs: 90_000 })) order.push(f);
    expect(order.map((f) => f.id)).toEqual([early.id, small.id, large.id]);

    // Each yielded future has settled: its result (or error) needs no more waiting.
    await expect(early.result()).rejects.toMatchObject({ code: "INPUT_NOT_FOUND" });
    expectMatchesReference("count", {}, await readFile(path.join(ROOT, "examples/numbers.txt")), await small.result());
    expectMatchesReference("count", {}, await readFile(path.join(ROOT, "examples/words.txt")), await large.result());
    const [s, l] = await Promise.all([small.status(), large.status()]);
    expect(Date.parse(s.finishedAt!)).toBeLessThan(Date.parse(l.finishedAt!));
  }, 120_000);

  it("a big local file is uploaded in parts (multipart), with progress, then used as the job's input", async () => {
    const file = path.join(dir, "big.txt");
    const lines = 180_000;
    const bytes = Buffer.from(`${"x".repeat(99)}\n`.repeat(lines)); // 18 MB: three 8 MiB parts
    await writeFile(file, bytes);
    const progress: { loaded: number; total: number; uri: string }[] = [];
    const future = mill.submit({ op: "count", inputs: [file], chunkSize: "8MiB" }, { onUpload: (p) => progress.push(p) });
    await future.submitted;
    const key = `_uploads/${future.id}/big.txt`;
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect(progress.every((p) => p.total === 18_000_000 && p.uri === `s3://${cloud.inputBucket}/${key}`)).toBe(true);
    expect(progress.at(-1)!.loaded).toBe(18_000_000);
    const head = await cloud.clients.s3.send(new HeadObjectCommand({ Bucket: cloud.inputBucket, Key: key }));
    expect(head.ContentLength).toBe(18_000_000);
    expect(head.ETag).toMatch(/-3"$/); // the ETag of a three-part upload
    const result = await future.result({ timeoutMs: 60_000 });
    expect(result).toEqual({ records: lines });
    expectMatchesReference("count", {}, bytes, result);
  }, 120_000);

  it("cancel stops a long job: its queued chunks are skipped and it stays cancelled", async () => {
    const file = path.join(dir, "long.txt");
    const bytes = Buffer.from("lorem ipsum dolor sit amet\n".repeat(40_000)); // ~1 MB of 4 KiB chunks
    await writeFile(file, bytes);
    const chunks = chunksOf(bytes.length, 4 * KiB);
    const future = mill.submit({ op: "wordcount", inputs: [file], chunkSize: "4KiB" });
    // Wait until it is really running: some chunks mapped.
    for (let p = await future.progress(); p.done < 2; p = await future.progress()) {
      expect(p.state === "pending" || p.state === "running").toBe(true);
      await new Promise((r) => setTimeout(r, 200));
    }
    const status = await future.cancel();
    expect(status).toMatchObject({ jobId: future.id, state: "cancelled", chunks });
    await expect(future.result({ timeoutMs: 10_000 })).rejects.toMatchObject({ code: "CANCELLED" });

    const parts = async (): Promise<number> => {
      let n = 0;
      for await (const _ of new S3BlobStore(cloud.clients.s3, cloud.outputBucket).list(partsPrefix(future.id))) n++;
      return n;
    };
    const atCancel = await parts();
    // Every queued chunk is taken and let go: skipped, or finished if it was in flight.
    await vi.waitFor(
      async () => expect(await queueDepth(cloud.clients.sqs, cloud.taskQueueUrl)).toMatchObject({ visible: 0, inFlight: 0 }),
      {
        timeout: 60_000,
        interval: 200,
      },
    );
    const later = await parts();
    // At most the chunks in flight when it was cancelled (one per worker) finish; the rest are skipped.
    expect(later - atCancel).toBeLessThanOrEqual(2);
    expect(later).toBeLessThan(chunks);
    const after = await future.status();
    expect(after.state).toBe("cancelled");
    expect(after.done).toBeLessThan(chunks);
    // The CLI agrees.
    const second = await mill.job(future.id).cancel();
    expect(second.state).toBe("cancelled");
  }, 120_000);

  it("refuses at once what the stack would refuse: a retry it cannot give, a cancel of a job that does not exist", async () => {
    const file = path.join(dir, "skipping.txt");
    await writeFile(file, "lorem ipsum\n".repeat(100_000));
    const future = mill.submit({ op: "count", inputs: [file], chunkSize: "4KiB", onBadRecord: "skip" });
    for (let p = await future.progress(); p.state === "pending"; p = await future.progress()) await new Promise((r) => setTimeout(r, 100));
    await future.cancel();
    // The splitter keeps a skipping job's bound on records (its parts skipped by it): said here, not after a wait.
    await expect(future.retry({ maxRecordBytes: "2MiB", timeoutMs: 30_000 })).rejects.toMatchObject({
      code: "INVALID_SPEC",
      message: expect.stringContaining("a job that skips bad records keeps its old maxRecordBytes"),
    });
    // A size that is none: one line naming the option, not a schema library's dump.
    await expect(future.retry({ maxRecordBytes: "banana", timeoutMs: 30_000 })).rejects.toMatchObject({
      name: "CloudmillError",
      code: "INVALID_SPEC",
      message: 'maxRecordBytes: expected a whole number of bytes or a size like 16MiB, got "banana"',
    });

    const typo = "job-20990101T000000-deadbeefdeadbeef";
    await expect(mill.job(typo).cancel()).rejects.toMatchObject({ code: "INPUT_NOT_FOUND" });
    expect(await new S3BlobStore(cloud.clients.s3, cloud.outputBucket).head(cancelKey(typo))).toBeUndefined();
  }, 120_000);

  it("refuses a spec that its inputs' upload URIs take past the size limit before uploading any of them", async () => {
    const many = path.join(dir, "many-long-names");
    await mkdir(many, { recursive: true });
    const files: string[] = [];
    for (let i = 0; i < 1100; i++) {
      const file = path.join(many, `${String(i).padStart(4, "0")}-${"n".repeat(220)}.txt`);
      await writeFile(file, "x\n");
      files.push(file);
    }
    const future = mill.submit({ op: "count", inputs: files });
    await expect(future.result({ timeoutMs: 30_000 })).rejects.toMatchObject({
      code: "INVALID_SPEC",
      message: expect.stringMatching(/^job spec of 1100 inputs: larger than 262144 bytes/),
    });
    let uploaded = 0;
    for await (const _ of new S3BlobStore(cloud.clients.s3, cloud.inputBucket).list(`_uploads/${future.id}/`)) uploaded++;
    expect(uploaded).toBe(0);
  }, 120_000);

  it("map() over many local files uploads a few at a time, not every file at once", async () => {
    const folder = path.join(dir, "many-small");
    await mkdir(folder, { recursive: true });
    const files: string[] = [];
    for (let i = 0; i < 30; i++) {
      files.push(path.join(folder, `f${i}.txt`));
      await writeFile(files[i]!, `${"word ".repeat(100 + i)}\n`);
    }
    // Uploads' PUTs in flight at once, as the client sends them.
    const { s3 } = countingS3(cloud.endpoint);
    let inFlight = 0;
    let most = 0;
    s3.middlewareStack.add(
      (next, context) => async (args) => {
        const key = (args.input as { Key?: string }).Key ?? "";
        if (context.commandName !== "PutObjectCommand" || !key.startsWith("_uploads/")) return next(args);
        most = Math.max(most, ++inFlight);
        try {
          return await next(args);
        } finally {
          inFlight--;
        }
      },
      { step: "initialize", name: "inFlight" },
    );
    const client = new Cloudmill({ endpoint: cloud.endpoint, s3, poll: { initialMs: 100, maxMs: 1_000 } });
    try {
      const results = await waitAll(client.map("count", files), { timeoutMs: 90_000 });
      expect(results).toEqual(files.map(() => ({ records: 1 })));
    } finally {
      client.close();
    }
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(FILES_AT_ONCE);
  }, 120_000);

  it("lets go of the caller's signal once each submission is written", async () => {
    const file = path.join(dir, "signalled.txt");
    await writeFile(file, "a\nb\n");
    const controller = new AbortController();
    const futures = Array.from({ length: 3 }, () => mill.submit({ op: "count", inputs: [file] }, { signal: controller.signal }));
    await Promise.all(futures.map((f) => f.submitted));
    // A notebook's one signal for every submit would otherwise hold a listener (and a job's state) per job.
    await vi.waitFor(() => expect(getEventListeners(controller.signal, "abort")).toHaveLength(0));
    expect(await waitAll(futures, { timeoutMs: 60_000 })).toEqual([{ records: 2 }, { records: 2 }, { records: 2 }]);
  }, 120_000);

  it("map() heeds its signal as submit() does: aborted, no spec is written and every future says why", async () => {
    const files = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const file = path.join(dir, `stopped-${i}.txt`);
        await writeFile(file, "x\n");
        return file;
      }),
    );
    const controller = new AbortController();
    const why = new CloudmillError("CANCELLED", "the notebook cell was stopped");
    controller.abort(why);
    const futures = mill.map("count", files, undefined, { signal: controller.signal });
    for (const f of futures) await expect(f.submitted).rejects.toBe(why);
    for (const f of futures) {
      const spec = await cloud.clients.s3
        .send(new HeadObjectCommand({ Bucket: cloud.inputBucket, Key: `_jobs/${f.id}.json` }))
        .catch((e: Error) => e.name);
      expect(spec).toBe("NotFound");
    }
  });
});
