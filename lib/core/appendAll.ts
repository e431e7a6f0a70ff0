/**
 * Appends every element of `from` to `into`, one at a time. `into.push(...from)` passes each
 * element as an argument, and past about a hundred thousand of them the call overflows the
 * stack: a prefix's listing, an inventory, a chunk's items may be that long.
 */
export const appendAll = <T>(into: T[], from: Iterable<T>): T[] => {
  for (const x of from) into.push(x);
  return into;
};
