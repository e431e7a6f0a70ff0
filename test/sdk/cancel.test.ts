/** The cancel role (lib/core/pipeline/cancel.ts) over the filesystem BlobStore: markers, statuses, races. */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { cancelKey, failureKey, jobSpecOutputKeys, manifestKey, succeededKey } from "../../lib/core/keys.js";
import { JobStatus, type Manifest } from "../../lib/core/job/manifest.js";
import { silentLogger } from "../../lib/core/log.js";
import type { BlobStore } from "../../lib/core/ports.js";
import { cancelJob } from "../../lib/core/pipeline/cancel.js";
import { readJson, readJsonIfExists, writeJson } from "../../lib/core/pipeline/blobJson.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";

const AtRecord = z.object({ at: z.string() });
const JOB = "job-20261121T101500-0badcafe";
const out = jobSpecOutputKeys(JOB);
const NOW = Date.parse("2026-11-21T10:20:00Z");

const manifest: Manifest = {
  v: 1,
  jobId: JOB,
  job: { op: "count", params: {}, format: "lines", onBadRecord: "fail", maxAttempts: 3 },
  inputs: [{ bucket: "in", key: "data.txt", size: 100, etag: '"e"', name: "s3://in/data.txt" }],
  chunkSize: 10,
  chunks: 10,
  output: out,
  createdAt: "2026-11-21T10:15:00.000Z",
  deadline: NOW + 3_600_000,
  trigger: "s3://in/_jobs/x.json",
};

let dir: string;
let store: FsBlobStore;
const deps = () => ({ output: store as BlobStore, log: silentLogger, now: () => NOW });

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-cancel-"));
  store = new FsBlobStore(dir);
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const startRunning = async (done: number): Promise<void> => {
  await writeJson(store, manifestKey(JOB), manifest);
  await writeJson(store, out.status, {
    jobId: JOB,
    state: "running",
    chunks: 10,
    done,
    op: "count",
    inputs: ["s3://in/data.txt"],
    startedAt: manifest.createdAt,
  });
};

describe("cancelJob", () => {
  it("marks a running job cancelled: the marker, then a cancelled status with its progress", async () => {
    await startRunning(4);
    const outcome = await cancelJob(deps(), JOB, out);
    expect(outcome.kind).toBe("cancelled");
    expect(await readJson(store, cancelKey(JOB), AtRecord)).toEqual({ at: "2026-11-21T10:20:00.000Z" });
    const status = await readJson(store, out.status, JobStatus);
    expect(status).toEqual({
      jobId: JOB,
      state: "cancelled",
      chunks: 10,
      done: 4,
      op: "count",
      inputs: ["s3://in/data.txt"],
      startedAt: manifest.createdAt,
      finishedAt: "2026-11-21T10:20:00.000Z",
    });
    expect(outcome.status).toEqual(status);
  });

  it("makes every later task of the job a no-op", async () => {
    await startRunning(0);
    await cancelJob(deps(), JOB, out);
    const task = {
      v: 1 as const,
      jobId: JOB,
      job: manifest.job,
      chunk: { index: 3, inputIndex: 0, input: manifest.inputs![0]!, start: 30, end: 40 },
    };
    await expect(runTask({ ...deps(), inputStore: () => store, registry: new OpRegistry() }, task)).resolves.toEqual({ kind: "job-ended" });
  });

  it("works before the splitter has run (no manifest, no status yet)", async () => {
    const outcome = await cancelJob(deps(), JOB, out);
    expect(outcome).toMatchObject({ kind: "cancelled", status: { jobId: JOB, state: "cancelled", chunks: 0, done: 0 } });
    expect(await readJsonIfExists(store, cancelKey(JOB), AtRecord)).toBeDefined();
  });

  it("leaves a succeeded job succeeded, with no marker", async () => {
    const succeeded = { jobId: JOB, state: "succeeded", chunks: 10, done: 10, finishedAt: "2026-11-21T10:19:00.000Z" } as const;
    await startRunning(10);
    await writeJson(store, succeededKey(JOB), succeeded);
    await writeJson(store, out.status, succeeded);
    const outcome = await cancelJob(deps(), JOB, out);
    expect(outcome).toEqual({ kind: "already-ended", status: succeeded });
    expect(await store.head(cancelKey(JOB))).toBeUndefined();
    expect(await readJson(store, out.status, JobStatus)).toEqual(succeeded);
  });

  it("leaves a failed job failed, naming its error", async () => {
    await startRunning(2);
    const error = { code: "BAD_RECORD", message: "s3://in/data.txt (byte 5): expected a number" };
    await writeJson(store, failureKey(JOB), { error, at: "2026-11-21T10:18:00.000Z" });
    const outcome = await cancelJob(deps(), JOB, out);
    expect(outcome).toMatchObject({ kind: "already-ended", status: { state: "failed", error, finishedAt: "2026-11-21T10:18:00.000Z" } });
    expect(await store.head(cancelKey(JOB))).toBeUndefined();
  });

  it("is idempotent: a second cancel keeps the first time and repairs a status the splitter overwrote", async () => {
    await startRunning(1);
    await cancelJob(deps(), JOB, out);
    await startRunning(0); // the splitter's first status, written after the cancel
    const again = await cancelJob({ ...deps(), now: () => NOW + 60_000 }, JOB, out);
    expect(again.kind).toBe("cancelled");
    expect((await readJson(store, out.status, JobStatus)).finishedAt).toBe("2026-11-21T10:20:00.000Z");
    expect((await readJson(store, out.status, JobStatus)).state).toBe("cancelled");
  });

  it("a reducer that succeeds while the cancel is written wins: the status says succeeded", async () => {
    await startRunning(9);
    const succeeded = { jobId: JOB, state: "succeeded", chunks: 10, done: 10, finishedAt: "2026-11-21T10:20:00.500Z" } as const;
    // The reducer passed its cancel check just before the marker existed, and finishes now.
    const racing: BlobStore = {
      name: store.name,
      head: (k) => store.head(k),
      get: (k, o) => store.get(k, o),
      list: (p) => store.list(p),
      delete: (k) => store.delete(k),
      put: async (k, body, o) => {
        await store.put(k, body, o);
        if (k === cancelKey(JOB)) {
          await writeJson(store, succeededKey(JOB), succeeded);
          await writeJson(store, out.status, succeeded);
        }
      },
    };
    const outcome = await cancelJob({ ...deps(), output: racing }, JOB, out);
    expect(outcome).toEqual({ kind: "already-ended", status: succeeded });
    expect(await readJson(store, out.status, JobStatus)).toEqual(succeeded);
  });
});
