/**
 * A keyed run whose --out-dir fills up while its parts come in. No filesystem of a test can be
 * made full on purpose without a mount, so the fault is put in at the port: node:fs/promises'
 * writeFile, for the out-dir's files only, writes half of what it is given there, then fails
 * with the kernel's own ENOSPC (a write to /dev/full). The engine itself is the real one.
 */
import type * as fsPromises from "node:fs/promises";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { runLocal } from "../../lib/local/localEngine.js";

/** The folder whose writes fail, once set, and which of its files. */
const full = vi.hoisted(() => ({ dir: undefined as string | undefined, names: /./ }));

vi.mock("node:fs/promises", async (importOriginal) => {
  const fs = await importOriginal<typeof fsPromises>();
  const writeFile: typeof fs.writeFile = async (file, data, options) => {
    if (full.dir === undefined || typeof file !== "string" || path.dirname(file) !== full.dir || !full.names.test(path.basename(file)))
      return fs.writeFile(file, data, options);
    const text = String(data);
    await fs.writeFile(file, text.slice(0, text.length / 2), options);
    return fs.writeFile("/dev/full", text);
  };
  return { ...fs, writeFile, default: { ...fs, writeFile } };
});

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-outfull-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sort = () => parseJobSpec({ op: "sort", inputs: [path.resolve(import.meta.dirname, "../../examples/numbers.txt")], partitions: 2 });

/** What runLocal rejects with while `outDir`'s files named `names` cannot be written. */
const failure = async (outDir: string, names: RegExp): Promise<CloudmillError> => {
  full.dir = outDir;
  full.names = names;
  try {
    await runLocal({ spec: sort(), registry: new OpRegistry(), workers: 0, outDir });
  } catch (err) {
    expect(err).toBeInstanceOf(CloudmillError);
    return err as CloudmillError;
  } finally {
    full.dir = undefined;
  }
  throw new Error("the run succeeded");
};

it("full when the run begins: its lock cannot be taken; it fails at once and leaves no out-dir", async () => {
  const outDir = path.join(dir, "full-at-once");
  // The lock's text goes to a file of its own first, linked to the lock's name once whole.
  const err = await failure(outDir, /^\.cloudmill-lock\.new-/);
  expect(err.code).toBe(ErrorCode.ENVIRONMENT);
  expect(err.describe()).toBe(`--out-dir ${outDir}: cannot lock it: no space left on device (ENOSPC)`);
  expect(existsSync(outDir)).toBe(false);
});

it("fails with ENVIRONMENT in one line naming the path and the cause; no _SUCCESS, no temporary file, no lock", async () => {
  const outDir = path.join(dir, "parts");
  // The temporary file the manifest is written to before it becomes _SUCCESS.
  const err = await failure(outDir, /^\.cm-.*\.tmp$/);
  expect(err.code).toBe(ErrorCode.ENVIRONMENT);
  expect(err.describe()).toBe(`--out-dir ${outDir}: cannot write ${outDir}/_SUCCESS: no space left on device (ENOSPC)`);
  // The parts came in whole (a rename); the manifest that would say so did not, nor any piece of it.
  expect((await readdir(outDir)).sort()).toEqual(["part-00000.txt", "part-00001.txt"]);
  expect((await readFile(path.join(outDir, "part-00000.txt"), "utf8")).length).toBeGreaterThan(0);
});
