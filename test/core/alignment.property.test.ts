/**
 * Record alignment, end to end: for nasty byte contents and every chunk size from 1 byte to
 * more than the file, each built-in op run by the engine (inline, through the whole
 * split → map → reduce pipeline) gives exactly what a single-pass reference computes from
 * the whole file. And the records the aligned reader yields over all ranges are the file's
 * records, each exactly once, each owned by the range it starts in.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runLocal } from "../../lib/local/localEngine.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import type { BlobInfo, BlobStore, GetOptions } from "../../lib/core/ports.js";
import { ownedRecordBlocks, type RecordBlock } from "../../lib/core/records/alignedBlocks.js";
import { dataOf, numbersOf, recordsOf, refCount, refGrep, refHistogram, refStats, refWordcount } from "../helpers/reference.js";

const SEED = 20261121;
const registry = new OpRegistry();
let dir: string;
let fileNo = 0;

beforeAll(async () => {
  // Thousands of tiny chunks per property: keep the engine's part files in memory when we can.
  const base = existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
  dir = await mkdtemp(path.join(base, "cloudmill-align-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs op on the bytes through the engine, inline, with this chunk size. */
const engine = async (bytes: Buffer, op: string, chunkSize: number, params: Record<string, string> = {}): Promise<unknown> => {
  const file = path.join(dir, `input-${fileNo}.txt`);
  const workDir = path.join(dir, `work-${fileNo++}`);
  await writeFile(file, bytes);
  try {
    const { result } = await runLocal({ spec: parseJobSpec({ op, inputs: [file], params, chunkSize }), registry, workers: 0, workDir });
    return result;
  } finally {
    await rm(file, { force: true });
    await rm(workDir, { recursive: true, force: true });
  }
};

// ---- nasty contents ------------------------------------------------------------------------

const BOM = "\uFEFF";

/** Words from a small vocabulary, so counts repeat and `top` has ties to break. */
const word = fc.constantFrom("a", "b", "ab", "The", "the", "é", "€", "𝄞", "naïve", "x€y", "𝄞𝄞", "zz", "Zz", "0", "é€𝄞");
const fragment = fc.oneof(
  { weight: 6, arbitrary: word },
  { weight: 3, arbitrary: fc.constantFrom(" ", "  ", "\t", "\v", "\f", "\n", "\n", "\r\n", "\r\n", "\n\n", "\r\n\r\n", "x\ry ") },
  // A long line: longer than most chunk sizes.
  { weight: 1, arbitrary: fc.tuple(word, fc.integer({ min: 10, max: 40 })).map(([w, n]) => `${w} `.repeat(n)) },
);

/** Text that may start with a BOM, may lack a final newline, may be empty. */
const textFile = fc
  .record({
    bom: fc.boolean(),
    parts: fc.array(fragment, { minLength: 0, maxLength: 30 }),
    finalNewline: fc.constantFrom("keep", "strip", "add-lf", "add-crlf"),
  })
  .map(({ bom, parts, finalNewline }) => {
    let body = parts.join("");
    if (finalNewline === "strip") body = body.replace(/\r?\n$/, "");
    if (finalNewline === "add-lf") body += "\n";
    if (finalNewline === "add-crlf") body += "\r\n";
    return Buffer.from((bom ? BOM : "") + body, "utf8");
  });

/** A double in a range where x² is exact in the engine's expansions (no overflow, no underflow). */
const double = fc.oneof(
  fc.double({ min: -1e60, max: 1e60, noNaN: true }).map((x) => (Math.abs(x) < 1e-60 ? 0 : x)),
  fc.integer({ min: -1_000_000, max: 1_000_000 }),
  // Values whose exact sums sit on or near rounding ties.
  fc.constantFrom(0.1, 0.2, 0.3, -0.1, 1e16, -1e16, 1, 3, 2 ** 53, -(2 ** 53), 2 ** -60, -(2 ** -60), 1e-5, 123.456),
);
const spelled = fc
  .tuple(double, fc.constantFrom("plain", "exp", "pad"))
  .map(([x, how]) => (how === "exp" ? x.toExponential() : how === "pad" ? ` \t${String(x)}  ` : String(x)));
