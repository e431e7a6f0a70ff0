/**
 * Naming a field of a record, for ops that key or aggregate by column: a CSV column by name
 * (with a header) or 1-based index, a JSONL field by dotted path.
 */
import type { RecordBlock } from "../records/alignedBlocks.js";
import { isUtf8 } from "../records/utf8.js";
import { badRecord, CloudmillError, ErrorCode } from "../errors.js";
import type { Format } from "../job/spec.js";
import { headerNamesShown, isColumnIndex } from "../records/csvDialect.js";
import { jsonNumberText, mayHoldLongNumber, sameDecimal } from "../records/jsonNumberText.js";
import { absentField, getPath, MIN_NORMAL, TINY_EXPONENT } from "./formatReaders.js";
import type { FieldCounts } from "../shuffle/shuffleRun.js";
import type { MapContext } from "./types.js";

/** Reads one field of a record as forEachRecord hands it over; undefined when the record has none. */
export type FieldReader = (record: unknown, offset: number, text?: string) => string | number | boolean | null | undefined;

/** `a,b` → the names; a name or index per entry, none empty. */
export const fieldList = (param: string): string[] => param.split(",").map((s) => s.trim());

/** The fields a map task read by name, counted as FieldCounts says (`param=name` each). */
export class FieldTally {
  readonly #counts = new Map<string, [seen: number, had: number]>();

  /** The counts of one field, which its reader updates in place. */
  of(param: string, name: string): [seen: number, had: number] {
    const label = `${param}=${name}`;
    let counts = this.#counts.get(label);
    if (!counts) this.#counts.set(label, (counts = [0, 0]));
    return counts;
  }

  counts(): FieldCounts | undefined {
    return this.#counts.size ? Object.fromEntries(this.#counts) : undefined;
  }
}

/**
 * Refuses a job in which a field was read by name from records and none of them had it: a
 * misspelt name (or a dotted key) would otherwise put every record under null.
 */
export const refuseAbsentFields = (counts: FieldCounts | undefined): void => {
  for (const [label, [seen, had]] of Object.entries(counts ?? {})) {
    if (seen === 0 || had > 0) continue;
    const at = label.indexOf("=");
    throw absentField(label.slice(0, at), label.slice(at + 1), seen);
  }
};

/**
 * A reader of one named field (`param`: the op param it came from, for messages). With
 * `fields`, a JSONL field's reads are counted there.
 */
export const fieldReader = (name: string, param: string, format: Format, ctx: MapContext, fields?: FieldTally): FieldReader => {
  if (name === "") throw new CloudmillError(ErrorCode.INVALID_SPEC, `param ${param}: empty field name`, { field: `params.${param}` });
  if (format === "jsonl") {
    const path = name.split(".");
    const isKey = param === "key";
    const counts = fields?.of(param, name);
    return (record, offset, text) => {
      const v = getPath(record, path);
      if (counts) {
        counts[0]++;
        if (v !== undefined) counts[1]++;
      }
      if (v === undefined || v === null || typeof v === "string" || typeof v === "boolean") return v;
      // JSON's 1e400 parses to Infinity.
      if (typeof v === "number") {
        if (!Number.isFinite(v)) throw badRecord(`field ${name}: number out of range`, offset);
        if (isKey && text !== undefined) keyNumberAsWritten(v, text, path, name, offset);
        return v;
      }
      throw badRecord(
        `field ${name}: expected a string, number, boolean or null, got ${Array.isArray(v) ? "an array" : "an object"}`,
        offset,
      );
    };
  }
  if (format !== "csv") throw new CloudmillError(ErrorCode.INVALID_SPEC, `param ${param}: only csv and jsonl records have fields`);
  const header = ctx.header;
  const byIndex = isColumnIndex(name, ctx.header) ? Number(name) - 1 : undefined;
  if (byIndex !== undefined && byIndex < 0) throw new CloudmillError(ErrorCode.INVALID_SPEC, `param ${param}: columns count from 1`);
  if (!header) {
    if (byIndex === undefined)
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        `param ${param}: column ${JSON.stringify(name)} is a name but the input has no header`,
        {
          field: `params.${param}`,
          input: ctx.inputName,
        },
      );
    return (record, offset) => {
      const fields = record as string[];
      if (byIndex >= fields.length) throw badRecord(`no column ${byIndex + 1} (the row has ${fields.length})`, offset);
      return fields[byIndex]!;
    };
  }
  // An input that holds no record (csvInput.ts): its reader is never called.
  if (header.length === 0) return () => undefined;
  const column = byIndex !== undefined && !header.includes(name) ? header[byIndex] : name;
  if (column === undefined || !header.includes(column)) {
    throw new CloudmillError(
      ErrorCode.INVALID_SPEC,
      `param ${param}: no column ${JSON.stringify(name)} in the header (columns: ${headerNamesShown(header)})`,
      { field: `params.${param}`, input: ctx.inputName },
    );
  }
  return (record) => (record as Record<string, string>)[column]!;
};

