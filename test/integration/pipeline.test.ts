/**
 * The emulated cloud end to end, driven as users drive it — through the AWS SDK: a file
 * uploaded to s3://cloudmill-input/<op>/<path> (PutObject, and a multipart upload with
 * @aws-sdk/lib-storage) gives s3://cloudmill-output/<op>/<path>/result.json equal to the
 * reference implementation's answer for the same bytes (test/helpers/reference.ts); job specs under _jobs/ run ops that need params;
 * uploads that name no op, an unknown op or miss a required param end `failed` with a clear
 * error and no tasks. Workers are real processes (dist/worker/main.js).
 */
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { digest } from "../../lib/core/job/planner.js";
import type { Params } from "../../lib/core/job/spec.js";
import {
  chunksOf,
  expectMatchesReference,
  linesOf,
  numbersOf,
  requireBuild,
  textOf,
  useDevCloud,
  type TestCloud,
} from "../helpers/devCloud.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const TIMEOUT = 120_000;

beforeAll(requireBuild);

/** result.json and status.json of a finished job, after checking it succeeded over every chunk. */
const expectSucceeded = async (c: TestCloud, outputKey: string, chunks: number): Promise<unknown> => {
  const status = await c.waitForEnd(`${outputKey}/status.json`);
  expect(status, JSON.stringify(status)).toMatchObject({ state: "succeeded", chunks, done: chunks });
  expect(status.error).toBeUndefined();
  return c.getJson(c.output, `${outputKey}/result.json`);
};

/** A job that failed before it started: its status names the problem; nothing was enqueued. */
const expectFailedBeforeStart = async (c: TestCloud, statusKey: string) => {
  const status = await c.waitForEnd(statusKey);
  expect(status.state).toBe("failed");
  expect(status).toMatchObject({ chunks: 0, done: 0 });
  // No manifest, no enqueued marker, no parts: only the failure record.
  expect(await c.keys(c.output, `_work/${status.jobId}/`)).toEqual([`_work/${status.jobId}/failure.json`]);
  expect(await c.get(c.output, statusKey.replace(/status\.json$/, "result.json"))).toBeUndefined();
  await c.waitForIdle();
  // No worker ever saw a task of this job.
  expect(c.lines.filter((l) => l.json?.["jobId"] === status.jobId)).toEqual([]);
  return status.error!;
};

