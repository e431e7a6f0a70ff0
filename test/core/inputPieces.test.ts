/**
 * A job of more inputs than a manifest lists itself keeps its input list in pieces beside the
 * manifest: its status names the spec's prefix and the count, not every object; the job, a
 * resume of it and an op that names inputs in its answer (grep over many files) read the pieces
 * back and stay exact, the op's end only the pieces of the inputs it names; a missing piece is a
 * clear error. Expected answers are counted in the
 * test from the objects it wrote.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as z from "zod";
import { JobStatus, Manifest, isMapTask, type TaskMessage } from "../../lib/core/job/manifest.js";
import { inputPieceKey, jobSpecOutputKeys, manifestKey, reportKey } from "../../lib/core/keys.js";
import { readJson } from "../../lib/core/pipeline/blobJson.js";
import { cancelJob } from "../../lib/core/pipeline/cancel.js";
import { reduceJob } from "../../lib/core/pipeline/reduce.js";
import { resumeJob } from "../../lib/core/pipeline/resume.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { handleObjectCreated } from "../../lib/core/pipeline/trigger.js";
import { prng } from "../../lib/dev/prng.js";
import { jobsTable } from "../../lib/cli/commands/jobs.js";
import { localPipeline, takeAll } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-input-pieces-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const OBJECTS = 25;
const PER_PIECE = 10;
const CONFIG = { defaultChunkSize: 4096, maxAttempts: 3, jobDeadlineSeconds: 3600 };

/** OBJECTS small objects under `plate/`, a random number of lines each; every seventh line says "hit". */
const setUp = async (name: string) => {
  const { inputs, output, queue, deps } = localPipeline(path.join(dir, name), { inputsPerPiece: PER_PIECE });
  const next = prng(7);
  const files: { key: string; lines: string[] }[] = [];
  let n = 0;
  for (let i = 0; i < OBJECTS; i++) {
    const lines = Array.from({ length: 1 + Math.floor(next() * 200) }, () => (++n % 7 === 0 ? `hit ${n}` : `miss ${n}`));
    const key = `plate/img-${String(i).padStart(2, "0")}.txt`;
    await inputs.put(key, Buffer.from(`${lines.join("\n")}\n`));
    files.push({ key, lines });
  }
  const start = async (jobId: string, spec: Record<string, unknown>) => {
    await inputs.put(`_jobs/${jobId}.json`, Buffer.from(JSON.stringify({ inputs: ["s3://lab-in/plate/"], ...spec })));
    const outcome = await handleObjectCreated(deps, CONFIG, { bucket: "lab-in", key: `_jobs/${jobId}.json` });
    expect(outcome).toMatchObject({ kind: "started" });
  };
  const run = async (tasks: readonly TaskMessage[]) => {
    for (const task of tasks) await runTask(deps, task, { checkOpDigest: false, ranOn: "fleet", worker: "test/1" });
  };
  const manifestOf = (jobId: string) => readJson(output, manifestKey(jobId), Manifest);
  const statusOf = (jobId: string) => readJson(output, jobSpecOutputKeys(jobId).status, JobStatus);
  const resultOf = (jobId: string) => readJson(output, jobSpecOutputKeys(jobId).result, z.unknown());
  /** Every "hit" line, in object and byte order, as grep reports a match: the reference for grep. */
  const hits = () =>
    files.flatMap((f) => {
      let offset = 0;
      return f.lines.flatMap((line) => {
        const at = offset;
        offset += Buffer.byteLength(line) + 1;
        return line.startsWith("hit") ? [{ line, offset: at, input: `s3://lab-in/${f.key}` }] : [];
      });
    });
  return { deps, inputs, output, queue, files, hits, start, run, manifestOf, statusOf, resultOf };
};

