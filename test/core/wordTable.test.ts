/**
 * wordcount's WebAssembly kernel against Python's `bytes.split()` (which splits on exactly
 * ASCII whitespace: space, \t, \n, \v, \f, \r) on inputs built to hit its edges: words of
 * every length around its 16- and 64-byte steps, whitespace runs longer than 64 bytes,
 * every non-whitespace byte value, a word longer than a slice, and enough distinct words
 * to grow its table and arena in the middle of a scan.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { WordCounts, WordDictionary } from "../../lib/core/ops/wordTable.js";
import { ROOT } from "../helpers/devCloud.js";

const dir = mkdtempSync(join(tmpdir(), "cloudmill-words-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PYTHON_COUNTER = [
  "import collections, json, sys",
  "c = collections.Counter()",
  "for p in sys.argv[1:]: c.update(open(p, 'rb').read().split())",
  "print(json.dumps({'total': sum(c.values()), 'words': {w.decode('latin1'): n for w, n in c.items()}}))",
].join("\n");

let files = 0;
/** Python's word counts over the buffers, each as a file of its own. */
const pythonCounts = (...buffers: Buffer[]): { total: number; words: Record<string, number> } => {
  const paths = buffers.map((b) => {
    const p = join(dir, `in-${files++}`);
    writeFileSync(p, b);
    return p;
  });
  return JSON.parse(execFileSync("python3", ["-c", PYTHON_COUNTER, ...paths], { encoding: "utf8", maxBuffer: 1 << 30 }));
};

const countsOf = (c: WordCounts): { total: number; words: Record<string, number> } => {
  const words = c.words();
  const list = words === "" ? [] : words.slice(0, -1).split("\n");
  const counts = c.counts();
  expect(list.length).toBe(counts.length);
  return { total: c.total, words: Object.fromEntries(list.map((w, i) => [w, counts[i]!])) };
};

const rng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const SPACES = [0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d];
const WORD_BYTES = Array.from({ length: 256 }, (_, c) => c).filter((c) => !SPACES.includes(c));
const LENGTHS = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 66, 100, 127, 128, 129, 300];

/** Words of lengths around the kernel's steps from a small vocabulary (so words repeat), between whitespace runs of 1 to 140 bytes. */
const hostileText = (seed: number, bytes: number): Buffer => {
  const next = rng(seed);
  const vocabulary = Array.from({ length: 400 }, () => {
    const len = LENGTHS[Math.floor(next() * LENGTHS.length)]!;
    return Buffer.from(Array.from({ length: len }, () => WORD_BYTES[Math.floor(next() * WORD_BYTES.length)]!));
  });
  const parts: Buffer[] = [];
  let n = 0;
  while (n < bytes) {
    const run = next() < 0.05 ? 65 + Math.floor(next() * 75) : 1 + Math.floor(next() * 3);
    const gap = Buffer.from(Array.from({ length: run }, () => SPACES[Math.floor(next() * SPACES.length)]!));
    const word = vocabulary[Math.floor(next() ** 2 * vocabulary.length)]!;
    parts.push(gap, word);
    n += gap.length + word.length;
  }
  return Buffer.concat(parts);
};

describe("wordcount's kernel", () => {
  it("is the assembled wordKernel.wat", async () => {
    await promisify(execFile)(process.execPath, ["scripts/wasm.js", "--check"], { cwd: ROOT });
  });

  it("counts what Python's bytes.split() counts, over every byte value and length", () => {
    for (const seed of [1, 2, 3]) {
      const text = hostileText(seed, 300_000);
      const counts = new WordCounts(new WordDictionary());
      counts.addWords(text);
      expect(countsOf(counts)).toEqual(pythonCounts(text));
    }
  });

  it("counts the edges: nothing, only whitespace, one word, no whitespace at the end", () => {
    const cases = [
      Buffer.alloc(0),
      Buffer.from(" \t\n\v\f\r".repeat(50)),
      Buffer.from("x"),
      Buffer.from("\x00"),
      Buffer.from("a b\n\xffc"),
    ];
    for (const text of cases) {
      const counts = new WordCounts(new WordDictionary());
      counts.addWords(text);
      expect(countsOf(counts)).toEqual(pythonCounts(text));
    }
  });

  it("counts words longer than a slice, where no whitespace cuts it", () => {
    const long = Buffer.alloc(3 * (1 << 20) + 7, 0x61);
    const text = Buffer.concat([long, Buffer.from(" b "), long, Buffer.from("\nb"), Buffer.alloc((1 << 20) - 3, 0x62)]);
    const counts = new WordCounts(new WordDictionary());
    counts.addWords(text);
    expect(countsOf(counts)).toEqual(pythonCounts(text));
  });

  it("grows its table and arena in the middle of a scan and keeps every count", () => {
    const next = rng(9);
    const words = Array.from({ length: 200_000 }, (_, i) => `w${i}${"z".repeat(Math.floor(next() * 40))}`);
    const text = Buffer.from(Array.from({ length: 600_000 }, () => words[Math.floor(next() * words.length)]!).join(" "), "latin1");
    const dict = new WordDictionary();
    const counts = new WordCounts(dict);
    counts.addWords(text);
    expect(countsOf(counts)).toEqual(pythonCounts(text));
    expect(dict.size).toBe(Object.keys(countsOf(counts).words).length);
  });

  it("holds more than 2^24 distinct words, its memory past 2 GiB, every one counted once", () => {
    // Distinct by construction: base-36 numerals of 0 … n-1, a million to a block.
    const n = 17_000_000;
    const dict = new WordDictionary();
    const counts = new WordCounts(dict);
    for (let from = 0; from < n; from += 1 << 20) {
      const words = Array.from({ length: Math.min(1 << 20, n - from) }, (_, i) => (from + i).toString(36));
      counts.addWords(Buffer.from(`${words.join(" ")} `, "latin1"));
    }
    expect([counts.total, counts.distinct, dict.size]).toEqual([n, n, n]);
    expect(counts.counts().every((c) => c === 1)).toBe(true);
    const listed = counts.words();
    expect(listed.slice(0, 6)).toBe("0\n1\n2\n");
    expect(listed.endsWith(`\n${(n - 1).toString(36)}\n`)).toBe(true);
  }, 120_000);

  it("shares one dictionary between counters, and carries counts to another by their words", () => {
    const a = hostileText(4, 100_000);
    const b = hostileText(5, 100_000);
    const dict = new WordDictionary();
    const first = new WordCounts(dict);
    first.addWords(a);
    const second = new WordCounts(dict);
    second.addWords(b);
    const merged = new WordCounts(dict);
    merged.addCounts(first);
    merged.addCounts(second);
    // Across dictionaries (another thread, or a part read back): by the words' bytes.
    const elsewhere = new WordCounts(new WordDictionary());
    elsewhere.addCounted(first.words(), first.counts());
    elsewhere.addCounted(second.words(), second.counts());
    const expected = pythonCounts(a, b).words;
    expect(countsOf(merged).words).toEqual(expected);
    expect(countsOf(elsewhere).words).toEqual(expected);
  });

  it("refuses counts that do not match their words", () => {
    const counts = new WordCounts(new WordDictionary());
    expect(() => counts.addCounted("a\nb\n", [1])).toThrow(/2 words, 1 counts/);
    expect(() => counts.addCounted("a\nb", [1, 2])).toThrow(/no "\\n" after the last word/);
  });
});
