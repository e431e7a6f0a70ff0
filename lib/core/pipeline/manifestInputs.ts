/**
 * A job's input list, stored in pieces when it is long. A prefix of a million objects is a
 * million InputObjects (some 200 MB of JSON): in the manifest, every reader of it (the reducer,
 * on each wake-up; a cancel; a status) would pay for all of them. A job of more than
 * INPUTS_PER_PIECE inputs keeps them in `_work/<jobId>/inputs/<digest>/<n>.json` instead, each
 * piece INPUTS_PER_PIECE of them in order, written before the manifest that counts them and
 * names their digest (a digest of every input's key and ETag); only what
 * plans chunks again (a resume, a straggler's backup) reads them all, and an op's finalize reads
 * only the pieces of the inputs it names (grep's matches).
 */
import { createHash } from "node:crypto";
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import { InputObject, inputCountOf, type Manifest } from "../job/manifest.js";
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
): Pick<Manifest, "inputs" | "inputCount" | "inputPieces" | "inputsPerPiece" | "inputsDigest"> =>
  inputs.length <= perPiece
    ? { inputs: [...inputs] }
    : {
        inputCount: inputs.length,
        inputPieces: Math.ceil(inputs.length / perPiece),
        inputsPerPiece: perPiece,
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

/** Piece `i` of a job's input list, checked to hold as many inputs as the manifest puts in it. */
const readPiece = async (store: BlobStore, manifest: Manifest, i: number): Promise<InputObject[]> => {
  const { jobId, inputCount = 0, inputsDigest = "", inputsPerPiece = INPUTS_PER_PIECE } = manifest;
  const key = inputPieceKey(jobId, inputsDigest, i);
  const piece = await readJsonIfExists(store, key, Piece);
  if (!piece)
    throw new CloudmillError(ErrorCode.INTERNAL, `job ${jobId}: piece ${i} of its input list (${key}) is missing; was _work/ expired?`, {
      jobId,
    });
  const holds = Math.min(inputsPerPiece, inputCount - i * inputsPerPiece);
  if (piece.length !== holds)
    throw new CloudmillError(
      ErrorCode.INTERNAL,
      `job ${jobId}: piece ${i} of its input list (${key}) holds ${piece.length} inputs, not ${holds}`,
      {
        jobId,
      },
    );
  return piece;
};

/** Every input of a job, in order: its manifest's list, or its pieces read back. */
export const inputsOf = async (store: BlobStore, manifest: Manifest): Promise<InputObject[]> => {
  if (manifest.inputs) return manifest.inputs;
  const pieces = Array.from({ length: manifest.inputPieces ?? 0 }, (_, i) => i);
  const all = (await mapInOrder(pieces, PARALLEL, (i) => readPiece(store, manifest, i))).flat();
  const counted = inputCountOf(manifest);
  if (all.length !== counted)
    throw new CloudmillError(
      ErrorCode.INTERNAL,
      `job ${manifest.jobId}: its input list's ${pieces.length} pieces hold ${all.length} inputs, its manifest counts ${counted}`,
      { jobId: manifest.jobId },
    );
  return all;
};

/** The names of the inputs at `indices` (what an op's finalize names), reading only the pieces that hold them. */
export const inputNamesAt = async (store: BlobStore, manifest: Manifest, indices: Iterable<number>): Promise<Map<number, string>> => {
  const wanted = [...new Set(indices)].filter((i) => Number.isInteger(i) && i >= 0 && i < inputCountOf(manifest));
  const names = new Map<number, string>();
  if (manifest.inputs) {
    for (const i of wanted) names.set(i, manifest.inputs[i]!.name);
    return names;
  }
  const perPiece = manifest.inputsPerPiece ?? INPUTS_PER_PIECE;
  const pieces = [...new Set(wanted.map((i) => Math.floor(i / perPiece)))];
  const read = await mapInOrder(pieces, PARALLEL, (p) => readPiece(store, manifest, p));
  const byPiece = new Map(pieces.map((p, n) => [p, read[n]!]));
  for (const i of wanted) names.set(i, byPiece.get(Math.floor(i / perPiece))![i % perPiece]!.name);
  return names;
};
