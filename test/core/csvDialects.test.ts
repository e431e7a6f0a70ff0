/**
 * The CSV dialects labs meet: separators sniffed (`separator=auto`) or named by the file
 * (`.tsv`), CRLF, headers whose names cannot key a record, and UTF-16 files. Expected values
 * come from Python's csv module told the true separator.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CloudmillError } from "../../lib/core/errors.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { pythonCsvRows, registryWithRows } from "../helpers/csv.js";

let dir: string;
let n = 0;
const registry = registryWithRows();

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-dialects-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const run = async (file: string, op: string, chunkSize: number, params: Record<string, unknown> = {}, format?: string) => {
  const spec = parseJobSpec({ op, inputs: [file], params, chunkSize, ...(format ? { format } : {}) });
  try {
    const { result, status } = await runLocal({ spec, registry, workers: 0, workDir: path.join(dir, `work-${n++}`) });
    return { ok: true as const, result, status };
  } catch (error) {
    return { ok: false as const, error: error as CloudmillError };
  }
};

const write = async (name: string, text: string): Promise<string> => {
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
};

describe("separator=auto", () => {
  /** A survey export whose quoted notes hold every other candidate separator, and newlines. */
  const survey = (sep: string): string => {
    const lines = [["site", "value", "note"].join(sep)];
    for (let i = 0; i < 60; i++)
      lines.push([`s${i % 7}`, `${i * 3}.${i % 10}`, `"a, b; c\td|e ""${i}""${i % 5 === 0 ? "\r\nmore" : ""}"`].join(sep));
    return `${lines.join("\r\n")}\r\n`;
  };

  it.each([",", ";", "\t", "|"])("finds %j from the header and a sample, reads as Python does, and says what it chose", async (sep) => {
    const file = await write(`survey-${sep.charCodeAt(0)}.txt`, survey(sep));
    const expected = pythonCsvRows(file, sep).map((r) => Number(r[1]));
    for (const chunkSize of [7, 1 << 20]) {
      const r = await run(file, "stats", chunkSize, { separator: "auto", column: "value" }, "csv");
      expect(r.ok, JSON.stringify(r)).toBe(true);
      if (!r.ok) return;
      expect(r.result).toMatchObject({ count: expected.length, min: Math.min(...expected), max: Math.max(...expected) });
      expect(r.status.csv).toEqual([{ input: file, separator: sep }]);
    }
  });

  it("says what it chose when records are read one per line too, and refuses a header longer than what it sniffs", async () => {
    const file = await write("semi-lines.csv", "a;b\n1;2\n3;4\n");
    const r = await run(file, "count", 1 << 20, { separator: "auto", multiline: false });
    expect(r.ok && r.status.csv).toEqual([{ input: file, separator: ";" }]);
    const wide = await write("wide.csv", `${Array.from({ length: 9000 }, (_, i) => `column${i}`).join(";")}\n1;2\n`);
    const w = await run(wide, "count", 1 << 20, { separator: "auto" });
    expect(!w.ok && w.error.describe()).toBe(
      `${wide}:1 (byte 0): separator=auto: the header is longer than the 65536 bytes sniffed; name it with --param separator=…`,
    );
  });

  it("refuses a sample that no candidate splits evenly, naming the file", async () => {
    const file = await write("ragged.csv", "a,b;c\n1,2\n3;4;5;6\n");
    const r = await run(file, "count", 1 << 20, { separator: "auto" });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error.describe()).toBe(
      `${file}:1 (byte 0): separator=auto: none of comma, semicolon, tab or pipe splits every record of the first 3 into the header's fields; ` +
        "name it with --param separator=…",
    );
  });
});

describe("a .tsv input", () => {
  it("is CSV separated by tabs, with no params, and `separator=tab` says the same of any file", async () => {
    const text = 'id\tname\tscore\r\n1\t"Smith, J."\t4.5\r\n2\t"multi\r\nline"\t-2\r\n3\tplain\t7\r\n';
    const tsv = await write("scores.tsv", text);
    const txt = await write("scores.txt", text);
    const expected = pythonCsvRows(tsv, "\t");
    const objects = expected.map(([id, name, score]) => ({ id, name, score }));
    for (const chunkSize of [1, 9, 1 << 20]) {
      expect(await run(tsv, "rows", chunkSize)).toMatchObject({ ok: true, result: objects });
      expect(await run(txt, "rows", chunkSize, { separator: "tab" }, "csv")).toMatchObject({ ok: true, result: objects });
    }
    expect(await run(tsv, "stats", 5, { column: "score" })).toMatchObject({ ok: true, result: { count: 3, sum: 9.5 } });
  });
});

