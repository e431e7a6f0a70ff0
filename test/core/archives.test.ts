/**
 * Zip archives and whole objects on the local engine. Archives are written by the real `zip`
 * tool (Info-ZIP) and, for the shapes it will not write (zip64, hostile archives), by Python's
 * zipfile; expected values come from the reference ops over the entries' plain bytes, from
 * Python's hashlib over the entries, and from `sha256sum` over files.
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { badRecord, type CloudmillError } from "../../lib/core/errors.js";
import { parseJobSpec, type JobSpecInput } from "../../lib/core/job/spec.js";
import { defineOp } from "../../lib/core/ops/defineOp.js";
import { builtinOps, OpRegistry } from "../../lib/core/ops/registry.js";
import type { KeyedResult } from "../../lib/core/pipeline/reduceTask.js";
import { prng } from "../../lib/dev/prng.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { InputObject } from "../../lib/core/job/manifest.js";
import { zipEntriesOf } from "../../lib/core/pipeline/zipInputs.js";
import { findZipDirectory, parseZipDirectory } from "../../lib/core/records/zip.js";
import { memberBytes } from "../../lib/core/records/zipMember.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { planChunks } from "../../lib/core/job/planner.js";
import { silentLogger } from "../../lib/core/log.js";
import type { BlobStore, GetOptions } from "../../lib/core/ports.js";
import { runTask } from "../../lib/core/pipeline/task.js";
import { pythonCsvRows } from "../helpers/csv.js";
import { refCount, refStats, refWordcount } from "../helpers/reference.js";

let dir: string;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-archives-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const sh = (cmd: string, cwd = dir): string => execFileSync("sh", ["-c", cmd], { cwd, encoding: "utf8", maxBuffer: 1 << 30 });
const py = (script: string): string => execFileSync("python3", ["-c", script], { cwd: dir, encoding: "utf8" });

/** Sums bytes of every object whole: a lab's blob op, as defineOp makes it. */
const byteSums = defineOp({
  name: "byte-sums",
  format: "blob",
  map: (bytes: unknown, _params, meta) => {
    const b = bytes as Buffer;
    let sum = 0;
    for (const x of b) sum += x;
    return { objects: 1, bytes: meta.size ?? -1, sum, first: [[meta.input, b.length]] as [string, number][] };
  },
  combine: (a, b) => ({ objects: a.objects + b.objects, bytes: a.bytes + b.bytes, sum: a.sum + b.sum, first: [...a.first, ...b.first] }),
});

/** An order-sensitive hash of each object, mapped in pieces: a lab's streaming blob op. */
const P = 2147483647;
const rollingHashes = defineOp({
  name: "rolling-hashes",
  format: "blob",
  stream: {
    start: () => ({ h: 0 }),
    update: (state: { h: number }, bytes: Buffer) => {
      let h = state.h;
      for (const x of bytes) h = (h * 31 + x) % P;
      state.h = h;
      return undefined;
    },
    finish: (state: { h: number }, _params, meta) => ({ [meta.input]: [meta.size ?? -1, state.h] }) as Record<string, [number, number]>,
  },
  combine: (a, b) => ({ ...a, ...b }),
});

/** The same, refusing objects over a megabyte as bad records from inside `update`. */
const pickyHashes = defineOp({
  name: "picky-hashes",
  format: "blob",
  stream: {
    start: () => ({ n: 0 }),
    // Changes the state in place and returns nothing, as the README's example does (typed void).
    update: (state: { n: number }, bytes: Buffer) => {
      state.n += bytes.length;
      if (state.n > 1_000_000) throw badRecord("over a megabyte", 0);
    },
    finish: (state: { n: number }, _params, meta) => ({ [meta.input]: state.n }) as Record<string, number>,
  },
  combine: (a, b) => ({ ...a, ...b }),
});

const registry = (): OpRegistry => new OpRegistry([...builtinOps, byteSums, rollingHashes, pickyHashes]);

const run = async (spec: JobSpecInput, workers = 0) => {
  try {
    const outDir = path.join(dir, `out-${n}`);
    const r = await runLocal({ spec: parseJobSpec(spec), registry: registry(), workers, workDir: path.join(dir, `work-${n++}`), outDir });
    return { ok: true as const, ...r, outDir };
  } catch (error) {
    return { ok: false as const, error: error as CloudmillError };
  }
};

const rowsOf = async (result: unknown): Promise<Record<string, unknown>[]> => {
  const rows: Record<string, unknown>[] = [];
  for (const p of (result as KeyedResult).parts)
    for (const line of (await readFile(p.key, "utf8")).split("\n")) if (line) rows.push(JSON.parse(line) as Record<string, unknown>);
  return rows;
};

/** Text files of varied sizes (one larger than the small chunks below), each ending in a newline. */
const textFiles = (): Record<string, Buffer> => {
  const rand = prng(7);
  const words = ["alpha", "beta", "γάμμα", "delta", "42", "x"];
  const file = (lines: number): Buffer =>
    Buffer.from(
      `${Array.from({ length: lines }, () => Array.from({ length: Math.floor(rand() * 7) }, () => words[Math.floor(rand() * 6)]).join(" ")).join("\n")}\n`,
    );
  return { "a.txt": file(3), "notes/b.txt": file(2000), "notes/deep/c.txt": file(40_000), "empty.txt": Buffer.alloc(0) };
};

