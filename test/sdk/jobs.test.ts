/**
 * `cloudmill jobs` (Cloudmill.jobs) over many jobs against `cloudmill dev`: the jobs are
 * status objects written straight into the output bucket, as the splitter writes them, so no
 * worker runs. Needs the compiled dist/ (`npm run build`): the bin runs in a child process.
 */
import { getEventListeners } from "node:events";
import path from "node:path";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDevCloud, type DevCloud } from "../../lib/dev/devCloud.js";
import { silentLogger } from "../../lib/core/log.js";
import { asCompleted, Cloudmill, waitAll } from "../../lib/sdk/index.js";
import { runProcess } from "../helpers/processes.js";
import { childEnv } from "./support.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const BIN = path.join(ROOT, "bin/cloudmill.js");
/** More than Node's default of 10 listeners per event before it warns. */
const JOBS = 30;

let cloud: DevCloud;
const ids = Array.from({ length: JOBS }, (_, i) => `job-20250101T0000${String(i).padStart(2, "0")}-${i.toString(16).padStart(16, "0")}`);

beforeAll(async () => {
  cloud = await startDevCloud({ port: 0, workers: 0, log: silentLogger });
  for (const jobId of ids) {
    const status = { jobId, state: "succeeded", chunks: 1, done: 1, op: "count", inputs: [`s3://${cloud.inputBucket}/${jobId}.txt`] };
    await cloud.clients.s3.send(
      new PutObjectCommand({ Bucket: cloud.outputBucket, Key: `_jobs/${jobId}/status.json`, Body: JSON.stringify(status) }),
    );
    const result = { records: ids.indexOf(jobId) };
    await cloud.clients.s3.send(
      new PutObjectCommand({ Bucket: cloud.outputBucket, Key: `_jobs/${jobId}/result.json`, Body: JSON.stringify(result) }),
    );
  }
}, 60_000);

afterAll(async () => {
  await cloud?.stop();
}, 60_000);

describe("jobs over more jobs than an event has listeners", () => {
  it("`cloudmill jobs --json` lists them all and writes nothing to stderr (no MaxListenersExceededWarning)", async () => {
    // Node's warnings shown, as a user's shell shows them (childEnv turns them off).
    const r = await runProcess(process.execPath, [BIN, "jobs", "--endpoint", cloud.endpoint, "--json", "--limit", String(JOBS)], {
      cwd: ROOT,
      env: { ...childEnv(), NODE_NO_WARNINGS: "" },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    const listed = JSON.parse(r.stdout) as { jobId: string; state: string }[];
    expect(listed.map((j) => j.jobId).toSorted()).toEqual(ids);
    expect(listed.every((j) => j.state === "succeeded")).toBe(true);
  }, 60_000);

  it("Cloudmill.jobs holds few listeners on the caller's signal at once, and none once it returns", async () => {
    const controller = new AbortController();
    let most = 0;
    const mill = new Cloudmill({ endpoint: cloud.endpoint });
    const timer = setInterval(() => (most = Math.max(most, getEventListeners(controller.signal, "abort").length)), 1);
    try {
      expect(await mill.jobs({ limit: JOBS, signal: controller.signal })).toHaveLength(JOBS);
    } finally {
      clearInterval(timer);
      mill.close();
    }
    expect(most).toBeLessThanOrEqual(10);
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  }, 60_000);

  it("waitAll and asCompleted over them all warn of no listener leak", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on("warning", onWarning);
    const mill = new Cloudmill({ endpoint: cloud.endpoint });
    try {
      const futures = ids.map((id) => mill.job(id));
      expect(await waitAll(futures)).toEqual(ids.map((_, i) => ({ records: i })));
      let ended = 0;
      for await (const _ of asCompleted(ids.map((id) => mill.job(id)))) ended++;
      expect(ended).toBe(JOBS);
      // A warning is emitted on the next tick.
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off("warning", onWarning);
      mill.close();
    }
    expect(warnings.map((w) => w.name)).not.toContain("MaxListenersExceededWarning");
  }, 60_000);
});
