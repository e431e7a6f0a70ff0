/**
 * Inputs listed in a file instead of named one by one: `manifest:<where>` as an input.
 *
 * - A plain list (any other name): one input per line, as an input is written (an `s3://` URI
 *   of an object or a prefix, or, for a manifest in S3, a key of the manifest's own bucket;
 *   for a local run, a path from the manifest's folder). Blank lines and `#` comments skipped.
 * - `.csv`: an S3 Batch Operations manifest, `bucket,key` per row, keys URL-encoded.
 * - `manifest.json`: an S3 Inventory report's manifest (CSV inventories): its listed data
 *   files are read, objects' size and ETag taken from them where the report has those
 *   columns, delete markers and noncurrent versions left out.
 *
 * Parsing is pure; resolveInputs.ts reads the files and the objects.
 */
import { endBeforeCarriageReturns } from "../records/csv.js";
import { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import { parseCsvRecord } from "../records/csv.js";
import { isUtf8 } from "../records/utf8.js";

export const MANIFEST_SCHEME = "manifest:";

export const isManifestInput = (input: string): boolean => input.startsWith(MANIFEST_SCHEME);

/** Where a manifest input's file is: what follows `manifest:`. */
export const manifestLocation = (input: string): string => input.slice(MANIFEST_SCHEME.length);

/** An input read where it is in S3: an object or prefix URI, or a manifest in S3. */
export const isS3Input = (input: string): boolean =>
  input.startsWith("s3://") || (isManifestInput(input) && manifestLocation(input).startsWith("s3://"));

export type ManifestKind = "list" | "batch-csv" | "inventory";

export const manifestKind = (location: string): ManifestKind =>
  location.endsWith("manifest.json") ? "inventory" : location.toLowerCase().endsWith(".csv") ? "batch-csv" : "list";

/** One input a manifest names, with the line that names it (1-based, for messages). */
export interface ListedEntry {
  readonly line: number;
  /** As written: a URI, a key or a path. */
  readonly text: string;
}

export const refuse = (where: string, line: number | undefined, message: string, at?: { offset: number; decoded?: true }): CloudmillError =>
  new CloudmillError(ErrorCode.INVALID_SPEC, message, { input: where, ...(line !== undefined ? { line } : {}), ...at });

/** A UTF-8 byte order mark, as spreadsheets save "CSV UTF-8": not part of the first row. */
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** Where a file's lines are read from: the byte the next line starts at, and the lines before it. */
export interface LinePosition {
  readonly at: number;
  readonly line: number;
}

export const FILE_START: LinePosition = { at: 0, line: 0 };

/** One line of a manifest: its number (1-based), its text, the byte it starts at and the one after its newline. */
export interface ManifestLine {
  readonly line: number;
  readonly row: string;
  readonly at: number;
  readonly next: number;
}

/**
 * A file's lines, each decoded alone, with its byte offset: a manifest may hold more than the
 * longest string JavaScript holds (about 512 MiB), so it is never one string. A file that is
 * not UTF-8 is refused at its first bad line: decoded anyway, its keys would name no object.
 * `file` may be the file's bytes from `start` on (whole lines), numbered and placed as in the file.
 */
export const linesOf = function* (file: string | Uint8Array, where: string, start: LinePosition = FILE_START): Generator<ManifestLine> {
  const bytes = typeof file === "string" ? Buffer.from(file) : Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  let line = start.line;
  for (let from = start.at === 0 && bytes.subarray(0, 3).equals(BOM) ? 3 : 0; from < bytes.length; ) {
    const nl = bytes.indexOf(0x0a, from);
    const end = nl < 0 ? bytes.length : nl;
    const stop = endBeforeCarriageReturns(bytes, from, end);
    line++;
    const row = bytes.toString("utf8", from, stop);
    // Bytes that are not UTF-8 decode to U+FFFD; a row that holds one is checked strictly.
    if (row.includes("\uFFFD") && !isUtf8(bytes.subarray(from, stop)))
      throw refuse(where, line, "not UTF-8 text", { offset: start.at + from });
    yield { line, row, at: start.at + from, next: start.at + Math.min(bytes.length, end + 1) };
    from = end + 1;
  }
};

/**
 * A plain list's entries: one per line as written (a key may begin or end with a space, and
 * `data.txt ` is another object than `data.txt`), blank lines and `#` comments (indented too) skipped; past
 * `max` entries the list is read no further (one more is returned, for the caller to refuse).
 */
export const listEntries = (file: string | Uint8Array, where: string, max = Number.POSITIVE_INFINITY): ListedEntry[] => {
  const out: ListedEntry[] = [];
  for (const { line, row } of linesOf(file, where)) {
    const entry = listEntryOf(line, row);
    if (entry) out.push(entry);
    if (out.length > max) break;
  }
  return out;
};

/** A plain list's line as an entry: as written, or undefined for a blank line or a `#` comment. */
export const listEntryOf = (line: number, row: string): ListedEntry | undefined => {
  const start = row.trimStart();
  return start !== "" && !start.startsWith("#") ? { line, text: row } : undefined;
};

/** A listed name as a message shows it: quoted where spaces at its ends are part of it. */
export const shownEntry = (text: string): string => (text.trim() === text ? text : JSON.stringify(text));

/** An object a manifest names by bucket and key, with what the manifest says of it. */
export interface ListedObject {
  readonly line: number;
  readonly bucket: string;
  readonly key: string;
  readonly size?: number;
  readonly etag?: string;
}

const decodeKey = (encoded: string, plusIsSpace: boolean, where: string, line: number): string => {
  try {
    return decodeURIComponent(plusIsSpace ? encoded.replaceAll("+", " ") : encoded);
  } catch {
    throw refuse(where, line, `the key ${JSON.stringify(encoded)} is not URL-encoded`);
  }
};

const CSV = { separator: ",", quote: '"' } as const;

/**
 * One manifest row's CSV fields (a row is one line: a quoted field holds no newline); a row that
 * is not CSV is refused naming the manifest, its line and the byte.
 */
const fieldsOf = (row: string, at: number, where: string, line: number, decoded?: true): string[] => {
  try {
    return parseCsvRecord(row, at, CSV);
  } catch (err) {
    if (!(err instanceof CloudmillError)) throw err;
    const reason = err.message.replace(/: with multiline=false .*$/, ": a row must be one line");
    throw refuse(where, line, `not CSV: ${reason}`, { offset: err.context.offset ?? at, ...(decoded ? { decoded } : {}) });
  }
};

/**
 * Rows of an S3 Batch Operations CSV manifest: `bucket,key` (a third column, a version, is
 * refused); past `max` rows the file is read no further (one more is returned, for the caller
 * to refuse, and rows past it are not read at all).
 */
export const batchCsvObjects = (file: string | Uint8Array, where: string, max = Number.POSITIVE_INFINITY): ListedObject[] => {
  const out: ListedObject[] = [];
  for (const { line, row, at } of linesOf(file, where)) {
    if (row.trim() === "") continue;
    if (out.length >= max + 1) break;
    out.push(batchCsvObjectOf(line, row, at, where)!);
  }
  return out;
};

/** One row of an S3 Batch Operations CSV manifest as its object, or undefined for a blank row; see batchCsvObjects. */
export const batchCsvObjectOf = (line: number, row: string, at: number, where: string): ListedObject | undefined => {
  if (row.trim() === "") return undefined;
  const fields = fieldsOf(row, at, where, line);
  if (fields.length > 3) {
    throw refuse(where, line, `expected bucket,key, got ${fields.length} columns (a comma in a key is written %2C, or the key quoted)`);
  }
  if (fields.length > 2 && fields[2] !== "") {
    throw refuse(
      where,
      line,
      "a third column (an object version) is not supported: list bucket,key only (a comma in a key is written %2C)",
    );
  }
  const [bucket, key] = fields;
  if (!bucket || !key) throw refuse(where, line, `expected bucket,key, got ${JSON.stringify(row.slice(0, 80))}`);
  return { line, bucket, key: decodeKey(key, false, where, line) };
};

const InventoryManifest = z.looseObject({
  sourceBucket: z.string().min(1),
  destinationBucket: z.string().min(1),
  fileFormat: z.string(),
  fileSchema: z.string(),
  files: z.array(z.looseObject({ key: z.string().min(1) })),
});

/** What an inventory report's manifest.json says: where its data files are and their columns. */
export interface InventoryReport {
  /** The bucket the data files are in (the report's destination). */
  readonly bucket: string;
  readonly files: readonly string[];
  readonly columns: readonly string[];
}

export const inventoryReport = (json: string, where: string): InventoryReport => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json.startsWith("\uFEFF") ? json.slice(1) : json);
  } catch {
    throw refuse(where, undefined, "an S3 Inventory manifest.json must be JSON");
  }
  const m = InventoryManifest.safeParse(parsed);
  if (!m.success)
    throw refuse(where, undefined, "not an S3 Inventory manifest (needs sourceBucket, destinationBucket, fileFormat, fileSchema, files)");
  if (m.data.fileFormat !== "CSV") {
    throw refuse(where, undefined, `an inventory in ${m.data.fileFormat} cannot be read: configure the report's format as CSV`);
  }
  const columns = m.data.fileSchema.split(",").map((c) => c.trim());
  for (const needed of ["Bucket", "Key"]) {
    if (!columns.includes(needed))
      throw refuse(where, undefined, `the inventory has no ${needed} column (fileSchema: ${m.data.fileSchema})`);
  }
  // arn:aws:s3:::bucket, or a bare name.
  const bucket = m.data.destinationBucket.replace(/^arn:[^:]*:s3:::/, "");
  return { bucket, files: m.data.files.map((f) => f.key), columns };
};

