/**
 * `npm run bench`: cloudmill run against single-process baselines measured in the same run.
 * Every figure is a fresh child process. The baseline and cloudmill run in alternation,
 * BENCH_REPEATS (default 5) times each, so a slow spell of the machine falls on both; the
 * speed-up is the median of the pairs' ratios, with their range. Beside it, the machine's own
 * ceiling in the same rounds: two baseline processes at once, each on half the input.
 * Env: BENCH_MB (default 512), BENCH_SEED (default 42), BENCH_WORKERS (default 2),
 * BENCH_REPEATS, BENCH_CHUNK (default 16MiB), BENCH_OPS (default count,wordcount,stats),
 * BENCH_GROUPBY_ROWS (default 500000) rows of wide decimals for groupby against stats and DuckDB,
 * BENCH_CLOUD=0 to skip the emulated cloud, BENCH_FLOOD_WORDS (default 200000) words built to collide, BENCH_ITEMS (default 20000) for a lab's task over items,
 * BENCH_CSV_MB (default 128) for CSV with quoted newlines against the same data without them
 * against a plain loop, BENCH_ESTIMATE_MB (default "100,1024") for the estimate's accuracy. Also: start-up of whole CLI commands, against a
 * bare Node start; and the kernels against `wc`, `mawk` and DuckDB (anchors.ts).
 *
 * `node dist/bench/run.js --help` lists the figures; `--only tasks,anchors` (or BENCH_ONLY)
 * runs some of them. The tools the chosen figures need are checked before anything runs, and
 * each table is written to stdout as soon as it is done.
 *
 * Correctness: every cloudmill result must agree with the naive readline program's
 * (measure.ts), which shares no code with the engine's ops (see `differences`); and, bit for
 * bit, with the single-process baseline's (the same op code in one pass: chunking and merging
 * must change nothing).
 */
import type { StatsResult } from "../lib/core/ops/stats.js";
import { execFile, execFileSync } from "node:child_process";
import { accessSync, constants, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { open, rename, writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import { stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { parseSize } from "../lib/core/job/size.js";
import { headOf, keyedAtScale, manyObjects, splitterRequests, tasksPerSecond, uploadToResult } from "./cloud.js";
import { kernelsAgainstAnchors } from "./anchors.js";
import { csvMultiline } from "./csv.js";
import { compressedInputs } from "./compressed.js";
import { hashFlooding } from "./hashFlood.js";
import { groupbyWide } from "./groupby.js";
import { sortNumbers } from "./sort.js";
import { estimateAccuracy, formatRow as formatEstimateRow } from "./estimate.js";
import { generateNumbers, generateText } from "./generate.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const MB = Number(process.env.BENCH_MB ?? 512);
const SEED = Number(process.env.BENCH_SEED ?? 42);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 5);
const CHUNK = process.env.BENCH_CHUNK ?? "16MiB";
const OPS = (process.env.BENCH_OPS ?? "count,wordcount,stats").split(",");
const MiB = 2 ** 20;

interface Measurement {
  ms: number;
  maxRssMB: number;
  result: unknown;
}

const once = (mode: string, op: string, file: string, chunk = CHUNK): Measurement => {
  const out = execFileSync(process.execPath, [path.join(here, "measure.js"), mode, op, file, String(WORKERS), chunk], {
    encoding: "utf8",
    maxBuffer: 1 << 26,
  });
  return JSON.parse(out) as Measurement;
};

const bytesOf = (size: string): number => {
  const n = parseSize(size);
  if (n === undefined) throw new Error(`not a size: ${size}`);
  return n;
};

/**
 * The machine's own parallel ceiling: two baseline processes at once, each on half the input
 * (cut at a newline), with no coordination at all. Its speed-up over one baseline is what these
 * two cores can give right now; on a shared host it is often well below 2.
 */
const twoHalves = async (op: string, halves: readonly [string, string]): Promise<number> => {
  const run = promisify(execFile);
  const outs = await Promise.all(
    halves.map((f) => run(process.execPath, [path.join(here, "measure.js"), "baseline", op, f], { encoding: "utf8", maxBuffer: 1 << 26 })),
  );
  return Math.max(...outs.map((o) => (JSON.parse(o.stdout) as Measurement).ms));
};

/** The file cut in two at the first newline past its middle (cached beside it). */
const halvesOf = async (file: string): Promise<[string, string]> => {
  const halves: [string, string] = [`${file}.half0`, `${file}.half1`];
  if (existsSync(halves[0]) && existsSync(halves[1])) return halves;
  const size = (await stat(file)).size;
  const src = await open(file, "r");
  const buf = Buffer.alloc(1 << 24);
  try {
    const { bytesRead: n } = await src.read(buf, 0, 1 << 20, Math.floor(size / 2));
    const nl = buf.subarray(0, n).indexOf(0x0a);
    const cut = nl < 0 ? size : Math.floor(size / 2) + nl + 1;
    for (const [i, [start, end]] of (
      [
        [0, cut],
        [cut, size],
      ] as const
    ).entries()) {
      const out = await open(`${halves[i]}.tmp`, "w");
      for (let at = start; at < end; ) {
        const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, end - at), at);
        await out.write(buf.subarray(0, bytesRead));
        at += bytesRead;
      }
      await out.close();
      await rename(`${halves[i]}.tmp`, halves[i]);
    }
  } finally {
    await src.close();
  }
  return halves;
};

