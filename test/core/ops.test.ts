/**
 * The built-in ops on their own: map blocks of whole records, merge partials (as JSON, as
 * parts are stored), finalize. Merging must not depend on order or chunking; params are
 * validated with one-line messages naming the param.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import type { Format } from "../../lib/core/job/spec.js";
import { count } from "../../lib/core/ops/count.js";
import { grep } from "../../lib/core/ops/grep.js";
import { histogram } from "../../lib/core/ops/histogram.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { stats } from "../../lib/core/ops/stats.js";
import { type AnyOp, type MapContext, namesContext } from "../../lib/core/ops/types.js";
import { wordcount } from "../../lib/core/ops/wordcount.js";
import type { RecordBlock } from "../../lib/core/records/alignedBlocks.js";
import { exactSum, refCount, refGrep, refHistogram, refStats, refStatsOf, refWordcount, roundRatio } from "../helpers/reference.js";

const SEED = 4242;

const ctxOf = (format: Format, inputIndex = 0, inputName = "in.txt"): MapContext => ({
  inputIndex,
  inputName,
  format,
  bad(error) {
    throw error;
  },
});

/** Cuts text into blocks of whole records at the given record boundaries (as the reader would). */
const blocksOf = (bytes: Buffer, cuts: readonly number[]): RecordBlock[] => {
  const starts = [0];
  let i = bytes.indexOf(0x0a);
  while (i >= 0 && i + 1 < bytes.length) {
    starts.push(i + 1);
    i = bytes.indexOf(0x0a, i + 1);
  }
  const at = [...new Set([0, ...cuts.map((c) => starts[c % starts.length]!)])].sort((a, b) => a - b);
  return at
    .map((s, j) => ({ bytes: bytes.subarray(s, at[j + 1] ?? bytes.length), offset: s, first: s === 0 }))
    .filter((b) => b.bytes.length > 0);
};

/** Maps each block as its own chunk; partials go through JSON, as part objects do. */
const partialsOf = (op: AnyOp, params: unknown, blocks: readonly RecordBlock[], format: Format, inputIndex = 0): unknown[] =>
  blocks.map((block) => {
    const mapper = op.mapper(params, ctxOf(format, inputIndex));
    mapper.block(block);
    return JSON.parse(JSON.stringify(mapper.finish())) as unknown;
  });

const merged = (op: AnyOp, params: unknown, partials: readonly unknown[], inputs: readonly string[] = ["in.txt"]): unknown => {
  const m = op.merger(params);
  for (const p of partials) m.add(JSON.parse(JSON.stringify(p)));
  return JSON.parse(JSON.stringify(op.finalize(m.value(), params, namesContext(inputs))));
};

/** Runs op over the whole text as one chunk. */
const runOp = (op: AnyOp, raw: Record<string, string>, text: string | Buffer, format: Format = op.formats[0]!): unknown => {
  const params = op.parseParams(raw);
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
  return merged(op, params, bytes.length ? partialsOf(op, params, [{ bytes, offset: 0, first: true }], format) : []);
};

const errorOf = (fn: () => unknown): CloudmillError => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CloudmillError);
    return err as CloudmillError;
  }
  throw new Error("expected an error");
};

// ---- merging does not depend on chunking or order ----------------------------------------

const sampleText = Buffer.from(
  ["the cat", "", "The cat sat", "é € 𝄞 é", "  \tsat on\vthe\fmat  ", "cat\r", "a b c d e f", "the end"].join("\n") + "\n",
);
const sampleNumbers = Buffer.from(["0.1", "", "0.2", "-3e5", "  7  ", "0.3", "1e16", "1", "-1e16", "2.5", "\t"].join("\n"));

