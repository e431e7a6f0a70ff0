/**
 * Compressed uploads on the emulated fleet: a gzip or zstd upload is read by one task, a
 * bgzipped one is split at its blocks over many, and each gives the reference's answer over
 * the uncompressed bytes. Files are compressed by the real tools (gzip, zstd, bgzip).
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectMatchesReference, numbersOf, textOf, useDevCloud } from "../helpers/devCloud.js";
import { pythonCsvRows } from "../helpers/csv.js";

const CHUNK = 64 * 1024;
const cloud = useDevCloud({ chunkSize: CHUNK, workers: 2 });
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-compressed-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

/** `bytes` compressed by `tool` (`gzip`, `bgzip`, `zstd`), from a file of its own. */
const compress = async (name: string, bytes: Buffer, tool: "gzip" | "bgzip" | "zstd"): Promise<Buffer> => {
  const file = path.join(dir, name);
  await writeFile(file, bytes);
  return execFileSync("sh", ["-c", `${tool === "zstd" ? "zstd -q -c" : `${tool} -c`} '${file}'`], { maxBuffer: 1 << 30 });
};

describe("compressed uploads on the emulated fleet", () => {
  it("gzip, zstd and BGZF uploads give the reference's wordcount and stats of the data uncompressed", async () => {
    const text = textOf(700_000, 31);
    const numbers = numbersOf(400_000, 32);
    const uploads = [
      ["wordcount", "words.txt.gz", text, "gzip"],
      ["wordcount", "words.txt.zst", text, "zstd"],
      ["wordcount", "words.txt.bgz", text, "bgzip"],
      ["stats", "numbers.txt.bgz", numbers, "bgzip"],
    ] as const;
    const sizes = new Map<string, number>();
    for (const [op, name, bytes, tool] of uploads) {
      const compressed = await compress(name, bytes, tool);
      sizes.set(name, compressed.length);
      await cloud().put(`${op}/${name}`, compressed);
    }
    for (const [op, name, bytes, tool] of uploads) {
      const status = await cloud().waitForEnd(`${op}/${name}/status.json`);
      expect(status.state, `${name}: ${JSON.stringify(status.error)}`).toBe("succeeded");
      // A gzip or zstd stream is one task; BGZF splits at its blocks, by compressed size.
      expect(status.chunks, name).toBe(tool === "bgzip" ? Math.ceil(sizes.get(name)! / CHUNK) : 1);
      expectMatchesReference(op, {}, bytes, await cloud().getJson(cloud().output, `${op}/${name}/result.json`));
    }
    expect(Math.ceil(sizes.get("words.txt.bgz")! / CHUNK)).toBeGreaterThan(2);
  });

  it("a bgzipped CSV with quoted newlines gives Python's rows, split over many tasks", async () => {
    const rows = ["id,note,score"];
    for (let i = 0; i < 12_000; i++) rows.push(`${i},${i % 3 === 0 ? `"two\nlines, ""${i}"""` : `n${i}`},${i % 97}`);
    const file = path.join(dir, "notes.csv");
    const bytes = Buffer.from(`${rows.join("\n")}\n`);
    await writeFile(file, bytes);
    const compressed = await compress("notes.csv", bytes, "bgzip");
    expect(compressed.length).toBeGreaterThan(CHUNK);
    await cloud().put("_inputs/notes.csv.bgz", compressed);
    const input = `s3://${cloud().input}/_inputs/notes.csv.bgz`;
    await cloud().put("_jobs/notes-count.json", JSON.stringify({ op: "count", inputs: [input], format: "csv" }));
    const status = await cloud().waitForEnd("_jobs/notes-count/status.json");
    expect(status.state, JSON.stringify(status.error)).toBe("succeeded");
    expect(status.chunks).toBe(Math.ceil(compressed.length / CHUNK));
    expect(await cloud().getJson(cloud().output, "_jobs/notes-count/result.json")).toEqual({ records: pythonCsvRows(file).length });
  });

  it("BGZF then plain gzip, a self-extracting zip and zstd behind 20 skippable frames give their tools' counts", async () => {
    const sh = (cmd: string): string => execFileSync("sh", ["-c", cmd], { cwd: dir, encoding: "utf8", maxBuffer: 1 << 30 });
    sh("seq 1 150000 | bgzip -c > tail.gz && seq 7 40000 | gzip -c >> tail.gz");
    sh(
      "seq 1 30000 > a.txt && seq 5 9000 > b.txt && zip -q plain.zip a.txt b.txt && (head -c 70000 /dev/urandom; cat plain.zip) > sfx.zip",
    );
    sh("seq 1 120000 | zstd -q -c > body.zst");
    const frames = Array.from({ length: 20 }, (_, i) => {
      const header = Buffer.alloc(8 + i);
      header.writeUInt32LE(0x184d2a50 + (i % 16), 0);
      header.writeUInt32LE(i, 4);
      return header;
    });
    await writeFile(path.join(dir, "skips.zst"), Buffer.concat([...frames, await readFile(path.join(dir, "body.zst"))]));
    const expected = {
      "tail.gz": Number(sh("gzip -dc tail.gz | wc -l")),
      "sfx.zip": Number(
        sh(`python3 -c "import zipfile; z = zipfile.ZipFile('sfx.zip'); print(sum(len(z.read(n).splitlines()) for n in z.namelist()))"`),
      ),
      "skips.zst": Number(sh("zstd -dc skips.zst | wc -l")),
    };
    for (const name of Object.keys(expected)) {
      const bytes = await readFile(path.join(dir, name));
      expect(bytes.length, name).toBeGreaterThan(CHUNK);
      await cloud().put(`count/${name}`, bytes);
    }
    for (const [name, records] of Object.entries(expected)) {
      const status = await cloud().waitForEnd(`count/${name}/status.json`);
      expect(status.state, `${name}: ${JSON.stringify(status.error)}`).toBe("succeeded");
      expect(await cloud().getJson(cloud().output, `count/${name}/result.json`), name).toEqual({ records });
    }
  });

  it("BGZF then a cut gzip member fails its job naming the file and the compressed byte, and writes no result", async () => {
    const whole = execFileSync("sh", ["-c", "seq 1 100000 | bgzip -c; seq 1 50000 | gzip -c"], { maxBuffer: 1 << 30 });
    const cut = whole.subarray(0, whole.length - 2000);
    await cloud().put("count/cut-tail.gz", cut);
    const status = await cloud().waitForEnd("count/cut-tail.gz/status.json");
    expect(status.state).toBe("failed");
    expect(status.error?.message).toMatch(
      new RegExp(`cut-tail\\.gz .*gzip data is corrupt or truncated at compressed byte ${cut.length}: the data ends inside a gzip member`),
    );
    expect(await cloud().get(cloud().output, "count/cut-tail.gz/result.json")).toBeUndefined();
  });

  it("a truncated gzip upload fails its job naming the file and the compressed byte", async () => {
    const whole = await compress("cut.txt", textOf(200_000, 33), "gzip");
    await cloud().put("count/cut.txt.gz", whole.subarray(0, Math.floor(whole.length / 2)));
    const status = await cloud().waitForEnd("count/cut.txt.gz/status.json");
    expect(status.state).toBe("failed");
    expect(status.error?.code).toBe("BAD_RECORD");
    expect(status.error?.message).toMatch(
      /cut\.txt\.gz .*gzip data is corrupt or truncated at compressed byte \d+: the data ends inside a gzip member/,
    );
    expect(await cloud().get(cloud().output, "count/cut.txt.gz/result.json")).toBeUndefined();
  });
});
