/**
 * Spans: runs of consecutive chunks whose partials are merged already. A map part is a span of
 * one chunk; a merged part (a merge task's output, mergeTree.ts) a span of many. Merging keeps
 * chunk order, so a CSV chunk's reading still follows the quote state of the chunks before it:
 * a span that starts past its input's first chunk is merged both ways, as if the byte before it
 * were outside quotes and as if inside, and whoever merges it next picks one, as with a part.
 */
import * as z from "zod";
import { TaskRun } from "../job/manifest.js";
import type { Merger } from "../ops/types.js";
import { type Part, Reading, readingOf, SniffedSeparator, type KeptError } from "./part.js";

export interface Span {
  /** The span's reading given the quote state before it, and the state after; an error is in the reading, not thrown. */
  readingFrom(insideBefore: boolean): { reading: Reading; insideAfter: boolean };
  /** Whether the reading depends on the state before the span (else one reading serves both). */
  readonly dependsOnStart: boolean;
  readonly sniffed: readonly SniffedSeparator[];
  /** Each map part's run, by chunk (status.json and report.json read them). */
  readonly runs: readonly (readonly [number, TaskRun])[];
  /** Each merge task's run beneath and including this span's, by (level, group), for report.json. */
  readonly merges: readonly MergeRun[];
}

/** A merge task's run: [level, group, run]. */
const MergeRun = z.tuple([z.number().int().positive(), z.number().int().nonnegative(), TaskRun]);
export type MergeRun = z.infer<typeof MergeRun>;

export const spanOfPart = (part: Part): Span => ({
  readingFrom: (insideBefore) => readingOf(part, insideBefore),
  dependsOnStart: part.quotes !== undefined && !part.quotes.first,
  sniffed: part.sniffed === undefined ? [] : [part.sniffed].flat(),
  runs: part.ran ? [[part.index, part.ran]] : [],
  merges: [],
});

const MergedReading = Reading.extend({ insideAfter: z.boolean() });
export type MergedReading = z.infer<typeof MergedReading>;

/** A merge task's output: the merged partial of parts `from`…`to - 1` of its level's children. */
export const MergedPart = z.object({
  v: z.literal(1),
  jobId: z.string(),
  generation: z.number().int().nonnegative(),
  level: z.number().int().positive(),
  group: z.number().int().nonnegative(),
  from: z.number().int().nonnegative(),
  to: z.number().int().positive(),
  /** The merge as if the byte before the span were outside quotes. */
  outside: MergedReading,
  /** As if inside; absent when the span's first part does not depend on it. */
  inside: MergedReading.optional(),
  sniffed: z.array(SniffedSeparator),
  runs: z.array(z.tuple([z.number().int().nonnegative(), TaskRun])),
  /** The runs of the merge tasks beneath it. */
  merges: z.array(MergeRun).optional(),
  /** Where, when and for how long the merge ran. */
  ran: TaskRun.optional(),
});
export type MergedPart = z.infer<typeof MergedPart>;

const strip = ({ insideAfter, ...reading }: MergedReading): { reading: Reading; insideAfter: boolean } => ({ reading, insideAfter });

export const spanOfMerged = (m: MergedPart): Span => ({
  readingFrom: (insideBefore) => strip(insideBefore && m.inside ? m.inside : m.outside),
  dependsOnStart: m.inside !== undefined,
  sniffed: m.sniffed,
  runs: m.runs,
  merges: m.ran ? [...(m.merges ?? []), [m.level, m.group, m.ran]] : (m.merges ?? []),
});

/**
 * Spans merged in order from one quote state before the first: the merge of their readings,
 * or the first error met (which ends the chain: whoever picks this reading raises it).
 */
export class ReadingChain {
  readonly #merger: Merger<unknown>;
  #inside: boolean;
  #skipped = 0;
  #error: KeptError | undefined;

  constructor(merger: Merger<unknown>, insideBefore: boolean) {
    this.#merger = merger;
    this.#inside = insideBefore;
  }

  add(span: Pick<Span, "readingFrom">): void {
    if (this.#error) return;
    const { reading, insideAfter } = span.readingFrom(this.#inside);
    if (reading.error) {
      this.#error = reading.error;
      return;
    }
    this.#merger.add(reading.partial);
    this.#skipped += reading.skipped;
    this.#inside = insideAfter;
  }

  reading(): MergedReading {
    return this.#error
      ? { partial: null, skipped: 0, error: this.#error, insideAfter: false }
      : { partial: this.#merger.value(), skipped: this.#skipped, insideAfter: this.#inside };
  }
}

/** A span's reading from one quote state before it, and the state after. */
export type SpanReading = ReturnType<Span["readingFrom"]>;

/**
 * What a merge on another thread needs of a span: its reading from outside quotes before it, and
 * from inside where that differs. Plain data, unlike a Span, so that it crosses threads.
 */
export interface SpanReadings {
  readonly outside: SpanReading;
  readonly inside?: SpanReading;
}

export const readingsOf = (span: Span): SpanReadings => ({
  outside: span.readingFrom(false),
  ...(span.dependsOnStart ? { inside: span.readingFrom(true) } : {}),
});

/** The readings as a span to merge (ReadingChain.add). */
export const spanOfReadings = (r: SpanReadings): Pick<Span, "readingFrom"> => ({
  readingFrom: (insideBefore) => (insideBefore && r.inside ? r.inside : r.outside),
});
