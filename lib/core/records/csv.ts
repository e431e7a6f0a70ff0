/**
 * CSV records (RFC 4180 fields: separator, quotes, doubled quotes). Two readings:
 * - multiline (the default): a record ends at a newline outside quotes, so a quoted field may
 *   hold newlines; where records end is found by quote parity (recordEnds.ts), and the parser
 *   here refuses any record whose quotes do not pair up as parity assumed.
 * - one record per line (`multiline=false`): a quote still open at the end of a line is a
 *   BAD_RECORD naming its offset, never a silent merge of lines.
 */
import { badRecord, type CloudmillError } from "../errors.js";
import type { RecordBlock } from "./alignedBlocks.js";
import { forEachLine } from "./lines.js";

export interface CsvOptions {
  readonly separator: string;
  readonly quote: string;
  /** Quoted fields may hold newlines (records end at newlines outside quotes). */
  readonly multiline?: boolean;
}

const NL = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;

/** Byte offset of the character at `index` of a record's text that starts at byte `offset`. */
const byteAt = (text: string, index: number, offset: number): number => offset + Buffer.byteLength(text.slice(0, index));

/** A quote kept inside an unquoted field (at index `at`, in `column`) that leaves a record's quotes unpaired. */
const strayQuote = (text: string, offset: number, at: number, column: number): CloudmillError =>
  badRecord(
    `a quote inside an unquoted field (column ${column}) leaves the quotes unpaired: ` +
      "quote the whole field and double the quote (RFC 4180), or read with multiline=false",
    byteAt(text, at, offset),
  );

/**
 * The fields of one record's text (without its line ending). `offset` is the record's byte
 * offset, for errors. A quote inside an unquoted field is kept as a character.
 */
