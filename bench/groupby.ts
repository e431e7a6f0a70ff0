/**
 * `groupby` with a value column of wide decimals (exponents -30 to 30, up to 20 significant
 * digits, signs mixed): the exact sums grow past 60 digits, so what a combine costs shows. Two
 * anchors in the same rounds, each a whole command: cloudmill's `stats` over the same column of
 * the same file (the same parsing and exact sums, one group, no combine per record), and DuckDB's
 * GROUP BY in doubles. Ratios are groupby's wall over the anchor's, the median of the rounds'.
 * Every round's answer is checked: per key, count, min and max equal DuckDB's and sum near it;
 * over all keys, the count, min and max equal `stats`'.
 *
 * Alone: `npm run build && BENCH_ONLY=groupby node dist/bench/run.js` (BENCH_GROUPBY_ROWS,
 * default 500000; BENCH_SEED, BENCH_WORKERS, BENCH_REPEATS as in run.ts).
 */
import { spawnSync } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { once } from "node:events";
import { readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { prng } from "../lib/dev/prng.js";

export interface GroupbyBench {
  readonly dir: string;
  readonly cli: string;
  readonly seed: number;
  readonly workers: number;
  readonly repeats: number;
  readonly rows: number;
}

interface Group {
  count: number;
  sum: number;
  min: number | null;
  max: number | null;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const KEYS = 16;

/** `k,x` rows: 16 keys, wide decimals (1 in 100 blank: a record with no number), cached by seed and size. */
const wideCsv = async (dir: string, rows: number, seed: number): Promise<string> => {
  const file = path.join(dir, `groupby-wide-${rows}-${seed}.csv`);
  if (existsSync(file)) return file;
  const next = prng(seed);
  const digits = (n: number): string => {
    let s = "";
    for (let i = 0; i < n; i++) s += Math.floor(next() * 10);
    return s;
  };
  const out = createWriteStream(`${file}.tmp`);
  let text = "k,x\n";
  for (let i = 0; i < rows; i++) {
    const sign = next() < 0.5 ? "-" : "";
    const x =
      next() < 0.01 ? "" : `${sign}${1 + Math.floor(next() * 9)}.${digits(Math.floor(next() * 20))}e${Math.floor(next() * 61) - 30}`;
    text += `k${Math.floor(next() * KEYS)},${x}\n`;
    if (text.length > 1 << 20) {
      if (!out.write(text)) await once(out, "drain");
      text = "";
    }
  }
  out.end(text);
  await once(out, "finish");
  await rename(`${file}.tmp`, file);
  return file;
};

const timed = (args: readonly string[]): { ms: number; stdout: string } => {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, args, { encoding: "utf8", maxBuffer: 1 << 26 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`node ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return { ms, stdout: r.stdout };
};

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** groupby's rows from its parts, by key. */
const groupsOf = async (manifest: string): Promise<Map<string, Group>> => {
  const { parts } = JSON.parse(manifest) as { parts: { key: string }[] };
  const groups = new Map<string, Group>();
  for (const part of parts) {
    for (const line of (await readFile(part.key, "utf8")).split("\n")) {
      if (line === "") continue;
      const row = JSON.parse(line) as { key: string; count: number; sum: number; min: number | null; max: number | null };
      groups.set(row.key, { count: row.count, sum: row.sum, min: row.min, max: row.max });
    }
  }
  return groups;
};

export const groupbyWide = async (b: GroupbyBench): Promise<{ rows: string[]; ok: boolean }> => {
  const csv = await wideCsv(b.dir, b.rows, b.seed);
  const outDir = path.join(b.dir, "groupby-wide-out");
  const W = String(b.workers);
  const run = ["run", csv, "--workers", W, "--no-progress"];
  const commands = {
    stats: () => timed([b.cli, ...run, "--op", "stats", "--format", "csv", "-p", "column=x"]),
    groupby: () => timed([b.cli, ...run, "--op", "groupby", "-p", "key=k", "-p", "value=x", "--out-dir", outDir]),
    duckdb: () => timed([path.join(here, "duckdb.js"), "groupby", csv, W]),
  };
  const runs: Record<keyof typeof commands, { ms: number; stdout: string }[]> = { stats: [], groupby: [], duckdb: [] };
  const wrong: string[] = [];
  for (let i = 0; i < b.repeats; i++) {
    process.stderr.write(` ${i + 1}/${b.repeats}`);
    await rm(outDir, { recursive: true, force: true });
    for (const [name, command] of Object.entries(commands) as [keyof typeof commands, () => { ms: number; stdout: string }][])
      runs[name].push(command());
    const groups = await groupsOf(runs.groupby[i]!.stdout);
    const duck = new Map((JSON.parse(runs.duckdb[i]!.stdout) as [string, Group][]).map(([k, g]) => [k, g]));
    const stats = JSON.parse(runs.stats[i]!.stdout) as Group;
    const n = [...groups.values()].reduce((s, g) => s + g.count, 0);
    const values = [...duck.values()].reduce((s, g) => s + g.count, 0);
    const mins = [...groups.values()].map((g) => g.min ?? Infinity);
    const maxes = [...groups.values()].map((g) => g.max ?? -Infinity);
    if (n !== b.rows || values !== stats.count || Math.min(...mins) !== stats.min || Math.max(...maxes) !== stats.max)
      wrong.push(`round ${i + 1}: groupby's ${n} rows, min and max against stats ${JSON.stringify(stats)}`);
    const scale = Math.max(Math.abs(stats.min ?? 0), Math.abs(stats.max ?? 0)) * b.rows;
    for (const [k, d] of duck) {
      const g = groups.get(k);
      // DuckDB adds doubles, cloudmill the decimals exactly: sums agree to 1e-9 of n·max|x|.
      if (!g || g.min !== d.min || g.max !== d.max || !(Math.abs(g.sum - d.sum) <= 1e-9 * scale))
        wrong.push(`round ${i + 1}: key ${k}: groupby ${JSON.stringify(g)} vs DuckDB ${JSON.stringify(d)}`);
    }
    if (duck.size !== groups.size) wrong.push(`round ${i + 1}: ${groups.size} keys, DuckDB ${duck.size}`);
  }
  process.stderr.write("\n");
  const ms = (name: keyof typeof commands) => median(runs[name].map((r) => r.ms));
  const row = (anchor: keyof typeof commands, label: string): string => {
    const ratios = runs.groupby.map((r, i) => r.ms / runs[anchor][i]!.ms);
    return (
      `| ${label} | ${ms(anchor).toFixed(0)} | ${ms("groupby").toFixed(0)} | ${median(ratios).toFixed(2)}× ` +
      `[${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}] |`
    );
  };
  return {
    rows: [
      `| anchor | anchor wall (ms) | groupby wall (ms, --workers ${W}) | groupby ÷ anchor [range] |`,
      "|---|---|---|---|",
      row("stats", "cloudmill `stats -p column=x`, same file (one group)"),
      row("duckdb", `DuckDB, ${W} threads, \`GROUP BY k\` in doubles`),
      "",
      `${b.rows} rows, ${KEYS} keys, values 1e-30 to 1e30 with up to 20 digits. Answers ` +
        (wrong.length
          ? `DISAGREE: ${wrong.slice(0, 5).join("; ")}`
          : "agree with both anchors (count, min, max exactly; DuckDB's sums to 1e-9)."),
    ],
    ok: wrong.length === 0,
  };
};
