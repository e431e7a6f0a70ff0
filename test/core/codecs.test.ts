/**
 * Compressed inputs read as their contents: gzip and zstd streams, and BGZF split at its
 * blocks over many tasks. Files are compressed by the real tools (gzip, zstd, bgzip); expected
 * values come from the reference ops over the uncompressed bytes and from Python's csv module.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CloudmillError } from "../../lib/core/errors.js";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { bgzfBlockSize, codecOf } from "../../lib/core/records/codecs.js";
import { prng } from "../../lib/dev/prng.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { pythonCsvRows, registryWithRows } from "../helpers/csv.js";
import { refCount, refResult, refWordcount } from "../helpers/reference.js";

let dir: string;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-codecs-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const sh = (cmd: string): string => execFileSync("sh", ["-c", cmd], { encoding: "utf8", maxBuffer: 1 << 30 });

/** `file` compressed by each tool: gzip, bgzip (BGZF), zstd, and zstd as two concatenated frames. */
const compressAll = (file: string): Record<string, string> => {
  sh(`gzip -kf '${file}'`);
  sh(`bgzip -c '${file}' > '${file}.bgz'`);
  sh(`zstd -qf '${file}' -o '${file}.zst'`);
  sh(`head -c 100000 '${file}' | zstd -q > '${file}.2.zst' && tail -c +100001 '${file}' | zstd -q >> '${file}.2.zst'`);
  return { gzip: `${file}.gz`, bgzf: `${file}.bgz`, zstd: `${file}.zst`, "zstd, two frames": `${file}.2.zst` };
};

const run = async (file: string, op: string, chunkSize: number | string, params: Record<string, unknown> = {}, workers = 0) => {
  const spec = parseJobSpec({ op, inputs: [file], params, chunkSize });
  try {
    const registry = registryWithRows();
    const { result, status } = await runLocal({ spec, registry, workers, workDir: path.join(dir, `work-${n++}`) });
    return { ok: true as const, result, status };
  } catch (error) {
    return { ok: false as const, error: error as CloudmillError };
  }
};

/** Text whose lines cross BGZF's 64 KiB blocks in every way: empty, CRLF, a line of 200 KB, no final newline. */
const text = (): Buffer => {
  const rand = prng(13);
  const words = ["alpha", "beta", "γάμμα", "delta", "3.25", "-7", "1e3", "x"];
  const lines: string[] = [];
  for (let i = 0; i < 40_000; i++) {
    const r = rand();
    if (r < 0.05) lines.push("");
    else if (i === 20_000) lines.push("long ".repeat(40_000));
    else
      lines.push(
        Array.from({ length: Math.floor(rand() * 9) }, () => words[Math.floor(rand() * words.length)]).join(" ") + (r < 0.1 ? "\r" : ""),
      );
  }
  return Buffer.from(`${lines.join("\n")}\nlast line without newline`);
};

