/**
 * CSV whose quoted fields hold newlines, against the very same data without them: a survey
 * export where 5 % of the notes span two lines, and its twin with those newlines turned into
 * spaces (same bytes, same quotes, same fields). The first makes every chunk past a file's
 * start read both ways (outside and inside quotes); the goal is within 1.3× of the twin.
 * Python's csv module checks the record count of both.
 */
import { execFileSync } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROWS_PER_MB = 1e6 / 64;

/** Writes the two files (cached by size and seed): multi-line notes, and the same with spaces. */
const generate = async (dir: string, mb: number, seed: number): Promise<[string, string]> => {
  const multi = path.join(dir, `survey-${mb}MB-${seed}.csv`);
  const flat = path.join(dir, `survey-${mb}MB-${seed}-flat.csv`);
  if (existsSync(multi) && existsSync(flat)) return [multi, flat];
  const outs = [createWriteStream(`${multi}.tmp`), createWriteStream(`${flat}.tmp`)];
  let x = seed + 1;
  const next = (): number => {
    x = (x * 48271) % 2147483647;
    return x;
  };
  const write = async (texts: [string, string]) => {
    for (const [i, out] of outs.entries()) if (!out.write(texts[i])) await new Promise<void>((r) => out.once("drain", () => r()));
  };
  await write(["id,score,site,note\n", "id,score,site,note\n"]);
  const rows = Math.round(mb * ROWS_PER_MB);
  let batch: [string, string] = ["", ""];
  for (let i = 0; i < rows; i++) {
    const score = `${next() % 1000}.${next() % 100}`;
    const site = `site-${next() % 50}`;
    const spans = next() % 100 < 5;
    const words = `observed ${next() % 997} cells, "ok"`.replaceAll('"', '""');
    batch[0] += `${i},${score},${site},"${words}${spans ? "\n" : " "}second part ${i % 13}"\n`;
    batch[1] += `${i},${score},${site},"${words} second part ${i % 13}"\n`;
    if (batch[0].length > 1 << 20) {
      await write(batch);
      batch = ["", ""];
    }
  }
  await write(batch);
  await Promise.all(outs.map((o) => new Promise<void>((r) => o.end(() => r()))));
  const { rename } = await import("node:fs/promises");
  await rename(`${multi}.tmp`, multi);
  await rename(`${flat}.tmp`, flat);
  return [multi, flat];
};

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const pythonCount = (file: string): number =>
  Number(
    execFileSync("python3", ["-c", "import csv,sys\nprint(sum(1 for r in csv.reader(open(sys.argv[1],newline='')) if r)-1)", file], {
      encoding: "utf8",
    }),
  );

export interface CsvBenchOptions {
  readonly dir: string;
  readonly cli: string;
  readonly mb: number;
  readonly seed: number;
  readonly workers: number;
  readonly repeats: number;
  readonly chunk: string;
}

/** Rows of the benchmark's report. */
export const csvMultiline = async (o: CsvBenchOptions): Promise<string[]> => {
  const [multi, flat] = await generate(o.dir, o.mb, o.seed);
  const rows = [
    `| op | same data, no newlines in quotes (ms, median) | 5 % of records span lines (ms, median) | ratio (median [range]) |`,
    "|---|---|---|---|",
  ];
  let agree = true;
  for (const [op, params] of [
    ["count", []],
    ["stats", ["-p", "column=score"]],
  ] as const) {
    const base = [
      "run",
      "--op",
      op,
      ...params,
      "--format",
      "csv",
      "--workers",
      String(o.workers),
      "--chunk-size",
      o.chunk,
      "--no-progress",
    ];
    const times: [number[], number[]] = [[], []];
    const results: unknown[] = [];
    for (let i = 0; i < o.repeats; i++) {
      for (const [k, file] of [flat, multi].entries()) {
        const t0 = performance.now();
        const out = execFileSync(process.execPath, [o.cli, base[0]!, file, ...base.slice(1)], { encoding: "utf8", maxBuffer: 1 << 24 });
        times[k]!.push(performance.now() - t0);
        results[k] = JSON.parse(out) as unknown;
      }
    }
    if (op === "count") {
      const expected = [pythonCount(flat), pythonCount(multi)];
      agree &&= results.every((r, k) => (r as { records: number }).records === expected[k]);
    } else {
      agree &&= JSON.stringify(results[0]) === JSON.stringify(results[1]);
    }
    const ratios = times[1].map((t, k) => t / times[0][k]!);
    rows.push(
      `| ${op} | ${median(times[0]).toFixed(0)} | ${median(times[1]).toFixed(0)} | ` +
        `${median(ratios).toFixed(2)}× [${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}] |`,
    );
  }
  rows.push(
    "",
    `${o.mb} MB each, ${o.chunk} chunks, ${o.workers} workers. Counts ${agree ? "agree" : "DISAGREE"} with Python's csv module; ` +
      `stats ${agree ? "agree" : "DISAGREE"} between the twins.`,
  );
  if (!agree) process.exitCode = 1;
  return rows;
};

// `node dist/bench/csv.js`: this benchmark alone (npm run bench runs it among the rest).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
  const dir = path.join(root, ".bench");
  mkdirSync(dir, { recursive: true });
  const rows = await csvMultiline({
    dir,
    cli: path.join(root, "bin", "cloudmill.js"),
    mb: Number(process.env.BENCH_CSV_MB ?? 128),
    seed: Number(process.env.BENCH_SEED ?? 42),
    workers: Number(process.env.BENCH_WORKERS ?? 2),
    repeats: Number(process.env.BENCH_REPEATS ?? 5),
    chunk: process.env.BENCH_CHUNK ?? "16MiB",
  });
  process.stdout.write(`${rows.join("\n")}\n`);
}
