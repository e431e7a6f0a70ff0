/**
 * Decimal numbers read straight from bytes, as what they are written as: an integer mantissa
 * and a decimal scale (value = m / 10^scale), beside the nearest double. The fast path takes up
 * to 15 significant digits and scales up to 22 with no string, regex or allocation, and gets
 * the double exactly right (Clinger: m and 10^scale are both exact doubles, so one division
 * rounds correctly). Anything else goes to the exact path, which accepts and refuses exactly
 * what numbers.ts does.
 */
import { badRecord } from "../errors.js";
import type { RecordBlock } from "./alignedBlocks.js";
import { latin1, trimRange } from "./lines.js";
import { parseNumberAt, parseNumberText } from "./numbers.js";

/** Receives each number: its nearest double, and its exact decimal value. */
export interface DecimalSink {
  /** The value is exactly m / 10^scale, m an integer with |m| < 2^52, 0 ≤ scale ≤ MAX_FAST_SCALE. */
  small(x: number, m: number, scale: number): void;
  /** Any other number: exactly m / 10^scale, scale ≥ 0. */
  big(x: number, m: bigint, scale: number): void;
  /** A record without the field asked for (JSONL): none holding it is more likely a misspelt field than data. */
  absent?(): void;
}

export const MAX_FAST_SCALE = 22;
const MAX_FAST_DIGITS = 15;
/** 10^k, exact as doubles for k ≤ 22. */
const POW10 = Array.from({ length: MAX_FAST_SCALE + 1 }, (_, k) => Number(`1e${k}`));
const TWO52 = 2 ** 52;
const NL = 0x0a;
const CR = 0x0d;

/** Trimmed around a number: space, \t, \v, \f, \r (a line never holds its \n). */
const BLANK = new Uint8Array(256);
for (const c of [0x20, 0x09, 0x0b, 0x0c, 0x0d]) BLANK[c] = 1;

/** Whether c is a byte trimmed around a number. */
export const isBlankByte = (c: number): boolean => BLANK[c] === 1;

/** What the last fastNumber call found. */
export const FAST = { ok: 1, blank: 2, slow: 3 } as const;
/** Results of the last fastNumber call that returned FAST.ok (module state: no allocation per number). */
export const fast = { status: 0 as number, x: 0, m: 0, scale: 0 };

/**
 * Reads a number from b at `start`: blanks, sign, digits with an optional point and exponent,
 * blanks; stops at the first other byte (or `end`) and returns its index. `fast.status` says
 * whether a number was read (then `fast.x`, `fast.m`, `fast.scale` hold it), the span was blank,
 * or the exact path must decide (too many digits, a scale out of range, or not a number at all).
 */
export const fastNumber = (b: Uint8Array, start: number, end: number): number => {
  let i = start;
  while (i < end && BLANK[b[i]!]) i++;
  if (i === end || b[i] === NL) {
    fast.status = FAST.blank;
    return i;
  }
  let negative = false;
  if (b[i] === 0x2d) {
    negative = true;
    i++;
  } else if (b[i] === 0x2b) i++;
  let m = 0;
  let digits = 0;
  let significant = 0;
  let scale = 0;
  for (; i < end; i++) {
    const d = b[i]! - 0x30;
    if (d < 0 || d > 9) break;
    m = m * 10 + d;
    digits++;
    if (m !== 0) significant++;
  }
  if (i < end && b[i] === 0x2e) {
    for (i++; i < end; i++) {
      const d = b[i]! - 0x30;
      if (d < 0 || d > 9) break;
      m = m * 10 + d;
      digits++;
      scale++;
      if (m !== 0) significant++;
    }
  }
  if (digits === 0 || significant > MAX_FAST_DIGITS) {
    fast.status = FAST.slow;
    return i;
  }
  if (i < end && (b[i] === 0x65 || b[i] === 0x45)) {
    i++;
    let sign = 1;
    if (b[i] === 0x2d) {
      sign = -1;
      i++;
    } else if (b[i] === 0x2b) i++;
    let exponent = 0;
    let expDigits = 0;
    for (; i < end; i++) {
      const d = b[i]! - 0x30;
      if (d < 0 || d > 9) break;
      exponent = exponent * 10 + d;
      if (++expDigits > 4) break;
    }
    if (expDigits === 0 || expDigits > 4) {
      fast.status = FAST.slow;
      return i;
    }
    scale -= sign * exponent;
  }
  while (i < end && BLANK[b[i]!]) i++;
  if (scale < 0) {
    if (m === 0) scale = 0;
    else if (scale >= -MAX_FAST_SCALE && m * POW10[-scale]! < TWO52) {
      m *= POW10[-scale]!;
      scale = 0;
    }
  }
  if (scale < 0 || scale > MAX_FAST_SCALE) {
    fast.status = FAST.slow;
    return i;
  }
  const x = scale === 0 ? m : m / POW10[scale]!;
  fast.status = FAST.ok;
  fast.x = negative ? -x : x;
  fast.m = negative ? -m : m;
  fast.scale = scale;
  return i;
};

