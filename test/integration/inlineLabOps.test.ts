/**
 * A lab's op mapped inline by the splitter is held to the fleet's rules. Its map runs on a
 * thread, so one that never yields is ended by the splitter's time budget and its chunk goes to
 * the fleet (on the splitter's own thread it would stop the function, here the whole process).
 * An attempt that failed inline counts toward the job's maxAttempts, so a chunk that always fails
 * is tried exactly maxAttempts times in all.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULTS } from "../../lib/core/constants.js";
import { partKey } from "../../lib/core/keys.js";
import { Part } from "../../lib/core/pipeline/part.js";
import { chunksOf, requireBuild, ROOT, useDevCloud, waitFor } from "../helpers/devCloud.js";

requireBuild();
const CHUNK = 1024;
const MAX_ATTEMPTS = 2;

let dir: string;
let module: string;
let spinFlag: string;
let boomCalls: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "cloudmill-inline-lab-"));
  module = path.join(dir, "lab-ops.mjs");
  spinFlag = path.join(dir, "spin-once");
  boomCalls = path.join(dir, "boom-calls");
  const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
  writeFileSync(
    module,
    `import { defineOp } from ${JSON.stringify(defineOp)};
// node:fs without an import: vitest rewrites imported names inside the functions, and the op's
// digest in this process (the dev cloud's) would then differ from the worker processes'.
const fs = () => process.getBuiltinModule("node:fs");
// Spins for good on a line that says so, the first time only (while its flag file exists).
export const spinOnce = defineOp({
  name: "spin-once",
  format: "lines",
  inline: true,
  map: (line) => {
    if (line === "spin" && fs().existsSync(${JSON.stringify(spinFlag)})) { fs().unlinkSync(${JSON.stringify(spinFlag)}); for (;;) {} }
    return 1;
  },
  combine: (a, b) => a + b,
});
// Fails on a line that says so, every time, noting each call.
export const alwaysBoom = defineOp({
  name: "always-boom",
  format: "lines",
  inline: true,
  map: (line) => {
    if (line === "boom") { fs().appendFileSync(${JSON.stringify(boomCalls)}, "call\\n"); throw new Error("the instrument's driver crashed"); }
    return 1;
  },
  combine: (a, b) => a + b,
});
`,
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Lines of about 10 bytes; line `at` says `word`. */
const linesWith = (count: number, at: number, word: string): string =>
  `${Array.from({ length: count }, (_, i) => (i === at ? word : `reading ${i}`)).join("\n")}\n`;

describe("a lab's op mapped inline", () => {
  const cloud = useDevCloud(() => ({
    workers: 0,
    maxWorkers: 1,
    maxAttempts: MAX_ATTEMPTS,
    inlineMaxBytes: 256 * 1024,
    chunkSize: CHUNK,
    opsModules: [module],
    // The function's time: a few seconds past the reserve the inline run keeps to hand off.
    splitterTimeoutMs: DEFAULTS.inlineReserveMs + 4_000,
  }));

  it("a map that never yields is ended at the splitter's budget; the fleet maps that chunk and the rest, and the count is exact", async () => {
    const t = cloud();
    writeFileSync(spinFlag, "");
    const body = linesWith(600, 250, "spin");
    const spinChunk = Math.floor(body.indexOf("spin") / CHUNK);
    expect(spinChunk).toBeGreaterThan(0);
    const key = "spin-once/site-a/readings.txt";
    await t.put(key, body);
    const status = await t.waitForEnd(`${key}/status.json`);
    expect(existsSync(spinFlag)).toBe(false);
    expect(status).toMatchObject({ state: "succeeded", ranOn: "lambda+fleet", firstChunk: { on: "lambda" } });
    // Independent count: the lines of the body.
    expect(await t.getJson(t.output, `${key}/result.json`)).toBe(body.split("\n").length - 1);
    const chunks = chunksOf(body.length, CHUNK);
    const on: string[] = [];
    for (let i = 0; i < chunks; i++) on.push(Part.parse(await t.getJson(t.output, partKey(status.jobId, i))).ran?.on ?? "unknown");
    expect(on.slice(0, spinChunk)).toEqual(Array.from({ length: spinChunk }, () => "lambda"));
    expect(on[spinChunk]).toBe("fleet");
    expect(t.cloud.woken()).toBe(1);
  });

  it("a chunk failing every time is tried maxAttempts times in all, the inline attempt counted; the job fails naming it", async () => {
    const t = cloud();
    const body = linesWith(300, 120, "boom");
    const boomChunk = Math.floor(body.indexOf("boom") / CHUNK);
    const key = "always-boom/site-a/readings.txt";
    await t.put(key, body);
    const status = await t.waitForEnd(`${key}/status.json`);
    expect(status.state).toBe("failed");
    expect(status.error?.message).toMatch(new RegExp(`chunk ${boomChunk} failed after ${MAX_ATTEMPTS} attempts: .*driver crashed`));
    // Once inline, once on the fleet: not once more for the queue's own count.
    expect(readFileSync(boomCalls, "utf8").split("\n").filter(Boolean)).toHaveLength(MAX_ATTEMPTS);
    await waitFor("nothing left queued", async () => {
      const depth = await t.taskDepth();
      return depth.visible === 0 && depth.inFlight === 0 ? depth : undefined;
    });
  });
});
