/**
 * A folder one process writes at a time: a lock file in it, made with O_EXCL, naming the
 * process (pid and PID namespace) that holds it. A lock whose process is gone (killed before it
 * could release it) is taken over; one of a live process, or of another namespace's (whose
 * processes this one cannot see), is not.
 */
import { link, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { isAlive, namespace, tempFor } from "./processFolders.js";

/** The lock file's name in its folder: hidden, so that a folder read as input leaves it out. */
export const LOCK_NAME = ".cloudmill-lock";

/** Who holds a folder's lock. */
export interface LockHolder {
  readonly pid: number;
  readonly namespace: string;
}

export type Locked = { readonly release: () => Promise<void> } | { readonly heldBy: LockHolder | undefined };

/** What a lock file says: `{"pid":123,"namespace":"c2ef8667"}`. */
export const lockText = (holder: LockHolder): string => `${JSON.stringify({ pid: holder.pid, namespace: holder.namespace })}\n`;

const holderIn = (text: string | undefined): LockHolder | undefined => {
  try {
    const v = JSON.parse(text ?? "") as Partial<LockHolder>;
    return typeof v.pid === "number" && typeof v.namespace === "string" ? { pid: v.pid, namespace: v.namespace } : undefined;
  } catch {
    return undefined;
  }
};

/** Most takeovers of a stale lock one call tries before it reports the folder held. */
const TAKEOVERS = 8;

/**
 * Takes `dir`'s lock for this process. Resolves with its release, or with who holds it (undefined:
 * a lock file that names no process, which is never taken over). Fails as the filesystem does.
 */
export const lockFolder = async (dir: string): Promise<Locked> => {
  const file = path.join(dir, LOCK_NAME);
  const mine = lockText({ pid: process.pid, namespace });
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(file, mine, { flag: "wx" });
      return { release: () => release(file, mine) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
        // Made, but not written whole (a disk full): a lock that names no one would hold the folder for good.
        await rm(file, { force: true }).catch(() => undefined);
        throw err;
      }
    }
    const seen = await readFile(file, "utf8").catch(() => undefined);
    // Released meanwhile: try again.
    if (seen === undefined) continue;
    const holder = holderIn(seen);
    if (!holder || holder.namespace !== namespace || isAlive(holder.pid) || attempt >= TAKEOVERS) return { heldBy: holder };
    await takeOver(file, seen);
  }
};

/**
 * Moves a dead process's lock aside and removes it. Two processes may both find it stale: the
 * second may move aside the lock the first has just taken, which it then puts back (link fails
 * rather than replace a lock taken meanwhile), and finds it held.
 */
const takeOver = async (file: string, stale: string): Promise<void> => {
  const aside = tempFor(file);
  try {
    await rename(file, aside);
  } catch {
    return;
  }
  if ((await readFile(aside, "utf8").catch(() => undefined)) !== stale) await link(aside, file).catch(() => undefined);
  await rm(aside, { force: true });
};

/** Removes the lock if it is still this process's. */
const release = async (file: string, mine: string): Promise<void> => {
  if ((await readFile(file, "utf8").catch(() => undefined)) === mine) await rm(file, { force: true });
};