/**
 * The most significant digits or decimal places a number may have: every double's text needs
 * fewer (17 digits, 1074 places), and past it exact sums of squares grow without use.
 */
export const MAX_EXACT_DIGITS = 1100;

/**
 * The exact decimal of a number's text that the strict reader (numbers.ts) accepts:
 * m / 10^scale with scale ≥ 0 and no trailing zero while the scale is positive; undefined past
 * MAX_EXACT_DIGITS.
 */
export const decimalOfText = (text: string): { m: bigint; scale: number } | undefined => {
  const [, sign, whole = "", fraction = "", exponent = "0"] = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text)!;
  const all = `${whole}${fraction}`.replace(/^0+/, "");
  const digits = all.replace(/0+$/, "");
  if (digits === "") return { m: 0n, scale: 0 };
  const scale = fraction.length - Number(exponent) - (all.length - digits.length);
  if (digits.length > MAX_EXACT_DIGITS || scale > MAX_EXACT_DIGITS) return undefined;
  const m = scale < 0 ? BigInt(digits) * 10n ** BigInt(-scale) : BigInt(digits);
  return { m: sign === "-" ? -m : m, scale: Math.max(0, scale) };
};

const tooLong = (offset: number) =>
  badRecord(`a number with more than ${MAX_EXACT_DIGITS} significant digits or decimal places (sums are exact: round it first)`, offset);

/**
 * Hands the number of text to the sink, or throws BAD_RECORD at `offset` as parseNumberText
 * does; returns false for a blank text. Offsets are the caller's: the text is a field or value.
 */
export const decimalText = (text: string, offset: number, sink: DecimalSink): boolean => {
  const x = parseNumberText(text, offset);
  if (x === undefined) return false;
  const d = decimalOfText(text.trim());
  if (d === undefined) throw tooLong(offset);
  sink.big(x, d.m, d.scale);
  return true;
};

/**
 * The number on bytes [start, end) to the sink, as parseNumberAt reads it: false for a blank
 * span, BAD_RECORD at the number's byte offset for anything else that is not a number.
 */
export const decimalAt = (b: Buffer, start: number, end: number, offset: number, sink: DecimalSink): boolean => {
  const stop = fastNumber(b, start, end);
  if (fast.status === FAST.ok && stop === end) {
    sink.small(fast.x, fast.m, fast.scale);
    return true;
  }
  if (fast.status === FAST.blank && stop === end) return false;
  // The strict reader's acceptance, refusals and offsets; then the exact value of the same text.
  const x = parseNumberAt(b, start, end, offset);
  if (x === undefined) return false;
  const [s, e] = trimRange(b, start, end);
  const d = decimalOfText(latin1(b, s, e));
  if (d === undefined) throw tooLong(offset + (s - start));
  sink.big(x, d.m, d.scale);
  return true;
};

/** A sink that wants only the double (histogram, sort). */
export const doubleSink = (fn: (x: number) => void): DecimalSink => ({ small: (x) => fn(x), big: (x) => fn(x) });

/**
 * Each line's number to the sink, blank lines skipped, in one pass over the bytes: a line the
 * fast path cannot take whole goes to `other(start, end, offset)` (its bounds as forEachLine's).
 */
export const scanNumberLines = (
  block: RecordBlock,
  sink: DecimalSink,
  other: (start: number, end: number, offset: number) => void,
): void => {
  const b = block.bytes;
  const n = b.length;
  let s = 0;
  while (s < n) {
    const stop = fastNumber(b, s, n);
    if (stop === n || b[stop] === NL) {
      if (fast.status === FAST.ok) {
        sink.small(fast.x, fast.m, fast.scale);
        s = stop + 1;
        continue;
      }
      if (fast.status === FAST.blank) {
        s = stop + 1;
        continue;
      }
    }
    let nl = b.indexOf(NL, stop);
    const next = nl < 0 ? n : nl + 1;
    if (nl < 0) nl = n;
    other(s, nl > s && b[nl - 1] === CR ? nl - 1 : nl, block.offset + s);
    s = next;
  }
};
