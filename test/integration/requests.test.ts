/**
 * What a task costs in requests on the emulated cloud, counted by the emulator itself: no HEAD
 * per task (a first delivery does not look for its part, and a worker asks whether a job has
 * ended once per job every few seconds), deletes in batches, one shared long poll per worker.
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
    await cloud.put("count/requests.txt", bytes);
    const status = await cloud.waitForEnd("count/requests.txt/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    const after = cloud.cloud.requests();
    expectMatchesReference("count", {}, bytes, await cloud.getJson(cloud.output, "count/requests.txt/result.json"));
    const tasks = status.chunks;
    expect(tasks).toBeGreaterThanOrEqual(100);
    // Per task: its part's PUT; per job: the spec, manifest, markers, status writes and a listing or two.
    expect((after.s3Other - before.s3Other) / tasks).toBeLessThan(1.4);
    // Per task: a receive (shared), a delete (batched), the part's event and the reducer's share
    // (each a whole request apiece before: 4.3 a task in npm run bench).
    expect((after.sqs - before.sqs) / tasks).toBeLessThan(4);
  });
});
