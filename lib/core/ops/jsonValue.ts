/**
 * What a lab's op hands back travels as JSON between tasks: a value JSON would change (NaN
 * written as null, a Map as {}, a promise as {}) would make the answer depend on how the input
 * was chunked. Such a value is refused where the op returns it, naming the op and the call.
 */
import { CloudmillError, ErrorCode } from "../errors.js";

/** Why `v` is not a value JSON carries unchanged ("" when it is); `at` is its path; `path` undefined: its top only. */
const notJson = (v: unknown, at: string, path: Set<object> | undefined): string => {
  switch (typeof v) {
    case "string":
    case "boolean":
      return "";
    case "number":
      return Number.isFinite(v) ? "" : `${at} is ${v}`;
    case "undefined":
      return `${at} is undefined`;
    case "bigint":
      return `${at} is a BigInt (${v}n)`;
    case "function":
    case "symbol":
      return `${at} is a ${typeof v}`;
  }
  if (v === null) return "";
  const o = v as object;
  if (typeof (o as { then?: unknown }).then === "function") return `${at} is a promise (op code runs synchronously)`;
  if (path?.has(o)) return `${at} refers back to itself`;
  const proto = Object.getPrototypeOf(o) as unknown;
  const isArray = Array.isArray(o);
  if (!isArray && proto !== Object.prototype && proto !== null) {
    const kind = (o as { constructor?: { name?: unknown } }).constructor?.name;
    return `${at} is a${typeof kind === "string" && kind ? ` ${kind}` : "n object of a class"}, not a plain object or array`;
  }
  if (!path) return "";
  path.add(o);
  try {
    if (isArray) {
      for (let i = 0; i < (o as unknown[]).length; i++) {
        const why = notJson((o as unknown[])[i], `${at}[${i}]`, path);
        if (why) return why;
      }
    } else {
      for (const [k, x] of Object.entries(o)) {
        // A field that is undefined is left out, and reads as undefined again.
        if (x === undefined) continue;
        const why = notJson(x, `${at}.${k}`, path);
        if (why) return why;
      }
    }
  } finally {
    path.delete(o);
  }
  return "";
};

/** Why `v` is not a value JSON carries unchanged, naming the part of it (`at`) that is not; "" when it is. */
export const whyNotJson = (v: unknown, at = "the value"): string => notJson(v, at, new Set());

/**
 * Returns `v` when JSON carries it unchanged; otherwise throws, naming the op and what gave the
 * value (`what`: "map", "combine", "emit for key \"a\""). `undefined` is refused only inside
 * an array. `deep` false: only the value's top is looked at (a combine's, on every call).
 */
export const jsonValueOf = <T>(op: string, what: string | (() => string), v: T, deep = true): T => {
  if (v === undefined || v === null || typeof v === "string" || typeof v === "boolean") return v;
  if (typeof v === "number" && Number.isFinite(v)) return v;
  const why = notJson(v, "the value", deep ? new Set() : undefined);
  if (why === "") return v;
  throw new CloudmillError(
    ErrorCode.OP_FAILED,
    `op ${op}: ${typeof what === "string" ? what : what()}: ${why}, which JSON cannot carry (partials and values must be JSON values)`,
  );
};
