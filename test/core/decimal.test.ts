/**
 * Numbers read from bytes and summed exactly as written: the fast parser against JavaScript's
 * own (correctly rounded) Number() and exact BigInt fractions, the exact decimal sums and the
 * one rounding against an independent long division, and stats end to end against Python's
 * Fraction over numbers files and CSV columns at many chunk sizes.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { DecimalSum, ratioToDouble } from "../../lib/core/ops/exactDecimal.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { decimalAt, type DecimalSink } from "../../lib/core/records/decimal.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { roundRatio } from "../helpers/reference.js";

const run = promisify(execFile);

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-decimal-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The exact value of a decimal text as BigInt numerator over 10^tens (written here, not shared with the parser). */
const exact = (text: string): { num: bigint; tens: number } => {
  const t = text.trim();
  const negative = t.startsWith("-");
  const body = t.replace(/^[+-]/, "");
  const [mantissa = "", exponent = "0"] = body.split(/[eE]/);
  const [whole = "", frac = ""] = mantissa.split(".");
  const num = BigInt(`${whole}${frac}` || "0") * (negative ? -1n : 1n);
  const tens = frac.length - Number(exponent);
  return tens >= 0 ? { num, tens } : { num: num * 10n ** BigInt(-tens), tens: 0 };
};

const same = (a: { num: bigint; tens: number }, b: { num: bigint; tens: number }): boolean => {
  const tens = Math.max(a.tens, b.tens);
  return a.num * 10n ** BigInt(tens - a.tens) === b.num * 10n ** BigInt(tens - b.tens);
};

/** What decimalAt hands a sink, as one value. */
const read = (text: string): { x: number; num: bigint; tens: number; path: "small" | "big" } | undefined => {
  let got: { x: number; num: bigint; tens: number; path: "small" | "big" } | undefined;
  const sink: DecimalSink = {
    small: (x, m, scale) => {
      expect(Number.isInteger(m) && Math.abs(m) < 2 ** 52).toBe(true);
      got = { x, num: BigInt(m), tens: scale, path: "small" };
    },
    big: (x, m, scale) => void (got = { x, num: m, tens: scale, path: "big" }),
  };
  const b = Buffer.from(text, "latin1");
  return decimalAt(b, 0, b.length, 100, sink) ? got : undefined;
};

/** Decimal spellings: sign, digits around an optional point, an optional exponent, blanks around. */
const decimalText = fc
  .tuple(
    fc.constantFrom("", "-", "+"),
    fc.stringMatching(/^\d{0,20}$/),
    fc.option(fc.stringMatching(/^\d{0,20}$/), { nil: undefined }),
    fc.option(fc.tuple(fc.constantFrom("e", "E"), fc.constantFrom("", "-", "+"), fc.integer({ min: 0, max: 40 })), { nil: undefined }),
    fc.constantFrom("", " ", "\t", "\r"),
  )
  .filter(([, whole, frac]) => (whole + (frac ?? "")).length > 0)
  .map(
    ([sign, whole, frac, exp, blank]) =>
      `${blank}${sign}${whole}${frac === undefined ? "" : `.${frac}`}${exp ? `${exp[0]}${exp[1]}${exp[2]}` : ""}${blank}`,
  );

