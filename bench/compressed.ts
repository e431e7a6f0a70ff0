/**
 * Compressed inputs: `count` over the same Zipf text as gzip, zstd and BGZF, against the
 * tools that decode them (`gzip -dc | wc -l`, `zstd -dc | wc -l`), and a BGZF file split
 * over many tasks against the same file read by one task. Every count is checked against
 * `wc -l` of the plain text.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { generateText } from "./generate.js";

export interface CompressedBenchOptions {
  readonly dir: string;
  readonly cli: string;
  readonly mb: number;
  readonly seed: number;
  readonly workers: number;
  readonly repeats: number;
}

const sh = (cmd: string): string => execFileSync("sh", ["-c", cmd], { encoding: "utf8", maxBuffer: 1 << 26 });

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** The compressed copies of `plain` (cached beside it): gzip -6, zstd -3 and bgzip, as labs make them. */
const compressed = (plain: string): Record<"gzip" | "zstd" | "bgzf", string> => {
  const out = { gzip: `${plain}.gz`, zstd: `${plain}.zst`, bgzf: `${plain}.bgz` };
  if (!existsSync(out.gzip)) sh(`gzip -c '${plain}' > '${out.gzip}.tmp' && mv '${out.gzip}.tmp' '${out.gzip}'`);
  if (!existsSync(out.zstd)) sh(`zstd -q -T2 -c '${plain}' > '${out.zstd}.tmp' && mv '${out.zstd}.tmp' '${out.zstd}'`);
  if (!existsSync(out.bgzf)) sh(`bgzip -@ 2 -c '${plain}' > '${out.bgzf}.tmp' && mv '${out.bgzf}.tmp' '${out.bgzf}'`);
  return out;
};

/** Each thread inflates every n-th block of the file: the machine's own ceiling for a split BGZF read. */
const INFLATE_THREAD = `
const { workerData, parentPort } = require("node:worker_threads");
const { readFileSync } = require("node:fs");
const zlib = require("node:zlib");
const d = readFileSync(workerData.file);
const t0 = performance.now();
for (let p = 0, i = 0; p < d.length; i++) {
  const size = d.readUInt16LE(p + 16) + 1;
  if (i % workerData.n === workerData.k) zlib.crc32(zlib.inflateRawSync(d.subarray(p + 12 + d.readUInt16LE(p + 10), p + size - 8), { chunkSize: 65536 }));
  p += size;
}
parentPort.postMessage(performance.now() - t0);`;

/** Wall time of inflating all blocks on `threads` threads (file reads excluded). */
const inflateMs = async (file: string, threads: number): Promise<number> =>
  Math.max(
    ...(await Promise.all(
      Array.from(
        { length: threads },
        (_, k) =>
          new Promise<number>((resolve, reject) => {
            const w = new Worker(INFLATE_THREAD, { eval: true, workerData: { file, k, n: threads } });
            w.once("message", resolve);
            w.once("error", reject);
          }),
      ),
    )),
  );

/** Rows of the benchmark's report. */
export const compressedInputs = async (o: CompressedBenchOptions): Promise<string[]> => {
  const plain = await generateText(o.dir, o.mb * 1e6, o.seed);
  const files = compressed(plain);
  const lines = Number(sh(`wc -l < '${plain}'`).trim());
  const size = async (f: string): Promise<string> => `${((await stat(f)).size / 1e6).toFixed(0)} MB`;

  const cloudmill = (file: string, chunk: string) => (): number =>
    (
      JSON.parse(
        execFileSync(
          process.execPath,
          [o.cli, "run", file, "--op", "count", "--workers", String(o.workers), "--chunk-size", chunk, "--no-progress"],
          {
            encoding: "utf8",
          },
        ),
      ) as { records: number }
    ).records;
  const cases: [string, string, () => number][] = [
    ["gzip -dc | wc -l", files.gzip, () => Number(sh(`gzip -dc '${files.gzip}' | wc -l`).trim())],
    ["cloudmill, gzip (one task)", files.gzip, cloudmill(files.gzip, "64MiB")],
    ["zstd -dc | wc -l", files.zstd, () => Number(sh(`zstd -q -dc '${files.zstd}' | wc -l`).trim())],
    ["cloudmill, zstd (one task)", files.zstd, cloudmill(files.zstd, "64MiB")],
    ["bgzip -dc -@ 2 | wc -l", files.bgzf, () => Number(sh(`bgzip -@ 2 -dc '${files.bgzf}' | wc -l`).trim())],
    ["cloudmill, BGZF in one task", files.bgzf, cloudmill(files.bgzf, "1024MiB")],
    ["cloudmill, BGZF split at 16 MiB", files.bgzf, cloudmill(files.bgzf, "16MiB")],
  ];
  const times = cases.map((): number[] => []);
  let agree = true;
  for (let r = 0; r < o.repeats; r++) {
    for (const [i, [, , fn]] of cases.entries()) {
      const t0 = performance.now();
      const n = fn();
      times[i]!.push(performance.now() - t0);
      agree &&= n === lines;
    }
  }
  const ms = times.map(median);
  const rows = ["| reader | input | ms (median) | decoded MB/s |", "|---|---|---|---|"];
  for (const [i, [name, file]] of cases.entries()) {
    rows.push(`| ${name.replaceAll("|", "\\|")} | ${await size(file)} | ${ms[i]!.toFixed(0)} | ${(o.mb / (ms[i]! / 1000)).toFixed(0)} |`);
  }
  const ratio = (a: number, b: number): string => `${(ms[a]! / ms[b]!).toFixed(2)}×`;
  const ceiling: [number[], number[]] = [[], []];
  for (let r = 0; r < o.repeats; r++) {
    ceiling[0].push(await inflateMs(files.bgzf, 1));
    ceiling[1].push(await inflateMs(files.bgzf, o.workers));
  }
  const [one, many] = ceiling.map(median) as [number, number];
  rows.push(
    "",
    `The machine's own ceiling: zlib inflating the same BGZF blocks (no reading, no records) takes ${one.toFixed(0)} ms on one thread ` +
      `and ${many.toFixed(0)} ms on ${o.workers}: ${(one / many).toFixed(2)}×.`,
  );
  rows.push(
    "",
    `${o.mb} MB of text, ${o.workers} workers, ${o.repeats} alternating runs. Against the anchors (anchor ÷ cloudmill, above 1 is faster): ` +
      `gzip ${ratio(0, 1)}, zstd ${ratio(2, 3)}, BGZF split ${ratio(4, 6)}. BGZF split over the same file in one task: ${ratio(5, 6)} (above 1 is faster). ` +
      `Counts ${agree ? "agree" : "DISAGREE"} with wc -l of the plain text.`,
  );
  if (!agree) process.exitCode = 1;
  return rows;
};

// `node dist/bench/compressed.js`: this benchmark alone (npm run bench runs it among the rest).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
  const dir = path.join(root, ".bench");
  mkdirSync(dir, { recursive: true });
  const rows = await compressedInputs({
    dir,
    cli: path.join(root, "bin", "cloudmill.js"),
    mb: Number(process.env.BENCH_COMPRESSED_MB ?? 1024),
    seed: Number(process.env.BENCH_SEED ?? 42),
    workers: Number(process.env.BENCH_WORKERS ?? 2),
    repeats: Number(process.env.BENCH_REPEATS ?? 3),
  });
  process.stdout.write(`${rows.join("\n")}\n`);
}
