/**
 * Reads the records a byte range owns, Hadoop-style: a range [start, end) owns every
 * record that *starts* inside it. It skips the partial record at its start (unless it
 * starts at byte 0 or just after a record's end) and reads past its end to finish its last
 * record. Newline (0x0A) never occurs inside a multi-byte UTF-8 character, so cutting on
 * it never splits a character, whatever the range boundaries. Which newlines end records
 * is the RecordEnds' call (every one for lines; those outside quotes for CSV).
 */
import { DEFAULTS } from "../constants.js";
import { badRecord, type CloudmillError } from "../errors.js";
import type { BlobStore } from "../ports.js";
import { lineEnds, type RecordEnds } from "./recordEnds.js";

/** A run of whole records: `bytes` starts at absolute file offset `offset`. */
export interface RecordBlock {
  readonly bytes: Buffer;
  readonly offset: number;
  /** True when the block begins with the file's first record (a CSV header, say). */
  readonly first: boolean;
}

export interface OwnedRange {
  readonly key: string;
  readonly size: number;
  readonly etag?: string;
  readonly start: number;
  readonly end: number;
}

const UTF8_BOM = [0xef, 0xbb, 0xbf] as const;

export interface RecordLimits {
  /**
   * Longest record to assemble. Default DEFAULTS.maxRecordBytes. Checked where a record is joined
   * across the store's blocks, so it must be at least their size (1 MiB or less for every store).
   */
  readonly maxRecordBytes?: number;
  /**
   * Called with a longer record's offset: throw to fail the read (the default does, with
   * BAD_RECORD), or return to have the record skipped, read past without being kept.
   */
  readonly onOversized?: (offset: number, maxRecordBytes: number) => void;
}

/** A record longer than the reader assembles, by its offset. */
export const oversizedRecord = (offset: number, maxRecordBytes: number): CloudmillError =>
  badRecord(`record longer than ${maxRecordBytes} bytes (maxRecordBytes): it is not read into memory`, offset);

/**
 * Cuts one reading of a range into whole-record blocks. Bytes are pushed in order; the
 * record left open at the end of one push is kept (copied) and joined with the tail that
 * finishes it, and the rest of each push is yielded in place, so a block is never copied whole.
 */
export class RecordCutter {
  readonly #ends: RecordEnds;
  readonly #max: number;
  readonly #oversized: (offset: number, max: number) => void;
  /** Before the first record this range owns (a range past byte 0 starts inside someone else's). */
  #skipping: boolean;
  /** Reading past a record too long to keep, until its end. */
  #dropping = false;
  #pending: Buffer[] = [];
  #pendingLength = 0;
  #pendingOffset: number;

  constructor(ends: RecordEnds, start: number, limits: RecordLimits = {}) {
    this.#ends = ends;
    this.#max = limits.maxRecordBytes ?? DEFAULTS.maxRecordBytes;
    this.#oversized =
      limits.onOversized ??
      ((offset: number, max: number): void => {
        throw oversizedRecord(offset, max);
      });
    this.#skipping = start > 0;
    this.#first = start === 0;
    this.#pendingOffset = start;
  }

  /** The next block yielded begins with the input's first record (a CSV header, say). */
  #first: boolean;

