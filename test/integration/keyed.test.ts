/**
 * Keyed ops on the emulated fleet: map tasks write the shuffle, the reducer enqueues one reduce
 * task per partition once every chunk is mapped, the worker processes run them, and the result
 * is a manifest of parts whose lines equal Python's GROUP BY, `sort | uniq -c` and `sort -g`.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ENV } from "../../lib/core/constants.js";
import { JobReport } from "../../lib/core/report/jobReport.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseS3Uri } from "../../lib/core/s3Uri.js";
import { prng } from "../../lib/dev/prng.js";
import { pythonGroupby } from "../helpers/csv.js";
import { useDevCloud } from "../helpers/devCloud.js";

const CHUNK = 4096;
/** The workers' TMPDIR: where their reduce tasks spill, past a MiB of pairs. */
const spillRoot = mkdtempSync(path.join(os.tmpdir(), "cloudmill-keyed-spill-"));
const cloud = useDevCloud({
  chunkSize: CHUNK,
  workers: 2,
  workerEnv: { TMPDIR: spillRoot, [ENV.REDUCE_SPILL_MIB]: "1" },
});
let dir: string;

interface KeyedManifest {
  readonly records: number;
  readonly partitions: number;
  readonly parts: readonly { readonly key: string; readonly records: number; readonly bytes: number }[];
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-keyed-cloud-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(spillRoot, { recursive: true, force: true });
});

/** `LC_ALL=C sort | uniq -c` of a file, as distinct's rows: the reference for distinct. */
const uniqCounts = (file: string): { key: string; count: number }[] =>
  execFileSync("sh", ["-c", `LC_ALL=C sort "$1" | LC_ALL=C uniq -c`, "sh", file], { encoding: "utf8", maxBuffer: 1 << 28 })
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      const m = /^\s*(\d+) (.*)$/.exec(l)!;
      return { key: m[2]!, count: Number(m[1]) };
    });

/** Every line of every part, read from the output bucket through the manifest's keys. */
const partRows = async (manifest: KeyedManifest): Promise<Record<string, unknown>[]> => {
  const rows: Record<string, unknown>[] = [];
  for (const part of manifest.parts) {
    const { bucket, key } = parseS3Uri(part.key);
    const body = (await cloud().get(bucket, key))!.toString("utf8");
    const lines = body.split("\n").filter((l) => l !== "");
    expect(lines.length).toBe(part.records);
    expect(Buffer.byteLength(body)).toBe(part.bytes);
    rows.push(...lines.map((l) => JSON.parse(l) as Record<string, unknown>));
  }
  return rows;
};

