/**
 * A gzip stream read member by member (RFC 1952): each member's header parsed here, its deflate
 * data inflated by zlib (raw), its trailer's CRC-32 and size checked here. Knowing where each
 * member starts and ends is what lets an error name the exact compressed byte: a header that is
 * not gzip (data appended to the file), a truncated member, a CRC that does not match.
 * zlib's own gunzip reports none of those places.
 */
import { crc32, createInflateRaw, inflateRawSync, type InflateRaw } from "node:zlib";
import { CloudmillError, ErrorCode } from "../errors.js";
import { ByteQueue } from "./byteQueue.js";
import { bgzfBlockSize, bgzfEofMissing, CODEC_SNIFF_BYTES, corruptInput, type Codec } from "./codecs.js";

type Compressed = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

/** Decoded bytes out of zlib at once. */
const OUT_CHUNK = 64 * 1024;

/**
 * A member whose data is all among the bytes already read (at most this many), and decodes to at
 * most SYNC_MAX_OUT, is inflated in one call: a file of many small members (`gzip >>`, log
 * shippers) would otherwise pay a stream's set-up per member.
 */
const SYNC_MAX_IN = 256 * 1024;
const SYNC_MAX_OUT = 1024 * 1024;

/** Header flags (FLG): a header CRC, an extra field, a name, a comment; the top three are reserved. */
const FHCRC = 2;
const FEXTRA = 4;
const FNAME = 8;
const FCOMMENT = 16;
const RESERVED = 0xe0;

/** The compressed bytes as a cursor: read ahead as needed, with bytes handed back to it. */
class Cursor {
  readonly #queue = new ByteQueue();
  /** The compressed offset of the first queued byte. */
  #at = 0;
  #done = false;
  readonly #it: Iterator<Uint8Array> | AsyncIterator<Uint8Array>;

  constructor(compressed: Compressed, at: number) {
    this.#at = at;
    this.#it = Symbol.asyncIterator in compressed ? compressed[Symbol.asyncIterator]() : compressed[Symbol.iterator]();
  }

  /** The compressed offset of the next byte. */
  get offset(): number {
    return this.#at;
  }

  /** Reads until `n` bytes are queued or the input ends; returns how many are. */
  async fill(n: number): Promise<number> {
    while (this.#queue.length < n && !this.#done) {
      const next = await this.#it.next();
      if (next.done) this.#done = true;
      else this.#queue.push(Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength));
    }
    return this.#queue.length;
  }

  /** Up to `max` of the queued bytes, left queued. */
  peek(max: number): Buffer {
    return this.#queue.peek(Math.min(max, this.#queue.length));
  }

  /** Queued byte `i` (i < what fill returned). */
  byte(i: number): number {
    return this.#queue.byte(i);
  }

  /** The first `n` queued bytes (n ≤ queued), removed. */
  take(n: number): Buffer {
    this.#at += n;
    return this.#queue.take(n);
  }

  /** The next bytes: what is queued, else the input's next piece; undefined at its end. */
  async next(): Promise<Buffer | undefined> {
    if ((await this.fill(1)) === 0) return undefined;
    const first = this.#queue.shift()!;
    this.#at += first.length;
    return first;
  }

  /** Hands back bytes taken with next() and not used: they are read again, first. */
  giveBack(bytes: Buffer): void {
    this.#queue.unshift(bytes);
    this.#at -= bytes.length;
  }

