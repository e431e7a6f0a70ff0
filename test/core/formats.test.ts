/**
 * Record formats through the engine (inline): CSV with header, separator and quotes, JSON
 * lines with field paths, numbers; bad records fail the job naming file and line, or are
 * counted and skipped; bytes that are not UTF-8 never crash the line ops.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runLocal, type LocalRunResult } from "../../lib/local/localEngine.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { parseJobSpec, type JobSpecInput } from "../../lib/core/job/spec.js";
import { defineOp } from "../../lib/core/ops/defineOp.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { refCount, refGrep, refStatsOf, refWordcount } from "../helpers/reference.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-formats-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A user op that collects the records it is given (one chunk keeps them in file order). */
const collectRows = defineOp({
  name: "rows",
  format: ["csv", "jsonl", "lines", "numbers"],
  map: (record: unknown) => [record],
  combine: (a: unknown[], b: unknown[]) => [...a, ...b],
});

const registry = () => {
  const r = new OpRegistry();
  r.register(collectRows);
  return r;
};

const file = async (name: string, content: string | Buffer): Promise<string> => {
  const p = path.join(dir, name);
  await writeFile(p, content);
  return p;
};

const ZIP_SCRIPT = `import sys,zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
  z.writestr("b.csv", "k,v\\nz,7\\n"); z.writestr("empty.csv", "")`;

const VALUES_SCRIPT = `import csv,gzip,io,json,os,subprocess,sys,zipfile
def texts(p):
  if p.endswith(".gz"): yield gzip.open(p).read()
  elif p.endswith(".zst"): yield subprocess.run(["zstd","-dc",p],capture_output=True,check=True).stdout
  elif p.endswith(".zip"):
    z=zipfile.ZipFile(p); yield from (z.read(n) for n in z.namelist())
  else: yield open(p,"rb").read()
vs=[r["v"] for f in sorted(os.listdir(sys.argv[1])) for t in texts(os.path.join(sys.argv[1],f))
    for r in csv.DictReader(io.StringIO(t.decode("utf-8-sig"), newline=""))]
print(json.dumps(vs))`;

const run = (spec: Omit<JobSpecInput, "inputs"> & { inputs: string[] }): Promise<LocalRunResult> =>
  runLocal({ spec: parseJobSpec(spec), registry: registry(), workers: 0 });

const failure = async (spec: Omit<JobSpecInput, "inputs"> & { inputs: string[] }): Promise<CloudmillError> => {
  const err = await run(spec).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CloudmillError);
  return err as CloudmillError;
};