describe("uploads and job specs (PutObject, 8 KiB chunks, 2 workers)", () => {
  const chunkSize = 8 * KiB;
  // A bucket the deployment is told to read (extraInputBuckets) that does not exist.
  const cloud = useDevCloud({
    chunkSize,
    workers: 2,
    workerEnv: { POWERTOOLS_LOG_LEVEL: "DEBUG" },
    extraInputBuckets: ["no-such-bucket-here"],
  });
  const text = textOf(44 * KiB, 11);
  const numbers = numbersOf(40 * KiB, 12);

  // Keys with spaces, `+`, unicode and a literal `%` (even `%20`, which must not be decoded twice).
  const uploads: [op: string, key: string, bytes: Buffer][] = [
    ["count", "count/dir with spaces/lines+more ü 100%.txt", text],
    ["stats", "stats/nümbers/a+b%20c 50%.txt", numbers],
    ["wordcount", "wordcount/日本 words/fall + winter.txt", text],
  ];

  it.each(uploads)(
    "%s: an upload to s3://cloudmill-input/%s gives result.json equal to the reference's",
    async (op, key, bytes) => {
      const c = cloud();
      await c.put(key, bytes);
      const chunks = chunksOf(bytes.length, chunkSize);
      expect(chunks).toBeGreaterThan(4);
      expectMatchesReference(op, {}, bytes, await expectSucceeded(c, key, chunks));
      // Every chunk was mapped by a worker process.
      const jobId = ((await c.getJson(c.output, `${key}/status.json`)) as { jobId: string }).jobId;
      const mapped = new Set(linesOf(c.lines, "chunk done", { jobId }).map((l) => l.json!["chunk"]));
      expect(mapped.size).toBe(chunks);
    },
    TIMEOUT,
  );

  it(
    "histogram uploaded without params ends failed: param min is required",
    async () => {
      const c = cloud();
      await c.put("histogram/values 1.txt", numbers);
      const error = await expectFailedBeforeStart(c, "histogram/values 1.txt/status.json");
      expect(error.code).toBe("INVALID_SPEC");
      expect(error.message).toContain("param min: is required");
    },
    TIMEOUT,
  );

  it(
    "a CSV or JSONL upload to an op that needs a param fails saying how to give it, in a job spec too",
    async () => {
      const c = cloud();
      const csv = Buffer.from("station,t\nx,1\ny,2\n");
      await Promise.all([
        c.put("stats/q.csv", csv),
        c.put("groupby/m.csv", csv),
        c.put("stats/e.jsonl", Buffer.from('{"a":1}\n')),
        c.put("distinct/d.jsonl", Buffer.from('{"a":1}\n')),
      ]);
      // An uploader has no --param: each message names the param and both ways to give it, on one line.
      const want: [string, string][] = [
        ["stats/q.csv", "csv input needs param column, a name or a 1-based index: --param column=NAME, or params.column in a job spec"],
        ["groupby/m.csv", "groupby: param key: is required (--param key=VALUE, or params.key in a job spec)"],
        ["stats/e.jsonl", "jsonl input needs param field, a dotted path: --param field=NAME, or params.field in a job spec"],
        [
          "distinct/d.jsonl",
          "distinct of jsonl records needs param key, one or more columns or fields: --param key=COL[,COL], or params.key in a job spec",
        ],
      ];
      // (A missing column or field is found where the records are read, after the job started.)
      for (const [key, message] of want) {
        const status = await c.waitForEnd(`${key}/status.json`);
        expect(status.state).toBe("failed");
        expect(status.error?.code, key).toBe("INVALID_SPEC");
        // After where, when the records were read: `s3://…/stats/q.csv (bytes 0-18): csv input needs …`.
        expect(status.error?.message.endsWith(message), status.error?.message).toBe(true);
      }
    },
    TIMEOUT,
  );

  it(
    "a job over JSONL records some without the field counts them in its status's missing",
    async () => {
      const c = cloud();
      await c.put("_inputs/some-without.jsonl", Buffer.from('{"a":1}\n{"b":1}\n{"a":null}\n{"a":"2.5"}\n'));
      await c.put(
        "_jobs/missing-1.json",
        JSON.stringify({ op: "stats", inputs: [`s3://${c.input}/_inputs/some-without.jsonl`], params: { field: "a" } }),
      );
      const status = await c.waitForEnd("_jobs/missing-1/status.json");
      // Two of the four lines have no a, or a null one (counted by hand: the file is above).
      expect(status).toMatchObject({ state: "succeeded", missing: 2 });
      expect(await c.getJson(c.output, "_jobs/missing-1/result.json")).toMatchObject({ count: 2, sum: 3.5 });
    },
    TIMEOUT,
  );

  const specs: [op: string, jobId: string, input: string, bytes: Buffer, params: Params][] = [
    ["histogram", "hist-1", "data/x.txt", numbers, { min: 0, max: 100, bins: 5 }],
    // Under a folder starting with `_`, an input starts no job of its own.
    ["grep", "grep-1", "_inputs/words ü+%.txt", text, { pattern: "^über|🚀$", k: 7 }],
    ["wordcount", "wc-k3", "_inputs/words ü+%.txt", text, { k: 3 }],
  ];

  it.each(specs)(
    "%s through a job spec _jobs/%s.json: result at _jobs/<jobId>/result.json equals the reference's",
    async (op, jobId, input, bytes, params) => {
      const c = cloud();
      await c.put(input, bytes);
      await c.put(`_jobs/${jobId}.json`, JSON.stringify({ op, inputs: [`s3://${c.input}/${input}`], params }));
      const result = await expectSucceeded(c, `_jobs/${jobId}`, chunksOf(bytes.length, chunkSize));
      expectMatchesReference(op, params, bytes, result);
      expect(((await c.getJson(c.output, `_jobs/${jobId}/status.json`)) as { jobId: string }).jobId).toBe(jobId);
      if (input.startsWith("_")) expect(await c.keys(c.output, input)).toEqual([]);
    },
    TIMEOUT,
  );

  it(
    "a job spec naming a bucket that does not exist ends failed with INPUT_NOT_FOUND, not left without a status",
    async () => {
      const c = cloud();
      await c.put("_jobs/no-bucket-1.json", JSON.stringify({ op: "count", inputs: ["s3://no-such-bucket-here/x.txt"] }));
      const error = await expectFailedBeforeStart(c, "_jobs/no-bucket-1/status.json");
      expect(error.code).toBe("INPUT_NOT_FOUND");
      expect(error.message).toContain("no bucket no-such-bucket-here");
    },
    TIMEOUT,
  );

  it(
    "a job spec that failed before it started (a typo), uploaded again corrected, runs: its status is the new run's",
    async () => {
      const c = cloud();
      await c.put("data/typo.txt", numbers);
      await c.put(
        "_jobs/typo-1.json",
        JSON.stringify({ op: "histogram", inputs: [`s3://${c.input}/data/typo.txt`], params: { mn: 0, max: 100 } }),
      );
      const error = await expectFailedBeforeStart(c, "_jobs/typo-1/status.json");
      expect(error.message).toContain("param min: is required");
      const params = { min: 0, max: 100, bins: 5 };
      await c.put("_jobs/typo-1.json", JSON.stringify({ op: "histogram", inputs: [`s3://${c.input}/data/typo.txt`], params }));
      await vi.waitFor(
        async () => expect(((await c.getJson(c.output, "_jobs/typo-1/status.json")) as { state: string }).state).not.toBe("failed"),
        { timeout: 60_000, interval: 100 },
      );
      expectMatchesReference("histogram", params, numbers, await expectSucceeded(c, "_jobs/typo-1", chunksOf(numbers.length, chunkSize)));
    },
    TIMEOUT,
  );

  it(
    "a job spec named as an upload's job would be (<op>-<24 hex digits>) is refused and writes nothing under that id",
    async () => {
      const c = cloud();
      const id = "count-0123456789abcdef01234567";
      await c.put(`_jobs/${id}.json`, JSON.stringify({ op: "count", inputs: [`s3://${c.input}/data/x.txt`] }));
      // Reported as a spec whose name is no job id is: under an id made of its bucket and key.
      const error = await expectFailedBeforeStart(c, `_jobs/invalid-${digest(c.input, `_jobs/${id}.json`)}/status.json`);
      expect(error.code).toBe("INVALID_SPEC");
      expect(error.message).toContain("ids of the form <op>-<24 hex digits> are uploads' own");
      expect(await c.keys(c.output, `_work/${id}/`)).toEqual([]);
      expect(await c.keys(c.output, `_jobs/${id}/`)).toEqual([]);
    },
    TIMEOUT,
  );

  it(
    "an upload at the bucket root ends failed, saying uploads go under an op folder",
    async () => {
      const c = cloud();
      await c.put("loose file.txt", text);
      const error = await expectFailedBeforeStart(c, "loose file.txt/status.json");
      expect(error.code).toBe("INVALID_SPEC");
      expect(error.message).toContain("uploads go under a folder named after the op, e.g. wordcount/loose file.txt");
      expect(error.message).toContain("checksum, count, distinct, grep, groupby, histogram, sort, stats, wordcount");
    },
    TIMEOUT,
  );

  it(
    "an upload under an unknown op ends failed, listing the known ops",
    async () => {
      const c = cloud();
      await c.put("nosuchop/some data.txt", text);
      const error = await expectFailedBeforeStart(c, "nosuchop/some data.txt/status.json");
      expect(error.code).toBe("UNKNOWN_OP");
      expect(error.message).toBe(
        'unknown op "nosuchop" (known: checksum, count, distinct, grep, groupby, histogram, sort, stats, wordcount)',
      );
    },
    TIMEOUT,
  );
});

