/**
 * Records of each format, decoded from whole-record blocks, and the format options ops share
 * (CSV header and separator, the CSV column or JSON field that holds a number).
 */
import * as z from "zod";
import { badRecord, CloudmillError, ErrorCode } from "../errors.js";
import type { Format, Params } from "../job/spec.js";
import type { RecordBlock } from "../records/alignedBlocks.js";
import { forEachCsvRecord, parseCsvRecord, type CsvOptions } from "../records/csv.js";
import { scanCsvColumn } from "../records/csvColumn.js";
import { checkHeaderNames, headerNamesShown, isColumnIndex } from "../records/csvDialect.js";
import { forEachLine, trimRange } from "../records/lines.js";
import { parseNumberAt } from "../records/numbers.js";
import { decimalAt, decimalOfText, decimalText, scanNumberLines, type DecimalSink } from "../records/decimal.js";
import { jsonNumberText, mayHoldLongNumber } from "../records/jsonNumberText.js";
import type { MapContext } from "./types.js";
import { boolParam, lazySchema, paramHint } from "./params.js";

/** Params every op that reads CSV or JSONL takes. */
export const formatParamsShape = {
  /** CSV: the first line is a header (default true). */
  header: boolParam().optional(),
  /** CSV: field separator; `tab`; or `auto`, sniffed from the input (default `,`, tab for `.tsv`). */
  separator: z.string().min(1).max(4).optional(),
  /** CSV: quoted fields may hold newlines (default true); false reads one record per line. */
  multiline: boolParam().optional(),
};

/** The params of an op that takes only format options. */
export const formatParams = lazySchema(() => z.strictObject(formatParamsShape));

/** The format each shared format param is for: given with another, it would be ignored unseen. */
const FORMAT_OF_PARAM: Readonly<Record<string, Format>> = {
  header: "csv",
  separator: "csv",
  multiline: "csv",
  column: "csv",
  field: "jsonl",
};

/**
 * Refuses a format param (`column=`, `separator=`) the job's format does not read: its user
 * meant another read of the input (a `.csv.gz` taken for lines). `ownNames`: the op's own
 * params may reuse `column` and `field` (a lab's op), so only the shared format params count.
 */
export const refuseParamsOfOtherFormats = (params: Params, format: Format, ownNames: boolean): void => {
  for (const name of Object.keys(params)) {
    const wanted = FORMAT_OF_PARAM[name];
    if (wanted === undefined || wanted === format || (ownNames && !(name in formatParamsShape))) continue;
    throw new CloudmillError(
      ErrorCode.INVALID_SPEC,
      `param ${name} is for ${wanted} input, but the input is read as ${format}: ` +
        (format === "lines" || format === "numbers"
          ? `set format ${wanted} (--format ${wanted}): only inputs all named like x.${wanted} or x.${wanted}.gz are read as ` +
            `${wanted} unasked (a zip archive's entries are not looked at for it)`
          : `drop ${name}`),
      { field: `params.${name}` },
    );
  }
};

export const formatParamsHelp = [
  "header=true|false   csv: the first line names the columns (default true)",
  "separator=,         csv: field separator, tab or auto (sniffed; default , or tab for .tsv)",
  "multiline=true|false csv: quoted fields may hold newlines (default true); false: one record per line",
];

/** Params of ops that read one number per record. */
export const valueParamsShape = {
  ...formatParamsShape,
  /** CSV: the column holding the number, by name (with a header) or 1-based index. */
  column: z.union([z.string().min(1).max(256), z.number().int().positive()]).optional(),
  /** JSONL: the field holding the number, a dotted path like `a.b`. */
  field: z.string().min(1).max(256).optional(),
};

export const valueParamsHelp = [
  ...formatParamsHelp,
  "column=NAME|N       csv: the column holding the number (name, or 1-based index)",
  "field=a.b           jsonl: the field holding the number (dotted path)",
];

export interface FormatOptions {
  readonly header?: boolean | undefined;
  readonly separator?: string | undefined;
  readonly multiline?: boolean | undefined;
}

export interface ValueOptions extends FormatOptions {
  readonly column?: string | number | undefined;
  readonly field?: string | undefined;
}

/** How a job's params read CSV: RFC 4180 with quoted newlines unless `multiline=false`. */
export const csvOptions = (o: FormatOptions): CsvOptions => ({ separator: o.separator ?? ",", quote: '"', multiline: o.multiline ?? true });

/** Calls fn for each CSV record's text, skipping the header record. */
const forEachCsvText = (
  block: RecordBlock,
  csv: CsvOptions,
  skipHeader: boolean,
  fn: (text: string, offset: number, bytes: Buffer, start: number, end: number) => void,
): void => {
  let skip = skipHeader && block.first;
  forEachCsvRecord(block, csv.multiline === true, (s, e, offset) => {
    if (skip) {
      skip = false;
      return;
    }
    fn(block.bytes.toString("utf8", s, e), offset, block.bytes, s, e);
  });
};

