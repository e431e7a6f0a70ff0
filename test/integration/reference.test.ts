/**
 * The integration suite's one comparison, expectMatchesReference (test/helpers/devCloud.ts),
 * catches a wrong op: a test-only user op that counts like `count` but drops the last record,
 * run by the installed bin (`cloudmill run --ops`, several chunks on worker threads), gives a
 * result the comparison rejects, while the built-in `count` over the same bytes passes it.
 * The comparison also refuses ops and params it has no reference for, so no test passes by
 * comparing against nothing.
 *
 * The same wrong op run by the dev cloud's worker processes is rejected in userOps.test.ts.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, expectMatchesReference, requireBuild, ROOT, textOf, WRONG_COUNT_OP } from "../helpers/devCloud.js";
import { runProcess } from "../helpers/processes.js";
import { refCount } from "../helpers/reference.js";

const KiB = 1024;

let dir: string;
let opsModule: string;

beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-reference-"));
  opsModule = path.join(dir, "wrong-ops.mjs");
  await writeFile(opsModule, WRONG_COUNT_OP);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** `cloudmill run <file> ...args` through the bin, on 2 worker threads and 4 KiB chunks; its parsed stdout. */
const cloudmillRun = async (file: string, args: readonly string[]): Promise<unknown> => {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CLOUDMILL_")));
  const r = await runProcess(process.execPath, [BIN, "run", file, ...args, "-w", "2", "--chunk-size", "4KiB", "--no-progress"], {
    cwd: ROOT,
    env,
  });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
};

describe("expectMatchesReference", () => {
  const inputs: [name: string, bytes: Buffer][] = [
    // No final newline, CRLF endings, empty lines.
    ["text without a final newline", textOf(20 * KiB, 61)],
    ["text ending in a newline", Buffer.concat([textOf(18 * KiB, 62), Buffer.from("\n")])],
  ];

  it.each(inputs)("rejects a count that drops the last record (%s), and accepts the built-in count", async (name, bytes) => {
    const file = path.join(dir, `${name.replaceAll(" ", "-")}.txt`);
    await writeFile(file, bytes);
    expect(Math.ceil(bytes.length / (4 * KiB))).toBeGreaterThan(3);

    const wrong = await cloudmillRun(file, ["--ops", opsModule, "--op", "count-but-last"]);
    // The wrong op really ran, and is off by exactly the last record.
    expect(wrong).toEqual({ records: refCount(bytes).records - 1 });
    expect(() => expectMatchesReference("count", {}, bytes, wrong)).toThrow(/not the reference's answer/);

    expectMatchesReference("count", {}, bytes, await cloudmillRun(file, ["--op", "count"]));
  });

  it("refuses an op or a param it has no reference for, and a missing required param", () => {
    expect(() => expectMatchesReference("longest-line", {}, "a\n", { longest: 1 })).toThrow(/no reference for op "longest-line"/);
    expect(() => expectMatchesReference("wordcount", { topK: 3 }, "a\n", {})).toThrow(/wordcount has no param "topK"/);
    expect(() => expectMatchesReference("grep", {}, "a\n", {})).toThrow(/grep needs param pattern/);
    expect(() => expectMatchesReference("histogram", { min: 0, max: "x" }, "1\n", {})).toThrow(/not a number/);
  });
});