describe("csv", () => {
  const measurements = 'station,temp,note\nnorth,1.5,ok\n"south, east",2.25,"said ""hi"""\nwest,-0.75,\n';

  it("reads a column by header name or by 1-based index, skipping the header", async () => {
    const f = await file("m.csv", measurements);
    const want = refStatsOf([1.5, 2.25, -0.75]);
    for (const chunkSize of [1, 7, 1024]) {
      expect((await run({ op: "stats", inputs: [f], params: { column: "temp" }, chunkSize })).result).toEqual(want);
      expect((await run({ op: "stats", inputs: [f], params: { column: "2" }, chunkSize })).result).toEqual(want);
    }
    expect((await run({ op: "count", inputs: [f] })).result).toEqual({ records: 3 });
    expect((await run({ op: "count", inputs: [f], format: "lines" })).result).toEqual({ records: 4 });
  });

  it("an input that holds no record (empty compressed, BOM only, blank lines, an empty deflated zip entry) has no column to refuse", async () => {
    const sub = path.join(dir, "no-records");
    await mkdir(sub);
    await writeFile(path.join(sub, "a.csv"), "k,v\nx,1\ny,2.5\nx,-4\n");
    await writeFile(path.join(sub, "empty.csv.gz"), gzipSync(Buffer.alloc(0)));
    await writeFile(path.join(sub, "empty.csv.zst"), execFileSync("zstd", ["-q", "-c"], { input: Buffer.alloc(0) }));
    await writeFile(path.join(sub, "bom.csv"), "\uFEFF");
    await writeFile(path.join(sub, "blanks.csv"), "\n\r\n\n");
    // Python's zipfile writes an empty deflated entry as 2 bytes, as Java's ZipOutputStream does.
    const zip = path.join(sub, "both.zip");
    execFileSync("python3", ["-c", ZIP_SCRIPT, zip]);
    // Python: the values of column v in every file it reads as csv (gzip, zstd -dc, zipfile; utf-8-sig).
    const values = JSON.parse(execFileSync("python3", ["-c", VALUES_SCRIPT, sub], { encoding: "utf8" })) as string[];
    expect(values).toHaveLength(4);
    for (const chunkSize of [3, 1 << 20]) {
      expect((await run({ op: "stats", inputs: [sub], format: "csv", params: { column: "v" }, chunkSize })).result).toEqual(
        refStatsOf(values),
      );
      expect((await run({ op: "stats", inputs: [sub], format: "csv", params: { column: "2" }, chunkSize })).result).toEqual(
        refStatsOf(values),
      );
      // Nor a separator to sniff.
      const auto = await run({ op: "stats", inputs: [sub], format: "csv", params: { column: "v", separator: "auto" }, chunkSize });
      expect(auto.result).toEqual(refStatsOf(values));
    }
    // groupby's key column, likewise: Python's count per k.
    const keys = JSON.parse(
      execFileSync("python3", ["-c", VALUES_SCRIPT.replace('r["v"]', 'r["k"]'), sub], { encoding: "utf8" }),
    ) as string[];
    const outDir = path.join(dir, "no-records-out");
    const { result } = await runLocal({
      spec: parseJobSpec({ op: "distinct", inputs: [sub], format: "csv", params: { key: "k" }, chunkSize: 3 }),
      registry: registry(),
      workers: 0,
      outDir,
    });
    const rows = (result as { parts: { key: string }[] }).parts.flatMap((p) =>
      readFileSync(p.key, "utf8")
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as { key: string; count: number }),
    );
    expect(Object.fromEntries(rows.map((r) => [r.key, r.count]))).toEqual(
      Object.fromEntries([...new Set(keys)].map((k) => [k, keys.filter((x) => x === k).length])),
    );
    // A header that lacks the column is still refused.
    await writeFile(path.join(sub, "header-only.csv"), "k,w\n");
    expect((await failure({ op: "stats", inputs: [path.join(sub, "header-only.csv")], params: { column: "v" } })).message).toMatch(
      /no column "v" in the header \(columns: k, w\)/,
    );
  });

  it("refuses a row of more or fewer fields than the header (an unquoted decimal comma), as Python's csv counts them", async () => {
    // Rows with decimal commas shift their columns: humidity would read the temperatures' decimals.
    const rows = ["id,temp,humidity"];
    for (let i = 0; i < 400; i++) {
      if (i % 37 === 5) rows.push(`${i},${i % 30},${i % 9},${40 + (i % 50)}`);
      else if (i % 53 === 7) rows.push(`${i},${i % 30}`);
      else if (i % 11 === 3) rows.push(`${i},"${i % 30}",${40 + (i % 50)}`);
      else rows.push(`${i},${i % 30}.${i % 9},${40 + (i % 50)}`);
    }
    const f = await file("shifted.csv", `${rows.join("\r\n")}\r\n`);
    const script = `import csv,json,sys
rows=list(csv.reader(open(sys.argv[1], newline="")))
bad=[i + 1 for i, r in enumerate(rows) if len(r) != len(rows[0])]
print(json.dumps({"first": bad[0], "bad": len(bad), "values": [r[2] for r in rows[1:] if len(r) == len(rows[0])]}))`;
    const want = JSON.parse(execFileSync("python3", ["-c", script, f], { encoding: "utf8" })) as {
      first: number;
      bad: number;
      values: string[];
    };
    for (const chunkSize of [1, 64, 1 << 20]) {
      const error = await failure({ op: "stats", inputs: [f], params: { column: "humidity" }, chunkSize });
      expect(error.message).toMatch(
        new RegExp(`shifted\\.csv:${want.first} \\(byte \\d+\\): expected 3 fields \\(as in the header\\), got 4$`),
      );
      const { result, status } = await run({ op: "stats", inputs: [f], params: { column: "humidity" }, chunkSize, onBadRecord: "skip" });
      expect(result).toEqual(refStatsOf(want.values));
      expect(status.skipped).toBe(want.bad);
    }
  });

  it("unquotes fields holding separators and doubled quotes", async () => {
    const f = await file("q.csv", measurements);
    expect((await run({ op: "rows", inputs: [f] })).result).toEqual([
      { station: "north", temp: "1.5", note: "ok" },
      { station: "south, east", temp: "2.25", note: 'said "hi"' },
      { station: "west", temp: "-0.75", note: "" },
    ]);
  });

  it("takes another separator, and no header (rows as arrays, columns by index)", async () => {
    const f = await file("semi.csv", 'name;"weird;col";value\n"a;b";"say ""x"";y";1.5\nc;plain;2.5\n');
    expect((await run({ op: "stats", inputs: [f], params: { separator: ";", column: "value" } })).result).toMatchObject({
      count: 2,
      sum: 4,
    });
    expect((await run({ op: "rows", inputs: [f], params: { separator: ";" } })).result).toEqual([
      { name: "a;b", "weird;col": 'say "x";y', value: "1.5" },
      { name: "c", "weird;col": "plain", value: "2.5" },
    ]);
    const g = await file("noheader.csv", "1,10\n2,20\n");
    expect((await run({ op: "stats", inputs: [g], params: { header: "false", column: "2" } })).result).toMatchObject({ count: 2, sum: 30 });
    expect((await run({ op: "rows", inputs: [g], params: { header: "false" } })).result).toEqual([
      ["1", "10"],
      ["2", "20"],
    ]);
  });

  it("finds header names behind a BOM and before a CRLF", async () => {
    const f = await file("bom.csv", "\uFEFFa,b\r\n1,10\r\n2,20\r\n");
    expect((await run({ op: "stats", inputs: [f], params: { column: "a" }, chunkSize: 3 })).result).toMatchObject({ count: 2, sum: 3 });
    expect((await run({ op: "stats", inputs: [f], params: { column: "b" }, chunkSize: 3 })).result).toMatchObject({ count: 2, sum: 30 });
  });

  it("fails on an unbalanced quote with BAD_RECORD naming the input and line, at any chunk size", async () => {
    const f = await file("broken.csv", 'h,v\nx,1\n"y,2\nz,3\n');
    for (const chunkSize of [1, 5, 1000]) {
      const e = await failure({ op: "stats", inputs: [f], params: { column: "v" }, chunkSize });
      expect(e.code).toBe(ErrorCode.BAD_RECORD);
      expect(e.describe()).toContain(`${f}:3 `);
      expect(e.describe()).toMatch(/unterminated quoted field/);
      expect(e.describe()).not.toContain("\n");
    }
  });

  it("blames a quote kept inside an unquoted field, not the later quote it left unpaired, at any chunk size", async () => {
    // Python's csv keeps x"y as text, then reads "p\nq" as one field: readers disagree, so it is refused.
    const text = 'k,v\nx"y,"p\nq"\n';
    const f = await file("stray.csv", text);
    for (const chunkSize of [1, 5, 1000]) {
      const e = await failure({ op: "count", inputs: [f], chunkSize });
      expect(e.describe()).toBe(
        `${f}:2 (byte ${text.indexOf('"')}): a quote inside an unquoted field (column 1) leaves the quotes unpaired: ` +
          "quote the whole field and double the quote (RFC 4180), or read with multiline=false",
      );
    }
    // Two kept quotes pair up with each other: the quote that opens column 2 and never closes is the cause.
    const paired = 'k,v\na"b"c,"x\nrest\n';
    const g = await file("paired.csv", paired);
    for (const chunkSize of [1, 5, 1000]) {
      const e = await failure({ op: "count", inputs: [g], chunkSize });
      expect(e.describe()).toBe(
        `${g}:2 (byte ${paired.indexOf(',"') + 1}): unterminated quoted field: the quote that opens column 2 is never closed`,
      );
    }
  });

  it("names the columns when a column name is not in the header; needs a column at all", async () => {
    const f = await file("cols.csv", "a,b\n1,2\n");
    const e = await failure({ op: "stats", inputs: [f], params: { column: "c" } });
    expect(e.code).toBe(ErrorCode.INVALID_SPEC);
    expect(e.message).toContain('no column "c" in the header (columns: a, b)');
    const none = await failure({ op: "stats", inputs: [f] });
    expect(none.code).toBe(ErrorCode.INVALID_SPEC);
    expect(none.message).toContain("--param column=");
    // An index past the header's columns is the param's fault; without a header, the row's.
    const far = await failure({ op: "stats", inputs: [f], params: { column: "5" } });
    expect(far.code).toBe(ErrorCode.INVALID_SPEC);
    expect(far.message).toContain("no column 5: the header has 2 (columns: a, b)");
    const headless = await failure({ op: "stats", inputs: [f], params: { column: "5", header: "false" } });
    expect(headless.code).toBe(ErrorCode.BAD_RECORD);
    expect(headless.describe()).toContain(`${f}:1 `);
  });
});

