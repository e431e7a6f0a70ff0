/**
 * How good `cloudmill estimate` is: for every built-in op, the wall time it predicts for a local
 * run at 1 and 2 workers (its rates calibrated on the input's first chunk, as the CLI does, plus
 * the fixed start-up of a run measured here on a file of two tiny chunks)
 * against `cloudmill run`'s measured wall time, a fresh process each (the median of three for a
 * run under SHORT_RUN_SECONDS). The goal is within 30 %.
 * Env: BENCH_ESTIMATE_MB (default "100,1024"), BENCH_ESTIMATE_OPS (default: every built-in).
 */
import { execFileSync } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { DEFAULTS } from "../lib/core/constants.js";
import { builtinOps, OpRegistry } from "../lib/core/ops/registry.js";
import { estimateJob } from "../lib/core/report/estimate.js";
import { calibrate, calibratedRates } from "../lib/local/calibrate.js";
import { generateNumbers, generateText } from "./generate.js";

interface Case {
  readonly op: string;
  readonly input: "text" | "numbers" | "csv";
  readonly params: Readonly<Record<string, string>>;
}

const CASES: readonly Case[] = [
  { op: "count", input: "text", params: {} },
  { op: "grep", input: "text", params: { pattern: "the" } },
  { op: "wordcount", input: "text", params: {} },
  { op: "distinct", input: "text", params: {} },
  { op: "stats", input: "numbers", params: {} },
  { op: "histogram", input: "numbers", params: { bins: "20", min: "0", max: "200" } },
  { op: "sort", input: "numbers", params: {} },
  { op: "groupby", input: "csv", params: { key: "site", value: "score" } },
];

/** A CSV of `bytes` (cached): id, a score, one of 50 sites. */
const generateCsv = async (dir: string, bytes: number, seed: number): Promise<string> => {
  const file = path.join(dir, `sites-${seed}-${bytes}.csv`);
  if (existsSync(file)) return file;
  const out = createWriteStream(file);
  let x = seed + 1;
  const next = (): number => (x = (x * 48271) % 2147483647);
  let written = 0;
  let batch = "id,score,site\n";
  for (let i = 0; written + batch.length < bytes; i++) {
    batch += `${i},${next() % 1000}.${next() % 100},site-${next() % 50}\n`;
    if (batch.length > 1 << 20) {
      written += batch.length;
      if (!out.write(batch)) await new Promise<void>((r) => out.once("drain", () => r()));
      batch = "";
    }
  }
  out.end(batch);
  await new Promise<void>((r) => out.once("finish", () => r()));
  return file;
};

export interface EstimateRow {
  readonly op: string;
  readonly mb: number;
  readonly workers: number;
  readonly estimatedSeconds: number;
  readonly measuredSeconds: number;
  readonly ratio: number;
}

/** Runs shorter than this are measured three times (the median counts). */
const SHORT_RUN_SECONDS = 10;

export const estimateAccuracy = async (o: {
  root: string;
  dir: string;
  sizesMB: readonly number[];
  ops?: readonly string[];
}): Promise<EstimateRow[]> => {
  const registry = new OpRegistry(builtinOps);
  const rows: EstimateRow[] = [];
  const bin = path.join(o.root, "bin/cloudmill.js");
  // What `cloudmill run` takes on a file of a few bytes in two chunks, at 1 and 2 workers: the
  // median of 5. Two chunks, so that its task threads start, as a long job's do (one chunk of
  // a built-in op runs on the main thread, with no thread to start).
  const tiny = path.join(o.dir, "estimate-tiny.txt");
  writeFileSync(tiny, "one line\ntwo line\n");
  const start: Record<number, number> = {};
  for (const workers of [1, 2]) {
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      execFileSync(
        process.execPath,
        [bin, "run", tiny, "--op", "count", "--chunk-size", "9", "--workers", String(workers), "--no-progress"],
        {
          stdio: "ignore",
        },
      );
      times.push((performance.now() - t0) / 1000);
    }
    start[workers] = times.sort((a, b) => a - b)[2]!;
    process.stderr.write(`  start-up at ${workers} worker(s): ${start[workers]!.toFixed(2)} s\n`);
  }
  for (const mb of o.sizesMB) {
    const bytes = mb * 1e6;
    const files = {
      text: await generateText(o.dir, bytes, 42),
      numbers: await generateNumbers(o.dir, bytes, 42),
      csv: await generateCsv(o.dir, bytes, 42),
    };
    for (const c of CASES.filter((c) => !o.ops || o.ops.includes(c.op))) {
      const file = files[c.input];
      const calibration = await calibrate(file, { op: c.op, params: c.params, chunkSize: DEFAULTS.chunkSize }, registry);
      for (const workers of [1, 2]) {
        const estimate = estimateJob({
          op: c.op,
          sizes: [bytes],
          chunkSize: DEFAULTS.chunkSize,
          ...calibratedRates(calibration),
          // A local run's fixed cost, measured in this run: the process and its threads.
          startSeconds: start[workers]!,
          taskOverheadSeconds: 0,
          instanceType: DEFAULTS.instanceType,
          workers,
          vcpusPerWorker: 1,
          maxWorkers: workers,
          inline: false,
        });
        const out = path.join(o.dir, `estimate-out-${c.op}`);
        const args = [
          bin,
          "run",
          file,
          "--op",
          c.op,
          "--workers",
          String(workers),
          "--no-progress",
          "--out-dir",
          out,
          "--out",
          `${out}.json`,
        ];
        for (const [k, v] of Object.entries(c.params)) args.push("-p", `${k}=${v}`);
        const once = (): number => {
          const t0 = performance.now();
          execFileSync(process.execPath, args, { stdio: ["ignore", "ignore", "inherit"] });
          return (performance.now() - t0) / 1000;
        };
        // A run of a few seconds moves by 10–20 % from run to run on this machine: those take the
        // median of three (a long one, of minutes, moves less and is run once).
        const first = once();
        const measured = first < SHORT_RUN_SECONDS ? [first, once(), once()].sort((a, b) => a - b)[1]! : first;
        const row = {
          op: c.op,
          mb,
          workers,
          estimatedSeconds: estimate.wallSeconds.atWorkers,
          measuredSeconds: measured,
          ratio: estimate.wallSeconds.atWorkers / measured,
        };
        rows.push(row);
        process.stderr.write(`  ${formatRow(row)}\n`);
      }
    }
  }
  return rows;
};

export const formatRow = (r: EstimateRow): string =>
  `${r.op.padEnd(10)} ${String(r.mb).padStart(5)} MB  ${r.workers} worker(s): estimated ${r.estimatedSeconds.toFixed(2)} s, ` +
  `measured ${r.measuredSeconds.toFixed(2)} s, ratio ${r.ratio.toFixed(2)}${Math.abs(r.ratio - 1) <= 0.3 ? "" : "  (outside 30 %)"}`;

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
  const dir = path.join(root, ".bench");
  mkdirSync(dir, { recursive: true });
  const sizesMB = (process.env["BENCH_ESTIMATE_MB"] ?? "100,1024").split(",").map(Number);
  const ops = process.env["BENCH_ESTIMATE_OPS"]?.split(",");
  process.stderr.write(`estimate accuracy on ${os.cpus().length} cores:\n`);
  const rows = await estimateAccuracy({ root, dir, sizesMB, ...(ops ? { ops } : {}) });
  const within = rows.filter((r) => Math.abs(r.ratio - 1) <= 0.3).length;
  process.stdout.write(`${rows.map(formatRow).join("\n")}\n${within} of ${rows.length} within 30 %\n`);
}
