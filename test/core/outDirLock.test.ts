/**
 * A keyed run's --out-dir lock, as runLocal takes and releases it: a lock of another PID
 * namespace (another container or host) is refused in words that say so and name the file to
 * remove, and the lock goes at the end even when the run's own clean-up fails. The clean-up's
 * fault is put in at the port: node:fs/promises' rm, for the run's work folder only, fails with
 * EACCES. The engine itself is the real one.
 */
import type * as fsPromises from "node:fs/promises";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { LOCK_NAME, lockText } from "../../lib/fs/folderLock.js";
import { silentLogger } from "../../lib/core/log.js";
import { runLocal } from "../../lib/local/localEngine.js";

/** The folder under which a work folder's removal fails, once set. */
const refused = vi.hoisted(() => ({ under: undefined as string | undefined }));

vi.mock("node:fs/promises", async (importOriginal) => {
  const fs = await importOriginal<typeof fsPromises>();
  const rm: typeof fs.rm = async (file, options) => {
    if (refused.under !== undefined && typeof file === "string" && path.basename(path.dirname(file)) === path.basename(refused.under))
      throw Object.assign(new Error(`EACCES: permission denied, rm '${file}'`), { code: "EACCES", errno: -13, syscall: "rm", path: file });
    return fs.rm(file, options);
  };
  return { ...fs, rm, default: { ...fs, rm } };
});

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-outlock-"));
});
afterAll(async () => {
  refused.under = undefined;
  await rm(dir, { recursive: true, force: true });
});

const sort = () => parseJobSpec({ op: "sort", inputs: [path.resolve(import.meta.dirname, "../../examples/numbers.txt")], partitions: 2 });

it("a lock of another container or host: refused, saying so and naming the lock file to remove if no run writes there", async () => {
  const outDir = path.join(dir, "shared");
  await mkdir(outDir);
  const lock = path.join(outDir, LOCK_NAME);
  await writeFile(lock, lockText({ pid: 1, namespace: "00000000" }));
  const err = await runLocal({ spec: sort(), registry: new OpRegistry(), workers: 0, outDir }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CloudmillError);
  expect((err as CloudmillError).code).toBe(ErrorCode.ENVIRONMENT);
  expect((err as CloudmillError).describe()).toBe(
    `--out-dir ${outDir} is locked by a cloudmill run in another container or host (pid 1 there): ` +
      `if no run is writing there, remove ${lock}; or give another --out-dir`,
  );
  expect(await readdir(outDir)).toEqual([LOCK_NAME]);
});

it("its work folder cannot be removed: the run's answer stands, said with a warning, and its lock goes, so this process can run into the out-dir again", async () => {
  const outDir = path.join(dir, "again");
  const tmp = await mkdtemp(path.join(dir, "tmp-"));
  const before = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  refused.under = tmp;
  const warnings: string[] = [];
  const log = { ...silentLogger, warn: (message: string) => void warnings.push(message), child: () => log };
  try {
    const first = await runLocal({ spec: sort(), registry: new OpRegistry(), workers: 0, outDir, log });
    expect(first.status.state).toBe("succeeded");
    expect(warnings).toEqual([expect.stringMatching(/^removing the work folder .*cloudmill-run-.* failed$/)]);
    expect(await readdir(tmp)).toHaveLength(1);
  } finally {
    refused.under = undefined;
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
  }
  expect((await readdir(outDir)).sort()).toEqual(["_SUCCESS", "part-00000.txt", "part-00001.txt"]);
  const again = await runLocal({ spec: sort(), registry: new OpRegistry(), workers: 0, outDir });
  expect(again.status.state).toBe("succeeded");
  expect((await readdir(outDir)).sort()).toEqual(["_SUCCESS", "part-00000.txt", "part-00001.txt"]);
});