describe("jsonl", () => {
  const events =
    '{"id":1,"latency":{"ms":12.5}}\n\n{"id":2,"latency":{"ms":"7.5"}}\n{"id":3}\n{"id":4,"latency":{"ms":null}}\n{"id":5,"latency":{"ms":-2}}\n';

  it("reads a dotted field path; missing and null fields contribute nothing; numeric strings count", async () => {
    const f = await file("e.jsonl", events);
    for (const chunkSize of [1, 16, 4096]) {
      expect((await run({ op: "stats", inputs: [f], params: { field: "latency.ms" }, chunkSize })).result).toEqual(
        refStatsOf([12.5, 7.5, -2]),
      );
    }
    expect((await run({ op: "stats", inputs: [f], params: { field: "id" } })).result).toMatchObject({ count: 5, sum: 15 });
    expect((await run({ op: "count", inputs: [f] })).result).toEqual({ records: 5 }); // .jsonl: non-blank lines
  });

  it("reads an array's members by index only: its JavaScript `length` is no JSON member", async () => {
    const f = await file("arrays.jsonl", '{"v":[1,2,3]}\n{"v":[10]}\n');
    // Python's json: d["v"][1] is 2 in the first record, absent in the second; d["v"] has no "length".
    expect((await run({ op: "stats", inputs: [f], params: { field: "v.1" } })).result).toMatchObject({ count: 1, sum: 2 });
    const e = await failure({ op: "stats", inputs: [f], params: { field: "v.length" } });
    expect(e.message).toBe(
      "field=v.length: none of the 2 records read has it (a path splits at dots: a key that holds a dot cannot be named)",
    );
    // A name without a dot: the dotted-path note would mislead.
    expect((await failure({ op: "stats", inputs: [f], params: { field: "w" } })).message).toBe(
      "field=w: none of the 2 records read has it: is it misspelt?",
    );
  });

  it("a field no record has (misspelt, or a key holding a dot) is refused, not answered with no numbers", async () => {
    // Python's json: no record has d["latency"]["ms"]; both have d["latency.ms"].
    const f = await file("dotted.jsonl", '{"latency.ms":5}\n\n{"latency.ms":7,"x":null}\n');
    for (const chunkSize of [1, 7, 4096]) {
      for (const [op, params] of [
        ["stats", { field: "latency.ms" }],
        ["histogram", { field: "latency.ms", min: "0", max: "10" }],
      ] as const) {
        const e = await failure({ op, inputs: [f], params, chunkSize });
        expect(e.code, `${op}, chunks of ${chunkSize}`).toBe(ErrorCode.INVALID_SPEC);
        expect(e.message).toMatch(/^field=latency\.ms: none of the 2 records read has it/);
      }
    }
    // A field that is there but null in every record, or a job of no record, answers as before.
    const nulls = await file("nulls.jsonl", '{"x":null}\n{"x":null}\n');
    expect((await run({ op: "stats", inputs: [nulls], params: { field: "x" } })).result).toMatchObject({ count: 0 });
    const empty = await file("empty.jsonl", "\n");
    expect((await run({ op: "stats", inputs: [empty], params: { field: "v" } })).result).toMatchObject({ count: 0 });
  });

  it("fails on a broken line naming the file and line", async () => {
    const f = await file("bad.jsonl", '{"v":1}\n{"v":2}\n{"v":\n{"v":4}\n');
    for (const chunkSize of [1, 9, 4096]) {
      const e = await failure({ op: "stats", inputs: [f], params: { field: "v" }, chunkSize });
      expect(e.code).toBe(ErrorCode.BAD_RECORD);
      expect(e.describe()).toContain(`${f}:3 `);
      expect(e.describe()).toMatch(/invalid JSON/);
    }
  });

  it("fails on a field that is not a number; needs a field at all", async () => {
    const f = await file("obj.jsonl", '{"v":1}\n{"v":{"x":1}}\n');
    const e = await failure({ op: "stats", inputs: [f], params: { field: "v" } });
    expect(e.code).toBe(ErrorCode.BAD_RECORD);
    expect(e.describe()).toContain(`${f}:2 `);
    const none = await failure({ op: "stats", inputs: [f] });
    expect(none.code).toBe(ErrorCode.INVALID_SPEC);
    expect(none.message).toContain("--param field=");
  });
});

