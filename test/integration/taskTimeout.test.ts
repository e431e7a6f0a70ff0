/**
 * A lab's op that never returns cannot hold a worker: the worker maps each chunk on a thread of
 * its own, ends it at the chunk's time limit, and counts a failed attempt; after the last, the
 * job fails with TASK_TIMEOUT naming the chunk, nothing is left queued, and the same worker
 * processes take the next job. The local engine ends a task thread past its time the same way.
 * Such a job, resumed with a longer limit (`cloudmill retry`), maps only its chunks with no part.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ENV } from "../../lib/core/constants.js";
import type { CloudmillError } from "../../lib/core/errors.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { opsRegistry } from "../../lib/core/ops/opModules.js";
import { defineOp } from "../../lib/core/ops/defineOp.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { cli } from "../helpers/cli.js";
import {
  BIN,
  requireBuild,
  ROOT,
  spawnChild,
  startTestCloud,
  type TestCloud,
  textOf,
  expectMatchesReference,
  waitFor,
} from "../helpers/devCloud.js";

let dir: string;
let cloud: TestCloud;
let module: string;

beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-timeout-"));
  module = path.join(dir, "stuck-ops.mjs");
  const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
  await writeFile(
    module,
    `import { writeFileSync } from "node:fs";
import { defineOp } from ${JSON.stringify(defineOp)};
// The same, writing the file SPIN_MARK names just before it spins.
export const markedStuck = defineOp({
  name: "marked-stuck",
  format: "lines",
  map: (line) => { if (line === "spin") { writeFileSync(process.env.SPIN_MARK, ""); for (;;) {} } return 1; },
  combine: (a, b) => a + b,
});
// Never returns on a line that says so: a loop no timer on its thread can interrupt.
export const stuck = defineOp({
  name: "stuck",
  format: "lines",
  map: (line) => { if (line === "spin") for (;;) {} return 1; },
  combine: (a, b) => a + b,
});
// Takes 3 s on a line that says so (a chunk that needs more time than its job first gave it).
export const slow = defineOp({
  name: "slow",
  format: "lines",
  map: (line) => { if (line === "slow") { const end = Date.now() + 3000; while (Date.now() < end) {} } return 1; },
  combine: (a, b) => a + b,
});
// Merging two chunks' counts (a merge task's work, on a thread of the worker) never returns.
export const stuckMerge = defineOp({
  name: "stuck-merge",
  format: "lines",
  orderFree: true,
  map: () => 1,
  combine: (a, b) => { if (a >= 8 && b >= 8) for (;;) {} return a + b; },
});
// A reduce task's reduce (on a thread of the worker) never returns for one key.
export const stuckReduce = defineOp({
  name: "stuck-reduce",
  format: "lines",
  pairs: (line, emit) => emit(line.slice(-1), 1),
  reduce: (key, values) => { if (key === "3") for (;;) {} return { key, n: values.length }; },
});
// Merging two chunks' counts on the reducer's side (in chunk order), or finalizing them, never returns past 8 lines.
export const stuckFold = defineOp({
  name: "stuck-fold",
  format: "lines",
  map: () => 1,
  combine: (a, b) => { if (a + b > 8) for (;;) {} return a + b; },
});
export const stuckFinalize = defineOp({
  name: "stuck-finalize",
  format: "lines",
  map: () => 1,
  combine: (a, b) => a + b,
  finalize: (n) => { if (n > 8) for (;;) {} return { lines: n }; },
});
// A reduce task's reduce takes 6 s for one key.
export const slowReduce = defineOp({
  name: "slow-reduce",
  format: "lines",
  pairs: (line, emit) => emit(line.slice(-1), 1),
  reduce: (key, values) => { if (key === "3") { const end = Date.now() + 6000; while (Date.now() < end) {} } return { key, n: values.length }; },
});
`,
  );
  cloud = await startTestCloud({
    chunkSize: 64,
    maxAttempts: 2,
    opsModules: [module],
    workerEnv: { [ENV.TASK_TIMEOUT_SECONDS]: "2" },
  });
}, 90_000);

afterAll(async () => {
  await cloud?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("a chunk past its time limit", () => {
  it("fails its job with TASK_TIMEOUT after every attempt; the workers live on and take the next job", async () => {
    const pids = cloud.cloud.workerPids();
    const lines = Array.from({ length: 40 }, (_, i) => (i === 25 ? "spin" : `line ${i}`));
    await cloud.put("_inputs/stuck.txt", `${lines.join("\n")}\n`);
    await cloud.put("_jobs/stuck-1.json", JSON.stringify({ op: "stuck", inputs: [`s3://${cloud.input}/_inputs/stuck.txt`] }));
    const status = await cloud.waitForEnd("_jobs/stuck-1/status.json", 120_000);
    expect(status.state).toBe("failed");
    expect(status.error).toMatchObject({
      code: "TASK_TIMEOUT",
      message: expect.stringContaining("did not finish within 2 s (taskTimeoutSeconds)"),
    });
    expect(status.error?.message).toMatch(/stuck\.txt \(bytes \d+-\d+\)/);
    await cloud.waitForIdle();
    expect(cloud.cloud.workerPids()).toEqual(pids);

    const bytes = textOf(5_000, 3);
    await cloud.put("_inputs/next.txt", bytes);
    await cloud.put(
      "_jobs/next-1.json",
      JSON.stringify({ op: "count", inputs: [`s3://${cloud.input}/_inputs/next.txt`], chunkSize: 4096 }),
    );
    expect((await cloud.waitForEnd("_jobs/next-1/status.json")).state).toBe("succeeded");
    expectMatchesReference("count", {}, bytes, await cloud.getJson(cloud.output, "_jobs/next-1/result.json"));
  }, 180_000);

  it("a job's own taskTimeoutSeconds is the limit its chunks meet on the workers", async () => {
    await cloud.put("_inputs/stuck-own.txt", "a\nspin\nb\n");
    const spec = { op: "stuck", inputs: [`s3://${cloud.input}/_inputs/stuck-own.txt`], taskTimeoutSeconds: 1, maxAttempts: 1 };
    await cloud.put("_jobs/stuck-own.json", JSON.stringify(spec));
    const status = await cloud.waitForEnd("_jobs/stuck-own/status.json", 60_000);
    expect(status.error).toMatchObject({
      code: "TASK_TIMEOUT",
      message: expect.stringContaining("did not finish within 1 s (taskTimeoutSeconds)"),
    });
    await cloud.waitForIdle();
  }, 90_000);
});

describe("a lab op's merge and reduce tasks past their limits", () => {
  let fast: TestCloud;
  beforeAll(async () => {
    // Tasks come back 3 s after their worker ends, so the two attempts take seconds, not minutes.
    fast = await startTestCloud({ chunkSize: 64, maxAttempts: 2, visibilitySeconds: 3, opsModules: [module] });
  }, 90_000);
  afterAll(async () => fast?.stop(), 60_000);

  /** Lines of 8 bytes: 8 to a 64-byte chunk. */
  const eightByteLines = (n: number) => Array.from({ length: n }, (_, i) => `l${String(i).padStart(6, "0")}\n`).join("");

  it("stuck-merge: a lab op's merge ends on its thread at the task's limit; the job fails TASK_TIMEOUT and the workers live on", async () => {
    const pids = fast.cloud.workerPids();
    await fast.put("_inputs/stuck-merge.txt", eightByteLines(48));
    const spec = { op: "stuck-merge", inputs: [`s3://${fast.input}/_inputs/stuck-merge.txt`], taskTimeoutSeconds: 2, fanIn: 2 };
    await fast.put("_jobs/stuck-merge-1.json", JSON.stringify(spec));
    const status = await fast.waitForEnd("_jobs/stuck-merge-1/status.json", 90_000);
    expect(status.state).toBe("failed");
    expect(status.error).toMatchObject({
      code: "TASK_TIMEOUT",
      message: expect.stringMatching(
        /^merge task [0-2] of level 1 failed after 2 attempts: the merge task did not finish within 2 s \(taskTimeoutSeconds\)$/,
      ),
    });
    await fast.waitForIdle(60_000);
    expect(fast.cloud.workerPids()).toEqual(pids);

    const bytes = textOf(5_000, 3);
    await fast.put("_inputs/after-stuck-merge.txt", bytes);
    const next = { op: "count", inputs: [`s3://${fast.input}/_inputs/after-stuck-merge.txt`], chunkSize: 4096 };
    await fast.put("_jobs/after-stuck-merge.json", JSON.stringify(next));
    expect((await fast.waitForEnd("_jobs/after-stuck-merge/status.json")).state).toBe("succeeded");
    expectMatchesReference("count", {}, bytes, await fast.getJson(fast.output, "_jobs/after-stuck-merge/result.json"));
  }, 180_000);

  it("stuck-reduce: a lab op's reduce ends on its thread at the task's limit; the job fails TASK_TIMEOUT naming the partition, and the workers live on", async () => {
    const pids = fast.cloud.workerPids();
    await fast.put("_inputs/stuck-reduce-1.txt", eightByteLines(48));
    const spec = { op: "stuck-reduce", inputs: [`s3://${fast.input}/_inputs/stuck-reduce-1.txt`], taskTimeoutSeconds: 2, partitions: 1 };
    await fast.put("_jobs/stuck-reduce-1.json", JSON.stringify(spec));
    const status = await fast.waitForEnd("_jobs/stuck-reduce-1/status.json", 90_000);
    expect(status.state).toBe("failed");
    expect(status.error).toMatchObject({
      code: "TASK_TIMEOUT",
      message: expect.stringMatching(
        /^partition 0: .*partition 0's reduce task of job stuck-reduce-1 did not finish within 2 s \(taskTimeoutSeconds\)$/,
      ),
    });
    await fast.waitForIdle(60_000);
    expect(fast.cloud.workerPids()).toEqual(pids);

    const bytes = textOf(5_000, 3);
    await fast.put("_inputs/after-stuck-reduce.txt", bytes);
    const next = { op: "count", inputs: [`s3://${fast.input}/_inputs/after-stuck-reduce.txt`], chunkSize: 4096 };
    await fast.put("_jobs/after-stuck-reduce.json", JSON.stringify(next));
    expect((await fast.waitForEnd("_jobs/after-stuck-reduce/status.json")).state).toBe("succeeded");
    expectMatchesReference("count", {}, bytes, await fast.getJson(fast.output, "_jobs/after-stuck-reduce/result.json"));
  }, 180_000);

  it("stuck-finalize: a lab op's finalize that never returns on the reducer fails the job TASK_TIMEOUT; the cloud answers on", async () => {
    await fast.put("_inputs/stuck-finalize.txt", eightByteLines(48));
    const spec = { op: "stuck-finalize", inputs: [`s3://${fast.input}/_inputs/stuck-finalize.txt`], taskTimeoutSeconds: 2 };
    await fast.put("_jobs/stuck-finalize.json", JSON.stringify(spec));
    const status = await fast.waitForEnd("_jobs/stuck-finalize/status.json", 90_000);
    expect(status.state).toBe("failed");
    expect(status.error).toMatchObject({
      code: "TASK_TIMEOUT",
      message: "job stuck-finalize's finalize did not finish within 2 s (taskTimeoutSeconds)",
    });
    await fast.waitForIdle(60_000);
    const bytes = textOf(5_000, 3);
    await fast.put("_inputs/after-stuck-finalize.txt", bytes);
    const next = { op: "count", inputs: [`s3://${fast.input}/_inputs/after-stuck-finalize.txt`], chunkSize: 4096 };
    await fast.put("_jobs/after-stuck-finalize.json", JSON.stringify(next));
    expect((await fast.waitForEnd("_jobs/after-stuck-finalize/status.json")).state).toBe("succeeded");
    expectMatchesReference("count", {}, bytes, await fast.getJson(fast.output, "_jobs/after-stuck-finalize/result.json"));
  }, 180_000);

  it("slow-reduce: a reduce call longer than the visibility timeout keeps its heartbeats (it is on its thread) and ends exact, once", async () => {
    const pids = fast.cloud.workerPids();
    const text = eightByteLines(48);
    await fast.put("_inputs/slow-reduce.txt", text);
    // 6 s in one call, twice the queue's 3 s visibility timeout: the task's limit (60 s) is what holds.
    const spec = { op: "slow-reduce", inputs: [`s3://${fast.input}/_inputs/slow-reduce.txt`], taskTimeoutSeconds: 60, partitions: 2 };
    await fast.put("_jobs/slow-reduce.json", JSON.stringify(spec));
    const status = await fast.waitForEnd("_jobs/slow-reduce/status.json", 90_000);
    expect(status.state).toBe("succeeded");
    const result = (await fast.getJson(fast.output, "_jobs/slow-reduce/result.json")) as { parts: { key: string }[] };
    const rows: unknown[] = [];
    for (const part of result.parts) {
      const body = (await fast.get(fast.output, part.key.replace(`s3://${fast.output}/`, "")))!.toString();
      for (const line of body.split("\n").filter(Boolean)) rows.push(JSON.parse(line));
    }
    // awk's count of the lines by their last character.
    const awk = execFileSync("awk", ["{ n[substr($0, length($0))]++ } END { for (k in n) print k, n[k] }"], { input: text }).toString();
    const expected = awk
      .trim()
      .split("\n")
      .map((l) => l.split(" "))
      .map(([key, n]) => ({ key, n: Number(n) }));
    expect(rows).toEqual(expect.arrayContaining(expected));
    expect(rows.length).toBe(expected.length);
    await fast.waitForIdle(60_000);
    expect(fast.cloud.workerPids()).toEqual(pids);
  }, 180_000);
});

