/**
 * The bytes a chunk reads of its input, decoded when the input is compressed. A chunk that is
 * a whole input reads it in one stream and decodes whatever its first bytes say it is; a
 * chunk of a BGZF input decodes the blocks that start inside its byte range, so one big
 * bgzipped file spreads over many tasks with each record read exactly once.
 *
 * Positions (the record offsets ops and errors see) are decoded offsets for gzip and zstd.
 * A BGZF chunk cannot know how many decoded bytes precede it, so a BGZF input's positions
 * are virtual offsets, as htslib's: the compressed offset of the block × 65536 + the byte in
 * the block. They order records as the file does, at every chunk size.
 */
import { DEFAULTS } from "../constants.js";
import { CloudmillError, ErrorCode, type ErrorContext } from "../errors.js";
import type { InputObject } from "../job/manifest.js";
import type { BlobStore } from "../ports.js";
import { plainRangeBytes, spansOf, type RangeBytes, type Span } from "./alignedBlocks.js";
import {
  BGZF_MAX_BLOCK,
  bgzfBlockSize,
  bgzfEofMissing,
  CODEC_SNIFF_BYTES,
  codecOfHead,
  corruptInput,
  inflateBgzfBlock,
  isGzipMember,
  type Codec,
} from "./codecs.js";
import { decodedStream } from "./decode.js";
import { gzipMembers } from "./gzipMembers.js";
import { readBytes } from "../pipeline/blobJson.js";
import { memberBytes } from "./zipMember.js";
import { ByteQueue } from "./byteQueue.js";

/** A range's bytes, and where a position among them is in the input (for messages). */
export interface InputRange extends RangeBytes {
  /** The codec the input is decoded with; known once `owned` has begun. */
  codec(): Codec | undefined;
  where(position: number): Where;
}

export interface InputRangeOptions {
  /** Bytes read before the range to tell whether a record begins at its start (default 1). */
  readonly lookBehind?: number;
  readonly signal?: AbortSignal;
  /**
   * How the input is compressed, when the caller knows (null: not at all). Unset: the input's
   * planned codec, or, for a whole input, whatever its first bytes say.
   */
  readonly codec?: Codec | null;
  /**
   * Read a BGZF input from its start as one stream, its blocks one after another, with decoded
   * offsets for positions (the gzip it also is), rather than the blocks that start in the range.
   */
  readonly whole?: boolean;
}

type Range = { readonly start: number; readonly end: number };

/** The virtual offset of byte `within` of the BGZF block at compressed byte `block`. */
const virtual = (block: number, within: number): number => block * BGZF_MAX_BLOCK + within;

type Where = Pick<ErrorContext, "offset" | "block" | "decoded" | "gzipTail">;

/**
 * Where a position is: a BGZF input's virtual offset names its block; past `tailAt`, where plain
 * gzip members follow its blocks, it names the byte of their decoded data.
 */
const whereIn = (codec: Codec | undefined, position: number, tailAt?: number): Where => {
  if (codec !== "bgzf") return { offset: position, ...(codec ? { decoded: true } : {}) };
  if (tailAt !== undefined && position >= virtual(tailAt, 0))
    return { block: tailAt, offset: position - virtual(tailAt, 0), decoded: true, gzipTail: true };
  return { block: Math.floor(position / BGZF_MAX_BLOCK), offset: position % BGZF_MAX_BLOCK, decoded: true };
};

