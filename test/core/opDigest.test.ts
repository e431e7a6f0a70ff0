/**
 * The code a job ran is known: every op has a digest of its code, a task refuses to run on
 * code other than its job's, and a client's local op is checked against the deployed listing.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import * as esbuild from "esbuild";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as z from "zod";
import { CloudmillError } from "../../lib/core/errors.js";
import type { TaskMessage } from "../../lib/core/job/manifest.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { silentLogger } from "../../lib/core/log.js";
import { defineOp } from "../../lib/core/ops/defineOp.js";
import { defineTask } from "../../lib/core/ops/defineTask.js";
import { OpRegistry, opDigest } from "../../lib/core/ops/registry.js";
import { canonicalCode, codeDigest } from "../../lib/core/ops/codeDigest.js";
import { checkAgainstDeployed, listingOf } from "../../lib/core/ops/registryListing.js";
import { afterFailedAttempt } from "../../lib/core/pipeline/attempts.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { taskJobOf } from "../../lib/core/pipeline/split.js";
import { VERSION } from "../../lib/core/version.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { requireBuild, ROOT } from "../helpers/devCloud.js";

const longest = () =>
  defineOp({ name: "longest", format: "lines", map: (l: unknown) => String(l).length, combine: (a: number, b: number) => Math.max(a, b) });

describe("an op's digest", () => {
  it("is the same for the same definition, loaded twice", () => {
    expect(opDigest(longest())).toBe(opDigest(longest()));
    expect(opDigest(longest())).toMatch(/^[0-9a-f]{16}$/);
  });

  it("changes when any of its functions, its formats or its name changes", () => {
    const base = opDigest(longest());
    const variants = [
      defineOp({
        name: "longest",
        format: "lines",
        map: (l: unknown) => String(l).length + 0,
        combine: (a: number, b: number) => Math.max(a, b),
      }),
      defineOp({
        name: "longest",
        format: "lines",
        map: (l: unknown) => String(l).length,
        combine: (a: number, b: number) => Math.min(a, b),
      }),
      defineOp({
        name: "longest",
        format: ["lines", "csv"],
        map: (l: unknown) => String(l).length,
        combine: (a: number, b: number) => Math.max(a, b),
      }),
      defineOp({
        name: "longest2",
        format: "lines",
        map: (l: unknown) => String(l).length,
        combine: (a: number, b: number) => Math.max(a, b),
      }),
      defineOp({
        name: "longest",
        format: "lines",
        map: (l: unknown) => String(l).length,
        combine: (a: number, b: number) => Math.max(a, b),
        finalize: (m) => ({ m }),
      }),
    ];
    const digests = new Set([base, ...variants.map(opDigest)]);
    expect(digests.size).toBe(variants.length + 1);
  });

  it("changes with its params' names and bounds, not a default: one computed at parse differs between processes", () => {
    const withParams = (params: z.ZodType) =>
      opDigest(
        defineOp({
          name: "top",
          format: "lines",
          params,
          map: (l: unknown) => String(l).length,
          combine: (a: number, b: number) => Math.max(a, b),
        }),
      );
    const digests = [
      withParams(z.object({ k: z.coerce.number().default(10) })),
      withParams(z.object({ k: z.coerce.number().max(100).default(10) })),
      withParams(z.object({ n: z.coerce.number().default(10) })),
      withParams(z.object({ k: z.string().default("10") })),
    ];
    expect(new Set(digests).size).toBe(digests.length);
    expect(withParams(z.object({ k: z.coerce.number().default(1000) }))).toBe(digests[0]);
    let calls = 0;
    const since = () => withParams(z.object({ since: z.string().default(() => `call ${calls++}`) }));
    expect(since()).toBe(since());
  });

  it("of a task changes with its params' bounds too: its workers parse a job's params with that schema", () => {
    const task = (params?: z.ZodType) =>
      defineTask({
        name: "scale",
        ...(params ? { params } : {}),
        run: (item: number, _ctx: unknown, p: { f?: number }) => item * (p.f ?? 1),
      });
    const digests = [task(), task(z.object({ f: z.coerce.number().max(10) })), task(z.object({ f: z.coerce.number().max(1000) }))];
    expect(new Set(digests.map((t) => t.digest)).size).toBe(3);
    expect(task(z.object({ f: z.coerce.number().max(10) })).digest).toBe(digests[1]!.digest);
  });

  it("of a built-in op is the package version", () => {
    expect(new OpRegistry().digestOf("count")).toBe(`builtin-${VERSION}`);
  });
});

/** The one task of a job over a whole file of `store`. */
const wholeFileTask = async (store: FsBlobStore, key: string, jobId: string, job: TaskMessage["job"]): Promise<TaskMessage> => {
  const info = (await store.head(key))!;
  return {
    v: 1,
    jobId,
    job,
    chunk: { index: 0, inputIndex: 0, input: { bucket: "b", key, size: info.size, etag: info.etag, name: key }, start: 0, end: info.size },
  };
};

