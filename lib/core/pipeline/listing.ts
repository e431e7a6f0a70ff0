/**
 * A job spec's inputs, listed under the splitter's time budget. A prefix of two million objects
 * is some 2,000 LIST pages, a manifest of as many lines two million HEADs: at S3's latencies,
 * more than one invocation's five minutes. So the splitter lists a piece at a time
 * (INPUTS_PER_PIECE inputs, or as many manifest lines), and when its invocation has less than
 * the reserve left, it stores the pieces it listed under `_work/<jobId>/listing/` and hands the
 * rest on (a continuation: the splitter again, with a new invocation's time). Each piece names
 * the cursor it starts from and the one it ends at (in a prefix, the last key; in a manifest, the
 * line and its byte), so a piece follows another only if it starts where that one ended: a
 * continuation goes on from the last piece that does, and the invocation that reaches the end
 * reads them all back, checks the chain, and plans the job.
 * A copy of a continuation, or an invocation that died before it handed on, lists the same
 * range again into the same keys; a chain broken by two copies racing is listed again from the
 * break. Nothing is stored for a listing that ends in its first invocation.
 */
import * as z from "zod";
import { DEFAULTS } from "../constants.js";
import { HiddenFiles } from "../hiddenNames.js";
import { InputObject } from "../job/manifest.js";
import { listingPieceKey, listingSpecKey } from "../keys.js";
import { appendAll } from "../appendAll.js";
import { mapInOrder } from "../mapInOrder.js";
import type { BlobStore } from "../ports.js";
import type { SplitDeps } from "./deps.js";
import { readJsonIfExists, writeJson } from "./blobJson.js";
import { INPUTS_PER_PIECE } from "./manifestInputs.js";
import { cursorOf, InputBudget, inputPieces, LISTING_START, stopsCleanly, type ListingCursor } from "./resolveInputs.js";

/** When an invocation stops listing: the time it has left, and what it keeps back to hand on (or, at the end, to plan the job). */
export interface ListingBudget {
  remainingMs(): number;
  readonly reserveMs: number;
}

/** Whether the invocation must hand the rest of its listing on now. */
export const outOfTime = (budget: ListingBudget): boolean => budget.remainingMs() < budget.reserveMs;

const Cursor = z.object({
  uri: z.number().int().nonnegative(),
  taken: z.number().int().nonnegative(),
  after: z.string().optional(),
  hiddenHere: z.string().optional(),
  manifest: z
    .object({
      etag: z.string(),
      line: z.number().int().nonnegative(),
      at: z.number().int().nonnegative().optional(),
      file: z.number().int().nonnegative().optional(),
    })
    .optional(),
});

const Hidden = z.object({ count: z.number().int().nonnegative(), first: z.array(z.string()) });

/** One stored piece: its inputs, the cursors it spans, and the listing's counts up to its end. */
const ListingPiece = z.object({
  v: z.literal(1),
  seq: z.number().int().positive(),
  from: Cursor,
  to: Cursor,
  found: z.number().int().nonnegative(),
  hidden: Hidden,
  inputs: z.array(InputObject),
});
type ListingPiece = z.infer<typeof ListingPiece>;

/** The job spec a handed-on listing lists, as its first invocation read it. */
const ListingSpec = z.object({ v: z.literal(1), spec: z.string() });

/** Where a listing stands: after piece `seq` (0: none), at cursor `to`. */
interface Tail {
  readonly seq: number;
  readonly to: ListingCursor;
  readonly found: number;
  readonly hidden: z.infer<typeof Hidden>;
}

const START: Tail = { seq: 0, to: LISTING_START, found: 0, hidden: { count: 0, first: [] } };

const tailOf = (p: ListingPiece): Tail => ({ seq: p.seq, to: p.to, found: p.found, hidden: p.hidden });

const sameCursor = (a: ListingCursor, b: ListingCursor): boolean => JSON.stringify(cursorOf(a)) === JSON.stringify(cursorOf(b));

/** Pieces read at once. */
const PARALLEL = 8;

export type Listing =
  | { readonly kind: "listed"; readonly inputs: InputObject[]; readonly hidden: HiddenFiles }
  | { readonly kind: "handedOn"; readonly seq: number; readonly found: number };

/** The spec text of a listing an earlier invocation handed on, if one did. */
export const handedOnSpec = async (output: BlobStore, jobId: string): Promise<string | undefined> =>
  (await readJsonIfExists(output, listingSpecKey(jobId), ListingSpec))?.spec;

/** Removes a job's handed-on listing (its spec and pieces): the job failed before it began, and a spec uploaded again lists afresh. */
export const forgetListing = async (output: BlobStore, jobId: string): Promise<void> => {
  const prefix = listingSpecKey(jobId).slice(0, -"spec.json".length);
  const keys: string[] = [];
  for await (const o of output.list(prefix)) keys.push(o.key);
  // The spec last: while it stands, a continuation still finds what it needs, or nothing at all.
  for (const k of keys.filter((k) => k !== listingSpecKey(jobId))) await output.delete(k);
  await output.delete(listingSpecKey(jobId));
};

