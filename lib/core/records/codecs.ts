/**
 * The compressed formats cloudmill reads, known by their first bytes (never by a name):
 * gzip (read as one stream), zstd (one stream), and BGZF, the gzip of bgzip and htslib, whose
 * independent blocks of at most 64 KiB let one big file be split over many tasks.
 */
import { inflateRawSync, crc32 } from "node:zlib";
import { CloudmillError, ErrorCode } from "../errors.js";

export const CODECS = ["gzip", "bgzf", "zstd"] as const;
export type Codec = (typeof CODECS)[number];

/**
 * A name without its compression extension (`x.csv.gz` is `x.csv`), for the format and
 * separator it names: the codec itself is still known by bytes alone.
 */
export const uncompressedName = (name: string): string => name.replace(/\.(?:gz|gzip|bgz|bgzf|zst|zstd)$/i, "");

/** Bytes that tell every codec apart: a BGZF block's header is 18, pzstd's skippable frame and the zstd magic after it 16. */
export const CODEC_SNIFF_BYTES = 18;

/** Largest BGZF block, compressed or decoded (its sizes are 16-bit). */
export const BGZF_MAX_BLOCK = 65536;

/** What each codec is called in messages. */
export const CODEC_NAMES: Readonly<Record<Codec, string>> = { gzip: "gzip", bgzf: "BGZF (bgzip)", zstd: "zstd" };

/**
 * The size of the BGZF block whose header starts at `at`, or -1 if no BGZF header starts
 * there: gzip magic, deflate, FEXTRA, and the `BC` subfield holding the block's size.
 */
export const bgzfBlockSize = (b: Uint8Array, at: number): number => {
  if (at + CODEC_SNIFF_BYTES > b.length) return -1;
  if (b[at] !== 0x1f || b[at + 1] !== 0x8b || b[at + 2] !== 8 || (b[at + 3]! & 4) === 0) return -1;
  const xlen = b[at + 10]! | (b[at + 11]! << 8);
  if (xlen < 6 || b[at + 12] !== 66 || b[at + 13] !== 67 || b[at + 14] !== 2 || b[at + 15] !== 0) return -1;
  const size = (b[at + 16]! | (b[at + 17]! << 8)) + 1;
  // The header, the extra field, the deflate data (2 bytes at least) and the 8-byte trailer.
  return size >= 12 + xlen + 2 + 8 ? size : -1;
};

/** BGZF's end-of-file block: an empty block that bgzip and htslib end every file with (the SAM/BAM spec, 4.1.2). */
export const BGZF_EOF = Buffer.from("1f8b08040000000000ff0600424302001b0003000000000000000000", "hex");

/** Whether `b` ends with BGZF's end-of-file block. */
export const endsWithBgzfEof = (b: Uint8Array): boolean =>
  b.length >= BGZF_EOF.length && BGZF_EOF.equals(b.subarray(b.length - BGZF_EOF.length));

/** Whether a gzip member (magic, deflate) starts at `at`. */
export const isGzipMember = (b: Uint8Array, at: number): boolean => b[at] === 0x1f && b[at + 1] === 0x8b && b[at + 2] === 8;

export const isZstdMagic = (b: Uint8Array, at: number): boolean =>
  b[at] === 0x28 && b[at + 1] === 0xb5 && b[at + 2] === 0x2f && b[at + 3] === 0xfd;

/** A zstd (or lz4) skippable frame's magic, 0x184D2A50-5F little-endian: pzstd starts every frame with one. */
export const isSkippableFrame = (b: Uint8Array, at = 0): boolean =>
  (b[at]! & 0xf0) === 0x50 && b[at + 1] === 0x2a && b[at + 2] === 0x4d && b[at + 3] === 0x18;

/** The codec `first` (an input's first bytes) is compressed with, if any. */
export const codecOf = (first: Uint8Array): Codec | undefined => {
  if (first[0] === 0x1f && first[1] === 0x8b) return bgzfBlockSize(first, 0) > 0 ? "bgzf" : "gzip";
  if (isZstdMagic(first, 0)) return "zstd";
  // Skippable frames followed by a zstd frame (pzstd's layout) are zstd; followed by anything
  // else (lz4 uses the same frames) they are refused as unknown (compressed.ts).
  if (isSkippableFrame(first)) {
    const next = pastSkippableFrames(first);
    if (next + 4 <= first.length && isZstdMagic(first, next)) return "zstd";
  }
  return undefined;
};