const numberLine = fc.oneof({ weight: 8, arbitrary: spelled }, { weight: 1, arbitrary: fc.constantFrom("", "   ", "\t") });

/** Files whose sums land on and near rounding ties: 2^53 + 1 is a tie, a tiny term breaks it. */
const tieFile = fc
  .tuple(
    fc.constantFrom(2 ** 53, 2 ** 54, -(2 ** 53)),
    fc.array(fc.constantFrom(1, -1, 3), { minLength: 1, maxLength: 3 }),
    fc.array(fc.constantFrom(2 ** -60, -(2 ** -60), 2 ** -30), { maxLength: 2 }),
    fc.constantFrom("\n", "\r\n"),
  )
  .chain(([big, small, tiny, eol]) =>
    fc
      .shuffledSubarray([big, ...small, ...tiny], { minLength: small.length + tiny.length + 1 })
      .map((xs) => Buffer.from(xs.map(String).join(eol))),
  );

const numbersFile = fc
  .record({
    bom: fc.boolean(),
    lines: fc.array(numberLine, { minLength: 0, maxLength: 25 }),
    eol: fc.constantFrom("\n", "\r\n"),
    finalNewline: fc.boolean(),
  })
  .map(({ bom, lines, eol, finalNewline }) => {
    const body = lines.join(eol) + (finalNewline && lines.length ? eol : "");
    return Buffer.from((bom ? BOM : "") + body, "utf8");
  });

/** A chunk size from 1 byte to 10 bytes past the file, small sizes often. */
const withChunkSize = <T extends Buffer>(file: fc.Arbitrary<T>) =>
  file.chain((bytes) =>
    fc.tuple(
      fc.constant(bytes),
      fc.oneof(
        { weight: 1, arbitrary: fc.integer({ min: 1, max: 4 }) },
        { weight: 3, arbitrary: fc.integer({ min: 1, max: bytes.length + 10 }) },
      ),
    ),
  );

const options = (numRuns: number) => ({ seed: SEED, numRuns, endOnFailure: true });

describe("every built-in op gives the reference result for any chunk size", () => {
  it("count", async () => {
    await fc.assert(
      fc.asyncProperty(withChunkSize(textFile), async ([bytes, chunk]) => {
        expect(await engine(bytes, "count", chunk)).toEqual(refCount(bytes));
      }),
      options(60),
    );
  });

  it("wordcount, with a random k", async () => {
    await fc.assert(
      fc.asyncProperty(withChunkSize(textFile), fc.integer({ min: 0, max: 12 }), async ([bytes, chunk], k) => {
        expect(await engine(bytes, "wordcount", chunk, { k: String(k) })).toEqual(refWordcount(bytes, k));
      }),
      options(60),
    );
  });

  it("grep, with a few fixed patterns", async () => {
    const patterns = ["^$", "a", "é|€", "𝄞", "\\s$", "^\\S+$", "^The", "x\ry"];
    await fc.assert(
      fc.asyncProperty(
        withChunkSize(textFile),
        fc.constantFrom(...patterns),
        fc.integer({ min: 0, max: 5 }),
        async ([bytes, chunk], pattern, k) => {
          expect(await engine(bytes, "grep", chunk, { pattern, k: String(k) })).toEqual(refGrep(bytes, pattern, k));
        },
      ),
      options(60),
    );
  });

  it("stats on doubles (negative, huge, tiny, integers, blank lines), bit for bit", async () => {
    await fc.assert(
      fc.asyncProperty(withChunkSize(numbersFile), async ([bytes, chunk]) => {
        expect(await engine(bytes, "stats", chunk)).toEqual(refStats(bytes));
      }),
      options(60),
    );
  });

  it("stats on sums that sit at rounding ties, bit for bit", async () => {
    await fc.assert(
      fc.asyncProperty(withChunkSize(tieFile), async ([bytes, chunk]) => {
        expect(await engine(bytes, "stats", chunk)).toEqual(refStats(bytes));
      }),
      options(40),
    );
  });

  it("histogram, with edges taken from the data", async () => {
    const withParams = withChunkSize(numbersFile).chain(([bytes, chunk]) => {
      const xs = [...new Set(numbersOf(bytes))].sort((a, b) => a - b);
      const range =
        xs.length >= 2
          ? fc.oneof(
              fc.constant([xs[0]!, xs[xs.length - 1]!] as const), // min and max of the data: x == max lands in the last bin
              fc.tuple(fc.constantFrom(...xs), fc.constantFrom(...xs)).filter(([a, b]) => a < b), // some values fall outside
            )
          : fc.constant([-1, 1] as const);
      return fc.tuple(fc.constant(bytes), fc.constant(chunk), range, fc.integer({ min: 1, max: 12 }));
    });
    await fc.assert(
      fc.asyncProperty(withParams, async ([bytes, chunk, [min, max], bins]) => {
        const result = await engine(bytes, "histogram", chunk, { bins: String(bins), min: String(min), max: String(max) });
        expect(result).toEqual(refHistogram(bytes, bins, min, max));
      }),
      options(50),
    );
  });
});

