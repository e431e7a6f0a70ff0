/**
 * S3 inputs of a job: object URIs as they are, prefixes (`s3://b/dir/`) as every object under
 * them, and manifests (`manifest:s3://b/list.txt`, inputManifests.ts) as every input they list.
 */
import { parseS3Uri, s3Uri } from "../s3Uri.js";
import { type HiddenFiles, hiddenRootBelow, isHiddenBelow, onlyHidden } from "../hiddenNames.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../errors.js";
import type { InputObject } from "../job/manifest.js";
import { DEFAULTS } from "../constants.js";
import { appendAll } from "../appendAll.js";
import { mapInOrder } from "../mapInOrder.js";
import type { PipelineDeps, SplitDeps } from "./deps.js";
import { readBytes } from "./blobJson.js";
import { WORK_PREFIX } from "../keys.js";
import {
  batchCsvObjectOf,
  FILE_START,
  inventoryObjects,
  inventoryReport,
  isManifestInput,
  listEntryOf,
  shownEntry,
  manifestKind,
  manifestLocation,
  type LinePosition,
  type ListedEntry,
  type ListedObject,
} from "./inputManifests.js";
import { MANIFEST_WINDOW, manifestLines, type ReadRange } from "./manifestLines.js";

type Stores = Pick<PipelineDeps, "inputStore"> & Pick<SplitDeps, "maxInputs" | "inputBuckets">;

/** INVALID_SPEC unless `bucket` is one a job may read (`inputBuckets`; unset: any). */
const refuseOtherBucket = (deps: Stores, bucket: string, input: string, line?: number): void => {
  if (deps.inputBuckets === undefined || deps.inputBuckets.includes(bucket)) return;
  throw new CloudmillError(
    ErrorCode.INVALID_SPEC,
    `bucket ${bucket} is not one this stack reads inputs from (${deps.inputBuckets.join(", ")}); ` +
      "a bucket of your own can be added with the stack's extraInputBuckets (cloudmill dev: --extra-input-bucket)",
    { field: "inputs", input, ...(line !== undefined ? { line } : {}) },
  );
};

/** Counts a job's inputs as they are found, and refuses the first past the limit, before more are listed. */
export class InputBudget {
  #found: number;
  /** `found`: inputs an earlier invocation's listing had. */
  constructor(
    readonly max: number,
    found = 0,
  ) {
    this.#found = found;
  }

  /** Inputs had so far. */
  get found(): number {
    return this.#found;
  }

  /** Inputs still to be had. */
  get room(): number {
    return this.max - this.#found;
  }

