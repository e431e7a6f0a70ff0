/**
 * gzip read member by member: every header field RFC 1952 allows (an extra field, a name, a
 * comment, a header CRC), members in a row, and the compressed bytes arriving in pieces of any
 * size (one byte at a time too), decode to what Python's gzip module decodes; a header CRC that
 * does not match is refused where it is, as GNU gzip refuses it.
 */
import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { crc32, deflateRawSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { decodedStream } from "../../lib/core/records/decode.js";
import { prng } from "../../lib/dev/prng.js";

/** A gzip member with the header fields asked for, written by hand (gzip and Python write only a name). */
const member = (data: Buffer, fields: { extra?: Buffer; name?: string; comment?: string; headerCrc?: boolean }): Buffer => {
  let flags = 0;
  const parts: Buffer[] = [];
  if (fields.extra) {
    flags |= 4;
    const len = Buffer.alloc(2);
    len.writeUInt16LE(fields.extra.length);
    parts.push(len, fields.extra);
  }
  if (fields.name !== undefined) {
    flags |= 8;
    parts.push(Buffer.from(`${fields.name}\0`, "latin1"));
  }
  if (fields.comment !== undefined) {
    flags |= 16;
    parts.push(Buffer.from(`${fields.comment}\0`, "latin1"));
  }
  if (fields.headerCrc) flags |= 2;
  const header = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3]), ...parts]);
  const hcrc = Buffer.alloc(fields.headerCrc ? 2 : 0);
  if (fields.headerCrc) hcrc.writeUInt16LE(crc32(header) & 0xffff);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(data), 0);
  trailer.writeUInt32LE(data.length % 2 ** 32, 4);
  return Buffer.concat([header, hcrc, deflateRawSync(data), trailer]);
};

/** What Python's gzip module decodes the bytes to. */
const python = (bytes: Buffer): Buffer =>
  execFileSync("python3", ["-c", "import gzip,sys\nsys.stdout.buffer.write(gzip.decompress(sys.stdin.buffer.read()))"], {
    input: bytes,
    maxBuffer: 1 << 28,
  });

/** The bytes in pieces of `size` (the last shorter). */
const pieces = (bytes: Buffer, size: number): Buffer[] => {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
};

const decode = async (chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<Buffer> => {
  const out: Uint8Array[] = [];
  for await (const part of decodedStream("gzip", chunks)) out.push(part);
  return Buffer.concat(out);
};

describe("a gzip stream read member by member", () => {
  const rand = prng(7);
  const text = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => `${Math.floor(rand() * 1e6)}\n`).join(""));
  const members = [
    member(text(20_000), { name: "a.txt" }),
    member(text(10), { extra: Buffer.from("AB\x02\x00xy", "latin1"), comment: "from an instrument", headerCrc: true }),
    member(Buffer.alloc(0), {}),
    member(text(3000), { name: "b.txt", comment: "c", headerCrc: true }),
  ];
  const stream = Buffer.concat(members);

  it("decodes every header field, and members in a row, as Python does, whatever the pieces the bytes come in", async () => {
    const expected = python(stream);
    expect(expected.length).toBeGreaterThan(100_000);
    for (const size of [1, 7, 4096, 65_536, stream.length])
      expect((await decode(pieces(stream, size))).equals(expected), `pieces of ${size}`).toBe(true);
  });

  it("ends with the read's own error when the bytes stop coming part-way through a member (a reset connection)", async () => {
    for (const cut of [5, 40_000, members[0]!.length + 3]) {
      async function* broken(): AsyncGenerator<Uint8Array> {
        yield stream.subarray(0, cut);
        throw new CloudmillError(ErrorCode.ENVIRONMENT, "GetObject s3://lab/a.gz failed: socket hang up");
      }
      await expect(decode(broken()), `cut at ${cut}`).rejects.toThrow("socket hang up");
    }
  });

  it("reads a file of many one-line members (gzip >> log) as Python does", async () => {
    const lines = Array.from({ length: 5000 }, (_, i) => member(Buffer.from(`line ${i}\n`), i % 2 ? {} : { name: "log" }));
    const many = Buffer.concat(lines);
    const expected = python(many);
    for (const size of [1000, 65_536]) expect((await decode(pieces(many, size))).equals(expected), `pieces of ${size}`).toBe(true);
  });

  it("refuses a header whose CRC does not match, naming the member's first byte", async () => {
    const second = members[0]!.length;
    const bad = Buffer.from(stream);
    // The second member's comment, under its header CRC.
    bad[second + 20] = bad[second + 20]! ^ 1;
    // GNU gzip checks a header CRC (Python's gzip module skips it).
    const file = path.join(os.tmpdir(), `cloudmill-header-crc-${process.pid}.gz`);
    writeFileSync(file, bad);
    try {
      expect(() => execFileSync("gzip", ["-t", file], { stdio: "pipe" })).toThrow(/header checksum/);
    } finally {
      rmSync(file, { force: true });
    }
    await expect(decode(pieces(bad, 100))).rejects.toThrow(
      `gzip data is corrupt or truncated at compressed byte ${second}: a gzip member's header CRC does not match its header`,
    );
  });
});
