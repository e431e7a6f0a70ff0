/**
 * Inputs cloudmill does not read yet are refused, never answered wrongly: compressed and archive
 * files it does not decode (read as text they would give the records of the compressed bytes),
 * and CSV records with a newline inside quotes (counted by lines they would be two records).
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pythonCsvRows } from "../helpers/csv.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CloudmillError } from "../../lib/core/errors.js";
import { DEFAULTS } from "../../lib/core/constants.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { compressionOf } from "../../lib/core/records/compressed.js";
import { runLocal } from "../../lib/local/localEngine.js";

let dir: string;
const plain = Array.from({ length: 8503 }, (_, i) => `${i + 1}`).join("\n") + "\n";

/** Compressed copies of `plain` made by the real tools (Python's modules for zip, bzip2 and xz; the zstd CLI). */
const compressed: Record<string, string> = {};

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-refusals-"));
  const source = path.join(dir, "n.txt");
  await writeFile(source, plain);
  execFileSync("gzip", ["-k", source]);
  execFileSync("zstd", ["-q", source, "-o", `${source}.zst`]);
  execFileSync("tar", ["-czf", `${source}.tar.gz`, "-C", dir, "n.txt"]);
  execFileSync("sh", ["-c", `gzip -c '${source}.gz' > '${source}.gz.gz'`]);
  execFileSync("python3", [
    "-c",
    "import bz2,lzma,sys,zipfile\n" +
      "d=open(sys.argv[1],'rb').read()\n" +
      "open(sys.argv[1]+'.bz2','wb').write(bz2.compress(d))\n" +
      "open(sys.argv[1]+'.xz','wb').write(lzma.compress(d))\n" +
      "with zipfile.ZipFile(sys.argv[1]+'.zip','w',zipfile.ZIP_DEFLATED) as z: z.write(sys.argv[1],'n.txt')",
    source,
  ]);
  for (const ext of ["bz2", "xz", "zip", "tar.gz", "gz.gz"]) compressed[ext] = `${source}.${ext}`;
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const run = (input: string, op: string, chunkSize: number | string, extra: Record<string, unknown> = {}) =>
  runLocal({ spec: parseJobSpec({ op, inputs: [input], chunkSize, ...extra }), registry: new OpRegistry(), workers: 2 }).then(
    (r) => ({ ok: true as const, result: r.result }),
    (e: unknown) => ({ ok: false as const, error: e }),
  );

describe("a compressed or archive input cloudmill does not decode", () => {
  const cases = [
    ["bz2", "bzip2-compressed data: bzip2 inputs are not read yet", "bunzip2"],
    ["xz", "xz-compressed data: xz inputs are not read yet", "xz -d"],
    // Decoded, a .tar.gz is a tar archive; a .gz of a .gz is gzip again.
    ["tar.gz", "a tar archive: tar inputs are not read yet", "extract"],
    ["gz.gz", "gzip data inside compressed data: it is compressed twice", "decompress it once"],
  ] as const;

  it.each(cases)(".%s fails its job with one line naming the file and what it is, for every op and chunk size", async (ext, what, fix) => {
    for (const [op, params] of [
      ["count", {}],
      ["wordcount", {}],
      ["stats", { format: "lines" }],
    ] as const) {
      for (const chunkSize of [64, 4096, "16MiB"]) {
        const r = await run(compressed[ext]!, op, chunkSize, op === "stats" ? {} : params);
        expect(r.ok, `${op} at ${chunkSize}`).toBe(false);
        const err = (r as { error: CloudmillError }).error;
        expect(err.code).toBe("BAD_RECORD");
        const name = compressed[ext]!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
        expect(err.describe()).toMatch(new RegExp(`^${name}(:1)? \\(byte 0( decompressed)?\\): ${what}`));
        expect(err.message).toContain(fix);
      }
    }
  });

  it("a .zip is read as its entries, not refused: its count is wc's of the file it holds, at every chunk size", async () => {
    const wc = Number(execFileSync("sh", ["-c", `wc -l < '${path.join(dir, "n.txt")}'`], { encoding: "utf8" }).trim());
    for (const chunkSize of [64, 4096, "16MiB"])
      expect(await run(compressed.zip!, "count", chunkSize)).toEqual({ ok: true, result: { records: wc } });
  });

  it("is told from text by its signature: text that merely starts like one passes", async () => {
    expect(compressionOf(Buffer.from("BZh, said the bee\n"))).toBeUndefined();
    expect(compressionOf(Buffer.from("PK is a column\n"))).toBeUndefined();
    expect(compressionOf(Buffer.from([0x1f]))).toBeUndefined();
    const bzhText = path.join(dir, "bzh.txt");
    await writeFile(bzhText, "BZh9 is not bzip2\nsecond line\n");
    expect(await run(bzhText, "count", 4)).toEqual({ ok: true, result: { records: 2 } });
    // The uncompressed data itself is counted as usual (seq's lines, counted by wc).
    const wc = Number(
      execFileSync("wc", ["-l", path.join(dir, "n.txt")], { encoding: "utf8" })
        .trim()
        .split(/\s+/)[0],
    );
    expect(await run(path.join(dir, "n.txt"), "count", 1024)).toEqual({ ok: true, result: { records: wc } });
  });
});