/**
 * A key from several fields: the JSON array of their values, so that every combination of
 * values (a missing one as null) is a key of its own, whatever characters the values hold.
 */
export const keyOfFields = (
  readers: readonly FieldReader[],
): ((block: RecordBlock) => (record: unknown, offset: number, text: string | undefined, start: number, end: number) => string) => {
  const keyOf =
    readers.length === 1
      ? (record: unknown, offset: number, text?: string) => JSON.stringify([readers[0]!(record, offset, text) ?? null])
      : (record: unknown, offset: number, text?: string) => JSON.stringify(readers.map((r) => r(record, offset, text) ?? null));
  return (block) => {
    let utf8: boolean | undefined;
    return (record, offset, text, start, end) => {
      const key = keyOf(record, offset, text);
      // An integer JSON.parse rounded (past 2^53) would meet its neighbours as one key. Past 1e21
      // JSON.stringify writes it with an exponent (1e+21), which the digits alone would not show.
      if (/\d{16}|\de\+/.test(key)) {
        for (const v of JSON.parse(key) as unknown[]) {
          if (typeof v === "number" && Number.isInteger(v) && !Number.isSafeInteger(v))
            throw badRecord(
              `key ${v} is an integer past 2^53, where JSON numbers may be rounded (neighbours would meet as one key): ` +
                "quote it as a string",
              offset,
            );
        }
      }
      // Records are decoded as UTF-8: bytes that are not become U+FFFD, and two different keys would
      // meet as one. A U+FFFD the input holds as such (its bytes EF BF BD) is a character like any.
      // The block is asked first (once), then the record's own bytes: bad bytes elsewhere in the
      // block, in another record or a field not read, do not make this record's key suspect.
      if (key.includes(REPLACEMENT) && !(utf8 ??= isUtf8(block.bytes)) && !isUtf8(block.bytes.subarray(start, end)))
        throw badRecord(
          "key holds U+FFFD where the input holds bytes that are not UTF-8 (convert it, e.g. iconv -f LATIN1 -t UTF-8)",
          offset,
        );
      return key;
    };
  };
};

const REPLACEMENT = "\uFFFD";

/**
 * Refuses a JSONL key number that JSON.parse rounded (more digits than a double holds, or
 * below the doubles, as 1e-400 becomes 0): it would meet the number it rounded to as one key.
 */
const keyNumberAsWritten = (v: number, text: string, path: readonly string[], name: string, offset: number): void => {
  // Only a number of 16 or more digits, or one past e-99, can have been rounded.
  if (!mayHoldLongNumber(text) && !TINY_EXPONENT.test(text) && (v === 0 || Math.abs(v) >= MIN_NORMAL)) return;
  // keyOfFields refuses any integer past 2^53, with its own advice.
  if (Number.isInteger(v) && !Number.isSafeInteger(v)) return;
  const written = jsonNumberText(text, path);
  if (written === undefined || sameDecimal(written, String(v))) return;
  throw badRecord(`key ${name}: ${written} is not a number a double holds (it reads as ${v}): quote it as a string`, offset);
};

/** A key made by keyOfFields, as the output shows it: the value, or the array of values. */
export const keyValue = (key: string): unknown => {
  const values = JSON.parse(key) as unknown[];
  return values.length === 1 ? values[0] : values;
};