/** The bytes of `range` of `input` for a record reader; see the module comment. */
export const inputRangeBytes = (store: BlobStore, input: InputObject, range: Range, options: InputRangeOptions = {}): InputRange => {
  const { signal, lookBehind = 1 } = options;
  const whole = range.start <= 0 && range.end >= input.size;
  const { member } = input;
  if (member) {
    if (range.start > 0) throw new CloudmillError(ErrorCode.INTERNAL, `a zip entry is read from its start, not from byte ${range.start}`);
    let inner: Codec | undefined;
    return {
      start: 0,
      codec: () => inner,
      where: (offset) => ({ offset, decoded: true }),
      owned: () =>
        spansOf(
          decodedEntry(memberBytes(store, input, member, signal), (c) => {
            inner = c;
          }),
          0,
        ),
      async *past() {},
    };
  }
  const codec = options.codec === undefined ? input.codec : (options.codec ?? undefined);
  if (codec === "bgzf" && !options.whole) return bgzfRange(store, input, range, lookBehind, signal);
  if (codec) {
    if (range.start > 0)
      throw new CloudmillError(ErrorCode.INTERNAL, `a ${codec} input is read from its start, not from byte ${range.start}`);
    // A gzip stream is told apart by its first bytes once more: one that begins with BGZF blocks
    // (planned whole for the gzip members after them) is read as its whole-file read is, block by block.
    return streamRange(store, input, whole ? Number.POSITIVE_INFINITY : range.end, codec === "gzip" ? undefined : codec, signal);
  }
  if (whole && options.codec === undefined) return streamRange(store, input, Number.POSITIVE_INFINITY, undefined, signal);
  const plain = plainRangeBytes(store, { ...input, ...range }, lookBehind, signal);
  return { ...plain, codec: () => undefined, where: (offset) => ({ offset }) };
};

/**
 * Up to `n` decoded bytes of the input's start, from one read of its first `n` bytes (a
 * compressed input's first `n` bytes decode to at least that many, nearly always).
 */
export const inputHead = async (
  store: BlobStore,
  input: InputObject,
  n: number,
  signal?: AbortSignal,
): Promise<{ readonly bytes: Buffer; readonly codec?: Codec }> => {
  if (input.member) {
    const parts: Buffer[] = [];
    let length = 0;
    let inner: Codec | undefined;
    const found = (c: Codec): void => {
      inner = c;
    };
    for await (const part of decodedEntry(memberBytes(store, input, input.member, signal), found)) {
      parts.push(Buffer.from(part));
      length += part.length;
      if (length >= n) break;
    }
    return { bytes: Buffer.concat(parts, length).subarray(0, n), ...(inner ? { codec: inner } : {}) };
  }
  const raw = await readRaw(store, input, 0, Math.min(input.size, n), signal);
  const codec = codecOfHead(raw, raw.length === input.size);
  if (!codec) return { bytes: raw };
  const parts: Uint8Array[] = [];
  let length = 0;
  try {
    for await (const part of codec === "bgzf" ? bgzfData(emptyStream(), raw) : decodedStream(codec, [raw])) {
      parts.push(part);
      length += part.length;
      if (length >= n) break;
    }
  } catch (err) {
    // Only the head was read: a stream cut short there is not an error of the input.
    if (raw.length >= input.size) throw err;
  }
  return { bytes: Buffer.concat(parts).subarray(0, n), codec };
};

/**
 * The first CODEC_SNIFF_BYTES (or more) of a stream, copied (a store may read on into the same
 * memory), and whether the stream ended within them.
 */
const readHead = async (it: AsyncIterator<Uint8Array>): Promise<{ head: Buffer[]; length: number; ended: boolean }> => {
  const head: Buffer[] = [];
  let length = 0;
  while (length < CODEC_SNIFF_BYTES) {
    const next = await it.next();
    if (next.done) return { head, length, ended: true };
    head.push(Buffer.from(next.value));
    length += next.value.length;
  }
  return { head, length, ended: false };
};

/**
 * A zip entry's bytes, decoded once more when they are gzip, BGZF or zstd themselves (a `.gz`
 * log zipped up with others): `found` is told the codec. Data compressed a third time is left
 * as it is, for the refusal of data compressed twice. The entry is held to what a file of its
 * own is: BGZF is read block by block (each block's CRC, and its end-of-file block), and past
 * where gzip or zstd data ends only zeros may follow.
 */
