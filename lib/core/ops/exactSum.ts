/**
 * Exact floating-point sums (Shewchuk's algorithm, as in Python's math.fsum). A sum is kept
 * as a short list of non-overlapping doubles whose exact total is the true sum, so adding
 * numbers in any order and merging lists from any chunking give the same bits when rounded.
 */

/** Adds x to the expansion in place (Shewchuk's grow-expansion with zero elimination). */
export const addTo = (partials: number[], value: number): void => {
  let x = value;
  let i = 0;
  for (let j = 0; j < partials.length; j++) {
    let y = partials[j]!;
    if (Math.abs(x) < Math.abs(y)) {
      const t = x;
      x = y;
      y = t;
    }
    const hi = x + y;
    const lo = y - (hi - x);
    if (lo !== 0) partials[i++] = lo;
    x = hi;
  }
  partials.length = i;
  partials.push(x);
};

/** The exact sum rounded once to the nearest double (ties to even), as math.fsum does. */
export const roundExpansion = (partials: readonly number[]): number => {
  let n = partials.length;
  if (n === 0) return 0;
  let hi = partials[--n]!;
  let lo = 0;
  while (n > 0) {
    const x = hi;
    const y = partials[--n]!;
    hi = x + y;
    const yr = hi - x;
    lo = y - yr;
    if (lo !== 0) break;
  }
  if (n > 0 && ((lo < 0 && partials[n - 1]! < 0) || (lo > 0 && partials[n - 1]! > 0))) {
    const y = lo * 2;
    const x = hi + y;
    const yr = x - hi;
    if (y === yr) hi = x;
  }
  return hi;
};

const SPLITTER = 134217729; // 2^27 + 1, Dekker's split

/** a * b exactly, as hi + lo (Dekker's two-product; exact for |a|,|b| below ~1e150). */
export const twoProduct = (a: number, b: number): [number, number] => {
  const p = a * b;
  const ca = SPLITTER * a;
  const ah = ca - (ca - a);
  const al = a - ah;
  const cb = SPLITTER * b;
  const bh = cb - (cb - b);
  const bl = b - bh;
  return [p, ah * bh - p + ah * bl + al * bh + al * bl];
};

/** Adds x*x exactly to the expansion. */
export const addSquareTo = (partials: number[], x: number): void => {
  const p = x * x;
  const c = SPLITTER * x;
  const xh = c - (c - x);
  const xl = x - xh;
  addTo(partials, p);
  const err = xh * xh - p + 2 * xh * xl + xl * xl;
  if (err !== 0) addTo(partials, err);
};

/** The product of two expansions, as an expansion. */
export const multiply = (a: readonly number[], b: readonly number[]): number[] => {
  const out: number[] = [];
  for (const x of a) {
    for (const y of b) {
      const [p, e] = twoProduct(x, y);
      addTo(out, p);
      if (e !== 0) addTo(out, e);
    }
  }
  return out;
};