describe("`count` over CSV", () => {
  /** Python's csv module's count of data rows (after the header). */
  const pythonRows = (file: string): number =>
    Number(
      execFileSync("python3", ["-c", "import csv,sys\nprint(sum(1 for r in csv.reader(open(sys.argv[1],newline='')) if r)-1)", file], {
        encoding: "utf8",
      }).trim(),
    );

  it("counts the rows Python's csv module reads when quotes hold separators and doubled quotes, at any chunk size", async () => {
    const rows = ["id,note", ...Array.from({ length: 100 }, (_, i) => `${i},"a, ""quoted"" note ${i}"`)];
    const file = path.join(dir, "quoted.csv");
    await writeFile(file, `${rows.join("\n")}\n`);
    for (const chunkSize of [2, 7, 1024]) {
      expect(await run(file, "count", chunkSize, { format: "csv" })).toEqual({ ok: true, result: { records: pythonRows(file) } });
    }
  });

  it("counts a record whose quoted field holds a newline once, as Python does, at any chunk size", async () => {
    const file = path.join(dir, "multiline.csv");
    const text = 'a,b\n1,"x\ny"\n2,z\n';
    await writeFile(file, text);
    for (const chunkSize of [1, 5, 1024]) {
      expect(await run(file, "count", chunkSize, { format: "csv" }), `chunk size ${chunkSize}`).toEqual({
        ok: true,
        result: { records: pythonRows(file) },
      });
    }
  });

  it("with multiline=false refuses a newline inside quotes, naming line and byte, rather than counting the record twice", async () => {
    const file = path.join(dir, "multiline.csv");
    const text = 'a,b\n1,"x\ny"\n2,z\n';
    await writeFile(file, text);
    expect(pythonRows(file)).toBe(2);
    for (const chunkSize of [1, 5, 1024]) {
      const r = await run(file, "count", chunkSize, { format: "csv", params: { multiline: "false" } });
      expect(r.ok, `chunk size ${chunkSize}`).toBe(false);
      expect((r as { error: CloudmillError }).error.describe()).toBe(
        `${file}:2 (byte ${text.indexOf('"x')}): unterminated quoted field (column 2): with multiline=false a quoted field may not hold a newline`,
      );
    }
  });
});

