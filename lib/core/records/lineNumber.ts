/** The 1-based line number of a byte offset, by counting newlines before it (error path only). */
import type { BlobStore } from "../ports.js";

export const lineNumberAt = async (store: BlobStore, key: string, offset: number, etag?: string): Promise<number> => {
  let line = 1;
  if (offset <= 0) return line;
  for await (const chunk of await store.get(key, { start: 0, end: offset, ...(etag ? { etag } : {}) })) {
    const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let i = b.indexOf(0x0a);
    while (i >= 0) {
      line++;
      i = b.indexOf(0x0a, i + 1);
    }
  }
  return line;
};