describe("compressed inputs", () => {
  let plain: Buffer;
  let files: Record<string, string>;
  beforeAll(async () => {
    plain = text();
    const file = path.join(dir, "words.txt");
    await writeFile(file, plain);
    files = compressAll(file);
  });

  it("are told by their first bytes, not their names", async () => {
    expect(codecOf(await readFile(files.gzip!))).toBe("gzip");
    expect(codecOf(await readFile(files.bgzf!))).toBe("bgzf");
    expect(codecOf(await readFile(files.zstd!))).toBe("zstd");
    expect(codecOf(plain)).toBeUndefined();
    // A renamed file is read for what it is.
    const renamed = path.join(dir, "words.dat");
    sh(`cp '${files.bgzf}' '${renamed}'`);
    expect(await run(renamed, "count", 50_000)).toMatchObject({ ok: true, result: refCount(plain) });
  });

  it.each(["gzip", "bgzf", "zstd", "zstd, two frames"])(
    "%s gives count and wordcount of the data uncompressed, at every chunk size",
    async (codec) => {
      const file = files[codec]!;
      for (const chunkSize of [997, 65_536, 100_000, "16MiB"]) {
        expect(await run(file, "count", chunkSize), `count at ${chunkSize}`).toMatchObject({ ok: true, result: refCount(plain) });
        expect(await run(file, "wordcount", chunkSize), `wordcount at ${chunkSize}`).toMatchObject({
          ok: true,
          result: refWordcount(plain),
        });
      }
    },
  );

  it("a BGZF file is split at its blocks over many tasks, and a gzip or zstd file is one task", async () => {
    const bgzf = await run(files.bgzf!, "count", 65_536, {}, 2);
    const size = (await readFile(files.bgzf!)).length;
    expect(bgzf).toMatchObject({ ok: true, result: refCount(plain), status: { chunks: Math.ceil(size / 65_536) } });
    expect(Math.ceil(size / 65_536)).toBeGreaterThan(2);
    expect(await run(files.gzip!, "count", 65_536, {}, 2)).toMatchObject({ ok: true, status: { chunks: 1 } });
    expect(await run(files.zstd!, "count", 65_536, {}, 2)).toMatchObject({ ok: true, status: { chunks: 1 } });
  });

  it("stats and grep over a bgzipped file of numbers equal the reference's over the plain file", async () => {
    const rand = prng(5);
    const nums = Buffer.from(
      `${Array.from({ length: 60_000 }, () => (rand() * 2000 - 1000).toFixed(Math.floor(rand() * 4))).join("\n")}\n`,
    );
    const file = path.join(dir, "nums.txt");
    await writeFile(file, nums);
    const { bgzf } = compressAll(file);
    const blocks = await bgzfBlocksOf(bgzf!);
    const grep = refResult("grep", { pattern: "^-?99" }, nums) as { samples: { offset: number }[] };
    for (const chunkSize of [4096, 70_000, "16MiB"]) {
      expect(await run(bgzf!, "stats", chunkSize)).toMatchObject({ ok: true, result: refResult("stats", {}, nums) });
      const r = await run(bgzf!, "grep", chunkSize, { pattern: "^-?99" });
      expect(r.ok).toBe(true);
      // A BGZF input's offsets are virtual offsets: mapped through the file's blocks, they are the reference's.
      const result = (r as { result: { samples: { offset: number }[] } }).result;
      const samples = result.samples.map((s) => ({ ...s, offset: decodedOffset(blocks, s.offset) }));
      expect({ ...result, samples }).toEqual(grep);
    }
  });

  it("CSV with quoted newlines, bgzipped, gives Python's rows at chunk sizes that cut inside quotes", async () => {
    const rand = prng(21);
    const rows = ["id,note,n"];
    for (let i = 0; i < 20_000; i++) {
      const note = rand() < 0.3 ? `"line one\nline ""two"", and ${i}\nthree"` : `plain ${i}`;
      rows.push(`${i},${note},${Math.floor(rand() * 100)}`);
    }
    const file = path.join(dir, "notes.csv");
    await writeFile(file, `${rows.join("\n")}\n`);
    const { bgzf, gzip } = compressAll(file);
    const expected = pythonCsvRows(file).length;
    for (const chunkSize of [1500, 65_536, 80_000]) {
      const r = await runCsv(bgzf!, chunkSize);
      expect(r, `bgzf at ${chunkSize}`).toMatchObject({ ok: true, result: { records: expected } });
    }
    expect(await runCsv(gzip!, 1500)).toMatchObject({ ok: true, result: { records: expected } });
  });

  it("a bgzipped file whose stored data holds fake block headers is still split exactly", async () => {
    // Level 0 stores the bytes as they are: a line that spells a BGZF header appears in the compressed file.
    const fake = Buffer.from([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 0x06, 0, 0x42, 0x43, 0x02, 0, 0x1b, 0]);
    const lines: Buffer[] = [];
    for (let i = 0; i < 30_000; i++) lines.push(Buffer.from(`row ${i} `), fake, Buffer.from("\n"));
    const data = Buffer.concat(lines);
    const file = path.join(dir, "fake.txt");
    await writeFile(file, data);
    sh(`bgzip -l 0 -c '${file}' > '${file}.bgz'`);
    const compressed = await readFile(`${file}.bgz`);
    expect(compressed.indexOf(fake)).toBeGreaterThan(0);
    expect(bgzfBlockSize(compressed, compressed.indexOf(fake))).toBeGreaterThan(0);
    for (const chunkSize of [5000, 65_536, 100_003]) {
      expect(await run(`${file}.bgz`, "count", chunkSize), `at ${chunkSize}`).toMatchObject({ ok: true, result: refCount(data) });
    }
  });
});

/** A BGZF file's blocks by the format's spec: [compressed offset, decoded offset] of each (its BSIZE and ISIZE fields). */
const bgzfBlocksOf = async (file: string): Promise<Map<number, number>> => {
  const d = await readFile(file);
  const out = new Map<number, number>();
  let decoded = 0;
  for (let p = 0; p < d.length; ) {
    out.set(p, decoded);
    const size = d.readUInt16LE(p + 16) + 1;
    decoded += d.readUInt32LE(p + size - 4);
    p += size;
  }
  return out;
};

/** The decoded offset of a virtual offset (compressed block offset × 65536 + byte in the block). */
const decodedOffset = (blocks: Map<number, number>, virtual: number): number => {
  const start = blocks.get(Math.floor(virtual / 65536));
  if (start === undefined) throw new Error(`no BGZF block at ${Math.floor(virtual / 65536)}`);
  return start + (virtual % 65536);
};

const runCsv = async (file: string, chunkSize: number) => {
  const spec = parseJobSpec({ op: "count", inputs: [file], chunkSize, format: "csv" });
  try {
    const { result } = await runLocal({ spec, registry: new OpRegistry(), workers: 0, workDir: path.join(dir, `work-${n++}`) });
    return { ok: true as const, result };
  } catch (error) {
    return { ok: false as const, error: error as CloudmillError };
  }
};

