/**
 * The CSV dialects labs meet: the separator named by the file (`.tsv` is tab-separated) or
 * sniffed from its start (`separator=auto`), and a header whose names can key records.
 */
import { badRecord, CloudmillError, ErrorCode } from "../errors.js";
import { uncompressedName } from "./codecs.js";
import { forEachCsvRecord, parseCsvRecord } from "./csv.js";

/** What `separator=auto` chooses from, in order of preference when several fit. */
export const SNIFFED_SEPARATORS = [",", ";", "\t", "|"] as const;

/** Bytes of an input's start that `separator=auto` looks at. */
export const SNIFF_BYTES = 64 * 1024;

/** Records of the sample that sniffing weighs (the header and those after it). */
const SNIFF_RECORDS = 50;

/** The separator an input is read with when the job names none: tab for `.tsv` and `.tab`, else comma. */
export const defaultSeparator = (inputName: string): string => (/\.(tsv|tab)$/i.test(uncompressedName(inputName)) ? "\t" : ",");

/**
 * The separator of a CSV input from its first bytes: of the candidates found in the header,
 * the one that splits every whole record of the sample into the header's number of fields
 * (more than one); the most fields wins, then the order of SNIFFED_SEPARATORS. Quoted
 * fields count as one whatever they hold. Deterministic in the sample, so every chunk of an
 * input, reading the same first bytes, chooses the same. `whole`: the sample is all of the input
 * (by default, when shorter than SNIFF_BYTES; a UTF-16 input's decoded sample is shorter anyway).
 */
export const sniffSeparator = (sample: Buffer, inputName: string, whole = sample.length < SNIFF_BYTES): string => {
  // Whole records only: the sample's last one may be cut short.
  const texts: string[] = [];
  // Not refused here for a carriage return: read with multiline as this is, a job that reads one
  // record per line could see one outside quotes that it is not (the job's own reading refuses).
  forEachCsvRecord(
    { bytes: sample, offset: 0, first: true },
    true,
    (s, e) => {
      if (texts.length <= SNIFF_RECORDS && e > s) texts.push(sample.toString("utf8", s, e).replace(/^\uFEFF/, ""));
    },
    true,
  );
  const complete = whole ? texts : texts.slice(0, -1);
  const header = complete[0];
  if (header === undefined && !whole) {
    throw new CloudmillError(
      ErrorCode.BAD_RECORD,
      `separator=auto: the header is longer than the ${SNIFF_BYTES} bytes sniffed; name it with --param separator=…`,
      { input: inputName, offset: 0 },
    );
  }
  if (header === undefined) return ",";
  let best: { separator: string; fields: number } | undefined;
  for (const separator of SNIFFED_SEPARATORS) {
    if (!header.includes(separator)) continue;
    const counts = complete.map((t) => {
      try {
        return parseCsvRecord(t, 0, { separator, quote: '"', multiline: true }).length;
      } catch {
        return -1;
      }
    });
    const fields = counts[0]!;
    if (fields > 1 && counts.every((c) => c === fields) && (!best || fields > best.fields)) best = { separator, fields };
  }
  if (!best) {
    throw new CloudmillError(
      ErrorCode.BAD_RECORD,
      `separator=auto: none of comma, semicolon, tab or pipe splits every record of the first ${complete.length} into the header's ` +
        "fields; name it with --param separator=…",
      { input: inputName, offset: 0 },
    );
  }
  return best.separator;
};

/**
 * Whether a column param is a 1-based index: digits that name no column of the header. A header
 * name made of digits (pandas writes `0,1,2`) is that column, in every op.
 */
export const isColumnIndex = (name: string, header?: readonly string[]): boolean => /^\d+$/.test(name) && !header?.includes(name);

/** A header's names for a one-line message: the first 20, then how many more. */
export const headerNamesShown = (names: readonly string[]): string =>
  names.length <= 20 ? names.join(", ") : `${names.slice(0, 20).join(", ")}, … (${names.length - 20} more)`;

/**
 * Refuses a header whose names cannot key a record: two columns of one name (empty names
 * included) would leave one value unreachable. Names the columns, 1-based.
 */
export const checkHeaderNames = (names: readonly string[]): void => {
  const columns = new Map<string, number[]>();
  for (const [i, name] of names.entries()) columns.set(name, [...(columns.get(name) ?? []), i + 1]);
  const clashes = [...columns]
    .filter(([, at]) => at.length > 1)
    .map(([name, at]) => `columns ${at.join(" and ")} ${name === "" ? "have no name" : `are named ${JSON.stringify(name)}`}`);
  if (clashes.length) throw badRecord(`header: ${clashes.join("; ")}: rename them, or read with header=false`, 0);
};
