/**
 * What a lab's op hands back travels as JSON between tasks, so a value JSON would change (NaN
 * to null, a Map to {}, a promise to {}) is refused where the op gives it, naming the op and
 * the record, at every chunk size: never an answer that depends on how the input was cut. A
 * lab's own error (a SyntaxError of its code) fails the job; it is not the input's bad record.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseJobSpec, type JobSpecInput } from "../../lib/core/job/spec.js";
import { defineOp } from "../../lib/core/ops/defineOp.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { runLocal } from "../../lib/local/localEngine.js";

let dir: string;
let words: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-user-values-"));
  words = path.join(dir, "words.txt");
  await writeFile(words, "a\nbb\nx\nccc\nx\n");
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const ops = [
  defineOp({
    name: "nan-map",
    format: "lines",
    map: (l: string) => (l === "x" ? Number.NaN : 1),
    combine: (a: number, b: number) => a + b,
  }),
  defineOp({
    name: "map-of-map",
    format: "lines",
    map: (l: string) => new Map([[l, 1]]),
    combine: (a: Map<string, number>) => a,
  }),
  // A lab's .mjs module has no types: an async map is what it may well write.
  defineOp({ name: "async-map", format: "lines", map: (l: string) => Promise.resolve(l.length), combine: (a: Promise<number>) => a }),
  defineOp({ name: "nan-combine", format: "lines", map: () => 0, combine: (a: number, b: number) => a / b }),
  defineOp({
    name: "nested-nan",
    format: "lines",
    pairs: (l: string, emit) => emit(l, { v: l === "x" ? Number.NaN : 1 }),
    combine: (a: { v: number }) => a,
  }),
  defineOp({
    name: "nested-combine",
    format: "lines",
    pairs: (_l: string, emit) => emit("k", { n: 1, r: 0 }),
    combine: (a: { n: number; r: number }, b: { n: number; r: number }) => ({ n: a.n + b.n, r: a.r / b.r }),
  }),
  defineOp({
    name: "bigint-row",
    format: "lines",
    pairs: (l: string, emit) => emit(l, 1),
    combine: (a: number, b: number) => a + b,
    row: (k, v: number) => ({ k, v: BigInt(v) }),
  }),
  defineOp({
    name: "inner-json",
    format: "jsonl",
    map: (r: { payload: string }) => (JSON.parse(r.payload) as { n: number }).n,
    combine: (a: number, b: number) => a + b,
  }),
  // A combine that forgot its return.
  defineOp({
    name: "no-return",
    format: "lines",
    pairs: (l: string, emit) => emit(l, 1),
    combine: (a: number, b: number) => {
      void (a + b);
      return undefined as unknown as number;
    },
  }),
  defineOp({
    name: "no-return-map",
    format: "lines",
    map: () => 1,
    combine: (a: number, b: number) => {
      void (a + b);
      return undefined as unknown as number;
    },
  }),
  // An async pairs would emit after its chunk was written.
  defineOp({
    name: "async-pairs",
    format: "lines",
    pairs: (async (l: string, emit: (k: string, v: number) => void) => {
      await Promise.resolve();
      emit(l, 1);
    }) as unknown as (l: string, emit: (k: string, v: number) => void) => void,
    combine: (a: number, b: number) => a + b,
  }),
  // One array emitted under two keys, and a combine that appends into its first argument.
  defineOp({
    name: "shared-value",
    format: "lines",
    pairs: (l: string, emit) => {
      const v = [l];
      emit("a", v);
      emit("b", v);
    },
    combine: (a: string[], b: string[]) => {
      a.push(...b);
      return a;
    },
    row: (key, v: string[]) => ({ key, n: v.length }),
  }),
  // One object, reused for every record.
  defineOp({
    name: "reused-object",
    format: "lines",
    map: (() => {
      const o = { n: 0 };
      return (l: string) => {
        o.n = l.length;
        return o;
      };
    })(),
    combine: (a: { n: number }, b: { n: number }) => {
      a.n += b.n;
      return a;
    },
  }),
  // A result of 2,100 references to one 256 KiB string: over 512 MiB as JSON text.
  defineOp({
    name: "huge-result",
    format: "lines",
    map: () => 1,
    combine: (a: number, b: number) => a + b,
    finalize: () => new Array<string>(2100).fill("x".repeat(256 * 1024)),
  }),
  // Fields that are undefined are left out and read back as undefined: that is fine.
  defineOp({
    name: "optional-fields",
    format: "lines",
    map: (l: string) => ({ n: 1, longest: l.length > 2 ? l : undefined }),
    combine: (a: { n: number; longest?: string }, b: { n: number; longest?: string }) => ({
      n: a.n + b.n,
      longest: (a.longest ?? "").length >= (b.longest ?? "").length ? a.longest : b.longest,
    }),
  }),
];

const run = (spec: Omit<JobSpecInput, "inputs"> & { inputs: string[] }, workers = 0) => {
  const registry = new OpRegistry();
  for (const op of ops) registry.register(op);
  return runLocal({ spec: parseJobSpec(spec), registry, workers, outDir: path.join(dir, `out-${spec.op}`) });
};

const failure = (spec: Omit<JobSpecInput, "inputs"> & { inputs: string[] }, workers = 0): Promise<string> =>
  run(spec, workers).then(
    (r) => `succeeded: ${JSON.stringify(r.result)}`,
    (err: Error & { code?: string }) => `${err.code}: ${err.message}`,
  );

describe("a lab's op that gives a value JSON cannot carry", () => {
  it.each([
    ["nan-map", /op nan-map: map of the record at byte 5: the value is NaN, which JSON cannot carry/],
    ["map-of-map", /op map-of-map: map of the record at byte 0: the value is a Map, not a plain object or array/],
    ["async-map", /op async-map: map of the record at byte 0: the value is a promise/],
    ["nan-combine", /op nan-combine: combine: the value is NaN/],
    ["nested-nan", /op nested-nan: emit for key "x" at byte 5: the value\.v is NaN/],
    ["bigint-row", /op bigint-row: row for key "a": the value\.v is a BigInt \(1n\)/],
    // 0/0 inside the combined value: JSON would carry it to the reducer as null.
    ["nested-combine", /op nested-combine: (combine|row) for key "k": the value(\.value)?\.r is NaN/],
  ])("%s is refused at every chunk size, whatever onBadRecord says", async (op, message) => {
    for (const chunkSize of [2, 1 << 20]) {
      const said = await failure({ op, inputs: [words], chunkSize, onBadRecord: "skip" });
      expect(said, `chunks of ${chunkSize}`).toMatch(message);
      // The op's code is at fault, not the job's spec: it fails as the op's, on its first attempt.
      expect(said, `chunks of ${chunkSize}`).toMatch(/^OP_FAILED: /);
      expect(said).not.toMatch(/after \d+ attempts/);
    }
  });

  it("a result more than one JSON text holds fails as the op's, saying what to do, not as an internal error", async () => {
    const said = await failure({ op: "huge-result", inputs: [words] });
    expect(said).toMatch(/^OP_FAILED: the job's result is more than one JSON text holds \(about 512 MiB\)/);
  });

  it("a field that is undefined is left out, as JSON leaves it, and the answer stands", async () => {
    for (const chunkSize of [2, 1 << 20]) {
      const r = await run({ op: "optional-fields", inputs: [words], chunkSize });
      // words.txt: 5 lines, of which only "ccc" is longer than 2.
      expect(r.result).toEqual({ n: 5, longest: "ccc" });
    }
  });
});

describe("a lab's op that breaks its own contract", () => {
  it.each([
    ["no-return", /op no-return: combine returned undefined \(a missing return\?\)/],
    ["no-return-map", /op no-return-map: combine returned undefined/],
    ["async-pairs", /op async-pairs: pairs returned a promise/],
  ])("%s is refused, not answered with what was left", async (op, message) => {
    for (const chunkSize of [2, 1 << 20]) {
      const said = await failure({ op, inputs: [words], chunkSize });
      expect(said, `chunks of ${chunkSize}`).toMatch(message);
      expect(said, `chunks of ${chunkSize}`).toMatch(/^OP_FAILED: /);
    }
  });

  it("a value it keeps using after emit or map is the value it gave, at every chunk size", async () => {
    // words.txt: 5 lines, of 1 + 2 + 1 + 3 + 1 characters, as wc counts them.
    for (const chunkSize of [2, 1 << 20]) {
      const shared = await run({ op: "shared-value", inputs: [words], chunkSize, partitions: 1 });
      const parts = (shared.result as { parts: { key: string }[] }).parts;
      const rows = (await readFile(parts[0]!.key, "utf8"))
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as unknown);
      expect(rows, `chunks of ${chunkSize}`).toEqual([
        { key: "a", n: 5 },
        { key: "b", n: 5 },
      ]);
      expect((await run({ op: "reused-object", inputs: [words], chunkSize })).result, `chunks of ${chunkSize}`).toEqual({ n: 8 });
    }
  });
});

describe("a lab's own error", () => {
  it("a SyntaxError of its code fails the job; a line that is not JSON is still a bad record", async () => {
    const file = path.join(dir, "events.jsonl");
    await writeFile(file, '{"payload":"{\\"n\\":1}"}\nnot json\n{"payload":"oops"}\n{"payload":"{\\"n\\":2}"}\n');
    expect(await failure({ op: "inner-json", inputs: [file], onBadRecord: "skip" })).toMatch(/"oops" is not valid JSON/);
    const fine = path.join(dir, "fine.jsonl");
    await writeFile(fine, '{"payload":"{\\"n\\":1}"}\nnot json\n{"payload":"{\\"n\\":2}"}\n');
    const r = await run({ op: "inner-json", inputs: [fine], onBadRecord: "skip" });
    expect(r.result).toBe(3);
    expect(r.status.skipped).toBe(1);
  });
});

describe("a lab's params", () => {
  it("a param named as an Object method (constructor, toString) is the op's own, given or not", async () => {
    const { z } = await import("zod");
    const op = defineOp({
      name: "method-params",
      format: "lines",
      params: z.object({ constructor: z.string().optional(), toString: z.string().optional(), k: z.string() }),
      map: () => 1,
      combine: (a: number, b: number) => a + b,
    });
    expect(op.parseParams({ k: "x" })).toMatchObject({ own: { k: "x" } });
    expect(op.parseParams({ k: "x", constructor: "c" })).toMatchObject({ own: { k: "x", constructor: "c" } });
  });
});
