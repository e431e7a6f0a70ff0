/**
 * Keyed ops on the local engine: `groupby` equals Python's GROUP BY over the same CSV (exact
 * sums and variances) at several chunk sizes, partition counts and thread counts, chunk
 * boundaries falling inside quoted newlines; `distinct` equals `LC_ALL=C sort | uniq -c`, each
 * part in byte order; a reduce task run again, spilling, rewrites the same bytes; a lab's
 * reduce(key, values) gets each key's values at once, in input order, as Python lists them; and
 * bad input is refused.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseJobSpec, type JobSpecInput } from "../../lib/core/job/spec.js";
import { Manifest, type ReduceTask } from "../../lib/core/job/manifest.js";
import { manifestKey, outputPartKey, partKey } from "../../lib/core/keys.js";
import { silentLogger } from "../../lib/core/log.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import type { KeyedResult } from "../../lib/core/pipeline/reduceTask.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { groupby } from "../../lib/core/ops/groupby.js";
import { opsRegistry } from "../../lib/core/ops/opModules.js";
import { prng } from "../../lib/dev/prng.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { pythonGroupby } from "../helpers/csv.js";
import { ROOT } from "../helpers/devCloud.js";

let dir: string;
let csvFile: string;
let linesFile: string;

const STATIONS = ["north", "south", "east field", "a,b", 'quoted "x"', "ünïcode", "日本", "rocket 🚀", ""];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-keyed-"));
  const next = prng(42);
  const quote = (s: string): string => (/[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);
  const rows = ["station,site,temperature,note"];
  for (let i = 0; i < 3000; i++) {
    const station = STATIONS[Math.floor(next() * STATIONS.length)]!;
    const site = `s${Math.floor(next() * 40)}`;
    // Blank values count as rows, not numbers; some are large, some tiny, to exercise exact sums.
    const t = next() < 0.05 ? "" : next() < 0.02 ? "1e15" : (next() * 80 - 20).toFixed(2);
    const note = i % 7 === 0 ? `multi\nline ${i}, "q"` : i % 5 === 0 ? "" : `n${i}`;
    rows.push([quote(station), site, t, quote(note)].join(","));
  }
  csvFile = path.join(dir, "readings.csv");
  await writeFile(csvFile, `${rows.join("\n")}\n`);

  // Lines whose byte order differs from UTF-16 order, duplicates, an empty line, CRLF.
  const words = ["alpha", "beta", "\uff01bang", "😀smile", "Zeta", "", "tab\there", "alpha", "ω"];
  const lines = Array.from({ length: 5000 }, (_, i) => `${words[Math.floor(next() * words.length)]}${i % 13}`);
  linesFile = path.join(dir, "words.txt");
  await writeFile(linesFile, `${lines.join("\n")}\n`);
}, 30_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const run = (spec: Omit<JobSpecInput, "inputs"> & { inputs?: string[] }, options: { workers?: number; outDir: string }) =>
  runLocal({
    spec: parseJobSpec({ inputs: [csvFile], ...spec }),
    registry: new OpRegistry(),
    ...(options.workers !== undefined ? { workers: options.workers } : {}),
    outDir: options.outDir,
  });

const readRows = async (manifest: KeyedResult): Promise<Record<string, unknown>[][]> =>
  Promise.all(
    manifest.parts.map(async (p) =>
      (await readFile(p.key, "utf8"))
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    ),
  );

describe("groupby on the local engine", () => {
  it.each([
    { chunkSize: 997, partitions: 7, workers: 2 },
    { chunkSize: 4096, partitions: 2, workers: 0 },
    { chunkSize: 16 * 1024, partitions: 3, workers: 2 },
    { chunkSize: 1 << 24, partitions: 1, workers: 0 },
  ])("equals Python's GROUP BY: chunks of $chunkSize bytes, $partitions partitions, $workers threads", async (c) => {
    const outDir = path.join(dir, `groupby-${c.chunkSize}-${c.partitions}`);
    const { result } = await run(
      { op: "groupby", params: { key: "station", value: "temperature" }, chunkSize: c.chunkSize, partitions: c.partitions },
      { workers: c.workers, outDir },
    );
    const manifest = result as KeyedResult;
    const expected = pythonGroupby(csvFile, ["station"], "temperature");
    expect(manifest.partitions).toBe(c.partitions);
    expect(manifest.parts.map((p) => path.basename(p.key))).toEqual(
      Array.from({ length: c.partitions }, (_, i) => `part-${String(i).padStart(5, "0")}.jsonl`),
    );
    const parts = await readRows(manifest);
    const got = new Map<string, unknown>();
    for (const [i, rows] of parts.entries()) {
      expect(rows.length).toBe(manifest.parts[i]!.records);
      for (const { key, ...rest } of rows) {
        // A key is in one part only.
        expect(got.has(JSON.stringify([key]))).toBe(false);
        got.set(JSON.stringify([key]), rest);
      }
    }
    expect(manifest.records).toBe(expected.size);
    expect(got).toEqual(expected);
  });

  it.each([
    { chunkSize: 700, workers: 0, spillBytes: 2000, pieces: 1, what: "spilling runs" },
    { chunkSize: 8192, workers: 2, spillBytes: undefined, pieces: 1, what: "in memory" },
    { chunkSize: 1 << 20, workers: 0, spillBytes: undefined, pieces: 1, what: "in memory" },
    { chunkSize: 1 << 20, workers: 0, spillBytes: undefined, pieces: 16, what: "16 files packed in one chunk" },
  ])(
    "sums decimals of exponents -30 to 30 exactly, as Python's Fraction does: chunks of $chunkSize bytes, $workers threads, $what",
    async (c) => {
      // Sums at scales past 50 digits: combined map-side as decimals, carried as text in runs and spills.
      const file = path.join(dir, "wide.csv");
      const next = prng(1234);
      const digits = (n: number): string => Array.from({ length: n }, () => Math.floor(next() * 10)).join("");
      const rows = ["k,x"];
      for (let i = 0; i < 4000; i++) {
        const k = `g${Math.floor(next() * 7)}`;
        const sign = next() < 0.5 ? "-" : "";
        const r = next();
        const x =
          r < 0.03
            ? ""
            : r < 0.4
              ? `${sign}${1 + Math.floor(next() * 9)}.${digits(1 + Math.floor(next() * 24))}e${Math.floor(next() * 61) - 30}`
              : r < 0.7
                ? `${sign}${digits(1 + Math.floor(next() * 20))}e${Math.floor(next() * 61) - 30}`
                : `${sign}0.${"0".repeat(Math.floor(next() * 30))}${digits(1 + Math.floor(next() * 12))}`;
        rows.push(`${k},${x}`);
      }
      // A key with blank values only: its rows count, with no number.
      rows.push("blank,", "blank,");
      await writeFile(file, `${rows.join("\n")}\n`);
      const outDir = path.join(dir, `groupby-wide-${c.chunkSize}-${c.workers}-${c.pieces}`);
      const inputs = [file];
      if (c.pieces > 1) {
        // The same rows as small files, each with the header, so that one task packs them and combines their partials.
        const piecesDir = path.join(dir, "wide-pieces");
        await mkdir(piecesDir, { recursive: true });
        const per = Math.ceil((rows.length - 1) / c.pieces);
        inputs.length = 0;
        for (let i = 0; i < c.pieces; i++) {
          const piece = path.join(piecesDir, `piece-${String(i).padStart(2, "0")}.csv`);
          await writeFile(piece, `${[rows[0], ...rows.slice(1 + i * per, 1 + (i + 1) * per)].join("\n")}\n`);
          inputs.push(piece);
        }
      }
      const { result } = await runLocal({
        spec: parseJobSpec({ inputs, op: "groupby", params: { key: "k", value: "x" }, chunkSize: c.chunkSize, partitions: 2 }),
        registry: new OpRegistry(),
        workers: c.workers,
        outDir,
        ...(c.spillBytes !== undefined ? { spillBytes: c.spillBytes } : {}),
      });
      expect((result as KeyedResult).spilledBytes > 0).toBe(c.spillBytes !== undefined);
      const got = new Map<string, unknown>();
      for (const rows of await readRows(result as KeyedResult)) for (const { key, ...rest } of rows) got.set(JSON.stringify([key]), rest);
      const expected = pythonGroupby(file, ["k"], "x");
      expect(expected.size).toBe(8);
      expect(got).toEqual(expected);
    },
  );

  it("carries a combined group in runs as earlier versions wrote it: sums as decimal text at the finer scale", () => {
    const keyed = groupby.keyed!;
    const params = groupby.parseParams({ key: "k", value: "x" });
    const a = { c: 2, v: { count: 1, sum: "15e-1", squares: "225e-2", min: 1.5, max: 1.5 } };
    const b = { c: 1, v: { count: 1, sum: "-3e-0", squares: "9e-0", min: -3, max: -3 } };
    const blank = { c: 1, v: { count: 0, sum: "0e-0", squares: "0e-0", min: null, max: null } };
    const combined = keyed.combine(keyed.combine(a, blank, params), b, params);
    expect(JSON.stringify(keyed.toJson!(combined))).toBe('{"c":4,"v":{"count":2,"sum":"-15e-1","squares":"1125e-2","min":-3,"max":1.5}}');
    // A value as it came from a run, combined or not, reads the same.
    expect(keyed.row('["k"]', combined, params)).toEqual(keyed.row('["k"]', keyed.toJson!(combined), params));
  });

  it("groups by two columns, counting rows, with no value column", async () => {
    const outDir = path.join(dir, "groupby-two");
    const { result } = await run(
      { op: "groupby", params: { key: "station,site" }, chunkSize: 2048, partitions: 4 },
      { workers: 2, outDir },
    );
    const expected = pythonGroupby(csvFile, ["station", "site"]);
    const got = new Map<string, unknown>();
    for (const rows of await readRows(result as KeyedResult)) for (const { key, ...rest } of rows) got.set(JSON.stringify(key), rest);
    expect(got).toEqual(expected);
  });

  it("keeps a U+FFFD the input holds as a key like any; refuses one made of bytes that are not UTF-8, as Python does", async () => {
    const file = path.join(dir, "replacement.csv");
    // U+FFFD as its own UTF-8 bytes (an earlier lossy conversion left it), beside plain keys.
    await writeFile(file, "k,v\nsensor \uFFFD,1\nsensor \uFFFD,2.5\nplain,4\n");
    const { result } = await run(
      { op: "groupby", inputs: [file], params: { key: "k", value: "v" } },
      { workers: 0, outDir: path.join(dir, "out-fffd") },
    );
    const got = new Map<string, unknown>();
    for (const rows of await readRows(result as KeyedResult)) for (const { key, ...rest } of rows) got.set(JSON.stringify([key]), rest);
    expect(got).toEqual(pythonGroupby(file, ["k"], "v"));

    const latin1 = path.join(dir, "latin1.csv");
    await writeFile(latin1, Buffer.concat([Buffer.from("k\ncaf"), Buffer.from([0xe9]), Buffer.from("\ncaf\uFFFD\n")]));
    expect(() => pythonGroupby(latin1, ["k"])).toThrow(/UnicodeDecodeError/);
    await expect(
      run({ op: "groupby", inputs: [latin1], params: { key: "k" } }, { workers: 0, outDir: path.join(dir, "out-latin1") }),
    ).rejects.toThrow(/key holds U\+FFFD where the input holds bytes that are not UTF-8/);
  });

  it("keeps a record's own U+FFFD key whatever bytes other records of its block hold, at every chunk size", async () => {
    const file = path.join(dir, "replacement-beside.jsonl");
    // Line 1's key is U+FFFD as its own bytes; only a later record's unused field holds a byte that is not UTF-8.
    const plain = Array.from({ length: 400 }, () => '{"k":"a"}\n').join("");
    await writeFile(
      file,
      Buffer.concat([Buffer.from('{"k":"\uFFFD"}\n' + plain + '{"k":"b","x":"'), Buffer.from([0xff]), Buffer.from('"}\n')]),
    );
    const script = `import collections,json,sys
c=collections.Counter(json.loads(l.decode("utf-8","replace"))["k"] for l in open(sys.argv[1],"rb") if l.strip())
print(json.dumps(sorted(c.items())))`;
    const expected = JSON.parse(execFileSync("python3", ["-c", script, file]).toString()) as [string, number][];
    for (const chunkSize of [256, 1 << 20]) {
      const { result } = await run(
        { op: "distinct", inputs: [file], params: { key: "k" }, chunkSize },
        { workers: 0, outDir: path.join(dir, `out-fffd-beside-${chunkSize}`) },
      );
      const got: [string, number][] = [];
      for (const rows of await readRows(result as KeyedResult))
        for (const { key, count } of rows) got.push([key as string, count as number]);
      expect(got.sort((x, y) => (x[0] < y[0] ? -1 : 1))).toEqual(expected);
    }
  });

  it("counts a row of spaces as a row with its key, as Python's csv module does; only an empty line is none", async () => {
    const file = path.join(dir, "spaces.csv");
    await writeFile(file, "k\na\n\n \n  \n \nb\n");
    const outDir = path.join(dir, "out-spaces");
    const { result } = await run({ op: "groupby", inputs: [file], params: { key: "k" } }, { workers: 0, outDir });
    const got = new Map<string, unknown>();
    for (const rows of await readRows(result as KeyedResult)) for (const { key, ...rest } of rows) got.set(JSON.stringify([key]), rest);
    expect(got).toEqual(pythonGroupby(file, ["k"]));
    expect(got.get('[" "]')).toEqual({ count: 2 });
  });

  it("groups jsonl number keys by their value as written, as Python's Decimal does", async () => {
    const file = path.join(dir, "numkeys.jsonl");
    const keys = ["1.5", "1.50", "15e-1", "5e-324", "1e-300", "0", "-0", "0.0", "0.30000000000000004", "0.3", "123456789012345.6"];
    await writeFile(file, keys.map((k) => `{"k":${k}}\n`).join(""));
    const script = `import collections,decimal,json,sys
c=collections.Counter(decimal.Decimal(json.loads(l, parse_float=str, parse_int=str)["k"]).normalize() for l in open(sys.argv[1]))
print(json.dumps(sorted(c.values())))`;
    const expected = JSON.parse(execFileSync("python3", ["-c", script, file], { encoding: "utf8" })) as number[];
    const { result } = await run(
      { op: "distinct", inputs: [file], params: { key: "k" } },
      { workers: 0, outDir: path.join(dir, "out-numkeys") },
    );
    const counts = (await readRows(result as KeyedResult)).flat().map((r) => r.count as number);
    expect(counts.sort((a, b) => a - b)).toEqual(expected);
  });

  it("refuses a key column the header does not have, naming the columns", async () => {
    await expect(run({ op: "groupby", params: { key: "stationn" } }, { workers: 0, outDir: path.join(dir, "bad") })).rejects.toThrow(
      /no column "stationn" in the header \(columns: station, site, temperature, note\)/,
    );
  });

  it("refuses a jsonl field no record has (misspelt, or a key holding a dot), writing no part; a sparse field stands", async () => {
    const a = path.join(dir, "sparse-a.jsonl");
    const b = path.join(dir, "sparse-b.jsonl");
    const next = prng(7);
    const line = (i: number): string => {
      // "site" only in the second file, a null "station" now and then, and a key named with a dot.
      const record: Record<string, unknown> = { station: next() < 0.1 ? null : `s${i % 5}`, "t.c": i % 3, t: { c: i % 4 } };
      return JSON.stringify(record);
    };
    await writeFile(a, `${Array.from({ length: 400 }, (_, i) => line(i)).join("\n")}\n`);
    await writeFile(
      b,
      `${Array.from({ length: 300 }, (_, i) => JSON.stringify({ ...JSON.parse(line(i)), site: `x${i % 2}` })).join("\n")}\n`,
    );
    const refused = async (params: Record<string, string>, op = "groupby"): Promise<string> => {
      const outDir = path.join(dir, `absent-${Object.values(params).join("-")}`);
      const error = await run({ op, inputs: [a, b], params, chunkSize: 2048, partitions: 3 }, { workers: 2, outDir }).then(
        () => "succeeded",
        (e: Error) => e.message,
      );
      // Refused before any reduce task: no part, no directory.
      await expect(readdir(outDir)).rejects.toThrow(/ENOENT/);
      return error;
    };
    expect(await refused({ key: "statoin" })).toBe("key=statoin: none of the 700 records read has it: is it misspelt?");
    expect(await refused({ key: "station", value: "tc" })).toMatch(/^value=tc: none of the 700 records read has it/);
    expect(await refused({ key: "station,sight" }, "distinct")).toMatch(/^key=sight: none of the 700 records read has it/);
    expect(await refused({ key: "t.x" }, "distinct")).toMatch(/^key=t\.x: none of the 700 records read has it \(a path splits at dots/);
    // "t.c" is the path t → c, which every record has: grouped by it, not by the dotted key.
    // Python: the counts of each record's t.c, of its site (absent: None), and of its station (null: None).
    const script = `import collections,json,sys
rs=[json.loads(l) for f in sys.argv[1:] for l in open(f)]
for k in (lambda r: r["t"]["c"], lambda r: r.get("site"), lambda r: r["station"]):
  print(json.dumps(sorted([[json.dumps(v), n] for v, n in collections.Counter(k(r) for r in rs).items()])))`;
    const expected = execFileSync("python3", ["-c", script, a, b], { encoding: "utf8" })
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as [string, number][]);
    for (const [i, key] of ["t.c", "site", "station"].entries()) {
      const { result } = await run(
        { op: "distinct", inputs: [a, b], params: { key }, chunkSize: 2048, partitions: 3 },
        { workers: 2, outDir: path.join(dir, `present-${key}`) },
      );
      const got = (await readRows(result as KeyedResult)).flat().map((r) => [JSON.stringify(r.key), r.count]);
      expect(got.sort()).toEqual(expected[i]!.sort());
    }
  });

  it("refuses a value that is not a number, naming file and line", async () => {
    const file = path.join(dir, "bad.csv");
    await writeFile(file, "k,v\na,1\nb,two\n");
    await expect(
      run({ op: "groupby", inputs: [file], params: { key: "k", value: "v" } }, { workers: 0, outDir: path.join(dir, "bad2") }),
    ).rejects.toThrow(/bad\.csv:3 \(byte 8\): expected a number, got "two"/);
  });

  it("names the key whose sum or variance overflows a double, and the op", async () => {
    const file = path.join(dir, "overflow.csv");
    // Python: float(sum(Fraction(x) for x in ["1e200", "-1e200"])) is 0, but the variance, 1e400, is no double.
    await writeFile(file, "k,v\na,1e200\na,-1e200\nb,1\n");
    await expect(
      run({ op: "groupby", inputs: [file], params: { key: "k", value: "v" } }, { workers: 0, outDir: path.join(dir, "overflow") }),
    ).rejects.toThrow(/groupby: key "a": the sum or variance overflows a double/);
  });

  it("refuses more shuffle segments (chunks × partitions) than the reducer gathers, saying how many partitions fit", async () => {
    const file = path.join(dir, "small.csv");
    await writeFile(file, `k\n${"a\n".repeat(600)}`);
    await expect(
      run(
        { op: "groupby", inputs: [file], params: { key: "k" }, chunkSize: 1, partitions: 10_000 },
        { workers: 0, outDir: path.join(dir, "bad5") },
      ),
    ).rejects.toThrow(
      /^partitions: 10000 partitions of 1202 chunks is more shuffle segments than 4000000; ask for at most 3327 \(or larger chunks\)$/,
    );
  });

  it.each([
    [
      "a jsonl value past double range",
      "v.jsonl",
      '{"k":"a","v":5}\n{"k":"a","v":-1e400}\n',
      { key: "k", value: "v" },
      /v\.jsonl:2 \(byte 16\): field v: number out of range/,
    ],
    [
      "a jsonl key past 2^53",
      "big.jsonl",
      '{"k":9007199254740993}\n',
      { key: "k" },
      /big\.jsonl:1 \(byte 0\): key 9007199254740992 is an integer past 2\^53/,
    ],
    [
      "a jsonl key past 2^53 that JSON writes with an exponent",
      "exp.jsonl",
      '{"k":1000000000000000000001}\n{"k":1e21}\n',
      { key: "k" },
      /exp\.jsonl:1 \(byte 0\): key 1e\+21 is an integer past 2\^53/,
    ],
    [
      "a jsonl key that underflows to 0",
      "under.jsonl",
      '{"k":0}\n{"k":1e-400}\n',
      { key: "k" },
      /under\.jsonl:2 \(byte 8\): key k: 1e-400 is not a number a double holds \(it reads as 0\)/,
    ],
    [
      "a jsonl key with more digits than a double holds",
      "digits.jsonl",
      '{"k":0.1}\n{"k":0.1000000000000000000001}\n',
      { key: "k" },
      /digits\.jsonl:2 \(byte 10\): key k: 0\.1000000000000000000001 is not a number a double holds/,
    ],
    [
      "a jsonl key a subnormal double cannot hold",
      "sub.jsonl",
      '{"k":5e-324}\n{"k":4e-324}\n',
      { key: "k" },
      /sub\.jsonl:2 \(byte 13\): key k: 4e-324 is not a number a double holds \(it reads as 5e-324\)/,
    ],
    [
      "a jsonl key that is an object",
      "obj.jsonl",
      '{"k":"x"}\n{"k":{"a":1}}\n',
      { key: "k" },
      /obj\.jsonl:2 \(byte 10\): field k: expected a string, number, boolean or null, got an object/,
    ],
    [
      "a csv key that is not UTF-8",
      "latin1.csv",
      Buffer.from("k\ncaf\xe9\n", "latin1"),
      { key: "k" },
      /latin1\.csv:2 \(byte 2\): key holds U\+FFFD/,
    ],
  ] as const)("refuses %s rather than merging keys or values", async (_what, name, body, params, message) => {
    const file = path.join(dir, name);
    await writeFile(file, body);
    await expect(run({ op: "groupby", inputs: [file], params }, { workers: 0, outDir: path.join(dir, `bad-${name}`) })).rejects.toThrow(
      message,
    );
  });

  it("refuses an output directory inside an input directory (the next run would read the parts)", async () => {
    const input = path.join(dir, "indir");
    await mkdir(input, { recursive: true });
    await writeFile(path.join(input, "a.txt"), "x\ny\n");
    await expect(run({ op: "distinct", inputs: [input] }, { workers: 0, outDir: path.join(input, "out") })).rejects.toThrow(
      /inside input .*indir, and be read as input next time: give --out-dir outside it/,
    );
  });

  it("refuses partitions for an op that is not keyed", async () => {
    await expect(run({ op: "count", partitions: 3 }, { workers: 0, outDir: path.join(dir, "bad3") })).rejects.toThrow(
      /partitions: op count is not keyed/,
    );
  });
});

describe("a reduce task run again", () => {
  it("rewrites its part byte for byte, whether it held everything in memory or spilled hundreds of runs", async () => {
    const workDir = path.join(dir, "work-again");
    const outDir = path.join(dir, "again");
    const { jobId, result } = await runLocal({
      spec: parseJobSpec({ op: "distinct", inputs: [linesFile], chunkSize: 4096, partitions: 2 }),
      registry: new OpRegistry(),
      workers: 0,
      workDir,
      outDir,
    });
    const manifest = Manifest.parse(JSON.parse(await readFile(path.join(workDir, manifestKey(jobId)), "utf8")));
    const deps = {
      output: new FsBlobStore(workDir),
      inputStore: () => new FsBlobStore("/"),
      registry: new OpRegistry(),
      log: silentLogger,
    };
    for (const partition of [0, 1]) {
      // As if its first run's part had never been written: the task runs in full again.
      await rm(path.join(workDir, partKey(jobId, manifest.chunks + partition)));
      const task: ReduceTask = { v: 1, jobId, reduce: { partition, chunks: manifest.chunks }, job: manifest.job };
      const outcome = await runTask({ ...deps, spillBytes: 300 }, task);
      expect(outcome.kind).toBe("done");
      expect((outcome as { partial: { spilledBytes: number } }).partial.spilledBytes).toBeGreaterThan(0);
      const first = await readFile((result as KeyedResult).parts[partition]!.key);
      expect((await readFile(path.join(workDir, outputPartKey(jobId, partition)))).equals(first)).toBe(true);
    }
    // A reduce task of a job started with other code of its op is refused, as a map task is: its
    // map stage wrote values in that code's shape.
    await rm(path.join(workDir, partKey(jobId, manifest.chunks)));
    const other: ReduceTask = {
      v: 1,
      jobId,
      reduce: { partition: 0, chunks: manifest.chunks },
      job: { ...manifest.job, opDigest: "other" },
    };
    await expect(runTask(deps, other)).rejects.toMatchObject({ code: "OP_MISMATCH" });
  });

  it("that fails part-way removes every run it spilled, and writes no part", async () => {
    const workDir = path.join(dir, "work-failed");
    const { jobId } = await runLocal({
      spec: parseJobSpec({ op: "distinct", inputs: [linesFile], chunkSize: 1024, partitions: 1 }),
      registry: new OpRegistry(),
      workers: 0,
      workDir,
      outDir: path.join(dir, "failed"),
    });
    const manifest = Manifest.parse(JSON.parse(await readFile(path.join(workDir, manifestKey(jobId)), "utf8")));
    const part = path.join(workDir, partKey(jobId, manifest.chunks));
    await rm(part);
    const output = new FsBlobStore(workDir);
    // The shuffle's ranged reads fail from the 6th on (a reset connection), after runs were spilled.
    let reads = 0;
    const failing = Object.assign(Object.create(output) as FsBlobStore, {
      get: async (key: string, options?: Parameters<FsBlobStore["get"]>[1]) => {
        if (options?.start !== undefined && ++reads >= 6) throw new Error(`connection reset reading ${key}`);
        return output.get(key, options);
      },
    });
    const scratchDir = path.join(dir, "scratch-failed");
    const scratch = new FsBlobStore(scratchDir);
    let spilled = 0;
    const counting = Object.assign(Object.create(scratch) as FsBlobStore, {
      put: async (...args: Parameters<FsBlobStore["put"]>) => {
        spilled++;
        return scratch.put(...args);
      },
    });
    const deps = { output: failing, inputStore: () => new FsBlobStore("/"), registry: new OpRegistry(), log: silentLogger };
    const task: ReduceTask = { v: 1, jobId, reduce: { partition: 0, chunks: manifest.chunks }, job: manifest.job };
    await expect(runTask({ ...deps, scratch: counting, spillBytes: 300 }, task)).rejects.toThrow(/connection reset/);
    expect(reads).toBeGreaterThanOrEqual(6);
    expect(spilled).toBeGreaterThan(0);
    const left = (await readdir(scratchDir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
    expect(left.map((e) => e.name)).toEqual([]);
    await expect(readFile(part)).rejects.toMatchObject({ code: "ENOENT" });
  });
});

describe("distinct on the local engine", () => {
  it("equals LC_ALL=C sort | uniq -c, every part in byte order", async () => {
    const outDir = path.join(dir, "distinct");
    const { result } = await run({ op: "distinct", inputs: [linesFile], chunkSize: 3001, partitions: 3 }, { workers: 2, outDir });
    const uniq = execFileSync("sh", ["-c", `LC_ALL=C sort "$1" | LC_ALL=C uniq -c`, "sh", linesFile], { encoding: "utf8" });
    const expected = new Map(
      uniq
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => {
          const m = /^\s*(\d+) (.*)$/s.exec(l)!;
          return [m[2]!, Number(m[1])] as const;
        }),
    );
    const got = new Map<string, number>();
    for (const rows of await readRows(result as KeyedResult)) {
      const keys = rows.map((r) => r["key"] as string);
      // Byte order, as `LC_ALL=C sort` orders the same keys.
      expect(keys).toEqual([...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
      for (const r of rows) got.set(r["key"] as string, r["count"] as number);
    }
    expect(got).toEqual(expected);
  });

  it("refuses a line that is not UTF-8, naming its byte offset", async () => {
    const file = path.join(dir, "latin1.txt");
    await writeFile(file, Buffer.concat([Buffer.from("ok\ncaf"), Buffer.from([0xe9]), Buffer.from("\n")]));
    await expect(run({ op: "distinct", inputs: [file] }, { workers: 0, outDir: path.join(dir, "bad4") })).rejects.toThrow(
      /latin1\.txt:2 \(byte 3\): line is not valid UTF-8/,
    );
  });
});

describe("a lab's reduce(key, values) on the local engine", () => {
  /** Each station's temperatures as written, in file order, with their median: Python's csv and statistics. */
  const pythonPerStation = (): Map<string, { n: number; first: string; last: string; median: number }> => {
    const script = `
import csv, json, statistics, sys
per = {}
for row in csv.DictReader(open(sys.argv[1], newline='', encoding='utf-8')):
    if row['temperature'] != '':
        per.setdefault(row['station'], []).append(row['temperature'])
print(json.dumps({k: {'n': len(v), 'first': v[0], 'last': v[-1], 'median': statistics.median([float(t) for t in v])} for k, v in per.items()}))
`;
    const out = JSON.parse(execFileSync("python3", ["-c", script, csvFile], { encoding: "utf8" })) as Record<string, never>;
    return new Map(Object.entries(out));
  };

  let module: string;
  beforeAll(async () => {
    module = path.join(dir, "reduce-ops.mjs");
    const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
    await writeFile(
      module,
      `import { defineOp } from ${JSON.stringify(defineOp)};
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
export const perStation = defineOp({
  name: "temps-per-station",
  format: "csv",
  pairs: (row, emit) => { if (row.temperature !== "") emit(row.station, row.temperature); },
  reduce: (station, ts) => ({ station, n: ts.length, first: ts[0], last: ts[ts.length - 1], median: median(ts.map(Number)) }),
});
`,
    );
  });

  it.each([
    { chunkSize: 997, partitions: 3, workers: 2 },
    { chunkSize: 4096, partitions: 1, workers: 0 },
    { chunkSize: 1 << 24, partitions: 2, workers: 0 },
  ])("gets every value of a key at once, in input order: chunks of $chunkSize bytes, $partitions partitions", async (c) => {
    const outDir = path.join(dir, `reduce-${c.chunkSize}-${c.partitions}`);
    const { result } = await runLocal({
      spec: parseJobSpec({ op: "temps-per-station", inputs: [csvFile], chunkSize: c.chunkSize, partitions: c.partitions }),
      registry: await opsRegistry([module]),
      opsModules: [module],
      workers: c.workers,
      outDir,
    });
    const got = new Map<string, unknown>();
    for (const rows of await readRows(result as KeyedResult)) for (const { station, ...rest } of rows) got.set(station as string, rest);
    expect(got).toEqual(pythonPerStation());
  });

  it("a reduce that fails after megabytes of output publishes no part and leaves no temporary file", async () => {
    const failing = path.join(dir, "failing-reduce.mjs");
    const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
    await writeFile(
      failing,
      `import { defineOp } from ${JSON.stringify(defineOp)};
export const late = defineOp({
  name: "fails-late",
  format: "lines",
  pairs: (line, emit) => emit(line, line.length),
  reduce: (key, values) => {
    if (key === "k150000") throw new Error("no reading for " + key);
    return { key, n: values.length, pad: "x".repeat(40) };
  },
});
`,
    );
    const input = path.join(dir, "many-keys.txt");
    await writeFile(input, Array.from({ length: 200_000 }, (_, i) => `k${String(i).padStart(6, "0")}\n`).join(""));
    const outDir = path.join(dir, "fails-late-out");
    const run = runLocal({
      spec: parseJobSpec({ op: "fails-late", inputs: [input], partitions: 1 }),
      registry: await opsRegistry([failing]),
      opsModules: [failing],
      workers: 1,
      outDir,
    });
    await expect(run).rejects.toThrow(/no reading for k150000/);
    expect(await readdir(outDir).catch(() => [])).toEqual([]);
  });

  it("refuses a keyed op with both combine and reduce, or neither", async () => {
    const { defineOp } = await import("../../lib/core/ops/defineOp.js");
    const pairs = (_: unknown, emit: (k: string, v: number) => void) => emit("k", 1);
    const both = { name: "both", format: "lines", pairs, combine: (a: number, b: number) => a + b, reduce: () => 1 } as never;
    expect(() => defineOp(both)).toThrow(/defineOp both: a keyed op needs combine \(with row\) or reduce, one of them/);
    expect(() => defineOp({ name: "neither", format: "lines", pairs } as never)).toThrow(/needs combine \(with row\) or reduce/);
    expect(() => defineOp({ name: "nulls", format: "lines", pairs, combine: null } as never)).toThrow(
      /needs combine \(with row\) or reduce/,
    );
    const withRow = { name: "with-row", format: "lines", pairs, reduce: () => 1, row: () => 2 } as never;
    expect(() => defineOp(withRow)).toThrow(/defineOp with-row: reduce returns each key's line itself; drop row/);
  });
});

