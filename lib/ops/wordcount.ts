/**
 * `wordcount`: words are runs of bytes other than ASCII whitespace, case-sensitive.
 * Words are counted by their bytes (wordTable.ts), kept in partials as latin1 "byte
 * strings" (one char per byte: exact for any bytes) and decoded as UTF-8 only for the result. Ties in `top`
 * are broken by the word's bytes ascending, which is Unicode code point order.
 */
import { z } from "zod";
import { bytesToUtf8 } from "../records/lines.js";
import type { Op } from "./types.js";
import { intParam, parseOpParams } from "./params.js";
import { topK } from "./topK.js";
import { WordTable } from "./wordTable.js";

/**
 * Words as latin1 byte strings joined by "\n" (a word never holds whitespace), with their
 * counts in the same order: one string and one number array parse far faster than an
 * array of pairs, and the reducer parses one partial per chunk.
 */
export interface WordcountPartial {
  total: number;
  words: string;
  counts: number[];
}

const pack = (total: number, entries: Iterable<[string, number]>): WordcountPartial => {
  const words: string[] = [];
  const counts: number[] = [];
  for (const [w, c] of entries) {
    words.push(w);
    counts.push(c);
  }
  return { total, words: words.join("\n"), counts };
};

const unpack = (p: WordcountPartial): string[] => (p.counts.length === 0 ? [] : p.words.split("\n"));

export interface WordcountResult {
  total: number;
  distinct: number;
  top: [string, number][];
}

const Params = z.strictObject({ k: intParam(0, 100_000).default(10) });
type Params = z.output<typeof Params>;

const byCountThenWord = (a: [string, number], b: [string, number]): number =>
  b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

export const wordcount: Op<Params, WordcountPartial, WordcountResult> = {
  name: "wordcount",
  description: "total and distinct words, and the k most frequent (ties by word ascending)",
  formats: ["lines"],
  paramsHelp: ["k=10               how many of the most frequent words to list"],
  parseParams: (raw) => parseOpParams("wordcount", Params, raw),
  mapper() {
    const table = new WordTable();
    return {
      block: (block) => table.addWords(block.bytes),
      finish: () => pack(table.total, table.entries()),
    };
  },
  merger() {
    const counts = new Map<string, number>();
    let total = 0;
    return {
      add(p) {
        total += p.total;
        const words = unpack(p);
        for (let i = 0; i < words.length; i++) {
          const w = words[i]!;
          counts.set(w, (counts.get(w) ?? 0) + p.counts[i]!);
        }
      },
      value: () => pack(total, counts),
    };
  },
  finalize(p, params) {
    const words = unpack(p);
    const entries = words.map((w, i): [string, number] => [w, p.counts[i]!]);
    const top = topK(entries, params.k, byCountThenWord).map(([w, c]): [string, number] => [bytesToUtf8(w), c]);
    return { total: p.total, distinct: words.length, top };
  },
};
