/**
 * Where records end: the newlines that close a record, found by scanning a stream's bytes
 * once, in order. For lines every newline does; for CSV read RFC 4180-style only a newline
 * outside quotes does, so the scanner carries the quote state from one buffer to the next.
 */
import { badRecord, CloudmillError, ErrorCode } from "../errors.js";
import { parseCsvRecord } from "./csv.js";

const NL = 0x0a;
const QUOTE = 0x22;

export interface RecordEnds {
  /**
   * Scans bytes[from, bytes.length), the bytes that follow those scanned before (bytes[0] is at
   * absolute offset `at`), and sets `first` and `last` to the indexes of the first and last
   * record-ending newline among them, or -1.
   */
  scan(bytes: Buffer, from: number, at: number): void;
  first: number;
  last: number;
  /** Why the input cannot end with `record` (at byte `offset`): a quoted field still open. Or undefined. */
  unfinished(record: Buffer, offset: number): CloudmillError | undefined;
}

/** Every newline ends a record. */
export const lineEnds = (): RecordEnds => ({
  first: -1,
  last: -1,
  scan(bytes, from) {
    this.first = bytes.indexOf(NL, from);
    this.last = this.first < 0 ? -1 : bytes.lastIndexOf(NL);
  },
  unfinished: () => undefined,
});

/**
 * Newlines outside double quotes end records: quote parity decides, as in RFC 4180, where a
 * field's quotes come in pairs and a doubled quote is two of them. A quote inside an unquoted
 * field breaks the pairing; the record parser (csv.ts) then sees a newline it cannot place and
 * refuses the record, so a stray quote is never a silent merge of lines.
 */
export class CsvRecordEnds implements RecordEnds {
  first = -1;
  last = -1;
  /** Inside a quoted field after the bytes scanned so far. */
  inside: boolean;
  /** Absolute offset of the quote that opened the current quoted field. */
  #openedAt = -1;

  readonly #separator: string;

  /** `inside`: whether the first byte scanned is inside a quoted field (a guess, past an input's start). */
  constructor(inside = false, separator = ",") {
    this.inside = inside;
    this.#separator = separator;
  }

  scan(bytes: Buffer, from: number, at: number): void {
    let first = -1;
    let last = -1;
    const n = bytes.length;
    let q = bytes.indexOf(QUOTE, from);
    if (q < 0) q = n;
    if (!this.inside) {
      // Up to the first quote, newlines are found natively: a file without quotes never reaches the loop.
      first = bytes.indexOf(NL, from);
      if (first >= q) first = -1;
      if (first >= 0) last = bytes.lastIndexOf(NL, q - 1);
    }
    let inside = this.inside;
    let i = q;
    while (i < n) {
      if (inside) {
        // Inside quotes only the next quote matters: found natively.
        const close = bytes.indexOf(QUOTE, i);
        if (close < 0) break;
        inside = false;
        i = close + 1;
        continue;
      }
      const c = bytes[i];
      if (c === QUOTE) {
        inside = true;
        this.#openedAt = at + i;
      } else if (c === NL) {
        if (first < 0) first = i;
        last = i;
      }
      i++;
    }
    this.inside = inside;
    this.first = first;
    this.last = last;
  }

  unfinished(record: Buffer, offset: number): CloudmillError | undefined {
    if (!this.inside) return undefined;
    // The record's own parse names the cause best: a stray quote in an unquoted field, or the open quote.
    try {
      parseCsvRecord(record.toString("utf8"), offset, { separator: this.#separator, quote: '"', multiline: true });
    } catch (err) {
      if (err instanceof CloudmillError && err.code === ErrorCode.BAD_RECORD) return err;
      throw err;
    }
    return badRecord(
      `unterminated quoted field: the quote at byte ${this.#openedAt} is never closed (quotes must pair up, RFC 4180)`,
      this.#openedAt,
    );
  }
}
