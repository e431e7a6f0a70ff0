/**
 * Planning needs no scan of the data: chunks are byte ranges cut from object sizes alone,
 * and a chunk's range is a pure function of (inputs, chunk size, index). Small objects are
 * packed: consecutive inputs that fit together in a chunk's bytes go to one task, up to a
 * number of objects and a message size, so a prefix of a million small files is thousands of
 * tasks, not a million.
 */
import { createHash } from "node:crypto";
import { DEFAULTS } from "../constants.js";
import { CloudmillError, ErrorCode } from "../errors.js";
import type { Chunk, InputObject } from "./manifest.js";
import { OP_NAME_PATTERN, type Format } from "./spec.js";

export const chunksOf = (size: number, chunkSize: number): number => Math.ceil(size / chunkSize);

/** A gzip or zstd stream, or a zip entry, is read from its start to its end by one task; BGZF splits at its blocks. */
const isStream = (input: InputObject): boolean => input.codec === "gzip" || input.codec === "zstd" || input.member !== undefined;

export interface PlanOptions {
  /**
   * Each input is one record, read whole (the blob format): never cut into ranges, and an
   * empty one is read too (it is a record, of no bytes).
   */
  readonly whole?: boolean;
}

/** How a job's inputs are planned: the blob format reads each whole. */
export const planOptionsOf = (format: Format): PlanOptions => ({ whole: format === "blob" });

const chunksOfInput = (input: InputObject, chunkSize: number, whole: boolean): number =>
  whole ? 1 : isStream(input) ? Math.min(1, input.size) : chunksOf(input.size, chunkSize);

/** How many objects one task reads at most, and how many bytes of its message they may take (SQS takes 1 MiB). */
export const PACK_LIMITS = { objects: 256, messageBytes: 96 * 1024 } as const;

export interface ChunkPlan {
  readonly total: number;
  chunkAt(index: number): Chunk;
  /** All chunks in order, generated lazily (a job may have a million). */
  chunks(): Generator<Chunk>;
}

/**
 * A run of chunks: one input cut into `chunks` ranges, or the `count` whole inputs from
 * `first` packed into one chunk.
 */
interface Segment {
  readonly firstChunk: number;
  readonly first: number;
  readonly count: number;
  readonly chunks: number;
}

/** UTF-8 bytes an input adds to a task message (SQS counts bytes): its JSON, with room for its index. */
const messageBytes = (input: InputObject): number => Buffer.byteLength(JSON.stringify(input)) + 32;

export const planChunks = (inputs: readonly InputObject[], chunkSize: number, options: PlanOptions = {}): ChunkPlan => {
  const whole = options.whole === true;
  /** Whether a packed chunk reads this input: an empty one holds no record, unless each input is one. */
  const read = (input: InputObject): boolean => whole || input.size > 0;
  const segments: Segment[] = [];
  let total = 0;
  for (let i = 0; i < inputs.length; ) {
    const input = inputs[i]!;
    const n = chunksOfInput(input, chunkSize, whole);
    if (n !== 1 || input.size > chunkSize) {
      if (n > 0) segments.push({ firstChunk: total, first: i, count: 1, chunks: n });
      total += n;
      i++;
      continue;
    }
    // Whole small inputs, packed while they fit (empty ones are read by nobody: they hold no record).
    let bytes = input.size;
    let message = messageBytes(input);
    let last = i;
    let objects = 1;
    let j = i + 1;
    for (; j < inputs.length && objects < PACK_LIMITS.objects; j++) {
      const next = inputs[j]!;
      if (!read(next)) continue;
      if (chunksOfInput(next, chunkSize, whole) !== 1 || next.size > chunkSize || bytes + next.size > chunkSize) break;
      if (message + messageBytes(next) > PACK_LIMITS.messageBytes) break;
      bytes += next.size;
      message += messageBytes(next);
      last = j;
      objects++;
    }
    segments.push({ firstChunk: total, first: i, count: last - i + 1, chunks: 1 });
    total += 1;
    i = last + 1;
  }
  if (total > DEFAULTS.maxChunks) {
    throw new CloudmillError(
      ErrorCode.INVALID_SPEC,
      `${total} chunks at chunk size ${chunkSize} is more than the ${DEFAULTS.maxChunks} a job may have: use a larger chunk size`,
      { field: "chunkSize" },
    );
  }
  const chunkAt = (index: number): Chunk => {
    if (!Number.isInteger(index) || index < 0 || index >= total) {
      throw new CloudmillError(ErrorCode.INTERNAL, `chunk ${index} out of range (0..${total - 1})`);
    }
    let lo = 0;
    let hi = segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (segments[mid]!.firstChunk <= index) lo = mid;
      else hi = mid - 1;
    }
    const seg = segments[lo]!;
    const input = inputs[seg.first]!;
    if (seg.count > 1) {
      const more = inputs
        .slice(seg.first + 1, seg.first + seg.count)
        .flatMap((m, k) => (read(m) ? [{ inputIndex: seg.first + 1 + k, input: m }] : []));
      return { index, inputIndex: seg.first, input, start: 0, end: input.size, more };
    }
    const start = (index - seg.firstChunk) * chunkSize;
    const end = whole || isStream(input) ? input.size : Math.min(input.size, start + chunkSize);
    return { index, inputIndex: seg.first, input, start, end };
  };
  return {
    total,
    chunkAt,
    *chunks() {
      for (let i = 0; i < total; i++) yield chunkAt(i);
    },
  };
};

/** A short, stable digest of the parts (a job id is a pure function of its trigger). */
export const digest = (...parts: readonly string[]): string => digestOf(parts);

/** Hex digits of a digest in ids and keys. */
const DIGEST_DIGITS = 24;

/** The same over a list of any length (spread into arguments, a long one would overflow the stack). */
export const digestOf = (parts: readonly string[]): string =>
  createHash("sha256").update(parts.join("\u0000")).digest("hex").slice(0, DIGEST_DIGITS);

const UPLOAD_JOB_ID = new RegExp(`^${OP_NAME_PATTERN}-[0-9a-f]{${DIGEST_DIGITS}}$`);

/**
 * Whether an id has the form upload ids take (`<op>-<24 hex digits>`): a job spec may not take
 * one, or it could claim an upload's id first.
 */
export const isUploadJobIdForm = (id: string): boolean => UPLOAD_JOB_ID.test(id);

/** Job id of an upload: same bucket, key and write (its version, or ETag and event sequencer) → same job. */
export const uploadJobId = (op: string, bucket: string, key: string, versionOrEtag: string): string =>
  `${op}-${digest(bucket, key, versionOrEtag)}`;