async function* decodedEntry(bytes: AsyncIterable<Buffer>, found: (codec: Codec) => void): AsyncGenerator<Uint8Array> {
  const it = bytes[Symbol.asyncIterator]();
  let ended = false;
  /** Bytes of the entry read so far, and where its last non-zero byte is (-1: none yet). */
  let read = 0;
  let lastNonZero = -1;
  const seen = (chunk: Uint8Array): Uint8Array => {
    let i = chunk.length - 1;
    while (i >= 0 && chunk[i] === 0) i--;
    if (i >= 0) lastNonZero = read + i;
    read += chunk.length;
    return chunk;
  };
  try {
    const first = await readHead(it);
    const { head, length } = first;
    ended = first.ended;
    for (const chunk of head) seen(chunk);
    const all = async function* (): AsyncGenerator<Uint8Array> {
      yield* head;
      if (ended) return;
      for (let next = await it.next(); !next.done; next = await it.next()) yield seen(next.value);
      ended = true;
    };
    const codec = codecOfHead(Buffer.concat(head, length), ended);
    if (!codec) {
      yield* all();
      return;
    }
    found(codec);
    if (codec === "bgzf") {
      yield* bgzfData(all()[Symbol.asyncIterator]());
      return;
    }
    let consumed = -1;
    yield* decodedStream(codec, all(), (n) => void (consumed = n));
    // The decoder stops where its data ends: what it left of the entry is read here.
    if (!ended) for (let next = await it.next(); !next.done; next = await it.next()) seen(next.value);
    ended = true;
    if (consumed >= 0 && lastNonZero >= consumed) throw corruptInput(codec, consumed, "data follows the end of the compressed data");
  } finally {
    if (!ended) await it.return?.(undefined);
  }
}

/**
 * A BGZF stream's decoded bytes, block after block (`seed`: its first bytes, then `compressed`), each
 * block checked, then those of any plain gzip members after them.
 */
async function* bgzfData(compressed: AsyncIterator<Uint8Array>, seed: Buffer = Buffer.alloc(0)): AsyncGenerator<Buffer> {
  for await (const block of bgzfBlocks(compressed, 0, seed, () => {})) yield block.data;
}

const emptyStream = (): AsyncIterator<Uint8Array> => (async function* () {})();

/** Bytes [start, end) of the input as they are stored (a failed read is tried again, as readBytes does). */
const readRaw = (store: BlobStore, input: InputObject, start: number, end: number, signal?: AbortSignal): Promise<Buffer> =>
  readBytes(store, input.key, signal, { start, end, etag: input.etag });

/**
 * The input read from its start in one stream, decoded with `known` (or the codec its first
 * bytes name, when `known` is unset); the first `owned` decoded bytes are the range's, the
 * rest come past it.
 */
const streamRange = (store: BlobStore, input: InputObject, owned: number, known: Codec | undefined, signal?: AbortSignal): InputRange => {
  let codec: Codec | undefined = known;
  /** Where plain gzip members follow the BGZF blocks, once met. */
  let tailAt: number | undefined;
  let rest: AsyncIterator<Span> | undefined;
  let spill: Span | undefined;
  const open = async function* (): AsyncGenerator<Span> {
    // A plain input may be read into reused memory; bytes fed to a decoder must stay as they are.
    const body = await store.get(input.key, {
      start: 0,
      end: input.size,
      etag: input.etag,
      reuseBuffers: !known,
      ...(signal ? { signal } : {}),
    });
    let consumed = input.size;
    const took = (n: number): void => void (consumed = n);
    if (known === "bgzf") {
      yield* spansOf(bgzfData(body[Symbol.asyncIterator]()), 0);
      return;
    }
    if (known) {
      yield* spansOf(decodedStream(known, body, took), 0);
      await onlyZerosAfter(store, input, known, consumed, signal);
      return;
    }
    const it = body[Symbol.asyncIterator]();
    let ended = false;
    try {
      const first = await readHead(it);
      const { head, length } = first;
      ended = first.ended;
      codec = codecOfHead(Buffer.concat(head, length), ended);
      const compressed = async function* (): AsyncGenerator<Uint8Array> {
        yield* head;
        if (ended) return;
        for (let next = await it.next(); !next.done; next = await it.next()) yield codec ? Buffer.from(next.value) : next.value;
      };
      if (codec === "bgzf")
        yield* blockSpans(
          bgzfBlocks(compressed()[Symbol.asyncIterator](), 0, Buffer.alloc(0), (at) => {
            tailAt = at;
          }),
        );
      else if (codec) {
        yield* spansOf(decodedStream(codec, compressed(), took), 0);
        await onlyZerosAfter(store, input, codec, consumed, signal);
      } else yield* spansOf(compressed(), 0);
    } finally {
      if (!ended) await it.return?.(undefined);
    }
  };
  return {
    start: 0,
    codec: () => codec,
    // A BGZF input known ahead is read with decoded offsets; one found by its bytes, with virtual ones.
    where: (position) => (known === "bgzf" ? { offset: position, decoded: true } : whereIn(codec, position, tailAt)),
    async *owned() {
      const it = open()[Symbol.asyncIterator]();
      rest = it;
      let handedOn = false;
      try {
        for (let next = await it.next(); !next.done; next = await it.next()) {
          const { bytes, at } = next.value;
          if (at + bytes.length > owned) {
            const cut = Math.max(0, owned - at);
            spill = { bytes: bytes.subarray(cut), at: at + cut };
            handedOn = true;
            if (cut > 0) yield { bytes: bytes.subarray(0, cut), at };
            return;
          }
          yield next.value;
        }
        handedOn = true;
      } finally {
        // A reader that stops early (a line count, a failed op) releases the read.
        if (!handedOn) await it.return?.(undefined);
      }
    },
    async *past() {
      if (!rest) return;
      if (spill) yield spill;
      for (let next = await rest.next(); !next.done; next = await rest.next()) yield next.value;
    },
    async close() {
      await rest?.return?.(undefined);
    },
  };
};