/**
 * The longest line a manifest may have. A line names one object (a key is at most 1,024 bytes;
 * an inventory row a few hundred more): a longer one is no manifest line, and is refused rather
 * than held whole.
 */
export const MAX_MANIFEST_LINE = 1 << 20;

/**
 * The lines of gzip-compressed text, decoded as they come: an inventory data file may decode to
 * more than the longest string JavaScript holds (about 512 MiB), so it is never one string.
 */
const gunzippedLines = async function* (
  gzipped: Buffer,
  where: string,
): AsyncGenerator<{ readonly line: number; readonly row: string; readonly at: number }> {
  const utf8 = new TextDecoder();
  let rest = "";
  let line = 0;
  let at = 0;
  /** The lines ended in `rest` + `text`: `rest` (the last line so far) holds no newline. */
  const lines = function* (text: string) {
    const joined = rest + text;
    let from = 0;
    for (let nl = joined.indexOf("\n", rest.length); nl >= 0; nl = joined.indexOf("\n", from)) {
      const raw = joined.slice(from, nl);
      from = nl + 1;
      line++;
      yield { line, row: raw.endsWith("\r") ? raw.slice(0, -1) : raw, at };
      at += Buffer.byteLength(raw) + 1;
    }
    rest = joined.slice(from);
    if (rest.length > MAX_MANIFEST_LINE)
      throw refuse(where, line + 1, `a row longer than ${MAX_MANIFEST_LINE} characters: not an S3 Inventory CSV`);
  };
  // A reader that stops early returns this generator, and the loop's exit ends the stream.
  for await (const piece of Readable.from([gzipped]).pipe(createGunzip())) yield* lines(utf8.decode(piece as Buffer, { stream: true }));
  rest += utf8.decode();
  if (rest !== "") yield { line: line + 1, row: rest.endsWith("\r") ? rest.slice(0, -1) : rest, at };
};

