/** The first record of an input (a CSV header), read with one small ranged request. */
import type { BlobStore } from "../ports.js";
import { ownedRecordBlocks } from "./alignedBlocks.js";
import { lineEnds, type RecordEnds } from "./recordEnds.js";

/**
 * Text of the first record (without its line ending), or undefined for an empty input.
 * `ends` says where records end (default: at the first newline).
 */
export const readFirstLine = async (
  store: BlobStore,
  input: { key: string; size: number; etag?: string },
  signal?: AbortSignal,
  ends: RecordEnds = lineEnds(),
): Promise<string | undefined> => {
  // The range [0, 1) owns exactly the record that starts at byte 0.
  for await (const block of ownedRecordBlocks(store, { ...input, start: 0, end: 1 }, signal, {}, ends)) {
    let text = block.bytes.toString("utf8");
    if (text.endsWith("\n")) text = text.slice(0, -1);
    if (text.endsWith("\r")) text = text.slice(0, -1);
    return text;
  }
  return undefined;
};
