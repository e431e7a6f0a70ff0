/**
 * Counts words by their bytes without making a JS string per occurrence. This is
 * wordcount's hot loop.
 *
 * A WordDictionary interns byte strings: an open-addressing hash table over an arena that
 * keeps every distinct word followed by "\n", each with a dense index. WordCounts counts
 * over a dictionary's indexes. One dictionary serves every chunk a thread maps, so a chunk
 * inserts only words the thread has not met before, and counts made in one thread merge
 * there by index, with no hashing at all.
 */
import { CloudmillError, ErrorCode } from "../errors.js";
import { latin1, WHITESPACE } from "../records/lines.js";

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const NL = 0x0a;
/** Words shorter than this are copied byte by byte: Buffer#copy costs more per call. */
const COPY_LOOP_MAX = 64;

/** Copies len bytes of src at s to dst at at. */
const copyBytes = (src: Uint8Array, s: number, dst: Buffer, at: number, len: number): void => {
  if (len > COPY_LOOP_MAX) dst.set(src.subarray(s, s + len), at);
  else for (let j = 0; j < len; j++) dst[at + j] = src[s + j]!;
};

export class WordDictionary {
  #arena = Buffer.allocUnsafe(1 << 16);
  #arenaUsed = 0;
  #slots = new Int32Array(1 << 12); // index + 1; 0 = empty
  #mask = (1 << 12) - 1;
  #start = new Int32Array(1 << 11);
  #length = new Int32Array(1 << 11);
  #hash = new Int32Array(1 << 11);
  #size = 0;

  /** Distinct words interned. */
  get size(): number {
    return this.#size;
  }

  /** Bytes the words take (with their separators). */
  get bytes(): number {
    return this.#arenaUsed;
  }

  /** The index of the word b[s, e) whose FNV-1a hash is h, interning it if new. */
  intern(b: Uint8Array, s: number, e: number, h: number): number {
    const len = e - s;
    const arena = this.#arena;
    let slot = h & this.#mask;
    for (;;) {
      const entry = this.#slots[slot]!;
      if (entry === 0) break;
      const k = entry - 1;
      if (this.#hash[k] === h && this.#length[k] === len) {
        const at = this.#start[k]!;
        let j = 0;
        while (j < len && arena[at + j] === b[s + j]) j++;
        if (j === len) return k;
      }
      slot = (slot + 1) & this.#mask;
    }
    return this.#insert(b, s, len, h, slot);
  }

  /** The words at indexes[0, n), each as latin1 bytes followed by "\n". */
  wordsAt(indexes: Int32Array, n: number): string {
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += this.#length[indexes[i]!]! + 1;
    const out = Buffer.allocUnsafe(bytes);
    const arena = this.#arena;
    let o = 0;
    for (let i = 0; i < n; i++) {
      const k = indexes[i]!;
      const at = this.#start[k]!;
      const len = this.#length[k]! + 1;
      copyBytes(arena, at, out, o, len);
      o += len;
    }
    return latin1(out, 0, bytes);
  }

  #insert(b: Uint8Array, s: number, len: number, h: number, slot: number): number {
    if (this.#arenaUsed + len + 1 > this.#arena.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.#arena.length * 2, this.#arenaUsed + len + 1));
      this.#arena.copy(bigger, 0, 0, this.#arenaUsed);
      this.#arena = bigger;
    }
    const k = this.#size++;
    if (k === this.#start.length) this.#growEntries();
    const arena = this.#arena;
    const at = this.#arenaUsed;
    copyBytes(b, s, arena, at, len);
    arena[at + len] = NL;
    this.#start[k] = at;
    this.#length[k] = len;
    this.#hash[k] = h;
    this.#arenaUsed = at + len + 1;
    this.#slots[slot] = k + 1;
    if (this.#size * 2 > this.#slots.length) this.#rehash();
    return k;
  }

  #growEntries(): void {
    const grow = (a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> => {
      const bigger = new Int32Array(a.length * 2);
      bigger.set(a);
      return bigger;
    };
    this.#start = grow(this.#start);
    this.#length = grow(this.#length);
    this.#hash = grow(this.#hash);
  }

  #rehash(): void {
    const slots = new Int32Array(this.#slots.length * 2);
    const mask = slots.length - 1;
    for (let k = 0; k < this.#size; k++) {
      let slot = this.#hash[k]! & mask;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = k + 1;
    }
    this.#slots = slots;
    this.#mask = mask;
  }
}

/** Word counts over a dictionary's indexes, with the words met listed in first-seen order. */
export class WordCounts {
  readonly dict: WordDictionary;
  #count: Float64Array; // by dictionary index
  #seen: Int32Array; // indexes met, first-seen order
  #distinct = 0;
  /** Words seen, repeats included (addWords only; merged totals are the caller's). */
  total = 0;

