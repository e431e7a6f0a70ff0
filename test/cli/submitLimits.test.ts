/**
 * `cloudmill submit` sets every limit of a job spec the SDK's submit takes, under the flag names
 * `run` and `retry` give the same limits; each reaches the spec written to `_jobs/<id>.json`.
 * Against `cloudmill dev` with no workers: the spec is what is checked, not the job.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDevCloud, type DevCloud } from "../../lib/dev/devCloud.js";
import { silentLogger } from "../../lib/core/log.js";
import { cli } from "../helpers/cli.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const WORDS = path.join(ROOT, "examples/words.txt");

let cloud: DevCloud;
beforeAll(async () => {
  cloud = await startDevCloud({ port: 0, workers: 0, log: silentLogger });
}, 60_000);
afterAll(async () => {
  await cloud?.stop();
}, 60_000);

/** `cloudmill submit <args> --endpoint …` in this process. */
const submit = (...args: string[]) => cli(["submit", ...args, "--endpoint", cloud.endpoint, "--no-progress"]);

/** The job spec a submit wrote, as written. */
const specOf = async (jobId: string): Promise<Record<string, unknown>> => {
  const res = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: cloud.inputBucket, Key: `_jobs/${jobId}.json` }));
  return JSON.parse(await res.Body!.transformToString()) as Record<string, unknown>;
};

describe("cloudmill submit's limits", () => {
  it.each([
    [["--task-timeout", "600"], { taskTimeoutSeconds: 600 }],
    [["--task-memory", "512"], { taskMemoryMiB: 512 }],
    // As bytes: the flag is read as run's is (2 × 1024²).
    [["--max-record-bytes", "2MiB"], { maxRecordBytes: 2 * 1024 * 1024 }],
    [["--max-cost-usd", "0.25"], { maxCostUsd: 0.25 }],
    [["--deadline", "3600"], { deadlineSeconds: 3600 }],
    [["--max-attempts", "2"], { maxAttempts: 2 }],
  ] as const)("%j reaches the spec as %j", async (flag, field) => {
    const r = await submit(WORDS, "--op", "count", ...flag);
    expect(r.code, r.stderr).toBe(0);
    expect(await specOf(r.stdout.trim())).toMatchObject(field);
  });

  it("all of them at once, each in its own field", async () => {
    const r = await submit(
      WORDS,
      "--op",
      "count",
      "--task-timeout",
      "120",
      "--task-memory",
      "256",
      "--max-record-bytes",
      "3MiB",
      "--max-cost-usd",
      "1.5",
      "--deadline",
      "900",
    );
    expect(r.code, r.stderr).toBe(0);
    expect(await specOf(r.stdout.trim())).toMatchObject({
      taskTimeoutSeconds: 120,
      taskMemoryMiB: 256,
      maxRecordBytes: 3 * 1024 * 1024,
      maxCostUsd: 1.5,
      deadlineSeconds: 900,
    });
  });

  it("a bad value is refused in one line naming the flag and its range, before anything is written", async () => {
    const r = await submit(WORDS, "--op", "count", "--task-memory", "32");
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("cloudmill: --task-memory: expected whole MiB from 64 to 65536\n");
    expect(r.stdout).toBe("");
  });

  it("a size that is none is refused naming the flag, as run refuses it", async () => {
    const r = await submit(WORDS, "--op", "count", "--max-record-bytes", "banana");
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('cloudmill: --max-record-bytes: expected a whole number of bytes or a size like 16MiB, got "banana"\n');
    expect(r.stdout).toBe("");
  });

  it("with --items, --deadline reaches the spec and the limits of a chunk's mapping are refused, not dropped", async () => {
    const refused = await submit("--items", WORDS, "--op", "count", "--task-timeout", "60", "--max-cost-usd", "1");
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--task-timeout, --max-cost-usd: not with --items/);
    const items = path.join(await mkdtemp(path.join(os.tmpdir(), "cloudmill-items-")), "items.jsonl");
    await writeFile(items, '{"seed":1}\n{"seed":2}\n');
    const r = await submit("--items", items, "--op", "count", "--deadline", "300");
    expect(r.code, r.stderr).toBe(0);
    expect(await specOf(r.stdout.trim())).toMatchObject({ deadlineSeconds: 300 });
    await rm(path.dirname(items), { recursive: true, force: true });
  });
});
