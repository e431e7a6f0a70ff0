/**
 * Counts words by their bytes without making a JS string per occurrence. This is
 * wordcount's hot loop.
 *
 * A WordDictionary interns byte strings in a WebAssembly kernel (wordKernel.wat): it finds
 * word boundaries 64 bytes at a time with SIMD, hashes each word 16 bytes at a time and
 * counts it in an open-addressing table in the kernel's memory, next to an arena that
 * keeps every distinct word followed by "\n", each with a dense index. WordCounts counts
 * over a dictionary's indexes. One dictionary serves every chunk a thread maps, so a chunk
 * inserts only words the thread has not met before, and counts made in one thread merge
 * there by index, with no hashing at all.
 */
import { randomBytes } from "node:crypto";
import { CloudmillError, ErrorCode } from "../errors.js";
import { latin1, WHITESPACE } from "../records/lines.js";
import { WORD_KERNEL_WASM } from "./wordKernelWasm.js";

const NL = 0x0a;
const SPACE = 0x20;
/** Input bytes per kernel call: the kernel's input region holds one slice. */
const SLICE = 1 << 20;
/** Spaces after a slice: the kernel reads up to 64 + 16 bytes past its end. */
const PAD = 128;
const INITIAL_CAP = 1 << 13;
const INITIAL_ARENA = 1 << 18;
/** Readable bytes the kernel needs past the arena's end (16-byte compares). */
const ARENA_SLACK = 16;
const SLOT_BYTES = 16;

/** What this module uses of WebAssembly (the compiler's Node types do not declare it). */
interface WasmGlobal {
  value: number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** The kernel's exports (wordKernel.wat documents the layout). */
interface Kernel {
  memory: { readonly buffer: ArrayBuffer; grow(pages: number): number };
  /** Keys the word hash (wordKernel.wat): a 64-bit random value per instance. */
  seed(key: bigint): void;
  scan(at: number, end: number): number;
  rehash(from: number, count: number): void;
  drain(indexes: number, counts: number): number;
  slots: WasmGlobal;
  mask: WasmGlobal;
  ents: WasmGlobal;
  size: WasmGlobal;
  cap: WasmGlobal;
  seen: WasmGlobal;
  seenN: WasmGlobal;
  arena: WasmGlobal;
  used: WasmGlobal;
  arenaCap: WasmGlobal;
  words: WasmGlobal;
  out: WasmGlobal;
  outN: WasmGlobal;
}

/** Pending counts are drained before they could pass the table's 31-bit counters. */
const MAX_PENDING_WORDS = 2 ** 30;

/** Where a dictionary hands counts: counts[i] more of the word at indexes[i]. */
export interface CountSink {
  take(indexes: Int32Array, counts: Int32Array): void;
}

let compiled: object | undefined;
const kernelModule = (): object => (compiled ??= new wasm.Module(Buffer.from(WORD_KERNEL_WASM, "base64")));

export class WordDictionary {
  readonly #k: Kernel;
  /** Next free byte of the kernel's memory: regions are never freed, a grown one is placed anew. */
  #top = 16;
  #input = 0;
  #inputCap = 0;
  #out = 0;
  #outCap = 0;
  /** The sink whose counts the table holds, and how many words they add up to. */
  #pending: CountSink | undefined;
  #pendingWords = 0;
  /** Where drain() writes indexes and counts: cap of each. */
  #drained = 0;

  constructor() {
    this.#k = new wasm.Instance(kernelModule(), {}).exports as unknown as Kernel;
    // Words are told apart by their bytes, never by their hash: the key changes where they sit, not what is counted.
    this.#k.seed(randomBytes(8).readBigInt64LE());
    this.#growTable(INITIAL_CAP);
    this.#growArena(INITIAL_ARENA);
  }

  /** Distinct words interned. */
  get size(): number {
    return this.#k.size.value;
  }

  /** Bytes the words take (with their separators). */
  get bytes(): number {
    return this.#k.used.value >>> 0;
  }

  /**
   * Counts every word (run of non-whitespace bytes) of b for sink; returns how many words.
   * The counts stay in the kernel's table until `flush(sink)`, or until another sink counts
   * or the table grows: a block's distinct words are handed over per sink, not per block.
   */
  count(b: Uint8Array, sink: CountSink): number {
    if (this.#pending !== sink || this.#pendingWords + b.length / 2 + 1 > MAX_PENDING_WORDS) this.#drain();
    this.#pending = sink;
    let words = 0;
    this.#slices(b, (at, end) => {
      const k = this.#k;
      k.words.value = 0;
      this.#scan(at, end);
      words += k.words.value;
    });
    this.#pendingWords += words;
    return words;
  }

