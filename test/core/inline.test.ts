/**
 * A small job runs where it starts: a job of one chunk with a built-in op maps on the calling
 * thread (no task thread to start, however many were asked for), and gives the reference's
 * answer; a bigger job, a job with its own time limit, or a lab's op (which may need the task
 * time limit only a thread gives), runs on task threads.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { opsRegistry } from "../../lib/core/ops/opModules.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { ROOT } from "../helpers/devCloud.js";
import { refCount, refWordcount } from "../helpers/reference.js";

let dir: string;
let file: string;
const text = Buffer.from(Array.from({ length: 200 }, (_, i) => `word${i % 17} other${i % 5}`).join("\n"));

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-inline-"));
  file = path.join(dir, "small.txt");
  await writeFile(file, text);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("where a local job's chunks are mapped", () => {
  it("one chunk of a built-in op: inline, with the reference's answer, even with threads asked for", async () => {
    const run = await runLocal({ spec: parseJobSpec({ op: "wordcount", inputs: [file] }), registry: new OpRegistry() });
    expect(run.ranOn).toBe("inline");
    expect(run.result).toEqual(refWordcount(text));
    const asked = await runLocal({ spec: parseJobSpec({ op: "count", inputs: [file] }), registry: new OpRegistry(), workers: 2 });
    expect([asked.ranOn, asked.result]).toEqual(["inline", refCount(text)]);
  });

  it("more chunks, a task time limit, or a lab's op: on task threads", async () => {
    const registry = new OpRegistry();
    const many = await runLocal({ spec: parseJobSpec({ op: "count", inputs: [file], chunkSize: 512 }), registry, workers: 2 });
    expect([many.ranOn, many.result]).toEqual(["threads", refCount(text)]);
    const limited = await runLocal({ spec: parseJobSpec({ op: "count", inputs: [file], taskTimeoutSeconds: 60 }), registry, workers: 1 });
    expect([limited.ranOn, limited.result]).toEqual(["threads", refCount(text)]);
    const module = path.join(dir, "lab-ops.mjs");
    const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
    await writeFile(
      module,
      `import { defineOp } from ${JSON.stringify(defineOp)};\nexport const lines = defineOp({ name: "lines", format: "lines", map: () => 1, combine: (a, b) => a + b });\n`,
    );
    const spec = parseJobSpec({ op: "lines", inputs: [file] });
    const lab = await runLocal({ spec, registry: await opsRegistry([module]), opsModules: [module] });
    expect([lab.ranOn, lab.result]).toEqual(["threads", refCount(text).records]);
  });
});
