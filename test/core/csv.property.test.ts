/**
 * CSV as RFC 4180 has it, end to end: random files whose quoted fields hold separators,
 * doubled quotes, CR, LF and CRLF are read by the engine (split → map → reduce) at chunk sizes
 * from 1 byte up, and every op sees exactly the records Python's csv module reads from the
 * whole file: the rows themselves (a lab op that returns them), `count`, and `stats` over a
 * column. A chunk past an input's start cannot know whether it begins inside quotes; these
 * chunk sizes put boundaries inside quoted newlines, doubled quotes and CRLFs.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { pythonCsvRows, registryWithRows } from "../helpers/csv.js";

const SEED = 20261130;
let dir: string;
let fileNo = 0;

const registry = registryWithRows();

beforeAll(async () => {
  const base = existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
  dir = await mkdtemp(path.join(base, "cloudmill-csv-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const run = async (file: string, op: string, chunkSize: number, params: Record<string, string> = {}, workers = 0) => {
  const workDir = path.join(dir, `work-${fileNo++}`);
  try {
    const spec = parseJobSpec({ op, inputs: [file], format: "csv", params, chunkSize });
    return (await runLocal({ spec, registry, workers, workDir })).result;
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
};

// ---- random RFC 4180 files -----------------------------------------------------------------

const plain = fc.constantFrom("", "a", "bc", "x y", "é", "𝄞", "naïve", "0", "-", "tab\there");
const piece = fc.constantFrom("a", ",", '"', '""', "\n", "\r\n", "\r", "\n\n", " ", "é𝄞", ";", "x");
/** A field as written: quoted (doubling its quotes) when it must be, or at random. */
const field = fc.oneof(
  { weight: 3, arbitrary: plain },
  {
    weight: 2,
    arbitrary: fc.array(piece, { maxLength: 6 }).map((ps) => `"${ps.join("").replaceAll('"', '""')}"`),
  },
);
const number = fc.integer({ min: -1_000_000, max: 1_000_000 }).chain((n) => fc.constantFrom(`${n}`, `"${n}"`));

const csvFile = fc
  .record({
    columns: fc.integer({ min: 2, max: 4 }),
    rows: fc.integer({ min: 0, max: 40 }),
    bom: fc.boolean(),
    finalNewline: fc.boolean(),
  })
  .chain(({ columns, rows: n, bom, finalNewline }) =>
    fc
      .array(fc.tuple(number, fc.array(field, { minLength: columns - 1, maxLength: columns - 1 }), fc.constantFrom("\n", "\r\n")), {
        minLength: n,
        maxLength: n,
      })
      .map((records) => {
        const header = Array.from({ length: columns }, (_, i) => `c${i}`).join(",");
        let text = `${header}\n`;
        for (const [i, [num, rest, end]] of records.entries()) {
          text += [num, ...rest].join(",");
          if (i < records.length - 1 || finalNewline) text += end;
        }
        return Buffer.from((bom ? "\uFEFF" : "") + text, "utf8");
      }),
  );

/** Sizes from a byte up: boundaries fall everywhere, inside quotes and between CR and LF. */
const CHUNK_SIZES = [1, 2, 5, 13, 1_000_000];

describe("CSV with quoted newlines, separators and doubled quotes", () => {
  it("gives every op Python's records at every chunk size", async () => {
    await fc.assert(
      fc.asyncProperty(csvFile, async (bytes) => {
        const file = path.join(dir, `input-${fileNo++}.csv`);
        await writeFile(file, bytes);
        const expected = pythonCsvRows(file);
        const objects = expected.map((r) => Object.fromEntries(r.map((v, i) => [`c${i}`, v])));
        const numbers = expected.map((r) => Number(r[0]));
        for (const chunkSize of CHUNK_SIZES) {
          expect(await run(file, "rows", chunkSize), `rows, chunk size ${chunkSize}`).toEqual(expected.length ? objects : null);
          expect(await run(file, "count", chunkSize), `count, chunk size ${chunkSize}`).toEqual({ records: expected.length });
          if (chunkSize < 13) continue; // stats reads the records count and rows read; a few sizes suffice
          const stats = (await run(file, "stats", chunkSize, { column: "c0" })) as Record<string, number | null>;
          expect(stats.count, `stats, chunk size ${chunkSize}`).toBe(numbers.length);
          if (numbers.length > 0) {
            expect([stats.sum, stats.min, stats.max]).toEqual([
              numbers.reduce((s, x) => s + x, 0),
              Math.min(...numbers),
              Math.max(...numbers),
            ]);
          }
        }
        await rm(file);
      }),
      { seed: SEED, numRuns: 20 },
    );
  }, 240_000);

  it("keeps counting a chunk's quotes after its wrong reading fails on a record too long", async () => {
    // Chunk 2 starts inside a quoted newline. Read as if outside, it meets a quote at once and
    // takes the next 2 MiB for one record, past maxRecordBytes: that reading fails, and the quote
    // that opens a field across the next boundary must still count toward chunk 3's state.
    const C = 4 * 1024 * 1024;
    const fill = (parts: string[], upto: number): void => {
      const n = upto - parts.reduce((k, p) => k + p.length, 0);
      const pad = n % 4;
      if (pad) parts.push(`1,${"2".repeat(pad + 1)}\n`);
      parts.push("1,2\n".repeat((n - (pad ? pad + 4 : 0)) / 4));
    };
    const parts = ["a,b\n"];
    fill(parts, C - 7);
    parts.push('3,"xxxx', '\nY",5\n');
    fill(parts, 2 * C - 7);
    parts.push('4,"pppp', 'q",6\n');
    fill(parts, 2 * C + 4000);
    const file = path.join(dir, "long-wrong-reading.csv");
    await writeFile(file, parts.join(""));
    const expected = pythonCsvRows(file).length;
    for (const workers of [0, 2]) {
      const spec = parseJobSpec({ op: "count", inputs: [file], format: "csv", chunkSize: C, maxRecordBytes: "1MiB" });
      const { result } = await runLocal({ spec, registry, workers, workDir: path.join(dir, `work-${fileNo++}`) });
      expect(result, `${workers} workers`).toEqual({ records: expected });
    }
  }, 120_000);

  it("gives the same on the engine's task threads", async () => {
    const [bytes] = fc.sample(
      csvFile.filter((b) => b.includes('\n"') || b.includes('\n",')),
      { seed: SEED, numRuns: 1 },
    );
    const file = path.join(dir, "threads.csv");
    await writeFile(file, bytes!);
    const expected = pythonCsvRows(file);
    for (const chunkSize of [1, 5, 64]) expect(await run(file, "count", chunkSize, {}, 2)).toEqual({ records: expected.length });
  }, 120_000);
});