/**
 * The bytes of a compressed input past where its data ended must be zeros (padding zlib stops
 * at); anything else is data that would be silently dropped.
 */
const onlyZerosAfter = async (
  store: BlobStore,
  input: InputObject,
  codec: Codec,
  consumed: number,
  signal?: AbortSignal,
): Promise<void> => {
  let at = consumed;
  if (at >= input.size) return;
  for await (const chunk of await store.get(input.key, { start: at, end: input.size, etag: input.etag, ...(signal ? { signal } : {}) })) {
    const i = chunk.findIndex((b) => b !== 0);
    if (i >= 0) throw corruptInput(codec, at + i, "data follows the end of the compressed data, after zero bytes");
    at += chunk.length;
  }
};

/**
 * One BGZF block: where it starts in the compressed input, and its decoded bytes. Or a piece of
 * the plain gzip members that follow a file's BGZF blocks (`tail`: the decoded bytes of theirs
 * before it), all of which start at `at`.
 */
interface Block {
  readonly at: number;
  readonly data: Buffer;
  readonly tail?: number;
}

/**
 * A block's bytes at its virtual offset. The gzip members after the blocks continue from the
 * virtual offset where they start, past 65,535 bytes: nothing BGZF follows them to overlap.
 */
const spanOf = (block: Block): Span => ({ bytes: block.data, at: virtual(block.at, 0) + (block.tail ?? 0) });

async function* blockSpans(blocks: AsyncIterable<Block>): AsyncGenerator<Span> {
  for await (const block of blocks) yield spanOf(block);
}

/**
 * The blocks of a BGZF input from compressed byte `at` on: `seed` (the bytes at `at`), then
 * `compressed`. A gzip member that is not BGZF where a block would start (`cat a.bgz b.gz`) begins
 * the input's tail, read to its end as one gzip stream (gzipTail) when the reader reads the whole
 * input (`tail` is then told where it starts); a reader of a chunk refuses it, since chunks after
 * it could not tell where its members end.
 */
async function* bgzfBlocks(
  compressed: AsyncIterator<Uint8Array>,
  at: number,
  seed: Buffer,
  tail?: (at: number) => void,
): AsyncGenerator<Block> {
  const queue = new ByteQueue();
  queue.push(seed);
  /** Reads until `n` bytes are queued or the input ends. */
  const fill = async (n: number): Promise<void> => {
    while (queue.length < n) {
      const more = await compressed.next();
      if (more.done) return;
      queue.push(Buffer.from(more.value.buffer, more.value.byteOffset, more.value.byteLength));
    }
  };
  /** BGZF ends with an empty block: without it, a file cut at a block boundary would read as whole. */
  let lastEmpty = false;
  try {
    for (;;) {
      await fill(CODEC_SNIFF_BYTES);
      if (queue.length === 0) {
        if (lastEmpty) return;
        throw bgzfEofMissing(at);
      }
      const size = queue.length < CODEC_SNIFF_BYTES ? -1 : bgzfBlockSize(queue.peek(CODEC_SNIFF_BYTES), 0);
      if (size < 0 && queue.length >= 3 && isGzipMember(queue.peek(3), 0)) {
        if (!tail) throw corruptInput("bgzf", at, PLAIN_MEMBER_AMID_BLOCKS);
        tail(at);
        yield* gzipTail(queue, compressed, at);
        return;
      }
      if (size < 0) {
        throw corruptInput(
          "bgzf",
          at,
          queue.length < CODEC_SNIFF_BYTES ? "the data ends inside a block header" : "expected a BGZF block header",
        );
      }
      await fill(size);
      if (queue.length < size) throw corruptInput("bgzf", at, "the data ends inside a block");
      if (!Number.isSafeInteger(virtual(at, BGZF_MAX_BLOCK))) throw corruptInput("bgzf", at, "BGZF files past 128 GiB are not read");
      const data = inflateBgzfBlock(queue.take(size), at);
      lastEmpty = data.length === 0;
      yield { at, data };
      at += size;
    }
  } finally {
    await compressed.return?.(undefined);
  }
}