  /** Hands sink its counts still held in the kernel's table. */
  flush(sink: CountSink): void {
    if (this.#pending === sink) this.#drain();
  }

  /** The index of every word of b, in order, interning the new ones. */
  indexesOf(b: Uint8Array): Int32Array {
    let indexes = new Int32Array(64);
    let n = 0;
    this.#slices(b, (at, end) => {
      const k = this.#k;
      const most = ((end - at) >> 1) + 1;
      if (most > this.#outCap) {
        this.#outCap = Math.max(most, this.#outCap * 2);
        this.#out = this.#alloc(this.#outCap * 4);
      }
      k.out.value = this.#out;
      k.outN.value = 0;
      try {
        this.#scan(at, end);
      } finally {
        k.out.value = 0;
      }
      const found = k.outN.value;
      if (n + found > indexes.length) {
        const bigger = new Int32Array(Math.max(indexes.length * 2, n + found));
        bigger.set(indexes.subarray(0, n));
        indexes = bigger;
      }
      indexes.set(new Int32Array(k.memory.buffer, this.#out, found), n);
      n += found;
    });
    return indexes.subarray(0, n);
  }

  /** The words at indexes[0, n), each as latin1 bytes followed by "\n". */
  wordsAt(indexes: Int32Array, n: number): string {
    const k = this.#k;
    const ents = new Int32Array(k.memory.buffer, k.ents.value >>> 0, 2 * k.size.value);
    let bytes = 0;
    for (let i = 0; i < n; i++) bytes += ents[2 * indexes[i]! + 1]! + 1;
    const out = Buffer.allocUnsafe(bytes);
    const arena = new Uint8Array(k.memory.buffer, k.arena.value >>> 0, k.used.value >>> 0);
    let o = 0;
    for (let i = 0; i < n; i++) {
      const e = 2 * indexes[i]!;
      const at = ents[e]! >>> 0;
      const len = ents[e + 1]! + 1;
      out.set(arena.subarray(at, at + len), o);
      o += len;
    }
    return latin1(out, 0, bytes);
  }

  /**
   * Copies b into the kernel's input region a slice at a time, each cut after whitespace
   * (or past a word longer than a slice), with spaces after it, and calls each(at, end).
   */
  #slices(b: Uint8Array, each: (at: number, end: number) => void): void {
    const n = b.length;
    let from = 0;
    while (from < n) {
      let to = Math.min(n, from + SLICE);
      if (to < n) {
        let cut = to;
        while (cut > from && WHITESPACE[b[cut - 1]!] !== 1) cut--;
        if (cut > from) to = cut;
        else while (to < n && WHITESPACE[b[to]!] !== 1) to++;
      }
      const len = to - from;
      if (len + PAD > this.#inputCap) {
        // Doubled, not fitted: regions are never freed, so a run of ever longer words costs log n of them.
        this.#inputCap = Math.max(SLICE, len, 2 * this.#inputCap) + PAD;
        this.#input = this.#alloc(this.#inputCap);
      }
      const memory = new Uint8Array(this.#k.memory.buffer);
      memory.set(b.subarray(from, to), this.#input);
      memory.fill(SPACE, this.#input + len, this.#input + len + PAD);
      each(this.#input, this.#input + len);
      from = to;
    }
  }

  /** Scans [at, end) of the input region, growing the table or arena each time the kernel stops for room. */
  #scan(at: number, end: number): void {
    const k = this.#k;
    for (;;) {
      const stopped = k.scan(at, end) >>> 0;
      if (stopped >= end) return;
      // Slots move when the table grows, and the seen list names slots.
      this.#drain();
      const size = k.size.value;
      const cap = k.cap.value;
      if (size >= cap) this.#growTable(cap * 2);
      else this.#growArena(Math.max((k.arenaCap.value >>> 0) * 2, (k.used.value >>> 0) + (end - stopped) + 1));
      at = stopped;
    }
  }

  /** Hands the pending sink the counts of the words it met since the last drain, and zeroes them. */
  #drain(): void {
    const k = this.#k;
    const n = k.seenN.value;
    const sink = this.#pending;
    this.#pendingWords = 0;
    if (n === 0 || sink === undefined) return;
    const cap = k.cap.value;
    k.drain(this.#drained, this.#drained + 4 * cap);
    sink.take(new Int32Array(k.memory.buffer, this.#drained, n), new Int32Array(k.memory.buffer, this.#drained + 4 * cap, n));
  }

  /** Places bytes of fresh (zeroed) memory and returns where. */
  #alloc(bytes: number): number {
    const at = this.#top;
    const end = at + bytes;
    const memory = this.#k.memory;
    const have = memory.buffer.byteLength;
    if (end > have) {
      try {
        memory.grow(Math.ceil((end - have) / 65536));
      } catch {
        // A WebAssembly memory ends at 4 GiB: about 30 million distinct words in one thread.
        throw new CloudmillError(
          ErrorCode.OUT_OF_MEMORY,
          `wordcount: ${this.size} distinct words fill one thread's word table (4 GiB); the keyed op distinct counts any number`,
        );
      }
    }
    this.#top = Math.ceil(end / 16) * 16;
    return at;
  }

  /** Room for cap words: slots rehashed (counts move with them), entries copied. */
  #growTable(cap: number): void {
    const k = this.#k;
    const size = k.size.value;
    const oldSlots = k.slots.value >>> 0;
    const oldCount = size === 0 ? 0 : k.mask.value + 1;
    const oldEnts = k.ents.value >>> 0;
    const slots = this.#alloc(cap * 2 * SLOT_BYTES);
    const ents = this.#alloc(cap * 8);
    const seen = this.#alloc(cap * 4);
    this.#drained = this.#alloc(cap * 8);
    new Int32Array(k.memory.buffer).copyWithin(ents / 4, oldEnts / 4, oldEnts / 4 + 2 * size);
    k.slots.value = slots;
    k.mask.value = cap * 2 - 1;
    k.rehash(oldSlots, oldCount);
    k.ents.value = ents;
    k.seen.value = seen;
    k.cap.value = cap;
  }

  /** Room for cap bytes of words. */
  #growArena(cap: number): void {
    const k = this.#k;
    const arena = this.#alloc(cap + ARENA_SLACK);
    const used = k.used.value >>> 0;
    const old = k.arena.value >>> 0;
    new Uint8Array(k.memory.buffer).copyWithin(arena, old, old + used);
    k.arena.value = arena;
    k.arenaCap.value = cap;
  }
}

/** Word counts over a dictionary's indexes, with the words met listed in first-seen order. */
export class WordCounts implements CountSink {
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
    this.dict.flush(this);
    return this.#distinct;
  }

  /** Counts every word (run of non-whitespace bytes) of b. */
  addWords(b: Buffer): void {
    this.total += this.dict.count(b, this);
  }

  /**
   * Adds counts read out of another WordCounts (`words()` and `counts()`): words as latin1
   * bytes each ending in "\n", with their counts in the same order.
   */
  addCounted(words: string, counts: readonly number[]): void {
    const b = Buffer.from(words, "latin1");
    if (b.length > 0 && b[b.length - 1] !== NL)
      throw new CloudmillError(ErrorCode.INTERNAL, `word counts do not match their words (no "\\n" after the last word)`);
    const indexes = this.dict.indexesOf(b);
    if (indexes.length !== counts.length)
      throw new CloudmillError(
        ErrorCode.INTERNAL,
        `word counts do not match their words (${indexes.length} words, ${counts.length} counts)`,
      );
    for (let i = 0; i < indexes.length; i++) {
      const count = counts[i];
      if (typeof count !== "number")
        throw new CloudmillError(ErrorCode.INTERNAL, `word counts do not match their words (count ${i + 1} is not a number)`);
      this.#bump(indexes[i]!, count);
    }
  }

  /** Adds the counts of other, made over the same dictionary (in this thread): by index, no hashing. */
  addCounts(other: WordCounts): void {
    if (other.dict !== this.dict)
      throw new CloudmillError(ErrorCode.INTERNAL, "word counts over another dictionary are added by their words");
    this.dict.flush(other);
    const seen = other.#seen;
    const count = other.#count;
    for (let i = 0; i < other.#distinct; i++) {
      const k = seen[i]!;
      this.#bump(k, count[k]!);
    }
  }

  /** Every word met, in first-seen order, as latin1 bytes each followed by "\n". */
  words(): string {
    this.dict.flush(this);
    return this.dict.wordsAt(this.#seen, this.#distinct);
  }

  /** The count of every word met, in the order of `words()`. */
  counts(): number[] {
    this.dict.flush(this);
    const out = new Array<number>(this.#distinct);
    for (let i = 0; i < this.#distinct; i++) out[i] = this.#count[this.#seen[i]!]!;
    return out;
  }

  take(indexes: Int32Array, counts: Int32Array): void {
    for (let i = 0; i < indexes.length; i++) this.#bump(indexes[i]!, counts[i]!);
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
