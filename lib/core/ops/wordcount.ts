/**
 * `wordcount`: words are runs of bytes other than ASCII whitespace, case-sensitive.
 * Words are counted by their bytes (wordTable.ts), kept in partials as latin1 "byte
 * strings" (one char per byte: exact for any bytes) and decoded as UTF-8 only for the
 * result. Ties in `top` are broken by the word's bytes ascending, which is Unicode code
 * point order.
 */
import * as z from "zod";
import { bytesToUtf8 } from "../records/lines.js";
import type { Op } from "./types.js";
import { intParam, parseOpParams } from "./params.js";
import { topK } from "./topK.js";
import { WordCounts, WordDictionary } from "./wordTable.js";

/**
 * Every distinct word as latin1 bytes followed by "\n" (a word never holds whitespace),
 * with their counts in the same order: one string and one number array are read out of
 * word counts without a string per word, and parse far faster than an array of pairs.
 */
export interface WordcountPartial {
  total: number;
  words: string;
  counts: number[];
}

/**
 * A mapper's partial also carries its word counts, under a symbol key that JSON and
 * postMessage never copy: a merger in the same thread over the same dictionary adds them
 * by index. A partial read back from a part has none and is hashed.
 */
const COUNTS: unique symbol = Symbol("cloudmill.wordcount.counts");
type LocalPartial = WordcountPartial & { [COUNTS]?: WordCounts };

/**
 * The thread's dictionary, shared by its mappers and mergers. It only grows, so past a
 * bound a fresh one serves new mappers and mergers (old ones keep theirs): a long-lived
 * worker that sees many vocabularies holds at most about one bound's worth more.
 */
const DICTIONARY_MAX_WORDS = 1 << 20;
const DICTIONARY_MAX_BYTES = 32 << 20;
let shared = new WordDictionary();
const sharedDictionary = (): WordDictionary => {
  if (shared.size > DICTIONARY_MAX_WORDS || shared.bytes > DICTIONARY_MAX_BYTES) shared = new WordDictionary();
  return shared;
};

/**
 * A mapper's partial (its counts take no more words): words and counts are read out only
 * when read — to write a part, or to cross to another thread. A chunk merged in the thread
 * that mapped it never needs them (with the part's JSON, they cost a tenth of the map).
 */
const lazyPartialOf = (counts: WordCounts): WordcountPartial => {
  let words: string | undefined;
  let list: number[] | undefined;
  const partial = {
    total: counts.total,
    get words() {
      return (words ??= counts.words());
    },
    get counts() {
      return (list ??= counts.counts());
    },
  };
  return Object.defineProperty(partial, COUNTS, { value: counts, enumerable: false });
};

/** The words of a partial as separate latin1 strings. */
const wordsOf = (p: WordcountPartial): string[] => (p.counts.length === 0 ? [] : p.words.slice(0, -1).split("\n"));

export interface WordcountResult {
  total: number;
  distinct: number;
  top: [string, number][];
}

const Params = z.strictObject({ k: intParam(0, 100_000).default(10) });
type Params = z.output<typeof Params>;

const byCountThenWord = (a: [string, number], b: [string, number]): number => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

export const wordcount: Op<Params, WordcountPartial, WordcountResult> = {
  name: "wordcount",
  orderFreeMerge: true,
  description: "total and distinct words, and the k most frequent (ties by word ascending)",
  formats: ["lines"],
  paramsHelp: ["k=10               how many of the most frequent words to list"],
  parseParams: (raw) => parseOpParams("wordcount", Params, raw),
  mapper() {
    const counts = new WordCounts(sharedDictionary());
    return {
      block: (block) => counts.addWords(block.bytes),
      finish: () => lazyPartialOf(counts),
    };
  },
  merger() {
    const merged = new WordCounts(sharedDictionary());
    let total = 0;
    return {
      add(p: LocalPartial) {
        total += p.total;
        const local = p[COUNTS];
        if (local?.dict === merged.dict) merged.addCounts(local);
        else merged.addCounted(p.words, p.counts);
      },
      // Read out now, and with no counts attached: the merger may take more partials after.
      value: () => ({ total, words: merged.words(), counts: merged.counts() }),
    };
  },
  finalize(p, params) {
    const words = wordsOf(p);
    const entries = words.map((w, i): [string, number] => [w, p.counts[i]!]);
    const top = topK(entries, params.k, byCountThenWord).map(([w, c]): [string, number] => [bytesToUtf8(w), c]);
    return { total: p.total, distinct: words.length, top };
  },
};
