/** Heap limits of the threads a lab's code runs on, and the error of one that passes its limit. */
import { CloudmillError, ErrorCode } from "../core/errors.js";

/**
 * V8's limits for a thread of `memoryMiB` of heap in all: the nursery a small share, old space
 * the rest (the worker's shares of its container add up to what it has, nurseries included).
 */
export const heapLimits = (memoryMiB: number) => {
  const young = Math.min(64, Math.max(4, Math.floor(memoryMiB / 8)));
  // V8 reserves half as much again as the young generation's limit (its heap_size_limit says so).
  return { maxOldGenerationSizeMb: Math.max(1, memoryMiB - Math.ceil((young * 3) / 2)), maxYoungGenerationSizeMb: young };
};

/** A chunk's thread that V8 ended for passing its heap limit; `of` says whose limit it was. */
export const outOfMemory = (memoryMiB: number | undefined, of: string): CloudmillError =>
  new CloudmillError(
    ErrorCode.OUT_OF_MEMORY,
    memoryMiB === undefined ? "the op ran out of heap memory" : `the op used more than ${memoryMiB} MiB of heap (${of})`,
  );
