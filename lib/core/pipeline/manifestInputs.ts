/**
 * A job's input list, stored in pieces when it is long. A prefix of a million objects is a
 * million InputObjects (some 200 MB of JSON): in the manifest, every reader of it (the reducer,
 * on each wake-up; a cancel; a status) would pay for all of them. A job of more than
 * INPUTS_PER_PIECE inputs keeps them in `_work/<jobId>/inputs/<digest>/<n>.json` instead, each
 * piece INPUTS_PER_PIECE of them in order, written before the manifest that counts them and
 * names their digest (a digest of every input's key and ETag); only what
 * plans chunks again (a resume, a straggler's backup) or names every input (an op's finalize)
 * reads them.
 */
import { createHash } from "node:crypto";
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import { InputObject, type Manifest } from "../job/manifest.js";
import { inputPieceKey } from "../keys.js";
import { mapInOrder } from "../mapInOrder.js";
import type { BlobStore } from "../ports.js";
import { readJsonIfExists, writeJson } from "./blobJson.js";

/** Inputs a manifest lists itself, and in each piece beyond: about 2 MB of JSON. */
export const INPUTS_PER_PIECE = 10_000;

/** Pieces read or written at once. */
const PARALLEL = 8;

const Piece = z.array(InputObject);

/** The manifest's fields for these inputs: the list itself, or (past `perPiece`) the count of them and of their pieces. */
export const inputFields = (
  inputs: readonly InputObject[],
  perPiece: number = INPUTS_PER_PIECE,
): Pick<Manifest, "inputs" | "inputCount" | "inputPieces" | "inputsDigest"> =>
  inputs.length <= perPiece
    ? { inputs: [...inputs] }
    : {
        inputCount: inputs.length,
        inputPieces: Math.ceil(inputs.length / perPiece),
        inputsDigest: listDigest(inputs),
      };

/** A digest of an input list: each input's bucket, key, ETag and (a zip entry) offset, in order. */
const listDigest = (inputs: readonly InputObject[]): string => {
  const hash = createHash("sha256");
  for (const i of inputs) hash.update(`${i.bucket}\u0000${i.key}\u0000${i.etag}\u0000${i.member?.at ?? ""}\u0001`);
  return hash.digest("hex").slice(0, 24);
};

/** Writes the pieces a manifest counts (none for a manifest that lists its inputs), `perPiece` inputs each. */
export const writeInputPieces = async (
  store: BlobStore,
  { jobId, inputPieces = 0, inputsDigest = "" }: Manifest,
  inputs: readonly InputObject[],
  perPiece: number = INPUTS_PER_PIECE,
): Promise<void> => {
  await mapInOrder(
    Array.from({ length: inputPieces }, (_, i) => i),
    PARALLEL,
    (i) => writeJson(store, inputPieceKey(jobId, inputsDigest, i), inputs.slice(i * perPiece, (i + 1) * perPiece)),
  );
};

/** Every input of a job, in order: its manifest's list, or its pieces read back and checked against the count. */
export const inputsOf = async (store: BlobStore, manifest: Manifest): Promise<InputObject[]> => {
  if (manifest.inputs) return manifest.inputs;
  const { jobId, inputPieces = 0, inputCount = 0, inputsDigest = "" } = manifest;
  const pieces = await mapInOrder(
    Array.from({ length: inputPieces }, (_, i) => i),
    PARALLEL,
    async (i) => {
      const key = inputPieceKey(jobId, inputsDigest, i);
      const piece = await readJsonIfExists(store, key, Piece);
      if (!piece)
        throw new CloudmillError(
          ErrorCode.INTERNAL,
          `job ${jobId}: piece ${i} of its input list (${key}) is missing; was _work/ expired?`,
          {
            jobId,
          },
        );
      return piece;
    },
  );
  const all = pieces.flat();
  if (all.length !== inputCount)
    throw new CloudmillError(
      ErrorCode.INTERNAL,
      `job ${jobId}: its input list's ${inputPieces} pieces hold ${all.length} inputs, its manifest counts ${inputCount}`,
      { jobId },
    );
  return all;
};

/** Every input's name, by input index (what an op's finalize is given). */
export const inputNamesOf = async (store: BlobStore, manifest: Manifest): Promise<string[]> =>
  (await inputsOf(store, manifest)).map((i) => i.name);