/** Wall time of a whole command, process start to exit (its output discarded). */
const wallMs = (args: readonly string[]): number => {
  const t0 = performance.now();
  execFileSync(process.execPath, args, { stdio: "ignore" });
  return performance.now() - t0;
};

/**
 * What a user waits for before any work: `cloudmill run` end to end on a tiny file, against a
 * bare Node start in alternation. The CLI loads only what its command needs.
 */
const startUp = async (tiny: string): Promise<string[]> => {
  const cli = path.join(root, "bin", "cloudmill.js");
  // A lab's op that imports the package root, as a lab's module does: it must cost no more
  // than a built-in (the root loads no AWS client).
  const userOps = path.join(path.dirname(tiny), "user-ops.mjs");
  await writeFile(
    userOps,
    `import { defineOp } from ${JSON.stringify(pathToFileURL(path.join(root, "dist/lib/index.js")).href)};
export const lines = defineOp({ name: "user-lines", format: "lines", orderFree: true, map: () => 1, combine: (a, b) => a + b });
`,
  );
  const bare: number[] = [];
  const run: number[] = [];
  const user: number[] = [];
  const version: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    bare.push(wallMs(["-e", "0"]));
    run.push(wallMs([cli, "run", tiny, "--op", "wordcount", "--workers", String(WORKERS), "--no-progress"]));
    user.push(wallMs([cli, "run", tiny, "--ops", userOps, "--op", "user-lines", "--workers", String(WORKERS), "--no-progress"]));
    version.push(wallMs([cli, "--version"]));
  }
  const b = median(bare);
  const row = (what: string, xs: number[]) => `| ${what} | ${median(xs).toFixed(0)} | ${(median(xs) / b).toFixed(1)}× |`;
  return [
    "| command | wall (ms, median) | ÷ bare Node start |",
    "|---|---|---|",
    row("`node -e 0` (bare Node)", bare),
    row("`cloudmill --version` (CLI loaded)", version),
    row(`\`cloudmill run tiny.txt --op wordcount --workers ${WORKERS}\``, run),
    row(`\`cloudmill run tiny.txt --ops user-ops.mjs --op user-lines --workers ${WORKERS}\``, user),
    "",
    `A lab's op costs ${(median(user) / median(run)).toFixed(2)}× the built-in's run (target ≤ 1.3×).`,
  ];
};

