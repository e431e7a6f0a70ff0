/**
 * The shuffle of `sort`, range-partitioned as TeraSort does, but sampled from the map output
 * itself: each map task sorts its chunk's lines into one run and records a few evenly spaced
 * keys of it with their byte offsets; once every chunk is mapped, splitters are chosen at the
 * weighted quantiles of all samples, so each partition holds about as many lines; each reduce
 * task merges, from every run, the byte range its samples bracket, keeping exactly the lines
 * in its key range. Concatenating the parts in partition order gives the sorted input.
 *
 * Order (as GNU `sort -g`, or `LC_ALL=C sort` for lines): a line with no number first, then
 * numbers by value (-0 equals 0; doubles, where sort uses long doubles), then, as the last
 * resort, the line's bytes. Lines keep their exact bytes (a `\r` too); each ends in `\n`.
 */
import { CloudmillError, ErrorCode } from "../errors.js";
import { latin1 } from "../records/lines.js";
import { parseNumberAt } from "../records/numbers.js";
import { heapify, popTop, siftDown } from "./heap.js";

/** How a sort reads its lines: as numbers (`sort -g`) or as bytes (`LC_ALL=C sort`). */
export type SortFormat = "numbers" | "lines";

/** A key as it travels in JSON: class (0: no number; 1: a number), value, and the line's bytes as latin1 text. */
export type SortKey = [cls: 0 | 1, value: number, line: string];

export const compareSortKeys = (a: SortKey, b: SortKey): number =>
  a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0) || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0);

const NL = 0x0a;

/** Compares bytes [as, ae) of a with [bs, be) of b. */
export const compareRanges = (a: Buffer, as: number, ae: number, b: Buffer, bs: number, be: number): number => {
  const n = Math.min(ae - as, be - bs);
  for (let i = 0; i < n; i++) {
    const d = a[as + i]! - b[bs + i]!;
    if (d !== 0) return d;
  }
  return ae - as - (be - bs);
};

/** The class and value of a line [s, e) of b (a number's line: class 1), throwing BAD_RECORD at `offset` for anything else. */
const keyOfLine = (format: SortFormat, b: Buffer, s: number, e: number, offset: number): [0 | 1, number] => {
  if (format === "lines") return [0, 0];
  const v = parseNumberAt(b, s, e, offset);
  return v === undefined ? [0, 0] : [1, v];
};

/** A sorted run's lines with their keys: what a map task builds, and a reduce task reads back. */
class Lines {
  cls = new Uint8Array(1024);
  values = new Float64Array(1024);
  starts = new Int32Array(1024);
  ends = new Int32Array(1024);
  n = 0;

  push(cls: 0 | 1, value: number, start: number, end: number): void {
    if (this.n === this.cls.length) {
      const grow = <T extends Uint8Array | Float64Array | Int32Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.cls = grow(this.cls);
      this.values = grow(this.values);
      this.starts = grow(this.starts);
      this.ends = grow(this.ends);
    }
    this.cls[this.n] = cls;
    this.values[this.n] = value;
    this.starts[this.n] = start;
    this.ends[this.n] = end;
    this.n++;
  }
}

const identity = (n: number): Uint32Array => {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  return order;
};

/**
 * Lines in (class, value, bytes) order: an LSD radix sort on the doubles' bits made monotone
 * (negative ones inverted, positive ones with the sign bit set; -0 as 0; a line with no number
 * below them all), 16 bits a pass, then each run of equal values sorted by its lines' bytes.
 */
const numberOrder = (n: number, cls: Uint8Array, values: Float64Array, byBytes: (i: number, j: number) => number): Uint32Array => {
  const hi = new Uint32Array(n);
  const lo = new Uint32Array(n);
  const f = new Float64Array(1);
  const u = new Uint32Array(f.buffer);
  const little = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  const [l, h] = little ? [0, 1] : [1, 0];
  for (let i = 0; i < n; i++) {
    if (cls[i] === 0) continue;
    f[0] = values[i] === 0 ? 0 : values[i]!;
    if (u[h]! & 0x80000000) {
      hi[i] = ~u[h]! >>> 0;
      lo[i] = ~u[l]! >>> 0;
    } else {
      hi[i] = (u[h]! | 0x80000000) >>> 0;
      lo[i] = u[l]!;
    }
  }
  let order: Uint32Array = identity(n);
  let next: Uint32Array = new Uint32Array(n);
  const count = new Uint32Array(65537);
  for (const [keys, shift] of [
    [lo, 0],
    [lo, 16],
    [hi, 0],
    [hi, 16],
  ] as const) {
    count.fill(0);
    for (let k = 0; k < n; k++) count[((keys[order[k]!]! >>> shift) & 0xffff) + 1]!++;
    // Every line has the same digit here: this pass would change nothing.
    if (count.some((c) => c === n)) continue;
    for (let d = 1; d <= 65536; d++) count[d]! += count[d - 1]!;
    for (let k = 0; k < n; k++) {
      const i = order[k]!;
      next[count[(keys[i]! >>> shift) & 0xffff]!++] = i;
    }
    [order, next] = [next, order];
  }
  // Equal values (and the lines with no number) in their bytes' order.
  for (let a = 0; a < n; ) {
    let b = a + 1;
    while (b < n && hi[order[b]!] === hi[order[a]!] && lo[order[b]!] === lo[order[a]!]) b++;
    if (b - a > 1) order.subarray(a, b).sort(byBytes);
    a = b;
  }
  return order;
};

