/** A bounded number of calls at once, results in input order. */

/**
 * fn over each of `xs`, at most `limit` at once, started in order. After a call fails no more
 * are started; once those running end, the error of the earliest failed element is thrown, so
 * which error a caller sees does not depend on timing.
 */
export const mapInOrder = async <T, R>(xs: readonly T[], limit: number, fn: (x: T, index: number) => Promise<R>): Promise<R[]> => {
  const out: R[] = new Array<R>(xs.length);
  const failed: { readonly index: number; readonly error: unknown }[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < xs.length && failed.length === 0) {
      const index = next++;
      try {
        out[index] = await fn(xs[index]!, index);
      } catch (error) {
        failed.push({ index, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, xs.length)) }, worker));
  if (failed.length > 0) throw failed.reduce((a, b) => (b.index < a.index ? b : a)).error;
  return out;
};