describe("zip archives: each entry is an input", () => {
  let files: Record<string, Buffer>;
  let archive: string;
  let stored: string;
  beforeAll(async () => {
    files = textFiles();
    const src = path.join(dir, "src");
    for (const [name, bytes] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(src, name)), { recursive: true });
      await writeFile(path.join(src, name), bytes);
    }
    // Folders are entries too (zip -r adds them); a macOS resource fork is metadata, not data.
    await mkdir(path.join(src, "__MACOSX"), { recursive: true });
    await writeFile(path.join(src, "__MACOSX", "._a.txt"), Buffer.from([0, 5, 22, 7, 0, 2, 0, 0, 0xff, 0xfe]));
    archive = path.join(dir, "texts.zip");
    stored = path.join(dir, "stored.zip");
    sh(`zip -qr '${archive}' .`, src);
    sh(`zip -qr0 '${stored}' . -x '__MACOSX/*'`, src);
  });

  it.each([256, 4096, 1 << 20])("count and wordcount equal the reference over the entries, chunks of %i bytes", async (chunkSize) => {
    const plain = Buffer.concat(Object.values(files));
    const records = Object.values(files).reduce((sum, b) => sum + refCount(b).records, 0);
    for (const file of [archive, stored]) {
      const counted = await run({ op: "count", inputs: [file], chunkSize }, 2);
      expect(counted.ok && counted.result, file).toEqual({ records });
      const words = await run({ op: "wordcount", inputs: [file], chunkSize });
      expect(words.ok && words.result, file).toEqual(refWordcount(plain));
    }
  });

  it("a self-extractor (bytes before the archive), with or without zip -A, is read entry by entry as Python's zipfile reads it", async () => {
    const stub = path.join(dir, "stub.bin");
    await writeFile(stub, Buffer.concat([Buffer.from('#!/bin/sh\nexec unzip "$0"\n'), Buffer.alloc(3000, 0x90)]));
    const sfx = path.join(dir, "sfx.zip");
    const adjusted = path.join(dir, "sfx-adjusted.zip");
    sh(`cat '${stub}' '${archive}' > '${sfx}' && cp '${sfx}' '${adjusted}' && zip -qA '${adjusted}'`);
    // zip64 end records (Python writes them past ZIP64_LIMIT, lowered here), then a stub put before it.
    const zip64 = path.join(dir, "sfx-zip64.zip");
    py(`
import zipfile
zipfile.ZIP64_LIMIT = 1
with zipfile.ZipFile('sfx-z64-src.zip', 'w', zipfile.ZIP_DEFLATED) as z:
    for i in range(5):
        z.writestr(f'part{i}.txt', ''.join(f'{i} line {j}\\n' for j in range(2000 * (i + 1))))
open('sfx-zip64.zip', 'wb').write(b'MZ' + bytes(777) + open('sfx-z64-src.zip', 'rb').read())
`);
    expect((await readFile(zip64)).includes(Buffer.from("PK\x06\x06", "latin1"))).toBe(true);
    for (const file of [sfx, adjusted, zip64]) {
      // Python's zipfile: each entry's bytes, as it reads them (its directory's offsets moved by the prefix).
      const reference = JSON.parse(
        py(
          `
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    data = [z.read(i) for i in z.infolist() if not i.is_dir() and not i.filename.startswith('__MACOSX/')]
text = b''.join(data)
print(json.dumps({'records': sum(len(d.splitlines()) for d in data), 'words': len(text.split()), 'distinct': len(set(text.split()))}))
`.replace("sys.argv[1]", JSON.stringify(file)),
        ),
      ) as { records: number; words: number; distinct: number };
      expect(reference.records).toBeGreaterThan(0);
      for (const chunkSize of [256, 4096, 1 << 20]) {
        const counted = await run({ op: "count", inputs: [file], chunkSize }, 2);
        expect(counted.ok ? counted.result : counted.error.describe(), `${file} at ${chunkSize}`).toEqual({ records: reference.records });
        const words = await run({ op: "wordcount", inputs: [file], chunkSize });
        expect(words.ok && words.result, file).toMatchObject({ total: reference.words, distinct: reference.distinct });
      }
    }
  });

  it("a CSV entry with quoted newlines gives Python's rows; numbers give the reference's stats", async () => {
    const rows = ["id,note,score"];
    for (let i = 0; i < 3000; i++) rows.push(`${i},${i % 3 === 0 ? `"two\nlines, ""${i}"""` : `n${i}`},${(i % 97) / 4}`);
    const csv = path.join(dir, "notes.csv");
    await writeFile(csv, `${rows.join("\n")}\n`);
    const numbers = Buffer.from(`${Array.from({ length: 5000 }, (_, i) => ((i * 7919) % 1000) / 8 - 60).join("\n")}\n`);
    await writeFile(path.join(dir, "numbers.txt"), numbers);
    sh("zip -q csv-only.zip notes.csv && zip -q numbers-only.zip numbers.txt");
    const csvCount = await run({ op: "count", inputs: [path.join(dir, "csv-only.zip")], format: "csv", chunkSize: 1024 });
    expect(csvCount.ok && csvCount.result).toEqual({ records: pythonCsvRows(csv).length });
    const stats = await run({ op: "stats", inputs: [path.join(dir, "numbers-only.zip")], chunkSize: 1024 });
    expect(stats.ok && stats.result).toEqual(refStats(numbers));
  });

  it("gzip, BGZF and zstd files inside an archive are decoded: the reference's count and wordcount over their plain bytes", async () => {
    const src = path.join(dir, "compressed-src");
    await mkdir(path.join(src, "logs"), { recursive: true });
    const plain = {
      "logs/a.log": files["notes/deep/c.txt"]!,
      "b.vcf": files["notes/b.txt"]!,
      "c.txt": files["a.txt"]!,
      "d.txt": files["notes/b.txt"]!,
    };
    for (const [name, bytes] of Object.entries(plain)) await writeFile(path.join(src, name), bytes);
    // gzip, bgzip (BGZF) and zstd as the tools write them; d.txt stays plain.
    sh("gzip -n logs/a.log && bgzip b.vcf && zstd -q --rm c.txt && zip -qr ../compressed.zip .", src);
    expect(sh("unzip -Z1 ../compressed.zip | sort", src).split("\n").filter(Boolean)).toEqual([
      "b.vcf.gz",
      "c.txt.zst",
      "d.txt",
      "logs/",
      "logs/a.log.gz",
    ]);
    const all = Buffer.concat(Object.values(plain));
    const records = Object.values(plain).reduce((sum, b) => sum + refCount(b).records, 0);
    for (const chunkSize of [256, 1 << 20]) {
      const counted = await run({ op: "count", inputs: [path.join(dir, "compressed.zip")], chunkSize }, 2);
      expect(counted.ok && counted.result, String(chunkSize)).toEqual({ records });
      const words = await run({ op: "wordcount", inputs: [path.join(dir, "compressed.zip")], chunkSize });
      expect(words.ok && words.result, String(chunkSize)).toEqual(refWordcount(all));
    }
  });

  it("a zip64 archive (zip -fz: 64-bit sizes in every entry and end record) reads as its entries", async () => {
    const bytes = files["notes/deep/c.txt"]!;
    await writeFile(path.join(dir, "c.txt"), bytes);
    sh("zip -q -fz z64.zip c.txt");
    // The zip64 end record is there, and the entry's 32-bit sizes say "see the zip64 field".
    expect((await readFile(path.join(dir, "z64.zip"))).includes(Buffer.from([0x50, 0x4b, 0x06, 0x06]))).toBe(true);
    const r = await run({ op: "count", inputs: [path.join(dir, "z64.zip")], chunkSize: 4096 });
    expect(r.ok && r.result).toEqual(refCount(bytes));
  });

  it("an input named otherwise is still read as a zip when its first bytes say so and it spans chunks", async () => {
    const renamed = path.join(dir, "texts.bin");
    sh(`cp '${archive}' '${renamed}'`);
    const records = Object.values(files).reduce((sum, b) => sum + refCount(b).records, 0);
    const r = await run({ op: "count", inputs: [renamed], chunkSize: 256 });
    expect(r.ok && r.result).toEqual({ records });
  });
});