describe("compressed inputs as other tools write them", () => {
  const lines = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => `${i} hello world\n`).join(""));

  it("pzstd's frames (each after a skippable frame) are read as zstd", async () => {
    const plain = lines(100_000);
    const file = path.join(dir, "p.txt");
    await writeFile(file, plain);
    sh(`pzstd -q -p 2 -c '${file}' > '${file}.zst'`);
    expect(await run(`${file}.zst`, "count", "16MiB")).toMatchObject({ ok: true, result: refCount(plain) });
  });

  it("zstd frames of a few bytes, alone or between others, are read whole", async () => {
    const big = path.join(dir, "z-big.txt");
    await writeFile(big, lines(1000));
    sh(`cd '${dir}' && printf x | zstd -q > z-x.zst && printf '\\n\\n\\n' | zstd -q > z-nl.zst && zstd -q -c z-big.txt > z-big.zst`);
    sh(`cd '${dir}' && cat z-big.zst z-x.zst z-nl.zst z-big.zst > z-mid.zst`);
    for (const name of ["z-x.zst", "z-nl.zst", "z-mid.zst"]) {
      const file = path.join(dir, name);
      const plain = execFileSync("zstd", ["-dc", file]);
      expect(await run(file, "count", "16MiB"), name).toMatchObject({ ok: true, result: refCount(plain) });
    }
  });

  it("zstd files that start with skippable frames, long or several, are read whole at every chunk size", async () => {
    const file = path.join(dir, "z-skip.txt");
    await writeFile(file, lines(20_000));
    sh(`zstd -q -c '${file}' > '${file}.zst'`);
    // Skippable frames as the format has them: a magic of 0x184D2A5?, a 4-byte size, that many bytes.
    const skippable = (bytes: Buffer, n = 0): Buffer => {
      const header = Buffer.alloc(8);
      header.writeUInt32LE(0x184d2a50 + n, 0);
      header.writeUInt32LE(bytes.length, 4);
      return Buffer.concat([header, bytes]);
    };
    const zst = await readFile(`${file}.zst`);
    const shapes: [string, Buffer][] = [
      ["past the first bytes read", Buffer.concat([skippable(Buffer.alloc(12, 1)), zst])],
      ["two of them", Buffer.concat([skippable(Buffer.alloc(0)), skippable(Buffer.from("ab"), 5), zst])],
      ["of 2 MB", Buffer.concat([skippable(Buffer.alloc(2_000_000, 7)), zst])],
    ];
    for (const [what, bytes] of shapes) {
      const shaped = path.join(dir, `z-skip-${shapes.findIndex(([w]) => w === what)}.zst`);
      await writeFile(shaped, bytes);
      sh(`zstd -q -t '${shaped}'`);
      for (const chunkSize of [100, 4096, "16MiB"]) {
        expect(await run(shaped, "count", chunkSize), `${what} at ${chunkSize}`).toMatchObject({
          ok: true,
          result: refCount(await readFile(file)),
        });
      }
    }
  });

  it("a zstd frame written with a dictionary is refused as such, not as a checksum that does not match", async () => {
    const file = path.join(dir, "z-dict.txt");
    await writeFile(file, lines(1000));
    sh(
      `cd '${dir}' && mkdir -p z-train && for i in $(seq 1 40); do head -c $((i * 300)) z-dict.txt > z-train/$i; done && ` +
        "zstd -q --train z-train/* -o z-dictionary && zstd -q -f -D z-dictionary z-dict.txt -o z-dict.zst",
    );
    const r = await run(path.join(dir, "z-dict.zst"), "count", 1024);
    expect(r.ok ? "" : r.error.describe()).toMatch(/z-dict\.zst.*zstd frame at compressed byte 0 was written with a dictionary \(id \d+\)/);
  });

  it("a zstd frame without its checksum is refused, naming its byte, whatever onBadRecord says: damage in it would pass unseen", async () => {
    const file = path.join(dir, "z-nc.txt");
    await writeFile(file, lines(1000));
    sh(
      `cd '${dir}' && zstd -q -c z-nc.txt > z-nc1.zst && zstd -q --no-check -c z-nc.txt > z-nc2.zst && cat z-nc1.zst z-nc2.zst > z-nc.zst`,
    );
    const first = (await readFile(path.join(dir, "z-nc1.zst"))).length;
    const spec = parseJobSpec({ op: "count", inputs: [path.join(dir, "z-nc.zst")], onBadRecord: "skip" });
    const error = await runLocal({ spec, registry: registryWithRows(), workers: 0, workDir: path.join(dir, `work-${n++}`) }).catch(
      (err: CloudmillError) => err,
    );
    expect((error as CloudmillError).describe()).toMatch(new RegExp(`z-nc\\.zst.*zstd frame at compressed byte ${first} has no checksum`));
  });

  it("a BGZF file whose first block is empty: the header is still the first record, and a chunk after it owns it", async () => {
    const csv = path.join(dir, "h.csv");
    await writeFile(csv, "name,val\n\uFEFFa,1\nb,2\n");
    sh(`printf '' | bgzip -c > '${csv}.empty' && bgzip -c '${csv}' > '${csv}.part' && cat '${csv}.empty' '${csv}.part' > '${csv}.bgz'`);
    for (const chunkSize of [20, 28, 29, 40, 1000]) {
      expect(await runCsv(`${csv}.bgz`, chunkSize), `at ${chunkSize}`).toMatchObject({ ok: true, result: { records: 2 } });
    }
    const bom = path.join(dir, "bom.txt");
    await writeFile(bom, "\uFEFFhello world\n");
    sh(`bgzip -c '${bom}' > '${bom}.part' && cat '${csv}.empty' '${bom}.part' > '${bom}.bgz'`);
    expect(await run(`${bom}.bgz`, "wordcount", 30)).toMatchObject({ ok: true, result: refWordcount(Buffer.from("hello world\n")) });
  });

  it("files bgzipped apart and joined, with 3,000 end blocks between them, split exactly at every chunk size", async () => {
    const a = path.join(dir, "joined-a.txt");
    const b = path.join(dir, "joined-b.txt");
    await writeFile(a, lines(3000));
    await writeFile(b, lines(2000));
    // Each end block is 28 bytes: 84 KB of blocks that hold no data, more than a block's 64 KiB.
    const joined = path.join(dir, "joined.bgz");
    sh(`bgzip -c '${a}' > '${a}.bgz' && bgzip -c '${b}' > '${b}.bgz' && printf '' | bgzip -c > '${a}.eof'`);
    sh(`(cat '${a}.bgz'; for i in $(seq 3000); do cat '${a}.eof'; done; cat '${b}.bgz') > '${joined}'`);
    const plain = Buffer.concat([await readFile(a), await readFile(b)]);
    for (const chunkSize of [1024, 4096, 65_536, 100_000, 1 << 20]) {
      expect(await run(joined, "count", chunkSize), `at ${chunkSize}`).toMatchObject({ ok: true, result: refCount(plain) });
    }
  });

  it("a gzip member followed by zero padding is read; data after the padding fails the job instead of being dropped", async () => {
    const a = path.join(dir, "pad.txt");
    await writeFile(a, lines(1000));
    sh(`gzip -c '${a}' > '${a}.gz' && head -c 512 /dev/zero >> '${a}.gz'`);
    expect(await run(`${a}.gz`, "count", "16MiB")).toMatchObject({ ok: true, result: { records: 1000 } });
    sh(`gzip -c '${a}' >> '${a}.gz'`);
    const r = await run(`${a}.gz`, "count", "16MiB");
    expect(r.ok).toBe(false);
    expect((r as { error: CloudmillError }).error.describe()).toMatch(/data follows the end of the compressed data, after zero bytes/);
  });

  it("a BGZF file cut at a block boundary fails (its end-of-file block is missing), at every chunk size", async () => {
    const file = path.join(dir, "cut.txt");
    await writeFile(file, lines(60_000));
    sh(`bgzip -c '${file}' > '${file}.bgz'`);
    const blocks = [...(await bgzfBlocksOf(`${file}.bgz`)).keys()];
    const cut = await readFile(`${file}.bgz`);
    await writeFile(`${file}.cut.bgz`, cut.subarray(0, blocks[5]));
    for (const chunkSize of [10_000, "16MiB"]) {
      const r = await run(`${file}.cut.bgz`, "count", chunkSize);
      expect(r.ok, `at ${chunkSize}`).toBe(false);
      expect((r as { error: CloudmillError }).error.describe()).toMatch(/ends without BGZF's end-of-file block/);
    }
  });

  it("a stored (bgzip -l 0) file whose text holds a whole BGZF block near its end is split exactly", async () => {
    // The block is valid and inflates to its CRC, but chains into nothing: the file's own chain is taken.
    const one = path.join(dir, "one-block.txt");
    await writeFile(one, "hi\n");
    sh(`bgzip -c '${one}' > '${one}.bgz'`);
    const block = (await readFile(`${one}.bgz`)).subarray(0, -28);
    const text = Buffer.concat([Buffer.from(lines(7_000)), block, Buffer.from(`\n${lines(4_500)}`)]);
    const file = path.join(dir, "holds-block.txt");
    await writeFile(file, text);
    sh(`bgzip -l 0 -c '${file}' > '${file}.bgz' && bgzip -t '${file}.bgz'`);
    const expected = Number(sh(`wc -l < '${file}'`));
    for (const chunkSize of [1000, 10_000, 65_536, 140_000, "16MiB"])
      expect(await run(`${file}.bgz`, "count", chunkSize, {}, 2), `at ${chunkSize}`).toMatchObject({
        ok: true,
        result: { records: expected },
      });
  });

  it("a zstd frame asking for a window past 128 MiB is refused before anything is allocated", async () => {
    const file = path.join(dir, "long.txt");
    await writeFile(file, lines(1000));
    // From a pipe the size is unknown, so the frame names its window (not its content size).
    sh(`cat '${file}' | zstd -q --long=30 -c > '${file}.zst'`);
    const r = await run(`${file}.zst`, "count", "16MiB");
    expect(r.ok).toBe(false);
    expect((r as { error: CloudmillError }).error.describe()).toMatch(/needs a 1024 MiB window, past the 128 MiB/);
  });

  it("a stored (bgzip -l 0) file whose text spells a header chaining into the real blocks is split exactly", async () => {
    const text = Buffer.from("hello world line\n".repeat(15_360));
    const at = 65_100;
    const fake = Buffer.from([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 0x06, 0, 0x42, 0x43, 0x02, 0, 0, 0]);
    fake.copy(text, at);
    const file = path.join(dir, "fakechain.txt");
    await writeFile(file, text);
    sh(`bgzip -l 0 -c '${file}' > '${file}.bgz'`);
    // Point the fake header's size at the real second block, so that its chain joins the real one.
    const compressed = await readFile(`${file}.bgz`);
    const fakeAt = compressed.indexOf(fake);
    const second = [...(await bgzfBlocksOf(`${file}.bgz`)).keys()].find((b) => b > fakeAt)!;
    text.writeUInt16LE(second - fakeAt - 1, at + 16);
    await writeFile(file, text);
    sh(`bgzip -l 0 -c '${file}' > '${file}.bgz'`);
    for (const chunkSize of [65_536, 65_600, 100_000]) {
      expect(await run(`${file}.bgz`, "count", chunkSize), `at ${chunkSize}`).toMatchObject({ ok: true, result: refCount(text) });
    }
  });
});

