/**
 * A job's pattern cannot hang a worker: grep with the classic exponential-backtracking pattern
 * over lines that trigger it ends with the answer, on this machine and on the emulated fleet.
 * The reference is GNU grep, whose DFA does not backtrack (mawk's engine does, and hangs too).
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, requireBuild, ROOT, startTestCloud, type TestCloud } from "../helpers/devCloud.js";
import { runProcess } from "../helpers/processes.js";

const PATTERN = "^(a+)+$";
let dir: string;
let file: string;
let cloud: TestCloud;
let expected: number;

beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-patterns-"));
  file = path.join(dir, "evil.txt");
  // Each "aaa…ab" line takes a backtracking engine about 2^n steps; 34 a's is hours.
  const lines = Array.from({ length: 400 }, (_, i) => (i % 3 === 0 ? "a".repeat(20 + (i % 30)) : `${"a".repeat(34 + (i % 7))}b`));
  await writeFile(file, `${lines.join("\n")}\n`);
  expected = Number(execFileSync("grep", ["-cE", PATTERN, file], { encoding: "utf8" }).trim());
  cloud = await startTestCloud({ chunkSize: 2048 });
}, 90_000);

afterAll(async () => {
  await cloud?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("grep with a pattern that backtracks exponentially", () => {
  it("ends with GNU grep's count on this machine, with and without ignoreCase", async () => {
    for (const extra of [[], ["-p", "ignoreCase=true"]]) {
      const r = await runProcess(
        process.execPath,
        [BIN, "run", file, "--op", "grep", "-p", `pattern=${PATTERN}`, "-p", "k=0", ...extra, "--no-progress"],
        {
          cwd: ROOT,
          env: process.env,
        },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ matches: expected, samples: [] });
    }
    expect(expected).toBeGreaterThan(100);
  });

  it("ends with GNU grep's count on the emulated fleet", async () => {
    await cloud.put("_inputs/evil.txt", await import("node:fs/promises").then((fs) => fs.readFile(file)));
    await cloud.put(
      "_jobs/redos-1.json",
      JSON.stringify({ op: "grep", inputs: [`s3://${cloud.input}/_inputs/evil.txt`], params: { pattern: PATTERN, k: 0 } }),
    );
    const status = await cloud.waitForEnd("_jobs/redos-1/status.json");
    expect(status.state).toBe("succeeded");
    expect(status.chunks).toBeGreaterThan(3);
    expect(await cloud.getJson(cloud.output, "_jobs/redos-1/result.json")).toEqual({ matches: expected, samples: [] });
  });

  it("refuses a backreference before any work, naming the construct", async () => {
    const r = await runProcess(process.execPath, [BIN, "run", file, "--op", "grep", "-p", "pattern=(a)\\1", "--no-progress"], {
      cwd: ROOT,
      env: process.env,
    });
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      "cloudmill: grep: param pattern: not supported (backreference \\1 at 3): patterns run in linear time, without backreferences " +
        'or lookaround, in JavaScript\'s syntax (got "(a)\\\\1")',
    );
  });
});
