/**
 * Capacity lanes in the emulated cloud (a stack with `spot: "per-job"`): no worker runs until a
 * job wakes its lane. A job that prefers `cheapest` wakes the spot lane's pool, which maps and
 * reduces it from its own queue, and its report prices spot; another job wakes the on-demand
 * pool. Answers are counted in the test.
 */
import { describe, expect, it } from "vitest";
import { prng } from "../../lib/dev/prng.js";
import { JobReport } from "../../lib/core/report/jobReport.js";
import { distinctCounts, useDevCloud } from "../helpers/devCloud.js";

const dev = useDevCloud({ chunkSize: 2048, workers: 0, maxWorkers: 2, spotWorkers: 0 });

const tokens = (seed: number): { text: string; expected: Map<string, number> } => {
  const next = prng(seed);
  const lines = Array.from({ length: 3000 }, () => `k${Math.floor(next() ** 2 * 400)}`);
  const expected = new Map<string, number>();
  for (const l of lines) expected.set(l, (expected.get(l) ?? 0) + 1);
  return { text: `${lines.join("\n")}\n`, expected };
};

const livePids = (pids: readonly number[]): number[] => pids.filter((p) => p > 0);

describe("a dev cloud with a spot lane", () => {
  it("runs a job that prefers cheapest on the spot lane's workers, priced as spot, and another job on demand", async () => {
    const t = dev();
    const run = async (name: string, seed: number, prefer?: "cheapest") => {
      const { text, expected } = tokens(seed);
      await t.put(`_inputs/${name}.txt`, text);
      const spec = { op: "distinct", inputs: [`s3://${t.input}/_inputs/${name}.txt`], partitions: 2, ...(prefer ? { prefer } : {}) };
      await t.put(`_jobs/${name}.json`, JSON.stringify(spec));
      const status = await t.waitForEnd(`_jobs/${name}/status.json`);
      expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
      const { counts } = await distinctCounts(t, `_jobs/${name}/result.json`);
      expect(counts).toEqual(expected);
      return JobReport.parse(await t.getJson(t.output, `_jobs/${name}/report.json`));
    };

    const cheap = await run("cheap", 61, "cheapest");
    // Only the spot lane was woken (one worker: cheapest), and it ran every task, reduce tasks too.
    const spot = livePids(t.cloud.spotWorkerPids());
    expect(spot.length).toBe(1);
    expect(livePids(t.cloud.workerPids())).toEqual([]);
    expect(new Set(cheap.tasks.map((task) => task.worker.split("/").at(-1)))).toEqual(new Set(spot.map(String)));
    expect(cheap.tasks.length).toBe(cheap.taskCount);
    expect(cheap.taskCount).toBe(Math.ceil(Buffer.byteLength(tokens(61).text) / 2048) + 2);
    expect(cheap.cost?.capacity).toBe("spot");

    const fast = await run("fast", 62);
    const onDemand = livePids(t.cloud.workerPids());
    expect(onDemand.length).toBe(2);
    expect(new Set(fast.tasks.map((task) => Number(task.worker.split("/").at(-1))))).not.toContain(spot[0]);
    expect(fast.cost?.capacity).toBe("on-demand");
  }, 120_000);
});
