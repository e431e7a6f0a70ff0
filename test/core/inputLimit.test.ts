/**
 * A job may have at most DEFAULTS.maxInputs inputs: its splitter holds their list in memory. A
 * prefix, a list or a Batch Operations CSV past the limit is refused with one clear line naming
 * it, as soon as the limit is passed (no more pages listed, no HEAD of what a CSV names), and the
 * job's status says so; nothing of the job is written or queued.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { HiddenFiles } from "../../lib/core/hiddenNames.js";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULTS } from "../../lib/core/constants.js";
import { JobStatus } from "../../lib/core/job/manifest.js";
import { jobSpecOutputKeys, manifestKey } from "../../lib/core/keys.js";
import { readJson } from "../../lib/core/pipeline/blobJson.js";
import { resolveS3Inputs } from "../../lib/core/pipeline/resolveInputs.js";
import { startJob, taskJobOf } from "../../lib/core/pipeline/split.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { handleObjectCreated } from "../../lib/core/pipeline/trigger.js";
import type { BlobStore, GetOptions } from "../../lib/core/ports.js";
import { localPipeline, OUTPUT } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-input-limit-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const OBJECTS = 30;

/** A store of OBJECTS small objects under `plate/` that counts what is listed and HEADed of it (manifests under `lists/` aside). */
const setUp = async (name: string, maxInputs: number) => {
  const { inputs, output, queue, deps } = localPipeline(path.join(dir, name), { maxInputs });
  for (let i = 0; i < OBJECTS; i++) await inputs.put(`plate/img-${String(i).padStart(2, "0")}.txt`, Buffer.from(`line ${i}\n`));
  const seen = { listed: 0, heads: 0 };
  const counting: BlobStore = Object.assign(Object.create(inputs) as BlobStore, {
    async *list(prefix: string) {
      for await (const o of inputs.list(prefix)) {
        seen.listed++;
        yield o;
      }
    },
    head(key: string) {
      if (!key.startsWith("lists/")) seen.heads++;
      return inputs.head(key);
    },
  });
  return { inputs, output, queue, seen, deps: { ...deps, inputStore: () => counting } };
};

