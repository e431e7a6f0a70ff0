/** Strict decimal numbers: what `stats` and `histogram` accept, one per line. */
import { badRecord } from "../errors.js";
import { latin1, previewText, trimRange } from "./lines.js";

const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** A double holds it: finite, and not a non-zero number that rounded to 0 (1e-400), which would sum and sort as 0. */
const inRange = (v: number, text: string): boolean => Number.isFinite(v) && (v !== 0 || !/[1-9]/.test(text.split(/[eE]/)[0]!));

/**
 * The number on bytes [start, end), surrounding whitespace ignored; `undefined` for a
 * blank line. Anything else (hex, `NaN`, `1,5`, out of double range) is a BAD_RECORD
 * error at `offset`.
 */
export const parseNumberAt = (b: Buffer, start: number, end: number, offset: number): number | undefined => {
  const [s, e] = trimRange(b, start, end);
  if (s === e) return undefined;
  const text = latin1(b, s, e);
  if (NUMBER.test(text)) {
    const v = Number(text);
    if (inRange(v, text)) return v;
    throw badRecord(`number out of range: ${JSON.stringify(previewText(b, s, e))}`, offset + (s - start));
  }
  throw badRecord(`expected a number, got ${JSON.stringify(previewText(b, s, e))}`, offset + (s - start));
};

/** The same rule for a string (a CSV field, a JSON value given as text). */
export const parseNumberText = (text: string, offset: number): number | undefined => {
  const t = text.trim();
  if (t === "") return undefined;
  const shown = JSON.stringify(t.length > 60 ? `${t.slice(0, 60)}…` : t);
  if (NUMBER.test(t)) {
    const v = Number(t);
    if (inRange(v, t)) return v;
    throw badRecord(`number out of range: ${shown}`, offset);
  }
  throw badRecord(`expected a number, got ${shown}`, offset);
};
