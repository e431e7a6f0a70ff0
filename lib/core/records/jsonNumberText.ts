/**
 * A JSON number as written. JSON.parse rounds a number to a double, so one written with more
 * than 15 significant digits (an instrument's 0.1000000000000000055…, an id past 2^53) loses
 * digits; ops that add the decimals as written read such a number's text instead.
 */

/**
 * Whether a line may hold a number of more than 15 significant digits (16 digits, dots
 * between them allowed): only such a line needs its number's text. A string of digits
 * matches too, and costs nothing worse than a look.
 */
export const mayHoldLongNumber = (text: string): boolean => LONG_DIGITS.test(text);
const LONG_DIGITS = /\d(?:\.?\d){15}/;

const isSpace = (c: string | undefined): boolean => c === " " || c === "\t" || c === "\n" || c === "\r";
const ARRAY_INDEX = /^(?:0|[1-9]\d*)$/;

/**
 * The text of the number at `path` (the dotted path's names: object keys, or array indexes as
 * JSON.parse's arrays have them) in `text`, a JSON value JSON.parse accepted. Of duplicate keys
 * the last counts, as in JSON.parse. Undefined when the path leads to no number.
 */
export const jsonNumberText = (text: string, path: readonly string[]): string | undefined => {
  let i = 0;
  const ws = (): void => {
    while (isSpace(text[i])) i++;
  };
  const skipString = (): void => {
    i++;
    while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
  };
  const skipValue = (): void => {
    ws();
    const c = text[i];
    if (c === '"') {
      skipString();
      return;
    }
    if (c === "{" || c === "[") {
      let depth = 0;
      do {
        const d = text[i];
        if (d === '"') {
          skipString();
          continue;
        }
        if (d === "{" || d === "[") depth++;
        else if (d === "}" || d === "]") depth--;
        i++;
      } while (depth > 0);
      return;
    }
    // A number, true, false or null: up to the next delimiter.
    while (i < text.length && !isSpace(text[i]) && text[i] !== "," && text[i] !== "}" && text[i] !== "]") i++;
  };
  for (const name of path) {
    ws();
    if (text[i] === "[") {
      if (!ARRAY_INDEX.test(name)) return undefined;
      let left = Number(name);
      i++;
      ws();
      if (text[i] === "]") return undefined;
      while (left > 0) {
        skipValue();
        ws();
        if (text[i] !== ",") return undefined;
        i++;
        left--;
      }
      continue;
    }
    if (text[i] !== "{") return undefined;
    i++;
    ws();
    if (text[i] === "}") return undefined;
    let found = -1;
    for (;;) {
      ws();
      const start = i;
      skipString();
      const key = JSON.parse(text.slice(start, i)) as string;
      ws();
      i++; // the colon
      ws();
      if (key === name) found = i;
      skipValue();
      ws();
      if (text[i] !== ",") break;
      i++;
    }
    if (found < 0) return undefined;
    i = found;
  }
  ws();
  const start = i;
  skipValue();
  const written = text.slice(start, i);
  return /^-?\d/.test(written) ? written : undefined;
};

/** A decimal's significant digits and the power of ten of its first one; zero is "" at 0. */
const decimalParts = (text: string): { negative: boolean; digits: string; lead: number } => {
  const [, sign, whole = "", fraction = "", exponent = "0"] = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text) ?? [];
  const all = `${whole}${fraction}`;
  const first = all.search(/[1-9]/);
  if (first < 0) return { negative: false, digits: "", lead: 0 };
  return { negative: sign === "-", digits: all.slice(first).replace(/0+$/, ""), lead: whole.length - first - 1 + Number(exponent) };
};

/** Whether two decimal texts name the same number (1.50 and 15e-1 do; -0 and 0 do). */
export const sameDecimal = (a: string, b: string): boolean => {
  const x = decimalParts(a);
  const y = decimalParts(b);
  return x.negative === y.negative && x.digits === y.digits && x.lead === y.lead;
};