describe("a job's own maxRecordBytes", () => {
  it("refuses a longer record of a CSV, naming its line and byte; skips it on request, the rest read as Python reads them", async () => {
    const file = path.join(dir, "long-note.csv");
    const note = "n".repeat(1536 * 1024);
    const text = `id,v,note\n1,2,a\n2,5,"${note}"\n3,4,b\n`;
    await writeFile(file, text);
    for (const chunkSize of ["64KiB", "16MiB"]) {
      const r = await run(file, "stats", chunkSize, { format: "csv", params: { column: "v" }, maxRecordBytes: "1MiB" });
      expect(r.ok || (r.error as CloudmillError).describe(), `chunk size ${chunkSize}`).toBe(
        `${file}:3 (byte 16): record longer than 1048576 bytes (maxRecordBytes): it is not read into memory`,
      );
      const skipped = await run(file, "stats", chunkSize, {
        format: "csv",
        params: { column: "v" },
        maxRecordBytes: "1MiB",
        onBadRecord: "skip",
      });
      expect(skipped).toMatchObject({ ok: true, result: { count: 2, sum: 6 } });
    }
    // The default (64 MiB) reads it, as Python does.
    expect(await run(file, "count", "64KiB", { format: "csv" })).toEqual({ ok: true, result: { records: pythonCsvRows(file).length } });
  });

  it("is at least 1 MiB, the most a store reads at once", () => {
    expect(() => parseJobSpec({ op: "count", inputs: ["x"], maxRecordBytes: "512KiB" })).toThrow(/maxRecordBytes: must be at least 1MiB/);
  });
});

describe("a record longer than maxRecordBytes (64 MiB)", () => {
  let file: string;
  const long = DEFAULTS.maxRecordBytes + 1024 * 1024;
  beforeAll(async () => {
    file = path.join(dir, "one-long-line.txt");
    const out = Buffer.alloc(10 + long + 1 + 18, "x");
    out.write("short one\n", 0);
    out[10 + long] = 0x0a;
    out.write("after it\nand more\n", 10 + long + 1);
    await writeFile(file, out);
  });

  it("fails the job with BAD_RECORD naming its line and byte, whatever the chunk size, never read into memory", async () => {
    for (const chunkSize of ["1MiB", "16MiB", "128MiB"]) {
      const r = await run(file, "count", chunkSize);
      expect(r.ok, `chunk size ${chunkSize}`).toBe(false);
      expect((r as { error: CloudmillError }).error.describe()).toBe(
        `${file}:2 (byte 10): record longer than ${DEFAULTS.maxRecordBytes} bytes (maxRecordBytes): it is not read into memory`,
      );
    }
  });

  it("is skipped with onBadRecord: skip, the rest counted exactly (wc and Python agree)", async () => {
    const lines = Number(execFileSync("wc", ["-l", file], { encoding: "utf8" }).trim().split(/\s+/)[0]);
    const words = Number(
      execFileSync(
        "python3",
        ["-c", "import sys\nprint(sum(len(l.split()) for l in open(sys.argv[1],'rb') if len(l) <= 64*2**20))", file],
        {
          encoding: "utf8",
        },
      ).trim(),
    );
    for (const chunkSize of ["1MiB", "16MiB", "128MiB"]) {
      expect(await run(file, "count", chunkSize, { onBadRecord: "skip" })).toEqual({ ok: true, result: { records: lines - 1 } });
      const w = await run(file, "wordcount", chunkSize, { onBadRecord: "skip" });
      expect((w as { result: { total: number } }).result.total).toBe(words);
    }
  });
});

