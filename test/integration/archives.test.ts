/**
 * Zip archives and whole objects on the emulated fleet: a zip upload is read entry by entry by
 * range, `checksum` over a prefix equals `sha256sum` of the same files, and a hostile archive
 * fails its job with a clear error and writes nothing but the job's own state. Archives are
 * written by the real `zip` tool and by Python's zipfile.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseS3Uri } from "../../lib/core/s3Uri.js";
import { prng } from "../../lib/dev/prng.js";
import { textOf, useDevCloud } from "../helpers/devCloud.js";
import { refCount, refWordcount } from "../helpers/reference.js";

const CHUNK = 4096;
const cloud = useDevCloud({ chunkSize: CHUNK, workers: 2 });
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-archives-cloud-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const sh = (cmd: string): string => execFileSync("sh", ["-c", cmd], { cwd: dir, encoding: "utf8", maxBuffer: 1 << 30 });

interface KeyedManifest {
  readonly parts: readonly { readonly key: string; readonly records: number }[];
}

const partRows = async (manifest: KeyedManifest): Promise<Record<string, unknown>[]> => {
  const rows: Record<string, unknown>[] = [];
  for (const part of manifest.parts) {
    const { bucket, key } = parseS3Uri(part.key);
    for (const line of (await cloud().get(bucket, key))!.toString("utf8").split("\n"))
      if (line) rows.push(JSON.parse(line) as Record<string, unknown>);
  }
  return rows;
};

describe("zip archives and blobs on the emulated fleet", () => {
  it("a zip upload is read as its entries: count and wordcount equal the reference over them", async () => {
    // Each ends in a newline (textOf's do not), so the entries' words are those of their concatenation.
    const text = (bytes: number, seed: number): Buffer => Buffer.concat([textOf(bytes, seed), Buffer.from("\n")]);
    const files = { "a.txt": text(30_000, 41), "sub/b.txt": text(2_000, 42), "sub/c.txt": text(90_000, 43) };
    for (const [name, bytes] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, "src", name)), { recursive: true });
      await writeFile(path.join(dir, "src", name), bytes);
    }
    sh("cd src && zip -qr ../texts.zip .");
    const zip = await readFile(path.join(dir, "texts.zip"));
    expect(zip.length).toBeGreaterThan(CHUNK);
    await cloud().put("count/texts.zip", zip);
    await cloud().put("wordcount/texts.zip", zip);
    const plain = Object.values(files);
    const counted = await cloud().waitForEnd("count/texts.zip/status.json");
    expect(counted.state, JSON.stringify(counted.error)).toBe("succeeded");
    expect(await cloud().getJson(cloud().output, "count/texts.zip/result.json")).toEqual({
      records: plain.reduce((n, b) => n + refCount(b).records, 0),
    });
    const words = await cloud().waitForEnd("wordcount/texts.zip/status.json");
    expect(words.state, JSON.stringify(words.error)).toBe("succeeded");
    expect(await cloud().getJson(cloud().output, "wordcount/texts.zip/result.json")).toEqual(refWordcount(Buffer.concat(plain)));
  });

  it("checksum over a prefix of binary files equals sha256sum of the same files", async () => {
    const rand = prng(5);
    const local = path.join(dir, "blobs");
    await mkdir(local, { recursive: true });
    const names: string[] = [];
    for (let i = 0; i < 40; i++) {
      const size = i === 0 ? 0 : i === 1 ? 50_000 : Math.floor(rand() * 3000);
      const name = `scan-${String(i).padStart(3, "0")}.tif`;
      const bytes = Buffer.from(Array.from({ length: size }, () => Math.floor(rand() * 256)));
      await writeFile(path.join(local, name), bytes);
      await cloud().put(`_inputs/blobs/${name}`, bytes);
      names.push(name);
    }
    const expected = new Map(
      sh("cd blobs && sha256sum *")
        .trim()
        .split("\n")
        .map((l) => [l.slice(66), l.slice(0, 64)] as const),
    );
    const prefix = `s3://${cloud().input}/_inputs/blobs/`;
    await cloud().put("_jobs/sums.json", JSON.stringify({ op: "checksum", inputs: [prefix] }));
    const status = await cloud().waitForEnd("_jobs/sums/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    // Small objects are packed, and the one larger than a chunk is read whole by one task.
    expect(status.chunks).toBeLessThan(names.length);
    const rows = await partRows((await cloud().getJson(cloud().output, "_jobs/sums/result.json")) as KeyedManifest);
    expect(new Map(rows.map((r) => [String(r.name).slice(prefix.length), r.sha256]))).toEqual(expected);
    expect(rows.find((r) => String(r.name).endsWith("scan-001.tif"))?.size).toBe(50_000);
    // Each line names its object by key too, as the object's listing does.
    expect(new Set(rows.map((r) => r.key))).toEqual(new Set(names.map((n) => `_inputs/blobs/${n}`)));
  });

  it("a zip with a name that climbs out fails its job, naming the entry, and writes nothing of its own", async () => {
    execFileSync(
      "python3",
      [
        "-c",
        `
import zipfile
with zipfile.ZipFile('slip.zip', 'w') as z:
    z.writestr('fine.txt', 'a\\n')
    info = zipfile.ZipInfo('x')
    info.filename = '../../outside.txt'
    z.writestr(info, 'b\\n')
`,
      ],
      { cwd: dir },
    );
    await cloud().put("count/slip.zip", await readFile(path.join(dir, "slip.zip")));
    const status = await cloud().waitForEnd("count/slip.zip/status.json");
    expect(status.state).toBe("failed");
    expect(status.error?.code).toBe("BAD_RECORD");
    expect(status.error?.message).toMatch(/entry "\.\.\/\.\.\/outside\.txt" has a '\.\.' segment/);
    const listed = await cloud().s3.send(new ListObjectsV2Command({ Bucket: cloud().output }));
    const keys = (listed.Contents ?? []).map((o) => o.Key!);
    expect(keys.some((k) => k.includes("outside"))).toBe(false);
    expect(keys).not.toContain("count/slip.zip/result.json");
  });
});
