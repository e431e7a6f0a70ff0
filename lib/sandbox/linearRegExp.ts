/**
 * Turns on V8's fallback to its linear-time regular-expression engine after excessive
 * backtracking, for this process (V8 flags are process-wide; call it in every isolate that runs
 * ops, so that isolate's pattern compiler knows). Patterns V8 cannot run linearly are run by RE2
 * (lib/core/records/linearPattern.ts), so no pattern a job gives can backtrack for ever.
 */
import v8 from "node:v8";
import { useV8LinearFallback } from "../core/records/linearPattern.js";

let done = false;

export const enableLinearRegExp = (): void => {
  if (done) return;
  done = true;
  v8.setFlagsFromString("--enable-experimental-regexp-engine");
  v8.setFlagsFromString("--enable-experimental-regexp-engine-on-excessive-backtracks");
  // Fall back early: a line that backtracks 50,000 times (V8's default) before every fallback
  // costs ~150 µs, which over a 16 MiB chunk of short lines is minutes.
  v8.setFlagsFromString("--regexp-backtracks-before-fallback=1000");
  try {
    // The `l` flag parses only with the engine on: proof the flags took in this Node.
    // biome-ignore lint/complexity/useRegexLiterals: a literal with the `l` flag would not even parse without the flag.
    new RegExp("a", "l");
  } catch {
    return;
  }
  useV8LinearFallback();
};
