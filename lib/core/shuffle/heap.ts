/** A binary min-heap over an array, in place: the k-way merges' priority queue. */

/** Moves heap[at] down until neither child comes before it. */
export const siftDown = <T>(heap: T[], at: number, before: (a: T, b: T) => boolean): void => {
  let i = at;
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let m = i;
    if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
    if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
    if (m === i) return;
    const t = heap[i]!;
    heap[i] = heap[m]!;
    heap[m] = t;
    i = m;
  }
};

/** Orders the array as a heap. */
export const heapify = <T>(heap: T[], before: (a: T, b: T) => boolean): void => {
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(heap, i, before);
};

/** Drops the heap's first element (its top) and restores the order. */
export const popTop = <T>(heap: T[], before: (a: T, b: T) => boolean): void => {
  heap[0] = heap[heap.length - 1]!;
  heap.pop();
  siftDown(heap, 0, before);
};
