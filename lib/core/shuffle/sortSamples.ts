/**
 * Every run's samples of a `sort`, packed for the reducer's stage boundary: a 1 TB sort has
 * 60,000 runs of 256 samples, 15 million keys, which as JSON objects took 4.4 GB of heap and
 * here take about 30 bytes each (a class byte, a double, an offset, and the line's text, at
 * most 128 bytes of it unless more set it apart, in one string per run). Splitters come from
 * at most SPLITTER_SAMPLES of them, evenly thinned; each
 * partition's plan is cut from every run's own samples, one partition at a time, so no plan
 * for all partitions is ever held at once.
 */
import { CloudmillError, ErrorCode } from "../errors.js";
import type { SortRef } from "./shuffleRun.js";
import { compareSortKeys, type SortKey } from "./sortRun.js";

/** Most samples the splitters are chosen from: enough to balance 10,000 partitions closely. */
export const SPLITTER_SAMPLES = 1 << 20;

/** A growable typed array's storage. */
const grown = <T extends Float64Array | Uint32Array | Uint8Array>(a: T, need: number, make: (n: number) => T): T => {
  if (need <= a.length) return a;
  const b = make(Math.max(need, a.length * 2));
  b.set(a);
  return b;
};

/** The byte range of each run a partition's lines may lie in: [run key, start, end]. */
export type Segments = [string, number, number][];

export class SortSamples {
  /** Per run: its shuffle key, bytes, lines per sample, first sample, and its samples' text. */
  readonly #keys: string[] = [];
  readonly #bytes: number[] = [];
  readonly #steps: number[] = [];
  readonly #first: number[] = [0];
  readonly #texts: string[] = [];
  /** Per sample: class, value, byte offset in its run, and where its text ends in its run's. */
  #cls = new Uint8Array(1024);
  #values = new Float64Array(1024);
  /** Offsets in runs of at most 4 GiB (add refuses a longer one). */
  #offsets = new Uint32Array(1024);
  #textEnds = new Uint32Array(1024);
  /** 1: the sample holds only the start of its line. */
  #cut = new Uint8Array(1024);
  #n = 0;

  get runs(): number {
    return this.#keys.length;
  }

  get samples(): number {
    return this.#n;
  }

  add(ref: SortRef): void {
    // Offsets are 32-bit: a run is a chunk's lines (the mapper's own offsets stop at 2 GiB).
    if (ref.bytes > 0xffff_ffff) throw new CloudmillError(ErrorCode.INTERNAL, `sort run ${ref.key} has ${ref.bytes} bytes, past 4 GiB`);
    const need = this.#n + ref.samples.length;
    this.#cls = grown(this.#cls, need, (n) => new Uint8Array(n));
    this.#values = grown(this.#values, need, (n) => new Float64Array(n));
    this.#offsets = grown(this.#offsets, need, (n) => new Uint32Array(n));
    this.#textEnds = grown(this.#textEnds, need, (n) => new Uint32Array(n));
    this.#cut = grown(this.#cut, need, (n) => new Uint8Array(n));
    for (const i of ref.cut ?? []) this.#cut[this.#n + i] = 1;
    const lines: string[] = [];
    let end = 0;
    for (const [[cls, value, line], offset] of ref.samples) {
      this.#cls[this.#n] = cls;
      this.#values[this.#n] = value;
      this.#offsets[this.#n] = offset;
      lines.push(line);
      end += line.length;
      this.#textEnds[this.#n++] = end;
    }
    this.#keys.push(ref.key);
    this.#bytes.push(ref.bytes);
    this.#steps.push(ref.step);
    // One flat string per run (appending would build a rope of a node per sample).
    this.#texts.push(lines.join(""));
    this.#first.push(this.#n);
  }

