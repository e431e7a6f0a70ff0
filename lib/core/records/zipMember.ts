/**
 * One zip entry's bytes, read by range from its archive and decoded as they stream: its local
 * header, then exactly its compressed bytes, inflated when deflated. The decoded bytes are
 * checked against the directory's size (an entry that inflates past it is stopped there) and
 * CRC-32, so a lying or damaged entry fails its read instead of giving other data.
 */
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createInflateRaw, crc32 } from "node:zlib";
import type { InputObject } from "../job/manifest.js";
import type { BlobStore } from "../ports.js";
import { LOCAL_HEADER_BYTES, localDataOffset, zipError } from "./zip.js";

export type ZipMember = NonNullable<InputObject["member"]>;

/** Bytes read past the name for the local header's extra field; a longer one costs a second read. */
const EXTRA_SLACK = 1024;

const bufferOf = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** The entry's stored (compressed) bytes, from one ranged read in the common case. */
async function* storedBytes(store: BlobStore, input: InputObject, member: ZipMember, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const pinned = { etag: input.etag, ...(signal ? { signal } : {}) };
  const guess = Math.min(member.archiveSize, member.at + LOCAL_HEADER_BYTES + member.nameBytes + EXTRA_SLACK + input.size);
  const body = await store.get(input.key, { start: member.at, end: guess, ...pinned });
  const head: Buffer[] = [];
  let headLength = 0;
  let skip = -1;
  let left = input.size;
  for await (const piece of body) {
    let bytes = bufferOf(piece);
    if (skip < 0) {
      head.push(Buffer.from(bytes));
      headLength += bytes.length;
      if (headLength < LOCAL_HEADER_BYTES) continue;
      bytes = Buffer.concat(head, headLength);
      skip = localDataOffset(bytes, { name: input.name, nameBytes: member.nameBytes, at: member.at }, input.name);
    }
    if (skip > 0) {
      const cut = Math.min(skip, bytes.length);
      bytes = bytes.subarray(cut);
      skip -= cut;
      if (skip > 0) continue;
    }
    if (left === 0) continue;
    const take = bytes.subarray(0, left);
    left -= take.length;
    yield take;
  }
  if (skip !== 0 || left > 0) {
    // A long extra field (or a header cut short): read what the first range missed.
    if (skip < 0) throw zipError(input.name, member.at, "the archive ends inside an entry's local header");
    const from = guess + skip;
    if (from + left > member.archiveSize) throw zipError(input.name, member.archiveSize, "the archive ends inside an entry's data");
    for await (const piece of await store.get(input.key, { start: from, end: from + left, ...pinned })) {
      left -= piece.length;
      yield piece;
    }
  }
}

/** The entry's decoded bytes, verified; see the module comment. Positions in errors are decoded offsets. */
export async function* memberBytes(store: BlobStore, input: InputObject, member: ZipMember, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const stored = storedBytes(store, input, member, signal);
  let crc = 0;
  let length = 0;
  const check = (bytes: Buffer): Buffer => {
    if (length + bytes.length > member.size)
      throw zipError(input.name, member.size, `the entry inflates past the ${member.size} bytes its directory declares (a zip bomb?)`);
    length += bytes.length;
    crc = crc32(bytes, crc);
    return bytes;
  };
  if (member.method === "stored") {
    for await (const piece of stored) yield check(bufferOf(piece));
  } else {
    const inflater = createInflateRaw();
    const done = pipeline(Readable.from(stored, { objectMode: false }), inflater).catch((err: unknown) => err);
    try {
      for await (const piece of inflater) yield check(piece as Buffer);
    } catch (err) {
      throw inflateError(input.name, length, err);
    } finally {
      inflater.destroy();
    }
    const failed = await done;
    if (failed) throw inflateError(input.name, length, failed);
  }
  if (length !== member.size)
    throw zipError(input.name, length, `the entry holds ${length} bytes, its directory declares ${member.size} (truncated?)`);
  if (crc >>> 0 !== member.crc32) throw zipError(input.name, length, "the entry's CRC-32 does not match its data");
}

const inflateError = (name: string, at: number, err: unknown): unknown => {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== "string" || !code.startsWith("Z_")) return err;
  return zipError(
    name,
    at,
    code === "Z_BUF_ERROR" ? "the entry's deflate data ends early" : `the entry does not inflate (${(err as Error).message})`,
  );
};
