/**
 * How keyed ops order and place their keys. Keys are strings, ordered by their UTF-8 bytes
 * (as `LC_ALL=C sort` orders lines), and placed in a partition by a hash of their text.
 */

/** A UTF-16 code unit, remapped so that code-unit order is UTF-8 (code point) order: surrogates sort above U+FFFF's neighbours. */
const rank = (unit: number): number => (unit >= 0xe000 ? unit - 0x800 : unit >= 0xd800 ? unit + 0x2000 : unit);

/** Compares two keys by their UTF-8 bytes. */
export const compareKeys = (a: string, b: string): number => {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return rank(x) - rank(y);
  }
  return a.length - b.length;
};

/** The partition of a key: FNV-1a over its code units, so every task places a key alike. */
export const partitionOf = (key: string, partitions: number): number => {
  if (partitions === 1) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // Fold the high bits in: FNV's low bits alone spread short keys poorly.
  h ^= h >>> 15;
  return (h >>> 0) % partitions;
};
