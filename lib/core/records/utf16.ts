/**
 * UTF-16 CSV (Excel's "Unicode text"), known by its byte-order mark and read in parallel as
 * UTF-8 is: code units sit at even offsets after the mark, so a chunk boundary is moved to
 * the next even offset (its neighbour moves it the same way), records end at a newline unit
 * (outside quotes), and a whole-record block is decoded to UTF-8 for the op. Offsets in
 * errors stay the file's own: an offset inside a decoded block is mapped back to its unit.
 */
import { badRecord, type CloudmillError } from "../errors.js";
import type { RecordBlock } from "./alignedBlocks.js";
import { parseCsvRecord } from "./csv.js";
import type { RecordEnds } from "./recordEnds.js";

export type Utf16 = "utf-16le" | "utf-16be";

/** The UTF-16 byte order an input's first bytes mark, if they mark one. */
export const utf16Of = (head: Uint8Array): Utf16 | undefined =>
  isUtf32(head)
    ? undefined
    : head[0] === 0xff && head[1] === 0xfe
      ? "utf-16le"
      : head[0] === 0xfe && head[1] === 0xff
        ? "utf-16be"
        : undefined;

/** A UTF-32 byte-order mark (LE: FF FE 00 00, whose first two bytes are UTF-16LE's; BE: 00 00 FE FF). */
export const isUtf32 = (head: Uint8Array): boolean =>
  head.length >= 4 &&
  ((head[0] === 0xff && head[1] === 0xfe && head[2] === 0 && head[3] === 0) ||
    (head[0] === 0 && head[1] === 0 && head[2] === 0xfe && head[3] === 0xff));

const NL = 0x0a;
const QUOTE = 0x22;

/**
 * A stream's UTF-16 code units, buffer by buffer: units start at even absolute offsets, and a
 * unit cut in two by a buffer's end is finished by the next.
 */
export class Utf16Units {
  readonly #le: boolean;
  /** The first byte of a unit that the previous buffer cut in two. */
  #carry = -1;

  constructor(encoding: Utf16) {
    this.#le = encoding === "utf-16le";
  }

  /** Calls fn(unit, index of its second byte in `bytes`) for each unit that ends in bytes[from..]; bytes[from] is at offset `at`. */
  each(bytes: Buffer, from: number, at: number, fn: (unit: number, end: number) => void): void {
    const n = bytes.length;
    let i = (at + from) % 2 === 0 ? from : from - 1;
    for (; i + 1 < n; i += 2) {
      const b0 = i < 0 ? this.#carry : bytes[i]!;
      const b1 = bytes[i + 1]!;
      fn(this.#le ? b0 | (b1 << 8) : (b0 << 8) | b1, i + 1);
    }
    this.#carry = i < n ? bytes[i]! : -1;
  }
}

/**
 * Record ends in UTF-16 bytes: the index of a newline unit's *second* byte, so the record
 * after it starts one past. With `csv`, only newlines outside quotes count (quote parity).
 */
export class Utf16RecordEnds implements RecordEnds {
  first = -1;
  last = -1;
  inside: boolean;
  readonly #le: boolean;
  readonly #csv: boolean;
  readonly #separator: string;
  readonly #units: Utf16Units;
  #openedAt = -1;

  constructor(encoding: Utf16, csv: { readonly inside: boolean; readonly separator: string } | undefined) {
    this.#le = encoding === "utf-16le";
    this.#units = new Utf16Units(encoding);
    this.#csv = csv !== undefined;
    this.inside = csv?.inside ?? false;
    this.#separator = csv?.separator ?? ",";
  }

  scan(bytes: Buffer, from: number, at: number): void {
    let first = -1;
    let last = -1;
    let inside = this.inside;
    this.#units.each(bytes, from, at, (unit, end) => {
      if (unit === QUOTE && this.#csv) {
        inside = !inside;
        if (inside) this.#openedAt = at + end - 1;
      } else if (unit === NL && !inside) {
        if (first < 0) first = end;
        last = end;
      }
    });
    this.inside = inside;
    this.first = first;
    this.last = last;
  }

  unfinished(record: Buffer, offset: number): CloudmillError | undefined {
    if (!this.inside) return undefined;
    const block = decodeUtf16Block({ bytes: record, offset, first: offset === 0 }, this.#le ? "utf-16le" : "utf-16be");
    try {
      parseCsvRecord(block.bytes.toString("utf8"), offset, { separator: this.#separator, quote: '"', multiline: true });
    } catch (err) {
      return block.fileOffset(err as CloudmillError);
    }
    return badRecord(`unterminated quoted field: the quote at byte ${this.#openedAt} is never closed`, this.#openedAt);
  }
}

/** A block decoded to UTF-8, and the map from an error's offset in it back to the file's. */
export interface DecodedBlock extends RecordBlock {
  fileOffset<E>(err: E): E;
}

/**
 * Decodes a block of whole UTF-16 records to UTF-8 (dropping the byte-order mark of the
 * file's first block). Offsets the op reports inside it (block.offset + a UTF-8 index) map
 * back to the UTF-16 unit they fall in.
 */
/**
 * The byte offset of the first code unit that is no character (a surrogate without its pair, or
 * an odd last byte of `length`), or -1. Node's decoder would make it U+FFFD, or drop it.
 */
const brokenUnitAt = (le: Uint8Array, length: number): number => {
  const units = length >> 1;
  for (let u = 0; u < units; u++) {
    const hi = le[2 * u + 1]!;
    if (hi < 0xd8 || hi > 0xdf) continue;
    const next = u + 1 < units ? le[2 * u + 3]! : -1;
    if (hi >= 0xdc || next < 0xdc || next > 0xdf) return 2 * u;
    u++;
  }
  return length & 1 ? length - 1 : -1;
};

export const decodeUtf16Block = (block: RecordBlock, encoding: Utf16): DecodedBlock => {
  const raw = encoding === "utf-16le" ? block.bytes : Buffer.from(block.bytes.subarray(0, block.bytes.length & ~1)).swap16();
  const broken = brokenUnitAt(raw, block.bytes.length);
  if (broken >= 0)
    throw badRecord(
      broken === block.bytes.length - 1
        ? "UTF-16 text ends in half a character (an odd number of bytes): is the file cut short?"
        : "a UTF-16 surrogate without its pair: not UTF-16 text",
      block.offset + broken,
    );
  let text = raw.toString("utf16le");
  const skip = block.first && text.startsWith("\uFEFF") ? 1 : 0;
  if (skip) text = text.slice(1);
  const bytes = Buffer.from(text, "utf8");
  const base = block.offset + skip * 2;
  return {
    bytes,
    offset: base,
    first: block.first,
    fileOffset<E>(err: E): E {
      const e = err as unknown as CloudmillError;
      const offset = e?.context?.offset;
      if (typeof e?.withContext !== "function" || offset === undefined || offset < base || offset > base + bytes.length) return err;
      const units = bytes.subarray(0, offset - base).toString("utf8").length;
      return e.withContext({ offset: base + 2 * units }) as unknown as E;
    },
  };
};