/** Items of the task benchmark (BENCH_ITEMS) and the steps of each item's walk. */
const ITEMS = Number(process.env.BENCH_ITEMS ?? 20_000);
const WALK_STEPS = 20_000;

/**
 * A lab's task (one random walk per item) over ITEMS items: `cloudmill run` on WORKERS threads,
 * items on item threads under their limits, against one plain Node process that calls the same
 * function over the same items in a loop, in alternation. Both answers must be equal.
 */
const taskThroughput = async (dir: string): Promise<string[]> => {
  const cli = path.join(root, "bin", "cloudmill.js");
  const module = path.join(dir, "walk-task.mjs");
  await writeFile(
    module,
    `import { defineTask } from ${JSON.stringify(pathToFileURL(path.join(root, "dist/lib/index.js")).href)};
export const walkOf = ({ seed, steps }) => {
  let x = seed + 1, position = 0, farthest = 0;
  for (let i = 0; i < steps; i++) {
    x = (x * 48271) % 2147483647;
    position += x % 2 === 0 ? 1 : -1;
    farthest = Math.max(farthest, Math.abs(position));
  }
  return { seed, position, farthest };
};
export const walk = defineTask({ name: "walk", run: walkOf });
`,
  );
  const items = path.join(dir, "walk-items.jsonl");
  await writeFile(items, Array.from({ length: ITEMS }, (_, seed) => `${JSON.stringify({ seed, steps: WALK_STEPS })}\n`).join(""));
  const loop = path.join(dir, "walk-loop.mjs");
  await writeFile(
    loop,
    `import { readFileSync, writeFileSync } from "node:fs";
import { walkOf } from ${JSON.stringify(pathToFileURL(module).href)};
const items = readFileSync(process.argv[2], "utf8").split("\\n").filter((l) => l !== "").map((l) => JSON.parse(l));
writeFileSync(process.argv[3], JSON.stringify(items.map(walkOf)));
`,
  );
  const loopOut = path.join(dir, "walk-loop.json");
  const runOut = path.join(dir, "walk-run.json");
  const plain: number[] = [];
  const mill: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    plain.push(wallMs([loop, items, loopOut]));
    mill.push(wallMs([cli, "run", items, "--ops", module, "--op", "walk", "--workers", String(WORKERS), "--no-progress", "--out", runOut]));
  }
  const { readFile } = await import("node:fs/promises");
  const expected = JSON.parse(await readFile(loopOut, "utf8")) as unknown[];
  const got = JSON.parse(await readFile(runOut, "utf8")) as { results: unknown[]; errors: unknown[] };
  const agree = isDeepStrictEqual(got.results, expected) && got.errors.length === 0;
  if (!agree) process.exitCode = 1;
  const ratios = plain.map((p, k) => p / mill[k]!);
  const perItemUs = (ms: number): string => ((ms * 1000) / ITEMS).toFixed(0);
  return [
    `| run | wall (ms, median) | µs per item |`,
    "|---|---|---|",
    `| one Node process, a plain loop over the items | ${median(plain).toFixed(0)} | ${perItemUs(median(plain))} |`,
    `| \`cloudmill run items.jsonl --op walk --workers ${WORKERS}\` | ${median(mill).toFixed(0)} | ${perItemUs(median(mill))} |`,
    "",
    `Speed-up over the plain loop: ${median(ratios).toFixed(2)}× [${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}] ` +
      `(${ITEMS} items of a ${WALK_STEPS}-step walk; each item on an item thread under its time and heap limits). ` +
      `Results ${agree ? "agree" : "DISAGREE"} with the loop's.`,
  ];
};

/**
 * How the engine's result differs from the naive program's; empty when they agree. Counts,
 * words, min and max must be equal. The naive stats add in plain doubles (Welford) where the
 * engine rounds once, so sum, mean and variance must agree to 1e-9 of their scale (n times
 * the largest |x|, the largest |x|, its square). On the 64 MB input the naive is off by at
 * most 2e-15 of that scale; a wrong formula or misparsed numbers are off by far more.
 */