/** A map task's output for `sort`: its chunk's lines sorted, and keys sampled from them. */
export interface SortedRun {
  /** The lines in order, each ending in `\n`. */
  readonly bytes: Buffer;
  readonly lines: number;
  /** Every `step`-th line's key and byte offset in `bytes`, from the first line on. */
  readonly samples: [SortKey, number][];
  readonly step: number;
  /** Which samples hold only the start of their line (SAMPLE_TEXT_BYTES); none: absent. */
  readonly cut?: number[];
}

/** Samples a run keeps: enough to balance partitions, few enough that thousands of chunks' fit one reducer. */
const SAMPLES_PER_RUN = 256;

/**
 * Bytes of a sampled line kept as its key: lines of megabytes would make samples as big as the
 * data. A longer line keeps 128 bytes, or as many as set it apart from the run's sample before
 * it (up to 4 KiB), so that lines sharing a long start (URLs, paths) still give distinct
 * splitters and even partitions. Any key serves as a splitter; where a run's segment starts,
 * a cut sample that a bound begins with may stand for lines above the bound (SortSamples).
 */
export const SAMPLE_TEXT_BYTES = 128;
const MAX_SAMPLE_TEXT_BYTES = 4096;

/** Bytes that [as, ae) of a and [bs, be) of b share from their start. */
const commonStart = (a: Buffer, as: number, ae: number, bs: number, be: number): number => {
  const n = Math.min(ae - as, be - bs);
  let i = 0;
  while (i < n && a[as + i] === a[bs + i]) i++;
  return i;
};

/** Collects a chunk's lines, block by block, and sorts them into a run. */
export class RunBuilder {
  readonly #format: SortFormat;
  readonly #blocks: Buffer[] = [];
  #size = 0;
  readonly #lines = new Lines();

  constructor(format: SortFormat) {
    this.#format = format;
  }

