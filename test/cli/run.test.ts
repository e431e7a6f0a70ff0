/**
 * `cloudmill run` as users run it: the installed bin in a child process (compiled dist/),
 * checked against awk and wc on the example files; errors as one line and an exit code;
 * --help; --out. Plus in-process runCli for the exit-code table.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { runCommand } from "../../lib/cli/commands/run.js";
import type { CliIO } from "../../lib/cli/io.js";
import { runCli } from "../../lib/cli/main.js";
import { spawnChild } from "../helpers/devCloud.js";
import { runProcess, shellWords, type Ran } from "../helpers/processes.js";
import { refStats } from "../helpers/reference.js";
import { TASKS_MODULE } from "../helpers/tasks.js";
import { node22 } from "../helpers/node22.js";
import { tempFor } from "../../lib/fs/processFolders.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const BIN = path.join(ROOT, "bin/cloudmill.js");
const EXAMPLES = ["words.txt", "numbers.txt", "access.log", "measurements.csv", "events.jsonl"];

/** Runs the real bin: `node bin/cloudmill.js ...args` from the repository root. */
const cli = (args: readonly string[], cwd = ROOT): Promise<Ran> =>
  runProcess(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, CLOUDMILL_DEBUG: "" } });

/** A shell tool's output, in a UTF-8 locale (in the C locale GNU wc skips words of non-ASCII bytes). */
const tool = (cmd: string, args: readonly string[]): string => {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8", env: { ...process.env, LC_ALL: "C.UTF-8" } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
};

const oneErrorLine = (r: Ran): string => {
  expect(r.stdout).toBe("");
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^cloudmill: /);
  return lines[0]!;
};

/** An injected CliIO that captures what the CLI writes. */
const capture = () => {
  let stdout = "";
  let stderr = "";
  const io: CliIO = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: {} };
  return { io, out: () => stdout, err: () => stderr };
};

