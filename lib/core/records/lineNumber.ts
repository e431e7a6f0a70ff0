/** The 1-based line number of a byte offset, by counting newlines before it (error path only). */
import type { BlobStore } from "../ports.js";
import { Utf16Units, utf16Of } from "./utf16.js";

/** The line of `offset` in a stream of bytes (an input's, or a compressed input's decoded bytes). Stops reading at `offset`. */
export const lineNumberIn = async (bytes: AsyncIterable<Uint8Array>, offset: number): Promise<number> => {
  let line = 1;
  if (offset <= 0) return line;
  /** UTF-16 text counts newline units, not 0x0A bytes; known from the first bytes. */
  let units: Utf16Units | null | undefined;
  let at = 0;
  for await (const chunk of bytes) {
    const b = Buffer.from(chunk.buffer, chunk.byteOffset, Math.min(chunk.byteLength, offset - at));
    if (units === undefined) {
      const encoding = utf16Of(b);
      units = encoding ? new Utf16Units(encoding) : null;
    }
    if (units) {
      units.each(b, 0, at, (unit) => {
        if (unit === 0x0a) line++;
      });
    } else {
      let i = b.indexOf(0x0a);
      while (i >= 0) {
        line++;
        i = b.indexOf(0x0a, i + 1);
      }
    }
    at += b.length;
    if (at >= offset) break;
  }
  return line;
};

export const lineNumberAt = async (store: BlobStore, key: string, offset: number, etag?: string): Promise<number> =>
  offset <= 0 ? 1 : lineNumberIn(await store.get(key, { start: 0, end: offset, ...(etag ? { etag } : {}) }), offset);
