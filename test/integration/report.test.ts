/**
 * The job report: every task's run as its part recorded it, per worker, with stragglers,
 * throughput and cost; `cloudmill report <job> --html` for a dev-cloud job and
 * `cloudmill run --report` for a local one, each one self-contained page that headless
 * Chromium opens with no console error and no request but its own file, with one timeline row
 * per worker and one bar per task. The dollars are checked against hand-computed figures.
 */
import { readFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { keyedResult } from "../../lib/core/pipeline/reduceTask.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { silentLogger } from "../../lib/core/log.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli } from "../helpers/cli.js";
import { JobReport, MAX_REPORT_TASKS, RunLog, RunLogJson, buildReport, runCostUsd } from "../../lib/core/report/jobReport.js";
import { reportHtml } from "../../lib/core/report/html.js";
import { reportLine } from "../../lib/cli/commands/report.js";
import { partKey, reportKey } from "../../lib/core/keys.js";
import type { Manifest, TaskRun } from "../../lib/core/job/manifest.js";
import { openPage } from "../helpers/chromium.js";
import { chunksOf, numbersOf, requireBuild, useDevCloud } from "../helpers/devCloud.js";
import { Estimate } from "../../lib/core/report/estimate.js";
import { CACHE_DIR_ENV } from "../../lib/local/calibrationCache.js";
import { refHistogram } from "../helpers/reference.js";

requireBuild();
const CHUNK = 16 * 1024;
const PARAMS = { min: 0, max: 100, bins: 8 };

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-report-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

/** What the timeline must show: its rows in order, and each row's bars (chunk indexes). */
interface Timeline {
  readonly workers: readonly string[];
  readonly bars: ReadonlyMap<string, readonly number[]>;
}

const timelineOf = (report: JobReport): Timeline => ({
  workers: report.workers.map((w) => w.worker),
  bars: new Map(report.workers.map((w) => [w.worker, report.tasks.filter((t) => t.worker === w.worker).map((t) => t.index)])),
});

/** Opens the page as a person would and checks what the report promises of it. */
const checkPage = async (file: string, expected: Timeline): Promise<Buffer> => {
  const url = pathToFileURL(file).href;
  const page = await openPage(url);
  try {
    expect(page.errors).toEqual([]);
    expect(page.requests).toEqual([url]);
    const rows = await page.evaluate<{ worker: string; bars: number[] }[]>(
      `[...document.querySelectorAll("svg.timeline g.worker-row")].map((g) => ({ worker: g.dataset.worker, ` +
        `bars: [...g.querySelectorAll("rect.task")].map((r) => Number(r.dataset.index)) }))`,
    );
    expect(rows.map((r) => r.worker)).toEqual(expected.workers);
    for (const row of rows) expect(row.bars.sort((a, b) => a - b)).toEqual(expected.bars.get(row.worker));
    const png = await page.screenshot();
    expect(png.subarray(1, 4).toString("latin1")).toBe("PNG");
    expect(png.readUInt32BE(16)).toBe(1000); // IHDR width: the viewport's
    return png;
  } finally {
    await page.close();
  }
};

