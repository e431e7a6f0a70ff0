/**
 * The format an input's name gives, compressed or not, and params given for a format the job
 * does not read: a `.csv.gz` is CSV (a header and columns), and `column=` on lines is refused,
 * where it used to be ignored and the job read the CSV as lines.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { defineOp } from "../../lib/core/ops/defineOp.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { pythonCsvRows } from "../helpers/csv.js";

let dir: string;
const rows = Array.from({ length: 3000 }, (_, i) => `s${i % 7}\t${(i * 37) % 101}.${i % 10}`);

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-format-name-"));
  await writeFile(path.join(dir, "m.tsv"), `station\ttemp\n${rows.join("\n")}\n`);
  await writeFile(path.join(dir, "m.csv"), `station,temp\n${rows.map((r) => r.replace("\t", ",")).join("\n")}\n`);
  execFileSync("gzip", ["-k", path.join(dir, "m.csv")]);
  execFileSync("zstd", ["-q", path.join(dir, "m.tsv"), "-o", path.join(dir, "m.tsv.zst")]);
  execFileSync("sh", ["-c", `bgzip -c '${path.join(dir, "m.csv")}' > '${path.join(dir, "m.csv.bgz")}'`]);
  await writeFile(path.join(dir, "e.jsonl"), '{"temp": 1}\n{"temp": 2}\n');
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

/** A job on two task threads, or in this process (workers 0) for an op defined here. */
const run = (registry: OpRegistry, input: string, op: string, params: Record<string, unknown> = {}, workers = 2) =>
  runLocal({ spec: parseJobSpec({ op, inputs: [path.join(dir, input)], params, chunkSize: 4096 }), registry, workers });

/** Python's exact sum of the temp column, as a double, and the row count. */
const pythonTemps = (file: string, separator: string): { count: number; sum: number } => {
  const values = pythonCsvRows(path.join(dir, file), separator).map((r) => r[1]!);
  const sum = execFileSync(
    "python3",
    ["-c", "import sys\nfrom decimal import Decimal\nprint(float(sum(Decimal(x) for x in sys.argv[1:])))", ...values],
    {
      encoding: "utf8",
    },
  );
  return { count: values.length, sum: Number(sum) };
};

describe("a compressed input's name gives its format", () => {
  it.each([
    ["m.csv.gz", ","],
    ["m.csv.bgz", ","],
    ["m.tsv.zst", "\t"],
  ])("%s is read as CSV with its header, as Python reads the plain file", async (file, separator) => {
    const expected = pythonTemps(file.replace(/\.[^.]+$/, ""), separator);
    const stats = (await run(new OpRegistry(), file, "stats", { column: "temp" })).result as { count: number; sum: number };
    expect(stats.count).toBe(expected.count);
    expect(stats.sum).toBe(expected.sum);
    // Read as lines, the header would be a record of its own.
    expect((await run(new OpRegistry(), file, "count")).result).toEqual({ records: expected.count });
  });
});

describe("a folder of CSV parts beside an empty _SUCCESS marker (Spark's, Hadoop's)", () => {
  it("is read as CSV: the marker holds no record in any format, so it does not make the parts lines", async () => {
    const folder = path.join(dir, "spark-out");
    await mkdir(folder, { recursive: true });
    await writeFile(path.join(folder, "part-00000.csv"), "k,v\na,1\nb,2\n");
    await writeFile(path.join(folder, "part-00001.csv"), "k,v\nc,3\n");
    await writeFile(path.join(folder, "_SUCCESS"), "");
    const expected = ["part-00000.csv", "part-00001.csv"].reduce((n, f) => n + pythonCsvRows(path.join(folder, f), ",").length, 0);
    const { result } = await runLocal({ spec: parseJobSpec({ op: "count", inputs: [folder] }), registry: new OpRegistry(), workers: 0 });
    expect(result).toEqual({ records: expected });
    // Inputs that are all empty are named by their names all the same: an empty .csv is CSV (no values).
    const empty = path.join(dir, "spark-empty");
    await mkdir(empty, { recursive: true });
    for (const f of ["part-00000.csv", "part-00001.csv"]) await writeFile(path.join(empty, f), "");
    const stats = await runLocal({
      spec: parseJobSpec({ op: "stats", inputs: [empty], params: { column: "v" } }),
      registry: new OpRegistry(),
      workers: 0,
    });
    expect(stats.result).toMatchObject({ count: 0 });
  });
});

