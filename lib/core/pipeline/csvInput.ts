/**
 * What a task must know of a CSV input before reading its chunk, from the input's first bytes:
 * its encoding (UTF-8, or UTF-16 by its byte-order mark), the separator (named by the job, a
 * `.tsv`'s tab, or sniffed), and the header's names. Every chunk of the input reads the same
 * first bytes, so every chunk decides the same.
 */
import type { InputObject } from "../job/manifest.js";
import type { Params } from "../job/spec.js";
import { csvOptions, type FormatOptions } from "../ops/formatReaders.js";
import type { AnyOp } from "../ops/types.js";
import type { BlobStore } from "../ports.js";
import { rangeRecordBlocks } from "../records/alignedBlocks.js";
import type { Codec } from "../records/codecs.js";
import { inputHead, inputRangeBytes } from "../records/inputBytes.js";
import { bareCarriageReturn, bareCarriageReturnReason, parseCsvRecord } from "../records/csv.js";
import { badRecord } from "../errors.js";
import { defaultSeparator, SNIFF_BYTES, sniffSeparator } from "../records/csvDialect.js";
import { CsvRecordEnds, lineEnds, type RecordEnds } from "../records/recordEnds.js";
import { decodeUtf16Block, Utf16RecordEnds, utf16Of, type Utf16 } from "../records/utf16.js";

export interface CsvInput {
  /** The job's params with the separator this input is read with. */
  readonly params: Params;
  /** The separator `separator=auto` chose. */
  readonly sniffed?: string;
  /** Set for UTF-16 text: records are decoded to UTF-8 for the op. */
  readonly encoding?: Utf16;
  /** The header's names, when the header is on. */
  readonly header?: string[];
  /** How the input is compressed, read from its first bytes. */
  readonly codec?: Codec;
}

/** What one request reads of an input's start: the encoding, the sniffing sample and, almost always, the header. */
const HEAD_BYTES = SNIFF_BYTES;

export const readCsvInput = async (
  store: BlobStore,
  input: InputObject,
  op: AnyOp,
  params: Params,
  signal?: AbortSignal,
): Promise<CsvInput> => {
  const named = params.separator;
  const { bytes: head, codec } = await inputHead(store, input, HEAD_BYTES, signal);
  // A compressed head's decoded bytes are not all of the input, whatever their length; a zip
  // entry's `size` is its stored bytes, its decoded length the member's.
  const size = codec ? Number.POSITIVE_INFINITY : (input.member?.size ?? input.size);
  const encoding = utf16Of(head);
  let separator: string;
  let sniffed: string | undefined;
  const sample = encoding ? decodeUtf16Block({ bytes: wholeUnits(head, encoding), offset: 0, first: true }, encoding).bytes : head;
  // Whether the read reached the input's end goes by the bytes read, not by the decoded sample.
  const whole = head.length >= size || head.length < HEAD_BYTES;
  // An input of no record (empty, blank lines, a byte-order mark) has no separator to sniff.
  if (named === "auto" && !(whole && holdsNoRecord(sample))) {
    separator = sniffed = sniffSeparator(sample, input.name, head.length < HEAD_BYTES);
  } else if (named === "auto") separator = defaultSeparator(input.name);
  else if (named === "tab") separator = "\t";
  else if (typeof named === "string") separator = named;
  else separator = defaultSeparator(input.name);
  const resolved: Params = { ...params, separator };
  const options = op.parseParams(resolved) as FormatOptions;
  const csv = csvOptions(options);
  refuseBareCarriageReturns(head, encoding, csv.multiline === true);
  let header: string[] | undefined;
  if (options.header ?? true) {
    const quoted = csv.multiline === true ? csv.separator : undefined;
    const ends = encoding
      ? new Utf16RecordEnds(encoding, quoted === undefined ? undefined : { inside: false, separator: quoted })
      : quoted === undefined
        ? lineEnds()
        : new CsvRecordEnds(false, quoted);
    const text = firstRecordIn(head, size, encoding, quoted) ?? (await firstRecord(store, input, codec, ends, encoding, quoted, signal));
    // A read shorter than asked reached the end (of a compressed input's decoded bytes too).
    refuseBlankHeader(text, sample, whole);
    // No header (no columns) for an input that holds no record: an empty, blank or BOM-only file,
    // or a compressed one holding nothing. It has no column to check a name against.
    header = text === undefined || text === "" ? [] : parseCsvRecord(text, 0, csv);
  }
  return {
    ...(codec ? { codec } : {}),
    params: resolved,
    ...(sniffed !== undefined ? { sniffed } : {}),
    ...(encoding ? { encoding } : {}),
    ...(header ? { header } : {}),
  };
};