/** Calls fn for each line, decoding it as UTF-8. */
const forEachTextLine = (block: RecordBlock, fn: (text: string, offset: number, bytes: Buffer, start: number, end: number) => void): void =>
  forEachLine(block, (s, e, offset) => fn(block.bytes.toString("utf8", s, e), offset, block.bytes, s, e));

const QUOTE_BYTE = 0x22;

const isBlank = (b: Buffer, s: number, e: number): boolean => {
  const [ts, te] = trimRange(b, s, e);
  return ts === te;
};

/**
 * Runs fn and hands a bad-record error (with its offset) to ctx.bad. Any other error is the
 * op's own (a lab's SyntaxError too) and fails the chunk, whatever onBadRecord says.
 */
export const guarded = (ctx: MapContext, offset: number, fn: () => void): void => {
  try {
    fn();
  } catch (err) {
    if (err instanceof CloudmillError && err.code === ErrorCode.BAD_RECORD) {
      ctx.bad(err.context.offset === undefined ? err.withContext({ offset }) : err);
    } else {
      throw err;
    }
  }
};

/** A jsonl record's value; a line that is not JSON is a bad record. */
const parseJsonRecord = (text: string, offset: number): unknown => {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw badRecord(`invalid JSON: ${(err as Error).message}`, offset);
  }
};

/**
 * Calls fn with each record of the block as a value of its format:
 * lines → string; numbers → number (blank lines skipped); csv → string[] or, with a
 * header, an object of column → string (the header line itself is not a record);
 * jsonl → the parsed JSON value (blank lines skipped); blob → the object's bytes, a Buffer.
 */
export const forEachRecord = (
  block: RecordBlock,
  format: Format,
  options: FormatOptions,
  ctx: MapContext,
  /**
   * `text`: a jsonl record's line as written (the others' is their value). `start`, `end`: the
   * record's bytes in the block (a key's own, to tell a U+FFFD written as such from a decoded one).
   */
  fn: (value: unknown, offset: number, text: string | undefined, start: number, end: number) => void,
): void => {
  switch (format) {
    case "lines":
      forEachTextLine(block, (text, offset, _b, s, e) => fn(text, offset, undefined, s, e));
      return;
    case "numbers":
      forEachLine(block, (s, e, offset) =>
        guarded(ctx, offset, () => {
          const v = parseNumberAt(block.bytes, s, e, offset);
          if (v !== undefined) fn(v, offset, undefined, s, e);
        }),
      );
      return;
    case "csv": {
      const header = options.header ?? true;
      const names = header ? ctx.header : undefined;
      // Records become objects keyed by the names: two columns of one name would lose a value.
      if (names) checkHeaderNames(names);
      const csv = csvOptions(options);
      forEachCsvText(block, csv, header, (text, offset, _b, s, e) => {
        // Only an empty line is no record (as Python's csv module reads it): a row of spaces, or a
        // TSV row of a tab, holds fields, empty or not, and its key counts.
        if (s === e) return;
        guarded(ctx, offset, () => {
          const fields = parseCsvRecord(text, offset, csv);
          if (!names) return fn(fields, offset, undefined, s, e);
          if (fields.length !== names.length)
            throw badRecord(`expected ${names.length} fields (as in the header), got ${fields.length}`, offset);
          const row: Record<string, string> = Object.create(null) as Record<string, string>;
          for (const [i, n] of names.entries()) row[n] = fields[i]!;
          fn(row, offset, undefined, s, e);
        });
      });
      return;
    }
    case "jsonl":
      forEachTextLine(block, (text, offset, b, s, e) => {
        if (isBlank(b, s, e)) return;
        guarded(ctx, offset, () => fn(parseJsonRecord(text, offset), offset, text, s, e));
      });
      return;
    case "blob":
      // The task hands a blob op each object whole, as one block (task.ts).
      guarded(ctx, block.offset, () => fn(block.bytes, block.offset, undefined, 0, block.bytes.length));
      return;
  }
};

