/**
 * A folder one process writes at a time: a lock file in it, made with O_EXCL, naming the
 * process (pid and PID namespace) that holds it. A lock whose process is gone (killed before it
 * could release it) is taken over; one of a live process, or of another namespace's (whose
 * processes this one cannot see), is not.
 */
import { randomBytes } from "node:crypto";
import { link, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { isAlive, namespace, removeDeadFolders } from "./processFolders.js";

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

/** How long one call waits, in all, for other processes' takeovers before it reports the folder held. */
const TAKEOVER_WAIT_MS = 2000;

/**
 * A takeover guard whose process cannot be checked (another namespace's, or one naming no
 * process) is broken once older than this: a takeover takes milliseconds. One of this namespace
 * is broken only once its process is gone, however old: a process paused (Ctrl-Z) during its
 * takeover, resumed, would otherwise remove the lock of the run that took the folder meanwhile.
 */
const GUARD_MAX_AGE_MS = 10_000;

/** Guards of guards deep at most: each level is there only if a process was killed inside the level below's takeover. */
const GUARD_DEPTH = 4;

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Whether a lock names a process of this namespace that is gone. */
const isStale = (text: string | undefined): boolean => {
  const holder = holderIn(text);
  return holder !== undefined && holder.namespace === namespace && !isAlive(holder.pid);
};

/** A lock's or a guard's text; undefined if there is none, empty (naming no one) if it cannot be read. */
const readLock = (file: string): Promise<string | undefined> =>
  readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? undefined : ""));

/** The files a lock or a guard is written whole in, in its folder, before it is linked to its name: `<prefix><namespace>-<pid>-<hex>`. */
const NEW_PREFIX = `${LOCK_NAME}.new-`;

/** Errors of a filesystem that makes no hard links: the file is made under its name then, and written after. */
const NO_LINKS = new Set(["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"]);

/**
 * Makes `file` holding `text`, only if there is none: false if there is one. Fails as the
 * filesystem does. The text is written whole in a file of its own, then linked to the name: a
 * file made with O_EXCL and written after would be read empty meanwhile, a lock naming no one,
 * and a live run's folder reported as held by none.
 */
const create = async (file: string, text: string): Promise<boolean> => {
  const temp = path.join(path.dirname(file), `${NEW_PREFIX}${namespace}-${process.pid}-${randomBytes(8).toString("hex")}`);
  try {
    await writeFile(temp, text, { flag: "wx" });
    try {
      await link(temp, file);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "";
      if (code === "EEXIST") return false;
      if (NO_LINKS.has(code)) return await createInPlace(file, text);
      throw err;
    }
  } finally {
    await rm(temp, { force: true }).catch(() => undefined);
  }
};

/** Makes `file` with O_EXCL, then writes `text` in it: where no hard link can be made. */
const createInPlace = async (file: string, text: string): Promise<boolean> => {
  try {
    await writeFile(file, text, { flag: "wx" });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    // Made, but not written whole (a disk full): a lock that names no one would hold the folder for good.
    await rm(file, { force: true }).catch(() => undefined);
    throw err;
  }
};

/**
 * Takes `dir`'s lock for this process. Resolves with its release, or with who holds it (undefined:
 * a lock file that names no process, which is never taken over). Fails as the filesystem does.
 *
 * A lock whose process is gone is taken over under a guard, `<lock>.takeover`, made with O_EXCL:
 * only its holder removes a lock it did not make, and only once it has read it again under the
 * guard and found it still the same dead process's. The live lock's name is never moved aside,
 * so a run that holds it keeps it whatever other runs find meanwhile.
 */
export const lockFolder = async (dir: string): Promise<Locked> => {
  const file = path.join(dir, LOCK_NAME);
  const mine = lockText({ pid: process.pid, namespace });
  const taken: Locked = { release: () => release(file, mine) };
  // What processes killed while they took it left: they would stay in the folder for good.
  const tidied = async (): Promise<Locked> => {
    await clearAbandonedGuards(`${file}.takeover`);
    await removeDeadFolders(dir, NEW_PREFIX);
    return taken;
  };
  const giveUp = Date.now() + TAKEOVER_WAIT_MS;
  for (;;) {
    if (await create(file, mine)) return tidied();
    const seen = await readLock(file);
    // Released meanwhile: try again.
    if (seen === undefined) continue;
    if (!isStale(seen) || Date.now() > giveUp) return { heldBy: holderIn(seen) };
    const took = await guarded(`${file}.takeover`, async () => {
      const now = await readLock(file);
      if (now !== undefined && (now !== seen || !isStale(now))) return false;
      await rm(file, { force: true });
      return create(file, mine);
    });
    if (took) return tidied();
    // Another process's takeover is under way: its lock, or the dead one's still, is read again.
    if (took === undefined) await pause(5);
  }
};

/**
 * Runs `body` holding `guard` (made with O_EXCL, naming this process), then removes it. Resolves
 * undefined without running it when another process holds the guard, breaking it first if it is
 * abandoned (see breakGuard).
 */
const guarded = async <T>(guard: string, body: () => Promise<T>, depth = 0): Promise<T | undefined> => {
  // A token of its own: a guard's text is never another's, even one of a reused pid.
  const mine = `${JSON.stringify({ pid: process.pid, namespace, token: randomBytes(8).toString("hex") })}\n`;
  if (!(await create(guard, mine))) {
    const seen = await readLock(guard);
    if (seen !== undefined) await breakGuard(guard, seen, depth);
    return undefined;
  }
  try {
    return await body();
  } finally {
    if ((await readLock(guard)) === mine) await rm(guard, { force: true });
  }
};

/**
 * Removes `guard`, read as `seen`, if it is abandoned: under a guard of its own, once read again
 * and found the same, so that two processes breaking it at once cannot remove a third's new one.
 * Resolves whether it was abandoned.
 */
const breakGuard = async (guard: string, seen: string, depth: number): Promise<boolean> => {
  if (depth >= GUARD_DEPTH || !(await abandoned(guard, seen))) return false;
  await guarded(
    `${guard}.takeover`,
    async () => {
      if ((await readLock(guard)) === seen) await rm(guard, { force: true });
    },
    depth + 1,
  );
  return true;
};

/**
 * Removes the takeover guards, and guards of guards, that processes killed during a takeover
 * left (one killed between removing the dead lock and taking it leaves its guard with no lock).
 * Each is tried a few times: breaking one may first need breaking the guard above it.
 */
const clearAbandonedGuards = async (first: string): Promise<void> => {
  let guard = first;
  for (let depth = 0; depth < GUARD_DEPTH; depth++, guard = `${guard}.takeover`)
    for (let tries = 0; tries <= GUARD_DEPTH; tries++) {
      const seen = await readLock(guard);
      if (seen === undefined || !(await breakGuard(guard, seen, depth))) break;
    }
};

/**
 * Whether a guard that reads `text` is abandoned: left by a process of this namespace that is
 * gone, or, when whose it is cannot be checked (another namespace, no process named), older than
 * any takeover takes.
 */
const abandoned = async (guard: string, text: string): Promise<boolean> => {
  const holder = holderIn(text);
  if (holder?.namespace === namespace) return !isAlive(holder.pid);
  const made = await stat(guard).catch(() => undefined);
  return made !== undefined && Date.now() - made.mtimeMs > GUARD_MAX_AGE_MS;
};

/** Removes the lock if it is still this process's. */
const release = async (file: string, mine: string): Promise<void> => {
  if ((await readFile(file, "utf8").catch(() => undefined)) === mine) await rm(file, { force: true });
};