it("the fixed nasty cases give the reference count and wordcount at every chunk size", async () => {
  const cases = [
    "",
    "\n",
    "\n\n\n",
    "\r\n\r\n",
    BOM,
    `${BOM}\n`,
    `${BOM}é`,
    "no final newline",
    "a\r\nb\r\nc",
    "é€𝄞\n𝄞€é",
    `${"x".repeat(40)}\nshort\n`,
  ].map((s) => Buffer.from(s, "utf8"));
  for (const bytes of cases) {
    for (let chunk = 1; chunk <= bytes.length + 2; chunk++) {
      const what = `${JSON.stringify(bytes.toString("utf8"))} at chunk size ${chunk}`;
      expect(await engine(bytes, "count", chunk), what).toEqual(refCount(bytes));
      expect(await engine(bytes, "wordcount", chunk), what).toEqual(refWordcount(bytes));
    }
  }
});

// ---- the aligned reader on its own ---------------------------------------------------------

/** A store over one in-memory object whose reads arrive in pieces of the given sizes, cycling. */
class PiecewiseStore implements BlobStore {
  readonly name = "pieces";
  constructor(
    private readonly data: Buffer,
    private readonly pieces: readonly number[],
  ) {}

  async head(key: string): Promise<BlobInfo> {
    return { key, size: this.data.length, etag: '"v1"' };
  }

  async get(_key: string, options: GetOptions = {}): Promise<AsyncIterable<Uint8Array>> {
    const bytes = this.data.subarray(options.start ?? 0, options.end ?? this.data.length);
    const pieces = this.pieces;
    return (async function* () {
      let at = 0;
      for (let i = 0; at < bytes.length; i++) {
        const n = pieces[i % pieces.length]!;
        const piece = new Uint8Array(bytes.subarray(at, at + n)); // a copy, as a socket would hand over
        yield piece;
        // Asked for the next piece: a caller that allowed reuse is done with this one, so
        // scribble over it as a store reading on into the same memory would.
        if (options.reuseBuffers) piece.fill(0x2a);
        at += n;
      }
    })();
  }

  put(): Promise<void> {
    throw new Error("read-only");
  }
  // eslint-disable-next-line require-yield
  // biome-ignore lint/correctness/useYield: a store that refuses to list yields nothing.
  async *list(): AsyncIterable<BlobInfo> {
    throw new Error("read-only");
  }
  delete(): Promise<void> {
    throw new Error("read-only");
  }
}