describe("a job of more inputs than its manifest lists", () => {
  it("keeps them in pieces, shows its prefix and count, and counts every object's lines exactly", async () => {
    const s = await setUp("count");
    await s.start("plate-count", { op: "count" });
    const manifest = await s.manifestOf("plate-count");
    expect(manifest.inputs).toBeUndefined();
    expect(manifest).toMatchObject({ inputCount: OBJECTS, inputPieces: 3, given: ["s3://lab-in/plate/"] });
    // Pieces of 10, 10 and 5, in key order.
    const pieces = await Promise.all(
      [0, 1, 2].map((i) =>
        readJson(s.output, inputPieceKey("plate-count", manifest.inputsDigest!, i), z.array(z.object({ key: z.string() }))),
      ),
    );
    expect(pieces.map((p) => p.map((i) => i.key))).toEqual([
      s.files.slice(0, 10).map((f) => f.key),
      s.files.slice(10, 20).map((f) => f.key),
      s.files.slice(20).map((f) => f.key),
    ]);
    expect(await s.statusOf("plate-count")).toMatchObject({ state: "running", inputs: ["s3://lab-in/plate/"], inputCount: OBJECTS });

    await s.run(await takeAll(s.queue));
    expect((await reduceJob(s.deps, "plate-count")).kind).toBe("succeeded");
    expect(await s.resultOf("plate-count")).toEqual({ records: s.files.reduce((n, f) => n + f.lines.length, 0) });
    expect(await s.statusOf("plate-count")).toMatchObject({ state: "succeeded", inputs: ["s3://lab-in/plate/"], inputCount: OBJECTS });
    expect(await readJson(s.output, reportKey("plate-count"), z.object({ inputs: z.array(z.string()), inputCount: z.number() }))).toEqual({
      inputs: ["s3://lab-in/plate/"],
      inputCount: OBJECTS,
    });
    // `cloudmill jobs` counts the inputs, not the prefix the status names.
    const status = await s.statusOf("plate-count");
    expect(jobsTable([{ ...status, updatedAt: new Date(0) }])).toContain(`s3://lab-in/plate/ (${OBJECTS} inputs)`);
  });

  it("names each match's object from the pieces (grep over many files)", async () => {
    const s = await setUp("grep");
    await s.start("plate-grep", { op: "grep", params: { pattern: "^hit", k: "1000" } });
    await s.run(await takeAll(s.queue));
    expect((await reduceJob(s.deps, "plate-grep")).kind).toBe("succeeded");
    const expected = s.hits();
    expect(await s.resultOf("plate-grep")).toEqual({ matches: expected.length, samples: expected });
  });

  it("reads at its end only the pieces holding inputs its answer names: none for a count", async () => {
    const s = await setUp("named");
    await s.start("plate-few", { op: "grep", params: { pattern: "^hit", k: "3" } });
    await s.start("plate-none", { op: "count" });
    await s.run(await takeAll(s.queue));
    // Gone: every piece but grep's first, which holds the objects of its first three matches.
    for (const [jobId, keep] of [
      ["plate-few", 1],
      ["plate-none", 0],
    ] as const) {
      const list = (await s.manifestOf(jobId)).inputsDigest!;
      for (let i = keep; i < 3; i++) await s.output.delete(inputPieceKey(jobId, list, i));
    }
    expect((await reduceJob(s.deps, "plate-few")).kind).toBe("succeeded");
    expect((await reduceJob(s.deps, "plate-none")).kind).toBe("succeeded");
    const hits = s.hits();
    expect(await s.resultOf("plate-few")).toEqual({ matches: hits.length, samples: hits.slice(0, 3) });
    expect(await s.resultOf("plate-none")).toEqual({ records: s.files.reduce((n, f) => n + f.lines.length, 0) });
  });

  it("plans a resume's tasks from the pieces, and refuses in one line when a piece is gone", async () => {
    const s = await setUp("resume");
    await s.start("plate-resume", { op: "count" });
    const queued = (await takeAll(s.queue)).filter(isMapTask);
    expect(queued.length).toBeGreaterThan(2);
    // Half the tasks run; the job is cancelled; the rest are lost with the queue.
    const half = Math.floor(queued.length / 2);
    await s.run(queued.slice(0, half));
    expect((await cancelJob(s.deps, "plate-resume", jobSpecOutputKeys("plate-resume"))).kind).toBe("cancelled");

    const resumed = await resumeJob(s.deps, "plate-resume", { after: 0 }, CONFIG);
    expect(resumed).toEqual({ kind: "resumed", tasks: queued.length - half, of: queued.length });
    // The same chunks as the job first queued for them, planned again from the pieces.
    const again = (await takeAll(s.queue)).filter(isMapTask);
    expect(again.map((t) => t.chunk)).toEqual(queued.slice(half).map((t) => t.chunk));
    await s.run(again);
    expect((await reduceJob(s.deps, "plate-resume")).kind).toBe("succeeded");
    expect(await s.resultOf("plate-resume")).toEqual({ records: s.files.reduce((n, f) => n + f.lines.length, 0) });

    // Another job whose second piece is gone (its _work/ expired, say): a resume fails, naming it.
    await s.start("plate-lost", { op: "count" });
    await takeAll(s.queue);
    expect((await cancelJob(s.deps, "plate-lost", jobSpecOutputKeys("plate-lost"))).kind).toBe("cancelled");
    const list = (await s.manifestOf("plate-lost")).inputsDigest!;
    expect(list).toMatch(/^[0-9a-f]{24}$/);
    await s.output.delete(inputPieceKey("plate-lost", list, 1));
    await expect(resumeJob(s.deps, "plate-lost", { after: 0 }, CONFIG)).rejects.toThrow(
      new RegExp(
        `^job plate-lost: piece 1 of its input list \\(_work/plate-lost/inputs/${list}/0000001\\.json\\) is missing; was _work/ expired\\?$`,
      ),
    );
  });
});
