/**
 * OrderedPartMerge, seeded with totals merged elsewhere (the local engine's task threads):
 * it reads exactly the parts the seeds do not hold, and refuses a chunk held twice.
 */
import { mkdtemp, rm, unlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { manifestKey, partKey } from "../../lib/core/keys.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { Manifest } from "../../lib/core/job/manifest.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { namesContext } from "../../lib/core/ops/types.js";
import { silentLogger } from "../../lib/core/log.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import type { WordcountPartial } from "../../lib/core/ops/wordcount.js";
import { readJson } from "../../lib/core/pipeline/blobJson.js";
import { OrderedPartMerge } from "../../lib/core/pipeline/partMerge.js";
import { Part as PartSchema } from "../../lib/core/pipeline/part.js";

const registry = new OpRegistry();
let workDir: string;
let output: FsBlobStore;
let manifest: Manifest;
let parts: Map<number, string>;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-merge-"));
  const text = Array.from({ length: 3000 }, (_, i) => `w${i % 97} v${i % 13} ${i}\n`).join("");
  const input = path.join(workDir, "in.txt");
  await new FsBlobStore(workDir).put("in.txt", text);
  const spec = parseJobSpec({ op: "wordcount", inputs: [input], chunkSize: "4KiB", params: { k: "5" } });
  const { jobId } = await runLocal({ spec, registry, workers: 0, workDir: path.join(workDir, "work"), keepWork: true });
  output = new FsBlobStore(path.join(workDir, "work"));
  manifest = await readJson(output, manifestKey(jobId), Manifest);
  parts = new Map(Array.from({ length: manifest.chunks }, (_, i) => [i, partKey(jobId, i)]));
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

const deps = () => ({ output, inputStore: () => output, registry, log: silentLogger });
const partial = async (i: number) => (await readJson(output, parts.get(i)!, PartSchema)).partial as WordcountPartial;

describe("OrderedPartMerge", () => {
  it("merged from parts alone or from seeds and the remaining parts, gives the same result", async () => {
    expect(manifest.chunks).toBeGreaterThan(6);
    const all = await new OrderedPartMerge(deps(), manifest).complete(parts);

    // Seeds: chunks {0, 2, 5} merged by one "thread", {3} by another, as the engine collects them.
    const op = registry.get("wordcount");
    const seed = async (chunks: number[]) => {
      const m = op.merger(op.parseParams({ k: "5" }));
      for (const i of chunks) m.add(await partial(i));
      return { chunks, partial: m.value(), skipped: 0 };
    };
    const seeds = [await seed([0, 2, 5]), await seed([3])];
    const lone = await seed([0, 2, 3, 5]);
    const whole = await seed(Array.from({ length: manifest.chunks }, (_, i) => i));
    // The seeded chunks' parts are gone: a merge that read them would fail.
    for (const i of [0, 2, 3, 5]) await unlink(path.join(workDir, "work", parts.get(i)!));
    const seeded = await new OrderedPartMerge(deps(), manifest, seeds).complete(parts);
    expect(seeded.skipped).toBe(all.skipped);
    const result = (p: unknown) => op.finalize(p, op.parseParams({ k: "5" }), namesContext(["in.txt"]));
    expect(result(seeded.partial)).toEqual(result(all.partial));
    // One seed (the engine's threads merged their totals into one) joins the parts left...
    expect(result((await new OrderedPartMerge(deps(), manifest, [lone]).complete(parts)).partial)).toEqual(result(all.partial));
    // ...or, holding every chunk, is the merged partial itself, not merged again.
    const alone = await new OrderedPartMerge(deps(), manifest, [whole]).complete(new Map());
    expect(alone.partial).toBe(whole.partial);
    expect(result(alone.partial)).toEqual(result(all.partial));
    expect(result(all.partial)).toMatchObject({ total: 9000, distinct: 97 + 13 + 3000 });
  });

  it("refuses a chunk held by two seeds", () => {
    const twice = [
      { chunks: [1], partial: { total: 0, words: "", counts: [] }, skipped: 0 },
      { chunks: [1], partial: { total: 0, words: "", counts: [] }, skipped: 0 },
    ];
    let err: unknown;
    try {
      new OrderedPartMerge(deps(), manifest, twice);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CloudmillError);
    expect((err as CloudmillError).code).toBe(ErrorCode.INTERNAL);
    expect((err as CloudmillError).message).toMatch(/chunk 1 of job .* was merged twice/);
  });
});
