/**
 * Exact decimal sums. Numbers are summed as what they are written as (m / 10^scale, see
 * records/decimal.ts), so 0.1 + 0.2 is 0.3, and the total is the same for any order or
 * chunking. Each scale keeps one integer, held in two doubles (units of 1 and of 2^52) while it
 * fits and in a bigint past that: adding a number is a few double operations, no allocation.
 * A result is rounded to a double once, at the very end (ratioToDouble).
 */
import { CloudmillError, ErrorCode } from "../errors.js";
import { MAX_EXACT_DIGITS } from "../records/decimal.js";

const TWO52 = 2 ** 52;
const BIG52 = 52n;
const SPLITTER = 134217729; // 2^27 + 1, Dekker's split
/** 2^26: an integer below it has a square below 2^52. */
const SQUARE_FITS = 2 ** 26;
/** Scales the double lanes cover: the fast path's scales (≤ 22) and their squares'. */
const LANES = 45;

/** An exact decimal: m / 10^scale. */
export interface Decimal {
  readonly m: bigint;
  readonly scale: number;
}

export class DecimalSum {
  /** Per scale: units of 1, |lo| < 2^52. */
  private readonly lo = new Float64Array(LANES);
  /** Per scale: units of 2^52, |hi| < 2^52. */
  private readonly hi = new Float64Array(LANES);
  /** Per scale, past the lanes: any integer. */
  private readonly big = new Map<number, bigint>();

  /** Adds m / 10^scale: m an integer with |m| < 2^52, 0 ≤ scale < 45. */
  add(m: number, scale: number): void {
    let t = this.lo[scale]! + m;
    if (t >= TWO52) {
      t -= TWO52;
      this.carry(scale, 1);
    } else if (t <= -TWO52) {
      t += TWO52;
      this.carry(scale, -1);
    }
    this.lo[scale] = t;
  }

  /** Adds m² / 10^scale exactly, m as add takes it. */
  addSquare(m: number, scale: number): void {
    const a = Math.abs(m);
    if (a < SQUARE_FITS) {
      this.add(a * a, scale);
      return;
    }
    // a² = p + err exactly (Dekker); p's part above 2^52 goes to the units of 2^52.
    const p = a * a;
    const c = SPLITTER * a;
    const ah = c - (c - a);
    const al = a - ah;
    const err = ah * ah - p + 2 * ah * al + al * al;
    const units = Math.floor(p / TWO52);
    this.add(p - units * TWO52, scale);
    this.add(err, scale);
    this.carry(scale, units);
  }

  /** Adds m / 10^scale for any integer m and scale ≥ 0. */
  addBig(m: bigint, scale: number): void {
    if (m !== 0n) this.big.set(scale, (this.big.get(scale) ?? 0n) + m);
  }

  addDecimal(d: Decimal): void {
    this.addBig(d.m, d.scale);
  }

  private carry(scale: number, units: number): void {
    let h = this.hi[scale]! + units;
    if (h >= TWO52 || h <= -TWO52) {
      this.addBig(BigInt(h) << BIG52, scale);
      h = 0;
    }
    this.hi[scale] = h;
  }

  /** The exact total, with no trailing zero in its scale. */
  value(): Decimal {
    const parts: Decimal[] = [];
    for (let s = 0; s < LANES; s++) {
      if (this.lo[s] !== 0 || this.hi[s] !== 0) parts.push({ m: (BigInt(this.hi[s]!) << BIG52) + BigInt(this.lo[s]!), scale: s });
    }
    for (const [scale, m] of this.big) parts.push({ m, scale });
    const top = Math.max(0, ...parts.map((p) => p.scale));
    let m = 0n;
    for (const p of parts) m += p.m * 10n ** BigInt(top - p.scale);
    return normalized({ m, scale: top });
  }
}

/** Without trailing zeros while the scale is positive: by its digits, not a division per zero. */
const normalized = ({ m, scale }: Decimal): Decimal => {
  if (m === 0n) return { m, scale: 0 };
  if (scale === 0 || m % 10n !== 0n) return { m, scale };
  const text = m.toString();
  let zeros = 0;
  while (zeros < scale && text.charCodeAt(text.length - 1 - zeros) === 0x30) zeros++;
  return { m: BigInt(text.slice(0, text.length - zeros)), scale: scale - zeros };
};

