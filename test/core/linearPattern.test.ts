/**
 * Patterns from a job run in linear time: the classic exponential-backtracking cases end at
 * once on long inputs, with both engines; RE2 agrees with JavaScript's RegExp on random patterns
 * and lines wherever both accept the pattern; what RE2 cannot express is refused in one line.
 */
import { execFileSync } from "node:child_process";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { CloudmillError } from "../../lib/core/errors.js";
import { compileLinePattern } from "../../lib/core/records/linearPattern.js";
import { grep } from "../../lib/core/ops/grep.js";
import { enableLinearRegExp } from "../../lib/sandbox/linearRegExp.js";

beforeAll(() => enableLinearRegExp());

/** Patterns that take a backtracking engine exponential time on the input beside them, and the true answer. */
const EVIL: readonly [pattern: string, line: string, matches: boolean][] = [
  ["^(a+)+$", `${"a".repeat(5000)}b`, false],
  ["^(a|aa)+$", `${"a".repeat(5000)}b`, false],
  ["^(a|a?)+$", `${"a".repeat(5000)}b`, false],
  ["^(\\w+\\s?)*$", `${"word ".repeat(2000)}!`, false],
  ["(x+x+)+y", "x".repeat(5000), false],
  ["^(a+)+$", "a".repeat(5000), true],
];