describe("a header whose names cannot key a record", () => {
  it("is refused, naming both columns, where records are keyed by name; counted as usual where they are not", async () => {
    const file = await write("dup.csv", "id,,value,value,\r\n1,a,2,3,b\r\n4,c,5,6,d\r\n");
    const keyed = await run(file, "rows", 1 << 20);
    expect(!keyed.ok && keyed.error.describe()).toBe(
      `${file}:1 (byte 0): header: columns 2 and 5 have no name; columns 3 and 4 are named "value": rename them, or read with header=false`,
    );
    const byName = await run(file, "stats", 1 << 20, { column: "value" });
    expect(!byName.ok && byName.error.describe()).toBe(
      `${file}:1 (byte 0): header: columns 3 and 4 are both named "value": name it by index`,
    );
    expect(await run(file, "stats", 4, { column: 4 })).toMatchObject({ ok: true, result: { count: 2, sum: 9 } });
    expect(await run(file, "count", 3)).toEqual(
      expect.objectContaining({ ok: true, result: { records: pythonCsvRows(file, ",").length } }),
    );
    expect(await run(file, "rows", 3, { header: false })).toMatchObject({
      ok: true,
      result: [["id", "", "value", "value", ""], ...pythonCsvRows(file, ",")],
    });
  });
});

describe("line ends and blank lines around records", () => {
  it("records ending in \\r\\r\\n (Windows' text mode after Python's csv) read as Python reads them, with no \\r in a field", async () => {
    const file = await write("crcrlf.csv", 'v,k\r\r\n1,a\r\r\n"2\r\r\nx",b\r\r\n3,a\r\r\n4,"c"\r\r\n');
    const rows = pythonCsvRows(file, ",");
    expect(rows.flat().some((f) => f.endsWith("\r") && !f.includes("\n"))).toBe(false);
    for (const chunkSize of [2, 3, 5, 7, 13, 1 << 20]) {
      const r = await run(file, "rows", chunkSize, { header: false });
      expect(r, `chunks of ${chunkSize}`).toMatchObject({ ok: true, result: [["v", "k"], ...rows] });
      // By name too: the header's last name is "k", not "k\r".
      const byName = await run(file, "distinct", chunkSize, { key: "k" });
      expect(byName.ok, `chunks of ${chunkSize}: ${!byName.ok && byName.error.message}`).toBe(true);
    }
  });

  it("a blank line before the header is refused, not taken for the header (and the header for a record)", async () => {
    for (const [name, text] of [
      ["blank-lf.csv", "\ncolor\nred\nblue\nred\n"],
      ["blank-crlf.csv", "\r\nk,v\r\na,1\r\n"],
    ] as const) {
      const file = await write(name, text);
      for (const chunkSize of [1, 4, 1 << 20]) {
        const r = await run(file, "count", chunkSize);
        expect(!r.ok && r.error.describe(), `${name}, chunks of ${chunkSize}`).toBe(
          `${file}:1 (byte 0): the header line is blank, and records follow it: remove the blank line(s) before the header, or pass header=false`,
        );
      }
      // Without a header, the blank line is no record, as Python's csv drops it.
      expect(await run(file, "count", 3, { header: false })).toMatchObject({
        ok: true,
        result: { records: pythonCsvRows(file, ",").length + 1 },
      });
    }
    // A file of blank lines alone holds no record, compressed too.
    expect(await run(await write("blank.csv", "\n\r\n\n"), "count", 2)).toMatchObject({ ok: true, result: { records: 0 } });
    const gz = path.join(dir, "blank.csv.gz");
    await writeFile(gz, gzipSync("\n\r\n\n"));
    expect(await run(gz, "count", 2)).toMatchObject({ ok: true, result: { records: 0 } });
  });
});

