/**
 * A calibration times each stage by its own tasks: a keyed op's reduce rate is the reduce
 * task's, not what is left of the run's wall time once every task (the reduce task among
 * them) is taken off it; a fresh thread's slow first chunk is its own figure, not the rate's.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineOp } from "../../lib/core/ops/defineOp.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { opsRegistry } from "../../lib/core/ops/opModules.js";
import { calibrate, calibrateOn } from "../../lib/local/calibrate.js";
import { requireBuild, ROOT } from "../helpers/devCloud.js";

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

  let dir = "";
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-calibrate-test-"));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it("samples one chunk of the job's size, whole lines, and measures the share a task keeps beside another", async () => {
    const file = path.join(dir, "lines.txt");
    const lines = Array.from({ length: 200_000 }, (_, i) => `word${i % 5000} and line ${i}`);
    await writeFile(file, `${lines.join("\n")}\n`);
    const c = await calibrate(file, { op: "wordcount", params: {}, chunkSize: 1024 * 1024 }, new OpRegistry(builtinOps));
    // 1 MiB, cut after its last whole line.
    const whole = Buffer.from(`${lines.join("\n")}\n`).subarray(0, 1024 * 1024);
    expect(c.bytes).toBe(whole.lastIndexOf(0x0a) + 1);
    // Two task threads at once, where the machine has two cores (this one's tests run on two).
    if (os.availableParallelism() >= 2) {
      expect(c.shared).toBeGreaterThan(0);
      expect(c.shared).toBeLessThanOrEqual(1);
    } else expect(c.shared).toBeUndefined();
    expect(c.cold).toBeGreaterThanOrEqual(0);
  });

  it("measures a fresh thread's first chunk apart: an op slow once per thread keeps its warm rate", async () => {
    requireBuild();
    // A lab's op whose 1,000th line on each thread (or process) takes COLD_MS, as code the JIT compiles once hot would;
    // a chunk of a few lines, as any first task's, costs nothing more.
    const COLD_MS = 400;
    const module = path.join(dir, "cold-ops.mjs");
    const defineOpUrl = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
    await writeFile(
      module,
      `import { defineOp } from ${JSON.stringify(defineOpUrl)};
let lines = 0;
export const coldFirst = defineOp({
  name: "cold-first",
  format: "lines",
  map: () => { if (++lines === 1000) { const end = Date.now() + ${COLD_MS}; while (Date.now() < end) {} } return 1; },
  combine: (a, b) => a + b,
});
`,
    );
    const sample = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `line ${i}`).join("\n") + "\n");
    const registry = await opsRegistry([module]);
    const c = await calibrateOn(sample, "sample.txt", { op: "cold-first", params: {} }, registry, { opsModules: [module] });
    expect(c.cold).toBeGreaterThanOrEqual((COLD_MS * 0.9) / 1000);
    expect(c.cold).toBeLessThan((COLD_MS * 3) / 1000);
    // The rate is the warm run's: 20,000 lines in far less than the cold line's time.
    expect(c.bytes / 1e6 / c.rate).toBeLessThan(COLD_MS / 1000 / 2);
  });

  it("leaves the shared share unmeasured for a lab's op the task threads cannot load", async () => {
    const sample = Buffer.from(Array.from({ length: 2_000 }, (_, i) => `line ${i}`).join("\n") + "\n");
    const registry = new OpRegistry([...builtinOps, slowReduce]);
    const c = await calibrateOn(sample, "sample.txt", { op: "slow-reduce", params: {} }, registry);
    expect(c.shared).toBeUndefined();
    expect(c.cold).toBeUndefined();
  });
});
