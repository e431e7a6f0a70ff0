/**
 * `cloudmill submit --items FILE` reads its items as `cloudmill run` reads JSONL: a starting
 * byte-order mark is not data, and bytes that are not UTF-8 are refused rather than replaced
 * (replaced, an item's text would silently change).
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readItemsFile } from "../../lib/cli/commands/submit.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-items-file-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

/** Python's json over the file as utf-8-sig: the items it reads, or its error's name. */
const python = (file: string): unknown =>
  JSON.parse(
    execFileSync(
      "python3",
      [
        "-c",
        "import json,sys\ntry:\n  print(json.dumps([json.loads(l) for l in open(sys.argv[1],encoding='utf-8-sig') if l.strip()]))\n" +
          "except UnicodeDecodeError as e:\n  print(json.dumps('UnicodeDecodeError'))",
        file,
      ],
      { encoding: "utf8" },
    ),
  );

describe("an items file", () => {
  it("with a byte-order mark reads as Python's utf-8-sig reads it", async () => {
    const file = path.join(dir, "bom.jsonl");
    await writeFile(file, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"x":1}\n"caf\u00e9"\n\n[2]\n')]));
    expect(await readItemsFile(file)).toEqual(python(file));
  });

  it("that is not UTF-8 is refused, as Python refuses it", async () => {
    const file = path.join(dir, "latin1.jsonl");
    await writeFile(file, Buffer.concat([Buffer.from('"caf'), Buffer.from([0xe9]), Buffer.from('"\n')]));
    expect(python(file)).toBe("UnicodeDecodeError");
    await expect(readItemsFile(file)).rejects.toMatchObject({ code: "BAD_RECORD", message: expect.stringContaining("not UTF-8") });
  });
});
