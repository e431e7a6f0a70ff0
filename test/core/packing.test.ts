/**
 * Many small objects per task: the planner packs consecutive small inputs into one chunk by
 * bytes, count and message size; every input's records are still read exactly once, in input
 * order. Expected answers come from the reference ops over the files' concatenation and from
 * wc; the pack limits from the plan itself.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chunkBytes, chunkParts, Manifest, TaskMessage, type InputObject, type JobStatus } from "../../lib/core/job/manifest.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { manifestKey } from "../../lib/core/keys.js";
import { silentLogger } from "../../lib/core/log.js";
import { handleDeadLetter } from "../../lib/core/pipeline/deadLetter.js";
import { afterFailedAttempt } from "../../lib/core/pipeline/attempts.js";
import { chunkContext } from "../../lib/core/pipeline/task.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { PACK_LIMITS, planChunks } from "../../lib/core/job/planner.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { prng } from "../../lib/dev/prng.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { refResult } from "../helpers/reference.js";

const object = (i: number, size: number, key = `k/${String(i).padStart(6, "0")}`): InputObject => ({
  bucket: "b",
  key,
  size,
  etag: `"e${i}"`,
  name: `s3://b/${key}`,
});

describe("the planner", () => {
  it("packs small inputs by bytes and count, covers every non-empty input once, in order, and is a pure function of its inputs", () => {
    const rand = prng(7);
    const inputs = Array.from({ length: 5000 }, (_, i) =>
      object(i, rand() < 0.05 ? 0 : rand() < 0.02 ? 300_000 : Math.floor(rand() * 2000)),
    );
    const chunkSize = 100_000;
    const plan = planChunks(inputs, chunkSize);
    const seen: number[] = [];
    for (const chunk of plan.chunks()) {
      expect(plan.chunkAt(chunk.index)).toEqual(chunk);
      // A task message with its pack stays well inside SQS's 256 KiB.
      expect(
        JSON.stringify(
          TaskMessage.parse({
            v: 1,
            jobId: "j",
            chunk,
            job: { op: "count", params: {}, format: "lines", onBadRecord: "fail", maxAttempts: 3 },
          }),
        ).length,
      ).toBeLessThan(200_000);
      if (chunk.more) {
        expect(chunkBytes(chunk)).toBeLessThanOrEqual(chunkSize);
        expect(chunk.more.length + 1).toBeLessThanOrEqual(PACK_LIMITS.objects);
      }
      for (const part of chunkParts(chunk)) if (part.start === 0) seen.push(part.inputIndex);
    }
    const nonEmpty = inputs.flatMap((x, i) => (x.size > 0 ? [i] : []));
    expect(seen).toEqual(nonEmpty);
    // Packs are few: the inputs larger than a chunk take most chunks.
    const bigChunks = inputs.reduce((k, x) => k + (x.size > chunkSize ? Math.ceil(x.size / chunkSize) : 0), 0);
    expect(plan.total - bigChunks).toBeLessThan(nonEmpty.length / 20);
    expect(planChunks(inputs, chunkSize)).toMatchObject({ total: plan.total });
  });

  it("packs at most PACK_LIMITS.objects objects, and keys long enough to fill a message start a new pack", () => {
    const tiny = Array.from({ length: 1000 }, (_, i) => object(i, 10));
    expect(planChunks(tiny, 1 << 24).total).toBe(Math.ceil(1000 / PACK_LIMITS.objects));
    const long = Array.from({ length: 200 }, (_, i) => object(i, 10, `${"x".repeat(900)}/${i}`));
    const plan = planChunks(long, 1 << 24);
    expect(plan.total).toBeGreaterThan(1);
    for (const chunk of plan.chunks()) expect(JSON.stringify(chunk).length).toBeLessThan(PACK_LIMITS.messageBytes * 1.1);
  });

  it("never packs an input larger than a chunk, nor a gzip or zstd stream of any size past the chunk size", () => {
    const inputs = [object(0, 10), object(1, 5000), object(2, 10), { ...object(3, 3000), codec: "gzip" as const }, object(4, 10)];
    const chunks = [...planChunks(inputs, 1000).chunks()];
    expect(chunks.map((c) => [c.inputIndex, c.start, c.end, c.more?.length ?? 0])).toEqual([
      [0, 0, 10, 0],
      [1, 0, 1000, 0],
      [1, 1000, 2000, 0],
      [1, 2000, 3000, 0],
      [1, 3000, 4000, 0],
      [1, 4000, 5000, 0],
      [2, 0, 10, 0],
      [3, 0, 3000, 0],
      [4, 0, 10, 0],
    ]);
  });
});

let dir: string;
let n = 0;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-packing-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const run = async (inputs: string[], op: string, params: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => {
  const spec = parseJobSpec({ op, inputs, params, ...extra });
  try {
    const r = await runLocal({ spec, registry: new OpRegistry(), workers: 2, workDir: path.join(dir, `work-${n++}`) });
    return { ok: true as const, result: r.result, status: r.status };
  } catch (error) {
    return { ok: false as const, error: error as CloudmillError };
  }
};

describe("a directory of many small files", () => {
  let files: string;
  let all: Buffer;
  beforeAll(async () => {
    files = path.join(dir, "many");
    await mkdir(files);
    const rand = prng(11);
    const words = ["alpha", "beta", "gamma", "δέλτα", "42", "-1.5"];
    const parts: Buffer[] = [];
    for (let i = 0; i < 2000; i++) {
      const lines = Array.from({ length: Math.floor(rand() * 12) }, () =>
        Array.from({ length: Math.floor(rand() * 6) }, () => words[Math.floor(rand() * words.length)]).join(" "),
      );
      // Some files end without a newline: each is still its own last record.
      const text = lines.join("\n") + (rand() < 0.7 && lines.length > 0 ? "\n" : "");
      const bytes = Buffer.from(text);
      await writeFile(path.join(files, `obs-${String(i).padStart(5, "0")}.txt`), bytes);
      parts.push(bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a ? Buffer.concat([bytes, Buffer.from("\n")]) : bytes);
    }
    all = Buffer.concat(parts);
  });

  it("runs in a few packed tasks and gives wc's count and the reference wordcount of all of them", async () => {
    const count = await run([files], "count");
    // awk's NR counts a last line without a newline as a record, and runs on across files.
    const wc = Number(execFileSync("sh", ["-c", `awk 'END{print NR}' '${files}'/*`], { encoding: "utf8" }).trim());
    expect(count).toMatchObject({ ok: true, result: { records: wc } });
    expect((count as { status: { chunks: number } }).status.chunks).toBeLessThanOrEqual(Math.ceil(2000 / 100));
    expect(await run([files], "wordcount")).toMatchObject({ ok: true, result: refResult("wordcount", {}, all) });
  });

  it("grep names each match's own file and offset, as one file at a time would", async () => {
    const r = await run([files], "grep", { pattern: "^δέλτα 42", k: 50 });
    expect(r.ok).toBe(true);
    const samples = (r as { result: { samples: { input: string; offset: number; line: string }[] } }).result.samples;
    expect(samples.length).toBeGreaterThan(5);
    for (const s of samples) {
      const text = await readFile(path.join(files, path.basename(s.input)));
      expect(text.subarray(s.offset, s.offset + Buffer.byteLength(s.line)).toString()).toBe(s.line);
    }
  });

  it("a bad record in the 1500th file fails the job naming that file and its line", async () => {
    const numbers = path.join(dir, "numbers");
    await mkdir(numbers);
    for (let i = 0; i < 2000; i++)
      await writeFile(path.join(numbers, `n-${String(i).padStart(5, "0")}.txt`), i === 1500 ? "1\n2\nthree\n" : `${i}\n`);
    const r = await run([numbers], "stats");
    expect(r.ok).toBe(false);
    expect((r as { error: CloudmillError }).error.describe()).toMatch(/n-01500\.txt:3 \(byte 4\): .*three/);
  });

  it("CSV files packed many per task each give their own header and Python's rows", async () => {
    const csvs = path.join(dir, "csvs");
    await mkdir(csvs);
    for (let i = 0; i < 300; i++) {
      const file = path.join(csvs, `t-${String(i).padStart(4, "0")}.csv`);
      const sep = i % 3 === 0 ? ";" : ",";
      const rows = [`id${sep}note`, ...Array.from({ length: i % 7 }, (_, k) => `${k}${sep}"a${sep} b\nc"`)];
      await writeFile(file, `${rows.join("\n")}\n`);
    }
    // Python's csv module over each file, told its separator: the rows after each header.
    const expected = Number(
      execFileSync(
        "python3",
        [
          "-c",
          "import csv,glob,sys\nn=0\nfor i,f in enumerate(sorted(glob.glob(sys.argv[1]+'/*.csv'))):\n" +
            "  n+=len([r for r in csv.reader(open(f,newline=''),delimiter=';' if i%3==0 else ',') if r])-1\nprint(n)",
          csvs,
        ],
        { encoding: "utf8" },
      ).trim(),
    );
    const r = await run([csvs], "count", { separator: "auto" }, { format: "csv" });
    expect(r).toMatchObject({ ok: true, result: { records: expected } });
    // Each file's sniffed separator is reported, in input order.
    const sniffed = (r as { status: { csv?: { input: string; separator: string }[] } }).status.csv ?? [];
    expect(sniffed.filter((s) => s.separator === ";").length).toBe(100);
  });
});

describe("a chunk that fails on every attempt", () => {
  /** A store holding the manifest of one job of one chunk over `inputs`; start(id) writes it and gives its task. */
  const oneChunkJobs = async (name: string, inputs: InputObject[]) => {
    const output = new FsBlobStore(await mkdtemp(path.join(dir, name)));
    const deps = { output, inputStore: () => output, registry: new OpRegistry(), log: silentLogger };
    const chunk = planChunks(inputs, 1 << 20).chunkAt(0);
    const job = { op: "count", params: {}, format: "lines" as const, onBadRecord: "fail" as const, maxAttempts: 3 };
    const start = async (jobId: string) => {
      const manifest = Manifest.parse({
        v: 1,
        jobId,
        job,
        inputs,
        chunkSize: 1 << 20,
        chunks: 1,
        output: { result: `${jobId}/result.json`, status: `${jobId}/status.json` },
        createdAt: new Date().toISOString(),
        deadline: Date.now() + 60_000,
        trigger: "cli",
      });
      await output.put(manifestKey(jobId), JSON.stringify(manifest));
      return { v: 1 as const, jobId, chunk, job };
    };
    return { output, deps, chunk, start };
  };

  it("packed, is named by the object its last error was in, or by its first object and how many more", async () => {
    const { output, deps, chunk, start } = await oneChunkJobs("dead-", [object(0, 10), object(1, 20), object(2, 30)]);
    expect(chunk.more).toHaveLength(2);

    // The worker recorded the second object's error (as mapChunk locates it) on the last attempt.
    const task = await start("packed-1");
    const failure = new CloudmillError(ErrorCode.ENVIRONMENT, "GetObject failed: SlowDown").withContext(
      chunkContext("packed-1", chunkParts(chunk)[1]!),
    );
    await afterFailedAttempt(deps, task, failure, 3);
    expect(await handleDeadLetter(deps, JSON.stringify(task))).toBe("failed");
    const status = JSON.parse((await readFile(path.join(output.name, "packed-1/status.json"))).toString()) as JobStatus;
    expect(status.error).toMatchObject({ code: "CHUNK_FAILED", input: "s3://b/k/000001", range: [0, 20] });
    expect(status.error?.message).toBe("s3://b/k/000001 (bytes 0-20): chunk 0 failed after 3 attempts: GetObject failed: SlowDown");

    // Nothing recorded (a killed worker): the chunk names its first object and how many more.
    const silent = await start("packed-2");
    await handleDeadLetter(deps, JSON.stringify(silent), 3);
    const quiet = JSON.parse((await readFile(path.join(output.name, "packed-2/status.json"))).toString()) as JobStatus;
    expect(quiet.error?.message).toMatch(/^s3:\/\/b\/k\/000000 and 2 more objects: chunk 0 failed 3 times without reporting an error/);
  });

  it("names an object whose key holds a line break once, on one line", async () => {
    const { output, deps, chunk, start } = await oneChunkJobs("dead-break-", [object(0, 10, "k/day 1\nday 2.txt")]);
    const jobId = "broken-1";
    const task = await start(jobId);
    const failure = new CloudmillError(ErrorCode.ENVIRONMENT, "GetObject failed: SlowDown").withContext(chunkContext(jobId, chunk));
    await afterFailedAttempt(deps, task, failure, 3);
    expect(await handleDeadLetter(deps, JSON.stringify(task))).toBe("failed");
    const status = JSON.parse((await readFile(path.join(output.name, `${jobId}/status.json`))).toString()) as JobStatus;
    expect(status.error?.message).toBe(
      "s3://b/k/day 1 day 2.txt (bytes 0-10): chunk 0 failed after 3 attempts: GetObject failed: SlowDown",
    );
  });
});
