/**
 * A manifest's lines read from any line on, a window of bytes at a time: a list of a million
 * keys is some 100 MB, and a listing that goes on in a later invocation (listing.ts) starts at
 * the line it stopped before, not at the file's start. Memory holds one window and the lines
 * cut from it, never the file.
 */
import { CloudmillError, ErrorCode } from "../errors.js";
import { linesOf, MAX_MANIFEST_LINE, refuse, type LinePosition, type ManifestLine } from "./inputManifests.js";

/** Bytes of a manifest read at once. */
export const MANIFEST_WINDOW = 8 * 2 ** 20;

/** Reads bytes [start, end) of the manifest (a ranged GET pinned to its ETag). */
export type ReadRange = (start: number, end: number) => Promise<Buffer>;

/**
 * The lines of a manifest of `size` bytes from `from` on, as linesOf numbers and places them
 * in the whole file. A line longer than a window is read on until it ends, up to MAX_MANIFEST_LINE.
 */
export async function* manifestLines(
  read: ReadRange,
  size: number,
  where: string,
  from: LinePosition,
  window: number = MANIFEST_WINDOW,
): AsyncGenerator<ManifestLine> {
  let at = from;
  let carry = Buffer.alloc(0);
  for (let next = from.at; next < size; ) {
    const end = Math.min(size, next + window);
    const bytes = await read(next, end);
    if (bytes.length !== end - next)
      throw new CloudmillError(ErrorCode.INTERNAL, `${where}: a read of bytes [${next}, ${end}) gave ${bytes.length}`, { input: where });
    next = end;
    const buf = carry.length > 0 ? Buffer.concat([carry, bytes]) : bytes;
    // Whole lines only, but for the file's last.
    const cut = next >= size ? buf.length : buf.lastIndexOf(0x0a) + 1;
    carry = Buffer.from(buf.subarray(cut));
    if (cut > 0)
      for (const l of linesOf(buf.subarray(0, cut), where, at)) {
        if (l.next - l.at > MAX_MANIFEST_LINE + 1) throw tooLong(where, l.line, l.at);
        yield l;
        at = { at: l.next, line: l.line };
      }
    // What is carried is the next line's start: it is refused as soon as it is too long, not held.
    if (carry.length > MAX_MANIFEST_LINE) throw tooLong(where, at.line + 1, at.at);
  }
}

/** A line too long to name an object (its newline aside). */
const tooLong = (where: string, line: number, offset: number): CloudmillError =>
  refuse(where, line, `a line longer than ${MAX_MANIFEST_LINE} bytes: a manifest line names one object`, { offset });
