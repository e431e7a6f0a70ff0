/**
 * Item threads' scratch folders in TMPDIR, named for the process that makes them
 * (`cloudmill-items-<namespace>-<pid>-…`), as its work folder is: a run that is killed leaves
 * them, and the next run removes those of processes that are gone.
 */
import os from "node:os";
import { CloudmillError } from "../core/errors.js";
import { processFolderSync, removeDeadFolders } from "../fs/processFolders.js";

const ITEMS_PREFIX = "cloudmill-items-";

/** A new scratch folder for an item thread (ThreadItemRunnerOptions.scratchRoot). */
export const itemsScratchRoot = (): string => {
  const tmp = os.tmpdir();
  try {
    return processFolderSync(tmp, ITEMS_PREFIX);
  } catch (err) {
    throw err instanceof CloudmillError
      ? new CloudmillError(err.code, `TMPDIR ${tmp}: ${err.message}`, err.context, { cause: err.cause })
      : err;
  }
};

/** Removes the scratch folders of this namespace's processes that are gone. */
export const removeDeadItemScratch = (): Promise<void> => removeDeadFolders(os.tmpdir(), ITEMS_PREFIX);
