/**
 * Jobs started by an upload (`<op>/<key>` in the input bucket), named by id from the CLI and the
 * SDK against the emulated cloud: status, result, jobs, cancel (which stops the job's chunks),
 * retry and wait, as for a job started by a spec. Their status is beside the input
 * (`<op>/<key>/status.json`), not under `_jobs/<id>/`. Needs the compiled dist/ (`npm run build`).
 */
import { describe, expect, it } from "vitest";
import type { CliIO } from "../../lib/cli/io.js";
import { runCli } from "../../lib/cli/main.js";
import { partsPrefix } from "../../lib/core/keys.js";
import { Cloudmill } from "../../lib/sdk/index.js";
import { chunksOf, expectMatchesReference, textOf, useDevCloud, waitFor } from "../helpers/devCloud.js";

const KiB = 1024;
const CHUNK = 4 * KiB;
const cloudOf = useDevCloud({ chunkSize: CHUNK, workers: 2 });

/** `cloudmill <args> --endpoint <the cloud>` in this process: exit code, stdout, stderr. */
const cli = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
  let stdout = "";
  let stderr = "";
  const io: CliIO = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: {} };
  const code = await runCli([...args, "--endpoint", cloudOf().cloud.endpoint], io);
  return { code, stdout, stderr };
};

/** The id of the job an upload started, from the status the README says to read beside it. */
const jobIdOf = async (statusKey: string): Promise<string> =>
  waitFor(`a status at ${statusKey}`, async () => {
    const status = (await cloudOf().getJson(cloudOf().output, statusKey)) as { jobId?: string } | undefined;
    return status?.jobId;
  });

describe("a job started by an upload, named by its id", () => {
  it("status, result, wait and jobs find it beside its input; the SDK's result is the reference's", async () => {
    const t = cloudOf();
    const bytes = textOf(20 * KiB, 7);
    await t.put("wordcount/small.txt", bytes);
    const ended = await t.waitForEnd("wordcount/small.txt/status.json");
    expect(ended.state).toBe("succeeded");
    const id = ended.jobId;

    const status = await cli("status", id, "--json");
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      jobId: id,
      state: "succeeded",
      op: "wordcount",
      inputs: [`s3://${t.input}/wordcount/small.txt`],
      chunks: chunksOf(bytes.length, CHUNK),
    });

    const result = await cli("result", id);
    expect(result.code, result.stderr).toBe(0);
    expectMatchesReference("wordcount", {}, bytes, JSON.parse(result.stdout));

    const waited = await cli("wait", id, "--no-progress");
    expect(waited.code, waited.stderr).toBe(0);
    expectMatchesReference("wordcount", {}, bytes, JSON.parse(waited.stdout));

    const jobs = await cli("jobs", "--json");
    expect(jobs.code, jobs.stderr).toBe(0);
    const listed = JSON.parse(jobs.stdout) as { jobId: string; state: string; inputs?: string[] }[];
    expect(listed.find((j) => j.jobId === id)).toMatchObject({ state: "succeeded", inputs: [`s3://${t.input}/wordcount/small.txt`] });

    const mill = new Cloudmill({ endpoint: t.cloud.endpoint });
    try {
      expectMatchesReference("wordcount", {}, bytes, await mill.job(id).result({ timeoutMs: 30_000 }));
      expect((await mill.jobs()).map((j) => j.jobId)).toContain(id);
    } finally {
      mill.close();
    }
  }, 120_000);

  it("one refused before it started (an unknown op) is found by its id too, failed with the refusal", async () => {
    const t = cloudOf();
    await t.put("nosuchop/data.txt", "a\nb\n");
    const ended = await t.waitForEnd("nosuchop/data.txt/status.json");
    expect(ended.state).toBe("failed");
    const status = await cli("status", ended.jobId, "--json");
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      jobId: ended.jobId,
      state: "failed",
      error: { code: "UNKNOWN_OP", message: expect.stringContaining("nosuchop") },
    });
    const result = await cli("result", ended.jobId);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("nosuchop");
  }, 120_000);

  it("cancel stops its chunks and shows cancelled beside its input; retry resumes it to the reference's answer", async () => {
    const t = cloudOf();
    // Over a thousand chunks: more than two workers map in the 5 s a worker may go on believing a job runs.
    const bytes = textOf(4096 * KiB, 11);
    const chunks = chunksOf(bytes.length, CHUNK);
    const statusKey = "wordcount/long.txt/status.json";
    await t.put("wordcount/long.txt", bytes);
    const id = await jobIdOf(statusKey);
    const parts = async (): Promise<number> => (await t.keys(t.output, partsPrefix(id))).length;
    // Really running: some chunks mapped, not all.
    await waitFor("two chunks mapped", async () => ((await parts()) >= 2 ? true : undefined), 60_000, 50);

    const cancelled = await cli("cancel", id);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(cancelled.stdout).toMatch(new RegExp(`^job ${id} cancelled \\(\\d+ of ${chunks} chunks were done\\)\\n$`));
    const atCancel = await parts();
    expect(await t.getJson(t.output, statusKey)).toMatchObject({ jobId: id, state: "cancelled", chunks });
    // Every queued chunk is taken and let go: skipped, or mapped by a worker that has not looked
    // at the job's end since the cancel (each looks at most every 5 s).
    await waitFor(
      "the task queue to drain",
      async () => {
        const d = await t.taskDepth();
        return d.visible + d.inFlight === 0 ? true : undefined;
      },
      60_000,
    );
    const later = await parts();
    expect(later).toBeGreaterThanOrEqual(atCancel);
    expect(later).toBeLessThan(chunks);
    const shown = await cli("status", id, "--json");
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ jobId: id, state: "cancelled" });
    const notEnded = await cli("result", id);
    expect(notEnded.code).toBe(130);

    const retried = await cli("retry", id);
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stdout).toMatch(new RegExp(`^job ${id} resumed: \\d+ of ${chunks} tasks to run again`));
    const waited = await cli("wait", id, "--no-progress");
    expect(waited.code, waited.stderr).toBe(0);
    expectMatchesReference("wordcount", {}, bytes, JSON.parse(waited.stdout));
    expect(await t.getJson(t.output, statusKey)).toMatchObject({ jobId: id, state: "succeeded", chunks, done: chunks });
  }, 180_000);
});
