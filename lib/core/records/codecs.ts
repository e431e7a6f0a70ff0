/**
 * The compressed formats cloudmill reads, known by their first bytes (never by a name):
 * gzip (read as one stream), zstd (one stream), and BGZF, the gzip of bgzip and htslib, whose
 * independent blocks of at most 64 KiB let one big file be split over many tasks.
 */
import { inflateRawSync, crc32 } from "node:zlib";
import { CloudmillError, ErrorCode } from "../errors.js";

export const CODECS = ["gzip", "bgzf", "zstd"] as const;
export type Codec = (typeof CODECS)[number];

/** Bytes that tell every codec apart: a BGZF block's header is 18. */
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

/** The codec `first` (an input's first bytes) is compressed with, if any. */
export const codecOf = (first: Uint8Array): Codec | undefined => {
  if (first[0] === 0x1f && first[1] === 0x8b) return bgzfBlockSize(first, 0) > 0 ? "bgzf" : "gzip";
  if (first[0] === 0x28 && first[1] === 0xb5 && first[2] === 0x2f && first[3] === 0xfd) return "zstd";
  return undefined;
};

/** A compressed input's bytes are not what their format says: fails the job, naming the compressed byte. */
export const corruptInput = (codec: Codec, at: number, what: string): CloudmillError =>
  new CloudmillError(ErrorCode.BAD_RECORD, `${CODEC_NAMES[codec]} data is corrupt or truncated at compressed byte ${at}: ${what}`);

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
