/**
 * A job's input list, stored in pieces when it is long. A prefix of a million objects is a
 * million InputObjects (some 200 MB of JSON): in the manifest, every reader of it (the reducer,
 * on each wake-up; a cancel; a status) would pay for all of them. A job of more than
 * INPUTS_PER_PIECE inputs keeps them in `_work/<jobId>/inputs/<n>.json` instead, each piece
 * INPUTS_PER_PIECE of them in order, written before the manifest that counts them; only what
 * plans chunks again (a resume, a straggler's backup) or names every input (an op's finalize)
 * reads them.
 */
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
): Pick<Manifest, "inputs" | "inputCount" | "inputPieces"> =>
  inputs.length <= perPiece ? { inputs: [...inputs] } : { inputCount: inputs.length, inputPieces: Math.ceil(inputs.length / perPiece) };

/** Writes the pieces inputFields counts (none for a list the manifest holds). */
export const writeInputPieces = async (
  store: BlobStore,
  jobId: string,
  inputs: readonly InputObject[],
  perPiece: number = INPUTS_PER_PIECE,
): Promise<void> => {
  const pieces = inputFields(inputs, perPiece).inputPieces ?? 0;
  await mapInOrder(
    Array.from({ length: pieces }, (_, i) => i),
    PARALLEL,
    (i) => writeJson(store, inputPieceKey(jobId, i), inputs.slice(i * perPiece, (i + 1) * perPiece)),
  );
};

/** Every input of a job, in order: its manifest's list, or its pieces read back and checked against the count. */
export const inputsOf = async (store: BlobStore, manifest: Manifest): Promise<InputObject[]> => {
  if (manifest.inputs) return manifest.inputs;
  const { jobId, inputPieces = 0, inputCount = 0 } = manifest;
  const pieces = await mapInOrder(
    Array.from({ length: inputPieces }, (_, i) => i),
    PARALLEL,
    async (i) => {
      const piece = await readJsonIfExists(store, inputPieceKey(jobId, i), Piece);
      if (!piece)
        throw new CloudmillError(
          ErrorCode.INTERNAL,
          `job ${jobId}: piece ${i} of its input list (${inputPieceKey(jobId, i)}) is missing; was _work/ expired?`,
          { jobId },
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
