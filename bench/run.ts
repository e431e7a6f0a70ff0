/**
 * `npm run bench`: cloudmill run against single-process baselines measured in the same run.
 * Every figure is a fresh child process; each is the best of BENCH_REPEATS (default 3) runs.
 * Env: BENCH_MB (default 512), BENCH_SEED (default 42), BENCH_WORKERS (default 2), BENCH_REPEATS.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { splitterRequests, tasksPerSecond } from "./cloud.js";
import { generateNumbers, generateText } from "./generate.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const MB = Number(process.env.BENCH_MB ?? 512);
const SEED = Number(process.env.BENCH_SEED ?? 42);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const CHUNK = process.env.BENCH_CHUNK ?? "16MiB";
const CHUNK_BYTES = 16 * 1024 * 1024;

interface Measurement {
  ms: number;
  maxRssMB: number;
  result: unknown;
}

const measure = (mode: string, op: string, file: string): Measurement => {
  let best: Measurement | undefined;
  for (let i = 0; i < REPEATS; i++) {
    const out = execFileSync(process.execPath, [path.join(here, "measure.js"), mode, op, file, String(WORKERS), CHUNK], { encoding: "utf8", maxBuffer: 1 << 26 });
    const m = JSON.parse(out) as Measurement;
    if (!best || m.ms < best.ms) best = { ...m, maxRssMB: Math.max(m.maxRssMB, best?.maxRssMB ?? 0) };
  }
  return best!;
};

const main = async (): Promise<void> => {
  const dir = path.join(root, ".bench");
  mkdirSync(dir, { recursive: true });
  process.stderr.write(`generating ${MB} MB inputs (seed ${SEED}; cached in .bench/)…\n`);
  const text = await generateText(dir, MB * 1e6, SEED);
  const numbers = await generateNumbers(dir, MB * 1e6, SEED + 1);
  const idle = JSON.parse(execFileSync(process.execPath, ["-e", "console.log(JSON.stringify({maxRssMB: process.resourceUsage().maxRSS/1024}))"], { encoding: "utf8" })) as { maxRssMB: number };

  const rows: string[] = [];
  rows.push(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`);
  rows.push(`workers: ${WORKERS}, chunk size: ${CHUNK}, best of ${REPEATS}\n`);
  rows.push("| op | input | naive readline (MB/s) | single-process baseline (MB/s) | cloudmill run (MB/s) | speed-up vs baseline | peak RSS (MB) | RSS above idle per worker / chunk size |");
  rows.push("|---|---|---|---|---|---|---|---|");
  let ok = true;
  for (const [op, file] of [["count", text], ["wordcount", text], ["stats", numbers]] as const) {
    const size = (await stat(file)).size;
    process.stderr.write(`${op}: naive…`);
    const naive = measure("naive", op, file);
    process.stderr.write(" baseline…");
    const base = measure("baseline", op, file);
    process.stderr.write(" cloudmill…\n");
    const eng = measure("engine", op, file);
    if (!isDeepStrictEqual(eng.result, base.result)) {
      ok = false;
      process.stderr.write(`MISMATCH for ${op}: engine ${JSON.stringify(eng.result)} vs baseline ${JSON.stringify(base.result)}\n`);
    }
    const rate = (m: Measurement) => size / 1e6 / (m.ms / 1000);
    const perWorker = (eng.maxRssMB - idle.maxRssMB) / WORKERS / (CHUNK_BYTES / 2 ** 20);
    rows.push(
      `| ${op} | ${(size / 1e6).toFixed(0)} MB | ${rate(naive).toFixed(0)} | ${rate(base).toFixed(0)} | ${rate(eng).toFixed(0)} | ${(base.ms / eng.ms).toFixed(2)}× | ${eng.maxRssMB.toFixed(0)} | ${perWorker.toFixed(2)}× |`,
    );
  }
  rows.push(`\nidle Node process RSS: ${idle.maxRssMB.toFixed(0)} MB. Results of cloudmill and the baseline ${ok ? "agree" : "DISAGREE"} for every op.`);
  if (process.env.BENCH_CLOUD !== "0") {
    process.stderr.write("emulated cloud: splitter requests, tasks/s…\n");
    rows.push("\nSplitter requests per object (emulated cloud, real SDK):\n", ...(await splitterRequests()));
    rows.push("\nTasks per second through the emulated cloud (count op, tiny chunks):\n", ...(await tasksPerSecond(Number(process.env.BENCH_TASKS ?? 2000), WORKERS)));
  }
  process.stdout.write(`${rows.join("\n")}\n`);
  if (!ok) process.exitCode = 1;
};

await main();
