/**
 * The merge tree of an order-free job with many chunks: its levels cover every chunk once, in
 * order; merge tasks merge the parts (both ways where a CSV quote state is unknown) and the
 * reducer reads only the tree's top, never a map part; a kept error still surfaces exactly
 * where a flat merge would raise it; a resumed job merges afresh. Answers are the reference
 * implementation's and Python's csv module's over the same bytes.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enqueuedKey, mergedPrefix, parseMergedKey, reportKey } from "../../lib/core/keys.js";
import { JobStatus, TaskMessage, type MergeTask } from "../../lib/core/job/manifest.js";
import { parseJobSpec, type JobSpecInput } from "../../lib/core/job/spec.js";
import type { BlobStore, GetOptions } from "../../lib/core/ports.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { readJson } from "../../lib/core/pipeline/blobJson.js";
import { cancelJob } from "../../lib/core/pipeline/cancel.js";
import { handleDeadLetter } from "../../lib/core/pipeline/deadLetter.js";
import { groupRange, mergeLevels } from "../../lib/core/pipeline/mergeTree.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { resumeJob } from "../../lib/core/pipeline/resume.js";
import { taskJobOf } from "../../lib/core/pipeline/split.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { JobReport } from "../../lib/core/report/jobReport.js";
import { prng } from "../../lib/dev/prng.js";
import { z } from "zod";
import { pythonCsvRows, rowsOp } from "../helpers/csv.js";
import { expectMatchesReference, requireBuild, ROOT, textOf } from "../helpers/devCloud.js";
import { pathToFileURL } from "node:url";
import { opsRegistry } from "../../lib/core/ops/opModules.js";
import { ThreadMapperHost } from "../../lib/sandbox/ThreadMapperHost.js";
import type { MapperHost } from "../../lib/core/pipeline/mappers.js";
import { localPipeline, OUTPUT, startJobOver } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-merge-tree-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const registry = new OpRegistry(builtinOps);

/** An output store that remembers the keys read through it. */
class ReadLog implements BlobStore {
  readonly reads: string[] = [];
  constructor(private readonly store: BlobStore) {}
  get name() {
    return this.store.name;
  }
  head = (key: string) => this.store.head(key);
  get(key: string, options?: GetOptions) {
    this.reads.push(key);
    return this.store.get(key, options);
  }
  put: BlobStore["put"] = (key, body, options) => this.store.put(key, body, options);
  list = (prefix: string) => this.store.list(prefix);
  delete = (key: string) => this.store.delete(key);
}

const setUp = async (name: string, bytes: Buffer, spec: Omit<JobSpecInput, "inputs">, chunkSize: number, ops = registry) => {
  const { inputs, output, queue, deps } = localPipeline(path.join(dir, name), { registry: ops });
  const jobId = `${name}-1`;
  const { manifest } = await startJobOver(deps, inputs, bytes, jobId, spec, chunkSize);
  /** The reducer's own view of the output, to see what it reads. */
  const reducerStore = new ReadLog(output);
  const reducer = { ...deps, output: reducerStore };
  return { deps, queue, output, jobId, manifest, reducer, reducerStore };
};
type Setup = Awaited<ReturnType<typeof setUp>>;

/**
 * Plays the fleet and the reducer until the job ends: takes the queued tasks in a shuffled
 * order, runs each (some twice), and calls the reducer after every batch, as part events would.
 */