export interface ListOptions {
  /** Unset: the listing runs to its end (a caller with no clock). */
  readonly budget?: ListingBudget;
  /** The spec's text, stored before the first pieces so that every continuation lists what this one did. */
  readonly spec: string;
  /** An earlier invocation handed this listing on: go on from its pieces. */
  readonly resumed: boolean;
  /** The last piece the continuation names (the chain below it is taken as stored; the end checks it). */
  readonly hint?: number;
}

/** The job's inputs: all of them, or (out of time) the pieces listed so far stored and the count handed on. */
export const listJobInputs = async (deps: SplitDeps, jobId: string, uris: readonly string[], options: ListOptions): Promise<Listing> => {
  let tail = options.resumed ? await storedTail(deps.output, jobId, options.hint) : START;
  for (;;) {
    const run = await listFrom(deps, uris, tail, options.budget);
    if (!run.done) {
      if (!options.resumed) await writeJson(deps.output, listingSpecKey(jobId), { v: 1, spec: options.spec });
      // Pieces before the hand-off: a continuation finds every one it is told of.
      await mapInOrder(run.pieces, PARALLEL, (p) => writeJson(deps.output, listingPieceKey(jobId, p.seq), p));
      const last = run.pieces.at(-1)!;
      return { kind: "handedOn", seq: last.seq, found: last.found };
    }
    const mine = run.pieces.flatMap((p) => p.inputs);
    if (tail.seq === 0) return { kind: "listed", inputs: mine, hidden: run.hidden };
    const earlier = await storedChain(deps.output, jobId, tail);
    if (earlier.kind === "whole") {
      appendAll(earlier.inputs, mine);
      return { kind: "listed", inputs: earlier.inputs, hidden: run.hidden };
    }
    deps.log.warn("listing's stored pieces do not follow one another (a continuation ran twice at once); listing again from the break", {
      jobId,
      from: earlier.from.seq,
    });
    tail = earlier.from;
  }
};

interface Run {
  readonly pieces: (Omit<ListingPiece, "to"> & { to: ListingCursor | undefined })[];
  readonly done: boolean;
  readonly hidden: HiddenFiles;
}

/** Lists on from `tail` to the end, or (out of time, after one piece at least) to a clean stop. */
const listFrom = async (deps: SplitDeps, uris: readonly string[], tail: Tail, budget: ListingBudget | undefined): Promise<Run> => {
  const hidden = new HiddenFiles();
  hidden.count = tail.hidden.count;
  hidden.first.push(...tail.hidden.first);
  const found = new InputBudget(deps.maxInputs ?? DEFAULTS.maxInputs, tail.found);
  const perPiece = deps.inputsPerPiece ?? INPUTS_PER_PIECE;
  const pieces: Run["pieces"] = [];
  let from = tail.to;
  for await (const p of inputPieces(deps, uris, from, found, perPiece, hidden)) {
    const seq = tail.seq + pieces.length + 1;
    pieces.push({
      v: 1,
      seq,
      from,
      to: p.to,
      found: found.found,
      hidden: { count: hidden.count, first: [...hidden.first] },
      inputs: p.inputs,
    });
    if (p.to === undefined) return { pieces, done: true, hidden };
    from = p.to;
    // A manifest is read on from the line after a piece's last, a prefix listed on after its last key.
    if (budget && stopsCleanly(p.to) && outOfTime(budget)) return { pieces, done: false, hidden };
  }
  throw new Error("unreachable: a listing's last piece has no cursor after it");
};

const readPiece = (output: BlobStore, jobId: string, seq: number): Promise<ListingPiece | undefined> =>
  readJsonIfExists(output, listingPieceKey(jobId, seq), ListingPiece);

/**
 * The last stored piece that follows on from the one the continuation names (else from the start):
 * an invocation that died after it stored pieces, and before or after it handed on, left more.
 * Of those, the last the listing can go on from: a piece stored before manifests were read a
 * line at a time may end inside one.
 */
const storedTail = async (output: BlobStore, jobId: string, hint: number | undefined): Promise<Tail> => {
  const named = hint !== undefined && hint > 0 ? await readPiece(output, jobId, hint) : undefined;
  let tail = named && stopsCleanly(named.to) ? tailOf(named) : START;
  for (let at = tail; ; ) {
    const next = await readPiece(output, jobId, at.seq + 1);
    if (!next || !sameCursor(next.from, at.to)) return tail;
    at = tailOf(next);
    if (stopsCleanly(at.to)) tail = at;
  }
};

/**
 * Pieces 1 to `tail.seq`, checked to follow one another from the start to where this invocation
 * began; else the last piece of the chain before the break.
 */
const storedChain = async (
  output: BlobStore,
  jobId: string,
  tail: Tail,
): Promise<{ kind: "whole"; inputs: InputObject[] } | { kind: "broken"; from: Tail }> => {
  const seqs = Array.from({ length: tail.seq }, (_, i) => i + 1);
  const pieces = await mapInOrder(seqs, PARALLEL, (seq) => readPiece(output, jobId, seq));
  const inputs: InputObject[] = [];
  let before = START;
  for (const p of pieces) {
    if (!p || !sameCursor(p.from, before.to)) return { kind: "broken", from: before };
    appendAll(inputs, p.inputs);
    before = tailOf(p);
  }
  // Its last piece was stored again since this invocation read it: go on from that one.
  if (!sameCursor(before.to, tail.to)) return { kind: "broken", from: before };
  return { kind: "whole", inputs };
};
