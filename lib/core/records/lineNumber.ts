/** The 1-based line number of a byte offset, by counting newlines before it (error path only). */
import type { BlobStore } from "../ports.js";
import { utf16Of } from "./utf16.js";

export const lineNumberAt = async (store: BlobStore, key: string, offset: number, etag?: string): Promise<number> => {
  let line = 1;
  if (offset <= 0) return line;
  /** UTF-16 text counts newline units (at even offsets), not 0x0A bytes. */
  let utf16: ReturnType<typeof utf16Of> | null = null;
  let at = 0;
  let carry = -1;
  for await (const chunk of await store.get(key, { start: 0, end: offset, ...(etag ? { etag } : {}) })) {
    const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (utf16 === null) utf16 = at === 0 && b.length >= 2 ? utf16Of(b) : undefined;
    if (utf16) {
      let i = at % 2 === 0 ? 0 : -1;
      for (; i + 1 < b.length; i += 2) {
        const b0 = i < 0 ? carry : b[i]!;
        const b1 = b[i + 1]!;
        if ((utf16 === "utf-16le" ? b0 | (b1 << 8) : (b0 << 8) | b1) === 0x0a) line++;
      }
      carry = i < b.length ? b[i]! : -1;
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