  take(uri: string): void {
    if (++this.#found > this.max) throw tooManyInputs(this.max, uri);
  }

  /** Refuses now if `count` more inputs would not fit (a manifest that lists them all at once). */
  expect(count: number, uri: string): void {
    if (this.#found + count > this.max) throw tooManyInputs(this.max, uri);
  }
}

/** A job of more inputs than its splitter may hold. */
export const tooManyInputs = (max: number, where: string): CloudmillError =>
  new CloudmillError(
    ErrorCode.INVALID_SPEC,
    `more than ${max.toLocaleString("en-US")} inputs: a job may have at most that many (its splitter holds their list in memory); ` +
      "split them across several jobs, e.g. one per sub-prefix",
    { field: "inputs", input: where },
  );

/**
 * Objects a listing skips whatever their place: folder markers and cloudmill's own state (the
 * output bucket's `_work/`). Below a listed prefix, hidden names are left out too (hiddenNames.ts).
 */
const skippable = (key: string, size: number): boolean => (key.endsWith("/") && size === 0) || key.startsWith(WORK_PREFIX);

/** HEAD requests at once while a manifest is resolved. */
const MANIFEST_CONCURRENCY = 32;
/** A manifest's lines resolved together at most (fewer where the piece has less room): memory holds one run's. */
const MANIFEST_RUN = 4096;

const notS3 = (uri: string, field = "inputs"): CloudmillError =>
  new CloudmillError(ErrorCode.INVALID_SPEC, `inputs of a job in the cloud must be s3:// URIs, got ${JSON.stringify(uri)}`, { field });

/**
 * Where the reading of a manifest stands: the ETag of the manifest file it reads (a later
 * invocation reads the same bytes, or refuses), and the lines read: of a list or a Batch
 * Operations CSV, up to byte `at`; of an inventory, of its data file `file`.
 */
export interface ManifestPosition {
  readonly etag: string;
  readonly line: number;
  readonly at?: number;
  readonly file?: number;
}

/**
 * Where a listing of a job's inputs stands: at `uris[uri]`, of which `taken` inputs are had;
 * inside a prefix, `after` its last key seen (taken or left out) and `hiddenHere` the first it
 * left out; inside a manifest, `manifest` where its reading stands. A listing resumed from a
 * cursor (listing.ts) goes on exactly where it stopped.
 */
export interface ListingCursor {
  readonly uri: number;
  readonly taken: number;
  readonly after?: string;
  readonly hiddenHere?: string;
  readonly manifest?: ManifestPosition;
}

export const LISTING_START: ListingCursor = { uri: 0, taken: 0 };

/** A piece of a listing: inputs in order, and where the listing stands after them (undefined: at its end). */
export interface ListedPiece {
  readonly inputs: InputObject[];
  readonly to: ListingCursor | undefined;
}

/** A cursor with its fields in one order, for equality as JSON. */
export const cursorOf = (c: ListingCursor): ListingCursor => ({
  uri: c.uri,
  taken: c.taken,
  ...(c.after !== undefined ? { after: c.after } : {}),
  ...(c.hiddenHere !== undefined ? { hiddenHere: c.hiddenHere } : {}),
  ...(c.manifest !== undefined
    ? {
        manifest: {
          etag: c.manifest.etag,
          line: c.manifest.line,
          ...(c.manifest.at !== undefined ? { at: c.manifest.at } : {}),
          ...(c.manifest.file !== undefined ? { file: c.manifest.file } : {}),
        },
      }
    : {}),
});

/** A prefix whose listing found no input. */
const noInputUnder = (uri: string, hiddenHere: string | undefined): CloudmillError =>
  hiddenHere !== undefined
    ? new CloudmillError(ErrorCode.INPUT_NOT_FOUND, onlyHidden(hiddenHere), { input: uri })
    : new CloudmillError(ErrorCode.INPUT_NOT_FOUND, "no such object or prefix", { input: uri });

/**
 * The inputs of `uris` from cursor `from`, in pieces of at most `perPiece` inputs (and of at
 * most `perPiece` listed keys or manifest lines, so that a prefix of hidden files is cut too).
 * A prefix is listed from the key the cursor names, a manifest read on from the line it names
 * (a line that names a prefix brings all of that prefix's objects into its piece); an object is
 * its one input. The last piece's `to` is undefined.
 */
export async function* inputPieces(
  deps: Stores,
  uris: readonly string[],
  from: ListingCursor,
  budget: InputBudget,
  perPiece: number,
  hidden?: HiddenFiles,
): AsyncGenerator<ListedPiece> {
  let piece: InputObject[] = [];
  let seen = 0;
  const cutHere = (to: ListingCursor | undefined): ListedPiece => {
    const out = { inputs: piece, to };
    piece = [];
    seen = 0;
    return out;
  };
  let at = from;
  while (at.uri < uris.length) {
    const u = at.uri;
    const uri = uris[u]!;
    if (isManifestInput(uri)) {
      // A run of its lines at a time, as many as the piece has room for: the cursor says where the next starts.
      const room = (): number => Math.min(perPiece - piece.length, perPiece - seen);
      for await (const run of manifestRuns(deps, uri, at, room, budget, hidden)) {
        appendAll(piece, run.inputs);
        seen += run.lines;
        if (piece.length >= perPiece || seen >= perPiece) yield cutHere(cursorOf({ uri: u, taken: run.taken, manifest: run.to }));
      }
      at = { uri: u + 1, taken: 0 };
      continue;
    }
    const whole = at.after !== undefined ? undefined : await resolveObject(deps, uri, budget);
    if (whole) {
      appendAll(piece, whole);
      if (piece.length >= perPiece) yield cutHere({ uri: u + 1, taken: 0 });
      at = { uri: u + 1, taken: 0 };
      continue;
    }
    const { bucket, key } = parseS3Uri(uri);
    const prefix = key.endsWith("/") ? key : `${key}/`;
    let { taken, after, hiddenHere } = at;
    let cut = false;
    // A hidden folder's objects are listed one after another: it is counted once, as a local
    // folder is, also when a piece (listing.ts) ends inside it.
    let lastRoot = after === undefined ? undefined : hiddenRootBelow(after.slice(prefix.length));
    for await (const o of deps.inputStore(bucket).list(prefix, after !== undefined ? { startAfter: after } : {})) {
      after = o.key;
      seen++;
      // A hidden folder's own marker (`p/.git/`, empty) counts it, as a local walk counts an empty folder.
      const root = o.key.startsWith(WORK_PREFIX) ? undefined : hiddenRootBelow(o.key.slice(prefix.length));
      if (root === undefined && skippable(o.key, o.size)) {
        // Nothing to take.
      } else if (root !== undefined) {
        // .DS_Store, _SUCCESS, _logs/: left out, and counted (hiddenNames.ts).
        hiddenHere ??= s3Uri(bucket, o.key);
        if (root !== lastRoot) hidden?.add(s3Uri(bucket, prefix + root));
        lastRoot = root;
      } else {
        budget.take(uri);
        taken++;
        piece.push({ bucket, key: o.key, size: o.size, etag: o.etag, name: s3Uri(bucket, o.key) });
      }
      if (piece.length >= perPiece || seen >= perPiece) {
        cut = true;
        break;
      }
    }
    if (cut) {
      // Whether the prefix goes on is for the next piece's listing to find.
      at = cursorOf({ uri: u, taken, ...(after !== undefined ? { after } : {}), ...(hiddenHere !== undefined ? { hiddenHere } : {}) });
      yield cutHere(at);
      continue;
    }
    if (taken === 0) throw noInputUnder(uri, hiddenHere);
    at = { uri: u + 1, taken: 0 };
  }
  yield cutHere(undefined);
}

/**
 * Whether a listing can go on from `to`: at an input's start, in a prefix after a key, or in a
 * manifest at a line. A cursor stored before manifests were read a line at a time may stop
 * inside one with no line (listing.ts goes on from the piece before it).
 */
export const stopsCleanly = (to: ListingCursor | undefined): boolean =>
  to === undefined || to.after !== undefined || to.taken === 0 || to.manifest !== undefined;

/** An object URI as its one input; undefined for a prefix (a URI that names no object), which is listed a piece at a time. */
const resolveObject = async (deps: Stores, uri: string, budget: InputBudget): Promise<InputObject[] | undefined> => {
  if (!uri.startsWith("s3://")) throw notS3(uri);
  const { bucket, key } = parseS3Uri(uri);
  refuseOtherBucket(deps, bucket, uri);
  const info = key.endsWith("/") ? undefined : await deps.inputStore(bucket).head(key);
  if (!info) return undefined;
  budget.take(uri);
  return [{ bucket, key, size: info.size, etag: info.etag, name: uri }];
};

/** One input URI: the object, or every object under the prefix. */
const resolveUri = async (deps: Stores, uri: string, budget: InputBudget, hidden?: HiddenFiles): Promise<InputObject[]> => {
  const out: InputObject[] = [];
  for await (const piece of inputPieces(deps, [uri], LISTING_START, budget, Number.POSITIVE_INFINITY, hidden)) appendAll(out, piece.inputs);
  return out;
};

/** An error about what a manifest's line names, told as that line's. */
const atLine = (err: unknown, manifest: string, line: number, named: string): CloudmillError => {
  const e = toCloudmillError(err);
  if (e.code === ErrorCode.ENVIRONMENT) return e;
  const field = e.context["field"];
  return new CloudmillError(e.code, `${named}: ${e.message}`, { input: manifest, line, ...(field !== undefined ? { field } : {}) });
};

/**
 * A listed object as an input: with the size and ETag its listing gave, or those of a HEAD. An
 * inventory is a bucket's listing and skips what a prefix's does (hidden names, from the
 * bucket's root, counted in `hidden`); a Batch Operations CSV names each object on purpose, and
 * every one it names is read.
 */
const resolveListed = async (
  deps: Stores,
  manifest: string,
  o: ListedObject,
  listing: boolean,
  budget: InputBudget,
  hidden?: HiddenFiles,
): Promise<InputObject[]> => {
  const uri = s3Uri(o.bucket, o.key);
  if (listing && skippable(o.key, o.size ?? 1)) return [];
  if (listing && isHiddenBelow(o.key)) {
    hidden?.add(uri);
    return [];
  }
  refuseOtherBucket(deps, o.bucket, manifest, o.line);
  budget.take(manifest);
  if (o.size !== undefined && o.etag !== undefined) return [{ bucket: o.bucket, key: o.key, size: o.size, etag: o.etag, name: uri }];
  const info = await deps
    .inputStore(o.bucket)
    .head(o.key)
    .catch((err: unknown) => {
      throw atLine(err, manifest, o.line, uri);
    });
  if (!info) throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, `${uri}: no such object`, { input: manifest, line: o.line });
  // An inventory without its Size field: a folder marker shows only now.
  if (listing && skippable(o.key, info.size)) return [];
  return [{ bucket: o.bucket, key: o.key, size: info.size, etag: info.etag, name: uri }];
};

/** A run of a manifest's lines resolved together: their inputs, and where the manifest's reading stands after them. */
interface ManifestRun {
  readonly inputs: InputObject[];
  /** Lines (or inventory rows) read, blank and left out ones included. */
  readonly lines: number;
  /** Inputs had from the manifest so far, these included. */
  readonly taken: number;
  readonly to: ManifestPosition;
}

/**
 * Every input a manifest in S3 lists, in its order, from cursor `at` on: in runs of at most
 * `room()` lines (asked before each run) and MANIFEST_RUN, each run's objects HEADed
 * MANIFEST_CONCURRENCY at a time. A list or a Batch Operations CSV is read a window at a time from the byte the cursor
 * names; an inventory's data file from its start, its rows up to the cursor's skipped. Every
 * read is pinned to the ETag the manifest had when its reading began. A list or a CSV is read
 * through once first, at its start: a file too long, empty, not UTF-8 or not CSV is refused
 * before any object is looked up.
 */
async function* manifestRuns(
  deps: Stores,
  input: string,
  at: ListingCursor,
  room: () => number,
  budget: InputBudget,
  hidden?: HiddenFiles,
): AsyncGenerator<ManifestRun> {
  const where = manifestLocation(input);
  if (!where.startsWith("s3://")) throw notS3(where);
  const { bucket, key } = parseS3Uri(where);
  refuseOtherBucket(deps, bucket, where);
  const inS3 = <T>(b: string, k: string, p: Promise<T>): Promise<T> =>
    p.catch((err: unknown) => {
      const e = toCloudmillError(err);
      throw e.code === ErrorCode.ENVIRONMENT ? e : new CloudmillError(e.code, e.message, { input: s3Uri(b, k) });
    });
  const store = deps.inputStore(bucket);
  const info = await inS3(bucket, key, store.head(key));
  if (!info) throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, `${where} does not exist`, { input: where });
  const begun = at.manifest;
  if (begun && begun.etag !== info.etag)
    throw new CloudmillError(
      ErrorCode.INPUT_CHANGED,
      "the manifest was changed while its inputs were listed; upload the job spec again to list them afresh",
      { input: where },
    );
  const { etag } = info;
  const range: ReadRange = (start, end) => inS3(bucket, key, readBytes(store, key, undefined, { start, end, etag }));
  // A file of one window is read once, for both passes.
  const small = info.size <= MANIFEST_WINDOW ? await range(0, info.size) : undefined;
  const read: ReadRange = small ? async (start, end) => small.subarray(start, end) : range;
  let taken = at.taken;
  /** Resolves `batch`, `lines` long, and tells where the reading stands after it. */
  const runOf = async <T>(batch: T[], lines: number, to: ManifestPosition, resolve: (x: T) => Promise<InputObject[]>) => {
    const inputs = (await mapInOrder(batch, MANIFEST_CONCURRENCY, resolve)).flat();
    taken += inputs.length;
    return { inputs, lines, taken, to };
  };
  const kind = manifestKind(where);
  if (kind === "inventory") {
    yield* inventoryRuns(
      deps,
      where,
      (await read(0, info.size)).toString("utf8"),
      { etag, line: 0, ...begun },
      room,
      runOf,
      budget,
      hidden,
    );
    if (taken === 0) throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, "the inventory lists no current objects", { input: where });
    return;
  }
  const csv = kind === "batch-csv";
  const entryOf = (l: { line: number; row: string; at: number }): ListedEntry | ListedObject | undefined =>
    csv ? batchCsvObjectOf(l.line, l.row, l.at, where) : listEntryOf(l.line, l.row);
  if (!begun) {
    // Each line is at least one input: a list that is too long is refused before any is looked up.
    let entries = 0;
    for await (const l of manifestLines(read, info.size, where, FILE_START)) {
      if (entryOf(l) !== undefined) entries++;
      if (entries > budget.room) break;
    }
    budget.expect(entries, where);
    if (entries === 0) throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, "the manifest lists no inputs", { input: where });
  }
  const resolveEntry = async (entry: ListedEntry | ListedObject): Promise<InputObject[]> => {
    if ("bucket" in entry) return resolveListed(deps, where, entry, false, budget);
    const { line, text } = entry;
    if (isManifestInput(text))
      throw new CloudmillError(ErrorCode.INVALID_SPEC, "a manifest may not list manifests", { input: where, line });
    const uri = text.startsWith("s3://") ? text : s3Uri(bucket, text);
    return resolveUri(deps, uri, budget, hidden).catch((err: unknown) => {
      throw atLine(err, where, line, shownEntry(uri));
    });
  };
  let from: LinePosition = begun ? { at: begun.at ?? 0, line: begun.line } : FILE_START;
  let batch: (ListedEntry | ListedObject)[] = [];
  let lines = 0;
  let limit = Math.min(room(), MANIFEST_RUN);
  for await (const l of manifestLines(read, info.size, where, from)) {
    const entry = entryOf(l);
    if (entry !== undefined) batch.push(entry);
    lines++;
    from = { at: l.next, line: l.line };
    if (lines >= limit) {
      yield await runOf(batch, lines, { etag, line: from.line, at: from.at }, resolveEntry);
      batch = [];
      lines = 0;
      limit = Math.min(room(), MANIFEST_RUN);
    }
  }
  if (lines > 0) yield await runOf(batch, lines, { etag, line: from.line, at: from.at }, resolveEntry);
}