const differences = (op: string, engine: unknown, naive: unknown): string[] => {
  if (op !== "stats") return isDeepStrictEqual(engine, naive) ? [] : ["result"];
  const e = engine as StatsResult;
  const n = naive as StatsResult;
  const out: string[] = (["count", "min", "max"] as const).filter((k) => e[k] !== n[k]);
  if (Object.keys(e).sort().join() !== Object.keys(n).sort().join()) out.push("fields");
  const M = Math.max(Math.abs(n.min ?? 0), Math.abs(n.max ?? 0));
  const close = (k: "sum" | "mean" | "variance", scale: number): void => {
    const a = e[k];
    const b = n[k];
    if (a === null || b === null ? a !== b : !(Math.abs(a - b) <= 1e-9 * scale)) out.push(k);
  };
  close("sum", M * n.count);
  close("mean", M);
  close("variance", M * M);
  return out;
};

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** The figures `npm run bench` produces, in the order it runs them, and what each needs. */
const FIGURES = {
  ops: { about: "count, wordcount, stats: cloudmill run against a single-process pass (BENCH_OPS, BENCH_MB)", tools: [] },
  anchors: { about: "the kernels against wc, mawk and DuckDB (anchors.ts)", tools: ["wc", "mawk", "@duckdb/node-api"] },
  startup: { about: "start-up of whole CLI commands against a bare Node start", tools: [] },
  items: { about: "a lab's task over items against a plain loop (BENCH_ITEMS)", tools: [] },
  groupby: {
    about: "groupby of wide decimals against stats on the same column and DuckDB's GROUP BY (BENCH_GROUPBY_ROWS)",
    tools: ["@duckdb/node-api"],
  },
  csv: { about: "CSV with quoted newlines against the same data without (BENCH_CSV_MB)", tools: ["python3"] },
  flood: { about: "wordcount over words built to collide (BENCH_FLOOD_WORDS)", tools: ["wc"] },
  compressed: { about: "count over gzip, zstd and BGZF (BENCH_COMPRESSED_MB)", tools: ["wc", "gzip", "zstd", "bgzip"] },
  estimate: { about: "cloudmill estimate against cloudmill run (BENCH_ESTIMATE_MB)", tools: [] },
  sort: { about: "sort of numbers against GNU sort -g (BENCH_SORT_MB)", tools: ["wc", "cmp", "GNU sort", "GNU time"] },
  scale: { about: "the 1 TB sort study, from this run's sort throughput (runs sort too)", tools: ["wc", "cmp", "GNU sort", "GNU time"] },
  chunks: { about: "wordcount peak RSS by chunk size", tools: [] },
  splitter: { about: "emulated cloud: the splitter's requests per object", tools: [] },
  many: { about: "emulated cloud: a prefix of many small objects (BENCH_OBJECTS)", tools: [] },
  keyed: { about: "emulated cloud: a keyed job of many chunks and keys (BENCH_KEYED_CHUNKS, BENCH_KEYED_KEYS)", tools: [] },
  "first-result": { about: "emulated cloud: upload to result, 1 MB and 100 MB", tools: ["wc"] },
  tasks: { about: "emulated cloud: tasks per second with tiny chunks (BENCH_TASKS)", tools: [] },
} as const satisfies Record<string, { about: string; tools: readonly string[] }>;
type Figure = keyof typeof FIGURES;
const CLOUD_FIGURES: readonly Figure[] = ["splitter", "many", "keyed", "first-result", "tasks"];

