/**
 * Time to first result from an idle lab, in the emulated cloud: a small upload is mapped by
 * the splitter where it starts, with no worker at all; a large one waits for workers and ends
 * when they start; an idle fleet is woken the moment work is enqueued; and a splitter that
 * dies halfway through an inline job (its function timed out) hands the rest to the fleet.
 * Every answer is the reference's over the same bytes.
 */
import { describe, expect, it } from "vitest";
import { JobStatus } from "../../lib/core/job/manifest.js";
import { partKey } from "../../lib/core/keys.js";
import { Part } from "../../lib/core/pipeline/part.js";
import { chunksOf, expectMatchesReference, requireBuild, textOf, useDevCloud, waitFor, type TestCloud } from "../helpers/devCloud.js";

requireBuild();
const CHUNK = 16 * 1024;
const INLINE = 256 * 1024;

const resultOf = async (t: TestCloud, key: string): Promise<unknown> => t.getJson(t.output, `${key}/result.json`);

const jobIdOf = async (t: TestCloud, key: string): Promise<string> =>
  (
    await waitFor(
      `status of ${key}`,
      async () => JobStatus.safeParse(await t.getJson(t.output, `${key}/status.json`).catch(() => null)).data,
    )
  ).jobId;

const partsRanOn = async (t: TestCloud, jobId: string, chunks: number): Promise<string[]> => {
  const on: string[] = [];
  for (let i = 0; i < chunks; i++) on.push(Part.parse(await t.getJson(t.output, partKey(jobId, i))).ran?.on ?? "unknown");
  return on;
};

describe("an idle lab: cloudmill dev --workers 0", () => {
  const cloud = useDevCloud({ workers: 0, maxWorkers: 0, inlineMaxBytes: INLINE, chunkSize: CHUNK });

  it("a small upload gets its exact result through the splitter alone: no worker process, no task message", async () => {
    const t = cloud();
    const body = textOf(150_000, 11);
    const key = "wordcount/small/notes.txt";
    await t.put(key, body);
    const status = await t.waitForEnd(`${key}/status.json`);
    expect(status).toMatchObject({ state: "succeeded", ranOn: "lambda", chunks: chunksOf(body.length, CHUNK) });
    expect(status.firstChunk?.on).toBe("lambda");
    expect(Date.parse(status.triggeredAt!)).toBeLessThanOrEqual(Date.parse(status.firstChunk!.at));
    expectMatchesReference("wordcount", {}, body, await resultOf(t, key));
    expect(t.cloud.workerPids()).toEqual([]);
    expect(await t.taskDepth()).toMatchObject({ visible: 0, inFlight: 0 });
    expect(new Set(await partsRanOn(t, status.jobId, status.chunks))).toEqual(new Set(["lambda"]));
  });

  it("a large upload waits for workers, and completes exact when they start", async () => {
    const t = cloud();
    const body = textOf(INLINE + 100_000, 12);
    const chunks = chunksOf(body.length, CHUNK);
    const key = "count/large/log.txt";
    await t.put(key, body);
    // Every chunk queued, none mapped: nothing runs until a worker does.
    await waitFor("the chunks to be queued", async () => ((await t.taskDepth()).visible === chunks ? true : undefined));
    const jobId = await jobIdOf(t, key);
    expect(await t.keys(t.output, `_work/${jobId}/parts/`)).toEqual([]);
    expect((await t.getJson(t.output, `${key}/status.json`)) as JobStatus).toMatchObject({ state: "running", done: 0 });

    t.cloud.startWorkers(1);
    const status = await t.waitForEnd(`${key}/status.json`);
    expect(status).toMatchObject({ state: "succeeded", ranOn: "fleet", firstChunk: { on: "fleet" } });
    expectMatchesReference("count", {}, body, await resultOf(t, key));
  });
});

describe("a woken fleet, and a splitter that dies halfway through an inline job", () => {
  const cloud = useDevCloud({ workers: 0, maxWorkers: 1, inlineMaxBytes: INLINE, chunkSize: CHUNK, splitterDiesAfterParts: 3 });

  it("the retried invocation wakes the fleet for the chunks without parts; the job ends exact, run on both", async () => {
    const t = cloud();
    const body = textOf(160_000, 13);
    const chunks = chunksOf(body.length, CHUNK);
    const key = "wordcount/died/field-notes.txt";
    await t.put(key, body);
    const status = await t.waitForEnd(`${key}/status.json`);
    expect(status).toMatchObject({ state: "succeeded", ranOn: "lambda+fleet", firstChunk: { on: "lambda" } });
    expectMatchesReference("wordcount", {}, body, await resultOf(t, key));
    expect(t.cloud.woken()).toBe(1);
    expect(await partsRanOn(t, status.jobId, chunks)).toEqual([
      ...Array.from({ length: 3 }, () => "lambda"),
      ...Array.from({ length: chunks - 3 }, () => "fleet"),
    ]);
  });
});

describe("how far a job wakes an idle fleet: its spec's prefer", () => {
  // No inline runs: every job goes to the fleet, which starts with no worker and may grow to 3.
  const fastest = useDevCloud({ workers: 0, maxWorkers: 3, inlineMaxBytes: 0, chunkSize: CHUNK });
  const cheapest = useDevCloud({ workers: 0, maxWorkers: 3, inlineMaxBytes: 0, chunkSize: CHUNK });

  it.each([
    { prefer: undefined, cloud: fastest, woken: 3 },
    { prefer: "cheapest", cloud: cheapest, woken: 1 },
  ])("prefer $prefer: $woken worker(s) woken for a job of many chunks, and the answer is exact", async (c) => {
    const t = c.cloud();
    const body = textOf(200_000, 17);
    expect(chunksOf(body.length, CHUNK)).toBeGreaterThan(3);
    await t.put("_inputs/wake.txt", body);
    const spec = { op: "count", inputs: [`s3://${t.input}/_inputs/wake.txt`], ...(c.prefer ? { prefer: c.prefer } : {}) };
    await t.put("_jobs/wake-1.json", JSON.stringify(spec));
    const status = await t.waitForEnd("_jobs/wake-1/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expectMatchesReference("count", {}, body, await t.getJson(t.output, "_jobs/wake-1/result.json"));
    expect(t.cloud.woken()).toBe(c.woken);
    expect(t.cloud.workerPids().length).toBe(c.woken);
  });

  it("a spec with another preference is refused, naming the field", async () => {
    const t = cheapest();
    await t.put("_jobs/wake-bad.json", JSON.stringify({ op: "count", inputs: [`s3://${t.input}/_inputs/wake.txt`], prefer: "soonest" }));
    const status = await t.waitForEnd("_jobs/wake-bad/status.json");
    expect(status.error).toMatchObject({ code: "INVALID_SPEC", message: expect.stringContaining("prefer") });
  });
});