const runFleet = async (s: Setup, seed: number, stopAfterMerges = Number.POSITIVE_INFINITY): Promise<MergeTask[]> => {
  const next = prng(seed);
  const merges: MergeTask[] = [];
  for (let round = 0; round < 100; round++) {
    const batch: TaskMessage[] = [];
    for (;;) {
      const [message] = await s.queue.receive({ maxMessages: 1, waitSeconds: 0 });
      if (!message) break;
      batch.push(TaskMessage.parse(JSON.parse(message.body)));
      await s.queue.delete(message.receiptHandle);
    }
    if (batch.length === 0) return merges;
    batch.sort(() => next() - 0.5);
    for (const task of batch) {
      if ("merge" in task) {
        if (merges.length >= stopAfterMerges) continue;
        merges.push(task);
      }
      await runTask(s.deps, task, { checkOpDigest: false, ranOn: "fleet", worker: `w${Math.floor(next() * 3)}` });
      // A duplicate delivery: it finds the part written.
      if (next() < 0.2) expect(await runTask(s.deps, task, { checkOpDigest: false })).toEqual({ kind: "duplicate" });
    }
    const outcome = await reduceJob(s.reducer, s.jobId, { fleet: true });
    if (outcome.kind !== "incomplete") return merges;
  }
  throw new Error("the job did not end in 100 rounds");
};

const mergedParts = async (s: Setup, generation = 0): Promise<Map<number, number>> => {
  const byLevel = new Map<number, number>();
  for await (const { key } of s.output.list(mergedPrefix(s.jobId, generation))) {
    const m = parseMergedKey(key);
    if (m && m.queuedAt === undefined) byLevel.set(m.level, (byLevel.get(m.level) ?? 0) + 1);
  }
  return byLevel;
};

describe("merge levels", () => {
  it("cover every chunk exactly once per level, in order, and stop once the reducer can read a level whole", () => {
    for (const fanIn of [2, 3, 7, 64]) {
      for (const chunks of [0, 1, fanIn - 1, fanIn, fanIn + 1, fanIn * fanIn, fanIn * fanIn + 1, 1000, 60_000]) {
        const levels = mergeLevels(chunks, fanIn);
        let children = chunks;
        for (const level of levels) {
          expect(level.children).toBe(children);
          const covered: number[] = [];
          for (let g = 0; g < level.groups; g++) {
            const { from, to } = groupRange(level, fanIn, g);
            expect(to - from).toBeGreaterThan(0);
            expect(to - from).toBeLessThanOrEqual(fanIn);
            for (let i = from; i < to; i++) covered.push(i);
          }
          expect(covered).toEqual(Array.from({ length: children }, (_, i) => i));
          children = level.groups;
        }
        // The reducer reads what the last level wrote (or the parts): at most fanIn, and no level is spare.
        expect(children).toBeLessThanOrEqual(fanIn);
        if (levels.length > 0) expect(levels.at(-1)!.children).toBeGreaterThan(fanIn);
        expect(levels.length).toBe(chunks <= fanIn ? 0 : Math.ceil(Math.log(chunks) / Math.log(fanIn) - 1e-9) - 1);
      }
    }
  });
});

describe("which jobs merge in a tree", () => {
  it("only order-free ops: one merged in chunk order keeps its left-to-right rounding, and a fan-in for it is refused", async () => {
    const rows = new OpRegistry(builtinOps);
    rows.register(rowsOp);
    expect(() => taskJobOf(parseJobSpec({ op: "rows", inputs: ["x.csv"], fanIn: 4 }), rows)).toThrow(
      "fanIn: op rows merges its parts in chunk order, one at a time (it does not set orderFree)",
    );
    expect(() => taskJobOf(parseJobSpec({ op: "distinct", inputs: ["x"], fanIn: 4 }), rows)).toThrow("fanIn: op distinct is keyed");
    const s = await setUp("plain", textOf(3000, 1), { op: "count" }, 100);
    expect(s.manifest.fanIn).toBe(64);
    for (const op of ["rows", "sort"]) {
      const other = await setUp(`flat-${op}`, Buffer.from("a,b\n1,2\n"), { op }, 100, rows);
      expect(other.manifest.fanIn).toBeUndefined();
    }
  });
});