describe("a dev-cloud job's report", () => {
  const cloud = useDevCloud({ workers: 2, workerConcurrency: 2, chunkSize: CHUNK });

  it("lists every chunk once on the worker that ran it, charts the histogram, and renders as one self-contained page", async () => {
    const t = cloud();
    const body = numbersOf(220 * 1024, 7);
    await t.put("_inputs/values.txt", body);
    const jobId = "report-hist-1";
    await t.put(`_jobs/${jobId}.json`, JSON.stringify({ op: "histogram", inputs: [`s3://${t.input}/_inputs/values.txt`], params: PARAMS }));
    expect(await t.waitForEnd(`_jobs/${jobId}/status.json`)).toMatchObject({ state: "succeeded", ranOn: "fleet" });

    const report = JobReport.parse(await t.getJson(t.output, reportKey(jobId)));
    const chunks = chunksOf(body.length, CHUNK);
    expect(report.tasks.map((task) => task.index)).toEqual(Array.from({ length: chunks }, (_, i) => i));
    expect(report.tasks.reduce((n, task) => n + task.bytes, 0)).toBe(body.length);
    expect(new Set(report.tasks.map((task) => task.on))).toEqual(new Set(["fleet"]));
    // Worker processes, named <host>/<pid>: at most the two the cloud runs, each task on one of them.
    expect(report.workers.length).toBeGreaterThanOrEqual(1);
    expect(report.workers.length).toBeLessThanOrEqual(2);
    const pids = new Set(t.cloud.workerPids().map(String));
    for (const w of report.workers) expect(pids.has(w.worker.split("/").at(-1)!)).toBe(true);
    expect(report.workers.reduce((n, w) => n + w.tasks, 0)).toBe(chunks);
    const ref = refHistogram(body, PARAMS.bins, PARAMS.min, PARAMS.max);
    expect(report.chart).toEqual({ kind: "histogram", min: ref.min, max: ref.max, bins: ref.bins });
    expect(report.cost.instanceType).toBe("m7g.large");

    const html = path.join(dir, "cloud.html");
    const r = await cli(["report", jobId, "--html", html, "--endpoint", t.cloud.endpoint]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^job ${jobId}: ${chunks} tasks on ${report.workers.length} worker\\(s\\) in \\d+\\.\\d s; `));
    expect(r.stdout).toContain(`wrote ${html}`);
    const png = await checkPage(html, timelineOf(report));
    if (process.env["CLOUDMILL_REPORT_PNG"]) await writeFile(process.env["CLOUDMILL_REPORT_PNG"], png);
  });

  it("refuses a job whose estimate is over its maxCostUsd before any task, naming the estimate; a job under it runs", async () => {
    const t = cloud();
    const body = numbersOf(200 * 1024, 9);
    await t.put("_inputs/costly.txt", body);
    const spec = (maxCostUsd: number) =>
      JSON.stringify({ op: "stats", inputs: [`s3://${t.input}/_inputs/costly.txt`], chunkSize: "16KiB", maxCostUsd });
    // 13 chunks of 16 KiB: about $0.00004 of requests alone, so a ceiling of a millionth of a dollar is over.
    await t.put("_jobs/too-dear.json", spec(0.000001));
    const refused = await t.waitForEnd("_jobs/too-dear/status.json");
    expect(refused).toMatchObject({ state: "failed", error: { code: "COST_LIMIT" } });
    const chunks = chunksOf(body.length, 16 * 1024);
    expect(refused.error!.message).toMatch(new RegExp(`estimated \\$0\\.\\d{6,} is over maxCostUsd \\$0\\.000001 \\(${chunks} chunks, `));
    // Nothing but the failure: no manifest, no part, no task.
    expect(await t.keys(t.output, "_work/too-dear/")).toEqual(["_work/too-dear/failure.json"]);
    expect(await t.taskDepth()).toMatchObject({ visible: 0, inFlight: 0 });

    await t.put("_jobs/affordable.json", spec(1));
    expect(await t.waitForEnd("_jobs/affordable/status.json")).toMatchObject({ state: "succeeded" });
  });

  it("estimates a job over S3 inputs (cloudmill estimate --endpoint, mill.estimate): listed there, calibrated on a sample here", async () => {
    const t = cloud();
    const body = numbersOf(300 * 1024, 11);
    await t.put("_inputs/estimate/a.txt", body);
    await t.put("_inputs/estimate/b.txt", body.subarray(0, 1000));
    const args = ["estimate", `s3://${t.input}/_inputs/estimate/`, "--op", "stats", "--chunk-size", "64KiB", "--inline-max-bytes", "0"];
    // A cache of this test's own: the first estimate calibrates here, on the sample, not from an earlier run's.
    const env = { [CACHE_DIR_ENV]: path.join(dir, "estimate-cache") };
    const text = await cli([...args, "--endpoint", t.cloud.endpoint], env);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`\\(calibrated on 0\\.3 MB of s3://${t.input}/_inputs/estimate/a\\.txt\\)`));
    const r = await cli([...args, "--json", "--endpoint", t.cloud.endpoint], env);
    expect(r.code, r.stderr).toBe(0);
    const e = Estimate.parse(JSON.parse(r.stdout));
    // Both objects under the prefix, by their sizes: 5 chunks of 64 KiB for the first, 1 for the second.
    expect(e).toMatchObject({ op: "stats", bytes: body.length + 1000, chunks: chunksOf(body.length, 64 * 1024) + 1, runsOn: "fleet" });
    expect(e.rate.source).toBe("calibrated");
  });

  it("a job with no report is one clear line: no such job, or one that failed and never will have one", async () => {
    const t = cloud();
    const none = await cli(["report", "no-such-job", "--endpoint", t.cloud.endpoint]);
    expect(none.code).toBe(3);
    expect(none.stderr).toMatch(/^cloudmill: no job no-such-job: neither .* nor its spec exists/);
    await t.put("_jobs/reportless.json", JSON.stringify({ op: "count", inputs: [`s3://${t.input}/_inputs/not-there.txt`] }));
    expect(await t.waitForEnd("_jobs/reportless/status.json")).toMatchObject({ state: "failed" });
    const failed = await cli(["report", "reportless", "--endpoint", t.cloud.endpoint]);
    expect(failed.code).toBe(3);
    expect(failed.stderr).toMatch(/^cloudmill: job reportless has no report: it failed, and only a job that succeeds gets one/);
  });
});