describe("inputs whose names give different formats", () => {
  it("are refused, naming two that differ, where reading all as lines would count a CSV's header and quoted newlines", async () => {
    const folder = path.join(dir, "mixed");
    await mkdir(folder, { recursive: true });
    await writeFile(path.join(folder, "a.csv"), 'k,note\nx,"two\nlines"\n');
    await writeFile(path.join(folder, "b.txt"), "one\ntwo\n");
    const count = (inputs: string[], format?: "lines") =>
      runLocal({ spec: parseJobSpec({ op: "count", inputs, ...(format ? { format } : {}) }), registry: new OpRegistry(), workers: 0 });
    const error = await count([folder]).then(
      () => undefined,
      (e: unknown) => e as CloudmillError,
    );
    expect(error).toMatchObject({
      code: ErrorCode.INVALID_SPEC,
      message: expect.stringMatching(/^the inputs name different formats: .*a\.csv is csv, .*b\.txt names none: set one \(--format\)/),
    });
    const other = await count([path.join(dir, "m.csv"), path.join(dir, "e.jsonl")]).catch((e: unknown) => e as CloudmillError);
    expect(other).toMatchObject({ message: expect.stringMatching(/m\.csv is csv, .*e\.jsonl is jsonl/) });
    // With the format set, every input is read so: wc -l's count of lines.
    const lines = Number(execFileSync("sh", ["-c", `cat "$1"/* | wc -l`, "sh", folder], { encoding: "utf8" }));
    expect((await count([folder], "lines")).result).toEqual({ records: lines });
    // An op that reads none of the named formats reads all as its own, as before.
    const words = await runLocal({ spec: parseJobSpec({ op: "wordcount", inputs: [folder] }), registry: new OpRegistry(), workers: 0 });
    expect(words.result).toMatchObject({
      total: Number(execFileSync("sh", ["-c", `cat "$1"/* | wc -w`, "sh", folder], { encoding: "utf8" })),
    });
  });
});

describe("a folder's hidden files (names starting with . or _, as Hadoop leaves them out)", () => {
  it("are left out and counted, so a Spark folder with a committer's _SUCCESS, .crc files and _temporary/ reads as its parts", async () => {
    const folder = path.join(dir, "spark-s3a");
    await mkdir(path.join(folder, "_temporary", "0"), { recursive: true });
    await writeFile(path.join(folder, "part-00000.csv"), 'k,v\na,1\nb,"2\n3"\n');
    await writeFile(path.join(folder, "part-00001.csv"), "k,v\nc,4\n");
    await writeFile(path.join(folder, "_SUCCESS"), '{"name":"s3a committer","filenames":["part-00000.csv"]}');
    await writeFile(path.join(folder, ".part-00000.csv.crc"), Buffer.from([0x63, 0x72, 0x63, 0, 1, 2, 3]));
    await writeFile(path.join(folder, "_temporary", "0", "part-00002.csv"), "k,v\nz,9\n");
    const expected = ["part-00000.csv", "part-00001.csv"].reduce((n, f) => n + pythonCsvRows(path.join(folder, f), ",").length, 0);
    const { result, status } = await runLocal({
      spec: parseJobSpec({ op: "count", inputs: [folder] }),
      registry: new OpRegistry(),
      workers: 0,
    });
    expect(result).toEqual({ records: expected });
    expect(status.hidden).toEqual({
      count: 3,
      first: [".part-00000.csv.crc", "_SUCCESS", "_temporary"].map((f) => path.join(folder, f)),
    });
    // Named on its own, a hidden file is read: one line each (neither ends in a newline).
    const named = await runLocal({
      spec: parseJobSpec({
        op: "count",
        format: "lines",
        inputs: [path.join(folder, "_SUCCESS"), path.join(folder, ".part-00000.csv.crc")],
      }),
      registry: new OpRegistry(),
      workers: 0,
    });
    expect(named.result).toEqual({ records: 2 });
    expect(named.status.hidden).toBeUndefined();
  });
});

describe("a param for a format the job does not read", () => {
  const refusal = async (promise: Promise<unknown>): Promise<CloudmillError> => {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CloudmillError);
    return error as CloudmillError;
  };

  it("is refused when the job reads lines or numbers, naming the param and the format to set", async () => {
    await writeFile(path.join(dir, "m.txt"), "1\n2\n");
    const error = await refusal(run(new OpRegistry(), "m.txt", "stats", { column: "temp" }));
    expect(error.code).toBe(ErrorCode.INVALID_SPEC);
    expect(error.message).toMatch(/param column is for csv input, but the input is read as numbers: set format csv/);
    const separator = await refusal(run(new OpRegistry(), "m.txt", "count", { separator: ";" }));
    expect(separator.message).toMatch(/param separator is for csv input, but the input is read as lines/);
  });

  it("is refused when the job reads the other of CSV and JSONL", async () => {
    expect((await refusal(run(new OpRegistry(), "e.jsonl", "stats", { field: "temp", header: false }))).message).toMatch(
      /param header is for csv input, but the input is read as jsonl: drop header/,
    );
    expect((await refusal(run(new OpRegistry(), "m.csv", "stats", { column: "temp", field: "temp" }))).message).toMatch(
      /param field is for jsonl input, but the input is read as csv/,
    );
  });

  it("is a lab op's own when it declares one of those names", async () => {
    const registry = new OpRegistry();
    registry.register(
      defineOp({
        name: "field-lengths",
        format: "lines",
        params: z.object({ field: z.string() }),
        map: (line: unknown, params: { field: string }) => `${params.field}:${String(line)}`.length,
        combine: (a: number, b: number) => a + b,
      }),
    );
    expect((await run(registry, "m.txt", "field-lengths", { field: "ab" }, 0)).result).toBe(2 * "ab:1".length);
    expect((await refusal(run(registry, "m.txt", "field-lengths", { field: "ab", header: true }, 0))).message).toMatch(
      /param header is for csv input, but the input is read as lines/,
    );
  });
});