let dir: string;
beforeAll(async () => {
  if (!existsSync(path.join(ROOT, "dist/lib/cli/main.js")))
    throw new Error("the bin runs dist/: build first (npx tsc -p tsconfig.build.json)");
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-cli-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("cloudmill run (the bin)", () => {
  it("counts what awk counts on every example file (csv/jsonl read as lines; a csv by extension skips its header)", async () => {
    await Promise.all([
      ...EXAMPLES.map(async (name, i) => {
        const file = `examples/${name}`;
        const args = ["run", file, "--op", "count", "--chunk-size", "8KiB", "--workers", i === 0 ? "2" : "0"];
        if (name.endsWith(".csv") || name.endsWith(".jsonl")) args.push("--format", "lines");
        const r = await cli(args);
        expect(r.code, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout), name).toEqual({ records: Number(tool("awk", ["END{print NR}", file])) });
      }),
      // Without --format, a .csv is read as csv: its header is not a record.
      cli(["run", "examples/measurements.csv", "--op", "count", "-w", "0"]).then((r) => {
        expect(JSON.parse(r.stdout)).toEqual({ records: Number(tool("awk", ["END{print NR}", "examples/measurements.csv"])) - 1 });
      }),
    ]);
  });

  it("counts the words wc -w counts, on every example file", async () => {
    await Promise.all(
      EXAMPLES.map(async (name, i) => {
        const file = `examples/${name}`;
        const r = await cli(["run", file, "--op", "wordcount", "--chunk-size", "5000", "-w", i === 0 ? "2" : "0", "--param", "k=3"]);
        expect(r.code, r.stderr).toBe(0);
        const result = JSON.parse(r.stdout) as { total: number; top: unknown[] };
        expect(result.total, name).toBe(Number(tool("wc", ["-w", file]).split(/\s+/)[0]));
        expect(result.top).toHaveLength(3);
      }),
    );
  });

  it("prints the result JSON alone on stdout; progress goes to stderr", async () => {
    const r = await cli(["run", "examples/numbers.txt", "--op", "stats", "--chunk-size", "4KiB"]);
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as unknown;
    expect(r.stdout).toBe(`${JSON.stringify(result, null, 2)}\n`);
    expect(result).toEqual(refStats(await readFile(path.join(ROOT, "examples/numbers.txt"))));
    expect(r.stderr).toMatch(/progress: \d+\/\d+ chunks/);
    const quiet = await cli(["run", "examples/numbers.txt", "--op", "stats", "--no-progress"]);
    expect(quiet.stderr).toBe("");
    expect(quiet.stdout).toBe(r.stdout);
  });

  it("reads directories and several inputs into one result", async () => {
    const r = await cli(["run", "examples/words.txt", "examples", "--op", "count", "--format", "lines", "--no-progress"]);
    expect(r.code, r.stderr).toBe(0);
    const all = (await readdir(path.join(ROOT, "examples"))).map((f) => `examples/${f}`);
    const lines = Number(tool("awk", ["END{print NR}", "examples/words.txt", ...all]));
    expect(JSON.parse(r.stdout)).toEqual({ records: lines });
  });

  it("leaves a folder's hidden files out (.DS_Store, _SUCCESS) and says so in one line", async () => {
    const folder = path.join(dir, "with-hidden");
    await mkdir(path.join(folder, ".git"), { recursive: true });
    await writeFile(path.join(folder, "a.txt"), "one\ntwo\n");
    await writeFile(path.join(folder, ".DS_Store"), Buffer.from([0, 0, 0, 1, 0x42, 0x75, 0x64, 0x31, 0x0a, 0xff]));
    await writeFile(path.join(folder, ".git", "HEAD"), "ref: refs/heads/main\n");
    await writeFile(path.join(folder, "_SUCCESS"), "");
    const r = await cli(["run", folder, "--op", "count", "--no-progress"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ records: Number(tool("awk", ["END{print NR}", path.join(folder, "a.txt")])) });
    expect(r.stderr).toBe(
      `cloudmill: left out 3 hidden file(s) or folder(s) (${[".DS_Store", ".git", "_SUCCESS"].map((f) => path.join(folder, f)).join(", ")}): ` +
        "a folder's names starting with . or _ are not read, as in Hadoop; name one to read it\n",
    );
  });

  it("a folder of hidden files alone → 3, saying so, not that it holds nothing", async () => {
    const folder = path.join(dir, "only-hidden");
    await mkdir(path.join(folder, "_raw"), { recursive: true });
    await writeFile(path.join(folder, "_raw", "a.csv"), "k\nx\n");
    const r = await cli(["run", folder, "--op", "count", "--no-progress"]);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(
      `cloudmill: ${folder}: holds only hidden files (${path.join(folder, "_raw")}: names starting with . or _ are not read ` +
        "from a folder, as in Hadoop): name one to read it\n",
    );
  });

  describe("errors: one line on stderr, nothing on stdout, a documented exit code", () => {
    it("missing file → 3, naming the file", async () => {
      const r = await cli(["run", "examples/nope.txt", "--op", "count"]);
      expect(r.code).toBe(3);
      expect(oneErrorLine(r)).toBe("cloudmill: examples/nope.txt: no such file or directory");
    });

    it("unknown op → 2, listing the known ops", async () => {
      const r = await cli(["run", "examples/words.txt", "--op", "wordcnt"]);
      expect(r.code).toBe(2);
      expect(oneErrorLine(r)).toBe(
        'cloudmill: unknown op "wordcnt" (known: checksum, count, distinct, grep, groupby, histogram, sort, stats, wordcount)',
      );
    });

    it("malformed number → 4, naming file:line (found on a worker thread, in the 4th of many chunks)", async () => {
      const f = path.join(dir, "bad-numbers.txt");
      await writeFile(f, "1\n2\n\n3,5\n4\n");
      const r = await cli(["run", f, "--op", "stats", "--chunk-size", "1", "--workers", "2", "--no-progress"]);
      expect(r.code).toBe(4);
      expect(oneErrorLine(r)).toBe(`cloudmill: ${f}:4 (byte 5): expected a number, got "3,5"`);
    });

    it("bad param → 2, naming the param", async () => {
      const [bad, malformed] = await Promise.all([
        cli(["run", "examples/words.txt", "--op", "wordcount", "--param", "k=x"]),
        cli(["run", "examples/words.txt", "--op", "wordcount", "--param", "k"]),
      ]);
      expect(bad.code).toBe(2);
      expect(oneErrorLine(bad)).toBe('cloudmill: wordcount: param k: expected a whole number (got "x")');
      expect(malformed.code).toBe(2);
      expect(oneErrorLine(malformed)).toBe('cloudmill: --param "k": expected NAME=VALUE, e.g. --param k=20');
    });

    it("--backup-after past a day → 2, naming the flag (it reaches the job spec's backupAfterSeconds)", async () => {
      const r = await cli(["run", "examples/words.txt", "--op", "count", "--backup-after", "90000"]);
      expect(r.code).toBe(2);
      expect(oneErrorLine(r)).toMatch(/^cloudmill: --backup-after: /);
    });

    it("bad --chunk-size → 2, saying what a size looks like", async () => {
      const r = await cli(["run", "examples/words.txt", "--op", "count", "--chunk-size", "16XB"]);
      expect(r.code).toBe(2);
      expect(oneErrorLine(r)).toMatch(
        /^cloudmill: (chunkSize|--chunk-size): expected a whole number of bytes or a size like 16MiB, got "16XB"$/,
      );
    });

    it("a usage error commander finds (unknown option, missing argument) → 2, naming the help to read", async () => {
      const [unknown, missing] = await Promise.all([
        cli(["run", "examples/words.txt", "--op", "count", "--bogus"]),
        cli(["run", "examples/words.txt", "--op"]),
      ]);
      expect(unknown.code).toBe(2);
      expect(oneErrorLine(unknown)).toBe("cloudmill: unknown option '--bogus' (see cloudmill run --help)");
      expect(missing.code).toBe(2);
      expect(oneErrorLine(missing)).toBe("cloudmill: option '--op <name>' argument missing (see cloudmill run --help)");
    });
  });

  it("--help documents every flag and shows examples", async () => {
    const r = await cli(["run", "--help"]);
    expect(r.code).toBe(0);
    const io: CliIO = { stdout: { write: () => true }, stderr: { write: () => true }, env: {} };
    const flags = runCommand(io).options.map((o) => o.long!);
    expect(flags.length).toBeGreaterThanOrEqual(10);
    for (const flag of [
      ...flags,
      "--op",
      "--param",
      "--workers",
      "--chunk-size",
      "--out",
      "--ops",
      "--format",
      "--skip-bad-records",
      "--help",
    ]) {
      expect(r.stdout, flag).toMatch(new RegExp(`${flag}\\b`));
    }
    expect(r.stdout).toContain("Examples:");
    const examples = r.stdout.slice(r.stdout.indexOf("Examples:"));
    // The examples run as shown (in process, which is quicker than a process each).
    const shown = [...examples.matchAll(/^\s*\$ cloudmill (run .*)$/gm)].map((m) => m[1]!);
    expect(shown.length).toBeGreaterThanOrEqual(3);
    const cwd = process.cwd();
    const work = await mkdtemp(path.join(dir, "help-"));
    await mkdir(path.join(work, "data"));
    await writeFile(path.join(work, "data", "x.txt"), "x\n");
    process.chdir(work);
    try {
      for (const line of shown) {
        const argv = shellWords(line).map((w) => w.replace(/^examples\//, `${ROOT}/examples/`));
        const c = capture();
        expect(await runCli([...argv, "-w", "0", "--no-progress"], c.io), `${line}: ${c.err()}`).toBe(0);
        if (!argv.includes("--out")) expect(() => JSON.parse(c.out()) as unknown, line).not.toThrow();
      }
    } finally {
      process.chdir(cwd);
    }
    const top = capture();
    expect(await runCli(["--help"], top.io)).toBe(0);
    expect(top.out()).toMatch(/^\s+run \[options\] <inputs\.\.\.>/m);
  });

  it("keeps stdout the result's alone when a lab's op writes there, at import and in its task threads", async () => {
    const ops = path.join(dir, "chatty.mjs");
    const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
    await writeFile(
      ops,
      `import { defineOp } from ${JSON.stringify(defineOp)};
console.log("loaded");
export const chatty = defineOp({ name: "chatty", format: "lines", map: (l) => { console.log("saw", l); process.stdout.write("raw\\n"); return l.length; }, combine: (a, b) => Math.max(a, b), finalize: (m) => ({ longest: m ?? 0 }) });
`,
    );
    const input = path.join(dir, "chatty.txt");
    await writeFile(input, "abc\nLOG\nxyzzy\n");
    const r = await cli(["run", input, "--ops", ops, "--op", "chatty", "-w", "2", "--no-progress"]);
    expect(r.code, r.stderr).toBe(0);
    const longest = Number(tool("awk", ["{ if (length($0) > m) m = length($0) } END { print m }", input]));
    expect(JSON.parse(r.stdout)).toEqual({ longest });
    expect(r.stderr).toContain("loaded");
    expect(r.stderr).toContain("saw xyzzy");
    expect(r.stderr).toContain("raw");
  });

  it("a lab op's error of several lines is told on one line", async () => {
    const ops = path.join(dir, "wordy.mjs");
    const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
    await writeFile(
      ops,
      `import { defineOp } from ${JSON.stringify(defineOp)};
export const wordy = defineOp({ name: "wordy", format: "lines", map: (l) => { if (l === "bad") throw new Error("parse failed\\n  at record 17\\n  in field 'when'"); return 1; }, combine: (a, b) => a + b });
`,
    );
    const input = path.join(dir, "wordy.txt");
    await writeFile(input, "good\nbad\n");
    const r = await cli(["run", input, "--ops", ops, "--op", "wordy", "-w", "0", "--no-progress"]);
    expect(r.code).not.toBe(0);
    // Its retries are warned of first; each line, and the error at the end, is whole.
    const lines = r.stderr.trimEnd().split("\n");
    expect(
      lines.every((l) => l.startsWith("cloudmill: ")),
      r.stderr,
    ).toBe(true);
    expect(lines.at(-1)).toMatch(/^cloudmill: .*wordy\.txt.*: parse failed at record 17 in field 'when'$/);
  });

  it("a lab op that throws on a record names the record's line and byte, as awk finds it", async () => {
    const ops = path.join(dir, "throws.mjs");
    const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
    await writeFile(
      ops,
      `import { defineOp } from ${JSON.stringify(defineOp)};
export const sevens = defineOp({ name: "sevens", format: "numbers", map: (x) => { if (x === 7) throw new Error("seven"); return x; }, combine: (a, b) => a + b });
export const keyedSevens = defineOp({ name: "keyed-sevens", format: "lines", pairs: (l, emit) => { if (l === "7") throw new TypeError("seven"); emit(l, 1); }, combine: (a, b) => a + b });
`,
    );
    const input = path.join(dir, "to-twelve.txt");
    await writeFile(input, execFileSync("seq", ["1", "12"]));
    // awk's line of the 7 and the byte it starts at.
    const [line, byte] = execFileSync("awk", ["$0 == 7 { print NR, off } { off += length($0) + 1 }", input]).toString().trim().split(" ");
    for (const op of ["sevens", "keyed-sevens"]) {
      const out = op === "sevens" ? [] : ["--out-dir", path.join(dir, `out-${op}`)];
      const r = await cli(["run", input, "--ops", ops, "--op", op, "-w", "0", "--no-progress", ...out]);
      expect(r.code).not.toBe(0);
      expect(r.stderr.trimEnd().split("\n").at(-1)).toBe(
        `cloudmill: ${input}:${line} (byte ${byte}): chunk 0 failed after 3 attempts: seven`,
      );
    }
  });

  it.each([
    ["SIGTERM", 143],
    ["SIGHUP", 129],
  ] as const)(
    "stopped by %s, leaves no work files and no --out-dir, and exits %i",
    async (signal, code) => {
      const tmp = await mkdtemp(path.join(dir, "tmp-"));
      const ops = path.join(dir, "stuck.mjs");
      const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
      // A keyed op whose map never ends: the run is under way until it is stopped.
      await writeFile(
        ops,
        `import { defineOp } from ${JSON.stringify(defineOp)};
export const stuck = defineOp({ name: "stuck", format: "lines", pairs: (l, emit) => { if (l === "stop") for (;;) {} emit(l, 1); }, combine: (a, b) => a + b });
`,
      );
      const input = path.join(dir, "stuck.txt");
      await writeFile(input, `${"a\n".repeat(50_000)}stop\n`);
      const outDir = path.join(dir, "stuck-out", "parts");
      const child = spawnChild(process.execPath, [BIN, "run", input, "--ops", ops, "--op", "stuck", "--out-dir", outDir, "-w", "2"], {
        env: { ...process.env, TMPDIR: tmp },
      });
      try {
        // The run's work directory exists: it has begun.
        await vi.waitFor(async () => expect((await readdir(tmp)).length).toBeGreaterThan(0), { timeout: 30_000, interval: 20 });
        child.child.kill(signal);
        expect(await child.exited).toEqual({ code, signal: null });
        expect(await readdir(tmp)).toEqual([]);
        expect(existsSync(path.join(dir, "stuck-out"))).toBe(false);
        expect(child.stdout).toEqual([]);
      } finally {
        child.child.kill("SIGKILL");
      }
    },
    60_000,
  );

  it("killed (SIGKILL), leaves its work folder, which the next run removes", async () => {
    const tmp = await mkdtemp(path.join(dir, "tmp-killed-"));
    const ops = path.join(dir, "stuck-killed.mjs");
    const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
    await writeFile(
      ops,
      `import { defineOp } from ${JSON.stringify(defineOp)};
export const stuck = defineOp({ name: "stuck", format: "lines", map: (l) => { if (l === "stop") for (;;) {} return 1; }, combine: (a, b) => a + b });
`,
    );
    const input = path.join(dir, "stuck-killed.txt");
    await writeFile(input, `${"a\n".repeat(1000)}stop\n`);
    const child = spawnChild(process.execPath, [BIN, "run", input, "--ops", ops, "--op", "stuck", "-w", "2"], {
      env: { ...process.env, TMPDIR: tmp },
    });
    try {
      await vi.waitFor(async () => expect((await readdir(tmp)).length).toBeGreaterThan(0), { timeout: 30_000, interval: 20 });
      child.child.kill("SIGKILL");
      await child.exited;
    } finally {
      child.child.kill("SIGKILL");
    }
    // Nothing ran to remove it.
    expect((await readdir(tmp)).length).toBeGreaterThan(0);
    const next = await runProcess(process.execPath, [BIN, "run", "examples/numbers.txt", "--op", "count", "--no-progress"], {
      cwd: ROOT,
      env: { ...process.env, TMPDIR: tmp },
    });
    expect(next.code, next.stderr).toBe(0);
    expect(await readdir(tmp)).toEqual([]);
  }, 60_000);

  it("a task's stored files all reach --out-dir/files, whatever their names look like", async () => {
    const ops = path.join(dir, "tasks-put.mjs");
    await writeFile(ops, TASKS_MODULE);
    const names = [".x.cloudmill-999990.tmp", `.cm-00000000-${spawnSync("true").pid}-1.tmp`, "L".repeat(240), "y.txt"];
    const items = path.join(dir, "put-items.jsonl");
    await writeFile(items, names.map((put, n) => `${JSON.stringify({ n, put })}\n`).join(""));
    const outDir = path.join(dir, "put-out");
    const r = await cli(["run", items, "--ops", ops, "--op", "affine", "-w", "1", "--no-progress", "--out-dir", outDir]);
    expect(r.code, r.stderr).toBe(0);
    for (const [n, name] of names.entries()) expect(await readFile(path.join(outDir, "files", name), "utf8")).toBe(`item ${n}`);
    expect((await readdir(path.join(outDir, "files"))).sort()).toEqual([...names].sort());
  }, 60_000);

  it("a task run on item threads leaves none of their scratch folders behind", async () => {
    const tmp = await mkdtemp(path.join(dir, "tmp-items-"));
    const ops = path.join(dir, "tasks.mjs");
    await writeFile(ops, TASKS_MODULE);
    const items = path.join(dir, "items.jsonl");
    await writeFile(items, Array.from({ length: 6 }, (_, n) => `${JSON.stringify({ n })}\n`).join(""));
    const out = path.join(dir, "items-out.json");
    const r = await runProcess(
      process.execPath,
      [BIN, "run", items, "--ops", ops, "--op", "affine", "-w", "2", "--no-progress", "--out", out],
      {
        cwd: ROOT,
        env: { ...process.env, TMPDIR: tmp },
      },
    );
    expect(r.code, r.stderr).toBe(0);
    // 3n + 1 for n = 0..5, in order.
    expect(JSON.parse(await readFile(out, "utf8"))).toMatchObject({ results: [1, 4, 7, 10, 13, 16] });
    expect(await readdir(tmp)).toEqual([]);
  }, 60_000);

  describe("--out FILE", () => {
    it("writes the result there, and stdout stays empty", async () => {
      const out = path.join(dir, "out", "result.json");
      await mkdir(path.dirname(out), { recursive: true });
      const [r, shown] = await Promise.all([
        cli(["run", "examples/words.txt", "--op", "wordcount", "--out", out, "--no-progress"]),
        cli(["run", "examples/words.txt", "--op", "wordcount", "--no-progress"]),
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe("");
      expect(await readFile(out, "utf8")).toBe(shown.stdout);
      expect(await readdir(path.dirname(out))).toEqual(["result.json"]);
    });

    it("that cannot be written is refused before the job runs: a keyed job's --out-dir keeps its old parts", async () => {
      const outDir = path.join(dir, "kept-parts");
      const first = await cli(["run", "examples/numbers.txt", "--op", "sort", "--out-dir", outDir, "--no-progress"]);
      expect(first.code, first.stderr).toBe(0);
      const parts = await readdir(outDir);
      const before = await Promise.all(parts.map((p) => readFile(path.join(outDir, p), "utf8")));
      await writeFile(path.join(dir, "words-copy.txt"), await readFile(path.join(ROOT, "examples/words.txt")));
      const again = ["run", path.join(dir, "words-copy.txt"), "--op", "sort", "--out-dir", outDir, "--no-progress"];
      const intoFolder = await cli([...again, "--out", dir]);
      expect(intoFolder.code).toBe(2);
      expect(oneErrorLine(intoFolder)).toBe(`cloudmill: --out ${dir}: is a directory; name a file in it`);
      const nowhere = await cli([...again, "--out", path.join(dir, "no-such-folder", "r.json")]);
      expect(nowhere.code).toBe(7);
      expect(oneErrorLine(nowhere)).toMatch(/^cloudmill: --out \S+r\.json: cannot write in \S+no-such-folder \(no such folder/);
      expect(await readdir(outDir)).toEqual(parts);
      expect(await Promise.all(parts.map((p) => readFile(path.join(outDir, p), "utf8")))).toEqual(before);
    });

    it("a keyed job's --out-dir says it is whole with _SUCCESS, written last and taken away first", async () => {
      const outDir = path.join(dir, "marked-parts");
      const first = await cli(["run", "examples/numbers.txt", "--op", "sort", "--partitions", "2", "--out-dir", outDir, "--no-progress"]);
      expect(first.code, first.stderr).toBe(0);
      // The marker holds the parts' manifest, as stdout printed it.
      expect(JSON.parse(await readFile(path.join(outDir, "_SUCCESS"), "utf8"))).toEqual(JSON.parse(first.stdout));
      expect((await readdir(outDir)).sort()).toEqual(["_SUCCESS", "part-00000.txt", "part-00001.txt"]);
      // Temporary files a killed run left: a dead process's go; a live one's, another namespace's
      // (a container sharing the folder, whose processes this one cannot see) and a lab's own stay.
      const dead = spawnSync("true").pid!;
      const stale = path.basename(tempFor(path.join(outDir, "part-00000.txt"), dead));
      const live = path.basename(tempFor(path.join(outDir, "part-00000.txt")));
      const elsewhere = `.cm-00000000-${dead}-1.tmp`;
      const labs = `.notes.${dead}.tmp`;
      for (const name of [stale, live, elsewhere, labs]) await writeFile(path.join(outDir, name), "half");
      // A folder where a new part must go: the move fails after the old parts went.
      await rm(path.join(outDir, "part-00001.txt"));
      await mkdir(path.join(outDir, "part-00001.txt", "in-the-way"), { recursive: true });
      const blocked = await cli(["run", "examples/numbers.txt", "--op", "sort", "--partitions", "2", "--out-dir", outDir, "--no-progress"]);
      expect(blocked.code).not.toBe(0);
      // Not whole, and it says so: no marker.
      expect(existsSync(path.join(outDir, "_SUCCESS"))).toBe(false);
      await rm(path.join(outDir, "part-00001.txt"), { recursive: true });
      const again = await cli(["run", "examples/numbers.txt", "--op", "sort", "--partitions", "2", "--out-dir", outDir, "--no-progress"]);
      expect(again.code, again.stderr).toBe(0);
      expect((await readdir(outDir)).sort()).toEqual([live, elsewhere, labs, "_SUCCESS", "part-00000.txt", "part-00001.txt"].sort());
      // The parts, in order, are sort -g of the input.
      const parts =
        (await readFile(path.join(outDir, "part-00000.txt"), "utf8")) + (await readFile(path.join(outDir, "part-00001.txt"), "utf8"));
      expect(parts).toBe(
        execFileSync("sort", ["-g", path.join(ROOT, "examples/numbers.txt")], { env: { ...process.env, LC_ALL: "C" }, encoding: "utf8" }),
      );
    });

    it("--out-dir is refused for an op with one result, which writes no parts there", async () => {
      const outDir = path.join(dir, "one-result-out");
      const r = await cli(["run", "examples/numbers.txt", "--op", "count", "--out-dir", outDir]);
      expect(r.code).toBe(2);
      expect(oneErrorLine(r)).toMatch(/^cloudmill: --out-dir: op count has one result and writes no parts/);
      expect(existsSync(outDir)).toBe(false);
    });

    it("leaves no file behind when the job fails", async () => {
      const outDir = path.join(dir, "out-fail");
      await mkdir(outDir, { recursive: true });
      const out = path.join(outDir, "result.json");
      const r = await cli(["run", "examples/words.txt", "--op", "stats", "--out", out, "--chunk-size", "4KiB"]);
      expect(r.code).toBe(4);
      expect(await readdir(outDir)).toEqual([]);
      const c = capture();
      expect(await runCli(["run", path.join(ROOT, "examples/nope.txt"), "--op", "count", "--out", out], c.io)).toBe(3);
      expect(await readdir(outDir)).toEqual([]);
    });

    it("fails with exit 7 when the file cannot be written", async () => {
      const out = path.join(dir, "no-such-dir", "result.json");
      const c = capture();
      expect(
        await runCli(["run", path.join(ROOT, "examples/words.txt"), "--op", "count", "--out", out, "--no-progress", "-w", "0"], c.io),
      ).toBe(7);
      expect(c.out()).toBe("");
      expect(c.err()).toBe(`cloudmill: --out ${out}: cannot write in ${path.dirname(out)} (no such folder, or not writable)\n`);
    });

    it("an --out-dir that cannot be made fails with exit 7 too, in one line, before the job runs", async () => {
      // /proc takes no new folder, even from root (whom access() lets write anywhere).
      const [top, nested] = await Promise.all(
        ["/proc/cloudmill-parts", "/proc/cloudmill-parts/by-key"].map((outDir) =>
          cli(["run", "examples/numbers.txt", "--op", "sort", "--out-dir", outDir, "--no-progress"]),
        ),
      );
      expect(top!.code).toBe(7);
      expect(oneErrorLine(top!)).toBe("cloudmill: --out-dir /proc/cloudmill-parts: cannot write in /proc (not writable)");
      expect(nested!.code).toBe(7);
      expect(oneErrorLine(nested!)).toBe("cloudmill: --out-dir /proc/cloudmill-parts/by-key: cannot write in /proc (not writable)");
      // A folder that can be made leaves no trace of the try beside it.
      const outDir = path.join(dir, "made", "parts");
      const made = await cli(["run", "examples/numbers.txt", "--op", "sort", "--out-dir", outDir, "--no-progress"]);
      expect(made.code, made.stderr).toBe(0);
      expect(await readdir(path.join(dir, "made"))).toEqual(["parts"]);
    });
  });

  it("stats and histogram over JSONL leave out records whose field is absent or null, and say how many (as Python counts)", async () => {
    const f = path.join(dir, "some-without.jsonl");
    await writeFile(f, '{"a":1}\n{"b":1}\n{"a":null}\n{"a":"2.5"}\n{"a":0.5}\n{}\n');
    const python = [
      "import json, sys",
      "rs = [json.loads(l) for l in open(sys.argv[1])]",
      "vs = [float(r['a']) for r in rs if r.get('a') is not None]",
      "print(json.dumps({'count': len(vs), 'sum': sum(vs), 'missing': len(rs) - len(vs), 'bins': [sum(1 for v in vs if k <= v < k + 1) for k in range(3)]}))",
    ].join("\n");
    const want = JSON.parse(execFileSync("python3", ["-c", python, f], { encoding: "utf8" })) as {
      count: number;
      sum: number;
      missing: number;
      bins: number[];
    };
    expect(want.missing).toBe(3);
    const notice = `cloudmill: skipped ${want.missing} record(s) without the field (absent or null)\n`;
    const [stats, hist] = await Promise.all([
      cli(["run", f, "--op", "stats", "-p", "field=a", "--no-progress"]),
      cli([
        "run",
        f,
        "--op",
        "histogram",
        "-p",
        "field=a",
        "-p",
        "min=0",
        "-p",
        "max=3",
        "-p",
        "bins=3",
        "--no-progress",
        "-w",
        "2",
        "--chunk-size",
        "8",
      ]),
    ]);
    expect(stats.code, stats.stderr).toBe(0);
    expect(JSON.parse(stats.stdout)).toMatchObject({ count: want.count, sum: want.sum });
    expect(stats.stderr).toBe(notice);
    expect(hist.code, hist.stderr).toBe(0);
    expect(JSON.parse(hist.stdout)).toEqual({ min: 0, max: 3, bins: want.bins });
    expect(hist.stderr).toBe(notice);
  });

  it("--skip-bad-records succeeds and says how many records it skipped", async () => {
    const f = path.join(dir, "skip.txt");
    await writeFile(f, "1\nx\n2\ny\n");
    const r = await cli(["run", f, "--op", "stats", "--skip-bad-records", "--no-progress", "--chunk-size", "2"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ count: 2, sum: 3 });
    expect(r.stderr).toBe("cloudmill: skipped 2 bad record(s)\n");
  });

  it("--ops loads user ops, on worker threads too; `cloudmill ops` lists them", async () => {
    const mod = path.join(dir, "user-ops.mjs");
    await writeFile(
      mod,
      `import { defineOp } from ${JSON.stringify(pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href)};
export const longest = defineOp({ name: "longest-line", format: "lines", map: (l) => l.length, combine: (a, b) => Math.max(a, b), finalize: (m) => ({ longest: m ?? 0 }) });
`,
    );
    const text = await readFile(path.join(ROOT, "examples/access.log"), "utf8");
    const want = { longest: Math.max(...text.split("\n").map((l) => l.length)) };
    const [r, listed] = await Promise.all([
      cli(["run", "examples/access.log", "--ops", mod, "--op", "longest-line", "-w", "2", "--chunk-size", "16KiB", "--no-progress"]),
      cli(["ops", "--ops", mod]),
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(want);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^longest-line {2}\(lines\) {2}code [0-9a-f]{16}$/m);
    for (const op of ["checksum", "count", "distinct", "grep", "groupby", "histogram", "sort", "stats", "wordcount"])
      expect(listed.stdout).toMatch(new RegExp(`^${op} `, "m"));
    const c = capture();
    expect(
      await runCli(["run", path.join(ROOT, "examples/access.log"), "--ops", path.join(dir, "missing.mjs"), "--op", "count"], c.io),
    ).toBe(2);
    expect(c.err()).toMatch(/^cloudmill: --ops .*missing\.mjs: cannot load/);
  });
});

describe("a lab's module as written: TypeScript, and one that does not load", () => {
  const DEFINE_OP = () => pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;

  /** A folder with ops/words.ts (a type annotation, an enum, and a relative import of another .ts as `./…js`). */
  const tsLab = async (): Promise<string> => {
    const lab = await mkdtemp(path.join(dir, "ts-lab-"));
    await mkdir(path.join(lab, "ops"));
    await writeFile(
      path.join(lab, "ops", "split.ts"),
      `export const wordsIn = (line: string): number => line.split(/[ \\t\\n\\v\\f\\r]+/).filter((w: string) => w !== "").length;\n`,
    );
    // An enum is TypeScript that type stripping alone (Node 22's) cannot run: it must be compiled.
    await writeFile(
      path.join(lab, "ops", "words.ts"),
      `import { defineOp } from ${JSON.stringify(DEFINE_OP())};
import { wordsIn } from "./split.js";
enum Scale { One = 1 }
interface Words { words: number }
export const tsWords = defineOp({
  name: "ts-words",
  format: "lines",
  map: (line: string): number => wordsIn(line) * Scale.One,
  combine: (a: number, b: number): number => a + b,
  finalize: (n: number | undefined): Words => ({ words: n ?? 0 }),
});
`,
    );
    return lab;
  };

  it.each([
    ["this machine's Node", () => process.execPath],
    ["Node 22, as deployed", node22],
  ])(
    "a .ts module with a relative .ts import runs through `run --ops` on its threads (%s), counting what wc -w counts",
    async (_what, node) => {
      const lab = await tsLab();
      const words = path.join(ROOT, "examples/words.txt");
      const r = await runProcess(
        node(),
        [BIN, "run", words, "--ops", "./ops/words.ts", "--op", "ts-words", "-w", "2", "--chunk-size", "16KiB", "--no-progress"],
        { cwd: lab, env: { ...process.env, CLOUDMILL_DEBUG: "" } },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ words: Number(tool("wc", ["-w", "examples/words.txt"]).split(/\s+/)[0]) });
    },
    60_000,
  );

  it("names a syntax error's file, line and column, and the module as written (run and dev alike)", async () => {
    const lab = await mkdtemp(path.join(dir, "bad-lab-"));
    await mkdir(path.join(lab, "ops"));
    const lines = ["export const a = 1;", "export const b = 2;", "export const c = [1, 2;"];
    await writeFile(path.join(lab, "ops", "bad.mjs"), `${lines.join("\n")}\n`);
    // Independent of the parser: where the stray ";" was written.
    const at = `./ops/bad.mjs:3:${lines[2]!.indexOf(";") + 1}`;
    await writeFile(path.join(lab, "ops", "index.mjs"), 'export * from "./bad.mjs";\n');
    await writeFile(path.join(lab, "ops", "bad.ts"), "export const x: number = (\n");
    const [run, dev, imported, ts] = await Promise.all([
      cli(["run", path.join(ROOT, "examples/words.txt"), "--ops", "./ops/bad.mjs", "--op", "count"], lab),
      cli(["dev", "--port", "0", "--workers", "0", "--ops", "./ops/bad.mjs"], lab),
      cli(["run", path.join(ROOT, "examples/words.txt"), "--ops", "ops/index.mjs", "--op", "count"], lab),
      cli(["run", path.join(ROOT, "examples/words.txt"), "--ops", "./ops/bad.ts", "--op", "count"], lab),
    ]);
    for (const r of [run, dev, imported, ts]) expect(r.code, r.stderr).toBe(2);
    expect(oneErrorLine(run)).toMatch(
      new RegExp(`^cloudmill: --ops \\./ops/bad\\.mjs: cannot load \\(${at.replace(/\./g, "\\.")}: SyntaxError: `),
    );
    expect(oneErrorLine(dev)).toBe(oneErrorLine(run));
    // In a module it imports: named there.
    expect(oneErrorLine(imported)).toMatch(
      new RegExp(`^cloudmill: --ops ops/index\\.mjs: cannot load \\(${at.replace(/\./g, "\\.")}: SyntaxError: `),
    );
    expect(oneErrorLine(ts)).toMatch(/^cloudmill: --ops \.\/ops\/bad\.ts: cannot load \(\.\/ops\/bad\.ts:2:1: SyntaxError: /);
  }, 60_000);

  it("a module or an import that is not there is named, never by cloudmill's own files", async () => {
    const lab = await mkdtemp(path.join(dir, "missing-lab-"));
    await mkdir(path.join(lab, "ops"));
    await writeFile(path.join(lab, "ops", "index.mjs"), 'import { x } from "./helpers.mjs";\nexport const y = x;\n');
    const words = path.join(ROOT, "examples/words.txt");
    const [absent, missingImport] = await Promise.all([
      cli(["run", words, "--ops", "./ops/nothere.mjs", "--op", "count"], lab),
      cli(["run", words, "--ops", "./ops/index.mjs", "--op", "count"], lab),
    ]);
    expect(oneErrorLine(absent)).toBe(
      `cloudmill: --ops ./ops/nothere.mjs: cannot load (no file at ${path.join(lab, "ops", "nothere.mjs")})`,
    );
    expect(oneErrorLine(missingImport)).toBe(
      "cloudmill: --ops ./ops/index.mjs: cannot load (Cannot find module './ops/helpers.mjs' imported from ./ops/index.mjs)",
    );
  });
});

describe("runCli in process", () => {
  const examples = (f: string) => path.join(ROOT, "examples", f);

  it("resolves to 0 with the result on the injected stdout", async () => {
    const c = capture();
    expect(await runCli(["run", examples("words.txt"), "--op", "count", "-w", "0", "--no-progress"], c.io)).toBe(0);
    expect(JSON.parse(c.out())).toEqual({ records: Number(tool("awk", ["END{print NR}", "examples/words.txt"])) });
    expect(c.err()).toBe("");
  });

  const W = ["run", "examples/words.txt"];
  it.each([
    [["run", "examples/nope.txt", "--op", "count"], 3, /^cloudmill: examples\/nope\.txt: no such file or directory\n$/],
    [
      [...W, "--op", "nope"],
      2,
      /^cloudmill: unknown op "nope" \(known: checksum, count, distinct, grep, groupby, histogram, sort, stats, wordcount\)\n$/,
    ],
    [[...W, "--op", "stats", "-w", "0"], 4, /^cloudmill: examples\/words\.txt:1 \(byte 0\): expected a number, got "It was/],
    [[...W, "--op", "wordcount", "-p", "k=-1"], 2, /^cloudmill: wordcount: param k: must be at least 0 \(got "-1"\)\n$/],
    [[...W, "--op", "wordcount", "-p", "k=1", "-p", "k=2"], 2, /^cloudmill: --param k given twice\n$/],
    [
      [...W, "--op", "grep"],
      2,
      /^cloudmill: grep: param pattern: is required \(--param pattern=VALUE, or params\.pattern in a job spec\)\n$/,
    ],
    [[...W, "--op", "grep", "-p", "pattern=a("], 2, /^cloudmill: grep: param pattern: not a valid regular expression/],
    [
      [...W, "--op", "histogram", "-p", "min=1", "-p", "max=0"],
      2,
      /^cloudmill: histogram: param max: min must be less than max \(got "0"\)\n$/,
    ],
    [[...W, "--op", "count", "-p", "bins=3"], 2, /^cloudmill: count: unknown param "bins" \(known: header, separator, multiline\)\n$/],
    [[...W, "--op", "wordcount", "--format", "csv"], 2, /^cloudmill: op wordcount does not read csv \(it reads: lines\)\n$/],
    [[...W, "--op", "count", "-c", "0"], 2, /^cloudmill: (chunkSize|--chunk-size): must be between 1 byte and 1GiB, got 0\n$/],
    [[...W, "--op", "count", "-c", "2GiB"], 2, /^cloudmill: (chunkSize|--chunk-size): must be between 1 byte and 1GiB, got 2147483648\n$/],
    [
      [...W, "--op", "count", "-c", "abc"],
      2,
      /^cloudmill: (chunkSize|--chunk-size): expected a whole number of bytes or a size like 16MiB, got "abc"\n$/,
    ],
    [[...W, "--op", "count", "--workers", "two"], 2, /^cloudmill: --workers: expected a whole number from 0 to 1024\n$/],
    [[...W, "--op", "count", "--workers", "-1"], 2, /^cloudmill: --workers: /],
    [[...W, "--op", "count", "--max-attempts", "0"], 2, /^cloudmill: --max-attempts: /],
    // Commander's own errors: one line, as every other error, naming the help to read.
    [
      [...W, "--op", "count", "--format", "xml"],
      2,
      /^cloudmill: option '--format <format>' argument 'xml' is invalid\. Allowed choices are lines, .*, blob \(see cloudmill run --help\)\n$/,
    ],
    [[...W], 2, /^cloudmill: required option '--op <name>' not specified \(see cloudmill run --help\)\n$/],
    [[...W, "--op", "count", "--bogus"], 2, /^cloudmill: unknown option '--bogus' \(see cloudmill run --help\)\n$/],
    [
      [...W, "--op", "count", "--worker", "2"],
      2,
      /^cloudmill: unknown option '--worker'; did you mean --workers\? \(see cloudmill run --help\)\n$/,
    ],
    [[...W, "--op"], 2, /^cloudmill: option '--op <name>' argument missing \(see cloudmill run --help\)\n$/],
    [["status"], 2, /^cloudmill: missing required argument 'job' \(see cloudmill status --help\)\n$/],
    [["jobs", "extra"], 2, /^cloudmill: too many arguments for 'jobs'\. Expected 0 arguments but got 1 \(see cloudmill jobs --help\)\n$/],
    [["frobnicate"], 2, /^cloudmill: unknown command 'frobnicate' \(see cloudmill --help\)\n$/],
    [["--bogus"], 2, /^cloudmill: unknown option '--bogus' \(see cloudmill --help\)\n$/],
  ] as const)("%j exits %i", async (argv, code, message) => {
    const c = capture();
    const cwd = process.cwd();
    process.chdir(ROOT);
    try {
      expect(await runCli(argv, c.io)).toBe(code);
    } finally {
      process.chdir(cwd);
    }
    expect(c.err()).toMatch(message);
    expect(c.out()).toBe("");
  });

  it("--help and --version exit 0 on stdout", async () => {
    const help = capture();
    expect(await runCli(["run", "--help"], help.io)).toBe(0);
    expect(help.out()).toContain("--chunk-size");
    const version = capture();
    expect(await runCli(["--version"], version.io)).toBe(0);
    expect(version.out().trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});