  constructor(dict: WordDictionary) {
    this.dict = dict;
    // Sized for the words the dictionary holds: a chunk mostly meets words met before.
    const size = Math.max(1 << 11, dict.size + (dict.size >> 3));
    this.#count = new Float64Array(size);
    this.#seen = new Int32Array(size);
  }

  get distinct(): number {
    return this.#distinct;
  }

  /** Counts every word (run of non-whitespace bytes) of b. */
  addWords(b: Buffer): void {
    const n = b.length;
    const ws = WHITESPACE;
    const dict = this.dict;
    let i = 0;
    while (i < n) {
      while (i < n && ws[b[i]!] === 1) i++;
      if (i >= n) break;
      const s = i;
      let h = FNV_OFFSET;
      while (i < n) {
        const c = b[i]!;
        // Every whitespace byte is ≤ 0x20: one compare settles most bytes without a table load.
        if (c <= 0x20 && ws[c] === 1) break;
        h = Math.imul(h ^ c, FNV_PRIME);
        i++;
      }
      this.total++;
      this.#bump(dict.intern(b, s, i, h), 1);
    }
  }

  /**
   * Adds counts read out of another WordCounts (`words()` and `counts()`): words as latin1
   * bytes each ending in "\n", with their counts in the same order.
   */
  addCounted(words: string, counts: readonly number[]): void {
    const b = Buffer.from(words, "latin1");
    const n = b.length;
    const dict = this.dict;
    let i = 0;
    let k = 0;
    while (i < n) {
      const s = i;
      let h = FNV_OFFSET;
      while (i < n) {
        const c = b[i]!;
        if (c === NL) break;
        h = Math.imul(h ^ c, FNV_PRIME);
        i++;
      }
      const count = counts[k];
      if (i === s || i === n || typeof count !== "number") {
        throw new CloudmillError(
          ErrorCode.INTERNAL,
          `word counts do not match their words (word ${k + 1} of ${counts.length}, at byte ${s} of ${n})`,
        );
      }
      this.#bump(dict.intern(b, s, i, h), count);
      k++;
      i++;
    }
    if (k !== counts.length)
      throw new CloudmillError(ErrorCode.INTERNAL, `word counts do not match their words (${k} words, ${counts.length} counts)`);
  }

  /** Adds the counts of other, made over the same dictionary (in this thread): by index, no hashing. */
  addCounts(other: WordCounts): void {
    if (other.dict !== this.dict)
      throw new CloudmillError(ErrorCode.INTERNAL, "word counts over another dictionary are added by their words");
    const seen = other.#seen;
    const count = other.#count;
    for (let i = 0; i < other.#distinct; i++) {
      const k = seen[i]!;
      this.#bump(k, count[k]!);
    }
  }

  /** Every word met, in first-seen order, as latin1 bytes each followed by "\n". */
  words(): string {
    return this.dict.wordsAt(this.#seen, this.#distinct);
  }

  /** The count of every word met, in the order of `words()`. */
  counts(): number[] {
    const out = new Array<number>(this.#distinct);
    for (let i = 0; i < this.#distinct; i++) out[i] = this.#count[this.#seen[i]!]!;
    return out;
  }

  #bump(k: number, by: number): void {
    if (k >= this.#count.length) {
      const bigger = new Float64Array(Math.max(this.#count.length * 2, k + 1));
      bigger.set(this.#count);
      this.#count = bigger;
    }
    const was = this.#count[k]!;
    if (was === 0 && by !== 0) {
      if (this.#distinct === this.#seen.length) {
        const bigger = new Int32Array(this.#seen.length * 2);
        bigger.set(this.#seen);
        this.#seen = bigger;
      }
      this.#seen[this.#distinct++] = k;
    }
    this.#count[k] = was + by;
  }
}