/** The whole UTF-16 characters of a read of an input's start, which may end inside one. */
const wholeUnits = (head: Buffer, encoding: Utf16): Buffer => {
  let end = head.length & ~1;
  const high = end >= 2 ? head[encoding === "utf-16le" ? end - 1 : end - 2]! : 0;
  if (high >= 0xd8 && high <= 0xdb) end -= 2;
  return head.subarray(0, end);
};

/**
 * Refuses CSV with a carriage return outside quotes that ends nothing: old Mac line ends (the
 * file would read as one record), or one inside an unquoted field, where readers disagree
 * (Python's csv ends the record there; RFC 4180 allows neither).
 */
const refuseBareCarriageReturns = (head: Buffer, encoding: Utf16 | undefined, multiline: boolean): void => {
  const decoded = encoding ? decodeUtf16Block({ bytes: wholeUnits(head, encoding), offset: 0, first: true }, encoding) : undefined;
  const found = bareCarriageReturn(decoded?.bytes ?? head, multiline);
  if (!found) return;
  const error = badRecord(bareCarriageReturnReason(found.first), (decoded?.offset ?? 0) + found.at);
  throw decoded ? decoded.fileOffset(error) : error;
};

/** Whether a (decoded) sample is only line ends and byte-order marks: no record at all. */
const holdsNoRecord = (sample: Buffer): boolean => /^[\r\n\uFEFF]*$/.test(sample.toString("utf8"));

/**
 * Refuses a blank first line with records after it: the blank line would be taken for the header
 * and the header for a record. (A file of blank lines alone holds no record, and reads as none.)
 */
const refuseBlankHeader = (text: string | undefined, sample: Buffer, whole: boolean): void => {
  if (text !== "") return;
  if (whole && holdsNoRecord(sample)) return;
  throw badRecord(
    "the header line is blank, and records follow it: remove the blank line(s) before the header, " + "or pass header=false",
    0,
  );
};

/**
 * The first record's text if `head` holds all of it (without its line ending or a byte-order
 * mark), or undefined when it runs past `head` or the input is empty. `separator` set: quoted
 * newlines stay inside the record.
 */
const firstRecordIn = (head: Buffer, size: number, encoding: Utf16 | undefined, separator: string | undefined): string | undefined => {
  const quotes = separator === undefined ? undefined : { inside: false, separator };
  const ends = encoding ? new Utf16RecordEnds(encoding, quotes) : quotes ? new CsvRecordEnds(false, quotes.separator) : lineEnds();
  ends.scan(head, 0, 0);
  if (ends.first < 0 && (head.length < size || head.length === 0)) return undefined;
  const bytes = ends.first < 0 ? head : head.subarray(0, ends.first + 1);
  const text = encoding ? decodeUtf16Block({ bytes, offset: 0, first: true }, encoding).bytes.toString("utf8") : bytes.toString("utf8");
  const record = text.replace(/^\uFEFF/, "").replace(/\r*\n$/, "");
  // A file that is only a byte-order mark holds no record.
  return ends.first < 0 && record === "" ? undefined : record;
};

/** The first record of an input, decoded, without its line ending (a header longer than the head read). */
const firstRecord = async (
  store: BlobStore,
  input: InputObject,
  codec: Codec | undefined,
  ends: RecordEnds,
  encoding: Utf16 | undefined,
  quoted: string | undefined,
  signal?: AbortSignal,
): Promise<string | undefined> => {
  // BGZF is read here whole, its blocks in a row: [0, 1) then owns exactly the first record. A zip
  // entry is read whole, so its first block may hold more records than the first: it is cut.
  const source = inputRangeBytes(store, input, { start: 0, end: 1 }, { codec: codec ?? null, whole: true, ...(signal ? { signal } : {}) });
  for await (const block of rangeRecordBlocks(source, {}, ends)) return firstRecordIn(block.bytes, block.bytes.length, encoding, quoted);
  return undefined;
};
