/**
 * Reads the records a byte range owns, Hadoop-style: a range [start, end) owns every
 * record that *starts* inside it. It skips the partial record at its start (unless it
 * starts at byte 0 or just after a newline) and reads past its end to finish its last
 * record. Newline (0x0A) never occurs inside a multi-byte UTF-8 character, so cutting on
 * it never splits a character, whatever the range boundaries.
 */
import { DEFAULTS } from "../constants.js";
import { badRecord, type CloudmillError } from "../errors.js";
import type { BlobStore } from "../ports.js";

const NL = 0x0a;

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
 * Yields the owned records of [start, end) as blocks that each end on a record boundary.
 * Memory: one source block plus the longest record that straddles a block boundary, at most
 * `maxRecordBytes`: a longer record goes to `onOversized` and is never assembled.
 * A UTF-8 byte-order mark at byte 0 is dropped. A block's bytes are valid only until the
 * next block is asked for: the store reads on into the same memory.
 */
export async function* ownedRecordBlocks(
  store: BlobStore,
  range: OwnedRange,
  signal?: AbortSignal,
  limits: RecordLimits = {},
): AsyncGenerator<RecordBlock> {
  const { key, size, etag } = range;
  const max = limits.maxRecordBytes ?? DEFAULTS.maxRecordBytes;
  const oversized =
    limits.onOversized ??
    ((offset: number): void => {
      throw oversizedRecord(offset, max);
    });
  const start = Math.min(range.start, size);
  const end = Math.min(range.end, size);
  if (start >= end) return;

  // Reading from start-1 tells whether a record begins exactly at `start`.
  let pos = start > 0 ? start - 1 : 0;
  let skipping = start > 0;
  let pending: Buffer[] = [];
  let pendingOffset = start;
  let pendingLength = 0;
  let lastByte = -1;
  /** Reading past a record too long to keep, until its newline. */
  let dropping = false;

  /** The pending record is too long: report it (which may throw), forget it, and skip to its end. */
  const drop = (): void => {
    oversized(pendingOffset, max);
    pending = [];
    pendingLength = 0;
    dropping = true;
  };

  /**
   * `bytes` are owned bytes beginning at absolute offset `at`: yields the records they
   * complete. The record left pending from earlier reads is joined with its tail alone, and
   * the rest of `bytes` is yielded in place, so a block is never copied whole.
   */
  function* take(bytes: Buffer, at: number): Generator<RecordBlock> {
    if (dropping) {
      const nl = bytes.indexOf(NL);
      if (nl < 0) return;
      dropping = false;
      bytes = bytes.subarray(nl + 1);
      at += nl + 1;
      if (bytes.length === 0) {
        pendingOffset = at;
        return;
      }
    }
    const lastNl = bytes.lastIndexOf(NL);
    if (lastNl < 0) {
      if (pendingLength === 0) pendingOffset = at;
      if (pendingLength + bytes.length > max) return drop();
      pending.push(Buffer.from(bytes)); // a copy: the store reads on into the same memory
      pendingLength += bytes.length;
      return;
    }
    let from = 0;
    // Records inside one source block are shorter than it; only one joined across blocks can be too long.
    if (pendingLength > 0) {
      from = bytes.indexOf(NL) + 1;
      if (pendingLength + from > max) oversized(pendingOffset, max);
      else {
        const tail = bytes.subarray(0, from);
        yield { bytes: Buffer.concat([...pending, tail], pendingLength + from), offset: pendingOffset, first: pendingOffset === 0 };
      }
    }
    if (from <= lastNl) yield { bytes: bytes.subarray(from, lastNl + 1), offset: at + from, first: at + from === 0 };
    const rest = bytes.subarray(lastNl + 1);
    pending = rest.length ? [Buffer.from(rest)] : [];
    pendingLength = rest.length;
    pendingOffset = at + lastNl + 1;
  }

  const body = await store.get(key, { start: pos, end, reuseBuffers: true, ...(etag ? { etag } : {}), ...(signal ? { signal } : {}) });
  for await (const chunk of body) {
    let buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let at = pos;
    pos += buf.length;
    if (buf.length === 0) continue;
    lastByte = buf[buf.length - 1]!;
    if (skipping) {
      const nl = buf.indexOf(NL);
      if (nl < 0) continue;
      skipping = false;
      buf = buf.subarray(nl + 1);
      at += nl + 1;
      if (buf.length === 0) continue;
    }
    for (const block of take(buf, at)) yield withoutBom(block);
  }
  if (skipping) return; // no record starts inside this range

  // The last owned record may run past `end`: read on until its newline or the end of the file.
  // (A record being dropped is already reported: nothing past `end` is read for it.)
  if (pendingLength > 0 && !dropping && lastByte !== NL && end < size) {
    let step = DEFAULTS.overreadBytes;
    let at = end;
    while (at < size) {
      const stop = Math.min(size, at + step);
      const more = await store.get(key, { start: at, end: stop, ...(etag ? { etag } : {}), ...(signal ? { signal } : {}) });
      let found = false;
      for await (const chunk of more) {
        const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        const nl = buf.indexOf(NL);
        const len = nl >= 0 ? nl + 1 : buf.length;
        if (pendingLength + len > max) {
          drop();
          found = true;
          break;
        }
        pending.push(nl >= 0 ? buf.subarray(0, nl + 1) : buf);
        pendingLength += len;
        if (nl >= 0) {
          found = true;
          break;
        }
        at += buf.length;
      }
      if (found) break;
      at = stop;
      step *= 2;
    }
  }
  if (pendingLength > 0 && !dropping) {
    const bytes = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingLength);
    const last = withoutBom({ bytes, offset: pendingOffset, first: pendingOffset === 0 });
    // A file that is only a BOM holds no record (an empty block would count as one line).
    if (last.bytes.length > 0) yield last;
  }
}

/** The first record of a file may start with a BOM; it is not part of the data. */
const withoutBom = (block: RecordBlock): RecordBlock => {
  const b = block.bytes;
  if (block.offset === 0 && b.length >= 3 && b[0] === UTF8_BOM[0] && b[1] === UTF8_BOM[1] && b[2] === UTF8_BOM[2]) {
    return { bytes: b.subarray(3), offset: 3, first: true };
  }
  return block;
};
