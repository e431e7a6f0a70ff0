/**
 * One zip entry's bytes, read by range from its archive and decoded as they stream: its local
 * header, then exactly its compressed bytes, inflated when deflated. The decoded bytes are
 * checked against the directory's size (an entry that inflates past it is stopped there) and
 * CRC-32, so a lying or damaged entry fails its read instead of giving other data.
 */
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createInflateRaw, crc32, inflateRawSync } from "node:zlib";
import type { InputObject } from "../job/manifest.js";
import type { BlobStore } from "../ports.js";
import { archiveOfEntry, LOCAL_HEADER_BYTES, localDataOffset, zipError } from "./zip.js";

export type ZipMember = NonNullable<InputObject["member"]>;

/** Bytes read past the name for the local header's extra field; a longer one costs a second read. */
const EXTRA_SLACK = 1024;

const bufferOf = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** The entry's stored (compressed) bytes, from one ranged read in the common case. */
async function* storedBytes(store: BlobStore, input: InputObject, member: ZipMember, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const pinned = { etag: input.etag, ...(signal ? { signal } : {}) };
  // The local header is the archive's, not the entry's: its errors name the archive and an archive offset.
  // Jobs planned by 0.1 carry neither the entry's name nor its bound: the input's name, the archive's end.
  const archive = member.entry === undefined ? input.name : archiveOfEntry(input.name, member.entry);
  const end = member.end ?? member.archiveSize;
  const which = member.entry === undefined ? "an entry" : `entry ${JSON.stringify(member.entry)}`;
  const guess = Math.min(end, member.at + LOCAL_HEADER_BYTES + member.nameBytes + EXTRA_SLACK + input.size);
  /** Where the entry's data starts, once its local header is read; refused if the data would run into the next entry. */
  const dataAt = (head: Buffer): number => {
    const skip = localDataOffset(head, { name: member.entry, nameBytes: member.nameBytes, at: member.at }, archive);
    if (member.at + skip + input.size > end) {
      const extra = skip - LOCAL_HEADER_BYTES - member.nameBytes;
      throw zipError(
        archive,
        member.at,
        `${which}: past its local header's ${extra}-byte extra field, ` +
          "its data runs into the next entry (an overlapping-entry zip bomb?); the archive is refused",
      );
    }
    return skip;
  };
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
      if (headLength < Math.min(LOCAL_HEADER_BYTES + member.nameBytes, guess - member.at)) continue;
      bytes = Buffer.concat(head, headLength);
      skip = dataAt(bytes);
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
    if (skip < 0) throw zipError(archive, member.at, `${which}: the archive ends inside its local header`);
    const from = guess + skip;
    for await (const piece of await store.get(input.key, { start: from, end: from + left, ...pinned })) {
      // Never more than the compressed size, whatever the store hands back.
      const take = piece.subarray(0, left);
      left -= take.length;
      if (take.length) yield take;
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
      throw zipError(
        input.name,
        member.size,
        `the entry inflates past the ${member.size} bytes its directory declares (a zip bomb?)`,
        true,
      );
    length += bytes.length;
    crc = crc32(bytes, crc);
    return bytes;
  };
  if (member.method === "stored") {
    for await (const piece of stored) yield check(bufferOf(piece));
  } else if (member.size <= SYNC_INFLATE_BYTES && input.size <= SYNC_INFLATE_BYTES) {
    const pieces: Buffer[] = [];
    for await (const piece of stored) pieces.push(bufferOf(piece));
    const deflated = Buffer.concat(pieces);
    const inflated = inflateSmall(deflated, member.size);
    // One that fails is inflated again as a stream, whose error says where its data went wrong.
    if (!inflated) yield* inflateStream([deflated], input.name, check);
    else if (inflated.length > 0) yield check(inflated);
  } else yield* inflateStream(stored, input.name, check);
  if (length !== member.size)
    throw zipError(input.name, length, `the entry holds ${length} bytes, its directory declares ${member.size} (truncated?)`, true);
  if (crc >>> 0 !== member.crc32) throw zipError(input.name, length, "the entry's CRC-32 does not match its data", true);
}

/** Entries up to this size (stored and inflated) are inflated at once: a stream costs 20 times more per small entry. */
const SYNC_INFLATE_BYTES = 1024 * 1024;

/** A small entry inflated whole, or undefined when it does not inflate to at most `size` bytes. */
const inflateSmall = (deflated: Buffer, size: number): Buffer | undefined => {
  try {
    return inflateRawSync(deflated, { maxOutputLength: size + 1 });
  } catch {
    return undefined;
  }
};

async function* inflateStream(
  deflated: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  name: string,
  check: (bytes: Buffer) => Buffer,
): AsyncGenerator<Buffer> {
  const inflater = createInflateRaw();
  let length = 0;
  const done = pipeline(Readable.from(deflated, { objectMode: false }), inflater).catch((err: unknown) => err);
  try {
    for await (const piece of inflater) {
      const checked = check(piece as Buffer);
      length += checked.length;
      yield checked;
    }
  } catch (err) {
    throw inflateError(name, length, err);
  } finally {
    inflater.destroy();
  }
  const failed = await done;
  // The deflate data ended before the entry's stored bytes did, and the pipeline stopped feeding
  // it: the bytes past that end are slack, as unzip and Python's zipfile (and inflateRawSync) read them.
  const code = (failed as { code?: unknown } | undefined)?.code;
  if (failed && code !== "ABORT_ERR" && code !== "ERR_STREAM_PREMATURE_CLOSE") throw inflateError(name, length, failed);
}

const inflateError = (name: string, at: number, err: unknown): unknown => {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== "string" || !code.startsWith("Z_")) return err;
  return zipError(
    name,
    at,
    code === "Z_BUF_ERROR" ? "the entry's deflate data ends early" : `the entry does not inflate (${(err as Error).message})`,
    true,
  );
};
