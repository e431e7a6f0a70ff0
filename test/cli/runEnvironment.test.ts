/**
 * `cloudmill run` when the machine gets in the way: a full disk under --out, --out-dir or
 * TMPDIR, a folder where a part must go, Ctrl-C or SIGKILL in a task run, two runs into one
 * --out-dir. The failures are real: /dev/full refuses writes with ENOSPC, `ulimit -f` has the
 * kernel refuse a file past its size with EFBIG, signals are sent to the bin's own process.
 * Every wait is on a state (a file that appears, a process that exits), never on a time.
 */
import { existsSync } from "node:fs";
import { lstat, mkdir, mkdtemp, readdir, readlink, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runProcess, type Ran } from "../helpers/processes.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const BIN = path.join(ROOT, "bin/cloudmill.js");
const TEMP = /^\.cm-.*\.tmp$/;

const cli = (args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Ran> =>
  runProcess(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, CLOUDMILL_DEBUG: "", ...env } });

const oneErrorLine = (r: Ran): string => {
  expect(r.stdout).toBe("");
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  expect(lines, r.stderr).toHaveLength(1);
  return lines[0]!;
};

let dir: string;
beforeAll(async () => {
  if (!existsSync(path.join(ROOT, "dist/lib/cli/main.js")))
    throw new Error("the bin runs dist/: build first (npx tsc -p tsconfig.build.json)");
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-env-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("a disk that refuses the run's writes", () => {
  it("--out through a link to a full device: exit 7, one line in plain words; the link is written into, not replaced", async () => {
    const folder = await mkdtemp(path.join(dir, "out-full-"));
    const out = path.join(folder, "result.json");
    await symlink("/dev/full", out);
    const r = await cli(["run", "examples/numbers.txt", "--op", "count", "--out", out, "--no-progress"]);
    expect(r.code).toBe(7);
    expect(oneErrorLine(r)).toBe(`cloudmill: cannot write ${out}: no space left on device (ENOSPC)`);
    expect((await lstat(out)).isSymbolicLink()).toBe(true);
    expect(await readlink(out)).toBe("/dev/full");
    expect(await readdir(folder)).toEqual(["result.json"]);
  });

  it("--out-dir with a folder where a part must go: exit 7, one line naming it; no _SUCCESS, no temporary file", async () => {
    const outDir = path.join(dir, "blocked");
    const args = ["run", "examples/numbers.txt", "--op", "sort", "--partitions", "2", "--out-dir", outDir, "--no-progress"];
    expect((await cli(args)).code).toBe(0);
    await rm(path.join(outDir, "part-00001.txt"));
    await mkdir(path.join(outDir, "part-00001.txt", "in-the-way"), { recursive: true });
    const r = await cli(args);
    expect(r.code).toBe(7);
    expect(oneErrorLine(r)).toBe(
      `cloudmill: --out-dir ${outDir}: cannot remove ${outDir}/part-00001.txt: illegal operation on a directory (EISDIR)`,
    );
    const left = await readdir(outDir);
    expect(left).not.toContain("_SUCCESS");
    expect(left.filter((f) => TEMP.test(f))).toEqual([]);
  });

  it("TMPDIR that refuses a chunk's files (EFBIG, past ulimit -f): exit 7 at once, one line naming TMPDIR, no retry", async () => {
    const tmp = await mkdtemp(path.join(dir, "tmp-small-"));
    const input = path.join(dir, "many-numbers.txt");
    await writeFile(input, Array.from({ length: 300_000 }, (_, i) => `${i}\n`).join(""));
    // 256 blocks: 128 KiB (dash counts 512-byte blocks) or 256 KiB; a chunk's runs of 512 KiB are more.
    const r = await runProcess(
      "sh",
      [
        "-c",
        'ulimit -f 256 && exec "$@"',
        "sh",
        process.execPath,
        BIN,
        "run",
        input,
        "--op",
        "sort",
        "--chunk-size",
        "512KiB",
        "--out-dir",
        path.join(dir, "never-made"),
        "--no-progress",
        "-w",
        "2",
      ],
      { cwd: ROOT, env: { ...process.env, TMPDIR: tmp } },
    );
    expect(r.code, r.stderr).toBe(7);
    expect(oneErrorLine(r)).toMatch(new RegExp(`^cloudmill: TMPDIR ${tmp}: put ${tmp}/cloudmill-run-\\S+: file too large \\(EFBIG\\)$`));
    expect(await readdir(tmp)).toEqual([]);
    expect(existsSync(path.join(dir, "never-made"))).toBe(false);
  }, 60_000);
});
