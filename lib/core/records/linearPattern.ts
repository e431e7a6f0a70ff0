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
    `not supported (${why}): patterns run in linear time, without backreferences or lookaround, in JavaScript's syntax`,
    { field: "params.pattern" },
  );

/**
 * The first construct of a JavaScript pattern that has no linear-time form, if any. Found here,
 * not left to RE2's translation of JavaScript syntax, which reads `\k<n>` as the text `k<n>`.
 */
export const nonLinearConstruct = (pattern: string): string | undefined => scan(pattern).refused;

/** What JavaScript's `\s` matches (and RE2's does not all of): its whitespace and line terminators. */
const JS_SPACE = "\\t\\n\\v\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}";
/** What JavaScript's `.` matches without the `s` flag: anything but its line terminators. */
const JS_DOT = "[^\\n\\r\\x{2028}\\x{2029}]";
/** Letter escapes JavaScript gives a meaning; any other (`\A`, `\p`, `\z`) is the letter itself there and something else in RE2. */
const JS_LETTER_ESCAPES = new Set(["d", "D", "w", "W", "s", "S", "b", "B", "n", "r", "t", "v", "f", "c", "x", "u"]);

/**
 * One pass over a JavaScript pattern: the first construct refused (no linear-time form, or read
 * otherwise by RE2), and the pattern rewritten in RE2 syntax with JavaScript's meaning of `.`,
 * `\s` and `\S` (RE2's leave out no-break and other Unicode spaces, and its `.` takes `\r`).
 */
const scan = (pattern: string): { refused?: string; re2: string } => {
  let out = "";
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "\\") {
      const next = pattern[i + 1] ?? "";
      if (!inClass && /[1-9]/.test(next)) return { refused: `backreference \\${next} at ${i}`, re2: out };
      if (!inClass && next === "k" && pattern[i + 2] === "<") return { refused: `named backreference at ${i}`, re2: out };
      if (/[A-Za-z]/.test(next) && !JS_LETTER_ESCAPES.has(next))
        return { refused: `escape \\${next} at ${i}, read otherwise by RE2`, re2: out };
      if (next === "u" && pattern[i + 2] === "{") return { refused: `escape \\u{ at ${i}, read otherwise by RE2`, re2: out };
      // Without its digits (or letter) JavaScript reads the escape as the letter itself (\x{2} is
      // "xx"), where RE2 reads \x{2} as U+0002: the two engines must never disagree.
      if (
        (next === "x" && !/^[0-9a-f]{2}$/i.test(pattern.slice(i + 2, i + 4))) ||
        (next === "u" && !/^[0-9a-f]{4}$/i.test(pattern.slice(i + 2, i + 6))) ||
        (next === "c" && !/^[A-Za-z]$/.test(pattern[i + 2] ?? ""))
      )
        return {
          refused: `escape \\${next} at ${i} without its ${next === "c" ? "letter" : "hex digits"}, read otherwise by RE2`,
          re2: out,
        };
      // An escaped surrogate pair is one character past U+FFFF in JavaScript; RE2 reads code points.
      const pair = /^\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})/i.exec(pattern.slice(i, i + 12));
      if (pair) {
        const cp = 0x10000 + ((Number.parseInt(pair[1]!, 16) - 0xd800) << 10) + (Number.parseInt(pair[2]!, 16) - 0xdc00);
        out += `\\x{${cp.toString(16)}}`;
        i += 11;
        continue;
      }
      if (next === "s") out += inClass ? JS_SPACE : `[${JS_SPACE}]`;
      else if (next === "S") {
        if (inClass) return { refused: `\\S inside a class at ${i}`, re2: out };
        out += `[^${JS_SPACE}]`;
      } else out += c + next;
      i++;
    } else if (inClass) {
      if (c === "[" && pattern[i + 1] === ":") return { refused: `[: inside a class at ${i}, a POSIX class in RE2`, re2: out };
      if (c === "]") inClass = false;
      out += c;
    } else if (c === "[") {
      inClass = true;
      out += c;
      // A leading `]` or `^]` is a character of the class in RE2 but closes an empty class in JavaScript.
      if (pattern[i + 1] === "]" || (pattern[i + 1] === "^" && pattern[i + 2] === "]")) return { refused: `empty class at ${i}`, re2: out };
    } else if (c === ".") {
      out += JS_DOT;
    } else {
      if (c === "(" && pattern[i + 1] === "?") {
        const kind = pattern.slice(i + 2, i + 4);
        if (kind.startsWith("=") || kind.startsWith("!")) return { refused: `lookahead at ${i}`, re2: out };
        if (kind === "<=" || kind === "<!") return { refused: `lookbehind at ${i}`, re2: out };
      }
      out += c;
    }
  }
  return { re2: out };
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
  const scanned = scan(pattern);
  if (scanned.refused !== undefined) throw refusal(scanned.refused);
  let re2: RE2JS;
  try {
    re2 = RE2JS.compile(RE2JS.translateRegExp(scanned.re2), ignoreCase ? RE2JS.CASE_INSENSITIVE : 0);
  } catch (err) {
    throw refusal(`RE2: ${(err as Error).message.split("\n")[0]}`);
  }
  const byRe2 = (line: string): boolean => re2.test(line);
  if (engine !== "re2" && v8Fallback && !ignoreCase && linearInV8(pattern))
    // V8 without the `u` flag (its linear engine has none) reads a character past U+FFFF as two:
    // `^.$` would miss "😀" that RE2 matches. Lines holding one go to RE2, so every engine agrees.
    return { engine: "v8", test: (line) => (ASTRAL.test(line) ? byRe2(line) : js.test(line)) };
  return { engine: "re2", test: byRe2 };
};

/** A UTF-16 surrogate: the text holds a character past U+FFFF (text decoded from UTF-8 holds no lone one). */
const ASTRAL = /[\uD800-\uDFFF]/;

/** Whether V8's linear engine takes the pattern (the `l` flag, on once the fallback is). */
const linearInV8 = (pattern: string): boolean => {
  try {
    new RegExp(pattern, "l");
    return true;
  } catch {
    return false;
  }
};
