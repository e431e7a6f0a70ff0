/**
 * `sort` on the local engine: the parts concatenated in order equal GNU `sort -g` (numbers) or
 * `LC_ALL=C sort` (lines) of the same files, byte for byte, at chunk sizes from a few runs to
 * more runs than one merge takes at once; partitions hold about equal shares; bad input is refused.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseJobSpec, type JobSpecInput } from "../../lib/core/job/spec.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import type { KeyedResult } from "../../lib/core/pipeline/reduceTask.js";
import { prng } from "../../lib/dev/prng.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { Manifest, type ReduceTask } from "../../lib/core/job/manifest.js";
import { manifestKey, outputPartKey, partKey } from "../../lib/core/keys.js";
import { silentLogger } from "../../lib/core/log.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { countingStore } from "../helpers/countingStore.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { sortedPieces, type SortSpill } from "../../lib/core/pipeline/sortStage.js";
import { RunBuilder } from "../../lib/core/shuffle/sortRun.js";

let dir: string;
let numbers: string;
let text: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-sort-"));
  const next = prng(99);
  // Numbers as people write them: integers, decimals, exponents, signs, ties spelled two ways
  // (1.5 and 1.50, 0 and -0), blank lines, CRLF endings, and a last line with no newline.
  const lines: string[] = [];
  for (let i = 0; i < 30_000; i++) {
    const r = next();
    lines.push(
      r < 0.01
        ? ""
        : r < 0.02
          ? (["-0", "0", "+0", "0.0"] as const)[i % 4]
          : r < 0.03
            ? (["1.5", "1.50", " 1.5", "15e-1"] as const)[i % 4]
            : r < 0.05
              ? `${(next() * 1e300).toExponential(6)}\r`
              : r < 0.5
                ? String(Math.floor(next() * 2000) - 1000)
                : String((next() - 0.5) * 1e6),
    );
  }
  // The extremes of doubles: subnormals either side of zero, the largest magnitudes.
  lines.push("5e-324", "-5e-324", "-1e-310", "1e-310", "1.7976931348623157e308", "-1.7976931348623157e308", "-0.0");
  numbers = path.join(dir, "numbers.txt");
  await writeFile(numbers, lines.join("\n"));
  // Text whose byte order differs from UTF-16 order, duplicates, CRLF and empty lines.
  const words = ["apple", "Apple", "é", "\uff01", "😀", "", "a\tb", "zeta\r", "日本"];
  text = path.join(dir, "text.txt");
  await writeFile(text, `${Array.from({ length: 20_000 }, (_, i) => `${words[Math.floor(next() * words.length)]}${i % 7}`).join("\n")}\n`);
}, 30_000);

afterAll(async () => rm(dir, { recursive: true, force: true }));

const sorted = (file: string, numeric: boolean): Buffer =>
  execFileSync("sh", ["-c", `LC_ALL=C sort ${numeric ? "-g " : ""}"$1"`, "sh", file], { maxBuffer: 1 << 30 });

const runSort = async (spec: Omit<JobSpecInput, "op">, workers: number, outDir: string) => {
  const { result, status } = await runLocal({ spec: parseJobSpec({ op: "sort", ...spec }), registry: new OpRegistry(), workers, outDir });
  const manifest = result as KeyedResult;
  const parts = await Promise.all(manifest.parts.map((p) => readFile(p.key)));
  return { manifest, parts, status };
};

describe("sort on the local engine", () => {
  it.each([
    { chunkSize: 1 << 20, partitions: 1, workers: 0 },
    { chunkSize: 16 * 1024, partitions: 4, workers: 2 },
    // About 250 runs: merged 64 at a time into longer runs first.
    { chunkSize: 1024, partitions: 3, workers: 2 },
  ])("numbers: the parts in order are sort -g's output (chunks of $chunkSize bytes, $partitions partitions)", async (c) => {
    const outDir = path.join(dir, `numbers-${c.chunkSize}`);
    const { manifest, parts, status } = await runSort(
      { inputs: [numbers], chunkSize: c.chunkSize, partitions: c.partitions },
      c.workers,
      outDir,
    );
    expect(status.state).toBe("succeeded");
    expect(manifest.parts.map((p) => path.basename(p.key))).toEqual(
      Array.from({ length: c.partitions }, (_, i) => `part-${String(i).padStart(5, "0")}.txt`),
    );
    const whole = Buffer.concat(parts);
    expect(whole.equals(sorted(numbers, true))).toBe(true);
    expect(manifest.records).toBe(30_007);
    for (const [i, p] of manifest.parts.entries()) expect(p.bytes).toBe(parts[i]!.length);
    // Splitters at the samples' quantiles: every partition within a fifth of an equal share.
    for (const p of manifest.parts) expect(Math.abs(p.records - 30_007 / c.partitions)).toBeLessThan(30_007 / c.partitions / 5);
  });

  it("a partition of more runs than one merge takes: its merged runs go when it ends, and the shuffle stays", async () => {
    const workDir = path.join(dir, "work-passes");
    const { jobId, result } = await runLocal({
      spec: parseJobSpec({ op: "sort", inputs: [numbers], chunkSize: 1024, partitions: 1 }),
      registry: new OpRegistry(),
      workers: 0,
      workDir,
      outDir: path.join(dir, "passes"),
    });
    const output = new FsBlobStore(workDir);
    const manifest = Manifest.parse(JSON.parse(await readFile(path.join(workDir, manifestKey(jobId)), "utf8")));
    expect(manifest.chunks).toBeGreaterThan(3 * 64);
    const shuffle = async () => {
      const keys: string[] = [];
      for await (const o of output.list(`_work/${jobId}/shuffle/`)) keys.push(`${o.key} ${o.size}`);
      return keys;
    };
    const before = await shuffle();
    // The reduce task again, its scratch a folder that counts what it holds.
    const scratchDir = path.join(dir, "passes-scratch");
    const disk = new FsBlobStore(scratchDir);
    const counting = countingStore(disk);
    const scratch = counting.store;
    await rm(path.join(workDir, partKey(jobId, manifest.chunks)));
    const task: ReduceTask = { v: 1, jobId, reduce: { partition: 0, chunks: manifest.chunks }, job: manifest.job };
    const deps = { output, inputStore: () => new FsBlobStore("/"), registry: new OpRegistry(), log: silentLogger, scratch };
    const outcome = await runTask(deps, task);
    expect(outcome.kind).toBe("done");
    const { spilledBytes } = (outcome as { partial: { spilledBytes: number } }).partial;
    expect(spilledBytes).toBeGreaterThan(0);
    expect(counting.held()).toBe(0);
    // Its output is the first run's, byte for byte, and the shuffle it read is all still there,
    // also when the output store itself is the scratch (as on the local engine).
    const first = await readFile((result as KeyedResult).parts[0]!.key);
    expect((await readFile(path.join(workDir, outputPartKey(jobId, 0, ".txt")))).equals(first)).toBe(true);
    await rm(path.join(workDir, partKey(jobId, manifest.chunks)));
    expect((await runTask({ ...deps, scratch: undefined }, task)).kind).toBe("done");
    expect(await shuffle()).toEqual(before);
    expect((await readFile(path.join(workDir, outputPartKey(jobId, 0, ".txt")))).equals(first)).toBe(true);
  });

  it("merging in passes, removes each pass's runs once merged, never the plan's segments", async () => {
    // 40 sorted runs of lines, merged 3 at a time: merged runs are merged again, pass after pass.
    const next = prng(7);
    const store = new FsBlobStore(path.join(dir, "passes-direct"));
    const all: string[] = [];
    const segments: [string, number, number][] = [];
    for (let r = 0; r < 40; r++) {
      const lines = Array.from({ length: 200 }, () => `w${Math.floor(next() * 1e6)}`).sort((a, b) =>
        Buffer.compare(Buffer.from(a), Buffer.from(b)),
      );
      all.push(...lines);
      const body = Buffer.from(`${lines.join("\n")}\n`);
      await store.put(`runs/${r}`, body);
      segments.push([`runs/${r}`, 0, body.length]);
    }
    const disk = new FsBlobStore(path.join(dir, "passes-direct-scratch"));
    const counting = countingStore(disk);
    const scratch = counting.store;
    const deps = { output: store, inputStore: () => store, registry: new OpRegistry(), log: silentLogger, scratch };
    const spill: SortSpill = { prefix: "spill/", written: [], bytes: 0 };
    const pieces = await sortedPieces(deps, "lines", { range: { lo: null, hi: null }, segments }, spill, undefined, 3);
    const out: Buffer[] = [];
    for await (const piece of pieces) out.push(piece);
    const expected = [...all].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    expect(Buffer.concat(out).toString()).toBe(`${expected.join("\n")}\n`);
    // The passes wrote several times the input; held at once, about the input plus a merge.
    const input = segments.reduce((n, [, , end]) => n + end, 0);
    expect(spill.bytes).toBeGreaterThan(2 * input);
    expect(counting.peak()).toBeLessThan(1.5 * input);
    // What is left for its caller to remove is the last pass's, and the plan's runs are all there.
    let left = 0;
    for (const key of spill.written) left += (await disk.head(key))!.size;
    expect(left).toBe(counting.held());
    expect(spill.written.length).toBeLessThanOrEqual(3);
    // Also where scratch is the store the plan's runs are in (the local engine's), they all stay.
    const again: SortSpill = { prefix: "spill-again/", written: [], bytes: 0 };
    const { scratch: _, ...unscratched } = deps;
    const pieces2 = await sortedPieces(unscratched, "lines", { range: { lo: null, hi: null }, segments }, again, undefined, 3);
    const out2: Buffer[] = [];
    for await (const piece of pieces2) out2.push(piece);
    expect(Buffer.concat(out2).equals(Buffer.concat(out))).toBe(true);
    for (const [key, , end] of segments) expect((await store.head(key))?.size).toBe(end);
  });

  it("lines: the parts in order are LC_ALL=C sort's output, multibyte and CRLF lines included", async () => {
    const { parts } = await runSort({ inputs: [text], format: "lines", chunkSize: 8192, partitions: 5 }, 2, path.join(dir, "text-out"));
    expect(Buffer.concat(parts).equals(sorted(text, false))).toBe(true);
  });

  it("many inputs, small ones packed into one task each, sort as one", async () => {
    const files: string[] = [];
    for (let i = 0; i < 30; i++) {
      const f = path.join(dir, `small-${i}.txt`);
      await writeFile(f, `${Array.from({ length: 50 }, (_, j) => String((i * 7919 + j * 104729) % 1000)).join("\n")}\n`);
      files.push(f);
    }
    const { parts } = await runSort({ inputs: files, chunkSize: 4096, partitions: 2 }, 0, path.join(dir, "packed-out"));
    const expected = execFileSync("sh", ["-c", 'cat "$@" | LC_ALL=C sort -g', "sh", ...files], { maxBuffer: 1 << 30 });
    expect(Buffer.concat(parts).equals(expected)).toBe(true);
  });

  it("refuses a line that is not a number, naming file and line", async () => {
    const file = path.join(dir, "bad.txt");
    await writeFile(file, "3\n1\nabc\n2\n");
    await expect(runSort({ inputs: [file] }, 0, path.join(dir, "bad-out"))).rejects.toThrow(
      /bad\.txt:3 \(byte 4\): expected a number, got "abc"/,
    );
  });

  it("refuses a number a double cannot hold (it would sort as 0 or infinity), naming its line", async () => {
    const file = path.join(dir, "tiny.txt");
    await writeFile(file, "1\n1e-400\n");
    await expect(runSort({ inputs: [file] }, 0, path.join(dir, "tiny-out"))).rejects.toThrow(
      /tiny\.txt:2 \(byte 2\): number out of range: "1e-400"/,
    );
  });

  it("lines longer than a sample's key, sharing long prefixes, sort as LC_ALL=C sort does; samples stay small", async () => {
    const next = prng(5);
    const heads = ["\x01".repeat(300), "\x01".repeat(127), "a".repeat(200), "a".repeat(128)];
    const lines = Array.from(
      { length: 3000 },
      (_, i) => `${heads[i % 4]}${Math.floor(next() * 1e6)}${i % 11 === 0 ? "x".repeat(40_000) : ""}`,
    );
    const file = path.join(dir, "long.txt");
    await writeFile(file, `${lines.join("\n")}\n`);
    for (const [chunkSize, partitions] of [
      [1 << 20, 7],
      [64 * 1024, 3],
    ] as const) {
      const { parts } = await runSort({ inputs: [file], format: "lines", chunkSize, partitions }, 2, path.join(dir, `long-${chunkSize}`));
      expect(Buffer.concat(parts).equals(sorted(file, false))).toBe(true);
    }
    // Lines that share 130 bytes, then differ: samples set apart, partitions even.
    const shared = Array.from({ length: 40_000 }, () => `${"/data/run/".repeat(13)}${Math.floor(next() * 1e9)}`);
    const sharedFile = path.join(dir, "shared.txt");
    await writeFile(sharedFile, `${shared.join("\n")}\n`);
    // Starts of 120 to 140 bytes around the cut, so bounds begin with cut samples.
    const around = Array.from({ length: 40_000 }, () => `${"b".repeat(120 + Math.floor(next() * 21))}${Math.floor(next() * 100)}`);
    const aroundFile = path.join(dir, "around.txt");
    await writeFile(aroundFile, `${around.join("\n")}\n`);
    for (const [file, count] of [
      [sharedFile, shared.length],
      [aroundFile, around.length],
    ] as const) {
      for (const chunkSize of [64 * 1024, 1 << 20]) {
        const { parts, manifest } = await runSort(
          { inputs: [file], format: "lines", chunkSize, partitions: 8 },
          2,
          path.join(dir, `even-${chunkSize}`),
        );
        expect(Buffer.concat(parts).equals(sorted(file, false)), `${file} at ${chunkSize}`).toBe(true);
        if (file === sharedFile) for (const p of manifest.parts) expect(Math.abs(p.records - count / 8)).toBeLessThan(count / 8 / 5);
      }
    }
    // A run of lines of a megabyte keeps 128 bytes of a sample, or up to 4 KiB to set it apart: never the lines.
    const builder = new RunBuilder("lines");
    for (let i = 0; i < 20; i++) builder.add(Buffer.from(`${"\x01".repeat(1 << 20)}${i}\n`), 0, (err) => expect.fail(err.message));
    const run = builder.finish();
    expect(run.samples).toHaveLength(20);
    expect(run.samples[0]![0][2]).toHaveLength(128);
    for (const [key] of run.samples) expect(key[2].length).toBeLessThanOrEqual(4096);
  });

  it("names a number out of range by its first 60 characters, not all million of them", async () => {
    const file = path.join(dir, "huge.txt");
    await writeFile(file, `1\n${"9".repeat(1_000_000)}\n`);
    const error = await runSort({ inputs: [file] }, 0, path.join(dir, "huge-out")).catch((err: Error) => err);
    expect((error as Error).message).toMatch(/huge\.txt:2 \(byte 2\): number out of range: "9{60}…"$/);
  });

  it("refuses an out dir an input folder reaches through a link, or a link to nothing, before any work", async () => {
    const data = path.join(dir, "linked-data");
    const out = path.join(dir, "linked-out");
    await mkdir(data, { recursive: true });
    await mkdir(out, { recursive: true });
    await writeFile(path.join(data, "x.txt"), "2\n1\n");
    await symlink(out, path.join(data, "results"));
    const first = await runSort({ inputs: [data] }, 0, out);
    expect(Buffer.concat(first.parts).toString()).toBe("1\n2\n");
    await expect(runSort({ inputs: [data] }, 0, out)).rejects.toThrow(/is a part in --out-dir .* \(through a link\)/);
    expect(Buffer.concat(first.parts.map((_, i) => readFileSync(first.manifest.parts[i]!.key))).toString()).toBe("1\n2\n");
    const dangling = path.join(dir, "dangling-out");
    await symlink(path.join(dir, "nowhere"), dangling);
    await expect(runSort({ inputs: [numbers] }, 0, dangling)).rejects.toThrow(/dangling-out is a symbolic link to nothing/);
  });

  it("refuses an out dir that is a file, or under one, before any work, and keeps the file", async () => {
    const file = path.join(dir, "not-a-dir");
    await writeFile(file, "kept\n");
    for (const outDir of [file, path.join(file, "sub", "dir")]) {
      await expect(runSort({ inputs: [numbers] }, 0, outDir)).rejects.toThrow(/--out-dir .* is a file, not a directory/);
    }
    expect(await readFile(file, "utf8")).toBe("kept\n");
  });

  it("refuses an out dir that cannot be made before any work, and a failed job leaves none of the folders it made", async () => {
    // Node's own recursive mkdir never returns here (/proc refuses a new folder with ENOENT).
    await expect(runSort({ inputs: [numbers] }, 0, "/proc/cloudmill-out/parts")).rejects.toThrow(
      /^--out-dir \/proc\/cloudmill-out\/parts: cannot make \/proc\/cloudmill-out: ENOENT: no such file or directory$/,
    );
    const bad = path.join(dir, "bad-numbers.txt");
    await writeFile(bad, "1\nabc\n");
    const outDir = path.join(dir, "never", "made");
    await expect(runSort({ inputs: [bad] }, 0, outDir)).rejects.toThrow(/bad-numbers\.txt:2/);
    expect(existsSync(path.join(dir, "never"))).toBe(false);
  });

  it("an empty input gives empty parts", async () => {
    const file = path.join(dir, "empty.txt");
    await writeFile(file, "");
    const { manifest, parts } = await runSort({ inputs: [file], partitions: 2 }, 0, path.join(dir, "empty-out"));
    expect(manifest.records).toBe(0);
    expect(parts.map((p) => p.length)).toEqual([0, 0]);
  });
});
