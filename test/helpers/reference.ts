/**
 * Single-pass reference implementations of the built-in ops, written from docs/design.md alone:
 * they read a whole file at once (no chunking, no record alignment, no merging), so a
 * difference between them and the engine points at the engine. Numbers use exact rational
 * arithmetic with BigInt (every finite double is a dyadic rational), not the engine's
 * floating-point expansions.
 */

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const NL = 0x0a;
const CR = 0x0d;

/** ASCII whitespace as docs/design.md defines it: space, \t, \n, \v, \f, \r. */
const isSpace = (c: number): boolean => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0b || c === 0x0c || c === 0x0d;

export interface RefRecord {
  /** Absolute byte offset of the record's first byte (after a leading BOM). */
  readonly offset: number;
  /** The record's bytes, line ending included. */
  readonly bytes: Buffer;
}

/** The data of a file: its bytes without a UTF-8 BOM at byte 0, and where they start. */
export const dataOf = (file: Buffer): { bytes: Buffer; start: number } =>
  file.subarray(0, 3).equals(BOM) ? { bytes: file.subarray(3), start: 3 } : { bytes: file, start: 0 };

/** Every record (line) of a file, in order: each ends with \n except possibly the last. */
export const recordsOf = (file: Buffer): RefRecord[] => {
  const { bytes, start } = dataOf(file);
  const out: RefRecord[] = [];
  let s = 0;
  while (s < bytes.length) {
    let e = s;
    while (e < bytes.length && bytes[e] !== NL) e++;
    if (e < bytes.length) e++; // include the newline
    out.push({ offset: start + s, bytes: bytes.subarray(s, e) });
    s = e;
  }
  return out;
};

/** A record's text bytes: without its \n or \r\n. */
const lineBytes = (r: RefRecord): Buffer => {
  let b = r.bytes;
  if (b.length && b[b.length - 1] === NL) {
    b = b.subarray(0, -1);
    if (b.length && b[b.length - 1] === CR) b = b.subarray(0, -1);
  }
  return b;
};

export const refCount = (file: Buffer): { records: number } => ({ records: recordsOf(file).length });

export const refWordcount = (file: Buffer, k = 10): { total: number; distinct: number; top: [string, number][] } => {
  const { bytes } = dataOf(file);
  const counts = new Map<string, { word: Buffer; n: number }>();
  let total = 0;
  let i = 0;
  while (i < bytes.length) {
    if (isSpace(bytes[i]!)) {
      i++;
      continue;
    }
    const s = i;
    while (i < bytes.length && !isSpace(bytes[i]!)) i++;
    const word = bytes.subarray(s, i);
    const key = word.toString("hex");
    const entry = counts.get(key);
    if (entry) entry.n++;
    else counts.set(key, { word, n: 1 });
    total++;
  }
  const sorted = [...counts.values()].sort((a, b) => b.n - a.n || Buffer.compare(a.word, b.word));
  return { total, distinct: counts.size, top: sorted.slice(0, k).map((e) => [e.word.toString("utf8"), e.n]) };
};

export const refGrep = (
  file: Buffer,
  pattern: string,
  k = 10,
  ignoreCase = false,
): { matches: number; samples: { line: string; offset: number }[] } => {
  const re = new RegExp(pattern, ignoreCase ? "i" : "");
  let matches = 0;
  const samples: { line: string; offset: number }[] = [];
  for (const r of recordsOf(file)) {
    const line = lineBytes(r).toString("utf8");
    if (!re.test(line)) continue;
    matches++;
    // Samples are cut to 1000 characters (lib/core/ops/grep.ts documents the cap).
    if (samples.length < k) samples.push({ line: line.slice(0, 1000), offset: r.offset });
  }
  return { matches, samples };
};

/** The number texts of a numbers-format file, in order, trimmed; blank lines skipped. Throws on anything else. */
export const numberTextsOf = (file: Buffer): string[] => {
  const out: string[] = [];
  for (const r of recordsOf(file)) {
    const b = lineBytes(r);
    let s = 0;
    let e = b.length;
    while (s < e && isSpace(b[s]!)) s++;
    while (e > s && isSpace(b[e - 1]!)) e--;
    if (s === e) continue;
    const text = b.toString("latin1", s, e);
    if (!/^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/.test(text)) throw new Error(`reference: not a number: ${JSON.stringify(text)}`);
    out.push(text);
  }
  return out;
};

/** The numbers of a numbers-format file, as doubles. */
export const numbersOf = (file: Buffer): number[] => numberTextsOf(file).map(Number);

// ---- exact arithmetic on doubles ---------------------------------------------------------

