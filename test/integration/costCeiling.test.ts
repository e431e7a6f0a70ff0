/**
 * A job whose estimate was too low stops at its price ceiling: the splitter lets it in (its
 * estimate is under `maxCostUsd`), then the reducer, pricing the parts as they land, fails it
 * with COST_LIMIT once what it has done costs more. Workers skip its remaining tasks; the parts
 * are kept, and a retry under a higher ceiling finishes it exactly.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULTS } from "../../lib/core/constants.js";
import { estimateJob } from "../../lib/core/report/estimate.js";
import { cli } from "../helpers/cli.js";
import { requireBuild, ROOT, startTestCloud, type TestCloud } from "../helpers/devCloud.js";

let dir: string;
let cloud: TestCloud;

/** 30 chunks of ten lines; each chunk's first line costs a second of CPU. */
const CHUNKS = 30;
const LINES = Array.from({ length: CHUNKS * 10 }, (_, i) => (i % 10 === 0 ? "tick" : `line ${String(i).padStart(5, "0")}`));
const TEXT = `${LINES.join("\n")}\n`;
const CHUNK = TEXT.length / CHUNKS;

beforeAll(async () => {
  requireBuild();
  expect(Number.isInteger(CHUNK)).toBe(true);
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-ceiling-"));
  const module = path.join(dir, "ticking-ops.mjs");
  const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
  await writeFile(
    module,
    `import { defineOp } from ${JSON.stringify(defineOp)};
export const ticking = defineOp({
  name: "ticking",
  format: "lines",
  map: (line) => { if (line === "tick") { const end = Date.now() + 1000; while (Date.now() < end) {} } return 1; },
  combine: (a, b) => a + b,
});
`,
  );
  cloud = await startTestCloud({ opsModules: [module], chunkSize: CHUNK });
}, 90_000);

afterAll(async () => {
  await cloud?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("a price ceiling while the job runs", () => {
  it("stops a job whose measured cost passes maxCostUsd with COST_LIMIT, keeps its parts, and a retry under more finishes it", async () => {
    // What the splitter estimates (the lab op's default rate, a tenth of a second a chunk): the
    // ceiling is 10 % over it, so the job is let in; each chunk's second of CPU then costs more.
    const estimate = estimateJob({
      op: "ticking",
      sizes: [TEXT.length],
      chunkSize: CHUNK,
      instanceType: DEFAULTS.instanceType,
      workers: 1,
      vcpusPerWorker: 1,
      maxWorkers: 1,
      inline: false,
    });
    expect(estimate.chunks).toBe(CHUNKS);
    const ceiling = Number((estimate.cost.total * 1.1).toFixed(6));
    await cloud.put("_inputs/ticks.txt", TEXT);
    const spec = { op: "ticking", inputs: [`s3://${cloud.input}/_inputs/ticks.txt`], maxCostUsd: ceiling };
    await cloud.put("_jobs/ticks-1.json", JSON.stringify(spec));
    const failed = await cloud.waitForEnd("_jobs/ticks-1/status.json", 60_000);
    expect(failed.state).toBe("failed");
    expect(failed.error?.code).toBe("COST_LIMIT");
    const m = /^measured \$(0\.\d{6,}) after (\d+) of 30 chunks is over maxCostUsd \$([\d.]+) /.exec(failed.error!.message);
    expect(m, failed.error!.message).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(ceiling);
    expect(Number(m![3])).toBe(ceiling);
    expect(Number(m![2])).toBeLessThan(CHUNKS);
    await cloud.waitForIdle(60_000);
    // Workers skipped the rest: parts for some chunks only, all kept.
    const kept = (await cloud.keys(cloud.output, "_work/ticks-1/parts/")).length;
    expect(kept).toBeGreaterThanOrEqual(Number(m![2]));
    expect(kept).toBeLessThan(CHUNKS);

    const retried = await cli(["retry", "ticks-1", "--max-cost-usd", "1", "--endpoint", cloud.cloud.endpoint]);
    expect(retried, retried.stderr).toMatchObject({ code: 0 });
    expect(retried.stdout).toContain(`resumed: ${CHUNKS - kept} of ${CHUNKS} tasks to run again`);
    const done = await cloud.waitForEnd("_jobs/ticks-1/status.json", 60_000);
    expect(done).toMatchObject({ state: "succeeded", retries: 1 });
    expect(await cloud.getJson(cloud.output, "_jobs/ticks-1/result.json")).toBe(LINES.length);
  }, 120_000);
});
