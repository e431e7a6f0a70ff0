/**
 * `cloudmill estimate`: chunks, task and wall time and dollars from input sizes and a rate,
 * checked against arithmetic done by hand from the price table; a calibration maps a sample
 * of the real input, kept for the next estimate of the same sample. (The splitter's refusal of a job over its maxCostUsd is in
 * test/integration/report.test.ts, against the emulated cloud.)
 */
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Estimate, estimateJob } from "../../lib/core/report/estimate.js";
import { CACHE_DIR_ENV, CalibrationCache } from "../../lib/local/calibrationCache.js";
import { cli } from "../helpers/cli.js";
import { textOf } from "../helpers/devCloud.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
let dir: string;
let file: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-estimate-"));
  file = path.join(dir, "notes.txt");
  await writeFile(file, textOf(5_000_000, 41).subarray(0, 5_000_000));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe("cloudmill estimate", () => {
  it("prices a fleet job from sizes and the op's default rate, as worked out by hand", async () => {
    const r = await cli([
      "estimate",
      file,
      "--op",
      "wordcount",
      "--chunk-size",
      "1MiB",
      "--inline-max-bytes",
      "0",
      "--no-calibrate",
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const e = Estimate.parse(JSON.parse(r.stdout));
    // 5,000,000 B in 1 MiB chunks: 5 chunks; wordcount's default 25 MB/s per vCPU; 0.05 s per task.
    expect(e).toMatchObject({ bytes: 5_000_000, chunks: 5, runsOn: "fleet", rate: { mbPerSecondPerVcpu: 25, source: "default" } });
    expect(e.taskSeconds).toBeCloseTo(0.2 + 0.25, 9);
    // m7g.large: 2 vCPUs a worker. 1 worker: 3 waves of 2; 4 workers: 1 wave; a wave is 1 MiB at 25 MB/s + 0.05 s.
    expect(e.wallSeconds.atWorkers).toBeCloseTo(3 * (1_048_576 / 25e6 + 0.05), 9);
    expect(e.wallSeconds.atMost).toBeCloseTo(1_048_576 / 25e6 + 0.05, 9);
    // 0.45 s × $0.0408 per vCPU-hour / 3600 = 0.0000051; (5 GETs + 5 reads of the parts) × $0.0004 + 5 PUTs × $0.005,
    // per 1,000 = 0.000029; 5 × 2.2 × $0.40 / 1e6 = 0.0000044; 5 × 1 KB of logs × $0.50 per GB = 0.0000025.
    expect(e.cost).toMatchObject({ instances: 0.000005, s3Requests: 0.000029, sqs: 0.000004, logs: 0.000003, lambda: 0 });
    expect(e.cost.total).toBe(0.000041);
  });

  it("says the wall time once when --workers is the most workers, and both times otherwise", async () => {
    const at = async (...flags: string[]): Promise<string> => {
      const r = await cli(["estimate", file, "--op", "wordcount", "--chunk-size", "1MiB", "--no-calibrate", ...flags]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.split("\n").find((l) => l.startsWith("wall time: "))!;
    };
    expect(await at("--workers", "4")).toMatch(/^wall time: [\d.]+ s at 4 worker\(s\) \(the most\)$/);
    expect(await at("--workers", "3", "--max-workers", "3")).toMatch(/^wall time: [\d.]+ s at 3 worker\(s\) \(the most\)$/);
    expect(await at("--workers", "1", "--max-workers", "4")).toMatch(/^wall time: [\d.]+ s at 1 worker\(s\), [\d.]+ s at 4 \(the most\)$/);
  });

  it("prices a keyed op's shuffle and reduce stage: a ranged GET per chunk and partition", async () => {
    const r = await cli([
      "estimate",
      file,
      "--op",
      "groupby",
      "--chunk-size",
      "1MiB",
      "--partitions",
      "2",
      "--inline-max-bytes",
      "0",
      "--no-calibrate",
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const e = Estimate.parse(JSON.parse(r.stdout));
    expect(e).toMatchObject({ chunks: 5, rate: { mbPerSecondPerVcpu: 12, source: "default" } });
    // Map: 5 MB at groupby's 12 MB/s + 5 × 0.05 s; reduce, at the map rate: 5 MB at 12 MB/s + 2 × 0.05 s.
    expect(e.taskSeconds).toBeCloseTo(5 / 12 + 0.25 + 5 / 12 + 0.1, 9);
    // GETs: 5 chunks + 5 parts read; 2 plans, 2 × 5 segments, 2 reduce parts read: 24 × $0.0004 / 1000 = 0.0000096.
    // PUTs: 5 parts + 5 shuffle objects; 2 plans, 2 output parts + 2 reduce parts: 16 × $0.005 / 1000 = 0.00008.
    expect(e.cost.s3Requests).toBe(0.00009);
    // 7 fleet tasks × 2.2 × $0.40 / 1e6 = 0.00000616.
    expect(e.cost.sqs).toBe(0.000006);
    // Without the flag, 5 MB is one partition (one per 256 MiB): 1 plan, 5 segments, 1 part read; 5 + 5 + 1 + 1 + 1 PUTs.
    const one = await cli([
      "estimate",
      file,
      "--op",
      "groupby",
      "--chunk-size",
      "1MiB",
      "--inline-max-bytes",
      "0",
      "--no-calibrate",
      "--json",
    ]);
    // (10 + 7) GETs × $0.0004 / 1000 + 13 PUTs × $0.005 / 1000 = 0.0000068 + 0.000065.
    expect(Estimate.parse(JSON.parse(one.stdout)).cost.s3Requests).toBe(0.000072);
    // Under the inline limit too, a keyed job runs on the fleet (the splitter maps none itself).
    const small = await cli(["estimate", file, "--op", "groupby", "--chunk-size", "1MiB", "--no-calibrate", "--json"]);
    expect(Estimate.parse(JSON.parse(small.stdout))).toMatchObject({ runsOn: "fleet", cost: { lambda: 0, s3Requests: 0.000072 } });
  });

  it("prices a sort's runs and output parts past 8 MiB as multipart uploads, as worked out by hand", async () => {
    // 100 MB, sparse: listed, never read. 16 MiB chunks: 5 of 16 MiB and one of 16,113,920 B; one partition.
    const big = path.join(dir, "sorted.txt");
    await writeFile(big, "");
    await truncate(big, 100e6);
    const r = await cli(["estimate", big, "--op", "sort", "--partitions", "1", "--inline-max-bytes", "0", "--no-calibrate", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const e = Estimate.parse(JSON.parse(r.stdout));
    expect(e.chunks).toBe(6);
    // GETs: 6 chunks + 6 part reads; the reduce task's plan, 6 segments and its part's read: 20.
    // PUTs: 6 parts; 6 runs past 8 MiB, each a create, 2 parts of 8 MiB and a complete (24); the plan, the reduce task's
    // part, and its output part of 100 MB: a create, 12 parts and a complete (14): 46.
    expect(e.cost.s3Requests).toBe(Math.round((20 * 0.0004 + 46 * 0.005) * 1e3) / 1e6);
  });

  it("says a job under the inline limit runs in the splitter, and prices its Lambda seconds", async () => {
    const r = await cli(["estimate", file, "--op", "count", "--no-calibrate", "--json"]);
    const e = Estimate.parse(JSON.parse(r.stdout));
    expect(e.runsOn).toBe("lambda");
    // 1 chunk: 5 MB at count's 150 MB/s + 0.05 s = 0.0833 s × 1769/1024 GB × $0.0000133334 = 0.0000019…
    expect(e.cost.lambda).toBe(0.000002);
    expect(e.cost.instances).toBe(0);
  });

  it("plans a lab op that does not say inline: true on the fleet, as the splitter does (runsInline)", async () => {
    const ops = path.join(dir, "plain-ops.mjs");
    const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
    await writeFile(
      ops,
      `import { defineOp } from ${JSON.stringify(defineOp)};
export const plain = defineOp({ name: "plain", format: "lines", map: (l) => l.length, combine: (a, b) => a + b, finalize: (n) => n ?? 0 });
`,
    );
    const r = await cli(["estimate", file, "--ops", ops, "--op", "plain", "--no-calibrate", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const e = Estimate.parse(JSON.parse(r.stdout));
    // 5 MB, far under the 64 MiB limit, but a lab op maps in the splitter only if it says so: one chunk of 16 MiB on the fleet,
    // at the lab ops' 10 MB/s: 0.5 s + 0.05 s.
    expect(e).toMatchObject({ chunks: 1, runsOn: "fleet", cost: { lambda: 0 } });
    expect(e.taskSeconds).toBeCloseTo(0.5 + 0.05, 9);
  });

  it("plans a gzip input bigger than a chunk as one task on the fleet, and says it is priced as stored", async () => {
    const gz = path.join(dir, "words.txt.gz");
    const packed = gzipSync(textOf(12_000_000, 5));
    await writeFile(gz, packed);
    expect(packed.length).toBeGreaterThan(2 * 1_048_576);
    const args = ["estimate", gz, "--op", "wordcount", "--chunk-size", "1MiB", "--no-calibrate"];
    const r = await cli([...args, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const e = Estimate.parse(JSON.parse(r.stdout));
    // A gzip stream is read by one task from its start to its end; with a codec it never maps in the splitter.
    expect(e).toMatchObject({ bytes: packed.length, chunks: 1, runsOn: "fleet", compressedBytes: packed.length });
    // The one task reads every stored byte at wordcount's 25 MB/s, and so does the wall time's one wave.
    expect(e.taskSeconds).toBeCloseTo(packed.length / 25e6 + 0.05, 9);
    expect(e.wallSeconds.atWorkers).toBeCloseTo(packed.length / 25e6 + 0.05, 9);
    // It reads its object once: a GET of it and one of its part, and its part's PUT: 2 × $0.0004 / 1000 + $0.005 / 1000.
    expect(e.cost.s3Requests).toBe(0.000006);
    const text = await cli(args);
    expect(text.stdout).toContain(
      `\ncompressed: ${(packed.length / 1e6).toFixed(1)} MB of it, priced as stored (its decoded size is known only by reading it)\n`,
    );
  });

  it("says what a folder's listing left out (hidden names), and prices only what the job reads", async () => {
    const folder = path.join(dir, "with-hidden");
    await mkdir(path.join(folder, ".git"), { recursive: true });
    await writeFile(path.join(folder, "a.txt"), "one\ntwo\n");
    await writeFile(path.join(folder, ".DS_Store"), "x".repeat(1000));
    await writeFile(path.join(folder, "_SUCCESS"), "");
    await writeFile(path.join(folder, ".git", "config"), "y".repeat(1000));
    const r = await cli(["estimate", folder, "--op", "count", "--no-calibrate", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const e = Estimate.parse(JSON.parse(r.stdout));
    // a.txt alone (8 bytes); left out: .DS_Store, .git (a folder, once) and _SUCCESS.
    expect(e.bytes).toBe(8);
    expect(e.hidden?.count).toBe(3);
    const text = await cli(["estimate", folder, "--op", "count", "--no-calibrate"]);
    expect(text.stdout).toMatch(/^left out 3 hidden file\(s\) or folder\(s\) \(/m);
    // None left out: nothing said.
    const plain = await cli(["estimate", path.join(folder, "a.txt"), "--op", "count", "--no-calibrate", "--json"]);
    expect(JSON.parse(plain.stdout)).not.toHaveProperty("hidden");
  });

  it("calibrates the rate by mapping a sample of the first input", async () => {
    const r = await cli(["estimate", file, "--op", "wordcount"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^estimate: wordcount over 5\.0 MB in 1 chunk\(s\)\nrate: \d+\.\d MB\/s per vCPU \(calibrated on 5\.0 MB of /);
    expect(r.stdout).toMatch(/\ncost: \$\d\.\d{6}: instances \$0\.000000, Lambda \$\d\.\d{6}, /);
  });

  it("calibrates on a small gzip file whole; a big one, whose first chunk alone does not decode, falls back to the default rate", async () => {
    const small = path.join(dir, "small.txt.gz");
    await writeFile(small, gzipSync(textOf(50_000, 11)));
    const r = await cli(["estimate", small, "--op", "count", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(Estimate.parse(JSON.parse(r.stdout)).rate.source).toBe("calibrated");
    // 3 MB of gzip sampled at a 1 MiB chunk: the sample is cut short of the stream's end.
    const big = path.join(dir, "big.txt.gz");
    await writeFile(big, gzipSync(randomBytes(3_000_000).toString("base64")));
    const b = await cli(["estimate", big, "--op", "count", "--chunk-size", "1MiB", "--json"]);
    expect(b.code, b.stderr).toBe(0);
    expect(Estimate.parse(JSON.parse(b.stdout)).rate.source).toBe("default");
    expect(b.stderr).toMatch(new RegExp(`^cloudmill: no calibration on ${big.replace(/[.]/g, "\\.")}: .+; the op's default rate\n$`));
  });

  it("reuses a calibration for the same sample, op and machine; measures again for another sample or op, or with --fresh", async () => {
    const env = { [CACHE_DIR_ENV]: path.join(dir, "cache") };
    const cacheFile = path.join(dir, "cache", "calibrations.json");
    const rateOf = (out: string): string => /\nrate: (\d+\.\d) MB\/s per vCPU \(([^)]*)\)/.exec(out)!.slice(1).join(" | ");
    const sample = path.join(dir, "sample.txt");
    await writeFile(sample, textOf(300_000, 7));
    const first = await cli(["estimate", sample, "--op", "wordcount"], env);
    expect(first.code, first.stderr).toBe(0);
    expect(rateOf(first.stdout)).not.toContain("cached");
    const again = await cli(["estimate", sample, "--op", "wordcount"], env);
    const [rate] = rateOf(first.stdout).split(" | ");
    expect(rateOf(again.stdout)).toMatch(
      new RegExp(`^${rate!.replace(".", "\\.")} \\| calibrated on 0\\.3 MB of .*, cached \\d{4}-\\d\\d-\\d\\dT`),
    );
    expect(Object.keys(JSON.parse(await readFile(cacheFile, "utf8")).entries)).toHaveLength(1);
    // The cached calibration gives every figure the measured one did.
    const [entry] = Object.values(JSON.parse(await readFile(cacheFile, "utf8")).entries) as { shared?: number; cold?: number }[];
    expect(entry!.cold).toBeGreaterThanOrEqual(0);
    const cached = Estimate.parse(JSON.parse((await cli(["estimate", sample, "--op", "wordcount", "--json"], env)).stdout)).rate;
    expect({ shared: cached.shared, cold: cached.coldSeconds }).toEqual({ shared: entry!.shared, cold: entry!.cold });
    // Another op, another sample, --fresh: measured, each a new entry (--fresh replaces its own).
    expect(rateOf((await cli(["estimate", sample, "--op", "count"], env)).stdout)).not.toContain("cached");
    await writeFile(sample, textOf(300_000, 8));
    expect(rateOf((await cli(["estimate", sample, "--op", "wordcount"], env)).stdout)).not.toContain("cached");
    expect(rateOf((await cli(["estimate", sample, "--op", "wordcount", "--fresh"], env)).stdout)).not.toContain("cached");
    expect(rateOf((await cli(["estimate", sample, "--op", "wordcount"], env)).stdout)).toContain("cached");
    expect(Object.keys(JSON.parse(await readFile(cacheFile, "utf8")).entries)).toHaveLength(3);
    // A damaged cache is an empty one, written anew.
    await writeFile(cacheFile, "{ not json");
    const damaged = await cli(["estimate", sample, "--op", "wordcount"], env);
    expect(damaged.code, damaged.stderr).toBe(0);
    expect(rateOf(damaged.stdout)).not.toContain("cached");
    expect(Object.keys(JSON.parse(await readFile(cacheFile, "utf8")).entries)).toHaveLength(1);
  });

  it("keeps calibrations 30 days, and the newest 256", async () => {
    let now = Date.parse("2026-12-01T00:00:00Z");
    const cache = new CalibrationCache(path.join(dir, "cache-limits"), () => now);
    for (let i = 0; i < 300; i++) {
      now += 1000;
      await cache.set(`k${i}`, { rate: i + 1, bytes: 10 });
    }
    expect(await cache.get("k43")).toBeUndefined();
    expect(await cache.get("k44")).toMatchObject({ rate: 45 });
    expect(await cache.get("k299")).toMatchObject({ rate: 300, at: new Date(now).toISOString() });
    now += 30 * 24 * 3600 * 1000 - 500;
    expect(await cache.get("k299")).toBeDefined();
    expect(await cache.get("k298")).toBeUndefined();
  });

  it("adds a keyed op's reduce stage, a local run's start-up, and a task overhead of its own, as worked out by hand", () => {
    // 600 MB of distinct in 16 MiB chunks: 36 chunks; 3 partitions (one per 256 MiB); map at 50 MB/s,
    // reduce at 20 MB/s per reduce task; 0.3 s of start-up; no task overhead.
    const e = estimateJob({
      op: "distinct",
      sizes: [600e6],
      chunkSize: 16 * 1024 * 1024,
      mbPerSecond: 50,
      reduceMbPerSecond: 20,
      startSeconds: 0.3,
      taskOverheadSeconds: 0,
      instanceType: "m7g.large",
      workers: 2,
      vcpusPerWorker: 1,
      maxWorkers: 4,
      inline: false,
    });
    expect(e.chunks).toBe(36);
    // Task time: 600/50 = 12 s of mapping and 600/20 = 30 s of reducing.
    expect(e.taskSeconds).toBeCloseTo(42, 9);
    const chunk = (16 * 1024 * 1024) / 50e6;
    // 2 slots: 18 waves of a chunk, and the 3 partitions' 30 s over 2 at once; 4 slots: 9 waves, 30 s over 3.
    expect(e.wallSeconds.atWorkers).toBeCloseTo(0.3 + 18 * chunk + 30 / 2, 9);
    expect(e.wallSeconds.atMost).toBeCloseTo(0.3 + 9 * chunk + 30 / 3, 9);
  });

  it("slows each task to its shared rate wherever two or more run at once, as worked out by hand", () => {
    // 600 MB of distinct in 16 MiB chunks: 36 chunks, 3 partitions; alone, map at 50 MB/s and reduce at 20 MB/s;
    // beside another task, 0.8 of both: 40 and 16 MB/s.
    const input = {
      op: "distinct",
      sizes: [600e6],
      chunkSize: 16 * 1024 * 1024,
      mbPerSecond: 50,
      reduceMbPerSecond: 20,
      sharedShare: 0.8,
      taskOverheadSeconds: 0,
      instanceType: "m7g.large",
      maxWorkers: 3,
      inline: false,
    };
    const at = (workers: number, vcpusPerWorker: number) => estimateJob({ ...input, workers, vcpusPerWorker });
    const fleetInput = { ...input, workers: 1, vcpusPerWorker: 2 };
    const chunk = (rate: number) => (16 * 1024 * 1024) / (rate * 1e6);
    // One task at a time: the rates alone; 36 waves and the 30 s of reducing in one.
    const one = at(1, 1);
    expect(one.taskSeconds).toBeCloseTo(600 / 50 + 600 / 20, 9);
    expect(one.wallSeconds.atWorkers).toBeCloseTo(36 * chunk(50) + 600 / 20, 9);
    expect(one.rate).toEqual({ mbPerSecondPerVcpu: 50, source: "calibrated", shared: 0.8 });
    // Three slots at the most: 12 waves at 40 MB/s, and 600/16 = 37.5 s of reducing over 3 partitions at once.
    expect(one.wallSeconds.atMost).toBeCloseTo(12 * chunk(40) + 37.5 / 3, 9);
    // Fleet workers of 2 vCPUs share their instance even at one worker: task time at the shared rates.
    const fleet = at(1, 2);
    expect(fleet.taskSeconds).toBeCloseTo(600 / 40 + 600 / 16, 9);
    expect(fleet.wallSeconds.atWorkers).toBeCloseTo(18 * chunk(40) + 37.5 / 2, 9);
    // 200 MB: 12 chunks side by side, but one partition, whose reduce task runs alone at its whole rate.
    const small = estimateJob({ ...fleetInput, sizes: [200e6] });
    expect(small.taskSeconds).toBeCloseTo(200 / 40 + 200 / 20, 9);
    expect(small.wallSeconds.atWorkers).toBeCloseTo(6 * chunk(40) + 200 / 20, 9);
  });

  it("adds a fresh thread's cold first chunk once to the wall time and once per task slot to the task time, by hand", () => {
    // 100 MB of count in 16 MiB chunks: 6 chunks at 100 MB/s; each thread's first chunk 0.4 s longer; 0.3 s to start.
    const input = {
      op: "count",
      sizes: [100e6],
      chunkSize: 16 * 1024 * 1024,
      mbPerSecond: 100,
      coldSeconds: 0.4,
      startSeconds: 0.3,
      taskOverheadSeconds: 0,
      instanceType: "m7g.large",
      vcpusPerWorker: 1,
      inline: false,
    };
    const chunk = (16 * 1024 * 1024) / 100e6;
    const two = estimateJob({ ...input, workers: 2, maxWorkers: 8 });
    // Two threads: 3 waves of a chunk after the start and one cold chunk's extra; 1 s of mapping and two threads' extra.
    expect(two.wallSeconds.atWorkers).toBeCloseTo(0.3 + 0.4 + 3 * chunk, 9);
    expect(two.taskSeconds).toBeCloseTo(1 + 2 * 0.4, 9);
    // Eight slots for 6 chunks: one wave, six threads started.
    expect(two.wallSeconds.atMost).toBeCloseTo(0.3 + 0.4 + chunk, 9);
    expect(two.rate).toEqual({ mbPerSecondPerVcpu: 100, source: "calibrated", coldSeconds: 0.4 });
    // Nothing to map, nothing cold.
    expect(estimateJob({ ...input, sizes: [0], workers: 2, maxWorkers: 2 }).wallSeconds.atWorkers).toBeCloseTo(0.3, 9);
  });

  it("takes a reduce task's spilling rate once its partition is past the spill threshold (64 MiB), as worked out by hand", () => {
    const at = (bytes: number) =>
      estimateJob({
        op: "distinct",
        sizes: [bytes],
        chunkSize: 16 * 1024 * 1024,
        mbPerSecond: 50,
        reduceMbPerSecond: 20,
        spilledReduceMbPerSecond: 10,
        taskOverheadSeconds: 0,
        instanceType: "m7g.large",
        workers: 1,
        vcpusPerWorker: 1,
        maxWorkers: 1,
        inline: false,
      }).taskSeconds;
    // 60 MB: one partition of 60 MB, under 67.1 MB: 60/50 + 60/20 = 4.2 s.
    expect(at(60e6)).toBeCloseTo(4.2, 9);
    // 100 MB: one partition, past it: 100/50 + 100/10 = 12 s.
    expect(at(100e6)).toBeCloseTo(12, 9);
    // 1 GB: four partitions of 250 MB, past it: 1000/50 + 1000/10 = 120 s.
    expect(at(1e9)).toBeCloseTo(120, 9);
  });

  it("prices a spot fleet at the price table's typical share of on-demand, as worked out by hand", async () => {
    // 25 GB of wordcount in 1 GB chunks at 25 MB/s per vCPU: 1000 s of mapping and 25 × 0.05 s of overhead.
    const at = (instanceType: string, capacity?: "spot") =>
      estimateJob({
        op: "wordcount",
        sizes: [25e9],
        chunkSize: 1e9,
        instanceType,
        ...(capacity ? { capacity } : {}),
        workers: 1,
        vcpusPerWorker: 2,
        maxWorkers: 4,
        inline: false,
      }).cost;
    // m7g: $0.0408 per vCPU-hour on demand, spot typically 40 % of it; c7g: $0.03625, 40 %; r8g: $0.0589, 45 %.
    expect(at("m7g.large")).toMatchObject({ capacity: "on-demand", instances: 0.011348 }); // 1001.25 × 0.0408 / 3600
    expect(at("m7g.large", "spot")).toMatchObject({ capacity: "spot", instances: 0.004539 }); // × 0.40
    expect(at("c7g.xlarge", "spot").instances).toBe(0.004033); // 1001.25 × 0.03625 × 0.40 / 3600
    expect(at("r8g.large", "spot").instances).toBe(0.007372); // 1001.25 × 0.0589 × 0.45 / 3600
    // Requests cost the same either way.
    expect(at("m7g.large", "spot").s3Requests).toBe(at("m7g.large").s3Requests);

    const r = await cli(["estimate", file, "--op", "wordcount", "--inline-max-bytes", "0", "--no-calibrate", "--spot"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\(spot, at the price table's typical share of on-demand list prices of \d{4}-\d{2}\)$/m);
  });

  it("prices from a lab's own table laid over the shipped one, and refuses a misspelt one in one line", async () => {
    // 25 GB, sparse: its size is listed, never read. 24 chunks of 1 GiB at wordcount's 25 MB/s per vCPU.
    const big = path.join(dir, "big.bin");
    await writeFile(big, "");
    await truncate(big, 25e9);
    const prices = path.join(dir, "prices.json");
    await writeFile(prices, JSON.stringify({ asOf: "2026-12-04", vcpuHour: { m7g: 0.05 }, spotShare: { m7g: 0.3 } }));
    const args = ["estimate", big, "--op", "wordcount", "--chunk-size", "1GiB", "--inline-max-bytes", "0", "--no-calibrate", "--json"];
    const r = await cli([...args, "--spot", "--prices", prices]);
    expect(r.code, r.stderr).toBe(0);
    const e = Estimate.parse(JSON.parse(r.stdout));
    expect(e.chunks).toBe(24);
    // (1000 s + 24 × 0.05 s) × $0.05 per vCPU-hour × 0.3 / 3600 = 0.0041716…
    expect(e.cost).toMatchObject({ pricesAsOf: "2026-12-04", capacity: "spot", instances: 0.004172 });
    // The shipped requests' prices still apply: the same as without the file.
    const shipped = Estimate.parse(JSON.parse((await cli([...args, "--spot"])).stdout));
    expect(e.cost.s3Requests).toBe(shipped.cost.s3Requests);

    // A family priced on demand only: on spot it is unpriced, and says why.
    await writeFile(prices, JSON.stringify({ asOf: "2026-12-04", vcpuHour: { x9g: 0.05 } }));
    const noSpot = await cli([...args.filter((a) => a !== "--json"), "--instance-type", "x9g.large", "--spot", "--prices", prices]);
    expect(noSpot.stdout).toContain("instances unpriced (the price table has no spot price for x9g.large)");

    await writeFile(prices, JSON.stringify({ asOf: "2026-12-04", vcpuHours: { m7g: 0.05 } }));
    const bad = await cli([...args, "--prices", prices]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(
      new RegExp(`^cloudmill: --prices ${prices.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: value: Unrecognized key: "vcpuHours"\n$`),
    );
    // A key JSON keeps but a plain record would drop without a word (written as text: a JS literal would set the prototype).
    await writeFile(prices, '{ "asOf": "2026-12-04", "vcpuHour": { "__proto__": 0.05 } }');
    const dropped = await cli([...args, "--prices", prices]);
    expect(dropped.code).toBe(2);
    expect(dropped.stderr).toContain(`vcpuHour: key "__proto__": expected an instance family such as m7g`);
  });

  it("refuses what it cannot estimate, in one line", async () => {
    const r = await cli(["estimate", file, "s3://bucket/key", "--op", "count"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("cloudmill: s3://bucket/key: give only s3:// inputs (listed in the lab's buckets) or only local files\n");
    const missing = await cli(["estimate", path.join(dir, "nope.txt"), "--op", "count"]);
    expect(missing.code).toBe(3);
  });
});