describe("a local run's report (cloudmill run --report)", () => {
  it("has one row per task slot and one bar per chunk, and opens cleanly", async () => {
    const file = path.join(dir, "values.txt");
    const body = numbersOf(300 * 1024, 8);
    await writeFile(file, body);
    const html = path.join(dir, "local.html");
    const args = ["run", file, "--op", "histogram", "-p", "min=0", "-p", "max=100", "-p", "bins=8"];
    const r = await cli([...args, "--chunk-size", "32KiB", "--workers", "2", "--report", html, "--no-progress"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(refHistogram(body, 8, 0, 100));
    const chunks = chunksOf(body.length, 32 * 1024);
    expect(r.stderr).toMatch(new RegExp(`cloudmill: job \\S+: ${chunks} tasks on [12] worker\\(s\\) in \\d+\\.\\d s; .*on this machine`));
    const page = await readFile(html, "utf8");
    expect(page).not.toMatch(/<script|https?:\/\//);
    // The page's own data: one bar per chunk, rows named by task slot.
    const bars = [...page.matchAll(/<rect class="task local[^"]*" data-index="(\d+)"/g)].map((m) => Number(m[1]));
    expect(bars.sort((a, b) => a - b)).toEqual(Array.from({ length: chunks }, (_, i) => i));
    const rows = [...page.matchAll(/<g class="worker-row" data-worker="([^"]+)">(.*?)<\/g>/g)].map((m) => ({
      worker: m[1]!,
      bars: [...m[2]!.matchAll(/data-index="(\d+)"/g)].map((b) => Number(b[1])).sort((a, b) => a - b),
    }));
    expect(rows.every((row) => /^task slot [12]$/.test(row.worker))).toBe(true);
    await checkPage(html, { workers: rows.map((row) => row.worker), bars: new Map(rows.map((row) => [row.worker, row.bars])) });
  });
});

describe("a local keyed run's report", () => {
  it("lists every map task and every reduce task, each on a task slot, and reduce tasks read the shuffle", async () => {
    const file = path.join(dir, "stations.csv");
    const rows = Array.from({ length: 4000 }, (_, i) => `s${i % 37},${(i * 7) % 100}.${i % 10}`);
    await writeFile(file, `station,temp\n${rows.join("\n")}\n`);
    const chunkSize = 8 * 1024;
    const size = (await readFile(file)).length;
    const { report } = await runLocal({
      spec: parseJobSpec({ op: "groupby", inputs: [file], chunkSize, partitions: 3, params: { key: "station", value: "temp" } }),
      registry: new OpRegistry(builtinOps),
      workers: 2,
      outDir: path.join(dir, "stations-out"),
      report: true,
    });
    const chunks = chunksOf(size, chunkSize);
    expect(chunks).toBeGreaterThan(3);
    expect(report!.taskCount).toBe(chunks + 3);
    expect(report!.tasks.map((t) => t.index).sort((a, b) => a - b)).toEqual(Array.from({ length: chunks + 3 }, (_, i) => i));
    expect(report!.tasks.every((t) => /^task slot [12]$/.test(t.worker))).toBe(true);
    const reduces = report!.tasks.filter((t) => t.index >= chunks);
    expect(reduces.every((t) => t.bytes > 0)).toBe(true);
    // The map tasks read the file's bytes; reduce tasks are no stragglers of theirs.
    expect(report!.tasks.filter((t) => t.index < chunks).reduce((n, t) => n + t.bytes, 0)).toBe(size);
    expect(report!.stragglers.every((t) => t.index < chunks)).toBe(true);
  });
});

describe("the report's arithmetic", () => {
  const at = (ms: number) => new Date(Date.UTC(2026, 11, 3, 10, 0, 0) + ms).toISOString();
  const logOf = (runs: readonly [number, TaskRun][]): RunLog => {
    const log = new RunLog();
    for (const [index, run] of runs) log.add(index, run);
    return log;
  };

  it("prices a keyed job's shuffle: each map task's shuffle object, each reduce task's plan and output part", () => {
    const runs = logOf([
      [0, { on: "fleet", at: at(0), ms: 1000, worker: "w/1", bytes: 2000 }],
      [1, { on: "fleet", at: at(0), ms: 1000, worker: "w/2", bytes: 2000 }],
      // The reduce task reads one segment of each map task's shuffle object.
      [2, { on: "fleet", at: at(1000), ms: 1000, worker: "w/1", bytes: 500, objects: 2 }],
    ]);
    const input = { jobId: "j", op: "distinct", inputs: ["a"], finishedAt: at(3000), runs, instanceType: "m7g.large", chunks: 2 };
    // Own: (4 objects + 3 part reads) GETs and 3 part PUTs; the shuffle: 2 shuffle objects, 1 plan and
    // 1 output part PUT, 1 plan GET. 8 × $0.0004 / 1000 + 7 × $0.005 / 1000 = 0.0000032 + 0.000035.
    expect(buildReport({ ...input, partitions: 1 }).cost.s3Requests).toBe(0.000038);
    expect(buildReport({ ...input, partitions: 1 }).cost.basis).toContain("plan's PUT and GET");
    // Priced as a job of one result, the shuffle would be missed, and task 2 taken for a merge task, whose reads are its
    // children's parts, priced with them: 5 GETs and 3 PUTs.
    expect(buildReport(input).cost.s3Requests).toBe(0.000017);
    // What the cost ceiling adds up per run agrees: 1 PUT more for a map task, 2 PUTs and a GET for a reduce task.
    const run: TaskRun = { on: "fleet", at: at(0), ms: 1000, worker: "w/1", bytes: 2000 };
    const more = (role: "map" | "reduce") => runCostUsd(run, "m7g.large", "on-demand", role)! - runCostUsd(run, "m7g.large")!;
    expect(more("map")).toBeCloseTo(0.005 / 1000, 12);
    expect(more("reduce")).toBeCloseTo((2 * 0.005 + 0.0004) / 1000, 12);
  });

  it("prices a sort's runs and output parts past 8 MiB as multipart uploads: a create, a part per 8 MiB, a complete", () => {
    const MiB = 1024 * 1024;
    const runs = logOf([
      [0, { on: "fleet", at: at(0), ms: 0, worker: "w/1", bytes: 16 * MiB }],
      [1, { on: "fleet", at: at(0), ms: 0, worker: "w/2", bytes: MiB }],
      [2, { on: "fleet", at: at(0), ms: 0, worker: "w/1", bytes: 17 * MiB, objects: 2 }],
    ]);
    const input = { jobId: "j", inputs: ["a"], finishedAt: at(1000), runs, instanceType: "m7g.large", chunks: 2, partitions: 1 };
    // Own: (4 objects + 3 part reads) GETs and 3 part PUTs. A sort's run holds its chunk's lines: 16 MiB is a create,
    // 2 parts and a complete (4), 1 MiB one PUT; the plan's PUT and GET; the output part holds the partition's 17 MiB:
    // a create, 3 parts and a complete (5). 8 GETs × $0.0004 / 1000 + (3 + 4 + 1 + 1 + 5) PUTs × $0.005 / 1000.
    expect(buildReport({ ...input, op: "sort" }).cost.s3Requests).toBe(Math.round((8 * 0.0004 + 14 * 0.005) * 1e3) / 1e6);
    expect(buildReport({ ...input, op: "sort" }).cost.basis).toContain("past 8 MiB a multipart upload's requests");
    // A keyed op's tables may be any size: one PUT each, 8 GETs and 7 PUTs.
    expect(buildReport({ ...input, op: "distinct" }).cost.s3Requests).toBe(Math.round((8 * 0.0004 + 7 * 0.005) * 1e3) / 1e6);
    // The cost ceiling prices each run the same way: 4 PUTs more for the 16 MiB map task, the plan's PUT and GET and
    // 5 PUTs for the reduce task.
    const run = (bytes: number): TaskRun => ({ on: "fleet", at: at(0), ms: 0, worker: "w/1", bytes });
    const more = (bytes: number, role: "map" | "reduce") =>
      runCostUsd(run(bytes), "m7g.large", "on-demand", role, true)! - runCostUsd(run(bytes), "m7g.large")!;
    expect(more(16 * MiB, "map")).toBeCloseTo((4 * 0.005) / 1000, 12);
    expect(more(17 * MiB, "reduce")).toBeCloseTo((6 * 0.005 + 0.0004) / 1000, 12);
  });

  it("counts a merge task's reads of its children's parts once: as each child's read of its part", () => {
    // 64 map tasks of one object each, and one merge task of all 64 parts (index 64; it records 64 objects).
    const runs = logOf([
      ...Array.from({ length: 64 }, (_, i): [number, TaskRun] => [i, { on: "fleet", at: at(0), ms: 0, worker: "w/1", bytes: 100 }]),
      [64, { on: "fleet", at: at(10), ms: 0, worker: "w/1", bytes: 0, objects: 64 }],
    ]);
    const report = buildReport({
      jobId: "j",
      op: "count",
      inputs: ["a"],
      finishedAt: at(1000),
      runs,
      instanceType: "m7g.large",
      chunks: 64,
    });
    // GETs: 64 inputs, 64 parts read by the merge task, its own part read by the reducer: 129. PUTs: 65 parts.
    expect(report.cost.s3Requests).toBe(Math.round((129 * 0.0004 + 65 * 0.005) * 1e3) / 1e6);
    // The ceiling prices a merge run alike: a GET of its part and its PUT, and its share of the queue's requests.
    const merge: TaskRun = { on: "fleet", at: at(0), ms: 0, worker: "w/1", bytes: 0, objects: 64 };
    expect(runCostUsd(merge, "m7g.large", "on-demand", "merge")).toBeCloseTo((0.0004 + 0.005) / 1000 + (2.2 * 0.4) / 1e6, 12);
  });

  it("prices task-seconds, inline seconds and requests at the table's list prices, and names the stragglers", () => {
    const runs = logOf([
      [0, { on: "lambda", at: at(0), ms: 500, worker: "splitter", bytes: 1000 }],
      [1, { on: "fleet", at: at(600), ms: 1000, worker: "ip-10-0-0-1/7", bytes: 2000 }],
      [2, { on: "fleet", at: at(600), ms: 1000, worker: "ip-10-0-0-2/7", bytes: 2000, objects: 3 }],
      [3, { on: "fleet", at: at(1700), ms: 1000, worker: "ip-10-0-0-1/7", bytes: 2000 }],
      [4, { on: "fleet", at: at(1700), ms: 10_000, worker: "ip-10-0-0-2/7", bytes: 2000 }],
    ]);
    const r = buildReport({ jobId: "j", op: "count", inputs: ["a"], finishedAt: at(12_000), runs, instanceType: "m7g.large" });
    expect(r.medianMs).toBe(1000);
    expect(r.stragglers).toEqual([{ index: 4, worker: "ip-10-0-0-2/7", ms: 10_000, timesMedian: 10 }]);
    expect(r.straggling).toBe(1);
    expect(r.taskSeconds).toEqual({ fleet: 13, lambda: 0.5, local: 0 });
    // m7g: $0.0408 per vCPU-hour (m7g.large, 2 vCPUs, $0.0816); 13 task-seconds → 13 × 0.0408 / 3600 = 0.000147333…
    expect(r.cost.fleet).toBe(0.000147);
    // 0.5 s × 1769/1024 GB × $0.0000133334 = 0.0000115170…
    expect(r.cost.lambda).toBe(0.000012);
    // 5 tasks: (7 objects + 5 reads of their parts) GETs × $0.0004 + 5 PUTs × $0.005, per 1,000 = 0.0000048 + 0.000025
    expect(r.cost.s3Requests).toBe(0.00003);
    // 4 fleet tasks × 2.2 requests × $0.40 / 1e6 = 0.00000352
    expect(r.cost.sqs).toBe(0.000004);
    // 0.000147333 + 0.000011517 + 0.0000298 + 0.00000352 = 0.00019217
    expect(r.cost.total).toBe(0.000192);
    expect(r.cost.fleetPriced).toBe(true);
    expect(r.workers.map((w) => [w.worker, w.tasks, w.busyMs])).toEqual([
      ["splitter", 1, 500],
      ["ip-10-0-0-1/7", 2, 2000],
      ["ip-10-0-0-2/7", 2, 11_000],
    ]);
    // Bytes land where their tasks ran: the last step holds only the 10 s task, 2,000 B over 10 s.
    const last = r.throughput.at(-1)!;
    expect(last.bytesPerSecond).toBe(200);
    const step = r.throughput[1]!.at - r.throughput[0]!.at;
    const carried = r.throughput.reduce((n, p) => n + (p.bytesPerSecond * step) / 1000, 0);
    expect(Math.abs(carried - 9000) / 9000).toBeLessThan(0.02);
  });

  it("a run log comes back from its JSON run for run, and a start no date can hold is left out", () => {
    const entries: [number, TaskRun][] = [
      [0, { on: "fleet", at: at(0), ms: 1000, worker: "w/1", bytes: 2000 }],
      [7, { on: "lambda", at: at(250), ms: 40, worker: "splitter", bytes: 10, objects: 3 }],
      [3, { on: "fleet", at: at(900), ms: 5, worker: "w/2", bytes: 0 }],
      [9, { on: "local", at: at(1200), ms: 12, worker: "w/1", bytes: 77 }],
    ];
    const json = RunLogJson.parse(JSON.parse(JSON.stringify(logOf(entries))));
    const back = [...RunLog.fromJSON(json).records(0)];
    expect(back).toEqual(
      entries.map(([index, t]) => ({
        index,
        on: t.on,
        worker: t.worker,
        start: Date.parse(t.at),
        ms: t.ms,
        bytes: t.bytes,
        objects: t.objects ?? 1,
      })),
    );
    // Worker names are kept once each, whatever the JSON repeats.
    expect(RunLog.fromJSON(json).toJSON().workers).toEqual(["w/1", "splitter", "w/2"]);
    const repeated = { ...json, workers: [...json.workers, "w/1"], worker: json.worker.map((w, i) => (i === 3 ? json.workers.length : w)) };
    const merged = RunLog.fromJSON(repeated);
    expect(merged.toJSON().workers).toEqual(["w/1", "splitter", "w/2"]);
    expect([...merged.records(0)].map((r) => r.worker)).toEqual(["w/1", "splitter", "w/2", "w/1"]);
    const beyond = { ...json, start: [json.start[0]!, 9e15, json.start[2]!, json.start[3]!] };
    expect([...RunLog.fromJSON(beyond).records(0)].map((r) => r.index)).toEqual([0, 3, 9]);
  });

  it("a run log whose JSON holds a value no run has is refused, naming the run", () => {
    const json = RunLogJson.parse(
      JSON.parse(JSON.stringify(logOf([[0, { on: "fleet", at: at(0), ms: 1000, worker: "w/1", bytes: 2000 }]]))),
    );
    expect(() => RunLog.fromJSON(json)).not.toThrow();
    for (const bad of [
      { index: [-1] },
      { index: [0.5] },
      { start: ["0"] },
      { ms: [-3] },
      { ms: [null] },
      { bytes: [-1] },
      { objects: [0] },
      { worker: [1] },
      { on: ["moon"] },
    ]) {
      const parsed = RunLogJson.parse(JSON.parse(JSON.stringify({ ...json, ...bad })));
      expect(() => RunLog.fromJSON(parsed), JSON.stringify(bad)).toThrow(/run log's run 0 is not one/);
    }
    expect(RunLogJson.safeParse({ ...json, ms: "1000" }).success).toBe(false);
  });

  it("a keyed job's reduce tasks are listed and priced, but are neither stragglers nor input throughput", () => {
    // Four map tasks of 1 s over 2,000 B each, then two reduce tasks (indexes 4 and 5) of 20 s over the shuffle.
    const entries: [number, TaskRun][] = [0, 1, 2, 3].map((i) => [
      i,
      { on: "fleet", at: at(0), ms: 1000, worker: `w/${i % 2}`, bytes: 2000 },
    ]);
    entries.push([4, { on: "fleet", at: at(1000), ms: 20_000, worker: "w/0", bytes: 8000, objects: 4 }]);
    entries.push([5, { on: "fleet", at: at(1000), ms: 20_000, worker: "w/1", bytes: 8000, objects: 4 }]);
    // Through the JSON the reducer keeps between the stages, as a keyed job's runs go.
    const runs = RunLog.fromJSON(RunLogJson.parse(JSON.parse(JSON.stringify(logOf(entries)))));
    const r = buildReport({ jobId: "j", op: "groupby", inputs: ["a"], finishedAt: at(22_000), runs, instanceType: "m7g.large", chunks: 4 });
    expect(r.taskCount).toBe(6);
    expect(r.tasks.map((t) => [t.index, t.on, t.worker])).toEqual(entries.map(([i, t]) => [i, t.on, t.worker]));
    expect([r.medianMs, r.straggling, r.stragglers]).toEqual([1000, 0, []]);
    expect(r.taskSeconds.fleet).toBe(44);
    // The input's 8,000 bytes, all in the first second: the shuffle's are not input.
    const step = r.throughput[1]!.at - r.throughput[0]!.at;
    const carried = r.throughput.reduce((n, p) => n + (p.bytesPerSecond * step) / 1000, 0);
    expect(Math.abs(carried - 8000) / 8000).toBeLessThan(0.02);
    // Without the chunk count, each reduce task would be a straggler at 20× the median.
    const flat = buildReport({ jobId: "j", op: "groupby", inputs: ["a"], finishedAt: at(22_000), runs, instanceType: "m7g.large" });
    expect(flat.straggling).toBe(2);
  });

  it("a reduce part's run another version wrote is left out of the report, never failing the job's result", async () => {
    const output = new FsBlobStore(path.join(dir, "odd-runs"));
    const manifest = { jobId: "odd", chunks: 3, job: { partitions: 2 } } as unknown as Manifest;
    const partial = { key: "_jobs/odd/part-00000.jsonl", records: 1, bytes: 10, spilledBytes: 0 };
    const good: TaskRun = { on: "fleet", at: at(0), ms: 5, worker: "w/1", bytes: 10 };
    await output.put(partKey("odd", 3), JSON.stringify({ v: 1, jobId: "odd", index: 3, partial, skipped: 0, ran: good }));
    await output.put(partKey("odd", 4), JSON.stringify({ v: 1, jobId: "odd", index: 4, partial, skipped: 0, ran: { on: "moon" } }));
    const runs = new RunLog();
    const deps = { output, inputStore: () => output, registry: new OpRegistry(), log: silentLogger };
    expect((await keyedResult(deps, manifest, (k) => k, runs)).records).toBe(2);
    expect([...runs.records(0)].map((t) => t.index)).toEqual([3]);
    // A kept log that names a worker it does not hold is refused (the reducer then reports without it).
    expect(() => RunLog.fromJSON({ ...logOf([[0, good]]).toJSON(), workers: [] })).toThrow("a run log's run 0 is not one");
  });

  it("prices a spot fleet's task-seconds at the price table's typical share of on-demand", () => {
    const runs = logOf([[0, { on: "fleet", at: at(0), ms: 13_000, worker: "w/1", bytes: 10 }]]);
    const report = (capacity?: "spot") =>
      buildReport({
        jobId: "j",
        op: "count",
        inputs: [],
        finishedAt: at(14_000),
        runs,
        instanceType: "m7g.large",
        ...(capacity ? { capacity } : {}),
      });
    // 13 task-seconds × $0.0408 per vCPU-hour / 3600 = 0.000147333…; on spot, × 0.40 = 0.0000589333…
    expect(report().cost).toMatchObject({ capacity: "on-demand", fleet: 0.000147 });
    const spot = report("spot");
    expect(spot.cost).toMatchObject({ capacity: "spot", fleet: 0.000059 });
    expect(spot.cost.basis).toContain("m7g.large spot price per vCPU");
    expect(reportLine(spot)).toContain("(m7g.large spot, at the price table's typical share of on-demand list prices of ");
    expect(
      runCostUsd({ on: "fleet", at: at(0), ms: 13_000, bytes: 0 }, "m7g.large", "spot")! -
        runCostUsd({ on: "fleet", at: at(0), ms: 13_000, bytes: 0 }, "m7g.large")!,
    ).toBeCloseTo(-13 * (0.0408 / 3600) * 0.6, 12);
  });

  it("prices each backup race's losing copy: the original from its start, or the backup from its queueing, to the winner's end", () => {
    // Chunk 0 ran normally. Chunk 1's original began at 0 and was backed up at 9 s; the backup won
    // (its part's run: 9.5 s to 12.5 s), so the original ran 0 → 12.5 s. Chunk 2's original began at
    // 1 s and won (its run ends at 14 s); its backup, queued at 10 s, ran 10 → 14 s.
    const runs = logOf([
      [0, { on: "fleet", at: at(0), ms: 2000, worker: "w/1", bytes: 10 }],
      [1, { on: "fleet", at: at(9500), ms: 3000, worker: "w/2", bytes: 10, backup: true }],
      [2, { on: "fleet", at: at(1000), ms: 13_000, worker: "w/1", bytes: 10, objects: 4 }],
      [3, { on: "fleet", at: at(3000), ms: 1000, worker: "w/2", bytes: 10 }],
      [4, { on: "fleet", at: at(3000), ms: 1000, worker: "w/2", bytes: 10 }],
    ]);
    const t = Date.parse(at(0));
    const races = [
      { index: 1, backupWon: true, queuedAt: t + 9000, originalStart: t },
      { index: 2, backupWon: false, queuedAt: t + 10_000, originalStart: t + 1000 },
      // A backup whose marker could not be read: counted, not priced.
      { index: 0, backupWon: false },
      // A race of an earlier run whose chunk was mapped again later (after a resume): the run is
      // neither of its copies, so it is counted, not priced.
      { index: 3, backupWon: false, queuedAt: t + 500, originalStart: t + 100 },
      // A backup that won in a run before a resume, its chunk mapped again after (from 2.5 s): not priced either.
      { index: 4, backupWon: true, queuedAt: t + 1500, originalStart: t + 200, before: t + 2500 },
    ];
    const r = buildReport({ jobId: "j", op: "count", inputs: [], finishedAt: at(15_000), runs, instanceType: "m7g.large", backups: races });
    expect(r.backups).toEqual({ launched: 5, won: 2, lostSeconds: 16.5 });
    // Winners: 20 task-seconds × $0.0408 / 3600 = 0.00022667…; losers: 16.5 s → 0.000187.
    expect(r.cost.fleet).toBe(0.000227);
    // Two losing copies as two more fleet tasks: compute 16.5 × 0.0408 / 3600 = 0.000187, plus
    // S3 ((1 object + its part's read) + (4 + 1)) GETs × $0.0004 / 1000 + 2 PUTs × $0.005 / 1000 = 0.0000128,
    // plus SQS 2 × 2.2 × $0.40 / 1e6 = 0.00000176: 0.00020156 in all.
    expect(r.cost.lostCopies).toBe(0.000202);
    // Winners' requests: (8 + 5) GETs → 0.0000052 + 5 PUTs → 0.000025; SQS 5 × 2.2 × 0.4 / 1e6 = 0.0000044.
    expect(r.cost.total).toBeCloseTo(0.00022667 + 0.0000302 + 0.0000044 + 0.00020156, 6);
    expect(r.cost.basis).toContain("a backup race's losing copy as one more run");
    expect(reportLine(r)).toContain("(5 backed up, 2 of them finished first, the losing copies ran 16.5 s)");
    expect(reportHtml(r)).toContain("<tr><td>copies that lost a backup race</td>");
  });

  it("says an instance type it has no price for is unpriced, rather than free", () => {
    const runs = logOf([[0, { on: "fleet", at: at(0), ms: 1000, worker: "w/1", bytes: 10 }]]);
    const r = buildReport({ jobId: "j", op: "count", inputs: [], finishedAt: at(2000), runs, instanceType: "x9g.large" });
    expect(r.cost).toMatchObject({ fleetPriced: false, fleet: 0 });
    expect(reportLine(r)).toContain("fleet time unpriced (x9g.large is not in the price table)");
    const html = reportHtml(r);
    expect(html).toContain("<tr><td>instances (fleet)</td><td>unpriced (not in the price table)</td></tr>");
    // Nor is the total the fleet's requests alone, in the table or at the top of the page.
    expect(html).toContain("<tr><td>total</td><td>unpriced (not in the price table)</td></tr>");
    expect(html).toMatch(/median task [^·<]+ · fleet time unpriced<\/p>/);
    expect(html).not.toContain(`$${r.cost.total.toFixed(6)}`);
  });

  it("a job of more tasks than it lists keeps every figure over all of them and lists the slowest", () => {
    const n = MAX_REPORT_TASKS + 5000;
    // Task i takes 1 + (i % 1000) ms: the slowest listed are those with the largest i % 1000.
    const runs = logOf(
      Array.from({ length: n }, (_, i): [number, TaskRun] => [
        i,
        { on: "fleet", at: at(i), ms: 1 + (i % 1000), worker: `w/${i % 4}`, bytes: 1 },
      ]),
    );
    const r = buildReport({ jobId: "j", op: "count", inputs: [], finishedAt: at(n + 2000), runs, instanceType: "m7g.large" });
    expect(r.taskCount).toBe(n);
    expect(r.tasks.length).toBe(MAX_REPORT_TASKS);
    expect(r.omittedTasks).toBe(5000);
    const fastestListed = Math.min(...r.tasks.map((t) => t.ms));
    let faster = 0;
    for (let i = 0; i < n; i++) if (1 + (i % 1000) < fastestListed) faster++;
    expect(faster).toBeLessThanOrEqual(5000);
    expect(r.workers.reduce((k, w) => k + w.tasks, 0)).toBe(n);
    let ms = 0;
    for (let i = 0; i < n; i++) ms += 1 + (i % 1000);
    expect(r.taskSeconds.fleet).toBeCloseTo(ms / 1000, 6);
  });

  it("escapes every name it shows: a hostile input key or worker name is text, and the page still fetches nothing", async () => {
    const hostile = `"><img src=http://127.0.0.1:1/x onerror=alert(1)><script>fetch("http://127.0.0.1:1/y")</script>`;
    const runs = logOf([[0, { on: "fleet", at: at(0), ms: 1000, worker: hostile, bytes: 10 }]]);
    const r = buildReport({ jobId: "j", op: hostile, inputs: [hostile], finishedAt: at(2000), runs, instanceType: "m7g.large" });
    const file = path.join(dir, "hostile.html");
    await writeFile(file, reportHtml(r));
    await checkPage(file, { workers: [hostile], bars: new Map([[hostile, [0]]]) });
    const page = await openPage(pathToFileURL(file).href);
    try {
      expect(await page.evaluate<number>(`document.querySelectorAll("img, script").length`)).toBe(0);
      expect(await page.evaluate<string>(`document.querySelector("h1").textContent`)).toContain(hostile);
    } finally {
      await page.close();
    }
  });
});
