/** A scratch store that counts the bytes it holds as runs are put and removed, and the most it ever held. */
import type { BlobStore } from "../../lib/core/ports.js";

export interface CountingStore {
  readonly store: BlobStore;
  /** Bytes held now. */
  held(): number;
  /** The most bytes held at once. */
  peak(): number;
}

export const countingStore = (inner: BlobStore): CountingStore => {
  let held = 0;
  let peak = 0;
  const store: BlobStore = Object.assign(Object.create(inner) as BlobStore, {
    name: inner.name,
    async put(key: string, body: Parameters<BlobStore["put"]>[1], options?: Parameters<BlobStore["put"]>[2]) {
      await inner.put(key, body, options);
      const size = (await inner.head(key))!.size;
      held += size;
      peak = Math.max(peak, held);
    },
    async delete(key: string) {
      // Read first: `held -= await …` would read held before the wait, and deletes run at once.
      const size = (await inner.head(key))?.size ?? 0;
      held -= size;
      await inner.delete(key);
    },
  });
  return { store, held: () => held, peak: () => peak };
};
