/**
 * A mapper thread's heap limit is all of its heap, nursery included, as V8 itself reports it:
 * the worker's per-slot shares of its container then add up to what the container has.
 */
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { mapperHeap } from "../../lib/aws/containerMemory.js";
import { heapLimits } from "../../lib/sandbox/heapLimits.js";

/** V8's heap_size_limit, in MiB, of a thread started with `limits`. */
const heapSizeLimitMiB = (limits: ReturnType<typeof heapLimits>): Promise<number> =>
  new Promise((resolve, reject) => {
    const source = `const v8 = require("node:v8");
require("node:worker_threads").parentPort.postMessage(v8.getHeapStatistics().heap_size_limit / 2 ** 20);`;
    const thread = new Worker(source, { eval: true, resourceLimits: limits });
    thread.once("message", (m: number) => void thread.terminate().then(() => resolve(m)));
    thread.once("error", reject);
  });

describe("a mapper thread's heap limit", () => {
  it.each([128, 300, 1344, 3072])("of %i MiB is V8's whole heap limit, the young generation's reserve included", async (mib) => {
    const limit = await heapSizeLimitMiB(heapLimits(mib));
    expect(limit).toBeLessThanOrEqual(mib);
    expect(limit).toBeGreaterThan(mib * 0.97);
  });

  it("summed over a worker's slots, stays within its container's memory", async () => {
    const container = 3072 * 2 ** 20;
    const { memoryMiB } = mapperHeap(container, 2);
    const limit = await heapSizeLimitMiB(heapLimits(memoryMiB));
    expect(2 * limit).toBeLessThanOrEqual(container / 2 ** 20);
  });
});