/** Counts records the way forEachRecord sees them, without decoding more than needed. */
export const countRecords = (block: RecordBlock, format: Format, options: FormatOptions, ctx: MapContext): number => {
  let n = 0;
  if (format === "csv") {
    const csv = csvOptions(options);
    let skip = (options.header ?? true) && block.first;
    forEachCsvRecord(block, csv.multiline === true, (s, e, offset) => {
      if (skip) {
        skip = false;
        return;
      }
      if (s === e) return;
      // A record with a quote is parsed, as every other op parses it: one whose quotes do not
      // pair up is refused (or skipped), never counted as some other number of records.
      const quote = block.bytes.indexOf(QUOTE_BYTE, s);
      if (quote !== -1 && quote < e) {
        let ok = false;
        guarded(ctx, offset, () => {
          parseCsvRecord(block.bytes.toString("utf8", s, e), offset, csv);
          ok = true;
        });
        if (!ok) return;
      }
      n++;
    });
    return n;
  }
  if (format === "jsonl") {
    forEachLine(block, (s, e) => {
      if (!isBlank(block.bytes, s, e)) n++;
    });
    return n;
  }
  forEachRecord(block, format, options, ctx, () => n++);
  return n;
};

/** The value at a dotted path's segments in a JSON value, or undefined. */
export const getPath = (value: unknown, path: readonly string[]): unknown => {
  let v = value;
  for (const p of path) {
    // JSON's own members only: an array's are its indexes (not `length`).
    if (typeof v !== "object" || v === null || !Object.hasOwn(v, p) || (Array.isArray(v) && !/^(0|[1-9][0-9]*)$/.test(p))) return undefined;
    v = (v as Record<string, unknown>)[p];
  }
  return v;
};

/**
 * INVALID_SPEC when no record of a job had its JSONL `field` and some had none (`absent`): a
 * misspelt field, or a key holding a dot (paths split at dots), would otherwise answer "no numbers".
 * Records with the field but null, and a job with no record at all, answer so as before.
 */
export const refuseAbsentField = (values: number, absent: number | undefined, options: ValueOptions): void => {
  if (values > 0 || !absent || options.field === undefined) return;
  throw absentField("field", options.field, absent);
};

/** INVALID_SPEC: JSONL field `name` (op param `param`) is in none of the `read` records. */
export const absentField = (param: string, name: string, read: number): CloudmillError => {
  const why = name.includes(".") ? " (a path splits at dots: a key that holds a dot cannot be named)" : ": is it misspelt?";
  return new CloudmillError(ErrorCode.INVALID_SPEC, `${param}=${name}: none of the ${read} records read has it${why}`, {
    field: `params.${param}`,
  });
};

/** Resolves a CSV column (name, or 1-based index: isColumnIndex) to a 0-based index, or throws INVALID_SPEC. */
const columnIndex = (options: ValueOptions, header: readonly string[] | undefined, inputName: string): number => {
  const column = options.column;
  if (column === undefined) {
    throw new CloudmillError(
      ErrorCode.INVALID_SPEC,
      `csv input needs param column, a name or a 1-based index: ${paramHint("column", "NAME")}`,
      {
        field: "params.column",
      },
    );
  }
  // An input that holds no record (csvInput.ts): its column is never read.
  if (header?.length === 0) return 0;
  if (typeof column === "number" || isColumnIndex(column, header)) {
    if (Number(column) < 1)
      throw new CloudmillError(ErrorCode.INVALID_SPEC, "param column: columns count from 1", { field: "params.column" });
    // Past the header's columns, every record would be refused as bad (or, skipped, leave no number).
    if (header !== undefined && header.length > 0 && Number(column) > header.length)
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        `no column ${column}: the header has ${header.length} (columns: ${headerNamesShown(header)})`,
        { field: "params.column", input: inputName },
      );
    return Number(column) - 1;
  }
  const i = header?.indexOf(column) ?? -1;
  const again = i >= 0 ? header!.indexOf(column, i + 1) : -1;
  if (again >= 0)
    throw badRecord(`header: columns ${i + 1} and ${again + 1} are both named ${JSON.stringify(column)}: name it by index`, 0);
  if (i < 0) {
    throw new CloudmillError(
      ErrorCode.INVALID_SPEC,
      header
        ? `no column ${JSON.stringify(column)} in the header (columns: ${headerNamesShown(header)})`
        : `column ${JSON.stringify(column)} is a name but the input has no header`,
      { field: "params.column", input: inputName },
    );
  }
  return i;
};

/** The least positive normal double: below it, doubles are too sparse to tell decimals apart. */
export const MIN_NORMAL = 2.2250738585072014e-308;

/** A line that may hold a number written past -307 as its exponent, which may underflow to 0. */
export const TINY_EXPONENT = /\d[eE]-\d{3}/;

/**
 * A JSON number x (at `path` in the record's line `text`) as the decimal it is written as: a
 * normal number of up to 15 significant digits is exactly the shortest decimal of its double.
 * JSON.parse rounded a longer one, and a subnormal or one that underflowed to 0 names no decimal
 * of its own, so its text is read from the line (records/jsonNumberText.ts), and a non-zero
 * number that became 0 is refused as out of range, as the numbers format refuses it.
 */
