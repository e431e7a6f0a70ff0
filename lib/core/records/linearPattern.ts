/**
 * Patterns a job gives (grep's `pattern`) run in time linear in the line, whatever the pattern:
 * a backtracking engine takes exponential time on `^(a+)+$` against "aaa…ab", and a job's
 * parameter must never hang a worker. A pattern is accepted when RE2 (re2js, a pure-JavaScript
 * port) can express it, wherever it is parsed, so the splitter and the workers agree; it is run
 * by V8's own engine where the process has turned on V8's fallback to its linear engine after
 * excessive backtracking (lib/sandbox/linearRegExp.ts) and V8 can run it that way, else by RE2.
 */
import { RE2JS } from "re2js";
import { CloudmillError, ErrorCode } from "../errors.js";

/** A compiled pattern: whether a line holds a match. */
export interface LinePattern {
  test(line: string): boolean;
  /** Which engine runs it: V8 (with the linear fallback) or RE2. */
  readonly engine: "v8" | "re2";
}

let v8Fallback = false;

/** Called once V8's fallback to its linear engine is on in this isolate (lib/sandbox/linearRegExp.ts). */
export const useV8LinearFallback = (): void => {
  v8Fallback = true;
};

/** A pattern RE2 cannot express: backreferences and lookaround have no linear-time form. */
const refusal = (why: string): CloudmillError =>
  new CloudmillError(
    ErrorCode.INVALID_SPEC,
    `cannot run in linear time: backreferences, lookahead and lookbehind are not supported (${why})`,
    { field: "params.pattern" },
  );

/**
 * The first construct of a JavaScript pattern that has no linear-time form, if any. Found here,
 * not left to RE2's translation of JavaScript syntax, which reads `\k<n>` as the text `k<n>`.
 */
export const nonLinearConstruct = (pattern: string): string | undefined => {
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "\\") {
      const next = pattern[i + 1] ?? "";
      if (!inClass && /[1-9]/.test(next)) return `backreference \\${next} at ${i}`;
      if (!inClass && next === "k" && pattern[i + 2] === "<") return `named backreference at ${i}`;
      i++;
    } else if (inClass) {
      if (c === "]") inClass = false;
    } else if (c === "[") {
      inClass = true;
    } else if (c === "(" && pattern[i + 1] === "?") {
      const kind = pattern.slice(i + 2, i + 4);
      if (kind.startsWith("=") || kind.startsWith("!")) return `lookahead at ${i}`;
      if (kind === "<=" || kind === "<!") return `lookbehind at ${i}`;
    }
  }
  return undefined;
};

/** Compiles a JavaScript-syntax pattern for line tests; INVALID_SPEC when it is not valid or not linear. */
export const compileLinePattern = (pattern: string, ignoreCase = false, engine?: "re2"): LinePattern => {
  let js: RegExp;
  try {
    js = new RegExp(pattern, ignoreCase ? "i" : "");
  } catch (err) {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `not a valid regular expression (${(err as Error).message})`, {
      field: "params.pattern",
    });
  }
  const construct = nonLinearConstruct(pattern);
  if (construct !== undefined) throw refusal(construct);
  let re2: RE2JS;
  try {
    re2 = RE2JS.compile(RE2JS.translateRegExp(pattern), ignoreCase ? RE2JS.CASE_INSENSITIVE : 0);
  } catch (err) {
    throw refusal(`RE2: ${(err as Error).message.split("\n")[0]}`);
  }
  if (engine !== "re2" && v8Fallback && !ignoreCase && linearInV8(pattern)) return { engine: "v8", test: (line) => js.test(line) };
  return { engine: "re2", test: (line) => re2.test(line) };
};

/** Whether V8's linear engine takes the pattern (the `l` flag, on once the fallback is). */
const linearInV8 = (pattern: string): boolean => {
  try {
    new RegExp(pattern, "l");
    return true;
  } catch {
    return false;
  }
};