describe("a job merged in a tree", () => {
  it("gives the reference's wordcount, and its reducer reads only the tree's top", async () => {
    const bytes = textOf(41 * 300, 5);
    const s = await setUp("words", bytes, { op: "wordcount", params: { k: "50" }, fanIn: 3 }, Math.ceil(bytes.length / 41));
    expect(s.manifest.chunks).toBe(41);
    const merges = await runFleet(s, 1);
    // 41 parts → 14 → 5 → 2 merged parts, which the reducer reads.
    expect(Object.fromEntries(await mergedParts(s))).toEqual({ 1: 14, 2: 5, 3: 2 });
    expect(new Set(merges.map((m) => `${m.merge.level}-${m.merge.group}`)).size).toBe(21);
    const status = await readJson(s.output, OUTPUT.status, JobStatus);
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expectMatchesReference("wordcount", { k: "50" }, bytes, await readJson(s.output, OUTPUT.result, z.unknown()));
    const partials = s.reducerStore.reads.filter((k) => k.includes("/parts/") || k.includes("/merged/"));
    expect(partials.filter((k) => k.includes("/parts/"))).toEqual([]);
    expect(new Set(partials)).toEqual(new Set([0, 1].map((g) => `${mergedPrefix(s.jobId, 0)}3-000000${g}.part.json`)));
    // The runs of every map task and of every merge task reach the report (merges numbered after the chunks).
    const report = await readJson(s.output, reportKey(s.jobId), JobReport);
    expect(report.taskCount).toBe(41 + 21);
    expect(report.tasks.map((t) => t.index)).toEqual(Array.from({ length: 62 }, (_, i) => i));
    expect(status.firstChunk?.on).toBe("fleet");
  });

  it("counts Python's CSV records through merges that start inside quoted newlines, at fan-ins 2 and 5", async () => {
    const rows = ["id,score,note"];
    for (let i = 0; i < 300; i++) {
      const note = i % 4 === 0 ? `"line one of ${i}\nline two, ""quoted"", ${i}"` : i % 3 === 0 ? `"plain, ${i}"` : `n${i}`;
      rows.push(`${i},${(i * 37) % 101}.${i % 10},${note}`);
    }
    const bytes = Buffer.from(`${rows.join("\r\n")}\r\n`);
    const file = path.join(dir, "survey.csv");
    await writeFile(file, bytes);
    const expected = pythonCsvRows(file);
    const tenths = expected.reduce((sum, r) => sum + Math.round(Number(r[1]) * 10), 0);
    for (const fanIn of [2, 5]) {
      const count = await setUp(`csv-count-${fanIn}`, bytes, { op: "count", format: "csv", fanIn }, 97);
      expect(count.manifest.chunks).toBeGreaterThan(fanIn * fanIn);
      await runFleet(count, fanIn);
      expect(await readJson(count.output, OUTPUT.result, z.unknown())).toEqual({ records: expected.length });
      expect(count.reducerStore.reads.filter((k) => k.includes("/parts/"))).toEqual([]);

      const stats = await setUp(`csv-stats-${fanIn}`, bytes, { op: "stats", format: "csv", params: { column: "score" }, fanIn }, 97);
      await runFleet(stats, fanIn + 10);
      const result = (await readJson(stats.output, OUTPUT.result, z.unknown())) as Record<string, number>;
      expect([result.count, result.sum]).toEqual([expected.length, tenths / 10]);
    }
  });

  it("merges a lab op's spans on a mapper thread, both quote states, and matches Python's CSV records", async () => {
    requireBuild();
    const module = path.join(dir, "tally-ops.mjs");
    const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
    await writeFile(
      module,
      `import { defineOp } from ${JSON.stringify(defineOp)};
export const tally = defineOp({
  name: "tally",
  format: "csv",
  orderFree: true,
  map: (row) => ({ rows: 1, tenths: Math.round(Number(row.score) * 10), notes: row.note.length }),
  combine: (a, b) => ({ rows: a.rows + b.rows, tenths: a.tenths + b.tenths, notes: a.notes + b.notes }),
});
`,
    );
    const rows = ["id,score,note"];
    for (let i = 0; i < 300; i++) {
      const note = i % 4 === 0 ? `"line one of ${i}\nline two, ""quoted"", ${i}"` : i % 3 === 0 ? `"plain, ${i}"` : `n${i}`;
      rows.push(`${i},${(i * 37) % 101}.${i % 10},${note}`);
    }
    const bytes = Buffer.from(`${rows.join("\r\n")}\r\n`);
    const file = path.join(dir, "tally.csv");
    await writeFile(file, bytes);
    const expected = pythonCsvRows(file);
    const threads = new ThreadMapperHost({ opsModules: [module], taskTimeoutSeconds: 60 });
    let merges = 0;
    const host: MapperHost = {
      taskTimeoutSeconds: threads.taskTimeoutSeconds,
      open: (request) => threads.open(request),
      merge: (request) => {
        merges++;
        return threads.merge(request);
      },
      reduce: (request, scratch) => threads.reduce(request, scratch),
      fold: (request) => threads.fold(request),
      close: () => threads.close(),
    };
    try {
      const s = await setUp("tally", bytes, { op: "tally", fanIn: 3 }, 97, await opsRegistry([module]));
      expect(s.manifest.chunks).toBeGreaterThan(9);
      await runFleet({ ...s, deps: { ...s.deps, mappers: host } }, 7);
      expect(await readJson(s.output, OUTPUT.result, z.unknown())).toEqual({
        rows: expected.length,
        tenths: expected.reduce((sum, r) => sum + Math.round(Number(r[1]) * 10), 0),
        notes: expected.reduce((sum, r) => sum + r[2]!.length, 0),
      });
      expect(merges).toBeGreaterThanOrEqual(mergeLevels(s.manifest.chunks, 3)[0]!.groups);
    } finally {
      await threads.close();
    }
  });

  it("fails a job whose quote never closes, naming the byte where it opened, as a flat merge does", async () => {
    const good = Buffer.from(Array.from({ length: 200 }, (_, i) => `${i},"a\nb",${i % 7}\n`).join(""));
    const bytes = Buffer.concat([good, Buffer.from('9999,"never closed\n1,2,3\n')]);
    const s = await setUp("csv-broken", bytes, { op: "count", format: "csv", fanIn: 3 }, 64);
    await runFleet(s, 3);
    const status = await readJson(s.output, OUTPUT.status, JobStatus);
    expect(status.state).toBe("failed");
    expect(status.error).toMatchObject({ code: "BAD_RECORD", offset: good.length + 5 });
    expect(status.error!.message).toContain("unterminated quoted field");
  });

  it("a merge task whose message was lost is queued again once its lease runs out, and the job ends exact", async () => {
    const bytes = textOf(20 * 150, 3);
    const s = await setUp("lost", bytes, { op: "count", fanIn: 4 }, Math.ceil(bytes.length / 20));
    const drain = async (): Promise<TaskMessage[]> => {
      const tasks: TaskMessage[] = [];
      for (
        let m = (await s.queue.receive({ maxMessages: 1, waitSeconds: 0 }))[0];
        m;
        m = (await s.queue.receive({ maxMessages: 1, waitSeconds: 0 }))[0]
      ) {
        tasks.push(TaskMessage.parse(JSON.parse(m.body)));
        await s.queue.delete(m.receiptHandle);
      }
      return tasks;
    };
    for (const task of await drain()) await runTask(s.deps, task, { checkOpDigest: false });
    expect((await reduceJob(s.reducer, s.jobId, { fleet: true })).kind).toBe("incomplete");
    // The five merges of level 1 are lost (a worker of 0.2 deletes a task kind it does not know).
    expect((await drain()).length).toBe(5);
    expect((await reduceJob(s.reducer, s.jobId, { fleet: true })).kind).toBe("incomplete");
    expect(await drain()).toEqual([]);
    // Past the lease, the queue idle: once it has stayed idle for the task time limit (15 minutes).
    const later = Date.now() + 11 * 60_000;
    expect((await reduceJob({ ...s.reducer, now: () => later }, s.jobId, { fleet: true })).kind).toBe("incomplete");
    expect(await drain()).toEqual([]);
    const settled = later + 15 * 60_000;
    expect((await reduceJob({ ...s.reducer, now: () => settled }, s.jobId, { fleet: true })).kind).toBe("incomplete");
    const again = await drain();
    expect(again.map((t) => ("merge" in t ? t.merge.group : -1))).toEqual([0, 1, 2, 3, 4]);
    for (const task of again) await runTask(s.deps, task, { checkOpDigest: false });
    expect((await reduceJob(s.reducer, s.jobId, { fleet: true })).kind).toBe("incomplete");
    await runFleet(s, 9);
    expect((await s.queue.receive({ maxMessages: 1, waitSeconds: 0 })).length).toBe(0);
    expectMatchesReference("count", {}, bytes, await readJson(s.output, OUTPUT.result, z.unknown()));
  });

  it("a job the splitter mapped whole is merged flat: no merge task wakes the fleet", async () => {
    const bytes = textOf(20 * 150, 4);
    const s = await setUp("inline", bytes, { op: "count", fanIn: 4 }, Math.ceil(bytes.length / 20));
    for (
      let m = (await s.queue.receive({ maxMessages: 1, waitSeconds: 0 }))[0];
      m;
      m = (await s.queue.receive({ maxMessages: 1, waitSeconds: 0 }))[0]
    ) {
      await runTask(s.deps, TaskMessage.parse(JSON.parse(m.body)), { checkOpDigest: false });
      await s.queue.delete(m.receiptHandle);
    }
    // As the splitter records a job it mapped itself.
    await s.output.put(enqueuedKey(s.jobId), JSON.stringify({ at: new Date().toISOString(), chunks: 20, inline: 20 }));
    expect((await reduceJob(s.reducer, s.jobId, { fleet: true })).kind).toBe("succeeded");
    expect((await s.queue.receive({ maxMessages: 1, waitSeconds: 0 })).length).toBe(0);
    expect(await mergedParts(s)).toEqual(new Map());
    expectMatchesReference("count", {}, bytes, await readJson(s.output, OUTPUT.result, z.unknown()));
  });

  it("a merge task that failed every attempt fails its job, naming the merge and its last error", async () => {
    const s = await setUp("dead-merge", textOf(20 * 100, 2), { op: "count", fanIn: 4 }, 100);
    const task: MergeTask = { v: 1, jobId: s.jobId, merge: { level: 1, group: 2, from: 8, to: 12 }, job: s.manifest.job };
    await expect(runTask(s.deps, task, { checkOpDigest: false })).rejects.toThrow(/parts\/0000008/);
    await s.output.put(
      `_work/${s.jobId}/errors/merged-0-1-0000002.json`,
      JSON.stringify({ attempt: 3, at: new Date().toISOString(), error: { code: "INTERNAL", message: "part 8 is missing" } }),
    );
    expect(await handleDeadLetter(s.deps, JSON.stringify(task), 3)).toBe("failed");
    const status = await readJson(s.output, OUTPUT.status, JobStatus);
    expect(status.state).toBe("failed");
    expect(status.error!.message).toBe("merge task 2 of level 1 failed after 3 attempts: part 8 is missing");
  });

  it("a job cancelled while merging, then resumed, merges afresh under its new run and ends exact", async () => {
    const bytes = textOf(30 * 200, 8);
    const s = await setUp("resume", bytes, { op: "wordcount", params: { k: "5" }, fanIn: 3 }, Math.ceil(bytes.length / 30));
    await runFleet(s, 4, 4);
    expect((await mergedParts(s)).get(1)).toBe(4);
    await cancelJob(s.deps, s.jobId, OUTPUT);
    // Nothing to map: the resume queues the first level's merges of its run at once.
    expect(await resumeJob(s.deps, s.jobId, { after: 0 }, { jobDeadlineSeconds: 600 })).toEqual({ kind: "resumed", tasks: 0, of: 30 });
    await runFleet(s, 5);
    const status = await readJson(s.output, OUTPUT.status, JobStatus);
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expect(Object.fromEntries(await mergedParts(s, 1))).toEqual({ 1: 10, 2: 4, 3: 2 });
    expectMatchesReference("wordcount", { k: "5" }, bytes, await readJson(s.output, OUTPUT.result, z.unknown()));
  });
});