describe("whole objects: the blob format", () => {
  let blobs: string;
  beforeAll(async () => {
    blobs = path.join(dir, "blobs");
    const rand = prng(11);
    await mkdir(path.join(blobs, "raw"), { recursive: true });
    for (let i = 0; i < 30; i++) {
      const size = i === 0 ? 0 : i === 1 ? 1_500_000 : Math.floor(rand() * 5000);
      await writeFile(
        path.join(blobs, "raw", `img-${String(i).padStart(2, "0")}.bin`),
        Buffer.from(Array.from({ length: size }, () => Math.floor(rand() * 256))),
      );
    }
    // A gzip file is a blob too, hashed as stored, not decoded.
    await writeFile(path.join(blobs, "log.txt"), "a log line\n".repeat(500));
    sh(`gzip -k '${path.join(blobs, "log.txt")}'`);
  });

  /** `sha256sum` of every file under the folder, by path. */
  const sha256sum = (folder: string): Map<string, string> =>
    new Map(
      sh(`find '${folder}' -type f -print0 | xargs -0 sha256sum`)
        .trim()
        .split("\n")
        .map((l) => {
          const [hash, ...name] = l.split("  ");
          return [name.join("  "), hash!] as const;
        }),
    );

  it.each([
    { chunkSize: 4096, workers: 0 },
    { chunkSize: 1 << 20, workers: 2 },
  ])("checksum equals sha256sum of every file, empty and larger-than-a-chunk ones too ($chunkSize, $workers threads)", async (c) => {
    const r = await run({ op: "checksum", inputs: [blobs], chunkSize: c.chunkSize }, c.workers);
    expect(r.ok, r.ok ? "" : r.error.describe()).toBe(true);
    const rows = await rowsOf(r.ok && r.result);
    const expected = sha256sum(blobs);
    expect(rows.length).toBe(expected.size);
    for (const row of rows) {
      expect(row.sha256, String(row.name)).toBe(expected.get(String(row.name)));
      expect(row.size).toBe((await stat(String(row.name))).size);
    }
  });

  it("checksum of a zip archive is the archive's own, as stored: blobs are never opened", async () => {
    const zip = path.join(dir, "texts.zip");
    const r = await run({ op: "checksum", inputs: [zip], params: { algorithm: "md5" }, chunkSize: 256 });
    const rows = await rowsOf(r.ok && r.result);
    expect(rows).toEqual([{ key: zip, name: zip, size: (await stat(zip)).size, md5: sh(`md5sum '${zip}'`).slice(0, 32) }]);
  });

  it("a lab's blob op gets each object whole, once, with its name", async () => {
    const r = await run({ op: "byte-sums", inputs: [path.join(blobs, "raw")], chunkSize: 8192 });
    expect(r.ok, r.ok ? "" : r.error.describe()).toBe(true);
    const got = r.ok ? (r.result as { objects: number; bytes: number; sum: number; first: [string, number][] }) : undefined;
    let bytes = 0;
    let sum = 0;
    const names = sh(`ls '${path.join(blobs, "raw")}'`)
      .trim()
      .split("\n");
    for (const name of names) {
      const b = await readFile(path.join(blobs, "raw", name));
      bytes += b.length;
      for (const x of b) sum += x;
    }
    expect(got).toMatchObject({ objects: names.length, bytes, sum });
    expect(new Set(got!.first.map(([name]) => path.basename(name)))).toEqual(new Set(names));
  });

  it.each([4096, 1 << 20])(
    "a lab's streaming blob op sees every object's bytes in order, in pieces, past maxRecordBytes too (chunks of %i)",
    async (chunkSize) => {
      const raw = path.join(blobs, "raw");
      const r = await run({ op: "rolling-hashes", inputs: [raw], chunkSize, maxRecordBytes: 1 << 20 });
      expect(r.ok, r.ok ? "" : r.error.describe()).toBe(true);
      const expected = JSON.parse(
        py(`
import json, os
out = {}
for name in sorted(os.listdir(${JSON.stringify(raw)})):
    p = os.path.join(${JSON.stringify(raw)}, name)
    h = 0
    for x in open(p, 'rb').read():
        h = (h * 31 + x) % 2147483647
    out[p] = [os.path.getsize(p), h]
print(json.dumps(out))
`),
      ) as Record<string, [number, number]>;
      expect(r.ok && r.result).toEqual(expected);
      // The 1.5 MB object, past maxRecordBytes, was streamed, not refused.
      expect(expected[path.join(raw, "img-01.bin")]![0]).toBe(1_500_000);
    },
  );

  it("a streaming blob op's bad record fails the job naming the object, or is skipped: the object left out", async () => {
    const raw = path.join(blobs, "raw");
    const failed = await run({ op: "picky-hashes", inputs: [raw], chunkSize: 4096 });
    expect(failed.ok).toBe(false);
    expect(failed.ok ? "" : failed.error.describe()).toMatch(/img-01\.bin.*over a megabyte/);
    const skipped = await run({ op: "picky-hashes", inputs: [raw], chunkSize: 4096, onBadRecord: "skip" });
    expect(skipped.ok, skipped.ok ? "" : skipped.error.describe()).toBe(true);
    expect(skipped.ok && skipped.status.skipped).toBe(1);
    const names = Object.keys(skipped.ok ? (skipped.result as object) : {}).map((n) => path.basename(n));
    expect(names.length).toBe(29);
    expect(names).not.toContain("img-01.bin");
  });

  it("a streaming blob op is for the blob format only", () => {
    const stream = { start: () => 0, update: () => undefined, finish: () => 1 };
    expect(() => defineOp({ name: "lines-stream", format: "lines" as "blob", stream, combine: (a: number) => a })).toThrow(
      "defineOp lines-stream: stream is for the blob format only, instead of map",
    );
    expect(() => defineOp({ name: "no-stream", format: "blob", stream: null as never, combine: (a: number) => a })).toThrow(
      "defineOp no-stream: stream must be { start, update, finish }",
    );
  });

  it("an object longer than maxRecordBytes is refused, naming it, before it is read; skip leaves it out", async () => {
    const failed = await run({ op: "byte-sums", inputs: [path.join(blobs, "raw")], maxRecordBytes: 1 << 20 });
    expect(failed.ok).toBe(false);
    const message = failed.ok ? "" : failed.error.describe();
    expect(message).toMatch(/img-01\.bin.*record longer than 1048576 bytes \(maxRecordBytes\)/);
    expect(message).not.toContain("\n");
    const skipped = await run({ op: "byte-sums", inputs: [path.join(blobs, "raw")], maxRecordBytes: 1 << 20, onBadRecord: "skip" });
    expect(skipped.ok && skipped.status.skipped).toBe(1);
    expect(skipped.ok && (skipped.result as { objects: number }).objects).toBe(29);
  });
});

