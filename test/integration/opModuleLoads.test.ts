/**
 * The local engine loads a lab's op modules once per thread that runs their code: the fold's
 * thread answers whether it knows the run's op by digest, so the run's own thread does not load
 * them again to ask. Each load of the module notes its thread in a file (its top-level code runs
 * once per load), and so does its finalize, which runs only where the job's partials are folded.
 */
import { execFileSync } from "node:child_process";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { threadId } from "node:worker_threads";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { defineOp } from "../../lib/core/ops/defineOp.js";
import { opsRegistry } from "../../lib/core/ops/opModules.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { requireBuild, ROOT } from "../helpers/devCloud.js";

const LOADS = "CLOUDMILL_TEST_MODULE_LOADS";
let dir: string;
let source: string;
let built: string;
let notes: string;
let input: string;
let lines: number;

beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-module-loads-"));
  source = path.join(dir, "counted-ops.mjs");
  const defineOpUrl = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
  await writeFile(
    source,
    `import { appendFileSync } from "node:fs";
import { threadId } from "node:worker_threads";
import { defineOp } from ${JSON.stringify(defineOpUrl)};
const note = (what) => appendFileSync(process.env.${LOADS}, \`\${what} \${threadId}\\n\`);
note("load");
export const counted = defineOp({
  name: "counted",
  format: "lines",
  map: () => 1,
  combine: (a, b) => a + b,
  finalize: (n) => { note("finalize"); return { lines: n }; },
});
`,
  );
  // The same code at another path, as a lab's build output beside its source: the same digest.
  built = path.join(dir, "counted-ops.build.mjs");
  await copyFile(source, built);
  notes = path.join(dir, "notes.txt");
  process.env[LOADS] = notes;
  input = path.join(dir, "lines.txt");
  await writeFile(input, Array.from({ length: 200 }, (_, i) => `line ${i}\n`).join(""));
  lines = Number(execFileSync("wc", ["-l", input]).toString().trim().split(" ")[0]);
}, 60_000);

beforeEach(async () => {
  await writeFile(notes, "");
});

afterAll(async () => {
  delete process.env[LOADS];
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The notes since the test began: [what, thread id]. */
const noted = async (): Promise<[string, number][]> =>
  (await readFile(notes, "utf8"))
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      const [what, id] = l.split(" ");
      return [what!, Number(id)];
    });

describe("a lab op's modules on the local engine", () => {
  it("load once per thread of the fold's host, not again here to ask whether that thread knows the op", async () => {
    // The run's registry holds the op from the source; its threads load the built copy.
    const registry = await opsRegistry([source]);
    await writeFile(notes, "");
    // No task threads (they would load the modules too): chunks map and fold on the fold's thread host.
    const r = await runLocal({
      spec: parseJobSpec({ op: "counted", inputs: [input], chunkSize: 256 }),
      registry,
      opsModules: [built],
      workers: 0,
    });
    expect(r.result).toEqual({ lines });
    const loads = (await noted()).filter(([what]) => what === "load").map(([, id]) => id);
    // Once per thread of the host (a map and a fold may run at once, each on a thread), never here.
    expect(loads.length).toBeGreaterThanOrEqual(1);
    expect(new Set(loads).size).toBe(loads.length);
    expect(loads).not.toContain(threadId);
    // One of them finalized the job: the op still folds there.
    const finalized = (await noted()).filter(([what]) => what === "finalize");
    expect(finalized).toHaveLength(1);
    expect(loads).toContain(finalized[0]![1]);
  }, 60_000);

  it("an op the registry defines with other code than the modules' folds here, not on their thread", async () => {
    const other = defineOp({
      name: "counted",
      format: "lines",
      map: () => 1,
      combine: (a: number, b: number) => a + b,
      finalize: (n: number) => ({ lines: n, here: true }),
    });
    const r = await runLocal({
      spec: parseJobSpec({ op: "counted", inputs: [input], chunkSize: 256 }),
      registry: new OpRegistry([...builtinOps, other]),
      opsModules: [built],
      workers: 0,
    });
    expect(r.result).toEqual({ lines, here: true });
    expect((await noted()).filter(([what]) => what === "finalize")).toEqual([]);
  }, 60_000);

  describe("a module whose start-up never ends off the main thread", () => {
    let stuck: string;
    beforeAll(async () => {
      // Loads here (the registry), never on a thread: the thread asked whether it knows the op never answers.
      stuck = path.join(dir, "stuck-start.mjs");
      const defineOpUrl = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
      await writeFile(
        stuck,
        `import { isMainThread } from "node:worker_threads";
import { defineOp } from ${JSON.stringify(defineOpUrl)};
if (!isMainThread) await new Promise(() => setInterval(() => {}, 1 << 30));
export const counted = defineOp({ name: "counted", format: "lines", map: () => 1, combine: (a, b) => a + b, finalize: (n) => ({ lines: n }) });
`,
      );
    });

    it("fails the run TASK_TIMEOUT within the task's limit, not hangs it", async () => {
      const run = runLocal({
        spec: parseJobSpec({ op: "counted", inputs: [input], chunkSize: 256 }),
        registry: await opsRegistry([stuck]),
        opsModules: [stuck],
        workers: 0,
        taskTimeoutSeconds: 2,
      });
      await expect(run).rejects.toMatchObject({
        code: "TASK_TIMEOUT",
        message: expect.stringMatching(/^job local-[0-9a-f]+'s start did not finish within 2 s \(taskTimeoutSeconds\)$/),
      });
    }, 30_000);

    it("ends with the run when it is interrupted", async () => {
      const interrupt = new AbortController();
      const run = runLocal({
        spec: parseJobSpec({ op: "counted", inputs: [input], chunkSize: 256 }),
        registry: await opsRegistry([stuck]),
        opsModules: [stuck],
        workers: 0,
        taskTimeoutSeconds: 600,
        signal: interrupt.signal,
      });
      setImmediate(() => interrupt.abort());
      await expect(run).rejects.toMatchObject({ code: "CANCELLED" });
    }, 30_000);
  });
});