export const parseCsvRecord = (text: string, offset: number, { separator, quote, multiline = false }: CsvOptions): string[] => {
  const fields: string[] = [];
  let i = 0;
  const n = text.length;
  /** Index of the first quote kept inside an unquoted field: a multiline record's quotes may not pair up after it. */
  let stray = -1;
  let strayColumn = 0;
  /** Quotes kept inside unquoted fields so far: an odd count is what unpairs the record's quotes. */
  let strays = 0;
  for (;;) {
    if (text.startsWith(quote, i)) {
      const opened = i;
      let value = "";
      let j = i + 1;
      for (;;) {
        const q = text.indexOf(quote, j);
        if (q < 0) {
          // A quote kept inside an earlier unquoted field made parity pair this one with a later line's: it is the cause.
          if (multiline && strays % 2 === 1) throw strayQuote(text, offset, stray, strayColumn);
          const at = byteAt(text, opened, offset);
          throw badRecord(
            multiline
              ? `unterminated quoted field: the quote that opens column ${fields.length + 1} is never closed`
              : `unterminated quoted field (column ${fields.length + 1}): with multiline=false a quoted field may not hold a newline`,
            at,
          );
        }
        value += text.slice(j, q);
        if (text.startsWith(quote, q + 1)) {
          value += quote;
          j = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      fields.push(value);
      if (i === n) return fields;
      if (!text.startsWith(separator, i)) {
        throw badRecord(
          `unexpected character ${JSON.stringify(text[i])} after the closing quote of column ${fields.length}`,
          byteAt(text, i, offset),
        );
      }
      i += separator.length;
    } else {
      const s = text.indexOf(separator, i);
      const e = s < 0 ? n : s;
      if (multiline) {
        const q = text.indexOf(quote, i);
        if (q >= 0 && q < e && stray < 0) {
          stray = q;
          strayColumn = fields.length + 1;
        }
        for (let k = q; k >= 0 && k < e; k = text.indexOf(quote, k + quote.length)) strays++;
        const nl = text.indexOf("\n", i);
        if (nl >= 0 && nl < e) {
          // Parity took this newline for one inside quotes: only a kept quote can have made it so.
          throw stray >= 0 ? strayQuote(text, offset, stray, strayColumn) : strayQuote(text, offset, i, fields.length + 1);
        }
      }
      fields.push(text.slice(i, e));
      if (s < 0) return fields;
      i = s + separator.length;
    }
  }
};

/** One record per line: parseCsvRecord without multiline. */
export const parseCsvLine = (line: string, offset: number, options: CsvOptions): string[] =>
  parseCsvRecord(line, offset, { ...options, multiline: false });

/**
 * Where a record's text ends before its line end: before every carriage return there. Windows'
 * text mode writes `\r\r\n` after Python's csv; Python reads the record up to the first `\r`.
 */
export const endBeforeCarriageReturns = (b: Uint8Array, start: number, end: number): number => {
  let e = end;
  while (e > start && b[e - 1] === CR) e--;
  return e;
};

/**
 * Calls fn(start, end, offset) for each CSV record of a block of whole records: [start, end)
 * indexes into block.bytes without the record's line ending; with multiline, a record ends at
 * a newline outside quotes (the block starts outside quotes: it starts a record). A block with
 * a carriage return outside quotes that ends nothing is refused (refuseBareCarriageReturn), unless
 * `checked` says the caller has looked already, or reads it otherwise than the job (a sniff).
 */
export const forEachCsvRecord = (
  block: RecordBlock,
  multiline: boolean,
  fn: (start: number, end: number, offset: number) => void,
  checked = false,
): void => {
  if (!checked) refuseBareCarriageReturn(block, multiline);
  const b = block.bytes;
  const q = multiline ? b.indexOf(QUOTE) : -1;
  if (q < 0) {
    forEachLine(block, b.indexOf("\r\r") < 0 ? fn : (s, e, offset) => fn(s, endBeforeCarriageReturns(b, s, e), offset));
    return;
  }
  const n = b.length;
  let s = 0;
  // Lines before the first quote need no parity.
  let nl = b.indexOf(NL);
  while (nl >= 0 && nl < q) {
    fn(s, endBeforeCarriageReturns(b, s, nl), block.offset + s);
    s = nl + 1;
    nl = b.indexOf(NL, s);
  }
  let i = q;
  while (i < n) {
    const c = b[i];
    if (c === QUOTE) {
      // Inside quotes only the closing quote matters: found natively.
      const close = b.indexOf(QUOTE, i + 1);
      if (close < 0) break;
      i = close + 1;
      continue;
    }
    if (c === NL) {
      fn(s, endBeforeCarriageReturns(b, s, i), block.offset + s);
      s = i + 1;
    }
    i++;
  }
  if (s < n) fn(s, endBeforeCarriageReturns(b, s, n), block.offset + s);
};

/** Why a carriage return alone outside quotes is refused; `first`: it ends the first record (see below). */
export const bareCarriageReturnReason = (first: boolean): string =>
  first
    ? "a record ends in a carriage return alone (old Mac line ends): CSV records end at line feeds, so the file would read as " +
      "one record; convert its line ends first (tr '\\r' '\\n', or save it as CSV UTF-8)"
    : "a carriage return alone outside quotes: CSV readers disagree on it (Python's ends the record there); quote the " +
      "field that holds it, or remove it";

/**
 * Refuses a block of whole records that holds a carriage return outside quotes that ends nothing,
 * anywhere in a file (Python's csv ends a record there, where records here end at line feeds: read
 * on, two records would be one). Cheap for CRLF text: only a carriage return that is not one of a
 * line end's has the block's quotes paired up to decide.
 */
export const refuseBareCarriageReturn = (block: RecordBlock, multiline: boolean): void => {
  const b = block.bytes;
  for (let i = b.indexOf(CR); i >= 0 && i < b.length - 1; i = b.indexOf(CR, i + 1)) {
    if (b[i + 1] === NL) continue;
    const found = bareCarriageReturn(b, multiline);
    if (found) throw badRecord(bareCarriageReturnReason(found.first), block.offset + found.at);
    return;
  }
};

/**
 * The first carriage return outside quotes that ends nothing (followed neither by a line feed
 * nor by `\r\n`, as Windows' text mode writes after Python's csv), or undefined; and whether
 * it ends the first record (no line feed before it): old Mac line ends (Excel's "CSV
 * (Macintosh)"), where records end at line feeds here and the file would be one record. Quotes
 * pair up across lines (multiline) or within a line, as the records are read. A carriage return
 * at the sample's end may be a CRLF's first half.
 */
export const bareCarriageReturn = (bytes: Uint8Array, multiline: boolean): { readonly at: number; readonly first: boolean } | undefined => {
  if (bytes.indexOf(CR) < 0) return undefined;
  let inside = false;
  let lineFeed = false;
  for (let i = 0; i < bytes.length - 1; i++) {
    const c = bytes[i];
    if (c === QUOTE) inside = !inside;
    else if (c === NL) {
      if (!multiline) inside = false;
      if (!inside) lineFeed = true;
    } else if (c === CR && !inside) {
      const next = bytes[i + 1];
      if (next === NL || (next === CR && (i + 2 >= bytes.length || bytes[i + 2] === NL))) continue;
      return { at: i, first: !lineFeed };
    }
  }
  return undefined;
};