/** Every finite double is an integer multiple of 2^-1074. */
const SCALE = 1074;

/** x · 2^1074 as an exact BigInt (x a finite double). */
export const scaled = (x: number): bigint => {
  if (!Number.isFinite(x)) throw new Error(`reference: not finite: ${x}`);
  if (x === 0) return 0n;
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const negative = bits >> 63n === 1n;
  const exponent = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & ((1n << 52n) - 1n);
  // value = mantissa · 2^(e - 1075) for normals, fraction · 2^-1074 for subnormals.
  const mantissa = exponent === 0 ? fraction : fraction | (1n << 52n);
  const shift = exponent === 0 ? 0 : exponent - 1;
  const v = mantissa << BigInt(shift);
  return negative ? -v : v;
};

const bitLength = (v: bigint): number => v.toString(2).length;

/** The double nearest to num · 2^-scale (ties to even): one correct rounding. */
export const roundScaled = (num: bigint, scale: number): number => {
  if (num === 0n) return 0;
  const negative = num < 0n;
  const a = negative ? -num : num;
  const length = bitLength(a);
  // Exponent of the last bit the double can keep: 53 significant bits, but never below 2^-1074.
  const ulp = Math.max(length - 1 - scale - 52, -1074);
  const shift = ulp + scale; // bits of `a` below the double's last bit
  let m: bigint;
  if (shift <= 0) m = a << BigInt(-shift);
  else {
    m = a >> BigInt(shift);
    const rest = a - (m << BigInt(shift));
    const half = 1n << BigInt(shift - 1);
    if (rest > half || (rest === half && (m & 1n) === 1n)) m += 1n;
  }
  // m ≤ 2^53 and m · 2^ulp is representable (or overflows to ±Infinity, as rounding would).
  let v = Number(m);
  // Multiply by 2^ulp in steps that are exact (each factor is a normal power of two).
  let e = ulp;
  while (e > 0) {
    const step = Math.min(e, 1000);
    v *= 2 ** step;
    e -= step;
  }
  while (e < 0) {
    const step = Math.max(e, -1000);
    v *= 2 ** step;
    e -= step;
  }
  return negative ? -v : v;
};

/** The correctly rounded sum of doubles. */
export const exactSum = (xs: readonly number[]): number =>
  roundScaled(
    xs.reduce((s, x) => s + scaled(x), 0n),
    SCALE,
  );

export interface RefStats {
  count: number;
  sum: number;
  min: number | null;
  max: number | null;
  mean: number | null;
  variance: number | null;
}

/** A decimal text as an exact fraction: numerator and a power of ten. */
const fractionOf = (text: string): { num: bigint; tens: number } => {
  const match = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!match) throw new Error(`reference: not a decimal: ${JSON.stringify(text)}`);
  const [, sign, whole = "", frac = "", exp = "0"] = match;
  let num = BigInt(`${whole}${frac}` || "0") * (sign === "-" ? -1n : 1n);
  let tens = frac.length - Number(exp);
  if (tens < 0) {
    num *= 10n ** BigInt(-tens);
    tens = 0;
  }
  return { num, tens };
};

/** The double nearest to p / q (q > 0), by long division to far more bits than a double holds, with a sticky bit. */
export const roundRatio = (p: bigint, q: bigint): number => {
  const bits = 1200 + bitLength(q);
  const shifted = (p < 0n ? -p : p) << BigInt(bits);
  let t = (shifted / q) << 1n;
  if (shifted % q !== 0n) t |= 1n;
  return roundScaled(p < 0n ? -t : t, bits + 1);
};

/**
 * stats over these numbers, exact over each number as written (a string is its text; a number
 * is String(x), its shortest decimal): sum, mean = Σx/n and variance = (n·Σx² − (Σx)²)/n², each
 * rounded once.
 */