describe("numbers", () => {
  const text = "1\n2\n\nthree\n4\n5,5\n6\n";

  it("fails on a malformed number naming file:line, whichever chunk finds it", async () => {
    const f = await file("n.txt", text);
    for (const chunkSize of [1, 4, 100]) {
      const e = await failure({ op: "stats", inputs: [f], chunkSize });
      expect(e.code).toBe(ErrorCode.BAD_RECORD);
      expect(e.describe()).toMatch(
        new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:(4|6) \\(byte \\d+\\): expected a number, got "(three|5,5)"$`),
      );
    }
    // One chunk: the first bad record in file order.
    expect((await failure({ op: "stats", inputs: [f] })).describe()).toBe(`${f}:4 (byte 5): expected a number, got "three"`);
  });

  it("with onBadRecord: skip, skips and counts bad records in every chunk", async () => {
    const f = await file("skip.txt", text);
    for (const chunkSize of [1, 4, 100]) {
      const { result, status } = await run({ op: "stats", inputs: [f], chunkSize, onBadRecord: "skip" });
      expect(result).toEqual(refStatsOf([1, 2, 4, 6]));
      expect(status.skipped).toBe(2);
      expect(status.state).toBe("succeeded");
    }
    const clean = await run({ op: "stats", inputs: [await file("clean.txt", "1\n2\n")], onBadRecord: "skip" });
    expect(clean.status.skipped).toBeUndefined();
    const h = await run({ op: "histogram", inputs: [f], params: { bins: "2", min: "0", max: "10" }, onBadRecord: "skip" });
    expect(h.result).toEqual({ min: 0, max: 10, bins: [3, 1] });
    expect(h.status.skipped).toBe(2);
  });
});

describe("bytes that are not text", () => {
  const bytes = Buffer.concat([
    Buffer.from("ok \u0000nul\u0000 "),
    Buffer.from([0xff, 0xfe, 0x20, 0xc3, 0x0a, 0xa9, 0x80, 0x80, 0x20, 0xe2, 0x82]), // invalid and cut sequences
    Buffer.from("\n\u0000\n\r\n"),
    Buffer.from([0xef, 0xbb, 0xbf, 0x41, 0x20, 0xf0, 0x9d, 0x84]), // a BOM not at byte 0 is data
  ]);

  it("count, wordcount and grep give the reference result at every chunk size", async () => {
    const f = await file("binary.dat", bytes);
    for (let chunkSize = 1; chunkSize <= bytes.length + 1; chunkSize += 3) {
      expect((await run({ op: "count", inputs: [f], chunkSize })).result).toEqual(refCount(bytes));
      expect((await run({ op: "wordcount", inputs: [f], chunkSize, params: { k: "20" } })).result).toEqual(refWordcount(bytes, 20));
      expect((await run({ op: "grep", inputs: [f], chunkSize, params: { pattern: "\u0000|\ufffd" } })).result).toEqual(
        refGrep(bytes, "\u0000|\ufffd"),
      );
    }
  });

  it("wordcount keeps byte-distinct words distinct even when they decode alike", async () => {
    const f = await file("alike.dat", Buffer.from([0xff, 0x20, 0xfe, 0x20, 0xff]));
    expect((await run({ op: "wordcount", inputs: [f] })).result).toEqual({
      total: 3,
      distinct: 2,
      top: [
        ["\ufffd", 2],
        ["\ufffd", 1],
      ],
    });
  });
});