describe("a job's inputs", () => {
  it("may number up to the limit, which is two million by default", async () => {
    expect(DEFAULTS.maxInputs).toBe(2_000_000);
    const s = await setUp("at-limit", OBJECTS);
    const inputs = await resolveS3Inputs(s.deps, ["s3://lab-in/plate/"]);
    expect(inputs.map((i) => i.key)).toEqual(Array.from({ length: OBJECTS }, (_, i) => `plate/img-${String(i).padStart(2, "0")}.txt`));
  });

  it("leave a prefix's hidden objects out (a folder named _work, _SUCCESS, .DS_Store), as cloudmill run does, counting them", async () => {
    const s = await setUp("work-folders", OBJECTS + 10);
    for (const key of ["plate/_work/notes.txt", "plate/_SUCCESS", "plate/sub/.DS_Store"]) await s.inputs.put(key, Buffer.from("x\n"));
    const hidden = new HiddenFiles();
    const listed = (await resolveS3Inputs(s.deps, ["s3://lab-in/plate/"], hidden)).map((i) => i.key);
    expect(listed).toHaveLength(OBJECTS);
    expect(listed.some((k) => /\/[._]/.test(k))).toBe(false);
    expect(hidden.count).toBe(3);
    // Named on its own, one is read.
    expect((await resolveS3Inputs(s.deps, ["s3://lab-in/plate/_SUCCESS"])).map((i) => i.key)).toEqual(["plate/_SUCCESS"]);
  });

  it("past the limit, a prefix is refused at the first object over it, listing no further", async () => {
    const s = await setUp("prefix", 25);
    const err = await resolveS3Inputs(s.deps, ["s3://lab-in/plate/"]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "INVALID_SPEC", context: { field: "inputs", input: "s3://lab-in/plate/" } });
    expect((err as Error).message).toMatch(/^more than 25 inputs: a job may have at most that many .*split them across several jobs/);
    expect(s.seen.listed).toBe(26);
  });

  it("counts across all of a spec's inputs, and a Batch Operations CSV past the limit is refused before any HEAD", async () => {
    const s = await setUp("csv", 25);
    const rows = Array.from({ length: 20 }, (_, i) => `lab-in,plate/img-${String(i).padStart(2, "0")}.txt`);
    await s.inputs.put("lists/batch.csv", Buffer.from(`${rows.join("\n")}\n`));
    // 10 objects by URI, then 20 rows: the CSV is what passes 25.
    const named = Array.from({ length: 10 }, (_, i) => `s3://lab-in/plate/img-${String(20 + i)}.txt`);
    const err = await resolveS3Inputs(s.deps, [...named, "manifest:s3://lab-in/lists/batch.csv"]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "INVALID_SPEC", context: { input: "s3://lab-in/lists/batch.csv" } });
    expect(s.seen.heads).toBe(10);
  });

  it("a list or Batch Operations CSV past the longest string JavaScript holds is refused by the limit, unread past it", async () => {
    const s = await setUp("huge", 25);
    // 600 MiB of rows (a string holds at most 2^29 - 24 characters), served from memory.
    const huge = Buffer.alloc(600 * 2 ** 20, "lab-in,plate/img-00.txt\n");
    const store = s.deps.inputStore();
    const serving: BlobStore = Object.assign(Object.create(store) as BlobStore, {
      async head(key: string) {
        return key.startsWith("lists/huge") ? { key, size: huge.length, etag: '"huge"' } : store.head(key);
      },
      async get(key: string, options?: GetOptions) {
        if (!key.startsWith("lists/huge")) return store.get(key, options);
        return (async function* () {
          yield huge.subarray(options?.start ?? 0, options?.end ?? huge.length);
        })();
      },
    });
    const deps = { ...s.deps, inputStore: () => serving };
    for (const manifest of ["manifest:s3://lab-in/lists/huge.csv", "manifest:s3://lab-in/lists/huge.txt"]) {
      const err = await resolveS3Inputs(deps, [manifest]).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "INVALID_SPEC", context: { field: "inputs", input: manifest.slice("manifest:".length) } });
      expect((err as Error).message).toMatch(/^more than 25 inputs/);
    }
    expect(s.seen.heads).toBe(0);
  }, 60_000);

  it("a job spec past the limit fails with that line in its status, and starts nothing", async () => {
    const s = await setUp("spec", 25);
    await s.inputs.put("_jobs/plate-all.json", Buffer.from(JSON.stringify({ op: "count", inputs: ["s3://lab-in/plate/"] })));
    const config = { defaultChunkSize: 4096, maxAttempts: 3, jobDeadlineSeconds: 3600 };
    const outcome = await handleObjectCreated(s.deps, config, { bucket: "lab-in", key: "_jobs/plate-all.json" });
    expect(outcome).toMatchObject({ kind: "failed" });
    const status = await readJson(s.output, jobSpecOutputKeys("plate-all").status, JobStatus);
    expect(status.state).toBe("failed");
    expect(status.error?.message).toMatch(/more than 25 inputs/);
    expect(await s.output.head(manifestKey("plate-all"))).toBeUndefined();
    expect(await s.queue.depth()).toEqual({ visible: 0, inFlight: 0 });
  });

  it("inputs handed to the splitter directly (a local run's files, the SDK's list) meet the same limit", async () => {
    const s = await setUp("direct", 2);
    const objects = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const key = `plate/img-0${i}.txt`;
        const info = (await s.inputs.head(key))!;
        return { bucket: "lab-in", key, size: info.size, etag: info.etag, name: key };
      }),
    );
    const plan = {
      jobId: "direct-3",
      job: taskJobOf(parseJobSpec({ op: "count", inputs: ["plate/"] }), s.deps.registry),
      inputs: objects,
      given: ["plate/"],
      chunkSize: 4096,
      output: OUTPUT,
      trigger: "test",
      deadlineSeconds: 3600,
    };
    await expect(startJob(s.deps, plan)).rejects.toThrow(/^more than 2 inputs/);
    expect(await s.output.head(manifestKey("direct-3"))).toBeUndefined();
    await expect(startJob({ ...s.deps, maxInputs: 3 }, plan)).resolves.toMatchObject({ manifest: { chunks: 1 } });
  });

  it("a prefix of 200,000 objects resolves whole: no step passes its list as arguments, which would overflow the stack", async () => {
    const n = 200_000;
    const listing: BlobStore = {
      name: "synthetic",
      head: async () => undefined,
      get: async () => {
        throw new Error("not read");
      },
      put: async () => undefined,
      delete: async () => undefined,
      async *list(prefix: string) {
        for (let i = 0; i < n; i++) yield { key: `${prefix}${String(i).padStart(6, "0")}.tif`, size: 10_000, etag: `"e${i}"` };
      },
    };
    const inputs = await resolveS3Inputs({ inputStore: () => listing }, ["s3://lab-in/plate/", "s3://lab-in/more/"]);
    expect(inputs.length).toBe(2 * n);
    expect(inputs[n]).toEqual({
      bucket: "lab-in",
      key: "more/000000.tif",
      size: 10_000,
      etag: '"e0"',
      name: "s3://lab-in/more/000000.tif",
    });
  });

  it("a list manifest of more lines than the limit is refused before any line is looked up", async () => {
    const s = await setUp("list", 25);
    const lines = Array.from({ length: 26 }, (_, i) => `plate/img-${String(i).padStart(2, "0")}.txt`);
    await s.inputs.put("lists/keys.txt", Buffer.from(`${lines.join("\n")}\n`));
    const err = await resolveS3Inputs(s.deps, ["manifest:s3://lab-in/lists/keys.txt"]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "INVALID_SPEC", context: { field: "inputs", input: "s3://lab-in/lists/keys.txt" } });
    expect(s.seen).toEqual({ listed: 0, heads: 0 });
    // A line that is a prefix past the limit is told at its line, and still names the field.
    await s.inputs.put("lists/prefix.txt", Buffer.from("plate/\n"));
    const atLine = await resolveS3Inputs(s.deps, ["manifest:s3://lab-in/lists/prefix.txt"]).catch((e: unknown) => e);
    expect(atLine).toMatchObject({ code: "INVALID_SPEC", context: { field: "inputs", line: 1 } });
  });
});

