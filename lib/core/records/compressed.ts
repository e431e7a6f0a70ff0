/**
 * Compressed and archive formats cloudmill does not read (gzip, BGZF and zstd are decoded; see
 * codecs.ts), known by their first bytes. Read as text they give a wrong answer with no warning
 * (the records of the compressed bytes), so the first chunk of such an input fails its job
 * instead, saying what the input is. So does data compressed twice.
 */
import { CloudmillError, ErrorCode } from "../errors.js";
import type { RecordBlock } from "./alignedBlocks.js";
import { CODEC_NAMES, codecOf, isSkippableFrame } from "./codecs.js";
import { isUtf32 } from "./utf16.js";

const SIGNATURES: readonly { readonly name: string; readonly what: string; readonly bytes: readonly number[]; readonly fix: string }[] = [
  { name: "xz", what: "xz-compressed data", bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], fix: "xz -d it" },
  { name: "bzip2", what: "bzip2-compressed data", bytes: [0x42, 0x5a, 0x68], fix: "bunzip2 it" },
  { name: "zip", what: "a zip archive", bytes: [0x50, 0x4b, 0x03, 0x04], fix: "unzip it" },
  { name: "lz4", what: "lz4-compressed data", bytes: [0x04, 0x22, 0x4d, 0x18], fix: "lz4 -d it" },
];

/** A tar archive's magic, `ustar`, 257 bytes into its first 512-byte header. */
const TAR_MAGIC_AT = 257;
const TAR_HEADER = 512;
/**
 * A tar header: its magic, and its checksum (octal at bytes 148–155: the sum of the header's
 * bytes, the checksum's own counted as spaces), so that text with "ustar" at byte 257 (a recipe
 * with custard in it) is text.
 */
const isTar = (b: Uint8Array): boolean => {
  if (b.length < TAR_HEADER || Buffer.from(b.subarray(TAR_MAGIC_AT, TAR_MAGIC_AT + 5)).toString("latin1") !== "ustar") return false;
  const field = Buffer.from(b.subarray(148, 156))
    .toString("latin1")
    .replace(/[\0 ]+$/, "")
    .trim();
  if (!/^[0-7]{1,8}$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < TAR_HEADER; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!;
  return Number.parseInt(field, 8) === sum;
};

/** The unread compression or archive format `bytes` start with, if any. bzip2 needs its block magic too, so text starting "BZh" passes. */
export const compressionOf = (bytes: Uint8Array): { name: string; what: string; fix: string } | undefined =>
  isTar(bytes)
    ? { name: "tar", what: "a tar archive", fix: "extract it (tar -x)" }
    : isSkippableFrame(bytes)
      ? { name: "skippable-frame", what: "a zstd or lz4 skippable frame not followed by zstd data", fix: "decompress it" }
      : SIGNATURES.find(({ name, bytes: sig }) => {
          if (bytes.length < sig.length || !sig.every((b, i) => bytes[i] === b)) return false;
          // "BZh" + level 1-9 + the block magic 0x314159265359.
          return (
            name !== "bzip2" || (bytes[3]! >= 0x31 && bytes[3]! <= 0x39 && bytes[4] === 0x31 && bytes[5] === 0x41 && bytes[6] === 0x59)
          );
        });

/** Bytes that tell every format above. */
export const SIGNATURE_BYTES = TAR_HEADER;

/** Byte-order marks of UTF-16 text (Excel's "Unicode text"): read as UTF-8 its records and fields are garbage. */
const UTF16_BOMS: readonly (readonly [number, number, string])[] = [
  [0xff, 0xfe, "UTF-16LE"],
  [0xfe, 0xff, "UTF-16BE"],
];

/**
 * The refusal of an input whose first bytes are a compressed or archive format, or UTF-16 text,
 * if they are. `inArchive`: the input is an entry of a zip archive.
 */
export const compressedInputError = (first: Uint8Array, input: string, inArchive = false): CloudmillError | undefined => {
  if (isUtf32(first)) {
    return new CloudmillError(
      ErrorCode.BAD_RECORD,
      `UTF-32${first[0] === 0 ? "BE" : "LE"} text (its byte-order mark): inputs are read as UTF-8 (CSV also as UTF-16); ` +
        "convert it first (iconv -f UTF-32 -t UTF-8)",
      { input, offset: 0 },
    );
  }
  const utf16 = UTF16_BOMS.find(([a, b]) => first[0] === a && first[1] === b);
  if (utf16) {
    return new CloudmillError(
      ErrorCode.BAD_RECORD,
      `${utf16[2]} text (its byte-order mark): inputs are read as UTF-8; convert it first (iconv -f UTF-16 -t UTF-8)`,
      { input, offset: 0 },
    );
  }
  const twice = codecOf(first);
  if (twice) {
    return new CloudmillError(
      ErrorCode.BAD_RECORD,
      `${CODEC_NAMES[twice]} data inside compressed data: it is compressed twice; decompress it once first`,
      { input, offset: 0 },
    );
  }
  const found = compressionOf(first);
  if (found?.name === "zip" && inArchive) {
    return new CloudmillError(
      ErrorCode.BAD_RECORD,
      "a zip archive inside a zip archive: archives are opened one level deep; extract the inner one and upload it as an input",
      { input, offset: 0 },
    );
  }
  if (found?.name === "zip") {
    // Archives are opened at planning, by name or (past a chunk) by their first bytes: this one was neither.
    return new CloudmillError(
      ErrorCode.BAD_RECORD,
      "a zip archive whose name does not end in .zip: name it .zip to have its entries read (as text it would give a wrong answer)",
      { input, offset: 0 },
    );
  }
  return found
    ? new CloudmillError(
        ErrorCode.BAD_RECORD,
        `${found.what}: ${found.name} inputs are not read yet, and read as text they would give a ` + `wrong answer; ${found.fix} first`,
        { input, offset: 0 },
      )
    : undefined;
};

/**
 * Passes the blocks on, refusing an input whose first bytes are a compressed or archive format:
 * the check of an input's first chunk. (A later chunk that meets a garbled record checks the
 * input's first bytes then, so its error is this one too; see task.ts.)
 */
export async function* refusingCompressed(
  blocks: AsyncIterable<RecordBlock>,
  input: string,
  inArchive = false,
): AsyncGenerator<RecordBlock> {
  for await (const block of blocks) {
    const error = block.first ? compressedInputError(block.bytes, input, inArchive) : undefined;
    if (error) throw error;
    yield block;
  }
}
