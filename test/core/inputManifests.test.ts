/**
 * Manifest inputs, read without any cloud: the plain list's lines, S3 Batch Operations CSV rows,
 * and S3 Inventory reports (manifest.json and gzip CSV data files built here as S3 writes them:
 * no header, every field quoted, keys URL-encoded with `+` for a space).
 */
import { execFileSync } from "node:child_process";
import { createGunzip, createGzip, gzipSync } from "node:zlib";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ErrorCode, type CloudmillError } from "../../lib/core/errors.js";
import {
  batchCsvObjects,
  inventoryObjects,
  inventoryReport,
  isS3Input,
  listEntries,
  manifestKind,
} from "../../lib/core/pipeline/inputManifests.js";
import { planInputs } from "../../lib/sdk/uploads.js";
import { cli } from "../helpers/cli.js";

const collect = async <T>(items: AsyncIterable<T>): Promise<T[]> => {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
};

const thrown = (fn: () => unknown): CloudmillError => {
  try {
    fn();
  } catch (err) {
    return err as CloudmillError;
  }
  throw new Error("expected a throw");
};

describe("manifest inputs", () => {
  it("tell their kind by name, and S3 manifests from local ones", () => {
    expect(manifestKind("s3://b/inv/src/cfg/2026-12-01T00-00Z/manifest.json")).toBe("inventory");
    expect(manifestKind("s3://b/keys.CSV")).toBe("batch-csv");
    expect(manifestKind("s3://b/keys.txt")).toBe("list");
    expect([isS3Input("s3://b/k"), isS3Input("manifest:s3://b/k.txt"), isS3Input("manifest:k.txt"), isS3Input("k.txt")]).toEqual([
      true,
      true,
      false,
      false,
    ]);
  });

  it("read a plain list line by line: blank lines and comments skipped, CRLF dropped, spaces kept (they may be a key's)", () => {
    expect(listEntries("# picks\r\ndata/a.txt\r\n\r\n  \t\n  s3://b/c d.txt  \n  # indented\n#x\ndir/\n", "keys.txt")).toEqual([
      { line: 2, text: "data/a.txt" },
      { line: 5, text: "  s3://b/c d.txt  " },
      { line: 8, text: "dir/" },
    ]);
  });

  it("read Batch Operations CSV rows, keys URL-decoded, and refuse versions and short rows", () => {
    expect(batchCsvObjects('lab,data/site%20a/log%203.txt\r\n"lab","x%2By,z.txt"\n\n', "s3://lab/m.csv")).toEqual([
      { line: 1, bucket: "lab", key: "data/site a/log 3.txt" },
      { line: 2, bucket: "lab", key: "x+y,z.txt" },
    ]);
    const version = thrown(() => batchCsvObjects("lab,a.txt,3HL4kqtJlcpXroDTDmJ", "s3://lab/m.csv"));
    expect([version.code, version.context.line, version.message]).toEqual(["INVALID_SPEC", 1, expect.stringMatching(/an object version/)]);
    expect(thrown(() => batchCsvObjects("a.txt\nlab,b\nonly", "s3://lab/m.csv")).context.line).toBe(1);
    expect(thrown(() => batchCsvObjects("lab,bad%zzkey", "s3://lab/m.csv")).message).toMatch(/not URL-encoded/);
  });

  it("refuse a row that is not CSV, or a list that is not UTF-8, naming the manifest, the line and the byte", () => {
    const open = thrown(() => batchCsvObjects('lab,a.txt\nlab,"b.txt\n', "s3://lab/m.csv"));
    expect([open.code, open.context, open.message]).toEqual([
      "INVALID_SPEC",
      { input: "s3://lab/m.csv", line: 2, offset: 14 },
      "not CSV: unterminated quoted field (column 2): a row must be one line",
    ]);
    expect(open.describe()).toContain("s3://lab/m.csv:2 (byte 14): not CSV: unterminated quoted field (column 2): a row must be one line");
    const latin1 = Buffer.concat([Buffer.from("ok.txt\ncaf"), Buffer.from([0xe9]), Buffer.from(".txt\n")]);
    expect(thrown(() => listEntries(latin1, "keys.txt")).context).toEqual({ input: "keys.txt", line: 2, offset: 7 });
    const latin1Csv = Buffer.concat([Buffer.from("lab,ok.txt\nlab,caf"), Buffer.from([0xe9]), Buffer.from(".txt\n")]);
    expect(thrown(() => batchCsvObjects(latin1Csv, "m.csv"))).toMatchObject({ message: "not UTF-8 text", context: { line: 2 } });
  });

  it("read a manifest saved with a byte order mark as if it had none", () => {
    const bom = "\uFEFF";
    expect(batchCsvObjects(`${bom}lab,a.txt\n`, "m.csv")).toEqual([{ line: 1, bucket: "lab", key: "a.txt" }]);
    expect(listEntries(`${bom}s3://lab/a.txt\n`, "keys.txt")).toEqual([{ line: 1, text: "s3://lab/a.txt" }]);
    expect(inventoryReport(`${bom}${report()}`, "m").bucket).toBe("lab-inventory");
  });

  it("read no Batch CSV row past the input limit, and refuse a row of more than three columns", () => {
    // Row 3 is not CSV, and row 4's key not URL-encoded: past a limit of 1, neither is read.
    expect(batchCsvObjects('lab,a\nlab,b\nlab,"c\nlab,%zz\n', "m.csv", 1)).toEqual([
      { line: 1, bucket: "lab", key: "a" },
      { line: 2, bucket: "lab", key: "b" },
    ]);
    expect(thrown(() => batchCsvObjects("lab,foo,,junk", "m.csv")).message).toMatch(/got 4 columns \(a comma in a key is written %2C/);
  });

  const report = (fileFormat = "CSV", fileSchema = "Bucket, Key, Size, LastModifiedDate, ETag, IsLatest, IsDeleteMarker") =>
    JSON.stringify({
      sourceBucket: "lab",
      destinationBucket: "arn:aws:s3:::lab-inventory",
      version: "2016-11-30",
      creationTimestamp: "1764547200000",
      fileFormat,
      fileSchema,
      files: [{ key: "inv/lab/cfg/data/a.csv.gz", size: 100, MD5checksum: "f11166069f1990abeb9c97ace9cdfabc" }],
    });

  it("read an inventory report's manifest.json: the data files' bucket from the destination ARN", () => {
    expect(inventoryReport(report(), "s3://lab-inventory/m/manifest.json")).toEqual({
      bucket: "lab-inventory",
      files: ["inv/lab/cfg/data/a.csv.gz"],
      columns: ["Bucket", "Key", "Size", "LastModifiedDate", "ETag", "IsLatest", "IsDeleteMarker"],
    });
    expect(thrown(() => inventoryReport(report("Parquet"), "m")).message).toMatch(
      /Parquet cannot be read: configure the report's format as CSV/,
    );
    expect(thrown(() => inventoryReport(report("CSV", "Bucket, Size"), "m")).message).toMatch(/no Key column/);
    expect(thrown(() => inventoryReport('{"files": []}', "m")).message).toMatch(/not an S3 Inventory manifest/);
  });

  it("read an inventory's current objects: keys decoded, ETags quoted as S3 returns them", async () => {
    const columns = inventoryReport(report(), "m").columns;
    const rows = [
      '"lab","site+a/log+3.txt","12","2026-11-30T00:00:00.000Z","0cc175b9c0f1b6a831c399e269772661","true","false"',
      '"lab","x%2By.txt","7","2026-11-30T00:00:00.000Z","92eb5ffee6ae2fec3ad71c777531578f","true","false"',
      '"lab","gone.txt","","2026-11-30T00:00:00.000Z","","true","true"',
      '"lab","old.txt","5","2026-11-29T00:00:00.000Z","4a8a08f09d37b73795649038408b5f33","false","false"',
    ];
    expect(await collect(inventoryObjects(gzipSync(`${rows.join("\n")}\n`), columns, "s3://lab-inventory/a.csv.gz"))).toEqual([
      { line: 1, bucket: "lab", key: "site a/log 3.txt", size: 12, etag: '"0cc175b9c0f1b6a831c399e269772661"' },
      { line: 2, bucket: "lab", key: "x+y.txt", size: 7, etag: '"92eb5ffee6ae2fec3ad71c777531578f"' },
    ]);
    // Without its last newline, and with CRLF line ends, the same rows.
    expect(await collect(inventoryObjects(gzipSync(rows.join("\r\n")), columns, "s3://lab-inventory/a.csv.gz"))).toHaveLength(2);
    await expect(collect(inventoryObjects(Buffer.from("not gzip"), columns, "s3://i/a.csv.gz"))).rejects.toThrow(/gzip CSV/);
    await expect(collect(inventoryObjects(gzipSync('"lab","a.txt"\n'), columns, "s3://i/a.csv.gz"))).rejects.toThrow(
      /expected 7 columns, got 2/,
    );
    // A row that is not CSV names its data file, line and decompressed byte (é is two bytes).
    const accented = '"lab","éé.txt","12","2026-11-30T00:00:00.000Z","0cc175b9c0f1b6a831c399e269772661","true","false"';
    await expect(collect(inventoryObjects(gzipSync(`${accented}\n"lab","b.txt\n`), columns, "s3://i/a.csv.gz"))).rejects.toMatchObject({
      code: ErrorCode.INVALID_SPEC,
      context: { input: "s3://i/a.csv.gz", line: 2, offset: Buffer.byteLength(accented) + 1 + 6, decoded: true },
    });
  });

  it("close the decoding when the reader stops early, and refuse a row no inventory has", async () => {
    const columns = inventoryReport(report(), "m").columns;
    const row = (i: number) => `"lab","k${i}.txt","3","2026-11-30T00:00:00.000Z","900150983cd24fb0d6963f7d28e17f72","true","false"\n`;
    const gunzips = Object.getPrototypeOf(createGunzip()) as { destroy(): unknown };
    const destroyed = vi.spyOn(gunzips, "destroy");
    try {
      const rows = gzipSync(Array.from({ length: 50_000 }, (_, i) => row(i)).join(""));
      for await (const o of inventoryObjects(rows, columns, "s3://i/a.csv.gz")) if (o.key === "k10.txt") break;
      expect(destroyed).toHaveBeenCalled();
    } finally {
      destroyed.mockRestore();
    }
    const long = gzipSync(`${row(0)}"lab","${"x".repeat(3 << 20)}`);
    await expect(collect(inventoryObjects(long, columns, "s3://i/b.csv.gz"))).rejects.toMatchObject({
      code: ErrorCode.INVALID_SPEC,
      context: { input: "s3://i/b.csv.gz", line: 2 },
    });
  });

  it("read an inventory data file that decodes to more than the longest string JavaScript holds", async () => {
    const columns = inventoryReport(report(), "m").columns;
    // 600 MiB of noncurrent versions (skipped; a string holds at most 2^29 - 24 characters), with
    // one current object before them and one after.
    const current = (key: string) => `"lab","${key}","3","2026-11-30T00:00:00.000Z","900150983cd24fb0d6963f7d28e17f72","true","false"\n`;
    const old = `"lab","${"o".repeat(900)}","5","2026-11-29T00:00:00.000Z","4a8a08f09d37b73795649038408b5f33","false","false"\n`;
    const gzip = createGzip({ level: 1 });
    const compressed: Buffer[] = [];
    gzip.on("data", (c: Buffer) => compressed.push(c));
    const done = new Promise((resolve) => gzip.on("end", resolve));
    const block = Buffer.from(old.repeat(Math.floor((4 << 20) / old.length)));
    gzip.write(current("first.txt"));
    for (let written = 0; written < 600 * 2 ** 20; written += block.length) {
      if (!gzip.write(block)) await new Promise((r) => gzip.once("drain", r));
    }
    gzip.end(current("last.txt"));
    await done;
    const keys: string[] = [];
    for await (const o of inventoryObjects(Buffer.concat(compressed), columns, "s3://i/big.csv.gz")) keys.push(o.key);
    expect(keys).toEqual(["first.txt", "last.txt"]);
  }, 120_000);
});

describe("a local run over a manifest", () => {
  let dir: string;
  const lines = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag} ${i}\n`).join("");
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-manifest-"));
    await writeFile(path.join(dir, "a.txt"), lines(5, "a"));
    await writeFile(path.join(dir, "b c.txt"), lines(7, "b"));
    await writeFile(path.join(dir, "unlisted.txt"), lines(100, "u"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("counts the lines of the files it lists (relative paths from its folder), and no others", async () => {
    await writeFile(path.join(dir, "list.txt"), `# two of three\na.txt\n\n${path.join(dir, "b c.txt")}\n`);
    const r = await cli(["run", `manifest:${path.join(dir, "list.txt")}`, "--op", "count", "--no-progress"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ records: 12 });
  });

  it("uploads the files a local list names when submitted, and leaves a list in S3 where it is", async () => {
    await writeFile(path.join(dir, "up.txt"), "a.txt\nb c.txt\n");
    const planned = await planInputs("lab-input", "job-1", [`manifest:${path.join(dir, "up.txt")}`, "manifest:s3://lab/keys.txt"]);
    expect(planned.uploads.map((u) => [path.basename(u.file), u.key])).toEqual([
      ["a.txt", "_uploads/job-1/a.txt"],
      ["b c.txt", "_uploads/job-1/b c.txt"],
    ]);
    expect(planned.uris).toEqual([
      "s3://lab-input/_uploads/job-1/a.txt",
      "s3://lab-input/_uploads/job-1/b c.txt",
      "manifest:s3://lab/keys.txt",
    ]);
  });

  it("gives inputs of one name keys of their own, none another input has", async () => {
    // a/x and b/x share a name, and the second one's first choice (2-x) is the name of another input.
    for (const [file, text] of [
      ["a/x", "one\n"],
      ["2-x", "two\n"],
      ["b/x", "three\n"],
    ] as const) {
      await mkdir(path.dirname(path.join(dir, "clash", file)), { recursive: true });
      await writeFile(path.join(dir, "clash", file), text);
    }
    const planned = await planInputs(
      "lab-input",
      "job-2",
      ["a/x", "2-x", "b/x"].map((f) => path.join(dir, "clash", f)),
    );
    const keys = planned.uploads.map((u) => u.key);
    expect(new Set(keys).size).toBe(3);
    expect(new Set(planned.uris).size).toBe(3);
    expect(planned.uploads.map((u) => path.relative(path.join(dir, "clash"), u.file))).toEqual(["a/x", "2-x", "b/x"]);
  });

  it("refuses a list that names nothing, rather than run an empty job", async () => {
    await writeFile(path.join(dir, "none.txt"), "# nothing yet\n\n");
    const r = await cli(["run", `manifest:${path.join(dir, "none.txt")}`, "--op", "count", "--no-progress"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${path.join(dir, "none.txt")}: the manifest lists no inputs`);
  });

  it("reads a listed name as written: `data.txt ` is its own file, not `data.txt`; a missing one is shown quoted", async () => {
    await writeFile(path.join(dir, "data.txt"), lines(1, "d"));
    await writeFile(path.join(dir, "data.txt "), lines(3, "s"));
    await writeFile(path.join(dir, "spaced.txt"), "data.txt \n");
    const wc = execFileSync("wc", ["-l", path.join(dir, "data.txt ")], { encoding: "utf8" });
    const r = await cli(["run", `manifest:${path.join(dir, "spaced.txt")}`, "--op", "count", "--no-progress"]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ records: Number(wc.trim().split(" ")[0]) });
    await writeFile(path.join(dir, "typo.txt"), "a.txt  \n");
    const typo = await cli(["run", `manifest:${path.join(dir, "typo.txt")}`, "--op", "count", "--no-progress"]);
    expect(typo.code).toBe(3);
    expect(typo.stderr).toContain(`${path.join(dir, "typo.txt")}:1: "a.txt  ": no such file or directory`);
  });

  it("names the manifest and line of a path that is not there", async () => {
    await writeFile(path.join(dir, "bad.txt"), "a.txt\nmissing.txt\n");
    const r = await cli(["run", `manifest:${path.join(dir, "bad.txt")}`, "--op", "count", "--no-progress"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${path.join(dir, "bad.txt")}:2: missing.txt: no such file or directory`);
  });
});
