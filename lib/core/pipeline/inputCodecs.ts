/**
 * What each input holds, where planning needs to know. A zip archive (named `.zip`, or found
 * by its first bytes) becomes its entries, except in the blob format, which reads objects as
 * stored. An input that spans more than one chunk is told apart by its first bytes: a gzip or
 * zstd stream must be read by one task, a BGZF file splits at its blocks. A smaller input is
 * one chunk whatever it holds, and its task sees its first bytes anyway, so it costs no read here.
 */
import type { InputObject } from "../job/manifest.js";
import { CODEC_SNIFF_BYTES, codecOf } from "../records/codecs.js";
import { isZipMagic, isZipName } from "../records/zip.js";
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
    const codec = codecOf(first);
    return [codec ? { ...input, codec } : input];
  });
  return found.flat();
};
