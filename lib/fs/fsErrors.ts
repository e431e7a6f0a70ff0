/** A filesystem call's failure as cloudmill tells it: what it was doing, and why, in plain words. */
import { getSystemErrorMap } from "node:util";
import { CloudmillError, ErrorCode } from "../core/errors.js";

/** Failures that trying again on this machine would meet again, whichever file is written. */
const LASTING = new Set(["ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM"]);

/** The system's error name: ENOSPC (Node's rm says ERR_FS_EISDIR, with EISDIR in its info). */
const errnoOf = (err: unknown): string | undefined => {
  const e = err as (NodeJS.ErrnoException & { info?: { code?: unknown } }) | undefined;
  const code = typeof e?.info?.code === "string" ? e.info.code : e?.code;
  return typeof code === "string" ? code : undefined;
};

let words: Map<string, string> | undefined;

/** libuv's words for each error name: ENOSPC → "no space left on device". */
const wordsFor = (code: string): string | undefined => {
  words ??= new Map([...getSystemErrorMap().values()].map(([name, text]) => [name, text]));
  return words.get(code);
};

/** Why a filesystem call failed, in plain words: "no space left on device (ENOSPC)"; else its message. */
export const plainCause = (err: unknown): string => {
  const code = errnoOf(err);
  const text = code === undefined ? undefined : wordsFor(code);
  if (text !== undefined) return `${text} (${code})`;
  return err instanceof Error ? err.message : String(err);
};

/** Whether the same call would fail again here: a disk full, read-only, over quota, not ours to write. */
export const isLasting = (err: unknown): boolean => LASTING.has(errnoOf(err) ?? "");

/** Characters of `what` an error line keeps: a path may be as long as a manifest's line. */
const MAX_WHAT = 400;

/** `what`, its middle cut out past MAX_WHAT characters: the call and the path's start and end stay. */
const shortened = (what: string): string =>
  what.length <= MAX_WHAT ? what : `${what.slice(0, MAX_WHAT / 2)}…(${what.length - MAX_WHAT} characters)…${what.slice(-MAX_WHAT / 2)}`;

/**
 * An ENVIRONMENT error of one line, `<what>: <cause in plain words>` (e.g. `cannot write
 * /out/part-00000.txt: no space left on device (ENOSPC)`), marked lasting when it would recur.
 * A CloudmillError passes as it is.
 */
export const fileFailure = (what: string, err: unknown): CloudmillError =>
  err instanceof CloudmillError
    ? err
    : new CloudmillError(ErrorCode.ENVIRONMENT, `${shortened(what)}: ${plainCause(err)}`, isLasting(err) ? { lasting: true } : {}, {
        cause: err,
      });