type RunOf = <T>(batch: T[], lines: number, to: ManifestPosition, resolve: (x: T) => Promise<InputObject[]>) => Promise<ManifestRun>;

/**
 * An S3 Inventory report's objects from `begun` on: one data file at a time, its rows taken as
 * they are decoded (memory holds the file's compressed bytes and a run of rows), and the limit
 * met as it is reached. A data file cannot be read from a row on: one that a later invocation
 * goes on in is decoded again from its start, its rows up to `begun.line` skipped.
 */
async function* inventoryRuns(
  deps: Stores,
  where: string,
  json: string,
  begun: ManifestPosition,
  room: () => number,
  runOf: RunOf,
  budget: InputBudget,
  hidden?: HiddenFiles,
): AsyncGenerator<ManifestRun> {
  const report = inventoryReport(json, where);
  refuseOtherBucket(deps, report.bucket, where);
  const { etag } = begun;
  for (let f = begun.file ?? 0; f < report.files.length; f++) {
    const name = report.files[f]!;
    const dataFile = s3Uri(report.bucket, name);
    const gzipped = await readBytes(deps.inputStore(report.bucket), name).catch((err: unknown) => {
      const e = toCloudmillError(err);
      throw e.code === ErrorCode.ENVIRONMENT ? e : new CloudmillError(e.code, e.message, { input: dataFile });
    });
    const skip = f === begun.file ? begun.line : 0;
    const resolve = (o: ListedObject) => resolveListed(deps, dataFile, o, true, budget, hidden);
    let batch: ListedObject[] = [];
    let line = skip;
    let limit = Math.min(room(), MANIFEST_RUN);
    for await (const listed of inventoryObjects(gzipped, report.columns, dataFile)) {
      if (listed.line <= skip) continue;
      batch.push(listed);
      line = listed.line;
      if (batch.length >= limit) {
        yield await runOf(batch, batch.length, { etag, line, file: f }, resolve);
        batch = [];
        limit = Math.min(room(), MANIFEST_RUN);
      }
    }
    if (batch.length > 0) yield await runOf(batch, batch.length, { etag, line, file: f }, resolve);
  }
}

/** The objects the URIs name; `hidden` gets what their prefixes' listings left out (hiddenNames.ts). */
export const resolveS3Inputs = async (deps: Stores, uris: readonly string[], hidden?: HiddenFiles): Promise<InputObject[]> => {
  const out: InputObject[] = [];
  const budget = new InputBudget(deps.maxInputs ?? DEFAULTS.maxInputs);
  for await (const piece of inputPieces(deps, uris, LISTING_START, budget, Number.POSITIVE_INFINITY, hidden)) appendAll(out, piece.inputs);
  return out;
};