export const jsonNumber = (x: number, sink: DecimalSink, offset: number, text?: string, path?: readonly string[]): void => {
  const tiny = Math.abs(x) < MIN_NORMAL && (x !== 0 || (text !== undefined && TINY_EXPONENT.test(text)));
  const written = text !== undefined && path !== undefined && (tiny || mayHoldLongNumber(text)) ? jsonNumberText(text, path) : undefined;
  if (written !== undefined) return void decimalText(written, offset, sink);
  // A double's shortest text has at most 17 digits and 340 places: always within the limit.
  const { m, scale } = decimalOfText(String(x))!;
  sink.big(x, m, scale);
};

/** A sink of numbers that also hears of a JSONL record whose field is null (left out, and counted). */
export interface ValueSink extends DecimalSink {
  nullValue?(): void;
}

/**
 * Returns a function that hands each number of a block (numbers, csv column or jsonl field) to
 * a sink, as a double and as the exact decimal it is written as. Numbers and plain CSV columns
 * are read from the bytes in place (records/decimal.ts); a record the fast path cannot take
 * whole (quotes, a multi-byte separator, an unusual number, an error) is read the general way.
 */
export const numberReader = (format: Format, options: ValueOptions, ctx: MapContext): ((block: RecordBlock, sink: ValueSink) => void) => {
  switch (format) {
    case "numbers":
    case "lines":
      return (block, sink) =>
        scanNumberLines(block, sink, (s, e, offset) => guarded(ctx, offset, () => void decimalAt(block.bytes, s, e, offset, sink)));
    case "csv": {
      const header = options.header ?? true;
      const index = columnIndex(options, header ? ctx.header : undefined, ctx.inputName);
      // A row of more or fewer fields than the header's has its columns shifted (a decimal comma
      // unquoted): its number would be another column's. Refused, as groupby refuses it.
      const expected = header && ctx.header?.length ? ctx.header.length : undefined;
      const csv = csvOptions(options);
      // Read in place only where the separator cannot be part of a number (`sep=.` splits 1.5 in two).
      const separator =
        csv.separator.length === 1 && csv.separator.charCodeAt(0) < 0x80 && !/[0-9.+\-eE]/.test(csv.separator)
          ? csv.separator.charCodeAt(0)
          : -1;
      const general = (b: Buffer, s: number, e: number, offset: number, sink: DecimalSink): void => {
        if (isBlank(b, s, e)) return;
        guarded(ctx, offset, () => {
          const fields = parseCsvRecord(b.toString("utf8", s, e), offset, csv);
          if (expected !== undefined && fields.length !== expected)
            throw badRecord(`expected ${expected} fields (as in the header), got ${fields.length}`, offset);
          if (index >= fields.length) throw badRecord(`no column ${index + 1} (the row has ${fields.length})`, offset);
          decimalText(fields[index]!, offset, sink);
        });
      };
      if (separator < 0) {
        return (block, sink) => {
          let skip = header && block.first;
          forEachCsvRecord(block, csv.multiline === true, (s, e, offset) => {
            if (skip) skip = false;
            else general(block.bytes, s, e, offset, sink);
          });
        };
      }
      const multiline = csv.multiline === true;
      return (block, sink) =>
        scanCsvColumn(block, { separator, index, fields: expected, multiline, skipFirst: header && block.first }, sink, (s, e, offset) =>
          general(block.bytes, s, e, offset, sink),
        );
    }
    case "jsonl": {
      if (options.field === undefined) {
        throw new CloudmillError(ErrorCode.INVALID_SPEC, `jsonl input needs param field, a dotted path: ${paramHint("field", "NAME")}`, {
          field: "params.field",
        });
      }
      const path = options.field.split(".");
      return (block, sink) =>
        forEachTextLine(block, (text, offset, b, s, e) => {
          if (isBlank(b, s, e)) return;
          guarded(ctx, offset, () => {
            const v = getPath(parseJsonRecord(text, offset), path);
            if (v === undefined) return void sink.absent?.();
            if (v === null) return void sink.nullValue?.();
            if (typeof v === "number" && Number.isFinite(v)) return jsonNumber(v, sink, offset, text, path);
            if (typeof v === "string") return void decimalText(v, offset, sink);
            // JSON's 1e400 parses to Infinity, which JSON.stringify would show as null.
            if (typeof v === "number") throw badRecord(`field ${options.field}: number out of range`, offset);
            throw badRecord(`field ${options.field}: expected a number, got ${JSON.stringify(v).slice(0, 60)}`, offset);
          });
        });
    }
    case "blob":
      throw new CloudmillError(ErrorCode.INVALID_SPEC, "a blob (a whole object of bytes) holds no numbers to read", { field: "format" });
  }
};