  async close(): Promise<void> {
    if (!this.#done) await this.#it.return?.(undefined);
  }
}

/**
 * The decoded bytes of every gzip member in `compressed`, in order. The stream ends at its
 * end, or at a zero byte where a member would start (tape padding): `ended` is told how many
 * compressed bytes the members took, and the caller judges what follows. `base`: the compressed
 * offset of the stream's first byte (the gzip members after a BGZF file's blocks), for messages.
 *
 * A stream whose last member is a BGZF block holding data (gzip, then a bgzipped file) is
 * refused as BGZF without its end-of-file block is: cut at that block's end, it reads as whole.
 */
export async function* gzipMembers(
  codec: Codec,
  compressed: Compressed,
  ended?: (consumed: number) => void,
  base = 0,
): AsyncGenerator<Buffer> {
  const input = new Cursor(compressed, base);
  /** The last member was a BGZF block that held data: the file is cut if it is the last. */
  let openBgzf = false;
  try {
    for (let first = true; ; first = false) {
      const start = input.offset;
      const n = await input.fill(1);
      if (n === 0 && !first) break;
      if (!first && input.byte(0) === 0) break;
      const bgzf = (await input.fill(CODEC_SNIFF_BYTES)) >= CODEC_SNIFF_BYTES && bgzfBlockSize(input.peek(CODEC_SNIFF_BYTES), 0) > 0;
      await readHeader(input, codec, first);
      const inflated = yield* inflateMember(input, codec, start);
      await readTrailer(input, codec, start, inflated);
      openBgzf = bgzf && inflated.size > 0;
    }
    if (openBgzf) throw bgzfEofMissing(input.offset);
    ended?.(input.offset);
  } finally {
    await input.close();
  }
}

/** Reads a member's header, from its first byte to its deflate data, checking what zlib would. */
const readHeader = async (input: Cursor, codec: Codec, first: boolean): Promise<void> => {
  const start = input.offset;
  const ends = (what: string) => corruptInput(codec, start, `the data ends inside a gzip member's header (${what})`);
  const got = await input.fill(10);
  const magic = got >= 2 && input.byte(0) === 0x1f && input.byte(1) === 0x8b;
  if (got === 1 && input.byte(0) === 0x1f) throw ends("its first 10 bytes");
  if (!magic) {
    throw corruptInput(
      codec,
      start,
      first
        ? "not gzip data"
        : "what follows a gzip member here is not gzip data (gzip -d warns of trailing garbage and drops it): " +
            "remove it, or compress the file again",
    );
  }
  if (got < 10) throw ends("its first 10 bytes");
  if (input.byte(2) !== 8)
    throw corruptInput(codec, start, `a gzip member with compression method ${input.byte(2)} (8, deflate, is gzip's only one)`);
  const flags = input.byte(3);
  if ((flags & RESERVED) !== 0) throw corruptInput(codec, start, "a gzip member header with reserved flag bits set");
  let length = 10;
  if (flags & FEXTRA) {
    if ((await input.fill(length + 2)) < length + 2) throw ends("its extra field's length");
    length += 2 + (input.byte(length) | (input.byte(length + 1) << 8));
    if ((await input.fill(length)) < length) throw ends("its extra field");
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (!(flags & flag)) continue;
    // A zero-terminated name or comment.
    for (;;) {
      if ((await input.fill(length + 1)) < length + 1) throw ends(flag === FNAME ? "its file name" : "its comment");
      length++;
      if (input.byte(length - 1) === 0) break;
    }
  }
  if (flags & FHCRC) {
    if ((await input.fill(length + 2)) < length + 2) throw ends("its header CRC");
    const header = input.take(length);
    const stored = input.take(2).readUInt16LE(0);
    if ((crc32(header) & 0xffff) !== stored) throw corruptInput(codec, start, "a gzip member's header CRC does not match its header");
    return;
  }
  input.take(length);
};

/** What a member inflated to, for its trailer: the CRC-32 and size of the decoded bytes. */
interface Inflated {
  readonly crc: number;
  readonly size: number;
}

/** The member's deflate data inflated in one call, if it is all among the bytes read and small. */
const inflatedAtOnce = async (input: Cursor, codec: Codec, start: number): Promise<Buffer | undefined> => {
  await input.fill(1);
  const read = input.peek(SYNC_MAX_IN);
  try {
    // With `info`, zlib also tells how much input the data took (Node's types leave that out).
    const { buffer, engine } = inflateRawSync(read, { info: true, maxOutputLength: SYNC_MAX_OUT }) as unknown as {
      buffer: Buffer;
      engine: { bytesWritten: number };
    };
    input.take(engine.bytesWritten);
    // A few bytes out of zlib's larger output buffer: copied, so that what is kept downstream is only them.
    return buffer.byteLength * 4 < buffer.buffer.byteLength ? Buffer.from(buffer) : buffer;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    // Data that runs past what is read, or decodes to more: streamed instead.
    if (code === "Z_BUF_ERROR" || code === "ERR_BUFFER_TOO_LARGE") return undefined;
    if (typeof code === "string" && code.startsWith("Z_"))
      throw corruptInput(codec, start, `the gzip member that starts here does not inflate (${(err as Error).message})`);
    throw err;
  }
};

/** Inflates a member's deflate data (zlib, raw), handing back to `input` what follows it. */
async function* inflateMember(input: Cursor, codec: Codec, start: number): AsyncGenerator<Buffer, Inflated> {
  const whole = await inflatedAtOnce(input, codec, start);
  if (whole) {
    if (whole.length > 0) yield whole;
    return { crc: crc32(whole), size: whole.length };
  }
  const inflater = createInflateRaw({ chunkSize: OUT_CHUNK });
  const dataStart = input.offset;
  /** Compressed bytes written, and the last piece written (the data may end inside it). */
  let written = 0;
  let last: Buffer | undefined;
  let stop = false;
  // Pieces go in one at a time: once zlib has taken less than all of a piece, the data ended
  // inside it, and writing on would fail the stream (a push after its end).
  const feed = async (): Promise<void> => {
    while (!stop) {
      const piece = await input.next();
      if (piece === undefined) {
        inflater.end();
        return;
      }
      last = piece;
      written += piece.length;
      await write(inflater, piece);
      if (inflater.bytesWritten < written) {
        inflater.end();
        return;
      }
    }
  };
  // A read that fails (a reset connection, an abort) ends the inflating too, with its own error.
  const fed = feed().then(
    () => undefined,
    (err: unknown) => {
      inflater.destroy(err instanceof Error ? err : new Error(String(err)));
      return err;
    },
  );
  let crc = 0;
  let size = 0;
  let inflated = false;
  let failed: unknown;
  try {
    for await (const out of inflater) {
      const bytes = out as Buffer;
      crc = crc32(bytes, crc);
      size += bytes.length;
      yield bytes;
    }
    inflated = true;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === "Z_BUF_ERROR") throw corruptInput(codec, input.offset, "the data ends inside a gzip member");
    if (typeof code === "string" && code.startsWith("Z_"))
      throw corruptInput(codec, start, `the gzip member that starts here does not inflate (${(err as Error).message})`);
    throw err;
  } finally {
    stop = true;
    // Inflated to its end, the feed has ended too (its last write is what ended the data); cut
    // short, a write may wait on the stream for ever, so it is not waited for.
    if (inflated) failed = await fed;
    inflater.destroy();
  }
  if (failed !== undefined) throw failed;
  // What zlib did not take of the last piece follows the deflate data: the trailer, then more.
  const left = written - inflater.bytesWritten;
  if (last && left > 0) input.giveBack(last.subarray(last.length - left));
  if (input.offset !== dataStart + inflater.bytesWritten)
    throw new CloudmillError(ErrorCode.INTERNAL, `gzip member at byte ${start}: its data's end is not where zlib stopped`);
  return { crc, size };
}

/** Reads a member's trailer and checks it against what the member inflated to. */
const readTrailer = async (input: Cursor, codec: Codec, start: number, { crc, size }: Inflated): Promise<void> => {
  const at = input.offset;
  if ((await input.fill(8)) < 8) throw corruptInput(codec, at, "the data ends inside a gzip member's trailer");
  const trailer = input.take(8);
  if (trailer.readUInt32LE(0) !== crc >>> 0)
    throw corruptInput(codec, at, `the CRC-32 of the gzip member that starts at byte ${start} does not match its data`);
  if (trailer.readUInt32LE(4) !== size % 2 ** 32)
    throw corruptInput(codec, at, `the gzip member that starts at byte ${start} inflates to another size than its trailer says`);
};

const write = (inflater: InflateRaw, piece: Buffer): Promise<void> =>
  new Promise((resolve, reject) => {
    inflater.write(piece, (err) => (err ? reject(err) : resolve()));
  });
