/**
 * A number flag out of its range says the range, in one line naming the flag: a schema-level
 * zod error would replace the range's message with "expected a whole number" alone.
 */
import { describe, expect, it } from "vitest";
import { cli } from "../helpers/cli.js";
import { MAX_PARTITIONS } from "../../lib/core/job/spec.js";

describe("number flags", () => {
  it.each([
    ["estimate x --op count --workers 0", "--workers: expected a whole number from 1 to 1000"],
    ["estimate x --op count --max-workers 1001", "--max-workers: expected a whole number from 1 to 1000"],
    ["estimate x --op count --partitions 1e9", `--partitions: expected a whole number from 1 to ${MAX_PARTITIONS}`],
    ["retry j --max-cost-usd 0", "--max-cost-usd: expected dollars > 0 and ≤ 1000000"],
    ["retry j --task-timeout 1.5", "--task-timeout: expected whole seconds from 1 to 86400"],
    ["retry j --task-memory 32", "--task-memory: expected whole MiB from 64 to 65536"],
    ["run x --op count --workers 5000", "--workers: expected a whole number from 0 to 1024"],
    ["run x --op count --partitions 0", "--partitions: expected a whole number ≥ 1"],
    ["submit x --op count --max-attempts 50", "--max-attempts: expected a whole number from 1 to 20"],
    ["submit x --op count --timeout -1", "--timeout: expected seconds > 0"],
    ["dev --workers 65", "--workers: expected a whole number from 0 to 64"],
    ["dev --port 70000", "--port: expected a port number from 0 to 65535"],
    ["jobs --limit 0", "--limit: expected a whole number from 1 to 1000"],
    ["fleet --scale 0", "--scale: expected a whole number of workers ≥ 1"],
  ])("%s", async (args, message) => {
    const r = await cli(args.split(" "));
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`cloudmill: ${message}\n`);
  });
});