describe("reading a number from bytes", () => {
  it("gives Number()'s double and the exact decimal for any spelling, fast or not", () => {
    fc.assert(
      fc.property(decimalText, (text) => {
        const got = read(text);
        const x = Number(text.trim());
        if (x === 0 && /[1-9]/.test(text.split(/[eE]/)[0]!)) {
          // Below the double range: refused, as before (never summed as 0).
          expect(() => read(text)).toThrow(/out of range/);
          return;
        }
        if (!Number.isFinite(x)) return;
        expect(got).toBeDefined();
        expect(Object.is(got!.x, x)).toBe(true);
        expect(same(got!, exact(text))).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it("takes common numbers on the fast path and the rest on the exact one", () => {
    expect(read("123.4500")?.path).toBe("small");
    expect(read("-1e5")?.path).toBe("small");
    expect(read("999999999999999")?.path).toBe("small"); // 15 digits
    expect(read("1234567890123456")?.path).toBe("big"); // 16 digits
    expect(read("1e-30")?.path).toBe("big"); // scale past 22
    const long = read("0.12345678901234567890123");
    expect(long).toMatchObject({ path: "big", num: 12345678901234567890123n, tens: 23 });
  });

  it("refuses what is not a number with the offset of its first byte, and skips blanks", () => {
    expect(read("   \t")).toBeUndefined();
    for (const [text, at] of [
      ["  1,5", 102],
      ["0x10", 100],
      ["1e", 100],
      [" -", 101],
      ["1.2.3", 100],
      ["NaN", 100],
    ] as const) {
      let err: unknown;
      try {
        read(text);
      } catch (e) {
        err = e;
      }
      expect(err, text).toBeInstanceOf(CloudmillError);
      expect((err as CloudmillError).code).toBe(ErrorCode.BAD_RECORD);
      expect((err as CloudmillError).context.offset, text).toBe(at);
    }
  });
});

describe("exact decimal sums", () => {
  it("equal BigInt sums for numbers on both paths, squares past 2^52 included, in any order", () => {
    const item = fc.oneof(
      fc.tuple(fc.integer({ min: -(2 ** 52) + 1, max: 2 ** 52 - 1 }), fc.integer({ min: 0, max: 22 })),
      fc.tuple(fc.integer({ min: -(2 ** 26), max: 2 ** 26 }), fc.integer({ min: 0, max: 4 })),
      fc.tuple(fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }), fc.integer({ min: 0, max: 60 })),
    );
    fc.assert(
      fc.property(fc.array(item, { maxLength: 300 }), (items) => {
        const sum = new DecimalSum();
        const squares = new DecimalSum();
        let s = 0n;
        let q = 0n;
        const top = 120;
        for (const [m, scale] of items) {
          if (typeof m === "number") {
            sum.add(m, scale);
            squares.addSquare(m, 2 * scale);
          } else {
            sum.addBig(m, scale);
            squares.addBig(m * m, 2 * scale);
          }
          const v = BigInt(m);
          s += v * 10n ** BigInt(top - scale);
          q += v * v * 10n ** BigInt(2 * top - 2 * scale);
        }
        const got = sum.value();
        const gotSquares = squares.value();
        expect(got.m * 10n ** BigInt(top - got.scale)).toBe(s);
        expect(gotSquares.m * 10n ** BigInt(2 * top - gotSquares.scale)).toBe(q);
        if (got.m !== 0n) expect(got.scale === 0 || got.m % 10n !== 0n).toBe(true); // no trailing zero kept
      }),
      { numRuns: 400 },
    );
  });

  it("carries through the units of 2^52 and past them into bigints", () => {
    const sum = new DecimalSum();
    const squares = new DecimalSum();
    const m = 2 ** 52 - 1;
    for (let i = 0; i < 5000; i++) {
      sum.add(m, 0);
      squares.addSquare(m, 0);
    }
    expect(sum.value()).toEqual({ m: 5000n * BigInt(m), scale: 0 });
    expect(squares.value()).toEqual({ m: 5000n * BigInt(m) ** 2n, scale: 0 });
  });

  it("round once to the nearest double, ties to even, subnormals and overflow included", () => {
    const ratio = fc.tuple(
      fc.bigInt({ min: -(1n << 1200n), max: 1n << 1200n }),
      fc.bigInt({ min: 1n, max: 1n << 1200n }),
      fc.integer({ min: 0, max: 1100 }),
    );
    fc.assert(
      fc.property(ratio, ([p, q, shift]) => {
        for (const [a, b] of [
          [p, q],
          [p, q << BigInt(shift)],
          [p << BigInt(shift), q],
        ] as const) {
          expect(ratioToDouble(a, b) === roundRatio(a, b)).toBe(true); // ±0 alike: a negative that rounds to 0 may be either
        }
      }),
      { numRuns: 2000 },
    );
    expect(ratioToDouble((1n << 53n) + 1n, 1n)).toBe(2 ** 53); // tie → even
    expect(ratioToDouble((1n << 53n) + 3n, 1n)).toBe(2 ** 53 + 4);
    expect(ratioToDouble(1n, 3n)).toBe(1 / 3);
    expect(ratioToDouble(3n, 1n << 1075n)).toBe(2 * 2 ** -1074); // 1.5 ulp of the smallest subnormal → even
    expect(ratioToDouble(1n, 1n << 1076n)).toBe(0); // a quarter of it rounds to 0
    expect(ratioToDouble(-(10n ** 309n), 1n)).toBe(-Infinity);
    expect(ratioToDouble(2n ** 1024n - 2n ** 970n, 1n)).toBe(Infinity); // the halfway point past MAX_VALUE
    expect(ratioToDouble(2n ** 1024n - 2n ** 970n - 1n, 1n)).toBe(Number.MAX_VALUE);
  });
});

/** Python's stats over the file's numbers, with Fraction of each text: exact, rounded once. */
const pythonStats = async (file: string, column?: number, separator = ","): Promise<unknown> => {
  const script = `
import csv, json, sys
from fractions import Fraction
if hasattr(sys, 'set_int_max_str_digits'): sys.set_int_max_str_digits(0)
f, col, sep = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if col < 0:
    texts = [l.strip(' \\t\\r\\v\\f') for l in open(f, encoding='latin-1').read().split('\\n')]
else:
    if len(sep) == 1:
        rows = list(csv.reader(open(f, newline='', encoding='utf-8'), delimiter=sep))[1:]
    else:
        rows = [l.split(sep) for l in open(f, encoding='utf-8').read().split('\\n')[1:] if l != '']
    texts = [r[col].strip() for r in rows if any(c.strip() for c in r)]
xs = [Fraction(t) for t in texts if t != '']
n = len(xs)
if n == 0:
    print(json.dumps({'count': 0, 'sum': 0, 'min': None, 'max': None, 'mean': None, 'variance': None}))
else:
    s = sum(xs)
    q = sum(x * x for x in xs)
    print(json.dumps({'count': n, 'sum': float(s), 'min': float(min(xs)), 'max': float(max(xs)),
                      'mean': float(s / n), 'variance': float((n * q - s * s) / (n * n))}))
`;
  const { stdout } = await run("python3", ["-c", script, file, String(column ?? -1), separator], { maxBuffer: 1 << 26 });
  return JSON.parse(stdout);
};

const statsOf = async (file: string, chunkSize: number, params: Record<string, string> = {}): Promise<unknown> =>
  (await runLocal({ spec: parseJobSpec({ op: "stats", inputs: [file], chunkSize, params }), registry: new OpRegistry(), workers: 0 }))
    .result;

describe("stats against Python's Fraction", () => {
  /** Lines of numbers of every shape: fast ones, long ones, exponents, blanks, CRLF, signs. */
  const numberLines = (seed: number, count: number): string[] => {
    let state = seed;
    const next = (): number => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state / 2 ** 31;
    };
    const lines: string[] = [];
    for (let i = 0; i < count; i++) {
      const r = next();
      const sign = next() < 0.4 ? "-" : next() < 0.1 ? "+" : "";
      if (r < 0.05) lines.push(next() < 0.5 ? "" : " \t");
      else if (r < 0.4) lines.push(`${sign}${(next() * 1e4).toFixed(Math.floor(next() * 7))}`);
      else if (r < 0.6) lines.push(`${sign}${Math.floor(next() * 2 ** 40)}`);
      else if (r < 0.7)
        lines.push(`${sign}${Math.floor(next() * 1e9)}.${String(Math.floor(next() * 1e12)).padStart(12, "0")}`); // 21 digits
      else if (r < 0.8) lines.push(`${sign}${(next() * 10).toFixed(3)}e${Math.floor(next() * 60) - 30}`);
      else if (r < 0.9) lines.push(` ${sign}0.${"0".repeat(Math.floor(next() * 30))}${Math.floor(next() * 1e6)}\r`);
      else lines.push(`${sign}${Math.floor(next() * 1e8)}.${Math.floor(next() * 1e8)}`);
    }
    return lines;
  };

  it("equals Python on numbers of every shape at many chunk sizes", async () => {
    const file = path.join(dir, "shapes.txt");
    await writeFile(file, `${numberLines(7, 4000).join("\n")}\n`);
    const want = await pythonStats(file);
    for (const chunkSize of [97, 1000, 4096, 1 << 20]) expect(await statsOf(file, chunkSize), `chunk ${chunkSize}`).toEqual(want);
  });

  it("equals Python on a CSV column, plain and quoted rows mixed, at many chunk sizes", async () => {
    const lines = numberLines(11, 3000);
    const rows = ["id,value,note"];
    for (const [i, v] of lines.entries()) {
      const value = i % 9 === 0 ? `"${v.trim()}"` : v.replace(/\r$/, "");
      const note = i % 13 === 0 ? '"a, ""quoted""\nnote"' : `n${i}`;
      rows.push(`${i},${value},${note}`);
    }
    const file = path.join(dir, "values.csv");
    await writeFile(file, `${rows.join("\n")}\n`);
    const want = await pythonStats(file, 1);
    for (const chunkSize of [101, 2048, 1 << 20]) {
      expect(await statsOf(file, chunkSize, { column: "value" }), `chunk ${chunkSize}`).toEqual(want);
      expect(await statsOf(file, chunkSize, { column: "2" }), `chunk ${chunkSize}`).toEqual(want);
    }
  });

  it("equals Python with tab, space and two-byte separators, empty fields included, at many chunk sizes", async () => {
    const values = numberLines(13, 600).map((v) => v.trim());
    for (const [name, separator] of [
      ["tab", "\t"],
      ["space", " "],
      ["colons", "::"],
    ] as const) {
      const rows = [["id", "value", "note"].join(separator)];
      // Empty ids, values and notes beside each other: an empty field must never read its neighbour.
      for (const [i, v] of values.entries()) rows.push([i % 5 === 0 ? "" : String(i), v, i % 3 === 0 ? "" : String(i * 7)].join(separator));
      const file = path.join(dir, `values-${name}.csv`);
      await writeFile(file, `${rows.join("\n")}\n`);
      for (const column of [0, 1, 2]) {
        const want = await pythonStats(file, column, separator);
        for (const chunkSize of [89, 1 << 20]) {
          const got = await statsOf(file, chunkSize, { column: String(column + 1), separator });
          expect(got, `${name}, column ${column + 1}, chunk ${chunkSize}`).toEqual(want);
        }
      }
    }
  });

  it("reads a long spelling of a small number at once, and refuses more digits than any double needs", async () => {
    const file = path.join(dir, "long.txt");
    await writeFile(file, `1${"0".repeat(200_000)}e-200000\n2.5\n`);
    expect(await statsOf(file, 1 << 20)).toEqual(await pythonStats(file));
    const tooLong = path.join(dir, "too-long.txt");
    await writeFile(tooLong, `1\n0.${"3".repeat(1101)}\n`);
    await expect(statsOf(tooLong, 1 << 20)).rejects.toThrow(/too-long\.txt:2 \(byte 2\): a number with more than 1100 significant digits/);
  });

  it("names the CSV line and byte of a value that is not a number, and of a row without the column", async () => {
    const bad = path.join(dir, "bad.csv");
    await writeFile(bad, "a,b\n1,2\n3,x4\n");
    await expect(statsOf(bad, 1 << 20, { column: "b" })).rejects.toThrow(/bad\.csv:3 \(byte 8\): expected a number, got "x4"/);
    const short = path.join(dir, "short.csv");
    await writeFile(short, "a,b\n1,2\n3\n");
    await expect(statsOf(short, 1 << 20, { column: "b" })).rejects.toThrow(
      /short\.csv:3 \(byte 8\): expected 2 fields \(as in the header\), got 1/,
    );
    // With no header, rows may differ in length: one without the column is what is refused.
    const bare = path.join(dir, "bare.csv");
    await writeFile(bare, "1,2\n3\n");
    await expect(statsOf(bare, 1 << 20, { column: "2", header: "false" })).rejects.toThrow(
      /bare\.csv:2 \(byte 4\): no column 2 \(the row has 1\)/,
    );
  });
});
