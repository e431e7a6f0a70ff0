/**
 * A calibration times each stage by its own tasks: a keyed op's reduce rate is the reduce
 * task's, not what is left of the run's wall time once every task (the reduce task among
 * them) is taken off it.
 */
import { describe, expect, it } from "vitest";
import { defineOp } from "../../lib/core/ops/defineOp.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { calibrateOn } from "../../lib/local/calibrate.js";

/** Every line to one key; the key's reduce takes at least REDUCE_MS, the map next to nothing. */
const REDUCE_MS = 300;
const slowReduce = defineOp({
  name: "slow-reduce",
  format: "lines",
  pairs: (_line: string, emit: (key: string, value: number) => void) => emit("all", 1),
  reduce: (key: string, values: readonly number[]) => {
    const end = Date.now() + REDUCE_MS;
    while (Date.now() < end) {
      // busy, as a heavy reduce is
    }
    return { key, n: values.length };
  },
});

describe("calibrateOn", () => {
  it("times a keyed op's reduce stage by its reduce task", async () => {
    const sample = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `line ${i}`).join("\n") + "\n");
    const registry = new OpRegistry([...builtinOps, slowReduce]);
    const c = await calibrateOn(sample, "sample.txt", { op: "slow-reduce", params: {} }, registry);
    expect(c.bytes).toBe(sample.length);
    // The reduce task took at least REDUCE_MS: its rate is at most the sample's MB over that.
    expect(c.reduceRate).toBeDefined();
    expect(c.bytes / 1e6 / c.reduceRate!).toBeGreaterThanOrEqual(REDUCE_MS / 1000);
  });
});