describe("a zip entry planned by cloudmill 0.1 (no name or bound in its member)", () => {
  it("still reads as its bytes, checked by size and CRC-32", async () => {
    py(`
import zipfile
with zipfile.ZipFile('old.zip', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('a.txt', 'alpha\\n' * 300)
    z.writestr('b.txt', 'beta\\n' * 200)
`);
    const store = new FsBlobStore(dir);
    const size = (await stat(path.join(dir, "old.zip"))).size;
    const archive = InputObject.parse({ bucket: "", key: "old.zip", etag: (await store.head("old.zip"))!.etag, size, name: "old.zip" });
    for (const entry of await zipEntriesOf(store, archive)) {
      const { entry: _name, end: _end, ...old } = entry.member!;
      const planned = InputObject.parse({ ...entry, member: old });
      const pieces: Buffer[] = [];
      for await (const piece of memberBytes(store, planned, planned.member!)) pieces.push(piece);
      const bytes = Buffer.concat(pieces);
      expect(bytes.toString()).toBe(entry.name.endsWith("a.txt") ? "alpha\n".repeat(300) : "beta\n".repeat(200));
    }
  });
});

describe("hostile archives end in clear errors", () => {
  /** Runs count over the archive Python's script writes to `name`; the job must fail, and write no result. */
  const refused = async (name: string, script: string): Promise<string> => {
    py(script);
    const r = await run({ op: "count", inputs: [path.join(dir, name)], chunkSize: 1024 });
    expect(r.ok, `${name} was read`).toBe(false);
    const message = r.ok ? "" : r.error.describe();
    expect(message).not.toContain("\n");
    expect(message).toContain(name);
    return message;
  };

  it("an end record forged in the comment, naming fewer entries, refuses the archive rather than hide the rest", async () => {
    const message = await refused(
      "forged-end.zip",
      `
import struct, zipfile
with zipfile.ZipFile('forged-end.zip', 'w', zipfile.ZIP_STORED) as z:
    z.writestr('a.txt', 'a\\n' * 10)
    z.writestr('b.txt', 'b\\n' * 20)
data = bytearray(open('forged-end.zip', 'rb').read())
end = data.rfind(b'PK\\x05\\x06')
count, size, at = struct.unpack('<HII', data[end + 10:end + 20])
first = 46 + struct.unpack('<H', data[at + 28:at + 30])[0]
# An end record naming a.txt's directory entry alone, as the real record's comment.
fake = b'PK\\x05\\x06' + struct.pack('<HHHHIIH', 0, 0, 1, 1, first, at, 0)
data[end + 20:end + 22] = struct.pack('<H', len(fake))
open('forged-end.zip', 'wb').write(bytes(data) + fake)
`,
    );
    // unzip reads both entries (30 lines); read through the forged record, the count was 10.
    expect(sh("unzip -p forged-end.zip 2>/dev/null | wc -l").trim()).toBe("30");
    expect(message).toMatch(/forged-end\.zip \(byte \d+\): zip archive: its central directory ends \d+ bytes before its end record/);
  });

  it("a prefixed archive whose offsets are off by its prefix refuses a directory or local header not where the shift puts them", async () => {
    // The second entry's local header damaged: none where the directory, shifted by the prefix, says.
    const moved = await refused(
      "sfx-moved.zip",
      `
import zipfile
with zipfile.ZipFile('sfx-moved.zip', 'w') as z:
    z.writestr('a.txt', 'a\\n' * 10)
    z.writestr('b.txt', 'b\\n' * 20)
data = bytearray(b'#!/bin/sh\\nexit 0\\n' + open('sfx-moved.zip', 'rb').read())
at = data.find(b'PK\\x03\\x04', data.find(b'PK\\x03\\x04') + 1)
data[at + 3] = 5
open('sfx-moved.zip', 'wb').write(bytes(data))
`,
    );
    expect(moved).toMatch(/sfx-moved\.zip \(byte \d+\): zip archive: entry "b\.txt": no local header where the directory says/);
    // A prefix that claims an offset past anything real: the directory would run past its end record.
    const past = await refused(
      "sfx-past.zip",
      `
import struct, zipfile
with zipfile.ZipFile('sfx-past.zip', 'w') as z:
    z.writestr('a.txt', 'a\\n' * 10)
data = bytearray(b'stub' * 100 + open('sfx-past.zip', 'rb').read())
end = data.rfind(b'PK\\x05\\x06')
data[end + 16:end + 20] = struct.pack('<I', end + 1)
open('sfx-past.zip', 'wb').write(bytes(data))
`,
    );
    expect(past).toMatch(/sfx-past\.zip \(byte \d+\): zip archive: its central directory \(\d+ bytes\) runs past its end record/);
    // A damaged entry of a prefixed archive names the archive, the entry and the byte, as in any archive.
    const crc = await refused(
      "sfx-crc.zip",
      `
import zipfile
with zipfile.ZipFile('sfx-crc.zip', 'w', zipfile.ZIP_STORED) as z:
    z.writestr('a.txt', 'hello\\n' * 100)
data = bytearray(b'MZ' + bytes(5000) + open('sfx-crc.zip', 'rb').read())
at = data.find(b'hello')
data[at] = ord('j')
open('sfx-crc.zip', 'wb').write(bytes(data))
`,
    );
    expect(crc).toMatch(/sfx-crc\.zip!\/a\.txt \(byte 600\): zip archive: the entry's CRC-32 does not match its data/);
  });

  it("a text file Python's zipfile appended an empty archive to is refused (unzip finds no directory), not read as no records", async () => {
    py(`
import zipfile
open('appended.zip', 'w').write('hello\\nworld\\n')
with zipfile.ZipFile('appended.zip', 'a') as z:
    pass
with zipfile.ZipFile('empty.zip', 'w') as z:
    pass
`);
    expect(() => execFileSync("unzip", ["-l", path.join(dir, "appended.zip")], { stdio: "pipe" })).toThrow();
    const r = await run({ op: "count", inputs: [path.join(dir, "appended.zip")] });
    expect(r.ok ? "" : r.error.describe()).toMatch(/appended\.zip \(byte 0\): zip archive: its directory lists no entries, yet 12 bytes/);
    // An archive of nothing is still nothing.
    expect(await run({ op: "count", inputs: [path.join(dir, "empty.zip")] })).toMatchObject({ ok: true, result: { records: 0 } });
  });

  it("names that climb out of the archive (zip slip) refuse it", async () => {
    for (const [i, evil] of ["../../etc/passwd", "/etc/passwd", "ok/../../x", "C:\\\\win.ini"].entries()) {
      const message = await refused(
        `slip-${i}.zip`,
        `
import zipfile
with zipfile.ZipFile('slip-${i}.zip', 'w') as z:
    z.writestr('fine.txt', 'a\\n')
    info = zipfile.ZipInfo('placeholder')
    info.filename = ${JSON.stringify(evil)}
    z.writestr(info, 'b\\n')
`,
      );
      expect(message).toMatch(/zip archive: entry .* has (an absolute path|a '\.\.' segment|a Windows path)/);
    }
  });

  it("entries that share their bytes (an overlapping zip bomb) refuse the archive", async () => {
    const message = await refused(
      "overlap.zip",
      `
import zipfile, struct
with zipfile.ZipFile('overlap.zip', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('kernel.txt', 'x' * 100000 + '\\n')
data = bytearray(open('overlap.zip', 'rb').read())
end = data.rindex(b'PK\\x05\\x06')
cd_size, cd_at = struct.unpack('<II', data[end + 12:end + 20])
entry = bytes(data[cd_at:cd_at + cd_size])
copies = [entry.replace(b'kernel.txt', b'kern%02d.txt' % i) for i in range(3)]
cd = b''.join(copies)
tail = bytearray(data[end:])
struct.pack_into('<HHI', tail, 8, 3, 3, len(cd))
open('overlap.zip', 'wb').write(bytes(data[:cd_at]) + cd + bytes(tail))
`,
    );
    expect(message).toMatch(/share bytes \(an overlapping-entry zip bomb\?\)/);
  });

  it("an entry whose local extra field moves its data into the next entry's is refused, though its CRC holds", async () => {
    // Two entries of the same bytes; the first's local header claims an extra field that ends where
    // the second's data starts, so its read would reuse the second's data (and pass its CRC).
    const message = await refused(
      "slack.zip",
      `
import zipfile, struct
with zipfile.ZipFile('slack.zip', 'w', zipfile.ZIP_STORED) as z:
    z.writestr('a.txt', 'same line\\n' * 50)
    z.writestr('b.txt', 'same line\\n' * 50)
data = bytearray(open('slack.zip', 'rb').read())
b_at = data.index(b'PK\\x03\\x04', 1)
b_data = b_at + 30 + len('b.txt') + struct.unpack('<H', data[b_at + 28:b_at + 30])[0]
struct.pack_into('<H', data, 28, b_data - (30 + len('a.txt')))
open('slack.zip', 'wb').write(bytes(data))
`,
    );
    expect(message).toMatch(
      /slack\.zip \(byte 0\): zip archive: entry "a\.txt": past its local header's \d+-byte extra field, its data runs into/,
    );
  });

  it("a local header that names another file than the directory is refused, naming the archive", async () => {
    const message = await refused(
      "names.zip",
      `
import zipfile
with zipfile.ZipFile('names.zip', 'w', zipfile.ZIP_STORED) as z:
    z.writestr('a.txt', 'one\\n')
data = bytearray(open('names.zip', 'rb').read())
data[30:35] = b'x.txt'
open('names.zip', 'wb').write(bytes(data))
`,
    );
    expect(message).toMatch(/names\.zip \(byte 0\): zip archive: entry "a\.txt": its local header names another file/);
  });

  it("a zip inside a zip is refused as nested, not read as text", async () => {
    const message = await refused(
      "outer.zip",
      `
import zipfile, io
inner = io.BytesIO()
with zipfile.ZipFile(inner, 'w') as z:
    z.writestr('data.txt', 'a\\nb\\n')
with zipfile.ZipFile('outer.zip', 'w') as z:
    z.writestr('inner.zip', inner.getvalue())
    z.writestr('plain.txt', 'c\\n')
`,
    );
    expect(message).toMatch(/outer\.zip!\/inner\.zip.*a zip archive inside a zip archive: archives are opened one level deep/);
  });

  it("a gzip entry cut short fails naming the entry and the compressed byte; one compressed twice over is refused", async () => {
    const cut = await refused(
      "cut-gz.zip",
      `
import zipfile, gzip
data = gzip.compress(b'line\\n' * 20000, mtime=0)
with zipfile.ZipFile('cut-gz.zip', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('logs/x.log.gz', data[: len(data) // 2])
`,
    );
    expect(cut).toMatch(/cut-gz\.zip!\/logs\/x\.log\.gz.*gzip/);
    expect(cut).toMatch(/byte \d+|ends inside a gzip member/);
    const twice = await refused(
      "twice-gz.zip",
      `
import zipfile, gzip
with zipfile.ZipFile('twice-gz.zip', 'w') as z:
    z.writestr('x.log.gz.gz', gzip.compress(gzip.compress(b'a\\nb\\n', mtime=0), mtime=0))
`,
    );
    expect(twice).toMatch(/twice-gz\.zip!\/x\.log\.gz\.gz.*gzip data inside compressed data: it is compressed twice/);
  });

  it("an entry holds to what a file of its own does: data after a gzip's zero padding, or BGZF without its end block, is refused", async () => {
    await writeFile(path.join(dir, "pad.txt"), "kept\n".repeat(5000));
    sh("gzip -nc pad.txt > pad.gz && head -c 8 /dev/zero >> pad.gz && printf 'lost 1\\nlost 2\\n' >> pad.gz && zip -q pad-gz.zip pad.gz");
    const padded = await run({ op: "count", inputs: [path.join(dir, "pad-gz.zip")], chunkSize: 1024 });
    expect(padded.ok ? padded.result : padded.error.describe()).toMatch(
      /pad-gz\.zip!\/pad\.gz.*data follows the end of the compressed data/,
    );
    sh("bgzip -c pad.txt > whole.bgz && head -c -28 whole.bgz > noeof.bgz && zip -q -0 noeof-bgz.zip noeof.bgz");
    const cut = await run({ op: "count", inputs: [path.join(dir, "noeof-bgz.zip")], chunkSize: 1024 });
    expect(cut.ok ? cut.result : cut.error.describe()).toMatch(/noeof-bgz\.zip!\/noeof\.bgz.*without BGZF's end-of-file block/);
    // Zero padding alone, and the end block, are what the files hold when whole.
    sh("gzip -nc pad.txt > zeros.gz && head -c 8 /dev/zero >> zeros.gz && zip -q whole.zip zeros.gz whole.bgz");
    const whole = await run({ op: "count", inputs: [path.join(dir, "whole.zip")], chunkSize: 1024 });
    expect(whole.ok && whole.result).toEqual({ records: 10_000 });
  });

  it.each([
    ["deflated", ""],
    ["stored", "-0"],
  ])("a CSV header past 64 KiB in a %s entry is read whole, as from the file itself", async (how, flag) => {
    const names = Array.from({ length: 12_000 }, (_, i) => `c${String(i).padStart(5, "0")}`);
    const rows = [names.join(","), ...[1, 2, 3].map((r) => names.map((_, i) => (i * r) % 7).join(","))];
    await writeFile(path.join(dir, "wide.csv"), `${rows.join("\n")}\n`);
    sh(`zip -q ${flag} wide-${how}.zip wide.csv`);
    const last = await run({ op: "stats", inputs: [path.join(dir, `wide-${how}.zip`)], format: "csv", params: { column: "c11999" } });
    // Python: [(11999 * r) % 7 for r in (1, 2, 3)] == [1, 2, 3]
    expect(last.ok ? last.result : last.error.describe()).toMatchObject({ count: 3, sum: 6, min: 1, max: 3 });
  });

  it("bytes after an entry's deflate data, inside its stored size, are slack as unzip reads them, small entry or large", async () => {
    py(`
import struct, zlib
def entry_zip(name, data, slack):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    stored = c.compress(data) + c.flush() + slack
    crc = zlib.crc32(data)
    n = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, 8, 0, 0, crc, len(stored), len(data), len(n), 0) + n
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 20, 20, 0, 8, 0, 0, crc, len(stored), len(data), len(n), 0, 0, 0, 0, 0, 0) + n
    at = len(local) + len(stored)
    end = struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, 1, 1, len(central), at, 0)
    open(name + ".zip", "wb").write(local + stored + central + end)
entry_zip("slack-small.txt", b"".join(b"line %d\\n" % i for i in range(10)), b"slack after the end")
# A megabyte of slack: the stream that inflates the entry ends with much of it still to feed.
entry_zip("slack-large.txt", b"".join(b"line %d with some more words in it\\n" % i for i in range(100000)), b"slack" * 200000)
`);
    for (const [name, lines] of [
      ["slack-small.txt.zip", 10],
      ["slack-large.txt.zip", 100_000],
    ] as const) {
      // Python's zipfile reads the entry whole, slack and all.
      expect(Number(py(`import zipfile\nz = zipfile.ZipFile('${name}')\nprint(z.read(z.namelist()[0]).count(b'\\n'))`))).toBe(lines);
      const r = await run({ op: "count", inputs: [path.join(dir, name)] });
      expect(r.ok ? r.result : r.error.describe(), name).toEqual({ records: lines });
    }
  });

  it("a task of many small entries reads its span of the archive once, and counts what Python counts", async () => {
    // Small deflated and stored entries, with larger ones between them that other tasks read.
    py(`
import random, zipfile
r = random.Random(3)
with zipfile.ZipFile('small.zip', 'w') as z:
    for i in range(3000):
        big = i % 500 == 250
        body = ''.join('cell %d area %d\\n' % (r.randrange(50), r.randrange(900)) for _ in range(2000 if big else r.randrange(4)))
        z.writestr('e%05d.txt' % i, body, zipfile.ZIP_STORED if i % 7 == 0 else zipfile.ZIP_DEFLATED)
`);
    const lines = Number(py("import zipfile\nz = zipfile.ZipFile('small.zip')\nprint(sum(z.read(n).count(b'\\n') for n in z.namelist()))"));
    const disk = new FsBlobStore(dir);
    let gets = 0;
    const counted: BlobStore = Object.assign(Object.create(disk) as BlobStore, {
      name: disk.name,
      get: (key: string, options?: GetOptions) => {
        gets++;
        return disk.get(key, options);
      },
    });
    const info = (await disk.head("small.zip"))!;
    const entries = await zipEntriesOf(disk, { bucket: "b", key: "small.zip", etag: info.etag, size: info.size, name: "small.zip" });
    const plan = planChunks(entries, 16_384);
    const output = new FsBlobStore(await mkdtemp(path.join(dir, "span-")));
    const deps = { output, inputStore: () => counted, registry: new OpRegistry(), log: silentLogger };
    const job = { op: "count", params: {}, format: "lines" as const, onBadRecord: "fail" as const, maxAttempts: 3 };
    let records = 0;
    let chunks = 0;
    for (const chunk of plan.chunks()) {
      const outcome = await runTask(deps, { v: 1, jobId: "span", chunk, job }, { writePart: false, checkOpDigest: false });
      if (outcome.kind !== "done") throw new Error(`chunk ${chunk.index}: ${outcome.kind}`);
      records += (outcome.partial as { records: number }).records;
      chunks++;
    }
    expect(records).toBe(lines);
    expect(chunks).toBeLessThan(entries.length / 20);
    // One read per task (a large entry's own task reads its header, then its data).
    expect(gets).toBeLessThanOrEqual(2 * chunks);
  });

  it("an end record of exactly 65,535 entries with no zip64 record (as Python's zipfile writes it) is read as written", () => {
    // The end record alone: signature, disk numbers, 0xFFFF entries twice, directory size and offset, no comment.
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(0xffff, 8);
    end.writeUInt16LE(0xffff, 10);
    end.writeUInt32LE(65_535 * 46, 12);
    end.writeUInt32LE(1000, 16);
    const tailAt = 1000 + 65_535 * 46;
    expect(findZipDirectory(end, tailAt, tailAt + 22, "many.zip")).toEqual({ at: 1000, bytes: 65_535 * 46, entries: 65_535 });
    // A directory offset at its maximum with no locator is still refused: it cannot be the real one.
    end.writeUInt32LE(0xffffffff, 16);
    expect(() => findZipDirectory(end, tailAt, tailAt + 22, "many.zip")).toThrow(/asks for zip64, but no zip64 locator precedes it/);
  });

  it("an end record that counts fewer entries than its directory holds refuses the archive", async () => {
    const message = await refused(
      "undercount.zip",
      `
import zipfile
with zipfile.ZipFile('undercount.zip', 'w') as z:
    for name in ('a.txt', 'b.txt', 'c.txt'):
        z.writestr(name, 'x\\n' * 100)
data = bytearray(open('undercount.zip', 'rb').read())
end = data.rfind(b'PK\\x05\\x06')
data[end + 8:end + 12] = (1).to_bytes(2, 'little') * 2
open('undercount.zip', 'wb').write(bytes(data))
`,
    );
    expect(message).toMatch(/the end record counts 1 entry, but the central directory holds more/);
  });

  it("an entry that inflates past its declared size is stopped there (a lying bomb)", async () => {
    const message = await refused(
      "liar.zip",
      `
import zipfile, struct
with zipfile.ZipFile('liar.zip', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('zeros.txt', '0' * 5000000)
data = bytearray(open('liar.zip', 'rb').read())
end = data.rindex(b'PK\\x05\\x06')
cd_at = struct.unpack('<I', data[end + 16:end + 20])[0]
struct.pack_into('<I', data, cd_at + 24, 1000)
struct.pack_into('<I', data, 22, 1000)
open('liar.zip', 'wb').write(bytes(data))
`,
    );
    expect(message).toMatch(/inflates past the 1000 bytes its directory declares/);
  });

  it("a flipped byte in an entry fails its CRC-32; a truncated archive has no directory", async () => {
    const crc = await refused(
      "flipped.zip",
      `
import zipfile
with zipfile.ZipFile('flipped.zip', 'w', zipfile.ZIP_STORED) as z:
    z.writestr('a.txt', 'hello world\\n' * 100)
data = bytearray(open('flipped.zip', 'rb').read())
data[30 + len('a.txt') + 50] ^= 0x20
open('flipped.zip', 'wb').write(bytes(data))
`,
    );
    expect(crc).toMatch(/flipped\.zip!\/a\.txt.*CRC-32 does not match/);
    const cut = await refused(
      "cut.zip",
      `
import zipfile
with zipfile.ZipFile('whole.zip', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('a.txt', 'hello world\\n' * 1000)
data = open('whole.zip', 'rb').read()
open('cut.zip', 'wb').write(data[:len(data) // 2])
`,
    );
    expect(cut).toMatch(/no end-of-central-directory record.*truncated, or not a zip archive/);
  });

  it("a directory entry whose zip64 field is cut short, or that inflates from nothing, is a zip error, not a crash", () => {
    const entry = (compressed: number, size: number, extra: number[]): Buffer => {
      const b = Buffer.alloc(46 + 5 + extra.length);
      b.writeUInt32LE(0x02014b50, 0);
      b.writeUInt16LE(8, 10);
      b.writeUInt32LE(compressed, 20);
      b.writeUInt32LE(size, 24);
      b.writeUInt16LE(5, 28);
      b.writeUInt16LE(extra.length, 30);
      b.write("a.txt", 46);
      Buffer.from(extra).copy(b, 51);
      return b;
    };
    const parse = (b: Buffer): string => {
      try {
        parseZipDirectory(b, { at: 1000, bytes: b.length, entries: 1 }, 2000, "x.zip");
        return "read";
      } catch (err) {
        return (err as CloudmillError).describe();
      }
    };
    // The zip64 field claims 16 bytes; the extra field holds 4.
    expect(parse(entry(10, 0xffffffff, [1, 0, 16, 0]))).toMatch(
      /^x\.zip \(byte 1000\): zip archive: entry "a\.txt": its zip64 field is too short/,
    );
    expect(parse(entry(0, 5000, []))).toMatch(/entry "a\.txt" declares 5000 bytes from no compressed data/);
  });

  it("encrypted entries and unread methods are refused, naming the entry", async () => {
    sh("printf 'secret\\n' > secret.txt && zip -q -P pass enc.zip secret.txt");
    const enc = await run({ op: "count", inputs: [path.join(dir, "enc.zip")] });
    expect(enc.ok ? "" : enc.error.describe()).toMatch(/enc\.zip.*entry "secret\.txt" is encrypted/);
    const bz = await refused(
      "bz.zip",
      `
import zipfile
with zipfile.ZipFile('bz.zip', 'w', zipfile.ZIP_BZIP2) as z:
    z.writestr('a.txt', 'hello\\n')
`,
    );
    expect(bz).toMatch(/entry "a\.txt" is compressed with method 12 \(bzip2\)/);
  });

  it("a small zip not named .zip is refused by its task, never read as text", async () => {
    sh("printf 'one\\ntwo\\n' > two.txt && zip -q small.zip two.txt && cp small.zip small.dat");
    const r = await run({ op: "count", inputs: [path.join(dir, "small.dat")] });
    expect(r.ok ? "" : r.error.describe()).toMatch(/small\.dat.*a zip archive.*name it \.zip/);
  });
});
