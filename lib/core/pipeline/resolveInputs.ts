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
  batchCsvObjects,
  inventoryObjects,
  inventoryReport,
  isManifestInput,
  listEntries,
  shownEntry,
  manifestKind,
  manifestLocation,
  type ListedObject,
} from "./inputManifests.js";

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

/** HEAD requests (and reads of inventory data files) at once while a manifest is resolved. */
const MANIFEST_CONCURRENCY = 32;
/** Inventory rows resolved at a time. */
const INVENTORY_BATCH = 4096;

const notS3 = (uri: string, field = "inputs"): CloudmillError =>
  new CloudmillError(ErrorCode.INVALID_SPEC, `inputs of a job in the cloud must be s3:// URIs, got ${JSON.stringify(uri)}`, { field });

/**
 * Where a listing of a job's inputs stands: at `uris[uri]`, of which `taken` inputs are had;
 * inside a prefix, `after` its last key seen (taken or left out) and `hiddenHere` the first it
 * left out. A listing resumed from a cursor (listing.ts) goes on exactly where it stopped.
 */
export interface ListingCursor {
  readonly uri: number;
  readonly taken: number;
  readonly after?: string;
  readonly hiddenHere?: string;
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
});

/** A prefix whose listing found no input. */
const noInputUnder = (uri: string, hiddenHere: string | undefined): CloudmillError =>
  hiddenHere !== undefined
    ? new CloudmillError(ErrorCode.INPUT_NOT_FOUND, onlyHidden(hiddenHere), { input: uri })
    : new CloudmillError(ErrorCode.INPUT_NOT_FOUND, "no such object or prefix", { input: uri });

/**
 * The inputs of `uris` from cursor `from`, in pieces of at most `perPiece` inputs (and of at
 * most `perPiece` listed keys, so that a prefix of hidden files is cut too). A prefix is listed
 * from the key the cursor names; an object or a manifest is resolved whole, its first `taken`
 * inputs dropped. The last piece's `to` is undefined.
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
    const whole = at.after !== undefined ? undefined : await resolveWhole(deps, uri, budget, hidden);
    if (whole) {
      // An object or a manifest: its inputs as pieces, the cursor counting those had.
      let taken = at.taken;
      while (taken < whole.length) {
        const room = perPiece - piece.length;
        appendAll(piece, whole.slice(taken, taken + room));
        taken = Math.min(whole.length, taken + room);
        if (piece.length >= perPiece) yield cutHere(taken < whole.length ? { uri: u, taken } : { uri: u + 1, taken: 0 });
      }
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

/** Whether a listing may stop at `to`: not inside an input resolved whole (a manifest), which would be resolved again. */
export const stopsCleanly = (to: ListingCursor | undefined): boolean => to === undefined || to.after !== undefined || to.taken === 0;

/**
 * An object URI as its one input, a manifest as every input it lists; undefined for a prefix
 * (a URI that names no object), which is listed a piece at a time.
 */
const resolveWhole = async (deps: Stores, uri: string, budget: InputBudget, hidden?: HiddenFiles): Promise<InputObject[] | undefined> => {
  if (isManifestInput(uri)) return resolveManifest(deps, uri, budget, hidden);
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

/** Every input a manifest in S3 lists, in its order. */
const resolveManifest = async (deps: Stores, input: string, budget: InputBudget, hidden?: HiddenFiles): Promise<InputObject[]> => {
  const where = manifestLocation(input);
  if (!where.startsWith("s3://")) throw notS3(where);
  const { bucket, key } = parseS3Uri(where);
  refuseOtherBucket(deps, bucket, where);
  const read = (b: string, k: string): Promise<Buffer> =>
    readBytes(deps.inputStore(b), k).catch((err: unknown) => {
      const e = toCloudmillError(err);
      throw e.code === ErrorCode.ENVIRONMENT ? e : new CloudmillError(e.code, e.message, { input: s3Uri(b, k) });
    });
  const file = await read(bucket, key);
  const flat = (lists: InputObject[][]): InputObject[] => {
    const all = lists.flat();
    if (all.length === 0) throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, "the manifest lists no inputs", { input: where });
    return all;
  };
  switch (manifestKind(where)) {
    case "list": {
      // Each line is at least one input: a list that is too long is refused before any is looked up.
      const entries = listEntries(file, where, budget.room);
      budget.expect(entries.length, where);
      return flat(
        await mapInOrder(entries, MANIFEST_CONCURRENCY, async ({ line, text: entry }) => {
          if (isManifestInput(entry))
            throw new CloudmillError(ErrorCode.INVALID_SPEC, "a manifest may not list manifests", { input: where, line });
          const uri = entry.startsWith("s3://") ? entry : s3Uri(bucket, entry);
          return resolveUri(deps, uri, budget, hidden).catch((err: unknown) => {
            throw atLine(err, where, line, shownEntry(uri));
          });
        }),
      );
    }
    case "batch-csv": {
      const objects = batchCsvObjects(file, where, budget.room);
      budget.expect(objects.length, where);
      return flat(await mapInOrder(objects, MANIFEST_CONCURRENCY, (o) => resolveListed(deps, where, o, false, budget)));
    }
    case "inventory": {
      const report = inventoryReport(file.toString("utf8"), where);
      refuseOtherBucket(deps, report.bucket, where);
      const out: InputObject[] = [];
      // One data file at a time, its rows taken as they are decoded: memory holds the file's
      // compressed bytes and a batch of rows beside the list, and the limit is met as it is reached.
      for (const name of report.files) {
        const dataFile = s3Uri(report.bucket, name);
        let batch: ListedObject[] = [];
        const resolveBatch = async (): Promise<void> => {
          for (const listed of await mapInOrder(batch, MANIFEST_CONCURRENCY, (o) => resolveListed(deps, dataFile, o, true, budget, hidden)))
            appendAll(out, listed);
          batch = [];
        };
        for await (const listed of inventoryObjects(await read(report.bucket, name), report.columns, dataFile)) {
          batch.push(listed);
          if (batch.length >= INVENTORY_BATCH) await resolveBatch();
        }
        await resolveBatch();
      }
      if (out.length === 0) throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, "the inventory lists no current objects", { input: where });
      return out;
    }
  }
};

/** The objects the URIs name; `hidden` gets what their prefixes' listings left out (hiddenNames.ts). */
export const resolveS3Inputs = async (deps: Stores, uris: readonly string[], hidden?: HiddenFiles): Promise<InputObject[]> => {
  const out: InputObject[] = [];
  const budget = new InputBudget(deps.maxInputs ?? DEFAULTS.maxInputs);
  for await (const piece of inputPieces(deps, uris, LISTING_START, budget, Number.POSITIVE_INFINITY, hidden)) appendAll(out, piece.inputs);
  return out;
};