/**
 * Why a chunk of a BGZF file refuses a gzip member that is not BGZF: the file ends with BGZF's
 * end-of-file block (it was planned split), so more blocks follow the member.
 */
const PLAIN_MEMBER_AMID_BLOCKS =
  "a gzip member that is not BGZF follows the BGZF blocks here, and BGZF blocks follow it (files joined with cat?): " +
  "the file cannot be split at its blocks; recompress it (zcat f | bgzip > g)";

/**
 * The plain gzip members from compressed byte `at` to the input's end (`queue`, then
 * `compressed`), decoded as gzip -d does (zlib, each member's CRC checked); zeros may follow
 * them, as after a gzip file, and nothing else.
 */
async function* gzipTail(queue: ByteQueue, compressed: AsyncIterator<Uint8Array>, at: number): AsyncGenerator<Block> {
  /** The last pieces handed to the decoder, where they start: the bytes it read past its data's end are among them. */
  const recent: { at: number; bytes: Uint8Array }[] = [];
  let fed = at;
  const keep = (bytes: Uint8Array): Uint8Array => {
    recent.push({ at: fed, bytes });
    if (recent.length > 4) recent.shift();
    fed += bytes.length;
    return bytes;
  };
  // Not closed by the decoder when it stops at zeros: what follows them is read here.
  const rest: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]: () => ({
      next: async (): Promise<IteratorResult<Uint8Array>> => {
        if (queue.length > 0) return { done: false, value: keep(queue.take(queue.length)) };
        const next = await compressed.next();
        return next.done ? next : { done: false, value: keep(next.value) };
      },
    }),
  };
  let consumed = -1;
  let decoded = 0;
  for await (const data of gzipMembers("gzip", rest, (n) => void (consumed = n), at)) {
    if (!Number.isSafeInteger(virtual(at, 0) + decoded + data.length))
      throw corruptInput("gzip", at, "the gzip members after the BGZF blocks decode past what cloudmill can place (2^53 bytes)");
    yield { at, data, tail: decoded };
    decoded += data.length;
  }
  if (consumed < 0) return;
  for (const piece of recent) {
    const i = piece.bytes.findIndex((b, k) => piece.at + k >= consumed && b !== 0);
    if (i >= 0) throw corruptInput("gzip", piece.at + i, "data follows the end of the compressed data, after zero bytes");
  }
  for (let next = await compressed.next(); !next.done; next = await compressed.next()) {
    const i = next.value.findIndex((b) => b !== 0);
    if (i >= 0) throw corruptInput("gzip", fed + i, "data follows the end of the compressed data, after zero bytes");
    fed += next.value.length;
  }
}