const HELP = `Usage: node dist/bench/run.js [--only FIGURE,...] [--help]   (npm run bench runs every figure)

Figures, in the order they run:
${Object.entries(FIGURES)
  .map(([name, f]) => `  ${name.padEnd(13)}${f.about}`)
  .join("\n")}

Environment:
  BENCH_ONLY      the figures to run, as --only (default: all)
  BENCH_MB        size of the generated text and numbers, MB (default 512)
  BENCH_SEED      seed of the generated inputs (default 42)
  BENCH_WORKERS   workers of cloudmill run and of the emulated cloud (default 2)
  BENCH_REPEATS   alternating rounds per figure (default 5)
  BENCH_CHUNK     chunk size of the ops figure (default 16MiB)
  BENCH_OPS       ops of the ops figure (default count,wordcount,stats)
  BENCH_CLOUD=0   leave out the emulated-cloud figures
  BENCH_ITEMS, BENCH_GROUPBY_ROWS, BENCH_CSV_MB, BENCH_FLOOD_WORDS, BENCH_COMPRESSED_MB, BENCH_ESTIMATE_MB,
  BENCH_SORT_MB, BENCH_OBJECTS, BENCH_KEYED_CHUNKS, BENCH_KEYED_KEYS, BENCH_TASKS: sizes, as listed above

Inputs are generated once and cached in .bench/. Tables go to stdout as each is done, progress
to stderr; a wrong answer anywhere ends with exit code 1.
`;

/** The figures asked for by --only / BENCH_ONLY (all by default), or a one-line complaint. */
const chosenFigures = (argv: readonly string[]): Set<Figure> | string => {
  let only = process.env.BENCH_ONLY;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--only" && argv[i + 1] !== undefined) only = argv[++i];
    else if (arg.startsWith("--only=")) only = arg.slice("--only=".length);
    else return `unknown argument ${arg} (see --help)`;
  }
  const names = only === undefined || only === "" ? Object.keys(FIGURES) : only.split(",").map((n) => n.trim());
  const unknown = names.filter((n) => !(n in FIGURES));
  if (unknown.length) return `unknown figure ${unknown.join(", ")}; figures: ${Object.keys(FIGURES).join(", ")}`;
  const chosen = new Set(names as Figure[]);
  if (process.env.BENCH_CLOUD === "0") for (const f of CLOUD_FIGURES) chosen.delete(f);
  return chosen;
};