/**
 * The codec of a stream from its first bytes `head`: as codecOf, and zstd too when skippable
 * frames run past `head` (a frame of metadata longer than what was read): only zstd writes them
 * ahead of its data, and one that hides other data fails as not zstd where it ends.
 */
export const codecOfHead = (head: Uint8Array, whole = false): Codec | undefined =>
  codecOf(head) ??
  (isSkippableFrame(head) && pastSkippableFrames(head) + 4 > head.length ? "zstd" : undefined) ??
  (whole ? cutInMagic(head) : undefined);

/**
 * The codec whose magic a whole input of 1 to 3 bytes begins: a gzip or zstd file cut inside its
 * first bytes, refused by its decoder rather than read as a line of text. Only bytes no text
 * holds alone (0x1f, or a byte that is no UTF-8 after it): a file that is just "(" is text.
 */
const cutInMagic = (head: Uint8Array): Codec | undefined => {
  const starts = (magic: readonly number[]): boolean => head.length < magic.length && head.every((b, i) => b === magic[i]);
  if (head.length >= 1 && starts([0x1f, 0x8b, 0x08])) return "gzip";
  if (head.length >= 2 && starts([0x28, 0xb5, 0x2f, 0xfd])) return "zstd";
  return undefined;
};

/** The size of the skippable frame whose header (8 bytes) is at `at`, header included. */
export const skippableFrameBytes = (b: Uint8Array, at: number): number =>
  8 + ((b[at + 4]! | (b[at + 5]! << 8) | (b[at + 6]! << 16)) >>> 0) + b[at + 7]! * 2 ** 24;

/** Where the skippable frames at the start of `b` end (past `b`'s end when they go on beyond it). */
export const pastSkippableFrames = (b: Uint8Array): number => {
  let at = 0;
  while (at + 8 <= b.length && isSkippableFrame(b, at)) at += skippableFrameBytes(b, at);
  return at;
};

/** A compressed input's bytes are not what their format says: fails the job, naming the compressed byte. */
export const corruptInput = (codec: Codec, at: number, what: string): CloudmillError =>
  new CloudmillError(ErrorCode.BAD_RECORD, `${CODEC_NAMES[codec]} data is corrupt or truncated at compressed byte ${at}: ${what}`);

/** A BGZF file that ends on a block holding data: cut at a block boundary, it would read as whole. */
export const bgzfEofMissing = (at: number): CloudmillError =>
  corruptInput(
    "bgzf",
    at,
    "the file ends without BGZF's end-of-file block, so it may be truncated (bgzip -t checks it; bgzip -d | bgzip rewrites it)",
  );

/**
 * Decodes the BGZF block that is `block` (exactly its bytes), which starts at compressed
 * byte `at`: inflates it and checks its CRC-32 and decoded size.
 */
export const inflateBgzfBlock = (block: Uint8Array, at: number): Buffer => {
  const xlen = block[10]! | (block[11]! << 8);
  const end = block.length - 8;
  const view = Buffer.from(block.buffer, block.byteOffset, block.byteLength);
  const crc = view.readUInt32LE(end);
  const isize = view.readUInt32LE(end + 4);
  if (isize > BGZF_MAX_BLOCK)
    throw corruptInput("bgzf", at, `a block says it holds ${isize} bytes, more than the ${BGZF_MAX_BLOCK} BGZF allows`);
  let data: Buffer;
  try {
    // One output buffer the size of a whole block: the default 16 KiB pieces cost a concatenation per block.
    data = inflateRawSync(view.subarray(12 + xlen, end), { maxOutputLength: BGZF_MAX_BLOCK, chunkSize: BGZF_MAX_BLOCK });
  } catch (err) {
    throw corruptInput("bgzf", at, `the block does not inflate (${err instanceof Error ? err.message : String(err)})`);
  }
  if (data.length !== isize) throw corruptInput("bgzf", at, `the block inflates to ${data.length} bytes, its trailer says ${isize}`);
  if (crc32(data) !== crc) throw corruptInput("bgzf", at, "the block's CRC-32 does not match its data");
  return data;
};