describe("keyed ops on the emulated fleet", () => {
  it("groupby over a CSV job spec: reduce tasks on the workers, parts equal to Python's GROUP BY", async () => {
    const next = prng(17);
    const rows = ["sensor,reading,comment"];
    for (let i = 0; i < 4000; i++) {
      const sensor = `sensor-${Math.floor(next() * 300)}${i % 11 === 0 ? ", spare" : ""}`;
      rows.push(`"${sensor}",${(next() * 1000 - 500).toFixed(3)},${i % 9 === 0 ? '"two\nlines"' : "ok"}`);
    }
    const file = path.join(dir, "sensors.csv");
    const bytes = Buffer.from(`${rows.join("\n")}\n`);
    await writeFile(file, bytes);
    await cloud().put("_inputs/sensors.csv", bytes);
    const spec = {
      op: "groupby",
      inputs: [`s3://${cloud().input}/_inputs/sensors.csv`],
      params: { key: "sensor", value: "reading" },
      partitions: 3,
    };
    await cloud().put("_jobs/groupby-sensors.json", JSON.stringify(spec));
    const status = await cloud().waitForEnd("_jobs/groupby-sensors/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    const chunks = Math.ceil(bytes.length / CHUNK);
    // Its tasks: a map task per chunk and a reduce task per partition.
    expect([status.chunks, status.done]).toEqual([chunks + 3, chunks + 3]);

    const manifest = (await cloud().getJson(cloud().output, "_jobs/groupby-sensors/result.json")) as KeyedManifest;
    expect(manifest.partitions).toBe(3);
    expect(manifest.parts.map((p) => p.key)).toEqual(
      [0, 1, 2].map((p) => `s3://${cloud().output}/_jobs/groupby-sensors/part-0000${p}.jsonl`),
    );
    const got = new Map((await partRows(manifest)).map(({ key, ...rest }) => [JSON.stringify([key]), rest]));
    const expected = pythonGroupby(file, ["sensor"], "reading");
    expect(manifest.records).toBe(expected.size);
    expect(got).toEqual(expected);
    // The reduce tasks ran on the worker processes.
    const reduced = cloud().lines.filter(
      (l) => l.json?.["message"] === "chunk done" && l.json?.["jobId"] === "groupby-sensors" && l.json?.["partition"] !== undefined,
    );
    expect(new Set(reduced.map((l) => l.json?.["partition"]))).toEqual(new Set([0, 1, 2]));
    // Its report lists every map task and every reduce task (after the chunks), each on a worker process.
    const report = JobReport.parse(await cloud().getJson(cloud().output, "_jobs/groupby-sensors/report.json"));
    expect(report.taskCount).toBe(chunks + 3);
    expect(report.tasks.map((t) => t.index)).toEqual(Array.from({ length: chunks + 3 }, (_, i) => i));
    for (const t of report.tasks) expect([t.on, t.worker]).toEqual(["fleet", expect.stringMatching(/\/\d+$/)]);
    // A reduce task's bytes are what it read of the shuffle: together, every map task's output.
    expect(report.tasks.filter((t) => t.index >= chunks).every((t) => t.bytes > 0)).toBe(true);
  }, 120_000);

  it("groupby of a jsonl key field no record has fails the job before its reduce tasks, writing no part", async () => {
    // Python: how many records have "station" (none have "statoin"); the message counts them all.
    const records = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ station: `s${i % 17}`, temp: i % 40 }));
    const body = `${records.join("\n")}\n`;
    const file = path.join(dir, "readings.jsonl");
    await writeFile(file, body);
    const read = Number(
      execFileSync("python3", ["-c", "import json,sys;print(sum(1 for l in open(sys.argv[1]) if l.strip()))", file], { encoding: "utf8" }),
    );
    await cloud().put("_inputs/readings.jsonl", body);
    const spec = {
      op: "groupby",
      inputs: [`s3://${cloud().input}/_inputs/readings.jsonl`],
      params: { key: "statoin", value: "temp" },
      partitions: 3,
    };
    await cloud().put("_jobs/groupby-misspelt.json", JSON.stringify(spec));
    const status = await cloud().waitForEnd("_jobs/groupby-misspelt/status.json");
    expect(status.state).toBe("failed");
    expect(status.error).toMatchObject({
      code: "INVALID_SPEC",
      message: expect.stringContaining(`key=statoin: none of the ${read} records read has it`),
    });
    expect(Math.ceil(body.length / CHUNK)).toBeGreaterThan(3);
    expect(await cloud().keys(cloud().output, "_jobs/groupby-misspelt/part-")).toEqual([]);
    expect(await cloud().keys(cloud().output, "_jobs/groupby-misspelt/result.json")).toEqual([]);
  }, 120_000);

  it("sort over a job spec: the parts, concatenated in order, are sort -g of the input", async () => {
    const next = prng(29);
    const lines = Array.from({ length: 30_000 }, (_, i) => (i % 97 === 0 ? "" : String(Math.round((next() - 0.5) * 1e7) / 100)));
    const file = path.join(dir, "values.txt");
    await writeFile(file, `${lines.join("\n")}\n`);
    await cloud().put("_inputs/values.txt", `${lines.join("\n")}\n`);
    const spec = { op: "sort", inputs: [`s3://${cloud().input}/_inputs/values.txt`], partitions: 3 };
    await cloud().put("_jobs/sort-values.json", JSON.stringify(spec));
    const status = await cloud().waitForEnd("_jobs/sort-values/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    const manifest = (await cloud().getJson(cloud().output, "_jobs/sort-values/result.json")) as KeyedManifest;
    expect(manifest.parts.map((p) => p.key)).toEqual([0, 1, 2].map((p) => `s3://${cloud().output}/_jobs/sort-values/part-0000${p}.txt`));
    const parts = await Promise.all(manifest.parts.map(async (p) => (await cloud().get(cloud().output, parseS3Uri(p.key).key))!));
    const expected = execFileSync("sh", ["-c", `LC_ALL=C sort -g "$1"`, "sh", file], { maxBuffer: 1 << 30 });
    expect(Buffer.concat(parts).equals(expected)).toBe(true);
    expect(manifest.records).toBe(lines.length);
  }, 120_000);

  it("distinct of an uploaded text file: the upload alone starts it, and the parts equal sort | uniq -c", async () => {
    const next = prng(23);
    const lines = Array.from({ length: 20_000 }, () => `w${Math.floor(next() ** 2 * 5000)}`);
    const file = path.join(dir, "tokens.txt");
    await writeFile(file, `${lines.join("\n")}\n`);
    await cloud().put("distinct/tokens.txt", `${lines.join("\n")}\n`);
    const status = await cloud().waitForEnd("distinct/tokens.txt/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    const manifest = (await cloud().getJson(cloud().output, "distinct/tokens.txt/result.json")) as KeyedManifest;
    // Under 256 MiB of input: one partition.
    expect(manifest.partitions).toBe(1);
    const expected = uniqCounts(file);
    // One partition: the part is the whole answer, in byte order, as sort prints it.
    expect(await partRows(manifest)).toEqual(expected);
  }, 120_000);

  it("distinct past the spill threshold: runs spill to the workers' own disks, never S3, and the part equals sort | uniq -c", async () => {
    const next = prng(31);
    // 60,000 distinct words, each about 90 bytes held: several MiB of pairs against a 1 MiB threshold.
    const lines = Array.from({ length: 150_000 }, () => `word-${Math.floor(next() * 60_000)}`);
    const file = path.join(dir, "many.txt");
    await writeFile(file, `${lines.join("\n")}\n`);
    await cloud().put("_inputs/many.txt", `${lines.join("\n")}\n`);
    const spec = { op: "distinct", inputs: [`s3://${cloud().input}/_inputs/many.txt`], chunkSize: 256 * 1024, partitions: 1 };
    await cloud().put("_jobs/distinct-spill.json", JSON.stringify(spec));
    const status = await cloud().waitForEnd("_jobs/distinct-spill/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    const manifest = (await cloud().getJson(cloud().output, "_jobs/distinct-spill/result.json")) as KeyedManifest & {
      spilledBytes: number;
    };
    expect(manifest.spilledBytes).toBeGreaterThan(1024 * 1024);
    const expected = uniqCounts(file);
    expect(await partRows(manifest)).toEqual(expected);
    // The runs went to a worker's spill folder (under the TMPDIR it was given), which keeps no run once the task ends.
    const spilled = (await readdir(spillRoot, { recursive: true, withFileTypes: true })).filter((e) =>
      path.join(e.parentPath, e.name).includes(path.join("_work", "distinct-spill", "spill")),
    );
    expect(spilled.some((e) => e.isDirectory())).toBe(true);
    expect(spilled.filter((e) => e.isFile()).map((e) => e.name)).toEqual([]);
    // Each copy's own folder went with its last run: the partition's folder is left empty.
    const partitions = spilled.filter((e) => e.isDirectory() && /^\d+$/.test(e.name));
    expect(partitions.length).toBeGreaterThan(0);
    for (const partition of partitions) expect(await readdir(path.join(partition.parentPath, partition.name))).toEqual([]);
    // And nothing of them in S3.
    expect(await cloud().keys(cloud().output, "_work/distinct-spill/spill/")).toEqual([]);
  }, 120_000);
});