/** Splits a block into records with their absolute offsets. */
const recordsOfBlock = (block: RecordBlock): { offset: number; bytes: string }[] => {
  const out: { offset: number; bytes: string }[] = [];
  let s = 0;
  const b = block.bytes;
  while (s < b.length) {
    const nl = b.indexOf(0x0a, s);
    const e = nl < 0 ? b.length : nl + 1;
    out.push({ offset: block.offset + s, bytes: b.subarray(s, e).toString("hex") });
    s = e;
  }
  return out;
};

describe("ownedRecordBlocks", () => {
  it("yields every record of the file exactly once, each from the range it starts in", async () => {
    const pieces = fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 4 });
    await fc.assert(
      fc.asyncProperty(withChunkSize(textFile), pieces, async ([bytes, chunk], readPieces) => {
        const store = new PiecewiseStore(bytes, readPieces);
        const expected = recordsOf(bytes).map((r) => ({ offset: r.offset, bytes: r.bytes.toString("hex") }));
        const bom = dataOf(bytes).start;
        const got: { offset: number; bytes: string }[] = [];
        for (let start = 0; start < bytes.length; start += chunk) {
          const end = Math.min(bytes.length, start + chunk);
          const records: { offset: number; bytes: string }[] = [];
          // Each block is looked at before the next is asked for: its bytes are not kept.
          for await (const block of ownedRecordBlocks(store, { key: "k", size: bytes.length, start, end })) {
            // Whole records only: every block but the file's last ends on a newline.
            const endsFile = block.offset + block.bytes.length === bytes.length;
            if (!endsFile) expect(block.bytes[block.bytes.length - 1], `block at ${block.offset} of [${start}, ${end})`).toBe(0x0a);
            expect(block.first).toBe(block.offset === bom);
            records.push(...recordsOfBlock(block));
          }
          for (const r of records) {
            // A record is owned by the range its first byte (the BOM, for the first record) lies in.
            const startsAt = r.offset === bom ? 0 : r.offset;
            expect(startsAt >= start && startsAt < end, `record at ${r.offset} read by [${start}, ${end})`).toBe(true);
            got.push(r);
          }
        }
        expect(got).toEqual(expected);
      }),
      options(300),
    );
  });

  it("finishes a record far longer than its range (reading past the end in growing steps)", async () => {
    // 200 KB without a newline: more than the 64 KiB first over-read step and its doubling.
    const long = `${"é".repeat(100_000)}\nshort\n`;
    const bytes = Buffer.from(long, "utf8");
    const store = new PiecewiseStore(bytes, [4096, 7]);
    const chunk = 1000;
    const got: { offset: number; bytes: string }[] = [];
    for (let start = 0; start < bytes.length; start += chunk) {
      for await (const block of ownedRecordBlocks(store, {
        key: "k",
        size: bytes.length,
        start,
        end: Math.min(bytes.length, start + chunk),
      })) {
        got.push(...recordsOfBlock(block));
      }
    }
    expect(got.map((r) => r.offset)).toEqual([0, 200_001]);
    expect(Buffer.from(got[0]!.bytes, "hex").toString("utf8")).toBe(`${"é".repeat(100_000)}\n`);
  });

  it("owns nothing in a range with no record start, and nothing past the file's end", async () => {
    const bytes = Buffer.from("abcdef\nxy\n");
    const store = new PiecewiseStore(bytes, [3]);
    const read = async (start: number, end: number) => {
      const out: string[] = [];
      for await (const b of ownedRecordBlocks(store, { key: "k", size: bytes.length, start, end })) out.push(b.bytes.toString());
      return out.join("");
    };
    expect(await read(1, 6)).toBe(""); // inside "abcdef"
    expect(await read(1, 7)).toBe(""); // the record at 7 starts exactly at `end`: the next range's
    expect(await read(1, 8)).toBe("xy\n");
    expect(await read(0, 1)).toBe("abcdef\n");
    expect(await read(10, 20)).toBe("");
    expect(await read(5, 5)).toBe("");
  });
});
