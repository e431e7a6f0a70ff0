import { CloudmillError, ErrorCode } from "./errors.js";
import type { GetOptions } from "./ports.js";

/**
 * Validates a get's byte range, shared by every BlobStore so they agree on it exactly.
 * `end` undefined means "to the object's end". Past-the-end ranges are not errors: stores clamp.
 */
export const resolveRange = (options: GetOptions): { start: number; end: number | undefined } => {
  const start = options.start ?? 0;
  const end = options.end;
  const bad = (why: string): CloudmillError =>
    new CloudmillError(ErrorCode.INTERNAL, `invalid byte range [${start}, ${end ?? "end"}): ${why}`);
  if (!Number.isSafeInteger(start) || start < 0) throw bad("start must be a non-negative integer");
  if (end !== undefined) {
    if (!Number.isSafeInteger(end) || end < 0) throw bad("end must be a non-negative integer");
    if (end < start) throw bad("end is before start");
  }
  return { start, end };
};
