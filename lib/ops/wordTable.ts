/**
 * Counts distinct byte strings without making a JS string per occurrence: an open-addressing
 * hash table over an arena of the words' bytes. A string is made once per distinct word,
 * when the counts are read out. This is wordcount's hot loop.
 */
import { latin1, WHITESPACE } from "../records/lines.js";

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

export class WordTable {
  #arena = Buffer.allocUnsafe(1 << 16);
  #arenaUsed = 0;
  #slots = new Int32Array(1 << 12); // entry index + 1; 0 = empty
  #mask = (1 << 12) - 1;
  #start = new Int32Array(1 << 11);
  #length = new Int32Array(1 << 11);
  #hash = new Int32Array(1 << 11);
  #count = new Float64Array(1 << 11);
  #size = 0;
  /** Words seen, repeats included. */
  total = 0;

  get distinct(): number {
    return this.#size;
  }

  /** Counts every word (run of non-whitespace bytes) of b. */
  addWords(b: Buffer): void {
    const n = b.length;
    const ws = WHITESPACE;
    let i = 0;
    while (i < n) {
      while (i < n && ws[b[i]!] === 1) i++;
      if (i >= n) break;
      const s = i;
      let h = FNV_OFFSET;
      while (i < n) {
        const c = b[i]!;
        if (ws[c] === 1) break;
        h = Math.imul(h ^ c, FNV_PRIME);
        i++;
      }
      this.#add(b, s, i, h, 1);
    }
  }

  /** Adds count occurrences of the latin1 byte string w (merging partials). */
  addString(w: string, count: number): void {
    const b = Buffer.from(w, "latin1");
    let h = FNV_OFFSET;
    for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, FNV_PRIME);
    this.#add(b, 0, b.length, h, count);
    this.total -= count; // totals are merged by the caller
  }

  #add(b: Buffer, s: number, e: number, h: number, count: number): void {
    this.total += count;
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
        if (j === len) {
          this.#count[k]! += count;
          return;
        }
      }
      slot = (slot + 1) & this.#mask;
    }
    this.#insert(b, s, len, h, count, slot);
  }

  #insert(b: Buffer, s: number, len: number, h: number, count: number, slot: number): void {
    if (this.#arenaUsed + len > this.#arena.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.#arena.length * 2, this.#arenaUsed + len));
      this.#arena.copy(bigger, 0, 0, this.#arenaUsed);
      this.#arena = bigger;
    }
    const k = this.#size++;
    if (k === this.#start.length) this.#growEntries();
    b.copy(this.#arena, this.#arenaUsed, s, s + len);
    this.#start[k] = this.#arenaUsed;
    this.#length[k] = len;
    this.#hash[k] = h;
    this.#count[k] = count;
    this.#arenaUsed += len;
    this.#slots[slot] = k + 1;
    if (this.#size * 2 > this.#slots.length) this.#rehash();
  }

  #growEntries(): void {
    const grow = <T extends Int32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const bigger = make(a.length * 2);
      bigger.set(a);
      return bigger;
    };
    this.#start = grow(this.#start, (n) => new Int32Array(n));
    this.#length = grow(this.#length, (n) => new Int32Array(n));
    this.#hash = grow(this.#hash, (n) => new Int32Array(n));
    this.#count = grow(this.#count, (n) => new Float64Array(n));
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

  /** [latin1 byte string, count] for every distinct word, in first-seen order. */
  entries(): [string, number][] {
    const out: [string, number][] = new Array(this.#size);
    for (let k = 0; k < this.#size; k++) {
      const at = this.#start[k]!;
      out[k] = [latin1(this.#arena, at, at + this.#length[k]!), this.#count[k]!];
    }
    return out;
  }
}