  /** Adds the whole lines of a block (the block's bytes are copied: the caller reuses them). */
  add(bytes: Buffer, offset: number, bad: (err: CloudmillError) => void): void {
    if (bytes.length === 0) return;
    const copy = Buffer.from(bytes);
    const base = this.#size;
    this.#blocks.push(copy);
    this.#size += copy.length;
    let s = 0;
    while (s < copy.length) {
      let nl = copy.indexOf(NL, s);
      if (nl === -1) nl = copy.length;
      try {
        const [cls, value] = keyOfLine(this.#format, copy, s, nl, offset + s);
        this.#lines.push(cls, value, base + s, base + nl);
      } catch (err) {
        if (!(err instanceof CloudmillError)) throw err;
        bad(err);
      }
      s = nl + 1;
    }
  }

  finish(): SortedRun {
    const data = this.#blocks.length === 1 ? this.#blocks[0]! : Buffer.concat(this.#blocks, this.#size);
    this.#blocks.length = 0;
    const { cls, values, starts, ends, n } = this.#lines;
    const byBytes = (i: number, j: number): number => compareRanges(data, starts[i]!, ends[i]!, data, starts[j]!, ends[j]!);
    const order = this.#format === "numbers" ? numberOrder(n, cls, values, byBytes) : identity(n).sort(byBytes);
    let total = 0;
    for (let i = 0; i < n; i++) total += ends[i]! - starts[i]! + 1;
    const out = Buffer.allocUnsafe(total);
    const step = Math.max(1, Math.ceil(n / SAMPLES_PER_RUN));
    const samples: [SortKey, number][] = [];
    const cut: number[] = [];
    let before = -1;
    let at = 0;
    for (let k = 0; k < n; k++) {
      const i = order[k]!;
      if (k % step === 0) {
        const s = starts[i]!;
        const e = ends[i]!;
        let keep = Math.min(e - s, SAMPLE_TEXT_BYTES);
        if (keep < e - s && before >= 0) {
          const common = commonStart(data, starts[before]!, ends[before]!, s, e);
          keep = Math.min(e - s, Math.max(keep, common + 1), MAX_SAMPLE_TEXT_BYTES);
        }
        if (keep < e - s) cut.push(samples.length);
        samples.push([[cls[i] as 0 | 1, values[i]!, latin1(data, s, s + keep)], at]);
        before = i;
      }
      at += data.copy(out, at, starts[i]!, ends[i]!);
      out[at++] = NL;
    }
    return { bytes: out, lines: n, samples, step, ...(cut.length > 0 ? { cut } : {}) };
  }
}

/** Several runs (a packed chunk's objects) as one. */
export const mergeSortedRuns = (format: SortFormat, runs: readonly SortedRun[]): SortedRun => {
  if (runs.length === 1) return runs[0]!;
  const builder = new RunBuilder(format);
  const once = (err: CloudmillError): never => {
    // Their lines were each read once already: none can be bad now.
    throw err;
  };
  for (const run of runs) builder.add(Buffer.from(run.bytes.buffer, run.bytes.byteOffset, run.bytes.byteLength), 0, once);
  return builder.finish();
};

/** One run's lines in order, from a stream of its bytes, keeping those with keys in [lo, hi). */
export interface LineCursor {
  /** The current line: cls, value, and its bytes [start, end) in buf. */
  cls: 0 | 1;
  value: number;
  buf: Buffer;
  start: number;
  end: number;
  /** Moves to the next line; false at the run's end. */
  advance(): Promise<boolean>;
}

/** A bound's key with its line as bytes, to compare with lines as they stream. */
interface Bound {
  readonly cls: number;
  readonly value: number;
  readonly bytes: Buffer;
}
const boundOf = (key: SortKey | null): Bound | undefined =>
  key ? { cls: key[0], value: key[1], bytes: Buffer.from(key[2], "latin1") } : undefined;

const compareBoundToLine = (k: Bound, c: LineCursor): number =>
  k.cls - c.cls || (k.value < c.value ? -1 : k.value > c.value ? 1 : 0) || compareRanges(k.bytes, 0, k.bytes.length, c.buf, c.start, c.end);

/** A cursor over a run's byte stream (whole lines), keeping keys in [lo, hi); undefined when it keeps none. */
export const lineCursor = async (
  format: SortFormat,
  reads: AsyncIterable<Uint8Array>,
  where: string,
  lo: SortKey | null = null,
  hi: SortKey | null = null,
): Promise<LineCursor | undefined> => {
  const it = reads[Symbol.asyncIterator]();
  let buf = Buffer.alloc(0);
  let pos = 0;
  let done = false;
  const c: LineCursor = { cls: 0, value: 0, buf, start: 0, end: 0, advance: async () => false };
  /** The next whole line into c, or false at the end. */
  const next = async (): Promise<boolean> => {
    for (;;) {
      const nl = buf.indexOf(NL, pos);
      if (nl !== -1) {
        const [cls, value] = keyOfLine(format, buf, pos, nl, 0);
        c.cls = cls;
        c.value = value;
        c.buf = buf;
        c.start = pos;
        c.end = nl;
        pos = nl + 1;
        return true;
      }
      if (done) {
        if (pos < buf.length) throw new CloudmillError(ErrorCode.INTERNAL, `${where}: a sorted run ends mid-line`);
        return false;
      }
      const r = await it.next();
      if (r.done) done = true;
      else buf = pos < buf.length ? Buffer.concat([buf.subarray(pos), r.value]) : Buffer.from(r.value);
      if (!r.done) pos = 0;
    }
  };
  const low = boundOf(lo);
  const high = boundOf(hi);
  /** Lines are sorted: once one is at or above lo, all after it are. */
  let pastLow = low === undefined;
  const inRange = async (): Promise<boolean> => {
    while (await next()) {
      if (!pastLow) {
        if (compareBoundToLine(low!, c) > 0) continue;
        pastLow = true;
      }
      if (high && compareBoundToLine(high, c) <= 0) {
        // Sorted: nothing after this line is in range either. Release the stream.
        await it.return?.();
        return false;
      }
      return true;
    }
    return false;
  };
  c.advance = inRange;
  return (await inRange()) ? c : undefined;
};

const lineBefore = (a: LineCursor, b: LineCursor): boolean =>
  (a.cls - b.cls || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0) || compareRanges(a.buf, a.start, a.end, b.buf, b.start, b.end)) <
  0;

/** The lines of sorted cursors merged into one order, as pieces of about a MiB (each line ending in `\n`). */
export async function* mergeLines(cursors: LineCursor[]): AsyncGenerator<Buffer> {
  const heap = cursors;
  heapify(heap, lineBefore);
  const PIECE = 1 << 20;
  let out = Buffer.allocUnsafe(PIECE);
  let at = 0;
  while (heap.length > 0) {
    const top = heap[0]!;
    const len = top.end - top.start + 1;
    if (at + len > out.length) {
      if (at > 0) yield out.subarray(0, at);
      out = Buffer.allocUnsafe(Math.max(PIECE, len));
      at = 0;
    }
    at += top.buf.copy(out, at, top.start, top.end);
    out[at++] = NL;
    if (await top.advance()) siftDown(heap, 0, lineBefore);
    else popTop(heap, lineBefore);
  }
  if (at > 0) yield out.subarray(0, at);
}
