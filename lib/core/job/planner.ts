/**
 * Planning needs no scan of the data: chunks are byte ranges cut from object sizes alone,
 * and a chunk's range is a pure function of (inputs, chunk size, index).
 */
import { createHash } from "node:crypto";
import { DEFAULTS } from "../constants.js";
import { CloudmillError, ErrorCode } from "../errors.js";
import type { Chunk, InputObject } from "./manifest.js";

export const chunksOf = (size: number, chunkSize: number): number => Math.ceil(size / chunkSize);

/** A gzip or zstd stream is read from its start to its end, by one task; BGZF splits at its blocks. */
const chunksOfInput = (input: InputObject, chunkSize: number): number =>
  input.codec === "gzip" || input.codec === "zstd" ? Math.min(1, input.size) : chunksOf(input.size, chunkSize);

export interface ChunkPlan {
  readonly total: number;
  chunkAt(index: number): Chunk;
  /** All chunks in order, generated lazily (a job may have a million). */
  chunks(): Generator<Chunk>;
}

export const planChunks = (inputs: readonly InputObject[], chunkSize: number): ChunkPlan => {
  // firstIndex[i] = index of input i's first chunk.
  const firstIndex: number[] = [];
  let total = 0;
  for (const input of inputs) {
    firstIndex.push(total);
    total += chunksOfInput(input, chunkSize);
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
    let hi = inputs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (firstIndex[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    // Skip empty inputs that share a first index with the next one.
    while (lo + 1 < inputs.length && firstIndex[lo + 1]! <= index) lo++;
    const input = inputs[lo]!;
    const start = (index - firstIndex[lo]!) * chunkSize;
    const whole = input.codec === "gzip" || input.codec === "zstd";
    return { index, inputIndex: lo, input, start, end: whole ? input.size : Math.min(input.size, start + chunkSize) };
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
export const digest = (...parts: readonly string[]): string => createHash("sha256").update(parts.join("\u0000")).digest("hex").slice(0, 24);

/** Job id of an upload: same bucket, key and ETag (or version) → same job. */
export const uploadJobId = (op: string, bucket: string, key: string, versionOrEtag: string): string =>
  `${op}-${digest(bucket, key, versionOrEtag)}`;
