/**
 * A part notice the reducer fails on at every try is not dropped: after DEFAULTS.partEventAttempts
 * receives it goes to the parts dead-letter queue, which the reducer drains too (in the stack
 * and in the dev cloud alike). Here the reducer cannot list a job's parts while the test says so;
 * every part notice ends in that queue, and the job, whose last notice it held, still succeeds
 * once the reducer can read again, with the count awk gives.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { GetQueueUrlCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULTS, DEV_QUEUES } from "../../lib/core/constants.js";
import { enqueuedKey } from "../../lib/core/keys.js";
import { queueDepth, startTestCloud, textOf, waitFor, type TestCloud } from "../helpers/devCloud.js";

const JOB = "lost-part-events";
let faulting = false;
let faults = 0;
let cloud: TestCloud;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-part-events-"));
  cloud = await startTestCloud({
    chunkSize: 4096,
    workers: 0,
    maxWorkers: 0,
    partsVisibilitySeconds: 1,
    // The reducer's listings of this job's state fail (a 500, after the SDK's own retries) while faulting.
    roleFaults: {
      rate: 1,
      kinds: ["server-error"],
      operations: ["ListObjectsV2"],
      only: (r) => faulting && (r.prefix ?? "").startsWith(`_work/${JOB}/`),
      onInject: () => void faults++,
    },
  });
}, 90_000);

afterAll(async () => {
  await cloud?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("part notices the reducer failed on at every try", () => {
  it("go to the parts dead-letter queue, which the reducer drains: the job still ends, exact", async () => {
    const bytes = textOf(20_000, 5);
    const file = path.join(dir, "input.txt");
    await writeFile(file, bytes);
    await cloud.put(`_inputs/${JOB}.txt`, bytes);
    await cloud.put(`_jobs/${JOB}.json`, JSON.stringify({ op: "count", inputs: [`s3://${cloud.input}/_inputs/${JOB}.txt`] }));
    // Its tasks are queued (no worker yet): from here the reducer cannot read the job's parts.
    await waitFor("the job's tasks queued", async () => ((await cloud.get(cloud.output, enqueuedKey(JOB))) ? true : undefined));
    faulting = true;
    cloud.cloud.startWorkers(2);

    const { sqs } = cloud;
    const url = async (name: string) => (await sqs.send(new GetQueueUrlCommand({ QueueName: name }))).QueueUrl!;
    const [parts, dead] = [await url(DEV_QUEUES.parts), await url(DEV_QUEUES.partsDeadLetters)];
    // Every part notice was received partEventAttempts times, failed, and moved on: the parts
    // queue is empty, the dead-letter queue holds them, and no notice is left to end the job
    // (only the job's first wake-up, delayed for the 10 minutes of a task's lease: wake.ts).
    await waitFor(
      "every part notice in the dead-letter queue",
      async () => {
        const [p, d] = [await queueDepth(sqs, parts), await queueDepth(sqs, dead)];
        const chunksDone = (await cloud.keys(cloud.output, `_work/${JOB}/parts/`)).length;
        return chunksDone > 0 && p.visible + p.inFlight === 0 && d.visible + d.inFlight > 0 ? true : undefined;
      },
      120_000,
    );
    expect((await cloud.getJson(cloud.output, `_jobs/${JOB}/status.json`)) as { state: string }).toMatchObject({ state: "running" });
    expect(faults).toBeGreaterThanOrEqual(DEFAULTS.partEventAttempts);

    faulting = false;
    const status = await cloud.waitForEnd(`_jobs/${JOB}/status.json`, 60_000);
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    // awk counts a last line without its newline, as count does (wc -l would not).
    const lines = Number(execFileSync("awk", ["END { print NR }", file], { encoding: "utf8" }));
    expect(await cloud.getJson(cloud.output, `_jobs/${JOB}/result.json`)).toEqual({ records: lines });
    // The reducer's poller deletes what its batch handled once the handler returns: just after the job ends.
    await waitFor(
      "the dead-letter queue drained",
      async () => {
        const d = await queueDepth(sqs, dead);
        return d.visible + d.inFlight === 0 ? true : undefined;
      },
      30_000,
    );
  }, 240_000);
});
