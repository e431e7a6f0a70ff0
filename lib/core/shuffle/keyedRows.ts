/**
 * A keyed reduce's output: each key's combined value as its op's row, one JSON line per key in
 * key order, handed on a MiB or so at a time so that memory holds a piece of the partition's
 * output, not all of it. The same wherever the merge runs: on the worker's main thread (a
 * built-in op's) or on a mapper thread (a lab's).
 */
import type { RunMerge } from "./runMerge.js";

/** What a reduce's merge wrote: rows, and bytes it spilled to scratch and read back. */
export interface RowsWritten {
  readonly records: number;
  readonly spilledBytes: number;
}

/** Characters of rows gathered before they are handed on. */
const PIECE_CHARS = 1 << 20;

/** Runs `merge` to its end, handing `piece` its rows (`row` of each key and value) in order. */
export const mergeRows = async (
  merge: RunMerge,
  row: (key: string, value: unknown) => unknown,
  piece: (bytes: Buffer) => Promise<void>,
): Promise<RowsWritten> => {
  let records = 0;
  let text = "";
  const { spilledBytes } = await merge.finish(async (key, value) => {
    text += `${JSON.stringify(row(key, value))}\n`;
    records++;
    if (text.length >= PIECE_CHARS) {
      const full = text;
      text = "";
      await piece(Buffer.from(full, "utf8"));
    }
  });
  if (text.length > 0) await piece(Buffer.from(text, "utf8"));
  return { records, spilledBytes };
};
