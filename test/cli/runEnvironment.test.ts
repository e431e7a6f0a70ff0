/**
 * `cloudmill run` when the machine gets in the way: a full disk under --out, --out-dir or
 * TMPDIR, a folder where a part must go, Ctrl-C or SIGKILL in a task run, two runs into one
 * --out-dir. The failures are real: /dev/full refuses writes with ENOSPC, `ulimit -f` has the
 * kernel refuse a file past its size with EFBIG, signals are sent to the bin's own process.
 * Every wait is on a state (a file that appears, a process that exits), never on a time.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { LOCK_NAME, lockText } from "../../lib/fs/folderLock.js";
import { namespace } from "../../lib/fs/processFolders.js";
import { spawnChild } from "../helpers/devCloud.js";
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

/** Every file and folder under `root`, as relative paths. */
const under = async (root: string): Promise<string[]> => (await readdir(root, { recursive: true })).sort();

let dir: string;
beforeAll(async () => {
  if (!existsSync(path.join(ROOT, "dist/lib/cli/main.js")))
    throw new Error("the bin runs dist/: build first (npx tsc -p tsconfig.build.json)");
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-env-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A task whose item { hold: true } marks its scratch folder with a file `held`, then never returns. */
const heldTask = async (): Promise<string> => {
  const file = path.join(dir, "held.mjs");
  const defineTask = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineTask.js")).href;
  await writeFile(
    file,
    `import { defineTask } from ${JSON.stringify(defineTask)};
export const held = defineTask({
  name: "held",
  timeoutSeconds: 600,
  memoryMiB: 64,
  run: async (item, ctx) => {
    if (item.hold) {
      process.getBuiltinModule("node:fs").writeFileSync(ctx.scratch + "/held", "");
      await new Promise(() => {});
    }
    return item.n;
  },
});
`,
  );
  return file;
};

/** A keyed op whose map never ends on the line "stop". */
const stuckOp = async (): Promise<string> => {
  const file = path.join(dir, "stuck.mjs");
  const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
  await writeFile(
    file,
    `import { defineOp } from ${JSON.stringify(defineOp)};
export const stuck = defineOp({ name: "stuck", format: "lines", pairs: (l, emit) => { if (l === "stop") for (;;) {} emit(l, 1); }, combine: (a, b) => a + b });
`,
  );
  return file;
};

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

  it("--out and --report through a link to /proc/self/fd/1 (as /dev/stdout is) with stdout sent to a file: written into it, the link kept", async () => {
    // A stand-in for /dev/stdout, made by any user: the real one a test run as root must not risk.
    const folder = await mkdtemp(path.join(dir, "dev-stdout-"));
    await mkdir(path.join(folder, "dev"));
    const stdout = path.join(folder, "dev", "stdout");
    await symlink("/proc/self/fd/1", stdout);
    const run = ["run", "examples/numbers.txt", "--op", "count", "--no-progress"];
    const shell = (script: string, args: readonly string[]): Promise<Ran> =>
      runProcess("sh", ["-c", script, "sh", ...args], { cwd: ROOT, env: { ...process.env, CLOUDMILL_DEBUG: "" } });
    // Into a pipe (this test's own stdout is a socket, which /proc/self/fd/1 cannot open): the result as a run without --out prints it.
    const piped = await shell('"$@" | cat', [process.execPath, BIN, ...run, "--out", stdout]);
    expect(piped.code, piped.stderr).toBe(0);
    expect(JSON.parse(piped.stdout)).toEqual(JSON.parse((await cli(run)).stdout));
    const redirected = (flags: readonly string[], file: string): Promise<Ran> =>
      shell('file=$1; shift; exec "$@" > "$file"', [file, process.execPath, BIN, ...run, ...flags]);
    const res = path.join(folder, "res.json");
    const out = await redirected(["--out", stdout], res);
    expect(out.code, out.stderr).toBe(0);
    expect(await readFile(res, "utf8")).toBe(piped.stdout);
    const page = path.join(folder, "page.html");
    const report = await redirected(["--out", path.join(folder, "result.json"), "--report", stdout], page);
    expect(report.code, report.stderr).toBe(0);
    expect(await readFile(page, "utf8")).toMatch(/^<!doctype html>/i);
    expect(await readlink(stdout)).toBe("/proc/self/fd/1");
    expect(await readdir(path.join(folder, "dev"))).toEqual(["stdout"]);
    expect((await readdir(folder)).sort()).toEqual(["dev", "page.html", "res.json", "result.json"]);
  }, 60_000);

  it("--report and --out through links to a file and to none yet: the files are written, the links kept", async () => {
    const folder = await mkdtemp(path.join(dir, "linked-"));
    await mkdir(path.join(folder, "real"));
    await writeFile(path.join(folder, "real", "page.html"), "old");
    await symlink("real/page.html", path.join(folder, "page.html"));
    await symlink("real/result.json", path.join(folder, "result.json"));
    const r = await cli([
      "run",
      "examples/numbers.txt",
      "--op",
      "count",
      "--no-progress",
      "--out",
      path.join(folder, "result.json"),
      "--report",
      path.join(folder, "page.html"),
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(await readFile(path.join(folder, "real", "page.html"), "utf8")).toMatch(/^<!doctype html>/i);
    expect(JSON.parse(await readFile(path.join(folder, "real", "result.json"), "utf8"))).toBeTypeOf("object");
    expect(await readlink(path.join(folder, "page.html"))).toBe("real/page.html");
    expect(await readlink(path.join(folder, "result.json"))).toBe("real/result.json");
    expect((await readdir(folder, { recursive: true })).sort()).toEqual([
      "page.html",
      "real",
      "real/page.html",
      "real/result.json",
      "result.json",
    ]);
  });

  it("--out and --report through /dev/stdout when stdout is a file the shell appends to or shares: added after what is there", async () => {
    // A stand-in for /dev/stdout, made by any user, as above.
    const folder = await mkdtemp(path.join(dir, "shared-stdout-"));
    const stdout = path.join(folder, "stdout");
    await symlink("/proc/self/fd/1", stdout);
    const run = ["run", "examples/words.txt", "--op", "count", "--no-progress"];
    const json = (await cli(run)).stdout;
    const shell = async (script: string, file: string, flags: readonly string[]): Promise<string> => {
      const r = await runProcess("sh", ["-c", script, "sh", file, process.execPath, BIN, ...run, ...flags], {
        cwd: ROOT,
        env: { ...process.env, CLOUDMILL_DEBUG: "" },
      });
      expect(r.code, r.stderr).toBe(0);
      return readFile(file, "utf8");
    };
    const appended = path.join(folder, "log.txt");
    expect(await shell(`file=$1; shift; printf 'a\\nb\\n' > "$file"; "$@" >> "$file"`, appended, ["--out", stdout])).toBe(`a\nb\n${json}`);
    const shared = path.join(folder, "g.txt");
    expect(await shell(`file=$1; shift; ( echo before; "$@"; echo after ) > "$file"`, shared, ["--out", stdout])).toBe(
      `before\n${json}after\n`,
    );
    // --report is written without the command's streams: at the file descriptor, sharing its offset all the same.
    const page = await shell(`file=$1; shift; printf 'a\\n' > "$file"; "$@" >> "$file"`, path.join(folder, "page.txt"), [
      "--out",
      path.join(folder, "result.json"),
      "--report",
      stdout,
    ]);
    expect(page).toMatch(/^a\n<!doctype html>.*<\/html>\n?$/is);
    expect(await readlink(stdout)).toBe("/proc/self/fd/1");
  }, 60_000);

  it("--out through a link to a plain file: the file it leads to is replaced whole, never truncated under a reader; the link kept", async () => {
    const folder = await mkdtemp(path.join(dir, "link-to-file-"));
    await mkdir(path.join(folder, "real"));
    const target = path.join(folder, "real", "result.json");
    await writeFile(target, "old");
    await symlink("real/result.json", path.join(folder, "result.json"));
    // A reader that opened the old file before the run still reads it whole.
    const reader = await open(target, "r");
    try {
      const r = await cli(["run", "examples/words.txt", "--op", "count", "--no-progress", "--out", path.join(folder, "result.json")]);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(await readFile(target, "utf8"))).toEqual({ records: expect.any(Number) });
      expect((await reader.readFile("utf8")).toString()).toBe("old");
    } finally {
      await reader.close();
    }
    expect(await readlink(path.join(folder, "result.json"))).toBe("real/result.json");
    expect(await under(folder)).toEqual(["real", "real/result.json", "result.json"]);
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

describe("a task run stopped or killed", () => {
  it("Ctrl-C while an item runs on a thread that ran one: exit 130 in one line, no item sent to a fresh thread", async () => {
    const tmp = await mkdtemp(path.join(dir, "tmp-int-"));
    const items = path.join(dir, "held-items.jsonl");
    await writeFile(items, '{"n":0}\n{"n":1,"hold":true}\n');
    const child = spawnChild(
      process.execPath,
      [BIN, "run", items, "--ops", await heldTask(), "--op", "held", "-w", "1", "--batch-size", "2", "--no-progress"],
      { env: { ...process.env, TMPDIR: tmp } },
    );
    try {
      // The second item runs: the first ended on the same thread.
      await vi.waitFor(async () => expect((await under(tmp)).some((f) => f.endsWith("/held"))).toBe(true), {
        timeout: 30_000,
        interval: 20,
      });
      child.child.kill("SIGINT");
      expect(await child.exited).toEqual({ code: 130, signal: null });
      expect(child.stderr).toEqual(["cloudmill: interrupted"]);
      expect(await readdir(tmp)).toEqual([]);
    } finally {
      child.child.kill("SIGKILL");
    }
  }, 60_000);

  it("SIGKILL leaves its item threads' scratch folders, which the next run removes", async () => {
    const tmp = await mkdtemp(path.join(dir, "tmp-kill-"));
    const items = path.join(dir, "held-one.jsonl");
    await writeFile(items, '{"n":1,"hold":true}\n');
    const child = spawnChild(process.execPath, [BIN, "run", items, "--ops", await heldTask(), "--op", "held", "-w", "1", "--no-progress"], {
      env: { ...process.env, TMPDIR: tmp },
    });
    try {
      await vi.waitFor(async () => expect((await under(tmp)).some((f) => f.endsWith("/held"))).toBe(true), {
        timeout: 30_000,
        interval: 20,
      });
      child.child.kill("SIGKILL");
      await child.exited;
    } finally {
      child.child.kill("SIGKILL");
    }
    expect((await readdir(tmp)).filter((f) => f.startsWith("cloudmill-items-"))).toHaveLength(1);
    const next = await cli(["run", "examples/numbers.txt", "--op", "count", "--no-progress"], { TMPDIR: tmp });
    expect(next.code, next.stderr).toBe(0);
    expect(await readdir(tmp)).toEqual([]);
  }, 60_000);
});

describe("two keyed runs into one --out-dir", () => {
  it("the second refuses at once, naming the out-dir and the first's pid; the first's lock goes when it is stopped", async () => {
    const tmp = await mkdtemp(path.join(dir, "tmp-lock-"));
    const input = path.join(dir, "stuck.txt");
    await writeFile(input, "a\nstop\n");
    const outDir = path.join(dir, "shared-out");
    const first = spawnChild(
      process.execPath,
      [BIN, "run", input, "--ops", await stuckOp(), "--op", "stuck", "--out-dir", outDir, "-w", "1"],
      {
        env: { ...process.env, TMPDIR: tmp },
      },
    );
    try {
      // Its work folder exists: it has its out-dir, and maps.
      await vi.waitFor(async () => expect((await readdir(tmp)).length).toBeGreaterThan(0), { timeout: 30_000, interval: 20 });
      const second = await cli(["run", "examples/numbers.txt", "--op", "sort", "--out-dir", outDir, "--no-progress"]);
      expect(second.code).toBe(7);
      expect(oneErrorLine(second)).toBe(
        `cloudmill: --out-dir ${outDir} is being written by cloudmill run pid ${first.child.pid}: ` +
          "wait for it to end, or give another --out-dir",
      );
      first.child.kill("SIGINT");
      expect((await first.exited).code).toBe(130);
      // The first made the out-dir and failed: it is gone, lock and all.
      expect(existsSync(outDir)).toBe(false);
    } finally {
      first.child.kill("SIGKILL");
    }
  }, 60_000);

  it("a lock left by a run that was killed is taken over, and released at the end", async () => {
    const outDir = path.join(dir, "stale-out");
    await mkdir(outDir);
    await writeFile(path.join(outDir, LOCK_NAME), lockText({ pid: spawnSync("true").pid!, namespace }));
    const r = await cli(["run", "examples/numbers.txt", "--op", "sort", "--out-dir", outDir, "--no-progress"]);
    expect(r.code, r.stderr).toBe(0);
    expect((await readdir(outDir)).sort()).toEqual(["_SUCCESS", "part-00000.txt"]);
  });
});