  /** Sample `i` (of run `run`)'s line. */
  #text(run: number, i: number): string {
    const start = i === this.#first[run]! ? 0 : this.#textEnds[i - 1]!;
    return this.#texts[run]!.slice(start, this.#textEnds[i]!);
  }

  #key(run: number, i: number): SortKey {
    return [this.#cls[i] as 0 | 1, this.#values[i]!, this.#text(run, i)];
  }

  /** Sample i (of run `run`) against a key, as compareSortKeys orders them. */
  #compare(run: number, i: number, key: SortKey): number {
    const c = this.#cls[i]! - key[0];
    if (c !== 0) return c;
    const v = this.#values[i]!;
    if (v !== key[1]) return v < key[1] ? -1 : 1;
    const t = this.#text(run, i);
    return t < key[2] ? -1 : t > key[2] ? 1 : 0;
  }

  /**
   * The R − 1 splitters that cut all runs' lines into R ranges of about equal size: the
   * samples' weighted quantiles (each stands for `step` lines of its run, or, thinned to
   * SPLITTER_SAMPLES, for that many more). Increasing: fewer distinct keys than partitions
   * give fewer splitters, and the last partitions are empty.
   */
  splitters(partitions: number, most = SPLITTER_SAMPLES): SortKey[] {
    const every = Math.max(1, Math.ceil(this.#n / most));
    const runOf: number[] = [];
    const picked: number[] = [];
    /**
     * The lines each pick stands for: `every` samples' worth. Each run starts its picks at
     * another offset: sample k of every run sits near the same quantile of the data, and picks
     * all at k ≡ 0 would leave gaps no splitter can fill; rotated, the picks below a key stand,
     * on average over the runs, for the lines below it.
     */
    const weights: number[] = [];
    for (let r = 0; r < this.runs; r++) {
      const end = this.#first[r + 1]!;
      for (let i = this.#first[r]! + (r % every); i < end; i += every) {
        runOf.push(r);
        picked.push(i);
        weights.push(this.#steps[r]! * every);
      }
    }
    const order = Array.from({ length: picked.length }, (_, k) => k);
    const cls = this.#cls;
    const values = this.#values;
    // Text only on a tie of class and value; equal keys keep their runs' order (as a stable sort would).
    order.sort((a, b) => {
      const i = picked[a]!;
      const j = picked[b]!;
      const c = cls[i]! - cls[j]! || (values[i]! < values[j]! ? -1 : values[i]! > values[j]! ? 1 : 0);
      if (c !== 0) return c;
      const ti = this.#text(runOf[a]!, i);
      const tj = this.#text(runOf[b]!, j);
      return ti < tj ? -1 : ti > tj ? 1 : a - b;
    });
    let total = 0;
    for (const w of weights) total += w;
    const splitters: SortKey[] = [];
    let seen = 0;
    let next = 1;
    for (const k of order) {
      seen += weights[k]!;
      while (next < partitions && seen >= (total * next) / partitions) {
        const key = this.#key(runOf[k]!, picked[k]!);
        const last = splitters.at(-1);
        // Equal splitters would leave a partition empty by construction: keep them increasing.
        if (!last || compareSortKeys(last, key) < 0) splitters.push(key);
        next++;
      }
    }
    return splitters;
  }

  /**
   * How many of a run's samples are below `key` (its samples are in order). `surely`: a cut
   * sample that `key` begins with does not count as below (its line may go on past `key`); the
   * search moves past a sample only once it counted, so the sample the count ends after is
   * surely below `key`, which is all a segment's start needs.
   */
  #below(run: number, key: SortKey, surely = false): number {
    let lo = this.#first[run]!;
    let hi = this.#first[run + 1]!;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#compare(run, mid, key) < 0 && !(surely && this.#mayReach(run, mid, key))) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Whether sample i, below `key`, is a cut line that `key` begins with. */
  #mayReach(run: number, i: number, key: SortKey): boolean {
    return this.#cut[i] === 1 && this.#cls[i] === key[0] && this.#values[i] === key[1] && key[2].startsWith(this.#text(run, i));
  }

  /**
   * The bytes of each run that can hold keys in [lo, hi) (null: unbounded): from its last
   * sample surely below lo to its first at or above hi. The lines outside the range that a segment
   * holds (fewer than a sample step at each end) are dropped by the reader.
   */
  segments(lo: SortKey | null, hi: SortKey | null): Segments {
    const out: Segments = [];
    for (let r = 0; r < this.runs; r++) {
      const first = this.#first[r]!;
      const last = this.#first[r + 1]!;
      let start = 0;
      if (lo) {
        const i = this.#below(r, lo, true);
        if (i > first) start = this.#offsets[i - 1]!;
      }
      let end = this.#bytes[r]!;
      if (hi) {
        const i = this.#below(r, hi);
        if (i < last) end = this.#offsets[i]!;
      }
      end = Math.max(start, end);
      if (end > start) out.push([this.#keys[r]!, start, end]);
    }
    return out;
  }
}
