/**
 * cloudmill's kernels against the tools labs already trust (`wc`, `mawk`, DuckDB through
 * @duckdb/node-api), on the same files in the same rounds. Every figure is a whole command from
 * process start to exit, as a user types it; each round runs every command once, in the order
 * listed, so a slow spell of the machine falls on all of them. A row's ratio is cloudmill's wall
 * over its anchor's (below 1: cloudmill is faster): the median of the rounds' ratios with their
 * range. Peak RSS comes from /usr/bin/time where it exists. Every answer of every round is checked
 * against its anchor's; a disagreement fails the bench.
 *
 * Alone: `npm run build && node dist/bench/anchors.js` (env as in run.ts: BENCH_MB, BENCH_SEED,
 * BENCH_WORKERS, BENCH_REPEATS).
 */
import { spawnSync } from "node:child_process";
import { createReadStream, existsSync, mkdirSync, readFileSync } from "node:fs";
import { open, rename, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { generateNumbers, generateText } from "./generate.js";

export interface AnchorBench {
  cli: string;
  workers: number;
  repeats: number;
  /** Generated text (wordcount, count) and numbers (stats, histogram, CSV). */
  text: string;
  numbers: string;
}

interface Run {
  ms: number;
  rssMB: number | undefined;
  stdout: string;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const TIME = "/usr/bin/time";

/** One whole command, its wall time and (with /usr/bin/time) its peak RSS. */
const timed = (command: string, args: readonly string[], env: Record<string, string> = {}): Run => {
  const rssFile = path.join(os.tmpdir(), `cloudmill-bench-rss-${process.pid}`);
  const withTime = existsSync(TIME);
  const [file, argv] = withTime ? [TIME, ["-f", "%M", "-o", rssFile, command, ...args]] : [command, [...args]];
  const t0 = performance.now();
  const r = spawnSync(file, argv, { encoding: "utf8", env: { ...process.env, ...env }, maxBuffer: 1 << 26 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${command} ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  const rssMB = withTime ? Number(readFileSync(rssFile, "utf8").trim().split("\n").pop()) / 1024 : undefined;
  return { ms, rssMB, stdout: r.stdout };
};

/** mawk's stats: n, sum, min, max and sum of squares in doubles, as a lab would write it. */
const MAWK_STATS =
  '$1 != "" { x = $1 + 0; n++; s += x; q += x * x; if (n == 1 || x < mn) mn = x; if (n == 1 || x > mx) mx = x } ' +
  'END { printf "%d %.17g %.17g %.17g %.17g\\n", n, s, mn, mx, q }';

/** The numbers as a three-column CSV (id, x, tag) with a header: a column read from the middle. */
const csvOfNumbers = async (numbers: string): Promise<string> => {
  const file = `${numbers}.3col.csv`;
  if (existsSync(file)) return file;
  const out = await open(`${file}.tmp`, "w");
  let pending = "id,x,tag\n";
  let id = 0;
  for await (const line of createInterface({ input: createReadStream(numbers), crlfDelay: Infinity })) {
    if (line !== "") pending += `${id++},${line},t${id % 7}\n`;
    if (pending.length > 1 << 20) {
      await out.write(pending);
      pending = "";
    }
  }
  await out.write(pending);
  await out.close();
  await rename(`${file}.tmp`, file);
  return file;
};

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

interface Stats {
  count: number;
  sum: number;
  min: number;
  max: number;
  mean: number;
  variance: number;
}

/** Relative closeness for sums the anchors add in doubles (cloudmill's are exact). */
const near = (a: number, b: number, scale: number): boolean => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(scale));

export const kernelsAgainstAnchors = async (b: AnchorBench): Promise<{ rows: string[]; ok: boolean }> => {
  const csv = await csvOfNumbers(b.numbers);
  // Start-up with threads: a 1 KB file cut into two chunks, so the threads start as in a big job.
  const tiny = path.join(path.dirname(b.text), "startup-1k.txt");
  await writeFile(tiny, "a b c\n".repeat(170));
  const duck = path.join(here, "duckdb.js");
  const W = String(b.workers);
  const mill =
    (file: string, op: string, workers: string, ...params: string[]) =>
    (): Run =>
      timed(process.execPath, [b.cli, "run", file, "--op", op, "--workers", workers, "--no-progress", ...params]);
  const histogram = ["-p", "min=-500000", "-p", "max=500000", "-p", "bins=100"];
  const oneColumn = ["--format", "csv", "-p", "header=false", "-p", "column=1"];
  /** Every command of a round, in the order run: anchors and cloudmill interleaved. */
  const commands: Record<string, () => Run> = {
    "wc -w": () => timed("wc", ["-w", b.text], { LC_ALL: "C.UTF-8" }),
    wordcount: mill(b.text, "wordcount", W),
    "duckdb wordcount": () => timed(process.execPath, [duck, "wordcount", b.text, W]),
    "wordcount 1": mill(b.text, "wordcount", "1"),
    "mawk NR": () => timed("mawk", ["END { print NR }", b.text]),
    count: mill(b.text, "count", W),
    "count 1": mill(b.text, "count", "1"),
    "mawk stats": () => timed("mawk", [MAWK_STATS, b.numbers]),
    stats: mill(b.numbers, "stats", W),
    "duckdb stats": () => timed(process.execPath, [duck, "stats", b.numbers, W]),
    "stats 1": mill(b.numbers, "stats", "1"),
    histogram: mill(b.numbers, "histogram", W, ...histogram),
    "histogram 1": mill(b.numbers, "histogram", "1", ...histogram),
    "csv one column": mill(b.numbers, "stats", W, ...oneColumn),
    "csv 3 columns": mill(csv, "stats", W, "-p", "column=x"),
    "csv 3 columns 1": mill(csv, "stats", "1", "-p", "column=x"),
    "start-up": mill(tiny, "count", W, "--chunk-size", "512"),
    "start-up 1": mill(tiny, "count", "1", "--chunk-size", "512"),
  };
  const runs: Record<string, Run[]> = Object.fromEntries(Object.keys(commands).map((k) => [k, []]));
  for (let i = 0; i < b.repeats; i++) {
    process.stderr.write(` ${i + 1}/${b.repeats}`);
    for (const [name, run] of Object.entries(commands)) runs[name]!.push(run());
  }
  process.stderr.write("\n");

  // Every round's answers, not only the first's: a kernel that goes wrong once in a while (a race
  // between threads, a chunk boundary that moves with timing) must fail the bench too. Parsing a
  // few hundred bytes of JSON per command is nothing beside the runs.
  const wrong: string[] = [];
  const json = <T>(name: string, i: number): T => JSON.parse(runs[name]![i]!.stdout) as T;
  type Words = { total: number; distinct: number; top: [string, number][] };
  for (let i = 0; i < b.repeats; i++) {
    const wrongOf = (what: string) => wrong.push(`round ${i + 1}: ${what}`);
    const wc = Number(runs["wc -w"]![i]!.stdout.trim().split(/\s+/)[0]);
    const words = json<Words>("wordcount", i);
    if (words.total !== wc) wrongOf(`wordcount total ${words.total} vs wc -w ${wc}`);
    for (const name of ["wordcount 1", "duckdb wordcount"]) {
      const other = json<Words>(name, i);
      if (JSON.stringify(other) !== JSON.stringify(words))
        wrongOf(`wordcount ${JSON.stringify(words)} vs ${name} ${JSON.stringify(other)}`);
    }
    const nr = Number(runs["mawk NR"]![i]!.stdout.trim());
    for (const name of ["count", "count 1"]) {
      if (json<{ records: number }>(name, i).records !== nr) wrongOf(`${name} vs mawk NR ${nr}`);
    }
    const stats = json<Stats>("stats", i);
    const [n, s, mn, mx] = runs["mawk stats"]![i]!.stdout.trim().split(" ").map(Number) as [number, number, number, number];
    if (stats.count !== n || stats.min !== mn || stats.max !== mx || !near(stats.sum, s, s)) {
      wrongOf(`stats ${JSON.stringify(stats)} vs mawk n=${n} sum=${s} min=${mn} max=${mx}`);
    }
    const duckStats = json<Stats>("duckdb stats", i);
    if (
      stats.count !== duckStats.count ||
      stats.min !== duckStats.min ||
      stats.max !== duckStats.max ||
      !near(stats.sum, duckStats.sum, s)
    ) {
      wrongOf(`stats ${JSON.stringify(stats)} vs DuckDB ${JSON.stringify(duckStats)}`);
    }
    for (const name of ["stats 1", "csv one column", "csv 3 columns", "csv 3 columns 1"]) {
      if (JSON.stringify(json<Stats>(name, i)) !== JSON.stringify(stats)) wrongOf(`${name}: ${runs[name]![i]!.stdout} vs stats`);
    }
    for (const name of ["histogram", "histogram 1"]) {
      const bins = json<{ bins: number[] }>(name, i).bins.reduce((a, c) => a + c, 0);
      if (bins !== n) wrongOf(`${name} holds ${bins} numbers, mawk counts ${n}`);
    }
    for (const name of ["start-up", "start-up 1"]) {
      if (json<{ records: number }>(name, i).records !== 170) wrongOf(`${name}: ${runs[name]![i]!.stdout} vs 170 lines`);
    }
  }
  const stats = json<Stats>("stats", 0);
  const s = Number(runs["mawk stats"]![0]!.stdout.trim().split(" ")[1]);
  const duckStats = json<Stats>("duckdb stats", 0);

  const ms = (name: string) => median(runs[name]!.map((r) => r.ms));
  const rss = (name: string) => {
    const xs = runs[name]!.map((r) => r.rssMB).filter((x): x is number => x !== undefined);
    return xs.length ? median(xs).toFixed(0) : "–";
  };
  const textMB = (await stat(b.text)).size / 1e6;
  const numbersMB = (await stat(b.numbers)).size / 1e6;
  const csvMB = (await stat(csv)).size / 1e6;
  /** A row: cloudmill's command over its anchor's, per byte when they read different files. */
  const row = (work: string, name: string, anchorLabel: string, anchor: string, target?: number, perByte = 1): string => {
    const ratios = runs[name]!.map((r, i) => r.ms / runs[anchor]![i]!.ms / perByte);
    const r = median(ratios);
    const verdict = target === undefined ? "–" : `≤ ${target}× ${r <= target ? "met" : "MISSED"}`;
    return (
      `| ${work} | ${anchorLabel} | ${ms(anchor).toFixed(0)} | ${ms(name).toFixed(0)} | ${r.toFixed(2)}× ` +
      `[${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}] | ${verdict} | ` +
      `${rss(anchor)} / ${rss(name)} |`
    );
  };
  const rows = [
    `| work | anchor | anchor wall (ms) | cloudmill wall (ms, --workers ${W}) | cloudmill ÷ anchor [range] | target | peak RSS anchor / cloudmill (MB) |`,
    "|---|---|---|---|---|---|---|",
    row(`wordcount, ${textMB.toFixed(0)} MB text`, "wordcount", "`LC_ALL=C.UTF-8 wc -w` (total only)", "wc -w", 1),
    row(
      "wordcount (total, distinct, top 10)",
      "wordcount",
      `DuckDB, ${W} threads, \`string_split_regex\` + \`GROUP BY\``,
      "duckdb wordcount",
      1,
    ),
    row("count, same text", "count", "`mawk 'END{print NR}'`", "mawk NR", 1.5),
    row(`stats, ${numbersMB.toFixed(0)} MB numbers`, "stats", "mawk: n, sum, min, max, sum of squares", "mawk stats", 1),
    row("stats, same numbers", "stats", "DuckDB `count, sum, min, max, avg, var_pop` over `read_csv`", "duckdb stats", 2),
    row("histogram, 100 bins, same numbers", "histogram", "cloudmill `stats`, same bytes", "stats", 1.2),
    row("CSV `stats -p column=1`, same bytes as CSV", "csv one column", "cloudmill `stats`, same bytes", "stats", 1.2),
    row(
      `CSV \`stats -p column=x\`, middle of 3 columns (${csvMB.toFixed(0)} MB), per byte`,
      "csv 3 columns",
      "cloudmill `stats` on the numbers, per byte",
      "stats",
      undefined,
      csvMB / numbersMB,
    ),
    "",
    `Answers ${wrong.length ? `DISAGREE: ${wrong.join("; ")}` : "agree with every anchor"} (counts, words, distinct and top exactly; ` +
      `sums to 1e-9, since the anchors add in doubles and cloudmill adds the decimals exactly: ` +
      `cloudmill's sum ${stats.sum}, mawk's ${s}, DuckDB's ${duckStats.sum}).`,
    "",
    `Scaling, MB/s per worker (medians of the same rounds; target: ${W} workers ≥ ${(0.9 * b.workers).toFixed(1)}× the throughput of 1):`,
    "",
    `| op | input | 1 worker (MB/s) | ${W} workers (MB/s per worker) | ${W} ÷ 1 (throughput) | ${W} ÷ 1 less start-up |`,
    "|---|---|---|---|---|---|",
    ...(
      [
        ["count", "text", textMB],
        ["wordcount", "text", textMB],
        ["stats", "numbers", numbersMB],
        ["histogram", "numbers", numbersMB],
        ["csv 3 columns", "3-column CSV", csvMB],
      ] as const
    ).map(([name, input, mb]) => {
      const one = mb / (ms(`${name} 1`) / 1000);
      const two = mb / (ms(name) / 1000);
      const steady = (ms(`${name} 1`) - ms("start-up 1")) / (ms(name) - ms("start-up"));
      return `| ${name} | ${input} | ${one.toFixed(0)} | ${(two / b.workers).toFixed(0)} | ${(two / one).toFixed(2)}× | ${steady.toFixed(2)}× |`;
    }),
    "",
    `Start-up with threads (a 1 KB file in two chunks): ${ms("start-up 1").toFixed(0)} ms at 1 worker, ${ms("start-up").toFixed(0)} ms at ${W}; ` +
      `"less start-up" takes it off both walls before dividing.`,
  ];
  return { rows, ok: wrong.length === 0 };
};

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const root = path.resolve(here, "../..");
  const dir = path.join(root, ".bench");
  mkdirSync(dir, { recursive: true });
  const mb = Number(process.env.BENCH_MB ?? 512);
  const seed = Number(process.env.BENCH_SEED ?? 42);
  const { rows, ok } = await kernelsAgainstAnchors({
    cli: path.join(root, "bin", "cloudmill.js"),
    workers: Number(process.env.BENCH_WORKERS ?? 2),
    repeats: Number(process.env.BENCH_REPEATS ?? 5),
    text: await generateText(dir, mb * 1e6, seed),
    numbers: await generateNumbers(dir, mb * 1e6, seed + 1),
  });
  process.stdout.write(`${rows.join("\n")}\n`);
  if (!ok) process.exitCode = 1;
}