describe("text cloudmill would misread", () => {
  /** The error a local run ends with, described, or the result. */
  const outcome = async (file: string, op: string, chunkSize: number, extra: Record<string, unknown> = {}) => {
    const r = await run(file, op, chunkSize, extra);
    return r.ok ? r.result : (r.error as CloudmillError).describe();
  };

  it("refuses CSV whose records end in a carriage return alone (old Mac), where Python reads rows; CR inside quotes stays", async () => {
    const file = path.join(dir, "mac.csv");
    await writeFile(file, "a,b\r1,2\r3,4\r");
    // Python's csv reads two rows; read at line feeds the file would be its header alone, and count 0.
    expect(pythonCsvRows(file).length).toBe(2);
    for (const op of ["count", "stats"])
      for (const chunkSize of [3, 1024])
        expect(await outcome(file, op, chunkSize, { format: "csv", params: op === "stats" ? { column: "b" } : {} })).toMatch(
          new RegExp(`^${file}:1 \\(byte 3\\): a record ends in a carriage return alone \\(old Mac line ends\\)`),
        );
    // In UTF-16 too, the offset the file's own (a byte-order mark and "a,b" before it).
    const utf16 = path.join(dir, "mac16.csv");
    await writeFile(utf16, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from("a,b\r1,2\r", "utf16le")]));
    expect(await outcome(utf16, "count", 1024, { format: "csv" })).toMatch(
      new RegExp(`^${utf16}:1 \\(byte 8\\): a record ends in a carriage`),
    );
    // A carriage return inside quotes is the field's; CRLF ends records as ever, and so does
    // \r\r\n (Python's csv writer through Windows' text mode).
    const quoted = path.join(dir, "cr-quoted.csv");
    await writeFile(quoted, 'a,b\r\n1,"x\ry"\r\n3,4\r\n');
    expect(await outcome(quoted, "count", 4, { format: "csv" })).toEqual({ records: pythonCsvRows(quoted).length });
    const doubled = path.join(dir, "crcrlf.csv");
    await writeFile(doubled, "a,b\r\r\n1,2\r\r\n3,4\r\r\n");
    expect(await outcome(doubled, "count", 4, { format: "csv" })).toEqual({ records: pythonCsvRows(doubled).length });
    // With multiline=false quotes pair up within a line: a quote kept in an unquoted field (5'10")
    // does not make a later quoted carriage return look unquoted.
    const inches = path.join(dir, "inches.csv");
    await writeFile(inches, 'a,b\n5\'10",x\n1,"p\rq"\n');
    expect(await outcome(inches, "count", 4, { format: "csv", params: { multiline: "false" } })).toEqual({
      records: pythonCsvRows(inches).length,
    });
    // With separator=auto too: the sniff reads quotes across lines, and must not refuse for them
    // (enough plain rows first for it to choose the separator from).
    const sniffed = path.join(dir, "inches-sniffed.csv");
    const rows = Array.from({ length: 60 }, (_, i) => `r${i},${i}\n`).join("");
    await writeFile(sniffed, `a,b\n${rows}5'10",x\n1,"p\rq"\n`);
    expect(await outcome(sniffed, "count", 64, { format: "csv", params: { multiline: "false", separator: "auto" } })).toEqual({
      records: pythonCsvRows(sniffed).length,
    });
    // One alone inside an unquoted field, in a file of line feeds: Python ends a record there (3 rows, not 2).
    const stray = path.join(dir, "stray-cr.csv");
    await writeFile(stray, "a,b\n1,x\ry\n3,4\n");
    expect(pythonCsvRows(stray).length).toBe(3);
    expect(await outcome(stray, "count", 4, { format: "csv" })).toBe(
      `${stray}:2 (byte 7): a carriage return alone outside quotes: CSV readers disagree on it (Python's ends the record there); ` +
        "quote the field that holds it, or remove it",
    );
  });

  it("refuses a carriage return alone past a CSV's first 64 KiB too (Mac line ends joined on), at every chunk size", async () => {
    const head = Array.from({ length: 12_000 }, (_, i) => `${i},${i % 13}\n`).join("");
    const tail = Array.from({ length: 50 }, (_, i) => `${i},${i % 7}\r`).join("");
    const file = path.join(dir, "joined-mac.csv");
    await writeFile(file, `k,v\n${head}${tail}`);
    const bytes = await readFile(file);
    expect(bytes.indexOf("\r")).toBeGreaterThan(64 * 1024);
    // Python's csv ends a record at each of them: read at line feeds, 50 rows would be one.
    expect(pythonCsvRows(file).length).toBe(12_050);
    const at = bytes.indexOf("\r");
    for (const op of ["count", "stats"])
      for (const chunkSize of [4096, 100_000, 1 << 20]) {
        const got = await outcome(file, op, chunkSize, { format: "csv", params: op === "stats" ? { column: "v" } : {} });
        expect(got, `${op} at ${chunkSize}`).toMatch(
          new RegExp(`^${file}:\\d+ \\(byte ${at}\\): a record ends in a carriage return alone`),
        );
      }
    // CRLF throughout, and carriage returns inside quotes past 64 KiB, read as Python reads them.
    const crlf = path.join(dir, "crlf-long.csv");
    await writeFile(crlf, `k,v\r\n${head.replaceAll("\n", "\r\n")}1,"a\rb"\r\n`);
    expect(await outcome(crlf, "count", 4096, { format: "csv" })).toEqual({ records: pythonCsvRows(crlf).length });
  });

  it("refuses UTF-32 (whose LE mark starts like UTF-16's), naming it, as lines and as CSV", async () => {
    for (const [name, bytes] of [
      ["le", Buffer.concat([Buffer.from([0xff, 0xfe, 0, 0]), Buffer.from("a\0\0\0,\0\0\0b\0\0\0\n\0\0\0")])],
      ["be", Buffer.concat([Buffer.from([0, 0, 0xfe, 0xff]), Buffer.from("\0\0\0a\0\0\0,\0\0\0b\0\0\0\n")])],
    ] as const) {
      const file = path.join(dir, `u32${name}.csv`);
      await writeFile(file, bytes);
      for (const format of ["csv", "lines"])
        expect(await outcome(file, "count", 1024, { format })).toBe(
          `${file}:1 (byte 0): UTF-32${name.toUpperCase()} text (its byte-order mark): inputs are read as UTF-8 (CSV also as UTF-16); ` +
            "convert it first (iconv -f UTF-32 -t UTF-8)",
        );
    }
  });

  it("refuses UTF-16 CSV cut short (an odd last byte) or holding a lone surrogate, where Python's decoder fails; pairs pass", async () => {
    const bom = Buffer.from([0xff, 0xfe]);
    const odd = path.join(dir, "odd16.csv");
    // "a,b\n1,2" and the first byte of "3": 2 + 14 bytes before it.
    await writeFile(odd, Buffer.concat([bom, Buffer.from("a,b\n1,2", "utf16le"), Buffer.from("3")]));
    expect(() =>
      execFileSync("python3", ["-c", "open(__import__('sys').argv[1],encoding='utf-16').read()", odd], { stdio: "pipe" }),
    ).toThrow(/UnicodeDecodeError/);
    for (const op of ["count", "stats"])
      expect(await outcome(odd, op, 1024, { format: "csv", params: op === "stats" ? { column: "b" } : {} })).toBe(
        `${odd}:2 (byte 16): UTF-16 text ends in half a character (an odd number of bytes): is the file cut short?`,
      );
    const lone = path.join(dir, "lone16.csv");
    await writeFile(lone, Buffer.concat([bom, Buffer.from("a,b\n1,", "utf16le"), Buffer.from([0x00, 0xd8]), Buffer.from("\n", "utf16le")]));
    expect(await outcome(lone, "count", 1024, { format: "csv" })).toBe(
      `${lone}:2 (byte 14): a UTF-16 surrogate without its pair: not UTF-16 text`,
    );
    const pairs = path.join(dir, "pairs16.csv");
    await writeFile(pairs, Buffer.concat([bom, Buffer.from("a,b\n\u{1F600},2\n3,\u{1F601}\n", "utf16le")]));
    expect(await outcome(pairs, "count", 1024, { format: "csv" })).toEqual({ records: pythonCsvRows(pairs, ",", "utf-16").length });
  });

  it("a jsonl number past a double's range is named as such, not as the null JSON.stringify would show", async () => {
    const file = path.join(dir, "inf.jsonl");
    await writeFile(file, '{"v":1}\n{"v":1e400}\n');
    expect(await outcome(file, "histogram", 1024, { format: "jsonl", params: { field: "v", min: "0", max: "2" } })).toBe(
      `${file}:2 (byte 8): field v: number out of range`,
    );
  });

  it("reads text with `ustar` at byte 257 (custard) as text; a real tar (GNU tar's) is still refused", async () => {
    const custard = path.join(dir, "custard.txt");
    await writeFile(custard, `${"x".repeat(257)}ustard pie\n${"y\n".repeat(300)}`);
    const wc = Number(execFileSync("sh", ["-c", `wc -l < '${custard}'`], { encoding: "utf8" }).trim());
    expect(await outcome(custard, "count", 1024)).toEqual({ records: wc });
    const tar = path.join(dir, "n.tar");
    execFileSync("tar", ["-cf", tar, "-C", dir, "n.txt"]);
    expect(await outcome(tar, "count", 1024)).toMatch(/\(byte 0\): a tar archive: tar inputs are not read yet/);
  });
});