/** A decimal as partials carry it in JSON: `"<m>e-<scale>"`, e.g. `"-12345e-4"`. */
export const decimalToJson = (d: Decimal): string => `${d.m}e-${d.scale}`;

const DECIMAL_JSON = /^(-?\d+)e-(\d+)$/;

/** The decimal of decimalToJson's text; throws on anything else (a partial is ours, never input). */
export const decimalFromJson = (text: string): Decimal => {
  const match = DECIMAL_JSON.exec(text);
  if (!match) {
    throw new CloudmillError(
      ErrorCode.INTERNAL,
      `a partial holds ${JSON.stringify(String(text).slice(0, 60))} where an exact decimal belongs ` +
        "(a part from another cloudmill version?)",
    );
  }
  return { m: BigInt(match[1]!), scale: Number(match[2]) };
};

/** 10^k by k: a combine per record would otherwise raise 10 to a wide scale each time. */
const POWERS_OF_TEN: bigint[] = [1n];
/** Scales of input numbers and their squares; a cache past them would grow with any odd partial. */
const CACHED_POWERS = 2 * MAX_EXACT_DIGITS;
const powerOfTen = (k: number): bigint => {
  if (k > CACHED_POWERS) return 10n ** BigInt(k);
  for (let i = POWERS_OF_TEN.length; i <= k; i++) POWERS_OF_TEN.push(POWERS_OF_TEN[i - 1]! * 10n);
  return POWERS_OF_TEN[k]!;
};

/** a + b at the scale of the finer, not normalized (so it is the same decimal for any grouping of adds). */
export const addDecimals = (a: Decimal, b: Decimal): Decimal => {
  if (a.scale === b.scale) return { m: a.m + b.m, scale: a.scale };
  return a.scale > b.scale
    ? { m: a.m + b.m * powerOfTen(a.scale - b.scale), scale: a.scale }
    : { m: a.m * powerOfTen(b.scale - a.scale) + b.m, scale: b.scale };
};

const bitLength = (x: bigint): number => x.toString(2).length;

/** x · 2^k, in steps that are exact whenever the result is a normal double (or overflows). */
const scaleByPowerOfTwo = (x: number, k: number): number => {
  let v = x;
  let e = k;
  while (e !== 0) {
    const step = Math.max(-1000, Math.min(1000, e));
    v *= 2 ** step;
    e -= step;
  }
  return v;
};

/** p / q rounded once to the nearest double (ties to even); q > 0. ±Infinity past the double range. */
export const ratioToDouble = (p: bigint, q: bigint): number => {
  if (q <= 0n) throw new RangeError("ratioToDouble: the denominator must be positive");
  if (p === 0n) return 0;
  const negative = p < 0n;
  const a = negative ? -p : p;
  // A quotient of at least 55 bits: 53 for the double, one to round by, one spare.
  const shift = 55 - (bitLength(a) - bitLength(q));
  const num = shift >= 0 ? a << BigInt(shift) : a;
  const den = shift >= 0 ? q : q << BigInt(-shift);
  const quotient = num / den;
  const exact = num % den === 0n;
  const exponent = bitLength(quotient) - 1 - shift;
  let v: number;
  if (exponent > 1023) v = Infinity;
  else if (exponent >= -1022) {
    // The remainder as a sticky bit below the quotient: Number() then rounds correctly.
    v = scaleByPowerOfTwo(Number((quotient << 1n) | (exact ? 0n : 1n)), -(shift + 1));
  } else {
    // Subnormal: round at 2^-1074 ourselves, from two more bits and the sticky remainder.
    const scaled = a << 1076n;
    const units = scaled / q;
    const sticky = scaled % q !== 0n;
    let m = units >> 2n;
    const low = units & 3n;
    if (low > 2n || (low === 2n && (sticky || (m & 1n) === 1n))) m += 1n;
    v = Number(m) * 2 ** -1074;
  }
  return negative ? -v : v;
};