describe("resume instead of rerun", () => {
  it("cloudmill retry --task-timeout maps only the chunks with no part, keeps the others, and ends exact", async () => {
    const lines = Array.from({ length: 60 }, (_, i) => (i === 20 ? "slow" : `line ${i}`));
    await cloud.put("_inputs/slow.txt", `${lines.join("\n")}\n`);
    const spec = { op: "slow", inputs: [`s3://${cloud.input}/_inputs/slow.txt`], taskTimeoutSeconds: 1, maxAttempts: 1 };
    await cloud.put("_jobs/slow-1.json", JSON.stringify(spec));
    const failed = await cloud.waitForEnd("_jobs/slow-1/status.json", 60_000);
    expect(failed.error?.code).toBe("TASK_TIMEOUT");
    await cloud.waitForIdle();
    const before = new Map<string, string>();
    for (const key of await cloud.keys(cloud.output, "_work/slow-1/parts/"))
      before.set(key, (await cloud.get(cloud.output, key))!.toString());
    expect(before.size).toBeLessThan(failed.chunks);

    const retried = await cli(["retry", "slow-1", "--task-timeout", "60", "--endpoint", cloud.cloud.endpoint]);
    expect(retried).toMatchObject({ code: 0, stderr: "" });
    const rerun = failed.chunks - before.size;
    expect(retried.stdout).toBe(
      `job slow-1 resumed: ${rerun} of ${failed.chunks} tasks to run again (${before.size} kept); \`cloudmill wait slow-1\` waits for it\n`,
    );
    const status = await cloud.waitForEnd("_jobs/slow-1/status.json", 60_000);
    expect(status).toMatchObject({ state: "succeeded", retries: 1, resumed: { tasks: rerun } });
    expect(await cloud.getJson(cloud.output, "_jobs/slow-1/result.json")).toBe(lines.length);
    // The parts written before the retry are byte for byte the same; exactly the others were mapped since.
    const after = await cloud.keys(cloud.output, "_work/slow-1/parts/");
    expect(after.length).toBe(failed.chunks);
    for (const [key, body] of before) expect((await cloud.get(cloud.output, key))!.toString()).toBe(body);
    let mappedSince = 0;
    for (const key of after) {
      const part = (await cloud.getJson(cloud.output, key)) as { ran: { at: string } };
      if (part.ran.at >= status.resumed!.at) mappedSince++;
    }
    expect(mappedSince).toBe(rerun);
    await cloud.waitForIdle();

    const again = await cli(["retry", "slow-1", "--endpoint", cloud.cloud.endpoint]);
    expect(again).toMatchObject({ code: 2, stderr: "cloudmill: job slow-1 is succeeded: only a failed or cancelled job can be retried\n" });
  }, 120_000);
});

