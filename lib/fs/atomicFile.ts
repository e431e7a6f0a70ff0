/** Whole-file writes that readers never see half done. */
import { randomBytes } from "node:crypto";
import { rename, unlink, writeFile } from "node:fs/promises";
import path from "node:path";

/** Names of the temporary files writeFileAtomically leaves while it writes: `.cmtmp-<16 hex>`. */
export const ATOMIC_TEMP_NAME = /^\.cmtmp-[0-9a-f]{16}$/;

/**
 * Writes beside `file` under a temporary name, then renames: rename(2) is atomic, so readers
 * see the old file or the new one, never a mix. On failure the temporary file is removed.
 */
export const writeFileAtomically = async (file: string, body: Uint8Array | string | AsyncIterable<Uint8Array>): Promise<void> => {
  const temp = path.join(path.dirname(path.resolve(file)), `.cmtmp-${randomBytes(8).toString("hex")}`);
  try {
    await writeFile(temp, body);
    await rename(temp, file);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
};
