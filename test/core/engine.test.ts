/**
 * The local engine end to end: worker threads agree with inline runs, directories and
 * multiple inputs merge into one result in a deterministic order, missing and empty inputs
 * behave as documented, the temp work dir never outlives a run, and user ops loaded from a
 * module run on the threads. Threads run the compiled dist/ (build first).
 */
import { existsSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { runLocal, type LocalRunOptions, type Progress } from "../../lib/local/localEngine.js";
import { ErrorCode, isSerializedError, toCloudmillError, type CloudmillError } from "../../lib/core/errors.js";
import { parseJobSpec, type JobSpecInput } from "../../lib/core/job/spec.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { loadOpsModule } from "../../lib/core/ops/opModules.js";
import { warningsOnly } from "../../lib/core/log.js";
import { refCount, refGrep, refHistogram, refStats, refStatsOf, refWordcount } from "../helpers/reference.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const EXAMPLES = path.join(ROOT, "examples");
const DIST_DEFINE_OP = path.join(ROOT, "dist/lib/core/ops/defineOp.js");

let dir: string;
beforeAll(async () => {
  if (!existsSync(path.join(ROOT, "dist/lib/local/taskThread.js"))) throw new Error("build first: npx tsc -p tsconfig.build.json");
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-engine-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Spec = Omit<JobSpecInput, "inputs"> & { inputs: string[] };
const run = (spec: Spec, options: Partial<LocalRunOptions> = {}) =>
  runLocal({ spec: parseJobSpec(spec), registry: new OpRegistry(), workers: 0, ...options });

const failure = async (p: Promise<unknown>): Promise<CloudmillError> => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  // A user op module imports dist/, whose CloudmillError is another class than lib/'s here.
  expect(isSerializedError(err), String(err)).toBe(true);
  return toCloudmillError(err);
};

const write = async (rel: string, content: string | Buffer): Promise<string> => {
  const p = path.join(dir, rel);
  await mkdir(path.dirname(p), { recursive: true });
  await writeFile(p, content);
  return p;
};

const example = (name: string) => path.join(EXAMPLES, name);

describe("worker threads", () => {
  const jobs: [string, Spec][] = [
    ["count", { op: "count", inputs: [example("words.txt")] }],
    ["wordcount", { op: "wordcount", inputs: [example("access.log")], params: { k: "7" } }],
    ["grep", { op: "grep", inputs: [example("access.log")], params: { pattern: '" 5\\d\\d ', k: "5" } }],
    ["stats", { op: "stats", inputs: [example("numbers.txt")] }],
    ["histogram", { op: "histogram", inputs: [example("numbers.txt")], params: { bins: "7", min: "100", max: "900" } }],
    ["stats over a csv column", { op: "stats", inputs: [example("measurements.csv")], params: { column: "temperature" } }],
    ["stats over a jsonl field", { op: "stats", inputs: [example("events.jsonl")], params: { field: "latency.ms" } }],
  ];

  it.each(jobs)("%s: two threads give the same result as inline, at a chunk size that makes many chunks", async (_name, spec) => {
    const chunked = { ...spec, chunkSize: "4KiB" };
    const inline = await run(chunked, { workers: 0 });
    const threads = await run(chunked, { workers: 2 });
    expect(threads.result).toEqual(inline.result);
    expect(threads.status.chunks).toBeGreaterThan(5);
    expect(threads.status.state).toBe("succeeded");
    // ... and one chunk gives the same answer too.
    expect((await run(spec, { workers: 0 })).result).toEqual(inline.result);
  });

  it("agree with the single-pass reference on the example files", async () => {
    const words = await readFile(example("words.txt"));
    const log = await readFile(example("access.log"));
    const numbers = await readFile(example("numbers.txt"));
    const threads = { workers: 2 };
    expect((await run({ op: "count", inputs: [example("words.txt")], chunkSize: 1000 }, threads)).result).toEqual(refCount(words));
    expect((await run({ op: "wordcount", inputs: [example("words.txt")], chunkSize: 1000, params: { k: "12" } }, threads)).result).toEqual(
      refWordcount(words, 12),
    );
    expect(
      (await run({ op: "grep", inputs: [example("access.log")], chunkSize: 999, params: { pattern: " 404 ", k: "4" } }, threads)).result,
    ).toEqual(refGrep(log, " 404 ", 4));
    expect((await run({ op: "stats", inputs: [example("numbers.txt")], chunkSize: 777 }, threads)).result).toEqual(refStats(numbers));
    expect(
      (
        await run(
          { op: "histogram", inputs: [example("numbers.txt")], chunkSize: 777, params: { bins: "9", min: "0", max: "700" } },
          threads,
        )
      ).result,
    ).toEqual(refHistogram(numbers, 9, 0, 700));
  });

  it("fail a job with a bad record naming file and line, as inline does", async () => {
    const f = await write("threads/bad.txt", `${"1\n".repeat(500)}oops\n${"2\n".repeat(500)}`);
    for (const workers of [0, 2]) {
      const e = await failure(run({ op: "stats", inputs: [f], chunkSize: 64 }, { workers }));
      expect(e.code).toBe(ErrorCode.BAD_RECORD);
      expect(e.describe()).toBe(`${f}:501 (byte 1000): expected a number, got "oops"`);
    }
  });

  it("report progress up to every chunk and byte", async () => {
    const seen: Progress[] = [];
    const { status } = await run(
      { op: "count", inputs: [example("words.txt")], chunkSize: "8KiB" },
      { workers: 2, onProgress: (p) => seen.push(p) },
    );
    const last = seen[seen.length - 1]!;
    expect(seen).toHaveLength(status.chunks);
    expect(last.chunksDone).toBe(status.chunks);
    expect(last.bytesDone).toBe(last.bytes);
    expect(last.bytes).toBe((await readFile(example("words.txt"))).length);
  });
});

describe("inputs", () => {
  it("reads a directory recursively, in a deterministic path order, whatever the creation order", async () => {
    // Created out of order on purpose.
    await write("tree/b.txt", "b1\nb2\n");
    await write("tree/a/y/z.txt", "z\n");
    await write("tree/c.txt", "");
    await write("tree/A.txt", "A\n");
    await write("tree/a/x.txt", "ax\n");
    const tree = path.join(dir, "tree");
    const order = ["A.txt", "a/x.txt", "a/y/z.txt", "b.txt"].map((f) => path.join(tree, f));
    for (const workers of [0, 2]) {
      const { result, status } = await run({ op: "grep", inputs: [tree], params: { pattern: ".", k: "100" }, chunkSize: 2 }, { workers });
      expect(status.inputs).toEqual([...order, path.join(tree, "c.txt")]);
      expect(result).toEqual({
        matches: 5,
        samples: [
          { line: "A", offset: 0, input: order[0] },
          { line: "ax", offset: 0, input: order[1] },
          { line: "z", offset: 0, input: order[2] },
          { line: "b1", offset: 0, input: order[3] },
          { line: "b2", offset: 3, input: order[3] },
        ],
      });
    }
    expect((await run({ op: "count", inputs: [tree] })).result).toEqual({ records: 5 });
  });

  it("walks a directory in byte order of whole paths, as S3 lists the same files: a.txt before the folder a's a/x.txt", async () => {
    for (const f of ["a/x.txt", "a.txt", "a-b.txt", "a/b/c.txt", "a0.txt", "a b.txt", "ab/z.txt"]) await write(`bytes/${f}`, `${f}\n`);
    const tree = path.join(dir, "bytes");
    const sorted = execFileSync("sh", ["-c", 'find "$1" -type f | LC_ALL=C sort', "sh", tree], { encoding: "utf8" }).trim().split("\n");
    const { status, result } = await run({ op: "grep", inputs: [tree], params: { pattern: "txt", k: "1" } });
    expect(status.inputs).toEqual(sorted);
    expect(result).toMatchObject({ matches: 7, samples: [{ input: sorted[0] }] });
  });

  it("follows symbolic links in a directory as `find -L -type f` does: a loop once, a link to nothing is no file", async () => {
    await write("linked/real.txt", "r1\nr2\n");
    await write("elsewhere/sub/far.txt", "f1\n");
    const linked = path.join(dir, "linked");
    await symlink(path.join(linked, "real.txt"), path.join(linked, "link.txt"));
    await symlink(path.join(dir, "elsewhere"), path.join(linked, "there"));
    await symlink(linked, path.join(linked, "loop"));
    // find says "File system loop detected" of the loop, and exits 1 for it.
    const found = execFileSync("sh", ["-c", 'find -L "$1" -type f 2>/dev/null; true', "sh", linked], { encoding: "utf8" })
      .trim()
      .split("\n")
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    const { status, result } = await run({ op: "count", inputs: [linked] });
    expect(status.inputs).toEqual(found);
    expect(result).toEqual({ records: 5 });
    // An editor's lock file is a link to nothing.
    await symlink("user@host.1234:1700000000", path.join(linked, ".#real.txt"));
    const again = await run({ op: "count", inputs: [linked] });
    expect(again.status.inputs).toEqual(found);
    expect(again.result).toEqual({ records: 5 });
  });

  it("refuses a file name that is not UTF-8, which as text would name another file (even a sibling)", async () => {
    const folder = path.join(dir, "latin1");
    await mkdir(folder, { recursive: true });
    // caf\xe9.txt (Latin-1) holds two numbers; its sibling is named what that name reads as in UTF-8.
    await writeFile(Buffer.concat([Buffer.from(`${folder}/caf`), Buffer.from([0xe9]), Buffer.from(".txt")]), "100\n200\n");
    await writeFile(path.join(folder, "caf\uFFFD.txt"), "1\n");
    expect(execFileSync("sh", ["-c", 'cat "$1"/* | wc -l', "sh", folder], { encoding: "utf8" }).trim()).toBe("3");
    const err = await failure(run({ op: "stats", inputs: [folder] }));
    expect(err.code).toBe(ErrorCode.INVALID_SPEC);
    expect(err.message).toContain("a file name is not UTF-8");
    expect(err.message).toContain("636166e92e747874");
  });

  it("gives runs whose parts differ (format, partitions) their own job id, so their own default --out-dir", async () => {
    const input = await write("ids/n.txt", "10\n9\n100\n");
    const outDir = path.join(dir, "ids-out");
    let runs = 0;
    const idOf = async (extra: Partial<Spec>) =>
      (await run({ op: "sort", inputs: [input], ...extra }, { outDir: path.join(outDir, String(runs++)) })).status.jobId;
    const ids = [await idOf({ format: "lines" }), await idOf({ format: "numbers" }), await idOf({ format: "numbers", partitions: 3 })];
    expect(new Set(ids).size).toBe(3);
    expect(await idOf({ format: "lines" })).toBe(ids[0]);
  });

  it("names directory inputs relative to the path given", async () => {
    await write("rel/sub/one.txt", "needle\n");
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const { result } = await run({ op: "grep", inputs: ["rel", "rel/sub/one.txt"], params: { pattern: "needle" } });
      expect(result).toEqual({
        matches: 2,
        samples: [
          { line: "needle", offset: 0, input: path.join("rel", "sub", "one.txt") },
          { line: "needle", offset: 0, input: "rel/sub/one.txt" },
        ],
      });
    } finally {
      process.chdir(cwd);
    }
  });

  it("merges several inputs (files, directories, empty files) into one result", async () => {
    const a = await write("multi/a.txt", "1\n2.5\n");
    const empty = await write("multi/empty.txt", "");
    await write("multi/more/b.txt", "-4\n\n8\n");
    await write("multi/more/c.txt", "1e3");
    const all = [1, 2.5, -4, 8, 1e3];
    const inputs = [empty, a, path.join(dir, "multi/more"), empty];
    for (const [workers, chunkSize] of [
      [0, 1],
      [2, 3],
      [2, 1024],
    ] as const) {
      expect((await run({ op: "stats", inputs, chunkSize }, { workers })).result).toEqual(refStatsOf(all));
      expect((await run({ op: "count", inputs, chunkSize }, { workers })).result).toEqual({ records: 2 + 3 + 1 });
    }
    const text = [await write("w/1.txt", "x y\nz"), await write("w/2.txt", "z x\n\nx")];
    expect((await run({ op: "wordcount", inputs: text, chunkSize: 2 })).result).toEqual(refWordcount(Buffer.from("x y\nz\nz x\n\nx")));
  });

  it("a missing input is INPUT_NOT_FOUND naming it, even beside inputs that exist", async () => {
    const there = await write("there.txt", "x\n");
    const missing = path.join(dir, "not-there.txt");
    const e = await failure(run({ op: "count", inputs: [there, missing] }));
    expect(e.code).toBe(ErrorCode.INPUT_NOT_FOUND);
    expect(e.context.input).toBe(missing);
    expect(e.describe()).toBe(`${missing}: no such file or directory`);
  });

  it("an empty directory is INPUT_NOT_FOUND; an empty file has 0 records", async () => {
    await mkdir(path.join(dir, "hollow"), { recursive: true });
    const e = await failure(run({ op: "count", inputs: [path.join(dir, "hollow")] }));
    expect(e.code).toBe(ErrorCode.INPUT_NOT_FOUND);
    expect(e.message).toMatch(/no files/);
    const empty = await write("zero.txt", "");
    for (const workers of [0, 2]) {
      const { result, status } = await run({ op: "count", inputs: [empty] }, { workers });
      expect(result).toEqual({ records: 0 });
      expect(status).toMatchObject({ state: "succeeded", chunks: 0 });
    }
    expect((await run({ op: "stats", inputs: [empty] })).result).toEqual({
      count: 0,
      sum: 0,
      min: null,
      max: null,
      mean: null,
      variance: null,
    });
    expect((await run({ op: "wordcount", inputs: [empty] })).result).toEqual({ total: 0, distinct: 0, top: [] });
  });

  it("checks op, params and format before reading anything", async () => {
    const f = await write("p.txt", "1\n");
    expect((await failure(run({ op: "nope", inputs: [f] }))).code).toBe(ErrorCode.UNKNOWN_OP);
    const bad = await failure(run({ op: "histogram", inputs: [f], params: { min: "1", max: "0" } }));
    expect(bad.code).toBe(ErrorCode.INVALID_SPEC);
    expect(bad.message).toBe('histogram: param max: min must be less than max (got "0")');
    const format = await failure(run({ op: "wordcount", inputs: [f], format: "csv" }));
    expect(format.code).toBe(ErrorCode.INVALID_SPEC);
    expect(format.message).toBe("op wordcount does not read csv (it reads: lines)");
  });

  it("is cancelled by an aborted signal", async () => {
    const e = await failure(run({ op: "count", inputs: [example("words.txt")], chunkSize: 100 }, { signal: AbortSignal.abort() }));
    expect(e.code).toBe(ErrorCode.CANCELLED);
  });
});

describe("the temp work dir", () => {
  let tmp: string;
  let saved: string | undefined;
  beforeEach(async () => {
    // os.tmpdir() follows TMPDIR: point it at an empty directory we can watch.
    tmp = await mkdtemp(path.join(dir, "tmpdir-"));
    saved = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  });

  it("is where intermediate state goes (kept on request)", async () => {
    expect(os.tmpdir()).toBe(tmp);
    const { jobId } = await run({ op: "count", inputs: [example("words.txt")], chunkSize: "16KiB" }, { keepWork: true });
    const [work] = await readdir(tmp);
    expect(work).toMatch(/^cloudmill-/);
    const kept = path.join(tmp, work!);
    expect(JSON.parse(await readFile(path.join(kept, "result.json"), "utf8"))).toEqual(refCount(await readFile(example("words.txt"))));
    expect((await readdir(path.join(kept, "_work", jobId, "parts"))).length).toBeGreaterThan(1);
  });

  it("is removed after success, inline and on threads", async () => {
    for (const workers of [0, 2]) {
      await run({ op: "count", inputs: [example("words.txt")], chunkSize: "16KiB" }, { workers });
      expect(await readdir(tmp)).toEqual([]);
    }
  });

  it("is removed after failure: bad record, bad params, cancellation", async () => {
    const bad = await write("wd/bad.txt", "1\nx\n");
    for (const workers of [0, 2]) {
      expect((await failure(run({ op: "stats", inputs: [bad], chunkSize: 1 }, { workers }))).code).toBe(ErrorCode.BAD_RECORD);
      expect(await readdir(tmp)).toEqual([]);
    }
    await failure(run({ op: "histogram", inputs: [bad], params: { bins: "0", min: "0", max: "1" } }));
    await failure(run({ op: "count", inputs: [example("words.txt")], chunkSize: 100 }, { signal: AbortSignal.abort() }));
    expect(await readdir(tmp)).toEqual([]);
  });
});

describe("user ops from a module (--ops)", () => {
  let modulePath: string;
  let crashMarker: string;
  /** fragile-count kills its thread once, on the first record at or past this offset. */
  const CRASH_AT = 7000;
  beforeAll(async () => {
    crashMarker = path.join(dir, "ops/crashed");
    modulePath = await write(
      "ops/my-ops.mjs",
      `import { existsSync, writeFileSync } from "node:fs";
import { threadId } from "node:worker_threads";
import { defineOp } from ${JSON.stringify(pathToFileURL(DIST_DEFINE_OP).href)};
export const fragile = defineOp({
  name: "fragile-count",
  format: "lines",
  orderFree: true,
  map: (_line, _params, meta) => {
    if (meta.offset >= ${CRASH_AT} && !existsSync(${JSON.stringify(crashMarker)})) {
      // Created exclusively: two threads past the offset at once must not both crash.
      let first = true;
      try {
        writeFileSync(${JSON.stringify(crashMarker)}, "", { flag: "wx" });
      } catch {
        first = false;
      }
      if (first) process.exit(3); // in a worker thread: ends the thread, as a crash would
    }
    return 1;
  },
  combine: (a, b) => a + b,
  finalize: (n) => ({ records: n ?? 0 }),
});
// Partials say which thread made them; combining two threads' totals (the end of the job)
// fails once, half done: the total it was merging into is left holding the other's count.
export const touchy = defineOp({
  name: "touchy-count",
  format: "lines",
  orderFree: true,
  map: () => ({ n: 1, thread: threadId }),
  combine: (a, b) => {
    if (a.thread !== b.thread && !existsSync(${JSON.stringify(path.join(dir, "ops", "touched"))})) {
      writeFileSync(${JSON.stringify(path.join(dir, "ops", "touched"))}, "");
      a.n += b.n;
      throw new Error("cannot combine these");
    }
    return { n: a.n + b.n, thread: a.thread };
  },
  finalize: (p) => ({ records: p?.n ?? 0 }),
});
export const longest = defineOp({
  name: "longest-line",
  format: "lines",
  map: (line) => line.length,
  combine: (a, b) => Math.max(a, b),
  finalize: (max) => ({ longest: max ?? 0 }),
});
export const firsts = defineOp({
  name: "first-fields",
  format: "csv",
  map: (row) => [Array.isArray(row) ? row[0] : Object.values(row)[0]],
  combine: (a, b) => [...a, ...b].sort(),
});
`,
    );
  });

  const registryWith = async (): Promise<OpRegistry> => {
    const r = new OpRegistry();
    expect((await loadOpsModule(modulePath, r)).sort()).toEqual(["first-fields", "fragile-count", "longest-line", "touchy-count"]);
    return r;
  };

  it("run on worker threads, which load the module themselves", async () => {
    const registry = await registryWith();
    const lines = (await readFile(example("words.txt"), "utf8")).split("\n").map((l) => l.length);
    const want = { longest: Math.max(...lines) };
    const spec = parseJobSpec({ op: "longest-line", inputs: [example("words.txt")], chunkSize: "2KiB" });
    const { result, status } = await runLocal({ spec, registry, opsModules: [modulePath], workers: 2 });
    expect(result).toEqual(want);
    expect(status.chunks).toBeGreaterThan(10);
    expect((await runLocal({ spec, registry, workers: 0 })).result).toEqual(want);
    // Without the module the threads do not know the op: proof that they loaded it above.
    const e = await failure(runLocal({ spec, registry, workers: 2 }));
    expect(e.code).toBe(ErrorCode.UNKNOWN_OP);
  });

  /**
   * Runs an order-free user op over `lines` numbered lines in 1 KiB chunks on two threads; also
   * gives how many chunks the engine said it mapped again (0 if it said nothing).
   */
  const runOverLines = async (op: string, lines: number, workDir?: string) => {
    const registry = await registryWith();
    const f = await write(`ops/${op}.txt`, Array.from({ length: lines }, (_, i) => `line ${i}\n`).join(""));
    const spec = parseJobSpec({ op, inputs: [f], chunkSize: "1KiB" });
    const warnings: string[] = [];
    const run = await runLocal({
      spec,
      registry,
      opsModules: [modulePath],
      workers: 2,
      ...(workDir ? { workDir } : {}),
      log: warningsOnly((l) => warnings.push(l)),
    });
    const again = warnings.map((w) => /mapping them again \{"chunks":(\d+)\}/.exec(w)?.[1]).find(Boolean);
    return { ...run, again: Number(again ?? 0) };
  };

  it("lose nothing when a task thread dies mid-job: the chunks only its running total held are mapped again", async () => {
    // An order-free op is merged on the threads as they map, with no part written; the thread
    // that dies takes its running total (several chunks by then) with it.
    const lines = 2000;
    const workDir = path.join(dir, "ops/work");
    const { jobId, result, status, again } = await runOverLines("fragile-count", lines, workDir);
    expect(existsSync(crashMarker)).toBe(true);
    expect(status.chunks).toBeGreaterThan(2 * Math.ceil(CRASH_AT / 1024));
    expect(result).toEqual({ records: lines });
    expect(again).toBeGreaterThan(0);
    // Only the dead thread's share: the chunks in the surviving thread's total are not mapped again.
    expect(again).toBeLessThan(status.chunks / 2);
    // Parts exist only for what was mapped again: the lost chunks and the one the crash cut short.
    const parts = (await readdir(path.join(workDir, "_work", jobId, "parts"))).length;
    expect(parts - again).toBeGreaterThanOrEqual(0);
    expect(parts - again).toBeLessThanOrEqual(1);
    await rm(workDir, { recursive: true, force: true });
  });

  it("lose nothing and count nothing twice when merging the threads' totals fails: that thread's state is dropped and the chunks mapped again", async () => {
    const lines = 3000;
    const { result, status, again } = await runOverLines("touchy-count", lines);
    expect(existsSync(path.join(dir, "ops", "touched"))).toBe(true);
    expect(result).toEqual({ records: lines });
    // Both totals were in the failed merge: every chunk is mapped again.
    expect(again).toBe(status.chunks);
  });

  it("read csv with the job's header and separator options", async () => {
    const registry = await registryWith();
    const f = await write("ops/data.csv", 'k;v\n"b;1";x\na;y\n');
    for (const workers of [0, 2]) {
      const spec = parseJobSpec({ op: "first-fields", inputs: [f], params: { separator: ";" }, chunkSize: 3 });
      expect((await runLocal({ spec, registry, opsModules: [modulePath], workers })).result).toEqual(["a", "b;1"]);
      const noHeader = parseJobSpec({ op: "first-fields", inputs: [f], params: { separator: ";", header: "false" }, chunkSize: 3 });
      expect((await runLocal({ spec: noHeader, registry, opsModules: [modulePath], workers })).result).toEqual(["a", "b;1", "k"]);
    }
    const e = await failure(
      runLocal({ spec: parseJobSpec({ op: "first-fields", inputs: [f], params: { separator: "" } }), registry, workers: 0 }),
    );
    expect(e.code).toBe(ErrorCode.INVALID_SPEC);
    expect(e.message).toMatch(/^first-fields: param separator: /);
    const unknown = await failure(
      runLocal({ spec: parseJobSpec({ op: "longest-line", inputs: [f], params: { k: "1" } }), registry, workers: 0 }),
    );
    expect(unknown.message).toBe('longest-line: unknown param "k" (it takes none)');
  });

  it("a module that exports no op is refused", async () => {
    const empty = await write("ops/none.mjs", "export const x = 1;\n");
    const e = await failure(loadOpsModule(empty, new OpRegistry()));
    expect(e.code).toBe(ErrorCode.INVALID_SPEC);
    expect(e.message).toBe(`--ops ${empty}: exports no op (make them with defineOp)`);
  });
});