describe("a pattern from a job", () => {
  it.each(EVIL)("%s ends at once on a long line, with V8's linear fallback and with RE2", (pattern, line, matches) => {
    expect(compileLinePattern(pattern).test(line)).toBe(matches);
    expect(compileLinePattern(pattern, false, "re2").test(line)).toBe(matches);
    expect(compileLinePattern(pattern, true).test(line.toUpperCase())).toBe(matches);
  });

  it("runs on V8 where V8's linear engine takes it, on RE2 otherwise (case-insensitive, large counts)", () => {
    expect(compileLinePattern("^(a+)+$").engine).toBe("v8");
    expect(compileLinePattern("abc", true).engine).toBe("re2");
    expect(compileLinePattern("x{1000}").engine).toBe("re2");
  });

  it("is refused in one line when it cannot run in linear time, or is not a pattern", () => {
    for (const p of ["(a)\\1", "a(?=b)", "a(?!b)", "(?<=x)y", "(?<!x)y", "(?<n>a)\\k<n>", "(a)(b)\\2"]) {
      expect(() => compileLinePattern(p), p).toThrow(CloudmillError);
      expect(() => compileLinePattern(p), p).toThrow(
        /^not supported \((backreference \\\d|named backreference|lookahead|lookbehind) at \d+\): patterns run in linear time, without backreferences or lookaround, in JavaScript's syntax$/,
      );
    }
    expect(() => compileLinePattern("(")).toThrow(/^not a valid regular expression/);
    // Inside a class or escaped, the same characters are plain text.
    expect(compileLinePattern("[(?=]").test("=")).toBe(true);
    expect(compileLinePattern("\\(\\?=").test("(?=")).toBe(true);
    expect(() => grep.parseParams({ pattern: "(a)\\1" })).toThrow(/^grep: param pattern: not supported \(backreference/);
    // What RE2 reads otherwise than JavaScript is refused, never run with another meaning.
    for (const p of ["\\A", "\\z", "\\pL", "\\u{41}", "[[:digit:]]", "\\Qa\\E", "[\\S]"]) {
      expect(() => compileLinePattern(p), p).toThrow(/^not supported \(/);
    }
    // An escape without its digits or letter is the letter itself in JavaScript (\x{2} is "xx",
    // [\c] a backslash or a c); RE2 reads \x{2} as U+0002. Lines past U+FFFF went to RE2, so a
    // job's answer depended on what else a line held: refused, as V8 and RE2 would disagree.
    const javaScript = (p: string): RegExp => new RegExp(p);
    expect(javaScript("\\x{2}").test("xx")).toBe(true);
    expect(javaScript("[\\c]").test("\\")).toBe(true);
    for (const p of ["\\x{2}", "^\\x{41}$", "[\\c]", "\\c1", "\\x4", "\\u12", "a\\u{1F600}"])
      expect(() => compileLinePattern(p), p).toThrow(/^not supported \((escape \\[xuc]|escape \\u\{)/);
    // With them, both engines read the character they spell.
    for (const [p, line] of [
      ["\\x41", "A"],
      ["\\u00e9", "é"],
    ] as const) {
      const compiled = compileLinePattern(p);
      expect(compiled.test(line), p).toBe(new RegExp(p).test(line));
      expect(compileLinePattern(p, false, "re2").test(line), `${p} on RE2`).toBe(new RegExp(p).test(line));
    }
  });
});

/** Random patterns over a small alphabet: literals, classes, groups (two deep), alternation, quantifiers, anchors. */
const basic = fc.constantFrom("a", "b", "c", ".", "[ab]", "[^a]", "\\w", "\\s", "\\S", "[\\sa]", "[^\\s]", "\\d", " ", "A");
const quantifier = fc.constantFrom("", "", "*", "+", "?", "{2}", "{1,3}", "*?", "+?");
const join = (parts: readonly string[], sep = ""): string => parts.join(sep);
const simpleSeq = fc
  .array(
    fc.tuple(basic, quantifier).map(([a, q]) => a + q),
    { minLength: 1, maxLength: 3 },
  )
  .map((p) => join(p));
const group = fc
  .tuple(fc.array(simpleSeq, { minLength: 1, maxLength: 3 }), fc.boolean())
  .map(([alts, capture]) => `(${capture ? "" : "?:"}${join(alts, "|")})`);
const seq = fc
  .array(
    fc.tuple(fc.oneof(basic, group), quantifier).map(([a, q]) => a + q),
    { minLength: 1, maxLength: 4 },
  )
  .map((p) => join(p));
const patternArb = fc
  .tuple(fc.array(seq, { minLength: 1, maxLength: 2 }), fc.constantFrom("", "^"), fc.constantFrom("", "$"))
  .map(([alts, start, end]) => `${start}${join(alts, "|")}${end}`);

describe("RE2 and JavaScript's RegExp", () => {
  it("agree on random patterns and lines wherever both accept the pattern", () => {
    // Patterns either engine refuses are skipped: most must still be compared.
    let compared = 0;
    fc.assert(
      fc.property(
        patternArb,
        fc.array(fc.string({ unit: fc.constantFrom("a", "b", "c", "A", " ", "1", "é", "\u00a0", "\r", "\u2028", "\t") }), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.boolean(),
        (pattern, lines, ignoreCase) => {
          let js: RegExp;
          try {
            js = new RegExp(pattern, ignoreCase ? "i" : "");
          } catch {
            return;
          }
          let re2: ReturnType<typeof compileLinePattern>;
          try {
            re2 = compileLinePattern(pattern, ignoreCase, "re2");
          } catch {
            return;
          }
          compared++;
          for (const line of lines) expect(re2.test(line), `${pattern} on ${JSON.stringify(line)}`).toBe(js.test(line));
        },
      ),
      { numRuns: 1000 },
    );
    expect(compared).toBeGreaterThan(800);
  });
});

describe("characters past U+FFFF", () => {
  it("count as one character on every engine, as Python's re counts them", () => {
    const lines = ["😀", "a", "ab", "😀😀", "x😀y", "𝔘𝔫𝔦", "b c"];
    const patterns = ["^.$", "^.{2,3}$", "^.{2,200}$", "^[^a]$", "^\\S$", "^\\W$", "^x.y$", "^\\S{3}$"];
    const script = `import json, re, sys
lines, patterns = json.loads(sys.argv[1]), json.loads(sys.argv[2])
# ASCII: JavaScript's \\w and \\d are ASCII's (and these lines hold no space but ASCII's).
print(json.dumps([[bool(re.search(p, l, re.ASCII)) for l in lines] for p in patterns]))`;
    const expected = JSON.parse(
      execFileSync("python3", ["-c", script, JSON.stringify(lines), JSON.stringify(patterns)], { encoding: "utf8" }),
    ) as boolean[][];
    for (const [i, pattern] of patterns.entries()) {
      // ^.{2,200}$ is past V8's linear engine: it runs on RE2 as the splitter runs them all.
      const v8 = compileLinePattern(pattern);
      expect(v8.engine, pattern).toBe(pattern.includes("200") ? "re2" : "v8");
      const re2 = compileLinePattern(pattern, false, "re2");
      const folded = compileLinePattern(pattern, true);
      for (const [j, line] of lines.entries()) {
        const what = `${pattern} on ${line}`;
        expect(v8.test(line), what).toBe(expected[i]![j]);
        expect(re2.test(line), what).toBe(expected[i]![j]);
        expect(folded.test(line), what).toBe(expected[i]![j]);
      }
    }
  });
});

describe("an escaped surrogate pair in a pattern", () => {
  it("is the one character it spells, on every engine, as V8 reads it with the u flag", () => {
    const lines = ["hello 😀 world", "😀", "plain", "a", "😁"];
    for (const pattern of ["\\uD83D\\uDE00", "^\\ud83d\\ude00$", "^[\\uD83D\\uDE00]$", "^[a\\uD83D\\uDE00]$", "^.\\uDE00$"]) {
      const reference = new RegExp(pattern, "u");
      for (const compiled of [compileLinePattern(pattern), compileLinePattern(pattern, false, "re2"), compileLinePattern(pattern, true)]) {
        for (const line of lines) expect(compiled.test(line), `${pattern} (${compiled.engine}) on ${line}`).toBe(reference.test(line));
      }
    }
  });
});

describe("a grep sample", () => {
  it("is cut to 1000 characters, never inside a character past U+FFFF", () => {
    const op = grep;
    const params = op.parseParams({ pattern: "x" });
    for (const head of ["a".repeat(999), "a".repeat(998)]) {
      const line = `${head}${"😀".repeat(10)}x`;
      const mapper = op.mapper(params, { inputIndex: 0, inputName: "t.txt", format: "lines", bad: (e) => expect.fail(e.message) });
      mapper.block({ bytes: Buffer.from(`${line}\n`), offset: 0, first: true });
      const sample = (mapper.finish() as { samples: { line: string }[] }).samples[0]!.line;
      // Well-formed UTF-16: it survives a round trip through UTF-8 unchanged.
      expect(Buffer.from(sample, "utf8").toString("utf8")).toBe(sample);
      expect(line.startsWith(sample)).toBe(true);
      expect(sample.length).toBeGreaterThanOrEqual(999);
    }
  });
});
