/**
 * Folders and temporary files named for the process that writes them, so that a later process
 * can tell a dead one's leftovers (SIGKILL, out of memory, a second Ctrl-C run no clean-up) from a
 * live one's, and remove them: otherwise they stay on the disk for good.
 *
 * A process id means something only in its own PID namespace, and a /tmp or a folder may be
 * shared with other containers or hosts, whose processes kill(pid, 0) cannot see: names carry the
 * namespace too, and only this namespace's dead processes' leftovers are removed.
 */
import { mkdtempSync, readlinkSync } from "node:fs";
import { lstat, mkdtemp, readdir, rm } from "node:fs/promises";
import { createHash } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { fileFailure } from "./fsErrors.js";

/** Whether a process of this id is alive (one we may not signal is, too). */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** This PID namespace, as a short name: its inode on Linux, with the host's name. */
export const namespace = ((): string => {
  let ns = "";
  try {
    ns = readlinkSync("/proc/self/ns/pid");
  } catch {
    // No /proc: the host's name alone.
  }
  return createHash("sha256").update(`${os.hostname()}\0${ns}`).digest("hex").slice(0, 8);
})();

const mine = (ns: string | undefined, pid: number): boolean => ns === namespace && pid !== process.pid && !isAlive(pid);

/** Removes from `root` the folders named `<prefix><namespace>-<pid>-…` of this namespace's processes that are gone. */
export const removeDeadFolders = async (root: string, prefix: string): Promise<void> => {
  for (const name of await readdir(root).catch(() => [] as string[])) {
    if (!name.startsWith(prefix)) continue;
    const [ns, pid] = name.slice(prefix.length).split("-");
    if (!mine(ns, Number(pid))) continue;
    await rm(path.join(root, name), { recursive: true, force: true }).catch(() => undefined);
  }
};

/**
 * A new folder of this process's own under `root` (`<prefix><namespace>-<pid>-…`), once the
 * folders of this namespace's processes that are gone, named alike, are removed.
 */
export const processFolder = async (root: string, prefix: string): Promise<string> => {
  await removeDeadFolders(root, prefix);
  return mkdtemp(path.join(root, `${prefix}${namespace}-${process.pid}-`));
};

/**
 * A new folder of this process's own under `root`, named as processFolder names them, made at
 * once (no sweep: removeDeadFolders does that once per run). A failure is one line, in plain words.
 */
export const processFolderSync = (root: string, prefix: string): string => {
  try {
    return mkdtempSync(path.join(root, `${prefix}${namespace}-${process.pid}-`));
  } catch (err) {
    throw fileFailure(`cannot make a folder in ${root}`, err);
  }
};

let temps = 0;

/** A short name beside `file` to write it under before it is renamed into place, named for this process (or `pid`'s). */
export const tempFor = (file: string, pid = process.pid): string => path.join(path.dirname(file), `.cm-${namespace}-${pid}-${++temps}.tmp`);

const TEMP_NAME = /^\.cm-([0-9a-f]{8})-(\d+)-\d+\.tmp$/;

/**
 * Removes from `dir` (a folder of cloudmill's own, such as a keyed run's --out-dir, never one
 * whose names a lab chooses) the temporary files of this namespace's processes that are gone.
 */
export const removeDeadTemps = async (dir: string): Promise<void> => {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const found = TEMP_NAME.exec(name);
    if (!found || !mine(found[1], Number(found[2]))) continue;
    const file = path.join(dir, name);
    if ((await lstat(file).catch(() => undefined))?.isFile()) await rm(file, { force: true }).catch(() => undefined);
  }
};
