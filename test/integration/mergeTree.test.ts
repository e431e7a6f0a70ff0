/**
 * The merge tree on the emulated fleet: a job of more chunks than its fan-in is merged by merge
 * tasks on the worker processes, level by level, and the reducer merges only the top. The
 * answer is the reference implementation's over the same bytes; every map task's run still
 * reaches the job's report. A merge or reduce task lost after the last chunk is mapped is queued
 * again by the reducer's own delayed wake-up.
 */
import { describe, expect, it } from "vitest";
import { cloudDeps } from "../../lib/aws/cloudDeps.js";
import { SqsTaskQueue } from "../../lib/aws/SqsTaskQueue.js";
import { isMapTask, TaskMessage } from "../../lib/core/job/manifest.js";
import { silentLogger } from "../../lib/core/log.js";
import { mergeLevels } from "../../lib/core/pipeline/mergeTree.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { JobReport } from "../../lib/core/report/jobReport.js";
import { prng } from "../../lib/dev/prng.js";
import { distinctCounts, expectMatchesReference, linesOf, textOf, useDevCloud, waitFor } from "../helpers/devCloud.js";

const CHUNK = 1024;
const dev = useDevCloud({ chunkSize: CHUNK, workers: 2 });

describe("a job merged in a tree on the fleet", () => {
  it("gives the reference's wordcount through merge tasks on the workers, three levels deep", async () => {
    const cloud = dev();
    const bytes = textOf(70 * CHUNK - 100, 11);
    const chunks = Math.ceil(bytes.length / CHUNK);
    const fanIn = 4;
    const levels = mergeLevels(chunks, fanIn);
    expect(levels.length).toBe(3);
    await cloud.put("_inputs/tree.txt", bytes);
    const spec = { op: "wordcount", inputs: [`s3://${cloud.input}/_inputs/tree.txt`], params: { k: "20" }, fanIn };
    await cloud.put("_jobs/tree.json", JSON.stringify(spec));
    const status = await cloud.waitForEnd("_jobs/tree/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expect(status.chunks).toBe(chunks);
    expectMatchesReference("wordcount", { k: "20" }, bytes, await cloud.getJson(cloud.output, "_jobs/tree/result.json"));

    const merged = (await cloud.keys(cloud.output, "_work/tree/merged/0/")).filter((k) => k.endsWith(".part.json"));
    expect(merged.length).toBe(levels.reduce((n, l) => n + l.groups, 0));
    const merges = await waitFor("every merge task's log line", () => {
      const done = linesOf(cloud.lines, "merge done", { jobId: "tree", outcome: "done" });
      return done.length >= merged.length ? done : undefined;
    });
    expect(new Set(merges.map((l) => l.json?.["merge"])).size).toBe(merged.length);
    // Every map task and every merge task, each on the worker process that ran it.
    const report = JobReport.parse(await cloud.getJson(cloud.output, "_jobs/tree/report.json"));
    expect(report.taskCount).toBe(chunks + merged.length);
    expect(report.tasks.filter((t) => t.index >= chunks).every((t) => t.on === "fleet" && /\/\d+$/.test(t.worker))).toBe(true);
  }, 180_000);

  it("a spec asking a keyed op for a fan-in is refused, naming the field", async () => {
    const cloud = dev();
    const spec = { op: "distinct", inputs: [`s3://${cloud.input}/_inputs/tree.txt`], fanIn: 8 };
    await cloud.put("_jobs/tree-keyed.json", JSON.stringify(spec));
    const status = await cloud.waitForEnd("_jobs/tree-keyed/status.json");
    expect(status.state).toBe("failed");
    expect(status.error).toMatchObject({ code: "INVALID_SPEC" });
    expect(status.error!.message).toContain("fanIn: op distinct is keyed");
  });
});

describe("a merge task lost once the chunks are all mapped", () => {
  // No worker process until the test starts one; leases of 3 s instead of 10 minutes.
  const lossy = useDevCloud({ chunkSize: CHUNK, workers: 0, maxWorkers: 0, taskLeaseSeconds: 3 });

  it("is queued again by the reducer's own wake-up, with no part event to wake it, and the job ends exact", async () => {
    const t = lossy();
    const bytes = textOf(20 * CHUNK - 300, 12);
    const chunks = Math.ceil(bytes.length / CHUNK);
    const fanIn = 4;
    const groups = mergeLevels(chunks, fanIn)[0]!.groups;
    await t.put("_inputs/lost.txt", bytes);
    // A task time limit of 4 s: how long the queue must look idle before a lost task is queued again.
    const spec = { op: "count", inputs: [`s3://${t.input}/_inputs/lost.txt`], fanIn, taskTimeoutSeconds: 4 };
    await t.put("_jobs/lost.json", JSON.stringify(spec));
    // This test maps the chunks, as a worker would, and deletes every merge task it meets, as a
    // worker of an older version does with a task kind it does not know.
    const deps = { ...cloudDeps({ outputBucket: t.output }, silentLogger, t.cloud.clients) };
    const queue = new SqsTaskQueue(t.sqs, t.cloud.taskQueueUrl);
    let mapped = 0;
    let lost = 0;
    await waitFor("every chunk mapped and the first level's merges lost", async () => {
      for (const m of await queue.receive({ maxMessages: 10, waitSeconds: 1 })) {
        const task = TaskMessage.parse(JSON.parse(m.body));
        if (isMapTask(task)) {
          await runTask(deps, task, { ranOn: "fleet", checkOpDigest: false });
          mapped++;
        } else lost++;
        await queue.delete(m.receiptHandle);
      }
      return mapped === chunks && lost >= groups ? true : undefined;
    });
    // Nothing writes a part now; only the reducer's wake-up, after the lease, can queue them again.
    const again = await waitFor("the lost merges queued again", async () => {
      const depth = await t.taskDepth();
      return depth.visible >= groups ? depth : undefined;
    });
    expect(again.visible).toBe(groups);
    t.cloud.startWorkers(1);
    const status = await t.waitForEnd("_jobs/lost/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expectMatchesReference("count", {}, bytes, await t.getJson(t.output, "_jobs/lost/result.json"));
  }, 120_000);
});

describe("a keyed job's reduce tasks lost once the chunks are all mapped", () => {
  const lossy = useDevCloud({ chunkSize: CHUNK, workers: 0, maxWorkers: 0, taskLeaseSeconds: 3 });

  it("are queued again by the reducer's own wake-up, and the parts equal the test's own count", async () => {
    const t = lossy();
    const next = prng(41);
    const lines = Array.from({ length: 3000 }, () => `k${Math.floor(next() ** 2 * 700)}`);
    const expected = new Map<string, number>();
    for (const l of lines) expected.set(l, (expected.get(l) ?? 0) + 1);
    await t.put("_inputs/keys.txt", `${lines.join("\n")}\n`);
    const partitions = 3;
    const spec = { op: "distinct", inputs: [`s3://${t.input}/_inputs/keys.txt`], partitions, taskTimeoutSeconds: 4 };
    await t.put("_jobs/lost-keyed.json", JSON.stringify(spec));
    // This test maps the chunks, as a worker would, and deletes every reduce task it meets.
    const deps = { ...cloudDeps({ outputBucket: t.output }, silentLogger, t.cloud.clients) };
    const queue = new SqsTaskQueue(t.sqs, t.cloud.taskQueueUrl);
    let lost = 0;
    await waitFor("every chunk mapped and every reduce task lost", async () => {
      for (const m of await queue.receive({ maxMessages: 10, waitSeconds: 1 })) {
        const task = TaskMessage.parse(JSON.parse(m.body));
        if (isMapTask(task)) await runTask(deps, task, { ranOn: "fleet", checkOpDigest: false });
        else lost++;
        await queue.delete(m.receiptHandle);
      }
      return lost >= partitions ? true : undefined;
    });
    const again = await waitFor("the lost reduce tasks queued again", async () => {
      const depth = await t.taskDepth();
      return depth.visible >= partitions ? depth : undefined;
    });
    expect(again.visible).toBe(partitions);
    t.cloud.startWorkers(1);
    const status = await t.waitForEnd("_jobs/lost-keyed/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    const { partitions: got, counts } = await distinctCounts(t, "_jobs/lost-keyed/result.json");
    expect(got).toBe(partitions);
    expect(counts).toEqual(expected);
  }, 120_000);
});
