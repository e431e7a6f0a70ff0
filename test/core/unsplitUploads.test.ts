/**
 * An upload the splitter fails on at every try (Lambda retries it twice, then sends the event to
 * the splitter's dead-letter queue, with the last error) never started its job. The dead-letter
 * function fails that job where its status goes, so that no one waits on a job that shows
 * pending for good: its deadline starts only with its manifest.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deadLetterHandler, splitterHandler } from "../../lib/aws/handlers.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../../lib/core/errors.js";
import { JobStatus } from "../../lib/core/job/manifest.js";
import { enqueuedKey, jobSpecOutputKeys, manifestKey, uploadOutputKeys } from "../../lib/core/keys.js";
import { readJson, readJsonIfExists } from "../../lib/core/pipeline/blobJson.js";
import type { BlobStore } from "../../lib/core/ports.js";
import { localPipeline } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-unsplit-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const CONFIG = { defaultChunkSize: 4096, maxAttempts: 3, jobDeadlineSeconds: 3600 };

/** An S3 notification of `key`, as S3 sends it to the splitter (and Lambda to its dead-letter queue). */
const notification = (key: string, eTag: string) => ({
  Records: [
    {
      eventVersion: "2.1",
      eventSource: "aws:s3",
      eventName: "ObjectCreated:Put",
      eventTime: "2026-12-06T10:00:00.000Z",
      s3: { bucket: { name: "lab-in" }, object: { key: encodeURIComponent(key).replaceAll("%2F", "/"), eTag, sequencer: "0A1B2C" } },
    },
  ],
});

/** The splitter's dead letter of `event`, as the dead-letter function's SQS event source delivers it. */
const deadLetter = (event: unknown, error: string) => ({
  Records: [
    {
      messageId: "m-1",
      body: JSON.stringify(event),
      messageAttributes: {
        RequestID: { stringValue: "r-1", dataType: "String" },
        ErrorCode: { stringValue: "200", dataType: "Number" },
        ErrorMessage: { stringValue: error, dataType: "String" },
      },
    },
  ],
});

const setUp = async (name: string) => {
  const s = localPipeline(path.join(dir, name));
  // Input reads the environment refuses (a throttled or unreachable S3): the splitter fails on every try.
  const refusing: BlobStore = Object.assign(Object.create(s.inputs) as BlobStore, {
    head: () => Promise.reject(new CloudmillError(ErrorCode.ENVIRONMENT, "HeadObject failed: SlowDown")),
    get: () => Promise.reject(new CloudmillError(ErrorCode.ENVIRONMENT, "GetObject failed: SlowDown")),
  });
  return { ...s, broken: { ...s.deps, inputStore: () => refusing } };
};

/** Runs the splitter as Lambda would, three times; the error of the last, which Lambda sends with the event. */
const splitFails = async (deps: Parameters<typeof splitterHandler>[0], event: unknown): Promise<string> => {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) last = await splitterHandler(deps, CONFIG)(event).catch((e: unknown) => e);
  expect(last).toBeInstanceOf(Error);
  return toCloudmillError(last).message;
};

describe("an upload the splitter failed on at every try", () => {
  it("fails its spec's job, naming the object and the splitter's last error", async () => {
    const s = await setUp("spec");
    await s.inputs.put("_jobs/lost-1.json", Buffer.from(JSON.stringify({ op: "count", inputs: ["s3://lab-in/data.txt"] })));
    const event = notification("_jobs/lost-1.json", "abc");
    const error = await splitFails(s.broken, event);
    expect(await readJsonIfExists(s.output, jobSpecOutputKeys("lost-1").status, JobStatus)).toBeUndefined();

    expect(await deadLetterHandler(s.deps)(deadLetter(event, error))).toEqual({ batchItemFailures: [] });
    const status = await readJson(s.output, jobSpecOutputKeys("lost-1").status, JobStatus);
    expect(status).toMatchObject({ jobId: "lost-1", state: "failed", chunks: 0 });
    expect(status.error).toEqual({
      code: "ENVIRONMENT",
      message: `the splitter failed on s3://lab-in/_jobs/lost-1.json at every try, so the job never started: ${error}`,
    });
  });

  it("fails an upload's job beside the upload, under the id the splitter gives it", async () => {
    const s = await setUp("upload");
    const key = "count/plate 7/data ü.txt";
    await s.inputs.put(key, Buffer.from("a\nb\n"));
    const etag = (await s.inputs.head(key))!.etag.replaceAll('"', "");
    const event = notification(key, etag);
    const error = await splitFails(s.broken, event);
    await deadLetterHandler(s.deps)(deadLetter(event, error));
    const status = await readJson(s.output, uploadOutputKeys(key).status, JobStatus);
    expect(status.state).toBe("failed");
    expect(status.error?.message).toContain(`the splitter failed on s3://lab-in/${key} at every try`);
    // The id is the one the splitter gives the same event once S3 answers.
    const [started] = await splitterHandler(s.deps, CONFIG)(event);
    expect(started).toMatchObject({ jobId: status.jobId });
  });

  it("leaves a job that did start alone, and ignores what starts no job", async () => {
    const s = await setUp("started");
    await s.inputs.put("_jobs/ran-1.json", Buffer.from(JSON.stringify({ op: "count", inputs: ["s3://lab-in/data.txt"] })));
    await s.inputs.put("data.txt", Buffer.from("x\ny\n"));
    const event = notification("_jobs/ran-1.json", "abc");
    expect((await splitterHandler(s.deps, CONFIG)(event))[0]).toMatchObject({ kind: "started", jobId: "ran-1" });
    const before = await readJson(s.output, jobSpecOutputKeys("ran-1").status, JobStatus);
    await deadLetterHandler(s.deps)(deadLetter(event, "Task timed out after 60.00 seconds"));
    expect(await readJson(s.output, jobSpecOutputKeys("ran-1").status, JobStatus)).toEqual(before);
    expect(await s.output.head(manifestKey("ran-1"))).toBeDefined();

    // A splitter that died after the manifest, before its tasks were queued, started nothing that would end.
    await s.inputs.put("_jobs/half-1.json", Buffer.from(JSON.stringify({ op: "count", inputs: ["s3://lab-in/data.txt"] })));
    const half = notification("_jobs/half-1.json", "def");
    expect((await splitterHandler(s.deps, CONFIG)(half))[0]).toMatchObject({ kind: "started", jobId: "half-1" });
    await s.output.delete(enqueuedKey("half-1"));
    await deadLetterHandler(s.deps)(deadLetter(half, "Task timed out after 60.00 seconds"));
    const halfStatus = await readJson(s.output, jobSpecOutputKeys("half-1").status, JobStatus);
    expect(halfStatus).toMatchObject({ state: "failed", chunks: 1, error: { code: "ENVIRONMENT" } });
    expect(halfStatus.error?.message).toMatch(/at every try, so the job never started: Task timed out after 60\.00 seconds$/);

    for (const key of ["_retries/ran-1.json", "_uploads/x/data.txt", "count/folder/"])
      expect(await deadLetterHandler(s.deps)(deadLetter(notification(key, "abc"), "boom"))).toEqual({ batchItemFailures: [] });
    const written: string[] = [];
    for await (const o of s.output.list("")) written.push(o.key);
    expect(written.filter((k) => !k.includes("ran-1") && !k.includes("half-1"))).toEqual([]);
  });
});
