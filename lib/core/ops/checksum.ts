/**
 * `checksum`: the size and hash of every object, a lab's check that an upload arrived whole.
 * One JSON line per object in the job's parts, `{ "key", "name", "size", "sha256" }` (the
 * object's key, and the input's name: its `s3://` URI or local path), the same hash
 * `sha256sum` prints. Objects are read as stored (a .gz is hashed, not decoded), in the pieces
 * they arrive in, so an object of any size is hashed in bounded memory.
 */
import { createHash } from "node:crypto";
import * as z from "zod";
import { keyedOp } from "./keyedOp.js";
import { lazySchema, parseOpParams } from "./params.js";
import type { AnyOp } from "./types.js";
import type { KeyedPartial } from "../shuffle/shuffleRun.js";

export const CHECKSUM_ALGORITHMS = ["sha256", "sha1", "sha512", "md5"] as const;
type Algorithm = (typeof CHECKSUM_ALGORITHMS)[number];

export interface ChecksumParams {
  readonly algorithm: Algorithm;
}

interface Checked {
  readonly size: number;
  readonly hash: string;
}

/** An input's object key: an S3 URI's key, or a local file's path as given. */
const objectKeyOf = (name: string): string => /^s3:\/\/[^/]+\/(.*)$/s.exec(name)?.[1] ?? name;

const keyed = keyedOp<ChecksumParams>({
  name: "checksum",
  description: "size and SHA-256 (or algorithm=sha1|sha512|md5) of every object; one JSON line per object",
  formats: ["blob"],
  paramsHelp: ["algorithm=sha256    sha256 (default), sha1, sha512 or md5 (a single-part upload's S3 ETag)"],
  parseParams: (raw) => parseOpParams("checksum", ChecksumParamsSchema(), raw) as ChecksumParams,
  // Never called: the mapper below reads each object's pieces itself.
  pairs: () => () => undefined,
  // One name listed twice is one object (its ETag pins its bytes); either copy is the same.
  combine: (a, b) => ((a as Checked).hash <= (b as Checked).hash ? a : b),
  row: (name, value, params) => ({
    key: objectKeyOf(name),
    name,
    size: (value as Checked).size,
    [params.algorithm]: (value as Checked).hash,
  }),
});

const ChecksumParamsSchema = lazySchema(() => z.strictObject({ algorithm: z.enum(CHECKSUM_ALGORITHMS).default("sha256") }));

export const checksum: AnyOp = {
  ...keyed,
  streamsBlobs: true,
  mapper(params, ctx) {
    const hash = createHash((params as ChecksumParams).algorithm);
    let size = 0;
    return {
      block(block) {
        hash.update(block.bytes);
        size += block.bytes.length;
      },
      finish: (): KeyedPartial => ({ pairs: [[ctx.inputName, { size, hash: hash.digest("hex") } satisfies Checked]] }),
    };
  },
};
