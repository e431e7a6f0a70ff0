/**
 * A local input that is not there: the SDK's error names it in its message (what a script
 * prints), and the CLI still says it once. No cloud is reached: the inputs are checked first.
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cloudmill } from "../../lib/sdk/index.js";
import { cli } from "../helpers/cli.js";

/** Nothing listens here: a request would fail with ENVIRONMENT, not INPUT_NOT_FOUND. */
const ENDPOINT = "http://127.0.0.1:1";
let dir: string;
let mill: Cloudmill;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-missing-"));
  mill = new Cloudmill({ endpoint: ENDPOINT }, {});
});
afterAll(async () => {
  mill?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("a missing local input", () => {
  it("rejects result() and submitted with INPUT_NOT_FOUND whose message names the file", async () => {
    const missing = path.join(dir, "nothere.txt");
    const future = mill.submit({ op: "stats", inputs: [missing] });
    const expected = { code: "INPUT_NOT_FOUND", message: `${missing}: no such file or directory` };
    await expect(future.submitted).rejects.toMatchObject(expected);
    await expect(future.result()).rejects.toMatchObject(expected);
  });

  it("an empty folder's error names the folder", async () => {
    const empty = path.join(dir, "empty");
    await mkdir(empty);
    await expect(mill.submit({ op: "count", inputs: [empty] }).result()).rejects.toMatchObject({
      code: "INPUT_NOT_FOUND",
      message: `${empty}: directory holds no files`,
    });
  });

  it("cloudmill submit says the name once, exit code 3", async () => {
    const r = await cli(["submit", path.join(dir, "nothere.txt"), "--op", "count", "--endpoint", ENDPOINT, "--no-progress"]);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(`cloudmill: ${path.join(dir, "nothere.txt")}: no such file or directory\n`);
  });
});
