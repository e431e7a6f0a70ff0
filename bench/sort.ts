/**
 * `sort` of numbers against GNU `sort -g --parallel=2 -S 50%` on the same file, in the same
 * run: wall time, peak RSS (GNU time's maximum resident set) and the outputs compared byte for
 * byte (the parts concatenated in order against sort's output).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { generateNumbers } from "./generate.js";

export interface SortBenchOptions {
  readonly dir: string;
  readonly cli: string;
  readonly mb: number;
  readonly seed: number;
  readonly workers: number;
}

const MiB = 1024 * 1024;

/** Wall seconds and peak RSS (MB) of a shell command, by GNU time. */
const timed = (cmd: string): { seconds: number; rssMB: number } => {
  const out = execFileSync("sh", ["-c", `/usr/bin/time -f '%e %M' sh -c '${cmd.replaceAll("'", "'\\''")}' 2>&1 >/dev/null | tail -1`], {
    encoding: "utf8",
    maxBuffer: 1 << 26,
  });
  const [seconds, kib] = out.trim().split(/\s+/).map(Number);
  return { seconds: seconds!, rssMB: kib! / 1024 };
};

/** The comparison's table, and the CPU seconds per MiB the sort took (wall × threads: an upper bound). */
export const sortNumbers = async (o: SortBenchOptions): Promise<{ rows: string[]; cpuSecondsPerMiB: number }> => {
  const file = await generateNumbers(o.dir, o.mb * MiB, o.seed);
  const lines = Number(execFileSync("wc", ["-l", file], { encoding: "utf8" }).trim().split(/\s+/)[0]);
  const outDir = path.join(o.dir, "sort-parts");
  const gnuOut = path.join(o.dir, "sort-gnu.txt");
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const gnu = timed(`LC_ALL=C sort -g --parallel=2 -S 50% '${file}' > '${gnuOut}'`);
  const result = path.join(o.dir, "sort-result.json");
  const mill = timed(
    `node '${o.cli}' run '${file}' --op sort --workers ${o.workers} --out-dir '${outDir}' --no-progress --out '${result}'`,
  );
  const { spilledBytes, partitions } = JSON.parse(await readFile(result, "utf8")) as { spilledBytes: number; partitions: number };
  const parts = (await readdir(outDir)).filter((f) => f.startsWith("part-")).sort();
  const same =
    execFileSync(
      "sh",
      ["-c", `cat ${parts.map((p) => `'${path.join(outDir, p)}'`).join(" ")} | cmp -s - '${gnuOut}' && echo same || echo DIFFERENT`],
      {
        encoding: "utf8",
      },
    ).trim() === "same";
  const size = (await stat(file)).size;
  rmSync(outDir, { recursive: true, force: true });
  rmSync(gnuOut, { force: true });
  if (!same) process.exitCode = 1;
  const cpuSecondsPerMiB = (mill.seconds * o.workers) / (size / MiB);
  const rows = [
    `${(size / MiB).toFixed(0)} MiB, ${lines.toLocaleString("en")} lines; ${partitions} partitions, ${(spilledBytes / MiB).toFixed(0)} MiB spilled; ` +
      `output ${same ? "identical to" : "DIFFERENT from"} GNU sort's`,
    "| | wall (s) | × GNU sort | peak RSS (MB) |",
    "|---|---|---|---|",
    `| GNU sort -g --parallel=2 -S 50% | ${gnu.seconds.toFixed(1)} | 1.00 | ${gnu.rssMB.toFixed(0)} |`,
    `| cloudmill run --op sort (${o.workers} threads) | ${mill.seconds.toFixed(1)} | ${(mill.seconds / gnu.seconds).toFixed(2)} | ${mill.rssMB.toFixed(0)} |`,
  ];
  return { rows, cpuSecondsPerMiB };
};