const cases: { op: AnyOp; raw: Record<string, string>; bytes: Buffer; format: Format; reference: unknown }[] = [
  { op: count, raw: {}, bytes: sampleText, format: "lines", reference: refCount(sampleText) },
  { op: wordcount, raw: { k: "4" }, bytes: sampleText, format: "lines", reference: refWordcount(sampleText, 4) },
  { op: grep, raw: { pattern: "cat|é", k: "2" }, bytes: sampleText, format: "lines", reference: refGrep(sampleText, "cat|é", 2) },
  { op: stats, raw: {}, bytes: sampleNumbers, format: "numbers", reference: refStats(sampleNumbers) },
  {
    op: histogram,
    raw: { bins: "4", min: "-1", max: "3" },
    bytes: sampleNumbers,
    format: "numbers",
    reference: refHistogram(sampleNumbers, 4, -1, 3),
  },
];

describe("merge", () => {
  for (const c of cases) {
    it(`${c.op.name}: any chunking, partials combined in any order, gives the one-pass result`, () => {
      const params = c.op.parseParams(c.raw);
      fc.assert(
        fc.property(fc.array(fc.nat(), { maxLength: 8 }), fc.infiniteStream(fc.nat()), (cuts, randoms) => {
          const partials = partialsOf(c.op, params, blocksOf(c.bytes, cuts), c.format);
          // A shuffle driven by fast-check, so failures shrink and replay.
          const it = randoms[Symbol.iterator]();
          const shuffled = [...partials];
          for (let i = shuffled.length - 1; i > 0; i--) {
            const j = it.next().value! % (i + 1);
            [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
          }
          expect(merged(c.op, params, shuffled)).toEqual(c.reference);
          // Merging merged partials (a tree of reducers) changes nothing either.
          const half = Math.floor(shuffled.length / 2);
          const left = c.op.merger(params);
          for (const p of shuffled.slice(0, half)) left.add(p);
          const right = c.op.merger(params);
          for (const p of shuffled.slice(half)) right.add(p);
          expect(merged(c.op, params, [JSON.parse(JSON.stringify(right.value())), JSON.parse(JSON.stringify(left.value()))])).toEqual(
            c.reference,
          );
        }),
        { seed: SEED, numRuns: 150 },
      );
    });
  }

  it("no partials at all is the empty result of each op", () => {
    expect(merged(count, count.parseParams({}), [])).toEqual({ records: 0 });
    expect(merged(wordcount, wordcount.parseParams({}), [])).toEqual({ total: 0, distinct: 0, top: [] });
    expect(merged(grep, grep.parseParams({ pattern: "x" }), [])).toEqual({ matches: 0, samples: [] });
    expect(merged(stats, stats.parseParams({}), [])).toEqual({ count: 0, sum: 0, min: null, max: null, mean: null, variance: null });
    expect(merged(histogram, histogram.parseParams({ bins: "2", min: "0", max: "1" }), [])).toEqual({ min: 0, max: 1, bins: [0, 0] });
  });
});

// ---- count ---------------------------------------------------------------------------------

describe("count", () => {
  it("counts every line, empty ones too, and a last line without a newline", () => {
    expect(runOp(count, {}, "a\n\nb")).toEqual({ records: 3 });
    expect(runOp(count, {}, "a\n\nb\n")).toEqual({ records: 3 });
    expect(runOp(count, {}, "\n")).toEqual({ records: 1 });
    expect(runOp(count, {}, "\r\n\r\n")).toEqual({ records: 2 });
    expect(runOp(count, {}, "")).toEqual({ records: 0 });
  });

  it("for csv counts rows after the header, for jsonl non-blank lines", () => {
    expect(runOp(count, {}, "h1,h2\n1,2\n\n3,4\n", "csv")).toEqual({ records: 2 });
    expect(runOp(count, { header: "false" }, "h1,h2\n1,2\n", "csv")).toEqual({ records: 2 });
    // A row of spaces is a row (Python: sum(1 for r in csv.reader(["k", "a", " ", "", "b"]) if r) - 1 == 3).
    expect(runOp(count, {}, "k\na\n \n\nb\n", "csv")).toEqual({ records: 3 });
    expect(runOp(count, {}, '{"a":1}\n\n  \n{"a":2}', "jsonl")).toEqual({ records: 2 });
  });

  it("takes no op params besides the format's", () => {
    const e = errorOf(() => count.parseParams({ k: "3" }));
    expect(e.code).toBe(ErrorCode.INVALID_SPEC);
    expect(e.message).toBe('count: unknown param "k" (known: header, separator, multiline)');
  });
});

// ---- wordcount -----------------------------------------------------------------------------

describe("wordcount", () => {
  it("merges partials by dictionary index in the thread that made them, by their bytes otherwise, across a dictionary's rotation", () => {
    const params = wordcount.parseParams({ k: "3" });
    const block = (bytes: Buffer): RecordBlock => ({ bytes, offset: 0, first: true });
    const partialOf = (bytes: Buffer) => {
      const mapper = wordcount.mapper(params, ctxOf("lines"));
      mapper.block(block(bytes));
      return mapper.finish();
    };
    const merger = wordcount.merger(params);
    // Over a million distinct words: the thread's dictionary passes its bound, so the next
    // mapper counts over a fresh one, whose partials the merger must take by their bytes.
    const many = Buffer.from(`${Array.from({ length: (1 << 20) + 10 }, (_, i) => `w${i} common`).join("\n")}\n`);
    const few = Buffer.from("common rare w1\ncommon é\n");
    const fromMany = partialOf(many);
    const fromFew = partialOf(few);
    merger.add(fromMany);
    merger.add(fromFew);
    merger.add(JSON.parse(JSON.stringify(fromFew)) as typeof fromFew);
    const want = refWordcount(Buffer.concat([many, few, few]), 3);
    expect(JSON.parse(JSON.stringify(wordcount.finalize(merger.value(), params, namesContext(["in.txt"]))))).toEqual(want);
    // And a merged value merged again, in this thread and through JSON.
    const again = wordcount.merger(params);
    again.add(merger.value());
    again.add(JSON.parse(JSON.stringify(partialOf(few))) as typeof fromFew);
    expect(JSON.parse(JSON.stringify(wordcount.finalize(again.value(), params, namesContext(["in.txt"]))))).toEqual(
      refWordcount(Buffer.concat([many, few, few, few]), 3),
    );
  });

  it("splits on ASCII whitespace only (space, \\t, \\n, \\v, \\f, \\r), case-sensitively", () => {
    const text = "The the THE\tthe\vthe\fthe\r\nthe\u00a0the"; // NBSP (C2 A0) is not ASCII whitespace
    expect(runOp(wordcount, {}, text)).toEqual({
      total: 7,
      distinct: 4,
      top: [
        ["the", 4],
        ["THE", 1],
        ["The", 1],
        ["the\u00a0the", 1],
      ],
    });
  });

  it("breaks ties by the word's bytes ascending, which is code point order (not UTF-16 order)", () => {
    // ｚ is U+FF5A, 𝄞 is U+1D11E: UTF-16 sorts 𝄞 (a surrogate, 0xD834) first, code points ｚ.
    const text = "𝄞 ｚ é € z Z b a 𝄞 ｚ é € z Z b a";
    expect(runOp(wordcount, { k: "8" }, text)).toEqual({
      total: 16,
      distinct: 8,
      top: ["Z", "a", "b", "z", "é", "€", "ｚ", "𝄞"].map((w) => [w, 2]),
    });
  });

  it("keeps the k most frequent; k=0 lists none; the default is 10", () => {
    const text = "a a a b b c d e f g h i j k l m";
    expect((runOp(wordcount, { k: "2" }, text) as { top: unknown }).top).toEqual([
      ["a", 3],
      ["b", 2],
    ]);
    expect(runOp(wordcount, { k: "0" }, text)).toEqual({ total: 16, distinct: 13, top: [] });
    expect((runOp(wordcount, {}, text) as { top: unknown[] }).top).toHaveLength(10);
  });

  it("rejects a bad k with one line naming the param", () => {
    for (const [k, why] of [
      ["-1", "must be at least 0"],
      ["x", "expected a whole number"],
      ["2.5", "expected a whole number"],
      ["100001", "must be at most 100000"],
    ]) {
      const e = errorOf(() => wordcount.parseParams({ k: k! }));
      expect(e.code).toBe(ErrorCode.INVALID_SPEC);
      expect(e.message).toBe(`wordcount: param k: ${why} (got ${JSON.stringify(k)})`);
      expect(e.context.field).toBe("params.k");
    }
    expect(errorOf(() => wordcount.parseParams({ top: "3" })).message).toBe('wordcount: unknown param "top" (known: k)');
  });
});

// ---- grep ----------------------------------------------------------------------------------

describe("grep", () => {
  it("samples the first k matching lines without their line endings, with byte offsets", () => {
    const text = "alpha\r\nbeta\nalpha é\n\nalphabet\nalpha";
    expect(runOp(grep, { pattern: "^alpha", k: "3" }, text)).toEqual({
      matches: 4,
      samples: [
        { line: "alpha", offset: 0 },
        { line: "alpha é", offset: 12 },
        { line: "alphabet", offset: 22 },
      ],
    });
    expect(runOp(grep, { pattern: "^$" }, text)).toEqual({ matches: 1, samples: [{ line: "", offset: 21 }] });
    expect(runOp(grep, { pattern: "ALPHA", ignoreCase: "true", k: "0" }, text)).toEqual({ matches: 4, samples: [] });
  });

  it("merges samples in file order across inputs, whatever order the partials arrive in", () => {
    const params = grep.parseParams({ pattern: "x", k: "3" });
    const a = Buffer.from("x1\nno\nx2\nx3\n");
    const b = Buffer.from("x4\nx5\n");
    // Input 0 = a.txt in two chunks, input 1 = b.txt; input 1's matches come first in time.
    const p0 = partialsOf(grep, params, blocksOf(a, [2]), "lines", 0);
    const p1 = partialsOf(grep, params, [{ bytes: b, offset: 0, first: true }], "lines", 1);
    const want = {
      matches: 5,
      samples: [
        { line: "x1", offset: 0, input: "a.txt" },
        { line: "x2", offset: 6, input: "a.txt" },
        { line: "x3", offset: 9, input: "a.txt" },
      ],
    };
    expect(merged(grep, params, [...p1, ...p0], ["a.txt", "b.txt"])).toEqual(want);
    expect(merged(grep, params, [p0[1], p1[0], p0[0]], ["a.txt", "b.txt"])).toEqual(want);
    // With k beyond a's matches, b's follow in b's order.
    const all = grep.parseParams({ pattern: "x", k: "10" });
    const samples = (
      merged(
        grep,
        all,
        [
          ...partialsOf(grep, all, [{ bytes: b, offset: 0, first: true }], "lines", 1),
          ...partialsOf(grep, all, blocksOf(a, [1, 3]), "lines", 0),
        ],
        ["a.txt", "b.txt"],
      ) as { samples: { line: string }[] }
    ).samples;
    expect(samples.map((s) => s.line)).toEqual(["x1", "x2", "x3", "x4", "x5"]);
  });

  it("validates its params in one line naming the param", () => {
    const cases: [Record<string, string>, string][] = [
      [{}, "grep: param pattern: is required"],
      [{ pattern: "" }, 'grep: param pattern: must not be empty (got "")'],
      [{ pattern: "a(" }, "grep: param pattern: not a valid regular expression"],
      [{ pattern: "a", k: "-2" }, 'grep: param k: must be at least 0 (got "-2")'],
      [{ pattern: "a", ignoreCase: "maybe" }, 'grep: param ignoreCase: expected true or false (got "maybe")'],
      [{ pattern: "a", case: "1" }, 'grep: unknown param "case"'],
    ];
    for (const [raw, message] of cases) {
      const e = errorOf(() => grep.parseParams(raw));
      expect(e.code).toBe(ErrorCode.INVALID_SPEC);
      expect(e.message.startsWith(message), `${e.message} starts with ${message}`).toBe(true);
      expect(e.message).not.toContain("\n");
    }
  });
});

// ---- stats ---------------------------------------------------------------------------------

describe("stats", () => {
  it("sums JSON numbers below the normal doubles as written, and refuses one that underflowed to 0", () => {
    // Python: sum(Fraction(s) for s in ["3e-324"] * 10) == Fraction("3e-323"); the double 3e-324 prints as 5e-324.
    const tiny = runOp(stats, { field: "v" }, '{"v":3e-324}\n'.repeat(10), "jsonl") as { sum: number; count: number };
    expect(tiny).toMatchObject({ count: 10, sum: 3e-323 });
    const sub = runOp(stats, { field: "v" }, '{"v":1.23456789012345e-320}\n'.repeat(1000), "jsonl") as { sum: number };
    expect(sub.sum).toBe(1.234568e-317);
    expect(() => runOp(stats, { field: "v" }, '{"v":1}\n{"v":1e-400}\n', "jsonl")).toThrow(/number out of range: "1e-400"/);
  });

  it("reads a CSV column whose separator can be part of a number as the CSV reader splits it", () => {
    // With sep=. the row 1.5 is two fields, 1 and 5: column 1 is 1, not 1.5 (Python: "1.5".split(".")).
    const rows = "1.5\n2.25\n";
    const column = (n: string) => runOp(stats, { separator: ".", header: "false", column: n }, rows, "csv");
    expect(column("1")).toMatchObject({ count: 2, sum: 3, min: 1, max: 2 });
    expect(column("2")).toMatchObject({ count: 2, sum: 30, min: 5, max: 25 });
  });

  const statsOf = (lines: readonly string[], cuts: readonly number[] = []) => {
    const params = stats.parseParams({});
    const bytes = Buffer.from(lines.join("\n"));
    return merged(stats, params, partialsOf(stats, params, blocksOf(bytes, cuts), "numbers"));
  };

  it("sums the numbers as written: 0.1+0.2+0.3 is 0.6 in every order and chunking (naive sums give 0.6000000000000001)", () => {
    expect(0.1 + 0.2 + 0.3).not.toBe(0.3 + 0.2 + 0.1); // why exactness matters
    const orders = [
      ["0.1", "0.2", "0.3"],
      ["0.3", "0.2", "0.1"],
      ["0.2", "0.1", "0.3"],
    ];
    const results = orders.flatMap((o) => [[], [1], [2], [1, 2]].map((cuts) => statsOf(o, cuts)));
    for (const r of results) expect(r).toEqual(results[0]);
    // By hand: mean 0.6 / 3 = 0.2 exactly; variance (0.01 + 0.04 + 0.09) / 3 − 0.2² = 0.02 / 3 = 1 / 150.
    expect(results[0]).toEqual({ count: 3, sum: 0.6, min: 0.1, max: 0.3, mean: 0.2, variance: roundRatio(1n, 150n) });
    // Summing the doubles exactly (math.fsum) would give 0.30000000000000004 here: 0.1 and 0.2 are not what they print as.
    expect(statsOf(["0.1", "0.2"])).toEqual({ count: 2, sum: 0.3, min: 0.1, max: 0.2, mean: 0.15, variance: 0.0025 });
  });

  it("rounds the exact sum once: 2^53 + 1 + 2^-60 is 2^53 + 2 (a tie broken by the tiny term)", () => {
    const lines = [String(2 ** 53), "1", String(2 ** -60)];
    expect(2 ** 53 + 1 + 2 ** -60).toBe(2 ** 53); // naive, left to right
    expect(2 ** -60 + 1 + 2 ** 53).toBe(2 ** 53); // naive, smallest first
    for (const order of [lines, [...lines].reverse(), [lines[1]!, lines[2]!, lines[0]!]]) {
      for (const cuts of [[], [1], [1, 2]]) expect(statsOf(order, cuts)).toMatchObject({ count: 3, sum: 2 ** 53 + 2 });
    }
    expect(statsOf([String(2 ** 53), "1"])).toMatchObject({ sum: 2 ** 53 }); // an exact tie goes to even
    expect(statsOf([String(2 ** 53), "3"])).toMatchObject({ sum: 2 ** 53 + 4 });
  });

  it("keeps what naive summation cancels away", () => {
    expect(statsOf(["1e100", "1", "-1e100"])).toMatchObject({ count: 3, sum: 1, mean: 1 / 3 });
    expect(statsOf(["1e16", "1", "1", "-1e16"], [1, 3])).toMatchObject({ sum: 2 });
    // Constant data has variance exactly 0 (one-pass formulas in floating point leave residue).
    expect(statsOf(["0.1", "0.1", "0.1", "0.1", "0.1"], [2])).toMatchObject({ mean: 0.5 / 5, variance: 0 });
  });

  it("gives the correctly rounded population variance, mean = sum / n", () => {
    const xs = [1e8 + 0.1, 1e8 + 0.2, 1e8 + 0.3, 1e8 + 0.4];
    const r = statsOf(xs.map(String), [1, 2]);
    expect(r).toEqual(refStatsOf(xs));
    expect((r as { variance: number }).variance).toBeCloseTo(0.0125, 6);
    expect(r).toMatchObject({ sum: 400000001, mean: 100000000.25 });
  });

  it("ignores blank lines and surrounding whitespace; empty input has count 0 and null statistics", () => {
    expect(statsOf(["", " 2 ", "\t", "4\r", ""])).toEqual({ count: 2, sum: 6, min: 2, max: 4, mean: 3, variance: 1 });
    expect(statsOf(["", "  ", ""])).toEqual({ count: 0, sum: 0, min: null, max: null, mean: null, variance: null });
  });

  it("accepts decimal spellings only, rejecting others with the byte offset of the value", () => {
    expect(statsOf(["+1", ".5", "5.", "1E2", "-2e-1"])).toMatchObject({ count: 5, sum: 1 + 0.5 + 5 + 100 - 0.2 });
    for (const bad of ["0x10", "NaN", "Infinity", "1,5", "1 2", "--1", "1e999"]) {
      const e = errorOf(() => statsOf(["1", ` ${bad}`]));
      expect(e.code, bad).toBe(ErrorCode.BAD_RECORD);
      expect(e.context.offset, bad).toBe(3); // "1\n" then one space
    }
  });

  it("refuses to return a variance past the double range, and computes one whose squares are past it", () => {
    // Σx = 0 but the variance is past the range: never a silent 0 or Infinity.
    for (const [lines, cuts] of [
      [["1e300", "-1e300"], []],
      [["1e300", "-1e300"], [1]],
      [["1.4e154", "-1.4e154"], []], // each square fits a double, the variance (1.96e308) does not
      [["1.4e154", "-1.4e154"], [1]],
    ] as const) {
      const e = errorOf(() => statsOf(lines, cuts));
      expect(e.code, lines.join()).toBe(ErrorCode.BAD_RECORD);
      expect(e.message).toMatch(/overflow/);
    }
    // Σx² (3.38e308) is past the double range, but the variance is exactly 0: exact arithmetic gets it.
    expect(statsOf(["1.3e154", "1.3e154"], [1])).toEqual({
      count: 2,
      sum: 2.6e154,
      min: 1.3e154,
      max: 1.3e154,
      mean: 1.3e154,
      variance: 0,
    });
  });

  it("takes format params only", () => {
    expect(errorOf(() => stats.parseParams({ k: "1" })).message).toBe(
      'stats: unknown param "k" (known: header, separator, multiline, column, field)',
    );
  });
});

// ---- histogram -----------------------------------------------------------------------------

describe("histogram", () => {
  const hist = (raw: Record<string, string>, values: readonly number[]) => runOp(histogram, raw, values.join("\n"));

  it("bins by floor((x-min)/(max-min)*bins); min in the first bin, max in the last", () => {
    expect(hist({ bins: "5", min: "0", max: "10" }, [0, 1.999, 2, 3.9999, 4, 9.99, 10])).toEqual({
      min: 0,
      max: 10,
      bins: [2, 2, 1, 0, 2],
    });
    expect(hist({ bins: "1", min: "-1", max: "1" }, [-1, 0, 1])).toEqual({ min: -1, max: 1, bins: [3] });
    expect(hist({ bins: "3", min: "-3", max: "0" }, [-3, -2, -1e-9, 0])).toEqual({ min: -3, max: 0, bins: [1, 1, 2] });
  });

  it("counts values outside [min, max] as below / above, shown only when nonzero", () => {
    expect(hist({ bins: "2", min: "0", max: "1" }, [-0.5, -1e-300, 0.5, 1.0000001, 2, 3])).toEqual({
      min: 0,
      max: 1,
      bins: [0, 1],
      below: 2,
      above: 3,
    });
    expect(hist({ bins: "2", min: "0", max: "1" }, [-1])).toEqual({ min: 0, max: 1, bins: [0, 0], below: 1 });
    expect(hist({ bins: "2", min: "0", max: "1" }, [7])).toEqual({ min: 0, max: 1, bins: [0, 0], above: 1 });
  });

  it("defaults to 10 bins and never indexes past the last bin for x just below max", () => {
    const below = 1 - Number.EPSILON / 2; // (x-min)/(max-min)*bins rounds up to bins
    expect(hist({ min: "0", max: "1" }, [below, 1])).toEqual({ min: 0, max: 1, bins: [0, 0, 0, 0, 0, 0, 0, 0, 0, 2] });
    expect(refHistogram(Buffer.from(`${below}\n1`), 10, 0, 1).bins[9]).toBe(2);
  });

  it("puts a value on an edge in the bin the edge opens, judged on the numbers as written", () => {
    const text = (xs: readonly string[]) => `${xs.join("\n")}\n`;
    const on = (params: Record<string, string>, xs: readonly string[]) =>
      runOp(histogram, params, text(xs), "numbers") as { bins: number[]; below?: number; above?: number };
    // In doubles, (2.2 − 0.28) / 9.6 · 5 is 0.9999999999999999, and 29 / 100 · 100 is 28.999999999999996.
    expect(on({ bins: "5", min: "0.28", max: "9.88" }, ["2.2"]).bins).toEqual([0, 1, 0, 0, 0]);
    expect(on({ bins: "5", min: "-70.3", max: "-9.8" }, ["-21.9"]).bins).toEqual([0, 0, 0, 0, 1]);
    const integers = Array.from({ length: 101 }, (_, i) => String(i));
    expect(on({ bins: "100", min: "0", max: "100" }, integers).bins).toEqual([...Array.from({ length: 99 }, () => 1), 2]);
    // A width past the largest double (edges at −5e307, 0 and 5e307): every value still counted, in its bin.
    expect(on({ bins: "4", min: "-1e308", max: "1e308" }, ["-1e308", "0", "5e307", "9e307", "1e308"]).bins).toEqual([1, 0, 1, 3]);
    // Subnormal edges: max = 4001 units of 2^-1074 as written (a little more than the double), and
    // a value just below half of it, which the doubles put on the edge.
    const unit = 2n ** 1074n;
    const maxText = String(4001 * Number.MIN_VALUE);
    const [mant = "", exp = "0"] = maxText.split("e");
    const [w = "", f = ""] = mant.split(".");
    const scale = f.length - Number(exp);
    const places = 1100;
    const x = (BigInt(w + f) * 10n ** BigInt(places - scale)) / 4n + (4001n * 10n ** BigInt(places)) / (4n * unit);
    const xText = `0.${x.toString().padStart(places, "0")}`.replace(/0+$/, "");
    expect(on({ bins: "2", min: "0", max: maxText }, [xText])).toEqual(refHistogram(Buffer.from(`${xText}\n`), 2, 0, Number(maxText)));
    // Each against the reference's exact decimals, on many values that sit on edges.
    const edges = Array.from({ length: 400 }, (_, i) => (0.28 + (i % 41) * 0.24 * (i % 2 ? 1 : 0.5)).toFixed(2));
    for (const [bins, min, max] of [
      ["5", "0.28", "9.88"],
      ["40", "0.28", "9.88"],
      ["7", "-3.5", "10.5"],
    ] as const)
      expect(on({ bins, min, max }, edges)).toEqual(refHistogram(Buffer.from(text(edges)), Number(bins), Number(min), Number(max)));
  });

  it("validates its params in one line naming the param", () => {
    const cases: [Record<string, string>, string][] = [
      [{ max: "1" }, "histogram: param min: is required"],
      [{ min: "0" }, "histogram: param max: is required"],
      [{ min: "1", max: "1" }, "histogram: param max: min must be less than max"],
      [{ min: "2", max: "1" }, "histogram: param max: min must be less than max"],
      [{ min: "a", max: "1" }, 'histogram: param min: expected a number (got "a")'],
      [{ min: "0", max: "1", bins: "0" }, 'histogram: param bins: must be at least 1 (got "0")'],
      [{ min: "0", max: "1", bins: "1.5" }, 'histogram: param bins: expected a whole number (got "1.5")'],
      [{ min: "0", max: "1e999" }, "histogram: param max: out of a double's range (it would be Infinity)"],
      // As a double 1e-400 is 0, another bound: a 0 in the data would fall in the first bin, not below it.
      [{ min: "1e-400", max: "1" }, "histogram: param min: out of a double's range (it would be 0)"],
      [{ min: "-0.5", max: "-1e-330" }, "histogram: param max: out of a double's range (it would be 0)"],
    ];
    // Zeros written otherwise are zero.
    expect(histogram.parseParams({ min: "0.000e7", max: "1" })).toMatchObject({ min: 0 });
    expect(histogram.parseParams({ min: "-0.0", max: "1" })).toMatchObject({ min: -0 });
    for (const [raw, message] of cases) {
      const e = errorOf(() => histogram.parseParams(raw));
      expect(e.code).toBe(ErrorCode.INVALID_SPEC);
      expect(e.message.startsWith(message), `${e.message} starts with ${message}`).toBe(true);
      expect(e.message).not.toContain("\n");
      expect(e.context.field).toMatch(/^params\./);
    }
  });
});

// ---- the registry ----------------------------------------------------------------------------

describe("registry", () => {
  it("holds the built-ins and names the known ops for an unknown one", () => {
    const r = new OpRegistry();
    expect(r.names()).toEqual(["checksum", "count", "distinct", "grep", "groupby", "histogram", "sort", "stats", "wordcount"]);
    expect(builtinOps.map((o) => o.name).sort()).toEqual(r.names());
    const e = errorOf(() => r.get("wordcnt"));
    expect(e.code).toBe(ErrorCode.UNKNOWN_OP);
    expect(e.message).toBe('unknown op "wordcnt" (known: checksum, count, distinct, grep, groupby, histogram, sort, stats, wordcount)');
  });

  it("refuses to register a name twice", () => {
    const r = new OpRegistry();
    expect(errorOf(() => r.register(count)).message).toBe('op "count" is defined twice');
  });
});

// ---- the reference itself (so a broken reference cannot make the properties vacuous) ------

describe("reference arithmetic", () => {
  it("rounds exact sums correctly", () => {
    expect(exactSum([0.1, 0.2, 0.3])).toBe(0.6);
    expect(exactSum([1e100, 1, -1e100])).toBe(1);
    expect(exactSum([2 ** 53, 1])).toBe(2 ** 53); // tie → even
    expect(exactSum([2 ** 53, 1, 2 ** -60])).toBe(2 ** 53 + 2); // just above the tie → up
    expect(exactSum([5e-324, 5e-324])).toBe(1e-323);
    expect(exactSum([Number.MAX_VALUE, -Number.MAX_VALUE, 0.5])).toBe(0.5);
    expect(refStatsOf([1, 2, 3, 4])).toEqual({ count: 4, sum: 10, min: 1, max: 4, mean: 2.5, variance: 1.25 });
  });
});
