/**
 * Which writes of an input key are one job: an S3 event delivered twice (one sequencer) starts
 * one; each new write of the key (a new sequencer), even of bytes it held before, starts its
 * own; a version id, where the bucket keeps versions, names the write, but not the "null" a
 * bucket with versioning suspended gives every write.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defineTask } from "../../lib/core/ops/defineTask.js";
import { handleObjectCreated, type CreatedObject, type TriggerOutcome } from "../../lib/core/pipeline/trigger.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { taskJobOf } from "../../lib/core/pipeline/split.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import * as z from "zod";
import { localPipeline } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-upload-ids-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const CONFIG = { defaultChunkSize: 4096, maxAttempts: 3, jobDeadlineSeconds: 3600 };

const idOf = (outcome: TriggerOutcome): string => {
  if (!("jobId" in outcome)) throw new Error(`no job: ${JSON.stringify(outcome)}`);
  return outcome.jobId;
};

describe("an upload's job id", () => {
  it("is one job for an event delivered twice, and a job of its own for each write of the key", async () => {
    const { inputs, deps } = localPipeline(path.join(dir, "writes"));
    await inputs.put("count/a.txt", "1\n2\n3\n");
    const etag = (await inputs.head("count/a.txt"))!.etag;
    const event = (extra: Partial<CreatedObject>): CreatedObject => ({ bucket: "lab-in", key: "count/a.txt", etag, ...extra });
    const first = await handleObjectCreated(deps, CONFIG, event({ sequencer: "0A" }));
    expect(first.kind).toBe("started");
    expect(await handleObjectCreated(deps, CONFIG, event({ sequencer: "0A" }))).toMatchObject({ kind: "duplicate", jobId: idOf(first) });
    // The same bytes written again (A, B, A): another write, another job.
    const again = await handleObjectCreated(deps, CONFIG, event({ sequencer: "0C" }));
    expect(again.kind).toBe("started");
    expect(idOf(again)).not.toBe(idOf(first));
    // A kept version names the write, whatever the sequencer.
    const v1 = await handleObjectCreated(deps, CONFIG, event({ versionId: "v1", sequencer: "0D" }));
    expect(await handleObjectCreated(deps, CONFIG, event({ versionId: "v1", sequencer: "0E" }))).toMatchObject({
      kind: "duplicate",
      jobId: idOf(v1),
    });
    // Versioning suspended: every write's version is "null", so the sequencer tells them apart.
    const n1 = idOf(await handleObjectCreated(deps, CONFIG, event({ versionId: "null", sequencer: "0F" })));
    const n2 = idOf(await handleObjectCreated(deps, CONFIG, event({ versionId: "null", sequencer: "10" })));
    expect(new Set([idOf(first), idOf(again), idOf(v1), n1, n2]).size).toBe(5);
  });
});

describe("a task's own params", () => {
  it("may take the names of CSV's format params: the engine reads items with none", () => {
    const registry = new OpRegistry();
    registry.register(
      defineTask({
        name: "joiner",
        params: z.object({ separator: z.string(), header: z.string().optional() }),
        run: (item: string[], _ctx: unknown, p: { separator: string }) => item.join(p.separator),
      }),
    );
    const spec = parseJobSpec({ op: "joiner", inputs: ["items.jsonl"], params: { separator: ";", header: "x" } });
    expect(taskJobOf(spec, registry, ["items.jsonl"]).params).toEqual({ separator: ";", header: "x" });
  });
});