describe("on this machine", () => {
  it("a chunk past --task-timeout ends its thread, is retried, then fails the job with TASK_TIMEOUT; the next run is exact", async () => {
    const registry = await opsRegistry([module]);
    const file = path.join(dir, "stuck.txt");
    await writeFile(file, "a\nb\nspin\nc\n");
    const run = (input: string, op: string) =>
      runLocal({
        spec: parseJobSpec({ op, inputs: [input], maxAttempts: 2 }),
        registry,
        opsModules: [module],
        workers: 2,
        taskTimeoutSeconds: 1,
      });
    const err = await run(file, "stuck").then(
      () => undefined,
      (e: unknown) => e as CloudmillError,
    );
    expect(err?.code).toBe("TASK_TIMEOUT");
    expect(err?.describe()).toBe(
      `${file} (bytes 0-11): chunk 0 failed after 2 attempts: the chunk did not finish within 1 s (taskTimeoutSeconds)`,
    );
    const bytes = textOf(3_000, 5);
    const ok = path.join(dir, "ok.txt");
    await writeFile(ok, bytes);
    expectMatchesReference("count", {}, bytes, (await run(ok, "count")).result);
  }, 60_000);

  it("a chunk that ends after its time has still timed out, and the next chunk on its slot runs on a fresh thread", async () => {
    const registry = await opsRegistry([module]);
    // Chunk 0 takes 3 s (its thread never yields); chunk 1 is quick. One thread, one attempt each.
    const file = path.join(dir, "late.txt");
    await writeFile(file, "slow\nb\n");
    const err = await runLocal({
      spec: parseJobSpec({ op: "slow", inputs: [file], maxAttempts: 1, taskTimeoutSeconds: 1, chunkSize: 5 }),
      registry,
      opsModules: [module],
      workers: 1,
    }).then(
      () => undefined,
      (e: unknown) => e as CloudmillError,
    );
    // Not a late success of chunk 0, nor chunk 1 failed with chunk 0's error.
    expect(err?.describe()).toBe(
      `${file} (bytes 0-5): chunk 0 failed after 1 attempt: the chunk did not finish within 1 s (taskTimeoutSeconds)`,
    );
  }, 60_000);

  // As child processes: were the op to run on the CLI's own thread, its loop would block this test's.
  it("with no task threads (-w 0), a lab op's chunk still meets --task-timeout: it maps on a thread of its own", async () => {
    const file = path.join(dir, "stuck-inline.txt");
    await writeFile(file, "a\nspin\n");
    const run = spawnChild(process.execPath, [
      BIN,
      "run",
      file,
      "--ops",
      module,
      "--op",
      "stuck",
      "-w",
      "0",
      "--task-timeout",
      "1",
      "--max-attempts",
      "1",
      "--no-progress",
    ]);
    try {
      expect(await run.exited).toEqual({ code: 6, signal: null });
      // (After the warning every run gives for a task's last attempt.)
      expect(run.stderr.at(-1)).toBe(
        `cloudmill: ${file} (bytes 0-7): chunk 0 failed after 1 attempt: the chunk did not finish within 1 s (taskTimeoutSeconds)`,
      );
    } finally {
      run.child.kill("SIGKILL");
    }
  }, 60_000);

  it("with no task threads (-w 0), Ctrl-C while a lab op's chunk never returns: exit 130 in one line", async () => {
    const file = path.join(dir, "marked-inline.txt");
    const mark = path.join(dir, "spinning");
    await writeFile(file, "a\nspin\n");
    const run = spawnChild(process.execPath, [BIN, "run", file, "--ops", module, "--op", "marked-stuck", "-w", "0", "--no-progress"], {
      env: { ...process.env, SPIN_MARK: mark },
    });
    try {
      // The op says when it spins (a file it writes just before).
      await waitFor("the op to spin", async () => ((await readFile(mark).catch(() => undefined)) ? true : undefined), 30_000, 20);
      run.child.kill("SIGINT");
      expect(await run.exited).toEqual({ code: 130, signal: null });
      expect(run.stderr).toEqual(["cloudmill: interrupted"]);
    } finally {
      run.child.kill("SIGKILL");
    }
  }, 60_000);

  it("a job's own taskTimeoutSeconds wins over the run's", async () => {
    const registry = await opsRegistry([module]);
    const file = path.join(dir, "stuck-own.txt");
    await writeFile(file, "a\nspin\n");
    const spec = parseJobSpec({ op: "stuck", inputs: [file], maxAttempts: 1, taskTimeoutSeconds: 1 });
    const err = await runLocal({ spec, registry, opsModules: [module], workers: 2, taskTimeoutSeconds: 600 }).then(
      () => undefined,
      (e: unknown) => e as CloudmillError,
    );
    expect(err?.describe()).toMatch(/did not finish within 1 s \(taskTimeoutSeconds\)$/);
  }, 60_000);

  it("an op the run's registry defines, not its modules, still folds and finalizes here (no thread knows it)", async () => {
    const inline = defineOp({ name: "inline-lines", format: "lines", map: () => 1, combine: (a: number, b: number) => a + b });
    const withInline = new OpRegistry([...builtinOps, inline]);
    const file = path.join(dir, "inline-lines.txt");
    await writeFile(file, "a\nb\nc\n");
    const lines = Number(execFileSync("wc", ["-l", file]).toString().trim().split(" ")[0]);
    // On the main thread (no task threads, which load only the modules too).
    const r = await runLocal({
      spec: parseJobSpec({ op: "inline-lines", inputs: [file], chunkSize: 2 }),
      registry: withInline,
      opsModules: [module],
      workers: 0,
    });
    expect(r.result).toBe(lines);
  }, 60_000);

  it.each([
    ["stuck-fold", "merge"],
    ["stuck-finalize", "finalize"],
  ])(
    "%s: a lab op's %s that never returns, on the run's side, fails the job TASK_TIMEOUT, and a job under it finishes",
    async (op, call) => {
      const registry = await opsRegistry([module]);
      const file = path.join(dir, `${op}.txt`);
      await writeFile(file, Array.from({ length: 12 }, (_, i) => `l${String(i).padStart(6, "0")}\n`).join(""));
      const run = () =>
        runLocal({
          spec: parseJobSpec({ op, inputs: [file], maxAttempts: 1, chunkSize: 16 }),
          registry,
          opsModules: [module],
          workers: 2,
          // Room for a map task's thread to start and load the module on a busy machine: only the stuck call may reach it.
          taskTimeoutSeconds: 3,
        });
      const err = await run().then(
        () => undefined,
        (e: unknown) => e as CloudmillError,
      );
      expect(err?.code).toBe("TASK_TIMEOUT");
      expect(err?.message).toMatch(new RegExp(`^job local-[0-9a-f]+'s ${call} did not finish within 3 s \\(taskTimeoutSeconds\\)$`));
      // Under the limit (8 lines, wc -l's count), the same op answers.
      const small = path.join(dir, `${op}-small.txt`);
      await writeFile(small, Array.from({ length: 8 }, (_, i) => `l${String(i).padStart(6, "0")}\n`).join(""));
      const lines = Number(execFileSync("wc", ["-l", small]).toString().trim().split(" ")[0]);
      const ok = await runLocal({
        spec: parseJobSpec({ op, inputs: [small], chunkSize: 16 }),
        registry,
        opsModules: [module],
        workers: 2,
        taskTimeoutSeconds: 5,
      });
      expect(ok.result).toEqual(op === "stuck-finalize" ? { lines } : lines);
    },
    60_000,
  );
});