describe("a multipart upload (@aws-sdk/lib-storage, 5 MiB parts, 4 MiB chunks)", () => {
  const chunkSize = 4 * MiB;
  const cloud = useDevCloud({ chunkSize, workers: 2 });

  it(
    "a file over 10 MiB uploaded in parts gives the same wordcount as the reference",
    async () => {
      const c = cloud();
      const bytes = textOf(10 * MiB + 700 * KiB, 21);
      const key = "wordcount/big files/large ü+% file.txt";
      const upload = new Upload({ client: c.s3, params: { Bucket: c.input, Key: key, Body: bytes }, partSize: 5 * MiB, queueSize: 2 });
      const done = await upload.done();
      // It really was a multipart upload of three parts (S3's ETag says so).
      expect(done.ETag).toMatch(/-3"?$/);
      const result = await expectSucceeded(c, key, chunksOf(bytes.length, chunkSize));
      expectMatchesReference("wordcount", {}, bytes, result);
    },
    TIMEOUT,
  );

  it(
    "an upload of an empty file succeeds with zero chunks",
    async () => {
      const c = cloud();
      await c.s3.send(new PutObjectCommand({ Bucket: c.input, Key: "count/empty file.txt", Body: new Uint8Array(0) }));
      const result = await expectSucceeded(c, "count/empty file.txt", 0);
      expect(result).toEqual({ records: 0 });
      expectMatchesReference("count", {}, new Uint8Array(0), result);
    },
    TIMEOUT,
  );
});
