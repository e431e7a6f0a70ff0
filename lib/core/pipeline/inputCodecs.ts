/**
 * What each input holds, where planning needs to know. A zip archive (named `.zip`, or found
 * by its first bytes) becomes its entries, except in the blob format, which reads objects as
 * stored. An input that spans more than one chunk is told apart by its first bytes: a gzip or
 * zstd stream must be read by one task, a BGZF file splits at its blocks. A smaller input is
 * one chunk whatever it holds, and its task sees its first bytes anyway, so it costs no read here.
 * A BGZF file is split only when it ends with BGZF's end-of-file block (its last 28 bytes, one
 * more small read): one that ends otherwise has plain gzip members after its blocks (`cat a.bgz
 * b.gz`), whose ends no chunk after their start could find, and is read whole by one task.
 */
import type { InputObject } from "../job/manifest.js";
import {
  BGZF_EOF,
  CODEC_SNIFF_BYTES,
  type Codec,
  codecOf,
  endsWithBgzfEof,
  isSkippableFrame,
  isZstdMagic,
  skippableFrameBytes,
} from "../records/codecs.js";
import { isZipMagic, isZipName } from "../records/zip.js";
import type { BlobStore } from "../ports.js";
import type { PipelineDeps } from "./deps.js";
import { readBytes } from "./blobJson.js";
import { mapInOrder } from "../mapInOrder.js";
import { zipEntriesOf } from "./zipInputs.js";

/** First-bytes reads in flight at once. */
const PARALLEL = 16;

export interface InputSniffOptions {
  /** The job reads its inputs' bytes as stored (the blob format): no codec is needed. */
  readonly raw?: boolean;
}

export const withCodecs = async (
  deps: Pick<PipelineDeps, "inputStore">,
  inputs: readonly InputObject[],
  chunkSize: number,
  options: InputSniffOptions = {},
): Promise<InputObject[]> => {
  const found = await mapInOrder(inputs, PARALLEL, async (input): Promise<InputObject[]> => {
    // A blob is the object as stored: a zip (or a .docx, a .jar) is hashed or handed over whole, never opened.
    if (options.raw || input.codec !== undefined || input.member !== undefined) return [input];
    const store = deps.inputStore(input.bucket);
    if (isZipName(input.name)) return zipEntriesOf(store, input);
    if (input.size <= chunkSize) return [input];
    const first = await readBytes(store, input.key, undefined, { start: 0, end: CODEC_SNIFF_BYTES, etag: input.etag });
    if (isZipMagic(first)) return zipEntriesOf(store, input);
    const codec = codecOf(first) ?? (isSkippableFrame(first) ? await codecPastSkippable(store, input) : undefined);
    if (codec === "bgzf") {
      const last = await readBytes(store, input.key, undefined, { start: input.size - BGZF_EOF.length, end: input.size, etag: input.etag });
      // Not BGZF to its end: one gzip stream, whose task reads its blocks, then what follows them.
      if (!endsWithBgzfEof(last)) return [{ ...input, codec: "gzip" }];
    }
    return [codec ? { ...input, codec } : input];
  });
  return found.flat();
};

/** Skippable frames followed at once: only a file of many leading ones costs more than this many reads. */
const MAX_SKIPPABLE_HOPS = 16;

/**
 * zstd when the skippable frames an input starts with (metadata, or pzstd's) lead to a zstd
 * frame: they may be longer than the first bytes read, so each next header is read where the
 * frame before it ends. Past MAX_SKIPPABLE_HOPS of them, or when they run to the input's end
 * (a file of skippable frames alone, which zstd -d reads as empty), zstd too: only zstd writes
 * them ahead of data, and its task's decoder walks every frame, failing where the bytes stop
 * being zstd. Followed at once by other data (lz4's frames), they are refused by the task.
 */
const codecPastSkippable = async (store: BlobStore, input: InputObject): Promise<Codec | undefined> => {
  let at = 0;
  for (let hop = 0; hop < MAX_SKIPPABLE_HOPS; hop++) {
    if (at + 8 > input.size) return "zstd";
    const head = await readBytes(store, input.key, undefined, { start: at, end: Math.min(input.size, at + 12), etag: input.etag });
    if (!isSkippableFrame(head)) return head.length >= 4 && isZstdMagic(head, 0) ? "zstd" : undefined;
    at += skippableFrameBytes(head, 0);
  }
  return "zstd";
};