  #takeFirst(): boolean {
    const first = this.#first;
    this.#first = false;
    return first;
  }

  /**
   * Nothing but empty data comes before this reading's first byte (a BGZF input's first blocks
   * may hold none): it owns the record starting there, and that record is the input's first.
   */
  startInput(): void {
    this.#skipping = false;
    this.#first = true;
  }

  /** Cut no more: later pushes only scan (a reading whose op failed still tells where quotes stand). */
  #stopped = false;

  /** A record is begun and not finished: the range's reader must read on past its end. */
  get open(): boolean {
    return this.#pendingLength > 0 && !this.#dropping && !this.#skipping && !this.#stopped;
  }

  /** Ends this reading: no more records, no reading past the range for it; its RecordEnds still scan what is pushed. */
  stop(): void {
    this.#stopped = true;
    this.#pending = [];
    this.#pendingLength = 0;
  }

  /** The pending record is too long: report it (which may throw), forget it, and skip to its end. */
  #drop(): void {
    this.#oversized(this.#pendingOffset, this.#max);
    this.#pending = [];
    this.#pendingLength = 0;
    this.#dropping = true;
  }

  #keep(bytes: Buffer, at: number): void {
    if (this.#pendingLength === 0) this.#pendingOffset = at;
    if (this.#pendingLength + bytes.length > this.#max) {
      this.#drop();
      return;
    }
    this.#pending.push(Buffer.from(bytes)); // a copy: the store reads on into the same memory
    this.#pendingLength += bytes.length;
  }

  /** Bytes that follow those pushed before; bytes[0] is at absolute offset `at`. Yields the records they complete. */
  *push(bytes: Buffer, at: number): Generator<RecordBlock> {
    const ends = this.#ends;
    ends.scan(bytes, 0, at);
    if (this.#stopped) return;
    const { first, last } = ends;
    let from = 0;
    if (this.#skipping || this.#dropping) {
      if (first < 0) return;
      this.#skipping = false;
      this.#dropping = false;
      from = first + 1;
    } else if (this.#pendingLength > 0 && first >= 0) {
      // Records inside one push are shorter than it; only one joined across pushes can be too long.
      from = first + 1;
      if (this.#pendingLength + from > this.#max) this.#oversized(this.#pendingOffset, this.#max);
      else {
        const bytesOf = Buffer.concat([...this.#pending, bytes.subarray(0, from)], this.#pendingLength + from);
        yield { bytes: bytesOf, offset: this.#pendingOffset, first: this.#takeFirst() };
      }
      this.#pending = [];
      this.#pendingLength = 0;
    }
    if (last >= from) {
      yield { bytes: bytes.subarray(from, last + 1), offset: at + from, first: this.#takeFirst() };
      from = last + 1;
    }
    if (from < bytes.length) this.#keep(bytes.subarray(from), at + from);
  }

  /**
   * Bytes past the range's end: they finish the open record and nothing more (the records
   * after it belong to the next range).
   */
  *pushPast(bytes: Buffer, at: number): Generator<RecordBlock> {
    if (!this.open) return;
    const ends = this.#ends;
    ends.scan(bytes, 0, at);
    if (ends.first < 0) {
      this.#keep(bytes, at);
      return;
    }
    const len = ends.first + 1;
    if (this.#pendingLength + len > this.#max) {
      this.#drop();
      return;
    }
    const record = Buffer.concat([...this.#pending, bytes.subarray(0, len)], this.#pendingLength + len);
    this.#pending = [];
    this.#pendingLength = 0;
    yield { bytes: record, offset: this.#pendingOffset, first: this.#takeFirst() };
  }

  /** The input ended: the last record, if one is open, or the error that its end is. */
  *finish(): Generator<RecordBlock> {
    if (!this.open) return;
    const bytes = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending, this.#pendingLength);
    const unfinished = this.#ends.unfinished(bytes, this.#pendingOffset);
    if (unfinished) throw unfinished;
    this.#pending = [];
    this.#pendingLength = 0;
    yield { bytes, offset: this.#pendingOffset, first: this.#takeFirst() };
  }
}

/** What reading one range with several cutters gives: a lane's next block, or the error that ended the lane. */
export type LaneBlock =
  | { readonly lane: number; readonly block: RecordBlock; readonly error?: undefined }
  | { readonly lane: number; readonly error: unknown; readonly block?: undefined };

export interface LaneOptions {
  /** Called once every owned byte but the last `unit` is pushed, and none after them (a CSV chunk's quote parity). */
  readonly mark?: { readonly unit: number; reached(): void };
}

/** Bytes of an input and the position of their first. */
export interface Span {
  readonly bytes: Uint8Array;
  readonly at: number;
}

/**
 * The bytes one reading of a range pushes, in order: from just before the range's start (to
 * tell whether a record begins there) to its end, then on past it while a record is open.
 * Positions are absolute offsets for a plain input and decoded offsets for a gzip or zstd
 * one; a BGZF input's are virtual offsets, which jump at each block (see inputBytes.ts), so a
 * span never crosses a gap in them.
 */
export interface RangeBytes {
  /** Position of the range's first byte: a reading skips the record it starts inside unless it is 0. */
  readonly start: number;
  /** Spans from just before the range's start to its end. A span's bytes may be reused once the next is asked for. */
  owned(): AsyncIterable<Span>;
  /** The spans after the range's end to the input's end; the reader stops asking once no record is open. */
  past(): AsyncIterable<Span>;
  /** Releases a read `owned` left open for `past`; the reader calls it once it is done. */
  close?(): Promise<void>;
  /** True, once `owned` has yielded, when only empty data precedes the range (see RecordCutter.startInput). */
  startsInput?(): boolean;
}

const bufferOf = (chunk: Uint8Array): Buffer =>
  Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);

/** Spans of a stream of bytes that starts at position `at`. */
export async function* spansOf(chunks: AsyncIterable<Uint8Array>, at: number): AsyncGenerator<Span> {
  for await (const bytes of chunks) {
    yield { bytes, at };
    at += bytes.length;
  }
}

/** The bytes of [start, end) of a plain object: one ranged read, then growing reads past the end. */
export const plainRangeBytes = (store: BlobStore, range: OwnedRange, lookBehind = 1, signal?: AbortSignal): RangeBytes => {
  const { key, size, etag } = range;
  const start = Math.min(range.start, size);
  const end = Math.max(start, Math.min(range.end, size));
  const from = start > 0 ? Math.max(0, start - lookBehind) : 0;
  const pinned = { ...(etag ? { etag } : {}), ...(signal ? { signal } : {}) };
  return {
    start,
    async *owned() {
      if (start < end) yield* spansOf(await store.get(key, { start: from, end, reuseBuffers: true, ...pinned }), from);
    },
    async *past() {
      let step = DEFAULTS.overreadBytes;
      for (let at = end; at < size; at += step, step *= 2)
        yield* spansOf(await store.get(key, { start: at, end: Math.min(size, at + step), ...pinned }), at);
    },
  };
};

/**
 * Reads a range once and cuts it with each of `lanes` (the same bytes under different
 * guesses of where records end): yields each lane's blocks as they complete, lane by lane.
 * A lane whose cutter throws yields the error and is stopped (see RecordCutter.stop). Memory: one source block
 * plus, per lane, the record that straddles a block boundary (at most maxRecordBytes).
 * A UTF-8 byte-order mark at byte 0 is dropped. A block's bytes are valid only until the
 * next block is asked for: the source reads on into the same memory.
 */
export async function* ownedRecordLanes(
  source: RangeBytes,
  lanes: readonly RecordCutter[],
  options: LaneOptions = {},
): AsyncGenerator<LaneBlock> {
  const { mark } = options;
  // A lane that throws is stopped: it yields nothing more, but its RecordEnds go on scanning.
  const feed = function* (cuts: (cutter: RecordCutter) => Generator<RecordBlock>): Generator<LaneBlock> {
    for (const [lane, cutter] of lanes.entries()) {
      try {
        for (const block of cuts(cutter)) {
          const b = withoutBom(block);
          // A file that is only a BOM holds no record (an empty block would count as one line).
          if (b.bytes.length > 0) yield { lane, block: b };
        }
      } catch (error) {
        cutter.stop();
        yield { lane, error };
      }
    }
  };
  try {
    // The last `unit` bytes seen are held back (copied) until the next span shows they are not the range's last.
    const unit = mark?.unit ?? 0;
    let held = Buffer.alloc(0);
    let heldAt = 0;
    let begun = false;
    for await (const span of source.owned()) {
      const buf = bufferOf(span.bytes);
      if (buf.length === 0) continue;
      if (!begun) {
        begun = true;
        if (source.startsInput?.()) for (const c of lanes) c.startInput();
      }
      // Push all but the last `unit` bytes of held + buf; hold those.
      const pushed = held.length + buf.length - Math.min(unit, held.length + buf.length);
      const fromHeld = Math.min(held.length, pushed);
      if (fromHeld > 0) yield* feed((c) => c.push(held.subarray(0, fromHeld), heldAt));
      if (pushed > fromHeld) yield* feed((c) => c.push(buf.subarray(0, pushed - fromHeld), span.at));
      if (unit === 0) continue;
      if (buf.length >= unit) {
        held = Buffer.from(buf.subarray(buf.length - unit));
        heldAt = span.at + buf.length - unit;
      } else {
        // A span shorter than a unit: only a plain input's, whose positions run on.
        held = Buffer.concat([held.subarray(fromHeld), buf]);
        heldAt = span.at + buf.length - held.length;
      }
    }
    mark?.reached();
    if (held.length > 0) yield* feed((c) => c.push(held, heldAt));

    // A lane's last record may run past the range's end: read on until it ends or the input does.
    if (lanes.some((c) => c.open)) {
      for await (const span of source.past()) {
        yield* feed((c) => c.pushPast(bufferOf(span.bytes), span.at));
        if (!lanes.some((c) => c.open)) return;
      }
    }
    yield* feed((c) => c.finish());
  } finally {
    await source.close?.();
  }
}

/**
 * Yields the owned records of [start, end) as blocks that each end on a record boundary:
 * ownedRecordLanes with one lane, whose errors are thrown. `ends` says where records end
 * (default: every newline).
 */
export async function* ownedRecordBlocks(
  store: BlobStore,
  range: OwnedRange,
  signal?: AbortSignal,
  limits: RecordLimits = {},
  ends: RecordEnds = lineEnds(),
): AsyncGenerator<RecordBlock> {
  const source = plainRangeBytes(store, range, 1, signal);
  yield* rangeRecordBlocks(source, limits, ends);
}

/** ownedRecordBlocks over any source of a range's bytes (a decoded input's, say). */
export async function* rangeRecordBlocks(
  source: RangeBytes,
  limits: RecordLimits = {},
  ends: RecordEnds = lineEnds(),
): AsyncGenerator<RecordBlock> {
  const cutter = new RecordCutter(ends, source.start, limits);
  for await (const read of ownedRecordLanes(source, [cutter])) {
    if (read.block) yield read.block;
    else throw read.error;
  }
}

/** The first record of a file may start with a BOM; it is not part of the data. */
const withoutBom = (block: RecordBlock): RecordBlock => {
  const b = block.bytes;
  if (block.first && b.length >= 3 && b[0] === UTF8_BOM[0] && b[1] === UTF8_BOM[1] && b[2] === UTF8_BOM[2]) {
    return { bytes: b.subarray(3), offset: block.offset + 3, first: true };
  }
  return block;
};