const onPath = (command: string): boolean =>
  (process.env.PATH ?? "").split(path.delimiter).some((dir) => {
    try {
      accessSync(path.join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

/** Whether a tool a figure needs is here: a command on PATH, GNU sort and time, the DuckDB package. */
const hasTool = async (tool: string): Promise<boolean> => {
  switch (tool) {
    case "GNU sort":
      return onPath("sort") && /GNU/.test(spawnVersion("sort", ["--version"]));
    case "GNU time":
      return existsSync("/usr/bin/time") && /GNU/.test(spawnVersion("/usr/bin/time", ["--version"]));
    case "@duckdb/node-api":
      try {
        await import("@duckdb/node-api");
        return true;
      } catch {
        return false;
      }
    default:
      return onPath(tool);
  }
};

const spawnVersion = (command: string, args: readonly string[]): string => {
  try {
    return execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    // GNU time writes its version to stderr.
    return `${(err as { stdout?: string }).stdout ?? ""}${(err as { stderr?: string }).stderr ?? ""}`;
  }
};

/** Writes a table (or any lines) to stdout at once, so a later failure loses nothing measured. */
const emit = (...lines: string[]): void => void process.stdout.write(`${lines.join("\n")}\n`);

const main = async (): Promise<void> => {
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(HELP);
    return;
  }
  const chosen = chosenFigures(argv);
  if (typeof chosen === "string") {
    process.stderr.write(`bench: ${chosen}\n`);
    process.exitCode = 2;
    return;
  }
  if (chosen.has("scale")) chosen.add("sort");
  const needs = new Map<string, Figure[]>();
  for (const f of chosen) for (const tool of FIGURES[f].tools) needs.set(tool, [...(needs.get(tool) ?? []), f]);
  const missing: string[] = [];
  for (const [tool, figures] of needs) if (!(await hasTool(tool))) missing.push(`${tool} (for ${figures.join(", ")})`);
  if (missing.length) {
    process.stderr.write(`bench: missing ${missing.join("; ")}; install it, or leave those figures out with --only\n`);
    process.exitCode = 2;
    return;
  }
  const run = (f: Figure): boolean => chosen.has(f);

  const dir = path.join(root, ".bench");
  mkdirSync(dir, { recursive: true });
  const needsInputs = run("ops") || run("anchors") || run("chunks");
  if (needsInputs) process.stderr.write(`generating ${MB} MB inputs (seed ${SEED}; cached in .bench/)…\n`);
  const text = needsInputs ? await generateText(dir, MB * 1e6, SEED) : "";
  const numbers = run("ops") || run("anchors") ? await generateNumbers(dir, MB * 1e6, SEED + 1) : "";
  // The fixed overhead: cloudmill itself (runtime, its threads started, modules loaded) on an
  // input too small to matter, one tiny chunk per worker.
  const tiny = path.join(dir, "tiny.txt");
  writeFileSync(tiny, "a b c\n".repeat(200));
  const fixed =
    run("ops") || run("chunks") ? median(Array.from({ length: 3 }, () => once("engine", "wordcount", tiny, "512").maxRssMB)) : 0;
  const chunkBytes = bytesOf(CHUNK);

  emit(
    `machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
    `figures: ${[...chosen].join(", ")}`,
  );
  let ok = true;
  if (run("ops")) {
    const rows: string[] = [];
    rows.push(
      `workers: ${WORKERS}, chunk size: ${CHUNK}, ${REPEATS} alternating runs of the baseline and cloudmill (medians; speed-up: median of the pairs' ratios [lowest–highest])\n`,
    );
    rows.push(
      "| op | input | naive readline (MB/s) | single-process baseline (MB/s) | cloudmill run (MB/s) | speed-up vs baseline | machine's ceiling: two baselines at once on halves | peak RSS (MB) | RSS above fixed overhead, per worker ÷ chunk size |",
    );
    rows.push("|---|---|---|---|---|---|---|---|---|");
    for (const [op, file] of (
      [
        ["count", text],
        ["wordcount", text],
        ["stats", numbers],
      ] as const
    ).filter(([op]) => OPS.includes(op))) {
      const size = (await stat(file)).size;
      const rate = (ms: number) => size / 1e6 / (ms / 1000);
      process.stderr.write(`${op}: naive…`);
      const naive = once("naive", op, file);
      const halves = await halvesOf(file);
      const ceiling: number[] = [];
      const base: Measurement[] = [];
      const eng: Measurement[] = [];
      for (let i = 0; i < REPEATS; i++) {
        process.stderr.write(` ${i + 1}/${REPEATS}`);
        base.push(once("baseline", op, file));
        ceiling.push(await twoHalves(op, halves));
        eng.push(once("engine", op, file));
      }
      process.stderr.write("\n");
      for (const e of eng) {
        const wrong = differences(op, e.result, naive.result);
        if (wrong.length) {
          ok = false;
          process.stderr.write(
            `MISMATCH for ${op} (${wrong.join(", ")}): engine ${JSON.stringify(e.result)} vs naive ${JSON.stringify(naive.result)}\n`,
          );
        }
        if (!isDeepStrictEqual(e.result, base[0]!.result)) {
          ok = false;
          process.stderr.write(`MISMATCH for ${op}: engine ${JSON.stringify(e.result)} vs baseline ${JSON.stringify(base[0]!.result)}\n`);
        }
      }
      const ratios = base.map((b, i) => b.ms / eng[i]!.ms);
      const ceilings = base.map((b, i) => b.ms / ceiling[i]!);
      const peak = median(eng.map((e) => e.maxRssMB));
      const perWorker = (peak - fixed) / WORKERS / (chunkBytes / MiB);
      rows.push(
        `| ${op} | ${(size / 1e6).toFixed(0)} MB | ${rate(naive.ms).toFixed(0)} | ${rate(median(base.map((m) => m.ms))).toFixed(0)} | ${rate(median(eng.map((m) => m.ms))).toFixed(0)} | ` +
          `${median(ratios).toFixed(2)}× [${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}] | ` +
          `${median(ceilings).toFixed(2)}× [${Math.min(...ceilings).toFixed(2)}–${Math.max(...ceilings).toFixed(2)}] | ${peak.toFixed(0)} | ${perWorker.toFixed(2)}× |`,
      );
    }
    rows.push(
      `\nFixed overhead (cloudmill on a tiny input, ${WORKERS} threads started): ${fixed.toFixed(0)} MB peak RSS. Results of cloudmill ${ok ? "agree" : "DISAGREE"} with the naive program's (stats: to 1e-9 of scale) and the baseline's for every op and run.`,
    );
    emit(...rows);
  }
  if (run("anchors")) {
    process.stderr.write("kernels against wc, mawk and DuckDB…");
    const kernels = await kernelsAgainstAnchors({
      cli: path.join(root, "bin", "cloudmill.js"),
      workers: WORKERS,
      repeats: REPEATS,
      text,
      numbers,
    });
    if (!kernels.ok) ok = false;
    emit(`\nKernels against the tools labs trust, whole commands (${REPEATS} rounds, alternating):\n`, ...kernels.rows);
  }
  if (run("startup")) {
    process.stderr.write("start-up…\n");
    emit(`\nStart-up, whole commands (${REPEATS} alternating runs each):\n`, ...(await startUp(tiny)));
  }
  if (run("items")) {
    process.stderr.write("a task over items…\n");
    emit(`\nA lab's task over ${ITEMS} items (${REPEATS} alternating runs each):\n`, ...(await taskThroughput(path.dirname(tiny))));
  }
  /** What the sections that run the CLI against a tool share. */
  const cliBench = { dir, cli: path.join(root, "bin", "cloudmill.js"), seed: SEED, workers: WORKERS };
  if (run("groupby")) {
    process.stderr.write("groupby of wide decimals…");
    const rows = Number(process.env.BENCH_GROUPBY_ROWS ?? 500_000);
    const grouped = await groupbyWide({ ...cliBench, repeats: REPEATS, rows });
    if (!grouped.ok) ok = false;
    emit(`\ngroupby with a value column of wide decimals (${REPEATS} rounds, alternating):\n`, ...grouped.rows);
  }
  if (run("csv")) {
    process.stderr.write("csv with quoted newlines…\n");
    emit(
      `\nCSV whose quoted fields hold newlines, against the same data without them (${REPEATS} alternating runs each):\n`,
      ...(await csvMultiline({ ...cliBench, mb: Number(process.env.BENCH_CSV_MB ?? 128), repeats: REPEATS, chunk: CHUNK })),
    );
  }
  if (run("flood")) {
    process.stderr.write("words built to collide…\n");
    const flood = await hashFlooding({ dir, cli: cliBench.cli, words: Number(process.env.BENCH_FLOOD_WORDS ?? 200_000), repeats: REPEATS });
    if (!flood.ok) ok = false;
    emit("\nwordcount over words built to share one hash (lib/core/ops/wordKernel.wat keys its hash):\n", ...flood.rows);
  }
  if (run("compressed")) {
    process.stderr.write("compressed inputs…\n");
    emit(
      `\nCompressed inputs: count over the same text as gzip, zstd and BGZF:\n`,
      ...(await compressedInputs({ ...cliBench, mb: Number(process.env.BENCH_COMPRESSED_MB ?? 1024), repeats: Math.min(REPEATS, 3) })),
    );
  }
  if (run("estimate")) {
    process.stderr.write("estimate accuracy…\n");
    const estimated = await estimateAccuracy({
      root,
      dir,
      sizesMB: (process.env.BENCH_ESTIMATE_MB ?? "100,1024").split(",").map(Number),
    });
    emit(
      "\ncloudmill estimate's wall time for a local run against cloudmill run's (calibrated on 8 MiB; goal within 30 %):\n",
      ...estimated.map(formatEstimateRow),
    );
  }
  if (run("sort")) {
    process.stderr.write("sort of numbers…\n");
    const sorted = await sortNumbers({ ...cliBench, mb: Number(process.env.BENCH_SORT_MB ?? 1024) });
    emit("\nsort of numbers against GNU sort -g (one run each):\n", ...sorted.rows);
    if (run("scale")) {
      process.stderr.write("the 1 TB study…\n");
      emit(
        "\nA 1 TB sort on the stack, modelled from the code's constants and this run's sort throughput (docs/scale.md):\n",
        execFileSync(
          process.execPath,
          ["--expose-gc", "--max-old-space-size=1024", path.join(here, "scale.js"), String(sorted.cpuSecondsPerMiB)],
          {
            encoding: "utf8",
            maxBuffer: 1 << 24,
          },
        ).trimEnd(),
      );
    }
  }

  if (run("chunks")) {
    // Memory follows neither the input's size nor the chunk size: chunks are streamed in blocks.
    const rows = [`\nwordcount peak RSS by chunk size (same input, ${WORKERS} workers, one run each):\n`];
    rows.push("| chunk size | chunks | peak RSS (MB) | above fixed overhead, per worker (MB) | ÷ chunk size |");
    rows.push("|---|---|---|---|---|");
    const textSize = (await stat(text)).size;
    for (const chunk of ["4MiB", "16MiB", "64MiB"]) {
      process.stderr.write(`wordcount at ${chunk} chunks…\n`);
      const m = once("engine", "wordcount", text, chunk);
      const above = (m.maxRssMB - fixed) / WORKERS;
      rows.push(
        `| ${chunk} | ${Math.ceil(textSize / bytesOf(chunk))} | ${m.maxRssMB.toFixed(0)} | ${above.toFixed(0)} | ${(above / (bytesOf(chunk) / MiB)).toFixed(2)}× |`,
      );
    }
    emit(...rows);
  }
  if (run("splitter")) {
    process.stderr.write("emulated cloud: splitter requests…\n");
    emit("\nSplitter requests per object (emulated cloud, real SDK):\n", ...(await splitterRequests()));
  }
  if (run("many")) {
    process.stderr.write("emulated cloud: a prefix of many small objects…\n");
    emit(
      "\nA prefix of many small objects as one job (emulated cloud):\n",
      ...(await manyObjects(Number(process.env.BENCH_OBJECTS ?? 100_000), WORKERS)),
    );
  }
  if (run("keyed")) {
    process.stderr.write("emulated cloud: a keyed job of many chunks and keys…\n");
    emit(
      "\nA keyed job (distinct) of many chunks and a million keys (emulated cloud):\n",
      ...(await keyedAtScale(Number(process.env.BENCH_KEYED_CHUNKS ?? 10_000), Number(process.env.BENCH_KEYED_KEYS ?? 1_000_000), WORKERS)),
    );
  }
  if (run("first-result")) {
    process.stderr.write("emulated cloud: upload to result, 1 MB and 100 MB…\n");
    const large = await generateText(dir, 100_000_000, SEED + 11);
    const small = await headOf(large, 1_000_000);
    emit(
      "\nUpload to result in the emulated cloud (wordcount), against `cloudmill run` on the same file:\n",
      ...(await uploadToResult(
        [
          { file: small, label: "1 MB" },
          { file: large, label: "100 MB" },
        ],
        WORKERS,
      )),
    );
  }
  if (run("tasks")) {
    process.stderr.write("emulated cloud: tasks per second…\n");
    emit(
      "\nTasks per second through the emulated cloud (count op, tiny chunks):\n",
      ...(await tasksPerSecond(Number(process.env.BENCH_TASKS ?? 2000), WORKERS)),
    );
  }
  if (!ok) process.exitCode = 1;
};

await main();
