/**
 * What a task costs in requests on the emulated cloud, counted by the emulator itself: no HEAD
 * per task (a first delivery does not look for its part, and a worker asks whether a job has
 * ended once per job every few seconds), deletes in batches, one shared long poll per worker,
 * parts listed once per reduce round rather than once per part event.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectMatchesReference, startTestCloud, textOf, type TestCloud } from "../helpers/devCloud.js";

let cloud: TestCloud;
const CHUNK = 1024;

beforeAll(async () => {
  cloud = await startTestCloud({ chunkSize: CHUNK, workers: 2 });
}, 90_000);
afterAll(async () => {
  await cloud?.stop();
}, 60_000);

describe("requests per task", () => {
  it("stay within one PUT and a fraction of other S3 requests, and under four of SQS", async () => {
    const bytes = textOf(120 * CHUNK, 7);
    const before = cloud.cloud.requests();
    const actionsBefore = cloud.cloud.requestActions();
    await cloud.put("count/requests.txt", bytes);
    const status = await cloud.waitForEnd("count/requests.txt/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    const after = cloud.cloud.requests();
    const actions = cloud.cloud.requestActions();
    /** Requests of these actions per task, over the job. */
    const perTask = (...names: string[]): number =>
      names.reduce((n, name) => n + (actions[name] ?? 0) - (actionsBefore[name] ?? 0), 0) / status.chunks;
    const seen = JSON.stringify(Object.fromEntries(Object.keys(actions).map((a) => [a, perTask(a).toFixed(2)])));
    expectMatchesReference("count", {}, bytes, await cloud.getJson(cloud.output, "count/requests.txt/result.json"));
    const tasks = status.chunks;
    expect(tasks).toBeGreaterThanOrEqual(100);
    // Per task: its part's PUT; per job (and per few seconds, which a busy host stretches): the
    // upload, manifest, markers, status writes, workers' usage reports.
    expect(perTask("PutObject"), seen).toBeLessThan(1.3);
    // No HEAD per task: a worker's check of a job's end serves all its tasks for a few seconds.
    expect(perTask("HeadObject"), seen).toBeLessThan(0.5);
    // The reducer lists the parts once per round (a batch of part events), never per event.
    expect(perTask("ListObjectsV2"), seen).toBeLessThan(0.25);
    // One slot per worker: a delete per task unless a done task's delete waits for the next ones
    // to share its DeleteMessageBatch (the parts queue's deletes are batched too).
    expect(perTask("DeleteMessage", "DeleteMessageBatch"), seen).toBeLessThan(0.6);
    // Per task: a receive (shared), a delete (batched), the part's event and the reducer's share
    // (each a whole request apiece before: 4.3 a task in npm run bench).
    expect((after.sqs - before.sqs) / tasks).toBeLessThan(4);
  });
});
