/**
 * One CSV column's numbers, read in place: a record without quotes is walked to its column
 * and the number parsed from the bytes there (records/decimal.ts), with no string, field array
 * or row object. A record the fast path cannot take whole (a quote, a row of other than the
 * header's fields, a value that is not a plain number) goes to `general`, which reads it the full
 * way with the same result, or refuses it.
 */
import type { RecordBlock } from "./alignedBlocks.js";
import { endBeforeCarriageReturns, forEachCsvRecord, refuseBareCarriageReturn } from "./csv.js";
import { FAST, fast, fastNumber, isBlankByte, type DecimalSink } from "./decimal.js";

const NL = 0x0a;
const QUOTE = 0x22;

export interface CsvColumnScan {
  /** The separator, a single ASCII byte. */
  readonly separator: number;
  /** The column, 0-based. */
  readonly index: number;
  /** The fields a record must have (the header's): a record with more or fewer goes to `general`. */
  readonly fields?: number | undefined;
  /** Quoted fields may hold newlines: from a record with a quote on, records end by quote parity. */
  readonly multiline: boolean;
  /** Skip the block's first record (the header). */
  readonly skipFirst: boolean;
}

/** Calls sink with each record's number in the column; `general(start, end, offset)` for the records it cannot read in place. */
export const scanCsvColumn = (
  block: RecordBlock,
  scan: CsvColumnScan,
  sink: DecimalSink,
  general: (start: number, end: number, offset: number) => void,
): void => {
  refuseBareCarriageReturn(block, scan.multiline);
  const b = block.bytes;
  const n = b.length;
  const { separator, index } = scan;
  const fields = scan.fields;
  /** Whether [from, end) holds the separators after the column's `k` that make the record's fields. */
  const rightFields = (from: number, end: number, k: number): boolean => {
    if (fields === undefined) return true;
    for (let at = from; at < end; at++) if (b[at] === separator) k++;
    return k + 1 === fields;
  };
  // fastNumber skips blanks around a number: with a tab or space separator it would skip an empty
  // field into the next one, so the field is cut at its separator first.
  const blankSeparator = isBlankByte(separator);
  const fieldEnd = (at: number, limit: number): number => {
    if (!blankSeparator) return limit;
    while (at < limit && b[at] !== separator && b[at] !== NL) at++;
    return at;
  };
  // The next quote at or after the record being read (-1: none left).
  let quote = b.indexOf(QUOTE);

  /** Reads record [s, e) in place if it can: false leaves it to `general`. */
  const inPlace = (s: number, e: number): boolean => {
    if (quote >= 0 && quote < s) quote = b.indexOf(QUOTE, s);
    if (quote >= 0 && quote < e) return false;
    let at = s;
    for (let k = 0; k < index; at++) {
      if (at >= e) return false;
      if (b[at] === separator) k++;
    }
    const stop = fastNumber(b, at, fieldEnd(at, e));
    if (stop !== e && b[stop] !== separator) return false;
    if (fast.status === FAST.slow || !rightFields(stop, e, index)) return false;
    if (fast.status === FAST.ok) sink.small(fast.x, fast.m, fast.scale);
    return true;
  };
  const record = (s: number, e: number): void => {
    if (!inPlace(s, e)) general(s, e, block.offset + s);
  };

  let skip = scan.skipFirst;
  // Lines before the first quote are records as they stand; from that line on, quote parity decides.
  const plainUntil = scan.multiline && quote >= 0 ? b.lastIndexOf(NL, quote) + 1 : n;
  let pos = 0;
  while (pos < plainUntil) {
    if (!skip && quote < 0) {
      // No quote left: walk to the column and read it; when it is the line's last, its end is the line's.
      let at = pos;
      let k = 0;
      while (k < index && at < n) {
        const c = b[at]!;
        if (c === NL) break;
        if (c === separator) k++;
        at++;
      }
      if (k === index) {
        const stop = fastNumber(b, at, fieldEnd(at, n));
        const c = stop < n ? b[stop] : NL;
        if (fast.status !== FAST.slow && (c === NL || c === separator)) {
          // The line's end, counting the separators on the way when the fields are checked.
          let end = stop;
          let separators = index;
          if (fields === undefined) end = c === NL ? stop : b.indexOf(NL, stop);
          else {
            while (end < n && b[end] !== NL) if (b[end++] === separator) separators++;
            if (end === n) end = -1;
          }
          if (fields === undefined || separators + 1 === fields) {
            if (fast.status === FAST.ok) sink.small(fast.x, fast.m, fast.scale);
            pos = end < 0 ? n : end + 1;
            continue;
          }
        }
      }
    }
    const nl = b.indexOf(NL, pos);
    const end = nl < 0 ? n : nl;
    if (skip) skip = false;
    else record(pos, endBeforeCarriageReturns(b, pos, end));
    pos = end + 1;
  }
  if (pos >= n) return;
  const from = pos;
  const rest: RecordBlock = { bytes: b.subarray(from), offset: block.offset + from, first: block.first && from === 0 };
  forEachCsvRecord(
    rest,
    true,
    (s, e) => {
      if (skip) skip = false;
      else record(from + s, from + e);
    },
    true,
  );
};
