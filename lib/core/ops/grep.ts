/**
 * `grep`: lines matching a regular expression; the first k in file order as samples with
 * their byte offsets. Samples are kept sorted by (input, offset), so merging in any order
 * keeps the same first k.
 */
import * as z from "zod";
import { forEachLine } from "../records/lines.js";
import { compileLinePattern } from "../records/linearPattern.js";
import type { Op } from "./types.js";
import { boolParam, intParam, parseOpParams, stringParam } from "./params.js";

const Params = z
  .strictObject({ pattern: stringParam(1000), k: intParam(0, 10_000).default(10), ignoreCase: boolParam().default(false) })
  .transform((p, ctx) => {
    try {
      return { ...p, regex: compileLinePattern(p.pattern, p.ignoreCase) };
    } catch (err) {
      ctx.addIssue({ code: "custom", message: (err as Error).message, path: ["pattern"] });
      return z.NEVER;
    }
  });
type Params = z.output<typeof Params>;

/** Sample lines are cut to this many characters. */
const MAX_SAMPLE_CHARS = 1000;

/** A line cut to MAX_SAMPLE_CHARS, never between the two halves of a character past U+FFFF. */
const sampleOf = (line: string): string => {
  if (line.length <= MAX_SAMPLE_CHARS) return line;
  const high = line.charCodeAt(MAX_SAMPLE_CHARS - 1);
  return line.slice(0, high >= 0xd800 && high <= 0xdbff ? MAX_SAMPLE_CHARS - 1 : MAX_SAMPLE_CHARS);
};

export interface GrepSample {
  line: string;
  offset: number;
  input: number;
}

export interface GrepPartial {
  matches: number;
  samples: GrepSample[];
}

export interface GrepResult {
  matches: number;
  samples: { line: string; offset: number; input?: string }[];
}

const inFileOrder = (a: GrepSample, b: GrepSample): number => a.input - b.input || a.offset - b.offset;

export const grep: Op<Params, GrepPartial, GrepResult> = {
  name: "grep",
  orderFreeMerge: true,
  description: "lines matching a regular expression, with the first k as samples",
  formats: ["lines"],
  paramsHelp: [
    "pattern=REGEX      regular expression, JavaScript syntax, run in linear time (no backreferences or lookaround)",
    "k=10               how many matching lines to sample",
    "ignoreCase=false   match case-insensitively",
  ],
  parseParams: (raw) => parseOpParams("grep", Params, raw),
  mapper(params, ctx) {
    const p: GrepPartial = { matches: 0, samples: [] };
    return {
      block(block) {
        const b = block.bytes;
        forEachLine(block, (s, e, offset) => {
          const line = b.toString("utf8", s, e);
          if (!params.regex.test(line)) return;
          p.matches++;
          if (p.samples.length < params.k) p.samples.push({ line: sampleOf(line), offset, input: ctx.inputIndex });
        });
      },
      finish: () => p,
    };
  },
  merger(params) {
    const acc: GrepPartial = { matches: 0, samples: [] };
    return {
      add(p) {
        acc.matches += p.matches;
        acc.samples = [...acc.samples, ...p.samples].sort(inFileOrder).slice(0, params.k);
      },
      value: () => acc,
    };
  },
  namedInputs: (p) => p.samples.map((s) => s.input),
  finalize(p, _params, ctx) {
    const many = ctx.inputCount > 1;
    return {
      matches: p.matches,
      samples: p.samples.map((s) =>
        many ? { line: s.line, offset: s.offset, input: ctx.inputName(s.input) } : { line: s.line, offset: s.offset },
      ),
    };
  },
};
