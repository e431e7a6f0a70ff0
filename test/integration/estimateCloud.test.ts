/**
 * `cloudmill estimate` over inputs in the lab's buckets (here `cloudmill dev`): sizes listed, a
 * sample of the first input calibrated, and that calibration cached as for local files: the
 * same sample again is not measured again, unless --fresh.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CACHE_DIR_ENV } from "../../lib/local/calibrationCache.js";
import { cli } from "../helpers/cli.js";
import { startTestCloud, textOf, type TestCloud } from "../helpers/devCloud.js";

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
});
