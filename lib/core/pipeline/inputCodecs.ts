/**
 * How each input that spans more than one chunk is compressed, from its first bytes: a gzip or
 * zstd stream must be read by one task, a BGZF file splits at its blocks. A smaller input is
 * one chunk whatever it holds, and its task sees its first bytes anyway, so it costs no read here.
 */
import type { InputObject } from "../job/manifest.js";
import { CODEC_SNIFF_BYTES, codecOf } from "../records/codecs.js";
import type { PipelineDeps } from "./deps.js";
import { readBytes } from "./blobJson.js";
import { mapInOrder } from "../mapInOrder.js";

/** First-bytes reads in flight at once. */
const PARALLEL = 16;

export const withCodecs = async (deps: PipelineDeps, inputs: readonly InputObject[], chunkSize: number): Promise<InputObject[]> =>
  mapInOrder(inputs, PARALLEL, async (input) => {
    if (input.size <= chunkSize || input.codec !== undefined) return input;
    const first = await readBytes(deps.inputStore(input.bucket), input.key, undefined, {
      start: 0,
      end: CODEC_SNIFF_BYTES,
      etag: input.etag,
    });
    const codec = codecOf(first);
    return codec ? { ...input, codec } : input;
  });
