/** Heap limits of the threads a lab's code runs on, and the error of one that passes its limit. */
import { CloudmillError, ErrorCode } from "../core/errors.js";

/** V8's limits for a thread of `memoryMiB` of heap: old space takes it, the nursery a small share. */
export const heapLimits = (memoryMiB: number) => ({
  maxOldGenerationSizeMb: memoryMiB,
  maxYoungGenerationSizeMb: Math.min(64, Math.max(4, Math.floor(memoryMiB / 8))),
});

/** A chunk's thread that V8 ended for passing its heap limit; `of` says whose limit it was. */
export const outOfMemory = (memoryMiB: number | undefined, of: string): CloudmillError =>
  new CloudmillError(
    ErrorCode.OUT_OF_MEMORY,
    memoryMiB === undefined ? "the op ran out of heap memory" : `the op used more than ${memoryMiB} MiB of heap (${of})`,
  );
