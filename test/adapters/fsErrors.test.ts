/**
 * Filesystem failures as cloudmill tells them (lib/fs/fsErrors.ts): the path and the cause in
 * plain words, and whether trying again here could help. The failures are the kernel's own:
 * /dev/full refuses every write with ENOSPC, and a file where a folder must be is ENOTDIR.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode } from "../../lib/core/errors.js";
import { fileFailure, isLasting, plainCause } from "../../lib/fs/fsErrors.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-fserrors-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const failureOf = (call: Promise<unknown>): Promise<unknown> =>
  call.then(
    () => {
      throw new Error("the call succeeded");
    },
    (err: unknown) => err,
  );

describe("fileFailure", () => {
  it("a full disk: ENVIRONMENT, one line naming the path and the cause in plain words, lasting", async () => {
    const err = await failureOf(writeFile("/dev/full", "x"));
    expect(plainCause(err)).toBe("no space left on device (ENOSPC)");
    expect(isLasting(err)).toBe(true);
    const e = fileFailure("cannot write /dev/full", err);
    expect(e.code).toBe(ErrorCode.ENVIRONMENT);
    expect(e.describe()).toBe("cannot write /dev/full: no space left on device (ENOSPC)");
    expect(e.context.lasting).toBe(true);
    // What crosses to another thread keeps it.
    expect(e.toJSON().context.lasting).toBe(true);
  });

  it("a file where a folder must be: said plainly, and not lasting (another path may do)", async () => {
    const file = path.join(dir, "a-file");
    await writeFile(file, "");
    const err = await failureOf(writeFile(path.join(file, "x"), ""));
    expect(fileFailure(`cannot write ${file}/x`, err).describe()).toBe(`cannot write ${file}/x: not a directory (ENOTDIR)`);
    expect(isLasting(err)).toBe(false);
  });

  it("a path too long for the system (a manifest's line, say): the line keeps its start and end, not the whole path", async () => {
    const long = path.join(dir, "k".repeat(20_000));
    const err = await failureOf(writeFile(long, ""));
    expect(plainCause(err)).toBe("name too long (ENAMETOOLONG)");
    const line = fileFailure(`head ${long}`, err).describe();
    expect(line.length).toBeLessThan(600);
    expect(line.startsWith(`head ${dir}/kkk`)).toBe(true);
    expect(line.endsWith("kkk: name too long (ENAMETOOLONG)")).toBe(true);
    expect(line).toContain(`…(${`head ${long}`.length - 400} characters)…`);
  });
});
