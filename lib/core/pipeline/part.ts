/** A part: one chunk's partial result, as a map task writes it and the reducer reads it. */
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import type { Format } from "../job/spec.js";
import { TaskRun } from "../job/manifest.js";
import { csvOptions, type FormatOptions } from "../ops/formatReaders.js";

/** An error kept in a part, to be raised only if the reading it ended is the one chosen. */
const KeptError = z.object({
  code: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]),
  message: z.string(),
  context: z
    .object({
      jobId: z.string(),
      input: z.string(),
      line: z.number(),
      offset: z.number(),
      decoded: z.boolean(),
      block: z.number(),
      gzipTail: z.boolean(),
      range: z.tuple([z.number(), z.number()]),
      chunk: z.number(),
      field: z.string(),
    })
    .partial(),
});
export type KeptError = z.infer<typeof KeptError>;

export const keptErrorOf = (err: CloudmillError): KeptError => err.toJSON() as KeptError;
export const raiseKept = (kept: KeptError): CloudmillError => new CloudmillError(kept.code, kept.message, kept.context);

/** One reading of a chunk: its partial and skipped records, or the error that ended it. */
export const Reading = z.object({ partial: z.unknown(), skipped: z.number().int().nonnegative(), error: KeptError.optional() });
export type Reading = z.infer<typeof Reading>;

/**
 * A CSV chunk read with quoted newlines. Where its records start depends on whether the byte
 * before it is inside quotes, which only the chunks before it can tell; so a chunk past its
 * input's start is read both ways, and the merge, going in chunk order, picks the reading
 * that the quote parity of the chunks before it calls for.
 */
export const QuoteSpeculation = z.object({
  /** The chunk starts its input: it was read one way (outside quotes), and parity restarts. */
  first: z.boolean(),
  /** The quotes from the byte before the chunk up to the byte before its end are odd in number. */
  odd: z.boolean(),
  /** The error that ended the reading as if the chunk began outside quotes (the part's partial is then null). */
  error: KeptError.optional(),
  /** The reading as if the chunk began inside quotes; absent for a first chunk. */
  inside: Reading.optional(),
});
export type QuoteSpeculation = z.infer<typeof QuoteSpeculation>;

/**
 * Whether a job's parts carry more than a partial (QuoteSpeculation, a sniffed separator): they
 * must then be written and merged in chunk order.
 */
export const partsCarryReadings = (format: Format, params: unknown): boolean =>
  format === "csv" && (csvOptions(params as FormatOptions).multiline === true || (params as FormatOptions).separator === "auto");

export const SniffedSeparator = z.object({ input: z.string(), separator: z.string() });
export type SniffedSeparator = z.infer<typeof SniffedSeparator>;

export const Part = z.object({
  v: z.literal(1),
  jobId: z.string(),
  index: z.number().int().nonnegative(),
  /** The partial (for a speculative CSV chunk, of the reading as if outside quotes). */
  partial: z.unknown(),
  /** Bad records skipped (onBadRecord: skip). */
  skipped: z.number().int().nonnegative(),
  quotes: QuoteSpeculation.optional(),
  /** The separators `separator=auto` chose: the input's, or (a packed chunk's) each object's. */
  sniffed: z.union([SniffedSeparator, z.array(SniffedSeparator)]).optional(),
  /** Where, when and for how long the task that wrote the part ran (status.json and report.json read it). */
  ran: TaskRun.optional(),
});

export type Part = z.infer<typeof Part>;

/**
 * A part's reading given whether its first byte's predecessor is inside quotes (false for a
 * part without speculation), and the state after its last byte's predecessor. The reading's
 * error is returned in it, not thrown (a merge of parts keeps it until a reading is chosen).
 */
export const readingOf = (part: Part, insideBefore: boolean): { reading: Reading; insideAfter: boolean } => {
  const q = part.quotes;
  if (!q) return { reading: { partial: part.partial, skipped: part.skipped }, insideAfter: false };
  const inside = q.first ? false : insideBefore;
  const reading: Reading = inside
    ? (q.inside ?? { partial: null, skipped: 0, error: keptErrorOf(new CloudmillError(ErrorCode.INTERNAL, "no inside reading")) })
    : { partial: part.partial, skipped: part.skipped, ...(q.error ? { error: q.error } : {}) };
  return { reading, insideAfter: inside !== q.odd };
};

/** readingOf, throwing the picked reading's error. */
export const pickReading = (part: Part, insideBefore: boolean): { reading: Reading; insideAfter: boolean } => {
  const picked = readingOf(part, insideBefore);
  if (picked.reading.error) throw raiseKept(picked.reading.error);
  return picked;
};