describe("a task whose job ran other code", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-digest-"));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it("is refused with OP_MISMATCH naming both digests, and retried (another worker may run the job's code)", async () => {
    const store = new FsBlobStore(dir);
    await store.put("in.txt", "a\nbb\n");
    const registry = new OpRegistry([longest()]);
    const job = taskJobOf(parseJobSpec({ op: "longest", inputs: ["in.txt"] }), registry);
    expect(job.opDigest).toBe(registry.digestOf("longest"));
    const task = await wholeFileTask(store, "in.txt", "digest-job", { ...job, opDigest: "0123456789abcdef" });
    const deps = { output: store, inputStore: () => store, registry, log: silentLogger };
    const err = await runTask(deps, task).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CloudmillError);
    expect(err).toMatchObject({ code: "OP_MISMATCH" });
    expect((err as Error).message).toContain("0123456789abcdef");
    expect((err as Error).message).toContain(registry.digestOf("longest"));
    expect(await afterFailedAttempt(deps, task, err as CloudmillError, 1)).toEqual({ action: "retry", attempt: 1, last: false });
    expect(await afterFailedAttempt(deps, task, err as CloudmillError, job.maxAttempts)).toEqual({
      action: "retry",
      attempt: job.maxAttempts,
      last: true,
    });
    // Its own digest runs.
    await expect(runTask(deps, { ...task, jobId: "digest-job-2", job })).resolves.toMatchObject({ kind: "done" });
  });

  it("is refused at the split when the spec names other code than the pipeline's (a redeploy since the client checked)", () => {
    const registry = new OpRegistry([longest()]);
    const deployed = registry.digestOf("longest");
    expect(taskJobOf(parseJobSpec({ op: "longest", inputs: ["in.txt"], opDigest: deployed }), registry).opDigest).toBe(deployed);
    expect(() => taskJobOf(parseJobSpec({ op: "longest", inputs: ["in.txt"], opDigest: "0123456789abcdef" }), registry)).toThrow(
      expect.objectContaining({
        code: "OP_MISMATCH",
        message: expect.stringContaining(`submitted for code 0123456789abcdef, but this pipeline runs ${deployed}`),
      }),
    );
  });

  it("of a built-in op names the release that started it, and runs on a worker of another (a retry after an upgrade)", async () => {
    const store = new FsBlobStore(dir);
    await store.put("words.txt", "a b\nb\n");
    const registry = new OpRegistry();
    const job = taskJobOf(parseJobSpec({ op: "wordcount", inputs: ["words.txt"] }), registry);
    expect(job.opDigest).toBe(`builtin-${VERSION}`);
    const task = await wholeFileTask(store, "words.txt", "builtin-digest-job", { ...job, opDigest: "builtin-0.0.1" });
    const deps = { output: store, inputStore: () => store, registry, log: silentLogger };
    // Refused, it would take an attempt: every job in flight during a rolling deploy would fail.
    await expect(runTask(deps, task)).resolves.toMatchObject({ kind: "done" });
    // A lab's op of the same name and digest form is still held to its digest.
    await expect(
      runTask(
        { ...deps, registry: new OpRegistry([longest()]) },
        { ...task, jobId: "builtin-digest-job-3", job: { ...job, op: "longest" } },
      ),
    ).rejects.toMatchObject({ code: "OP_MISMATCH" });
    // A task written before built-ins carried a digest still runs.
    const { opDigest: _, ...unmarked } = job;
    await expect(runTask(deps, { ...task, jobId: "builtin-digest-job-2", job: unmarked })).resolves.toMatchObject({ kind: "done" });
  });
});

