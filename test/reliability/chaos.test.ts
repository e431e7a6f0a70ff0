/**
 * Breaking the pipeline on purpose, bounded for `npm test` (the same scenario runs long in
 * `npm run soak`, bench/soak.ts): seeded faults in every S3/SQS call of workers and roles,
 * workers SIGKILLed at seeded moments, duplicated and delayed task messages, the reducer
 * invoked concurrently, the endpoint gone for seconds mid-job. Every run must end with the
 * exact result, or the job failed with a clear error: never a hang, never a wrong answer.
 * Each test prints what it injected and what it verified.
 */
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeReport, runChaos } from "../../bench/chaos.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { loadOpsModule } from "../../lib/core/ops/opModules.js";
import { compiledFile } from "../../lib/local/paths.js";
import { getObject, listKeys, putObject, requireBuild, startCloud, statusAt, VERBOSE, waitFor, type ChaosCloud } from "./helpers.js";

const print = (title: string, lines: readonly string[]): void => {
  process.stdout.write(`\n[reliability] ${title}\n${lines.map((l) => `  ${l}`).join("\n")}\n`);
};

beforeAll(() => requireBuild());

describe("chaos over the emulated cloud", () => {
  it("300 chunks, 3 workers, 5% faults everywhere, 3 SIGKILLs, an outage, duplicates and concurrent reducers: exact, nothing lost", async () => {
    const report = await runChaos({
      seed: 7,
      chunks: 300,
      chunkSize: 1024,
      workers: 3,
      workerConcurrency: 2,
      faultRate: 0.05,
      kills: 3,
      duplicateFraction: 0.1,
      outages: 1,
      outageMs: 2500,
      rogueReducers: 2,
      maxAttempts: 4,
      visibilitySeconds: 6,
      deadlineSeconds: 900,
      timeoutMs: 200_000,
      verbose: VERBOSE,
      report: (line) => VERBOSE && process.stderr.write(`${line}\n`),
    });
    print("chaos, bounded (seed 7)", describeReport(report));

    // What was injected really happened.
    expect(report.injected.workerFaults).toBeGreaterThan(0);
    expect(report.injected.roleFaults).toBeGreaterThan(0);
    expect(report.injected.kills).toBe(3);
    // Killed workers were replaced, and no other worker process ever exited (an outage once made
    // every worker exit: its back-off timer was all that kept the process alive, and unref'd).
    expect(report.verified.workerRestarts).toBe(3);
    expect(report.verified.unexpectedWorkerExits).toBe(0);
    expect(report.injected.outages).toBe(1);
    expect(report.injected.duplicates).toBeGreaterThan(0);
    expect(report.injected.rogueReduceCalls).toBeGreaterThan(0);

    // And nothing of it shows in the answer.
    expect(report.state).toBe("succeeded");
    expect(report.verified.result).toEqual(report.verified.expected);
    expect(report.verified.exact).toBe(true);
    expect(report.verified).toMatchObject({
      parts: 300,
      lost: 0,
      duplicateParts: 0,
      misplacedParts: 0,
      statusDone: 300,
      resultUnchangedAfterLateDuplicates: true,
      queuesDrained: true,
    });
    expect(report.verified.concurrentReducersAfterwards.every((k) => k === "already-succeeded")).toBe(true);
  }, 300_000);

  describe("S3 that throttles every read, for good", () => {
    let c: ChaosCloud;
    beforeAll(async () => {
      c = await startCloud({
        workers: 1,
        workerConcurrency: 2,
        maxAttempts: 2,
        visibilitySeconds: 4,
        workerFaults: { rate: 1, seed: 3, kinds: ["throttle"], operations: ["GetObject"] },
      });
    }, 90_000);
    afterAll(async () => c?.stop(), 60_000);

    it("fails the job with CHUNK_FAILED naming the chunk, its range and the throttling; no result, nothing left queued", async () => {
      const key = "_inputs/throttled.txt";
      await putObject(c, key, "one\ntwo\nthree\nfour\n".repeat(200));
      await putObject(
        c,
        "_jobs/throttled-1.json",
        JSON.stringify({ op: "count", inputs: [`s3://${c.inputBucket}/${key}`], chunkSize: 2048, maxAttempts: 2 }),
      );
      const status = await waitFor(
        "the throttled job to end",
        async () => {
          const s = await statusAt(c, "_jobs/throttled-1/status.json");
          return s && s.state !== "running" ? s : undefined;
        },
        150_000,
        500,
      );
      expect(status.state).toBe("failed");
      expect(status.error).toMatchObject({ code: "CHUNK_FAILED", input: `s3://${c.inputBucket}/${key}` });
      expect(status.error!.range).toHaveLength(2);
      expect(status.error!.message).toMatch(
        /chunk \d+ failed after 2 attempts: GetObject s3:\/\/cloudmill-input\/_inputs\/throttled\.txt failed: SlowDown: Please reduce your request rate\./,
      );
      expect(await getObject(c, c.outputBucket, "_jobs/throttled-1/result.json")).toBeUndefined();
      await waitFor("the queues to drain", async () => ((await c.idle()) ? true : undefined), 60_000, 500);
      const faults = c.lines.filter((l) => l.json?.["message"] === "fault injected").length;
      print("S3 throttling every GetObject", [
        `injected: ${faults} throttles (503 SlowDown) on GetObject, retried by the SDK then by the queue (2 attempts)`,
        `verified: job failed with ${status.error!.code}: ${status.error!.message}`,
        `verified: no result.json; ${(await listKeys(c, c.outputBucket, "_jobs/throttled-1/")).length} objects under _jobs/throttled-1/ (status only); queues drained`,
      ]);
      expect(faults).toBeGreaterThan(0);
    }, 200_000);
  });
});