describe("a job's input buckets", () => {
  const stacked = async (name: string) => {
    const s = await setUp(name, OBJECTS + 10);
    return { ...s, deps: { ...s.deps, inputBuckets: ["lab-in", "lab-shared"] } };
  };

  it("are the stack's: an object, a prefix or a manifest elsewhere (the output bucket's _work/) is refused, naming it", async () => {
    const s = await stacked("buckets");
    await s.inputs.put("lists/list.txt", Buffer.from("plate/img-00.txt\ns3://lab-out/_work/other-job/parts/0000000.part.json\n"));
    await s.inputs.put("lists/batch.csv", Buffer.from("lab-in,plate/img-00.txt\nlab-out,_work/other-job/shuffle/0000000-0.jsonl\n"));
    expect((await resolveS3Inputs(s.deps, ["s3://lab-in/plate/", "s3://lab-shared/plate/img-01.txt"])).length).toBe(OBJECTS + 1);
    const refused = async (input: string) =>
      (await resolveS3Inputs(s.deps, [input]).catch((e: unknown) => e)) as Error & { context: object };
    const other =
      /^bucket lab-out is not one this stack reads inputs from \(lab-in, lab-shared\); a bucket of your own can be added with the stack's extraInputBuckets \(cloudmill dev: --extra-input-bucket\)$/;
    for (const input of ["s3://lab-out/_work/other-job/parts/0000000.part.json", "s3://lab-out/_work/", "manifest:s3://lab-out/list.txt"]) {
      const err = await refused(input);
      expect(err).toMatchObject({ code: "INVALID_SPEC", context: { field: "inputs" } });
      expect(err.message).toMatch(other);
    }
    const listed = await refused("manifest:s3://lab-in/lists/list.txt");
    expect(listed).toMatchObject({ code: "INVALID_SPEC", context: { input: "s3://lab-in/lists/list.txt", line: 2 } });
    expect(listed.message).toMatch(/^s3:\/\/lab-out\/_work\/other-job\/parts\/0000000\.part\.json: bucket lab-out is not one/);
    const row = await refused("manifest:s3://lab-in/lists/batch.csv");
    expect(row).toMatchObject({ code: "INVALID_SPEC", context: { input: "s3://lab-in/lists/batch.csv", line: 2 } });
    expect(row.message).toMatch(other);
  });

  it("a spec naming another bucket fails at once with INVALID_SPEC in its status, and starts nothing", async () => {
    const s = await stacked("bucket-spec");
    const spec = { op: "sort", inputs: ["s3://lab-out/_work/other-job/shuffle/0000000-0.jsonl"] };
    await s.inputs.put("_jobs/peek.json", Buffer.from(JSON.stringify(spec)));
    const config = { defaultChunkSize: 4096, maxAttempts: 3, jobDeadlineSeconds: 3600 };
    const outcome = await handleObjectCreated(s.deps, config, { bucket: "lab-in", key: "_jobs/peek.json" });
    expect(outcome).toMatchObject({ kind: "failed" });
    const status = await readJson(s.output, jobSpecOutputKeys("peek").status, JobStatus);
    expect(status.error).toMatchObject({ code: "INVALID_SPEC", message: expect.stringContaining("bucket lab-out is not one") });
    expect(await s.output.head(manifestKey("peek"))).toBeUndefined();
    expect(await s.queue.depth()).toEqual({ visible: 0, inFlight: 0 });
  });
});