describe("canonical code", () => {
  const digest = (f: unknown): string => codeDigest("op", [f]);
  it("tells apart code that differs only in grouping, a property's digits, or a literal's type", () => {
    const pairs: [unknown, unknown][] = [
      [(a: number, b: number, c: number) => (a + b) * c, (a: number, b: number, c: number) => a + b * c],
      [(a: number, b: number, c: number) => a - (b - c), (a: number, b: number, c: number) => a - b - c],
      [(s: string) => /(ab)+/.test(s), (s: string) => /ab+/.test(s)],
      [(x: number) => Math.log2(x), (x: number) => Math.log10(x)],
      [(r: { col1: number; col2: number }) => r.col1 - r.col2, (r: { col1: number; col2: number }) => r.col2 - r.col1],
      [() => 10n, () => 10],
      // JSON writes Infinity as null (written as source: a linter refuses the literal itself).
      [new Function("return 1e400"), new Function("return null")],
      [new Function("return -1e400"), new Function("return 1e400")],
    ];
    for (const [a, b] of pairs) expect(digest(a), `${String(a)} vs ${String(b)}`).not.toBe(digest(b));
  });

  it("refuses a bound function, whose source hides what it does; takes a built-in by its name", () => {
    const add = (a: number, b: number) => a + b;
    const mul = (a: number, b: number) => a * b;
    // V8 prints every bound function alike, so two versions of an op would share a digest.
    expect(String(add.bind(null))).toBe(String(mul.bind(null)));
    expect(() => defineOp({ name: "bound-combine", format: "numbers", map: (x: number) => x, combine: add.bind(null) })).toThrow(
      /^op bound-combine: bound add is bound .*pass a plain function/,
    );
    expect(digest(Math.max)).not.toBe(digest(Math.min));
  });

  it("is the same for the same code printed otherwise: quotes, escapes, parentheses, void 0, renamed bindings", () => {
    expect(canonicalCode("(x) => { return 'a\\t' + x; }")).toBe(
      canonicalCode('x => "a\\u0009" + x'.replace("x =>", "(x) => {return").concat(";}")),
    );
    expect(canonicalCode("(record) => record.n")).toBe(canonicalCode("(record2) => record2.n"));
    expect(canonicalCode("() => void 0")).toBe(canonicalCode("() => undefined"));
    // vitest's transform adds an empty statement after a loop with an empty body.
    expect(canonicalCode("(l) => { for (;;) {} return 1; }")).toBe(canonicalCode("(l) => { for (;;) {}; return 1; }"));
    expect(canonicalCode("map(r) { return r; }")).toBe(canonicalCode("map(row) { return row }"));
  });
});

describe("a client's local op against the deployed listing", () => {
  const listing = listingOf(new OpRegistry([longest()]));

  it("passes when the digests agree", () => {
    expect(() => checkAgainstDeployed(longest(), listing)).not.toThrow();
  });

  it("is OP_MISMATCH naming both digests and saying to redeploy when they differ", () => {
    const edited = defineOp({ name: "longest", format: "lines", map: (l: unknown) => String(l).trim().length, combine: Math.max });
    expect(() => checkAgainstDeployed(edited, listing)).toThrow(
      expect.objectContaining({
        code: "OP_MISMATCH",
        message: expect.stringMatching(new RegExp(`your code is ${opDigest(edited)}, the deployed op is ${opDigest(longest())}; restart`)),
      }),
    );
  });

  it("is UNKNOWN_OP when the op is not deployed at all", () => {
    const other = defineOp({ name: "other", format: "lines", map: () => 1, combine: (a: number, b: number) => a + b });
    expect(() => checkAgainstDeployed(other, listing)).toThrow(expect.objectContaining({ code: "UNKNOWN_OP" }));
  });
});