/** The current objects among an inventory's rows; see inventoryObjects. */
const inventoryRows = async function* (
  rows: AsyncGenerator<{ readonly line: number; readonly row: string; readonly at: number }>,
  columns: readonly string[],
  where: string,
): AsyncGenerator<ListedObject> {
  const at = (name: string): number => columns.indexOf(name);
  const [bucketAt, keyAt, sizeAt, etagAt, latestAt, deletedAt] = ["Bucket", "Key", "Size", "ETag", "IsLatest", "IsDeleteMarker"].map(at);
  for (;;) {
    let next: IteratorResult<{ readonly line: number; readonly row: string; readonly at: number }>;
    try {
      next = await rows.next();
    } catch (err) {
      if (err instanceof CloudmillError) throw err;
      throw new CloudmillError(ErrorCode.BAD_RECORD, `an inventory data file must be gzip CSV: ${(err as Error).message}`, {
        input: where,
      });
    }
    if (next.done) return;
    const { line, row, at: offset } = next.value;
    if (row.trim() === "") continue;
    const fields = fieldsOf(row, offset, where, line, true);
    if (fields.length < columns.length) throw refuse(where, line, `expected ${columns.length} columns, got ${fields.length}`);
    if (deletedAt! >= 0 && fields[deletedAt!] === "true") continue;
    if (latestAt! >= 0 && fields[latestAt!] === "false") continue;
    const size = sizeAt! >= 0 && fields[sizeAt!] !== "" ? Number(fields[sizeAt!]) : undefined;
    if (size !== undefined && !(Number.isSafeInteger(size) && size >= 0))
      throw refuse(where, line, `bad Size ${JSON.stringify(fields[sizeAt!])}`);
    const etag = etagAt! >= 0 && fields[etagAt!] ? fields[etagAt!]! : undefined;
    yield {
      line,
      bucket: fields[bucketAt!]!,
      key: decodeKey(fields[keyAt!]!, true, where, line),
      ...(size !== undefined ? { size } : {}),
      // S3 quotes the ETags it returns; inventories do not.
      ...(etag !== undefined ? { etag: etag.startsWith('"') ? etag : `"${etag}"` } : {}),
    };
  }
};

/**
 * The current objects of one inventory data file (gzip CSV, no header, keys URL-encoded
 * with `+` for a space), in the file's order and as they are decoded: delete markers and
 * noncurrent versions are left out.
 */
export const inventoryObjects = async function* (gzipped: Buffer, columns: readonly string[], where: string): AsyncGenerator<ListedObject> {
  const rows = gunzippedLines(gzipped, where);
  try {
    yield* inventoryRows(rows, columns, where);
  } finally {
    await rows.return(undefined);
  }
};
