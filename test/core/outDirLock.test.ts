/**
 * A keyed run's --out-dir lock, as runLocal takes and releases it: a lock of another PID
 * namespace (another container or host) is refused in words that say so and name the file to
 * remove.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { LOCK_NAME, lockText } from "../../lib/fs/folderLock.js";
import { runLocal } from "../../lib/local/localEngine.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-outlock-"));
});
afterAll(async () => {
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