/**
 * The lab's process loads its module as written (tsx, or tsc's output); the deployed roles load
 * the esbuild bundle of it. Each printing is loaded in its own Node process, so no test runner
 * transform touches the function text.
 */
describe("an op's digest across the tools that print its module", () => {
  const SOURCE = `import { defineOp } from "cloudmill";
import { z } from "zod";

const Reading = z.object({ station: z.string(), celsius: z.number() });
type Acc = { n: number; total: number };

/** Mean temperature of the valid readings. */
export const meanTemp = defineOp({
  name: 'mean-temp',
  format: "jsonl",
  map: (record: unknown): Acc | undefined => {
    const r = Reading.safeParse(record); // skip the bad ones
    if (!r.success) return undefined;
    return { n: 1, total: r.data.celsius * 1_000 };
  },
  combine: (a: Acc, b: Acc): Acc => ({ n: a.n + b.n, total: a.total + b.total, }),
  finalize: (acc) => ({
    mean: acc ? acc.total / acc.n / 1e3 : null,
    label: \`it's \${acc ? acc['n'] : "é\\t"} "mean"\`.replace(/'/g, "’"),
    big: 10n,
  }),
});
`;
  let dir: string;

  /** The digest a fresh Node process computes for the module's `meanTemp`. */
  const digestIn = (file: string): string =>
    execFileSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const m = await import(${JSON.stringify(pathToFileURL(file).href)});\nprocess.stdout.write(m.meanTemp.digest);`,
      ],
      {
        encoding: "utf8",
      },
    );

  beforeAll(async () => {
    requireBuild();
    // Inside the package, so `cloudmill` and `zod` resolve as in a lab project.
    await mkdir(path.join(ROOT, "node_modules/.cache"), { recursive: true });
    dir = await mkdtemp(path.join(ROOT, "node_modules/.cache/digest-"));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it("is the same through tsc, through tsx's per-file transform and through an esbuild bundle, and changes with the code", async () => {
    const write = async (name: string, text: string): Promise<string> => {
      const file = path.join(dir, name);
      await writeFile(file, text);
      return file;
    };
    const tsc = await write(
      "tsc.mjs",
      ts.transpileModule(SOURCE, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } }).outputText,
    );
    const tsx = await write("tsx.mjs", (await esbuild.transform(SOURCE, { loader: "ts", format: "esm", target: "node20" })).code);
    const entry = await write("entry.ts", SOURCE);
    const bundled = path.join(dir, "bundle.mjs");
    await esbuild.build({
      entryPoints: [entry],
      bundle: true,
      format: "esm",
      platform: "node",
      target: "node22",
      outfile: bundled,
      logLevel: "silent",
    });
    const edited = await write("edited.ts", SOURCE.replace("a.n + b.n", "a.n + b.n + 1"));
    const editedBundle = path.join(dir, "edited.mjs");
    await esbuild.build({
      entryPoints: [edited],
      bundle: true,
      format: "esm",
      platform: "node",
      outfile: editedBundle,
      logLevel: "silent",
    });

    // The printings really differ: quotes, separators, comments and layout.
    const texts = await Promise.all([tsc, tsx, bundled].map((f) => readFile(f, "utf8")));
    expect(new Set(texts.map((t) => t.slice(t.indexOf("defineOp({"))).map((t) => t.slice(0, t.indexOf("});")))).size).toBe(3);

    const digest = digestIn(tsc);
    expect(digest).toMatch(/^[0-9a-f]{16}$/);
    expect(digestIn(tsx)).toBe(digest);
    expect(digestIn(bundled)).toBe(digest);
    expect(digestIn(editedBundle)).not.toBe(digest);
  });
});