export const refStatsOf = (xs: readonly (number | string)[]): RefStats => {
  const n = xs.length;
  if (n === 0) return { count: 0, sum: 0, min: null, max: null, mean: null, variance: null };
  const fractions = xs.map((x) => fractionOf(typeof x === "number" ? String(x) : x.trim()));
  const tens = Math.max(...fractions.map((f) => f.tens));
  let s = 0n;
  let q = 0n;
  for (const f of fractions) {
    const v = f.num * 10n ** BigInt(tens - f.tens);
    s += v;
    q += v * v;
  }
  let min = Infinity;
  let max = -Infinity;
  for (const x of xs) {
    const v = typeof x === "number" ? x : Number(x);
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const unit = 10n ** BigInt(tens);
  const count = BigInt(n);
  return {
    count: n,
    sum: roundRatio(s, unit),
    min,
    max,
    mean: roundRatio(s, count * unit),
    variance: roundRatio(count * q - s * s, count * count * unit * unit),
  };
};

export const refStats = (file: Buffer): RefStats => refStatsOf(numberTextsOf(file));

export interface RefHistogram {
  min: number;
  max: number;
  bins: number[];
  below?: number;
  above?: number;
}

/** A number's text as the exact fraction n / 10^s it is written as. */
const writtenDecimal = (text: string): { n: bigint; s: number } => {
  const [, sign, whole = "", fraction = "", exponent = "0"] = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text.trim())!;
  const s = fraction.length - Number(exponent);
  const digits = BigInt(`${whole}${fraction}` || "0");
  const n = s < 0 ? digits * 10n ** BigInt(-s) : digits;
  return { n: sign === "-" ? -n : n, s: Math.max(0, s) };
};

/**
 * Bins by the numbers as written, in exact arithmetic: bin k holds min + k·(max − min)/bins ≤ x <
 * the next edge (the last bin holds max), min and max as their shortest decimals.
 */
export const refHistogramOf = (texts: readonly string[], bins: number, min: number, max: number): RefHistogram => {
  const counts = new Array<number>(bins).fill(0);
  let below = 0;
  let above = 0;
  const lo = writtenDecimal(String(min));
  const hi = writtenDecimal(String(max));
  for (const text of texts) {
    const x = writtenDecimal(text);
    const s = Math.max(x.s, lo.s, hi.s);
    const at = (d: { n: bigint; s: number }): bigint => d.n * 10n ** BigInt(s - d.s);
    const [v, a, b] = [at(x), at(lo), at(hi)];
    if (v < a) below++;
    else if (v > b) above++;
    else counts[Math.min(bins - 1, Number(((v - a) * BigInt(bins)) / (b - a)))]!++;
  }
  return { min, max, bins: counts, ...(below ? { below } : {}), ...(above ? { above } : {}) };
};

export const refHistogram = (file: Buffer, bins: number, min: number, max: number): RefHistogram =>
  refHistogramOf(numberTextsOf(file), bins, min, max);

// ---- one entry point by op name ----------------------------------------------------------

/** A param as job specs (numbers, booleans) and `--param k=v` (text) give it. */
export type RefParam = string | number | boolean;

/** Each op's params, with README.md's defaults; an op or param not listed here is refused. */
const PARAMS: Readonly<Record<string, Readonly<Record<string, RefParam | undefined>>>> = {
  count: {},
  stats: {},
  wordcount: { k: 10 },
  grep: { pattern: undefined, k: 10, ignoreCase: false },
  histogram: { bins: 10, min: undefined, max: undefined },
};

const paramsOf = (op: string, given: Readonly<Record<string, RefParam>>): Record<string, RefParam> => {
  const known = PARAMS[op];
  if (!known) throw new Error(`reference: no reference for op ${JSON.stringify(op)}`);
  for (const name of Object.keys(given)) if (!(name in known)) throw new Error(`reference: ${op} has no param ${JSON.stringify(name)}`);
  const out: Record<string, RefParam> = {};
  for (const [name, fallback] of Object.entries(known)) {
    const v = given[name] ?? fallback;
    if (v === undefined) throw new Error(`reference: ${op} needs param ${name}`);
    out[name] = v;
  }
  return out;
};

const num = (v: RefParam | undefined): number => {
  const n = typeof v === "number" ? v : Number(v);
  if (typeof v === "boolean" || v === "" || !Number.isFinite(n)) throw new Error(`reference: not a number: ${JSON.stringify(v)}`);
  return n;
};

const bool = (v: RefParam | undefined): boolean => {
  if (v === true || v === "true") return true;
  if (v === false || v === "false") return false;
  throw new Error(`reference: not a boolean: ${JSON.stringify(v)}`);
};

/**
 * The result of a built-in op over one input in its default format (lines for count, wordcount
 * and grep; numbers for stats and histogram), by op name and params.
 */
export const refResult = (op: string, params: Readonly<Record<string, RefParam>>, file: Buffer): unknown => {
  const p = paramsOf(op, params);
  switch (op) {
    case "count":
      return refCount(file);
    case "stats":
      return refStats(file);
    case "wordcount":
      return refWordcount(file, num(p["k"]));
    case "grep":
      return refGrep(file, String(p["pattern"]), num(p["k"]), bool(p["ignoreCase"]));
    case "histogram":
      return refHistogram(file, num(p["bins"]), num(p["min"]), num(p["max"]));
    default:
      throw new Error(`reference: no reference for op ${JSON.stringify(op)}`);
  }
};