/** The compressed bytes from `from` on, in growing ranges (the first reaching `firstEnd`). */
async function* compressedFrom(
  store: BlobStore,
  input: InputObject,
  from: number,
  firstEnd: number,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array> {
  let step = Math.max(BGZF_MAX_BLOCK, firstEnd - from);
  for (let next = from; next < input.size; ) {
    const end = Math.min(input.size, next + step);
    yield* await store.get(input.key, { start: next, end, etag: input.etag, ...(signal ? { signal } : {}) });
    next = end;
    step = Math.max(DEFAULTS.overreadBytes, BGZF_MAX_BLOCK) * 2;
  }
}

/** Blocks that chain, and where a chain that stops short of the input's end stops, and why. */
interface BlockChain {
  readonly starts: number[];
  readonly broken?: { readonly at: number; readonly reason: string };
}

/**
 * Candidate block starts in `window` (which starts at compressed byte `base`): from each offset
 * where BGZF headers chain, each block's size leading to the next header, to the window's end
 * (or exactly to the input's end). Compressed bytes that happen to look like a header rarely
 * chain; the caller checks the blocks it uses against their CRC and tries the next candidate.
 * Only after every such chain: those that stop short (a cut file, bytes that are no BGZF after
 * it), saying where and why, as reading them would. A valid file's own chain always comes
 * first, even where its stored text holds a whole block that chains no further.
 */
function* blockChains(window: Buffer, base: number, size: number): Generator<BlockChain> {
  const atEnd = base + window.length >= size;
  const broken: BlockChain[] = [];
  for (let p = 0; p + CODEC_SNIFF_BYTES <= window.length; p++) {
    if (bgzfBlockSize(window, p) < 0) continue;
    const chain: number[] = [];
    let q = p;
    let s = 0;
    while (q + CODEC_SNIFF_BYTES <= window.length && (s = bgzfBlockSize(window, q)) > 0) {
      chain.push(q);
      q += s;
    }
    const starts = chain.map((c) => base + c);
    if (q + CODEC_SNIFF_BYTES > window.length && (atEnd ? q === window.length : chain.length >= 2)) yield { starts };
    else if (atEnd && q > window.length && starts.length >= 2)
      broken.push({ starts: starts.slice(0, -1), broken: { at: starts.at(-1)!, reason: "the data ends inside a block" } });
    else if (q < window.length && q + CODEC_SNIFF_BYTES <= window.length)
      broken.push({
        starts,
        broken: { at: base + q, reason: isGzipMember(window, q) ? PLAIN_MEMBER_AMID_BLOCKS : "expected a BGZF block header" },
      });
    else if (atEnd && q < window.length) broken.push({ starts, broken: { at: base + q, reason: "the data ends inside a block header" } });
  }
  yield* broken;
}

/**
 * The first gzip member in `window` (at compressed byte `base`) that is not BGZF and starts where
 * a BGZF block that inflates to its CRC ends: the file's own blocks, then plain gzip (files joined
 * with cat). One pass over the window, each block's size read from its header.
 */
const plainMemberAfterBlock = (window: Buffer, base: number): number | undefined => {
  for (let p = 0; p + CODEC_SNIFF_BYTES <= window.length; p++) {
    const size = bgzfBlockSize(window, p);
    const q = p + size;
    if (size < 0 || q + CODEC_SNIFF_BYTES > window.length || !isGzipMember(window, q) || bgzfBlockSize(window, q) > 0) continue;
    try {
      inflateBgzfBlock(window.subarray(p, q), base + p);
      return base + q;
    } catch {}
  }
  return undefined;
};

/** How far before a chunk its look-behind may reach past empty BGZF blocks (600,000 of them). */
const MAX_LOOK_BACK = 16 * 1024 * 1024;

/**
 * The decoded blocks that start in [start, end) of a BGZF input, after the last bytes of the
 * block before them (the look-behind), and past them the blocks that finish the last record.
 */
const bgzfRange = (store: BlobStore, input: InputObject, range: Range, lookBehind: number, signal?: AbortSignal): InputRange => {
  const start = Math.min(range.start, input.size);
  const end = Math.min(range.end, input.size);
  let blocks: AsyncGenerator<Block> | undefined;
  let first: Block | undefined;
  let behind: Span | undefined;
  let beginsInput = false;
  let tailAt: number | undefined;

  const setUp = async (): Promise<void> => {
    const firstEnd = Math.min(input.size, end + BGZF_MAX_BLOCK);
    if (start === 0) {
      // Only a range that is the whole input may read plain gzip members after its blocks.
      const tail =
        end >= input.size
          ? (at: number): void => {
              tailAt = at;
            }
          : undefined;
      blocks = bgzfBlocks(compressedFrom(store, input, 0, firstEnd, signal), 0, Buffer.alloc(0), tail);
      return;
    }
    // The block before the first that starts in the range begins at most 64 KiB before the range;
    // the look-behind reaches further back past empty blocks (concatenated files' end blocks).
    for (let back = BGZF_MAX_BLOCK; ; back *= 4) {
      const ws = Math.max(0, start - back);
      const window = await readRaw(store, input, ws, Math.min(input.size, start + 2 * BGZF_MAX_BLOCK + CODEC_SNIFF_BYTES), signal);
      const inflateAt = (starts: readonly number[], i: number): Buffer => {
        const at = starts[i]!;
        return inflateBgzfBlock(window.subarray(at - ws, Math.min(at - ws + bgzfBlockSize(window, at - ws), window.length)), at);
      };
      let found = false;
      // A block, then a gzip member that is not BGZF before this range ends: the file cannot be split
      // (the blocks after the member would be taken for the range's first otherwise).
      const plain = plainMemberAfterBlock(window, ws);
      if (plain !== undefined && plain < end) throw corruptInput("bgzf", plain, PLAIN_MEMBER_AMID_BLOCKS);
      for (const { starts, broken } of blockChains(window, ws, input.size)) {
        const i0 = starts.findIndex((s) => s >= start);
        // A chain is taken once the blocks around the range's start inflate to their CRCs; one that
        // stops short of the input's end, once its last block does too (it is the file's own).
        try {
          if (i0 > 0) inflateAt(starts, i0 - 1);
          if (i0 >= 0) inflateAt(starts, i0);
          if (broken) inflateAt(starts, starts.length - 1);
        } catch {
          continue;
        }
        found = true;
        const b0 = i0 < 0 ? undefined : starts[i0]!;
        // The file stops being BGZF before this range, or inside it before any block: said as the
        // chunk that reads up to there says it, naming the same byte.
        if (broken && broken.at < end && (broken.at < start || b0 === undefined)) throw corruptInput("bgzf", broken.at, broken.reason);
        if (b0 === undefined || b0 >= end) return; // no block starts in this range: it owns no record
        // The look-behind: the last bytes of the last block before b0 that holds any.
        for (let i = i0 - 1; i >= 0 && !behind; i--) {
          const data = inflateAt(starts, i);
          const keep = Math.min(lookBehind, data.length);
          if (keep > 0) behind = { bytes: data.subarray(data.length - keep), at: virtual(starts[i]!, data.length - keep) };
        }
        // Only empty blocks from the input's start: the range owns the input's first record.
        if (!behind && ws === 0 && starts[0] === 0) beginsInput = true;
        else if (!behind) {
          if (back < MAX_LOOK_BACK && ws > 0) break; // only empty blocks in the window: look further back
          throw corruptInput("bgzf", b0, `${MAX_LOOK_BACK / (1 << 20)} MiB of blocks before this one hold no data`);
        }
        const rest = compressedFrom(store, input, ws + window.length, firstEnd, signal);
        blocks = bgzfBlocks(rest, b0, window.subarray(b0 - ws));
        return;
      }
      if (found) continue;
      // Bytes that are no BGZF from before this range on: the chain that ends where they begin
      // is further back (a long tail of them after the file's end, say).
      if (back < MAX_LOOK_BACK && ws > 0) continue;
      throw corruptInput("bgzf", start, "no chain of BGZF blocks found near this byte");
    }
  };

  return {
    start: virtual(start, 0),
    codec: () => "bgzf",
    where: (position) => whereIn("bgzf", position, tailAt),
    startsInput: () => beginsInput,
    async *owned() {
      if (start >= end) return;
      await setUp();
      if (!blocks) return;
      if (behind) yield behind;
      // Not for-await: leaving that loop would close the blocks that past() reads on.
      let handedOn = false;
      try {
        for (let next = await blocks.next(); !next.done; next = await blocks.next()) {
          if (next.value.at >= end) {
            first = next.value;
            handedOn = true;
            return;
          }
          yield spanOf(next.value);
        }
        handedOn = true;
      } finally {
        if (!handedOn) await blocks.return(undefined);
      }
    },
    async *past() {
      if (!blocks) return;
      if (first) yield spanOf(first);
      yield* blockSpans({ [Symbol.asyncIterator]: () => blocks! });
    },
    async close() {
      await blocks?.return(undefined);
    },
  };
};