describe("a column named by index", () => {
  it("past the header's columns is a bad param, not a bad record in every row (which skipping would answer with nothing)", async () => {
    const file = await write("digits.csv", "2,1,x\n10,20,30\n");
    for (const column of [7, "7"]) {
      const r = await run(file, "stats", 4, { column });
      expect(!r.ok && r.error.code).toBe("INVALID_SPEC");
      expect(!r.ok && r.error.message).toMatch(/: no column 7: the header has 3 \(columns: 2, 1, x\)$/);
    }
    // Within it, by index: column 3, whose one number is Python's csv's row 1, field 3.
    expect(await run(file, "stats", 4, { column: 3 })).toMatchObject({ ok: true, result: { count: 1, sum: 30 } });
    expect(Number(pythonCsvRows(file, ",")[0]![2])).toBe(30);
  });
});

describe("a UTF-16 file (Excel's Unicode text)", () => {
  /** Tab-separated, CRLF, a quoted note spanning lines; Ċ (U+010A) and ਊ (U+0A0A) hold 0x0A bytes that are not newlines. */
  const TEXT = 'id\tname\tnote\r\n1\t"Smith, J."\t"first line\r\nsecond ""quoted"""\r\n2\tĊਊ é 𝄞\tplain\r\n3\t"ਊ\tਊ"\t"x\ny"\r\n';
  const encode = (order: "LE" | "BE", text: string): Buffer => {
    const le = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, "utf16le")]);
    return order === "LE" ? le : Buffer.from(le).swap16();
  };

  it.each(["LE", "BE"] as const)("UTF-16%s is decoded: the records Python reads, at any chunk size", async (order) => {
    const file = path.join(dir, `excel-${order}.txt`);
    await writeFile(file, encode(order, TEXT));
    const expected = pythonCsvRows(file, "\t", "utf-16").map(([id, name, note]) => ({ id, name, note }));
    expect(expected).toHaveLength(3);
    for (const chunkSize of [1, 3, 7, 1 << 20]) {
      expect(await run(file, "rows", chunkSize, { separator: "tab" }, "csv"), `chunk size ${chunkSize}`).toEqual(
        expect.objectContaining({ ok: true, result: expected }),
      );
    }
    for (const chunkSize of [5, 1 << 20]) {
      expect(await run(file, "count", chunkSize, { separator: "auto" }, "csv")).toMatchObject({ ok: true, result: { records: 3 } });
    }
  });

  it("longer than the sniffed head: separator=auto weighs its whole records only, as in UTF-8", async () => {
    // 100 records of 2,000 characters: 64 KiB of UTF-16 decodes to 32 KiB, and still cuts a record.
    const text = `a,b,c\n${Array.from({ length: 100 }, (_, i) => `${"x".repeat(2000)},${i},${2 * i}\n`).join("")}`;
    const file = path.join(dir, "long-16.csv");
    await writeFile(file, encode("LE", text));
    const b = pythonCsvRows(file, ",", "utf-16").map((row) => Number(row[1]));
    expect(await run(file, "stats", 1 << 20, { separator: "auto", column: "b" })).toMatchObject({
      ok: true,
      result: { count: b.length, sum: b.reduce((x, y) => x + y, 0) },
    });
  });

  it("names the line and the byte of the file (not of the decoded text) where a quote never closes", async () => {
    const text = `${TEXT}4\tĊ\t"never closed\r\n5\t6\t7\r\n`;
    const file = path.join(dir, "excel-broken.txt");
    await writeFile(file, encode("LE", text));
    const quote = 2 + 2 * text.indexOf('"never');
    for (const chunkSize of [5, 1 << 20]) {
      const r = await run(file, "count", chunkSize, { separator: "tab" }, "csv");
      expect(!r.ok && r.error.describe()).toMatch(new RegExp(`^${file}:7 \\(byte ${quote}\\): unterminated quoted field`));
    }
  });

  it("is refused where the format is not CSV, at any chunk size, never read as UTF-8", async () => {
    const file = path.join(dir, "excel-lines.txt");
    await writeFile(file, encode("LE", TEXT));
    for (const chunkSize of [1, 5, 1 << 20]) {
      const r = await run(file, "count", chunkSize, {}, "lines");
      expect(!r.ok && r.error.describe()).toBe(
        `${file}:1 (byte 0): UTF-16LE text (its byte-order mark): inputs are read as UTF-8; convert it first (iconv -f UTF-16 -t UTF-8)`,
      );
    }
  });
});