describe("columns named by digits, and keys of lines", () => {
  it("a header name made of digits (pandas' 0,1,2) is that column for stats and groupby alike; other digits are an index", async () => {
    const file = path.join(dir, "digits.csv");
    await writeFile(file, "0,1,2\n10,20,30\n11,21,31\n12,21,32\n");
    const column = (name: string) =>
      Number(
        execFileSync(
          "python3",
          ["-c", "import csv,sys\nprint(sum(int(r[sys.argv[2]]) for r in csv.DictReader(open(sys.argv[1]))))", file, name],
          {
            encoding: "utf8",
          },
        ).trim(),
      );
    const stats = await runLocal({
      spec: parseJobSpec({ inputs: [file], op: "stats", params: { column: "1" } }),
      registry: new OpRegistry(),
    });
    expect((stats.result as { sum: number }).sum).toBe(column("1"));
    const expected = pythonGroupby(file, ["2"], "1");
    const { result } = await runLocal({
      spec: parseJobSpec({ inputs: [file], op: "groupby", params: { key: "2", value: "1" } }),
      registry: new OpRegistry(),
      outDir: path.join(dir, "digits-out"),
    });
    const rows = (await readRows(result as KeyedResult)).flat();
    const got = rows.map((r) => [JSON.stringify([r["key"]].flat()), (r as { sum?: number }).sum] as const).sort();
    expect(got).toEqual([...expected].map(([k, g]) => [k, g.sum] as const).sort());
    // A column named 0 is a name, not an index that counts from 1.
    const zero = await runLocal({
      spec: parseJobSpec({ inputs: [file], op: "stats", params: { column: "0" } }),
      registry: new OpRegistry(),
    });
    expect((zero.result as { sum: number }).sum).toBe(column("0"));
    // Digits that name no column count from 1: column 3 is the one named "2".
    const third = await runLocal({
      spec: parseJobSpec({ inputs: [file], op: "stats", params: { column: "3" } }),
      registry: new OpRegistry(),
    });
    expect((third.result as { sum: number }).sum).toBe(column("2"));
  });

  it("distinct of lines refuses key=, which would read each line's text as JSON at the end", async () => {
    const file = path.join(dir, "ids.txt");
    await writeFile(file, "9007199254740993\n9007199254740992\n1\n1.0\n");
    await expect(
      runLocal({
        spec: parseJobSpec({ inputs: [file], op: "distinct", params: { key: "id" } }),
        registry: new OpRegistry(),
        outDir: path.join(dir, "ids-out"),
      }),
    ).rejects.toThrow(/distinct of lines: key= names csv or jsonl fields; a line is its own key/);
  });
});
