/**
 * `cloudmill estimate` over inputs in the lab's buckets (here `cloudmill dev`): sizes listed, a
 * sample of the first input calibrated, and that calibration cached as for local files: the
 * same sample again is not measured again, unless --fresh.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CACHE_DIR_ENV } from "../../lib/local/calibrationCache.js";
import { Estimate } from "../../lib/core/report/estimate.js";
import { cli } from "../helpers/cli.js";
import { Cloudmill } from "../../lib/sdk/index.js";
import { startTestCloud, textOf, type TestCloud } from "../helpers/devCloud.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
let cloud: TestCloud;
let dir: string;

beforeAll(async () => {
  cloud = await startTestCloud({ workers: 0 });
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-estimate-cloud-"));
}, 90_000);
afterAll(async () => {
  await cloud?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("cloudmill estimate over S3 inputs", () => {
  it("calibrates on a sample of the first object once, then reuses it until --fresh", async () => {
    const bytes = textOf(400_000, 3);
    await cloud.put("data/sample.txt", bytes);
    await cloud.put("data/more.txt", textOf(100_000, 4));
    const env = { [CACHE_DIR_ENV]: path.join(dir, "cache") };
    const args = ["estimate", `s3://${cloud.input}/data/`, "--op", "wordcount", "--endpoint", cloud.cloud.endpoint];
    const rateOf = (out: string): string => /\nrate: (\d+\.\d) MB\/s per vCPU \(([^)]*)\)/.exec(out)!.slice(1).join(" | ");

    const first = await cli(args, env);
    expect(first.code, first.stderr).toBe(0);
    // Two objects of 0.5 MB together, in chunks of 16 MiB: packed into one task, as the splitter plans them.
    expect(first.stdout).toMatch(/^estimate: wordcount over 0\.5 MB in 1 chunk\(s\)\n/);
    // The first input in listing order: more.txt.
    expect(rateOf(first.stdout)).toMatch(new RegExp(`^\\d+\\.\\d \\| calibrated on 0\\.1 MB of s3://${cloud.input}/data/more\\.txt$`));
    const again = await cli(args, env);
    expect(again.code, again.stderr).toBe(0);
    expect(rateOf(again.stdout)).toMatch(/, cached \d{4}-\d\d-\d\dT/);
    expect(rateOf(again.stdout).split(" | ")[0]).toBe(rateOf(first.stdout).split(" | ")[0]);
    expect(Object.keys(JSON.parse(await readFile(path.join(dir, "cache", "calibrations.json"), "utf8")).entries)).toHaveLength(1);
    const fresh = await cli([...args, "--fresh"], env);
    expect(rateOf(fresh.stdout)).not.toContain("cached");
  });

  it("prices a lab op the SDK knows by name only (deployed, not given) as lines on the fleet, at the lab ops' rate", async () => {
    await cloud.put("data/named.txt", textOf(300_000, 5));
    const mill = new Cloudmill({ endpoint: cloud.cloud.endpoint });
    try {
      const estimate = await mill.estimate({ op: "their-own-op", inputs: [`s3://${cloud.input}/data/named.txt`], calibrate: false });
      expect(estimate).toMatchObject({ op: "their-own-op", chunks: 1, runsOn: "fleet" });
    } finally {
      mill.close();
    }
  });

  it("says what the prefix's listing left out (hidden names), and prices only what the job reads", async () => {
    await cloud.put("hidden/a.txt", "one\ntwo\n");
    await cloud.put("hidden/_SUCCESS", "");
    await cloud.put("hidden/.DS_Store", "x".repeat(1000));
    const r = await cli([
      "estimate",
      `s3://${cloud.input}/hidden/`,
      "--op",
      "count",
      "--no-calibrate",
      "--json",
      "--endpoint",
      cloud.cloud.endpoint,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const e = Estimate.parse(JSON.parse(r.stdout));
    expect(e.bytes).toBe(8);
    expect(e.hidden).toEqual({ count: 2, first: [`s3://${cloud.input}/hidden/.DS_Store`, `s3://${cloud.input}/hidden/_SUCCESS`] });
  });

  it("caches where the command's environment says, and nowhere when it names no place", async () => {
    await cloud.put("env/sample.txt", textOf(50_000, 6));
    const args = ["estimate", `s3://${cloud.input}/env/`, "--op", "wordcount", "--json", "--endpoint", cloud.cloud.endpoint];
    // This process's environment names a cache; the command's names none: nothing is written there.
    const processCache = path.join(dir, "process-cache");
    const before = process.env[CACHE_DIR_ENV];
    process.env[CACHE_DIR_ENV] = processCache;
    try {
      const r = await cli(args, {});
      expect(r.code, r.stderr).toBe(0);
      expect(existsSync(processCache)).toBe(false);
      const commandCache = path.join(dir, "command-cache");
      expect((await cli(args, { [CACHE_DIR_ENV]: commandCache })).code).toBe(0);
      expect(existsSync(path.join(commandCache, "calibrations.json"))).toBe(true);
      expect(existsSync(processCache)).toBe(false);
    } finally {
      if (before === undefined) delete process.env[CACHE_DIR_ENV];
      else process.env[CACHE_DIR_ENV] = before;
    }
  });

  it("plans a lab's keyed op (--ops) as keyed: on the fleet, with its shuffle's requests", async () => {
    const ops = path.join(dir, "keyed-ops.mjs");
    const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
    await writeFile(
      ops,
      `import { defineOp } from ${JSON.stringify(defineOp)};
export const perLine = defineOp({ name: "per-line", format: "lines", pairs: (l, emit) => emit(l, 1), reduce: (k, vs) => ({ k, n: vs.length }) });
`,
    );
    await cloud.put("keyed/in.txt", textOf(100_000, 5));
    const r = await cli(
      ["estimate", `s3://${cloud.input}/keyed/in.txt`, "--ops", ops, "--op", "per-line", "--json", "--endpoint", cloud.cloud.endpoint],
      { [CACHE_DIR_ENV]: path.join(dir, "cache") },
    );
    expect(r.code, r.stderr).toBe(0);
    const e = Estimate.parse(JSON.parse(r.stdout));
    // A keyed op's reduce tasks need the fleet. One chunk and one partition: the map task's 2 GETs (its chunk, the part's
    // read) and PUT of its part; its shuffle object's PUT; the reduce task's plan PUT and GET, its segment's GET, its part's
    // read, and its output part's and part's PUTs: 5 GETs × $0.0004 + 5 PUTs × $0.005, per 1,000 = 0.000027.
    expect(e).toMatchObject({ chunks: 1, runsOn: "fleet", cost: { lambda: 0, s3Requests: 0.000027 } });
  });
});