describe("a corrupt or truncated compressed input", () => {
  let plain: Buffer;
  let files: Record<string, string>;
  beforeAll(async () => {
    plain = Buffer.from(`${Array.from({ length: 50_000 }, (_, i) => `${i} ${i * 7}`).join("\n")}\n`);
    const file = path.join(dir, "bad.txt");
    await writeFile(file, plain);
    files = compressAll(file);
  });

  const cut = async (file: string, keep: number): Promise<string> => {
    const bytes = await readFile(file);
    const out = `${file}.cut${n++}`;
    await writeFile(out, bytes.subarray(0, keep));
    return out;
  };

  /** A copy with one byte flipped at `at` (from the end when negative). */
  const flip = async (file: string, at: number): Promise<string> => {
    const bytes = Buffer.from(await readFile(file));
    const i = at < 0 ? bytes.length + at : at;
    bytes[i] = bytes[i]! ^ 0x55;
    const out = `${file}.flip${n++}`;
    await writeFile(out, bytes);
    return out;
  };

  const expectFailure = (r: Awaited<ReturnType<typeof run>>, file: string, what: RegExp): void => {
    expect(r.ok).toBe(false);
    const err = (r as { error: CloudmillError }).error;
    expect(err.code).toBe("BAD_RECORD");
    expect(err.describe()).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} .*compressed byte \\d+`));
    expect(err.describe()).toMatch(what);
    expect(err.describe()).not.toContain("\n");
  };

  it("truncated gzip, zstd and BGZF fail their job naming the file and the compressed byte", async () => {
    for (const [codec, what] of [
      ["gzip", /gzip data is corrupt or truncated .*ends inside a gzip member/],
      ["zstd", /zstd data is corrupt or truncated .*ends inside a zstd frame/],
      ["bgzf", /BGZF \(bgzip\) data is corrupt or truncated/],
    ] as const) {
      const size = (await readFile(files[codec]!)).length;
      const file = await cut(files[codec]!, Math.floor(size * 0.6));
      for (const chunkSize of [10_000, "16MiB"]) expectFailure(await run(file, "count", chunkSize), file, what);
    }
  });

  it("a BGZF file cut inside a block, or with bytes after its end, is named by the same byte at every chunk size", async () => {
    const bgzf = files["bgzf"]!;
    const bytes = await readFile(bgzf);
    // Block starts read from each block's own BSIZE field, the way bgzip writes it.
    const starts: number[] = [];
    for (let at = 0; at < bytes.length; at += bytes.readUInt16LE(at + 16) + 1) starts.push(at);
    expect(starts.length).toBeGreaterThan(4);
    const keep = Math.floor(bytes.length * 0.6);
    const cutInside = starts.filter((s) => s < keep).at(-1)!;
    const garbage = path.join(dir, "garbage.bgz");
    await writeFile(garbage, Buffer.concat([bytes, Buffer.from("these bytes are not BGZF at all\n")]));
    const short = path.join(dir, "short-tail.bgz");
    await writeFile(short, Buffer.concat([bytes, Buffer.from("tail\n")]));
    // A tail longer than any chunk's look around its start: chunks wholly inside it name its start too.
    const long = path.join(dir, "long-tail.bgz");
    const noise = Buffer.alloc(300_000);
    for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + 13) % 251;
    await writeFile(long, Buffer.concat([bytes, noise]));
    const truncated = await cut(bgzf, keep);
    for (const [file, at, what] of [
      [truncated, cutInside, /the data ends inside a block$/],
      [garbage, bytes.length, /expected a BGZF block header$/],
      [short, bytes.length, /the data ends inside a block header$/],
      [long, bytes.length, /expected a BGZF block header$/],
    ] as const) {
      for (const chunkSize of [1000, 10_000, 65_536, "16MiB"]) {
        const r = await run(file, "count", chunkSize, {}, 2);
        expectFailure(r, file, what);
        expect((r as { error: CloudmillError }).error.describe(), `${file} at ${chunkSize}`).toContain(`at compressed byte ${at}:`);
      }
    }
  });

  it("a gzip or zstd file cut inside its first bytes is refused, not read as a line of text; a file of just '(' is text", async () => {
    const gz = await readFile(files["gzip"]!);
    const zst = await readFile(files["zstd"]!);
    for (const [name, bytes, refuses, what] of [
      ["one.gz", gz.subarray(0, 1), "python3 -c 'import gzip,sys; gzip.open(sys.argv[1]).read()'", /ends inside a gzip member's header/],
      ["two.gz", gz.subarray(0, 2), "python3 -c 'import gzip,sys; gzip.open(sys.argv[1]).read()'", /ends inside a gzip member's header/],
      ["two.zst", zst.subarray(0, 2), "zstd -t -q", /zstd data is corrupt or truncated/],
      ["three.zst", zst.subarray(0, 3), "zstd -t -q", /zstd data is corrupt or truncated/],
    ] as const) {
      const file = path.join(dir, name);
      await writeFile(file, bytes);
      // The reference refuses it too.
      expect(() => sh(`${refuses} '${file}' 2>/dev/null`), name).toThrow();
      expectFailure(await run(file, "count", "16MiB"), file, what);
    }
    const paren = path.join(dir, "paren.txt");
    await writeFile(paren, "(");
    expect(await run(paren, "count", "16MiB")).toMatchObject({ ok: true, result: { records: 1 } });
  });

  it("a flipped byte fails the job: gzip's CRC, zstd's frame checksum, a BGZF block's CRC", async () => {
    for (const [codec, at, what] of [
      ["gzip", -6, /gzip data is corrupt/],
      ["zstd", -2, /zstd data is corrupt .*checksum/],
      // The CRC-32 of the BGZF block before the empty end-of-file block.
      ["bgzf", -28 - 6, /BGZF \(bgzip\) data is corrupt .*CRC-32/],
    ] as const) {
      const file = await flip(files[codec]!, at);
      for (const chunkSize of [10_000, "16MiB"]) expectFailure(await run(file, "count", chunkSize), file, what);
    }
  });

  it("names the exact compressed byte of what is wrong in a gzip file: appended data, a cut, a CRC, a bad second member", async () => {
    // Layouts from the files' own sizes; Python's gzip module refuses each file too (the reference that they are bad).
    const member = path.join(dir, "member.gz");
    sh(`seq 1 3000 | gzip -c > '${member}'`);
    const size = (await readFile(member)).length;
    const python = (file: string): string =>
      sh(
        `python3 -c "import gzip,sys\ntry:\n  gzip.open(sys.argv[1]).read(); print('read')\nexcept Exception as e: print(type(e).__name__)" '${file}'`,
      ).trim();
    const cases: [string, string, number, RegExp][] = [
      ["appended.gz", `cat '${member}'; echo trailing garbage`, size, /what follows a gzip member here is not gzip data/],
      ["cut.gz", `head -c ${size - 3} '${member}'`, size - 8, /the data ends inside a gzip member's trailer/],
      ["cut-deflate.gz", `head -c ${Math.floor(size / 2)} '${member}'`, Math.floor(size / 2), /the data ends inside a gzip member$/],
      ["second.gz", `cat '${member}'; printf '\\037\\213\\011\\000'; head -c 40 /dev/zero`, size, /compression method 9/],
      [
        "crc.gz",
        `head -c ${size - 8} '${member}'; printf '\\001\\002\\003\\004'; tail -c 4 '${member}'`,
        size - 8,
        /CRC-32 of the gzip member that starts at byte 0/,
      ],
    ];
    for (const [name, make, at, what] of cases) {
      const file = path.join(dir, name);
      sh(`(${make}) > '${file}'`);
      expect(python(file), name).not.toBe("read");
      const r = await run(file, "count", "16MiB");
      expectFailure(r, file, what);
      expect((r as { error: CloudmillError }).error.describe(), name).toContain(`at compressed byte ${at}:`);
    }
    // Members in a row, then zeros (tape padding): read as gzip -d reads them.
    const padded = path.join(dir, "padded.gz");
    sh(`(cat '${member}'; seq 5 9 | gzip -c; head -c 100 /dev/zero) > '${padded}'`);
    expect(await run(padded, "count", "16MiB")).toMatchObject({ ok: true, result: { records: Number(sh(`zcat '${padded}' | wc -l`)) } });
  });

  it("a gzip bomb (300 MB of zeros from 300 KB) ends at maxRecordBytes, not in memory", async () => {
    const file = path.join(dir, "bomb.gz");
    sh(`head -c 300000000 /dev/zero | gzip -1 > '${file}'`);
    expect((await readFile(file)).length).toBeLessThan(2_000_000);
    const spec = parseJobSpec({ op: "count", inputs: [file], maxRecordBytes: 1024 * 1024 });
    const r = await runLocal({ spec, registry: new OpRegistry(), workers: 0, workDir: path.join(dir, `work-${n++}`) }).catch(
      (e: unknown) => e,
    );
    expect((r as CloudmillError).code).toBe("BAD_RECORD");
    expect((r as CloudmillError).describe()).toMatch(/bomb\.gz.*\(byte 0 decompressed\): record longer than 1048576 bytes/);
  });

  it("a bad record is located in the decoded data: by line in a gzip file, by block in a split BGZF file", async () => {
    const file = path.join(dir, "numbers.txt");
    const lines = Array.from({ length: 30_000 }, (_, i) => String(i));
    lines[25_000] = "not-a-number";
    await writeFile(file, `${lines.join("\n")}\n`);
    const { gzip, bgzf } = compressAll(file);
    const byLine = await run(gzip!, "stats", "16MiB");
    expect(byLine.ok).toBe(false);
    const offset = Buffer.byteLength(`${lines.slice(0, 25_000).join("\n")}\n`);
    expect((byLine as { error: CloudmillError }).error.describe()).toMatch(
      new RegExp(`numbers\\.txt\\.gz:25001 \\(byte ${offset} decompressed\\): .*not-a-number`),
    );
    const byBlock = await run(bgzf!, "stats", 8192);
    expect(byBlock.ok).toBe(false);
    const described = (byBlock as { error: CloudmillError }).error.describe();
    const m = /\(byte (\d+) of the BGZF block at compressed byte (\d+)\): .*not-a-number/.exec(described);
    expect(m, described).not.toBeNull();
    // The block's decoded start plus the byte in it is the record's offset.
    expect(decodedOffset(await bgzfBlocksOf(bgzf!), Number(m![2]) * 65536 + Number(m![1]))).toBe(offset);

    // CSV read both ways per chunk keeps a reading's error in its part: raised by the merge, it still names the block.
    const csv = path.join(dir, "numbers.csv");
    await writeFile(csv, `n,note\n${lines.map((l, i) => `${l},"note ${i}"`).join("\n")}\n`);
    const { bgzf: csvBgzf } = compressAll(csv);
    const spec = parseJobSpec({ op: "stats", inputs: [csvBgzf!], chunkSize: 8192, format: "csv", params: { column: "n" } });
    const kept = await runLocal({ spec, registry: new OpRegistry(), workers: 0, workDir: path.join(dir, `work-${n++}`) }).catch(
      (e: unknown) => e,
    );
    expect((kept as CloudmillError).describe()).toMatch(
      /numbers\.csv\.bgz \(byte \d+ of the BGZF block at compressed byte \d+\): .*not-a-number/,
    );
  });
});

describe("compressed inputs joined or padded as other tools leave them", () => {
  /** `cmd`'s exit status: 0, or what it failed with. */
  const status = (cmd: string): number => {
    try {
      sh(cmd);
      return 0;
    } catch (err) {
      return (err as { status: number }).status;
    }
  };
  const numbers = (from: number, to: number): string => `seq ${from} ${to}`;
  const records = (r: Awaited<ReturnType<typeof run>>): unknown => (r.ok ? r.result : r.error.describe());

  it("BGZF blocks followed by plain gzip members are read as gzip -dc reads them, whole, at every chunk size", async () => {
    const bgz = path.join(dir, "tail-a.bgz");
    sh(`${numbers(1, 90_000)} | bgzip -c > '${bgz}'`);
    const shapes = {
      // A bgzipped file, then a plain gzip file joined to it.
      "cat a.bgz b.gz": `cat '${bgz}'; ${numbers(90_001, 110_000)} | gzip -c`,
      // Two plain members after the blocks, the second of a few bytes.
      "cat a.bgz b.gz c.gz": `cat '${bgz}'; ${numbers(5, 30_000)} | gzip -c; printf 'x y\\n' | gzip -c`,
      // A plain member, then BGZF blocks: gzip from its first byte.
      "cat b.gz a.bgz": `${numbers(7, 20_000)} | gzip -c; cat '${bgz}'`,
    };
    for (const [shape, cmd] of Object.entries(shapes)) {
      const file = path.join(dir, `tail-${Object.keys(shapes).indexOf(shape)}.gz`);
      sh(`(${cmd}) > '${file}'`);
      const lines = Number(sh(`gzip -dc '${file}' | wc -l`));
      const words = Number(sh(`gzip -dc '${file}' | wc -w`));
      const size = (await readFile(file)).length;
      for (const chunkSize of [1000, 65_536, 100_000, "16MiB"]) {
        const r = await run(file, "count", chunkSize, {}, 2);
        expect(records(r), `${shape} at ${chunkSize}`).toEqual({ records: lines });
        // Read whole by one task: no chunk after the blocks could find where the plain members end.
        expect(r.ok && r.status.chunks, `${shape} at ${chunkSize}`).toBe(1);
        expect(await run(file, "wordcount", chunkSize), `${shape} at ${chunkSize}`).toMatchObject({ result: { total: words } });
      }
      expect(size).toBeGreaterThan(100_000);
    }
  });

  it("a line in the plain gzip members after BGZF blocks has one offset at every chunk size, after every block's", async () => {
    const file = path.join(dir, "tail-grep.gz");
    sh(`(${numbers(1, 50_000)} | bgzip -c; ${numbers(50_001, 60_000)} | gzip -c) > '${file}'`);
    const offsets = new Set<number>();
    for (const chunkSize of [1000, 70_000, "16MiB"]) {
      const r = await run(file, "grep", chunkSize, { pattern: "^(49999|55555)$" });
      expect(r.ok, records(r) as string).toBe(true);
      const { samples } = (r as { result: { samples: { line: string; offset: number }[] } }).result;
      expect(samples.map((s) => s.line)).toEqual(["49999", "55555"]);
      offsets.add(samples[1]!.offset);
      expect(samples[1]!.offset).toBeGreaterThan(samples[0]!.offset);
    }
    expect(offsets.size).toBe(1);
  });

  it("a truncated, corrupt or trailing plain member after BGZF blocks fails in one line naming the file and compressed byte", async () => {
    const good = path.join(dir, "tail-good.gz");
    sh(`(${numbers(1, 60_000)} | bgzip -c; ${numbers(1, 30_000)} | gzip -c) > '${good}'`);
    const bytes = await readFile(good);
    const crc = Buffer.from(bytes);
    crc[crc.length - 6]! ^= 0xff; // the appended member's CRC-32
    const bad = {
      "tail-cut.gz": [bytes.subarray(0, bytes.length - 3000), /the data ends inside a gzip member/],
      "tail-crc.gz": [crc, /the CRC-32 of the gzip member that starts at byte \d+ does not match its data/],
      "tail-junk.gz": [Buffer.concat([bytes, Buffer.alloc(64), Buffer.from("junk\n")]), /data follows the end of the compressed data/],
    } as const;
    for (const [name, [content, what]] of Object.entries(bad)) {
      const file = path.join(dir, name);
      await writeFile(file, content);
      // gzip itself fails or warns on each.
      expect(status(`gzip -t '${file}' 2>/dev/null`), name).not.toBe(0);
      const seen = new Set<string>();
      for (const chunkSize of [1000, 65_536, "16MiB"]) {
        const r = await run(file, "count", chunkSize, {}, 2);
        expect(r.ok, `${name} at ${chunkSize}`).toBe(false);
        const described = (r as { error: CloudmillError }).error.describe();
        expect(described).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} .*compressed byte \\d+: `));
        expect(described).toMatch(what);
        expect(described).not.toContain("\n");
        seen.add(described.replace(/ \(bytes [^)]*\)/, ""));
      }
      expect(seen.size, name).toBe(1);
    }
  });

  it("gzip then BGZF blocks cut at a block's end fails: the end-of-file block is missing, as in a BGZF file", async () => {
    const bgz = path.join(dir, "head-b.bgz");
    sh(`${numbers(1, 60_000)} | bgzip -c > '${bgz}'`);
    const blocks = [...(await bgzfBlocksOf(bgz)).keys()];
    const file = path.join(dir, "head-cut.gz");
    const plain = execFileSync("sh", ["-c", `${numbers(1, 100)} | gzip -c`]);
    await writeFile(file, Buffer.concat([plain, (await readFile(bgz)).subarray(0, blocks[3])]));
    // gzip -t takes it for whole: only the missing end-of-file block tells.
    expect(status(`gzip -t '${file}' 2>/dev/null`)).toBe(0);
    const r = await run(file, "count", "16MiB");
    expect(r.ok ? "" : r.error.describe()).toMatch(/ends without BGZF's end-of-file block/);
  });

  it("BGZF, plain gzip, then BGZF again: split at its blocks it fails naming the plain member's byte, never a short count", async () => {
    const a = path.join(dir, "mid-a.bgz");
    sh(`${numbers(1, 60_000)} | bgzip -c > '${a}'`);
    const file = path.join(dir, "mid.gz");
    sh(`(cat '${a}'; ${numbers(1, 1000)} | gzip -c; ${numbers(1, 20_000)} | bgzip -c) > '${file}'`);
    const at = (await readFile(a)).length;
    const lines = Number(sh(`gzip -dc '${file}' | wc -l`));
    for (const chunkSize of [1000, 4096, 65_536, 100_000]) {
      const r = await run(file, "count", chunkSize, {}, 2);
      expect(r.ok ? r.result : r.error.describe(), `at ${chunkSize}`).toMatch(
        new RegExp(`compressed byte ${at}: a gzip member that is not BGZF follows the BGZF blocks here`),
      );
    }
    // Read whole (one chunk), it is gzip -dc's.
    expect(records(await run(file, "count", "16MiB"))).toEqual({ records: lines });
  });

  /** A zstd skippable frame: a magic of 0x184D2A5?, a 4-byte size, that many bytes. */
  const skippable = (bytes: Buffer, n = 0): Buffer => {
    const header = Buffer.alloc(8);
    header.writeUInt32LE(0x184d2a50 + n, 0);
    header.writeUInt32LE(bytes.length, 4);
    return Buffer.concat([header, bytes]);
  };

  it("zstd with more than 16 skippable frames ahead of its data, or with nothing but them, is read as zstd -dc reads it", async () => {
    const src = path.join(dir, "zs.txt");
    sh(`${numbers(1, 30_000)} > '${src}' && zstd -q -f '${src}' -o '${src}.zst'`);
    const zst = await readFile(`${src}.zst`);
    const frames = Array.from({ length: 20 }, (_, i) => skippable(Buffer.alloc(i * 10, i), i % 16));
    const shapes: Record<string, Buffer> = {
      "20 frames ahead": Buffer.concat([...frames, zst]),
      "20 ahead, more between and after": Buffer.concat([
        ...frames,
        zst,
        skippable(Buffer.from("meta"), 3),
        zst,
        skippable(Buffer.alloc(0)),
      ]),
      "skippable frames alone": Buffer.concat([...frames, skippable(Buffer.alloc(5000, 9))]),
    };
    for (const [shape, bytes] of Object.entries(shapes)) {
      const file = path.join(dir, `zs-${Object.keys(shapes).indexOf(shape)}.zst`);
      await writeFile(file, bytes);
      const lines = Number(sh(`zstd -dc '${file}' | wc -l`));
      for (const chunkSize of [100, 4096, "16MiB"]) {
        expect(records(await run(file, "count", chunkSize)), `${shape} at ${chunkSize}`).toEqual({ records: lines });
      }
    }
  });

  it("zero padding after zstd data is refused, as zstd -dc refuses it, naming the file and the padding's first byte", async () => {
    const src = path.join(dir, "zp.txt");
    sh(`${numbers(1, 30_000)} > '${src}' && zstd -q -f '${src}' -o '${src}.zst'`);
    const zst = await readFile(`${src}.zst`);
    for (const [name, bytes] of [
      ["zp-512.zst", Buffer.concat([zst, Buffer.alloc(512)])],
      ["zp-3.zst", Buffer.concat([zst, Buffer.alloc(3)])],
      ["zp-skip.zst", Buffer.concat([zst, skippable(Buffer.from("x")), Buffer.alloc(8)])],
    ] as const) {
      const file = path.join(dir, name);
      await writeFile(file, bytes);
      expect(status(`zstd -dc '${file}' > /dev/null 2>&1`), name).not.toBe(0);
      const at = name === "zp-skip.zst" ? zst.length + 9 : zst.length;
      for (const chunkSize of [1000, "16MiB"]) {
        const r = await run(file, "count", chunkSize);
        expect(r.ok ? "" : r.error.describe(), `${name} at ${chunkSize}`).toMatch(
          new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} .*compressed byte ${at}: zero bytes where a zstd frame should start`),
        );
      }
    }
  });
});
