/**
 * Folders and temporary files named for the process that writes them, so that a later process
 * can tell a dead one's leftovers (SIGKILL, out of memory, a second Ctrl-C run no clean-up) from a
 * live one's, and remove them: otherwise they stay on the disk for good.
 */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import path from "node:path";

/** Whether a process of this id is alive (one we may not signal is, too). */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

const escaped = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * A new folder of this process's own under `root` (`<prefix><pid>-…`), once the folders of
 * processes that are gone, named alike, are removed.
 */
export const processFolder = async (root: string, prefix: string): Promise<string> => {
  const named = new RegExp(`^${escaped(prefix)}(\\d+)-`);
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const pid = Number(named.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid === process.pid || isAlive(pid)) continue;
    await rm(path.join(root, name), { recursive: true, force: true }).catch(() => undefined);
  }
  return mkdtemp(path.join(root, `${prefix}${process.pid}-`));
};

/** Where `file` is written before it is renamed into place, named for this process. */
export const tempFor = (file: string): string => path.join(path.dirname(file), `.${path.basename(file)}.cloudmill-${process.pid}.tmp`);

/** A temporary file of tempFor's, and an output part's as earlier versions named it (`.part-00000.txt.<pid>.tmp`). */
const TEMP_NAME = /^\..+\.cloudmill-(\d+)\.tmp$|^\.part-\d{5,}\.(?:jsonl|txt)\.(\d+)\.tmp$/;

/** Removes from `dir` the temporary files of processes that are gone. */
export const removeDeadTemps = async (dir: string): Promise<void> => {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const found = TEMP_NAME.exec(name);
    const pid = Number(found?.[1] ?? found?.[2]);
    if (found && pid !== process.pid && !isAlive(pid)) await rm(path.join(dir, name), { force: true, recursive: true });
  }
};