describe("chaos in the local engine", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-chaos-local-"));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it("a worker thread that dies mid-chunk (twice) is replaced and its chunk retried: the count is exact", async () => {
    // A user op that kills its own thread the first time it meets each CRASH line.
    const opFile = path.join(dir, "crashy.mjs");
    await writeFile(
      opFile,
      `import { existsSync, writeFileSync } from "node:fs";
import { defineOp } from ${JSON.stringify(pathToFileURL(compiledFile("lib/core/ops/defineOp.js")).href)};
export const crashy = defineOp({
  name: "crashy",
  format: "lines",
  map(line) {
    if (line.startsWith("CRASH")) {
      const marker = ${JSON.stringify(dir)} + "/died-" + line;
      if (!existsSync(marker)) { writeFileSync(marker, ""); process.exit(1); }
    }
    return 1;
  },
  combine: (a, b) => a + b,
  finalize: (n) => ({ records: n ?? 0 }),
});
`,
    );
    const lines = Array.from({ length: 5000 }, (_, i) => (i === 1234 ? "CRASH-1" : i === 3888 ? "CRASH-2" : `line ${i}`));
    const input = path.join(dir, "input.txt");
    await writeFile(input, `${lines.join("\n")}\n`);
    const registry = new OpRegistry();
    await loadOpsModule(opFile, registry);
    const { result, status } = await runLocal({
      spec: parseJobSpec({ op: "crashy", inputs: [input], chunkSize: 4096, maxAttempts: 3 }),
      registry,
      opsModules: [opFile],
      workers: 2,
    });
    const died = (await readdir(dir)).filter((f) => f.startsWith("died-"));
    print("local engine, worker threads killed", [
      `injected: ${died.length} worker threads exited mid-chunk (process.exit in the op's map)`,
      `verified: ${JSON.stringify(result)} for ${lines.length} lines; status ${status.state}, ${status.done}/${status.chunks} chunks`,
    ]);
    expect(died.sort()).toEqual(["died-CRASH-1", "died-CRASH-2"]);
    expect(result).toEqual({ records: 5000 });
    expect(status).toMatchObject({ state: "succeeded" });
  }, 120_000);
});
