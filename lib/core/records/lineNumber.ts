/** The 1-based line number of a byte offset, by counting newlines before it (error path only). */
import type { BlobStore } from "../ports.js";
import { Utf16Units, utf16Of } from "./utf16.js";

export const lineNumberAt = async (store: BlobStore, key: string, offset: number, etag?: string): Promise<number> => {
  let line = 1;
  if (offset <= 0) return line;
  /** UTF-16 text counts newline units, not 0x0A bytes; known from the first bytes. */
  let units: Utf16Units | null | undefined;
  let at = 0;
  for await (const chunk of await store.get(key, { start: 0, end: offset, ...(etag ? { etag } : {}) })) {
    const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
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
  }
  return line;
};
