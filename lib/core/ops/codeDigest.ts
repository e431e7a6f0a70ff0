/**
 * A digest of a function's code that is the same whichever tool printed it. The deployed roles
 * load a lab's module as esbuild bundled it; the lab's own process loads it as written, through
 * tsx or as tsc compiled it. Those print the same code with other whitespace, comments, quotes,
 * semicolons, parentheses, trailing commas, number spellings and `void 0`, and a bundle renames an
 * identifier that collides with another module's by appending digits. All of that is dropped
 * before hashing; any change to what the code does still changes the digest.
 */
import { createHash } from "node:crypto";

const isIdentifierChar = (c: string | undefined): boolean => c !== undefined && /[\p{ID_Continue}$]/u.test(c);
const isDigit = (c: string | undefined): boolean => c !== undefined && c >= "0" && c <= "9";

/** The value of a '…' or "…" literal's body, for the escapes printers choose between. */
const unescapeQuoted = (body: string): string => body.replace(/\\(['"\\])/g, "$1");

/** The canonical text of `source`: comments, layout and printer choices removed (see above). */
export const canonicalCode = (source: string): string => {
  let out = "";
  let i = 0;
  const n = source.length;
  while (i < n) {
    const c = source[i]!;
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      while (i < n && source[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      i = end === -1 ? n : end + 2;
    } else if (c === "'" || c === '"') {
      let j = i + 1;
      while (j < n && source[j] !== c) j += source[j] === "\\" ? 2 : 1;
      out += JSON.stringify(unescapeQuoted(source.slice(i + 1, j)));
      i = j + 1;
    } else if (c === "`") {
      let j = i + 1;
      while (j < n && source[j] !== "`") j += source[j] === "\\" ? 2 : 1;
      const body = source.slice(i + 1, j);
      // A template without substitutions is a plain string, which a printer may quote either way.
      out += body.includes("${") ? source.slice(i, j + 1) : JSON.stringify(body.replace(/\\([`'"\\])/g, "$1"));
      i = j + 1;
    } else if (isDigit(c) || (c === "." && isDigit(next))) {
      let j = i;
      while (j < n && (/[\w.]/.test(source[j]!) || (/[+-]/.test(source[j]!) && /[eE]/.test(source[j - 1]!)))) j++;
      const raw = source.slice(i, j);
      const value = Number(raw.replace(/_/g, "").replace(/n$/, ""));
      out += Number.isNaN(value) ? raw : String(value);
      i = j;
    } else if (isIdentifierChar(c)) {
      let j = i;
      while (j < n && isIdentifierChar(source[j])) j++;
      // A bundle renames `parse` to `parse2` when another module has a `parse` too.
      out += `${source.slice(i, j).replace(/(?<=\D)\d+$/, "")} `;
      i = j;
    } else if (c === "," && /^\s*[)\]}]/.test(source.slice(i + 1, i + 64))) {
      i++;
    } else if (/[\s;()]/.test(c)) {
      i++;
    } else {
      out += c;
      i++;
    }
  }
  // esbuild prints `undefined` as `void 0`.
  return out.replaceAll("void 0", "undefined ");
};

/** The first 16 hex digits of a SHA-256 over JSON `parts`, with functions as their canonical code. */
export const codeDigest = (parts: readonly unknown[]): string =>
  createHash("sha256")
    .update(JSON.stringify(parts.map((p) => (typeof p === "function" ? canonicalCode(String(p)) : p))))
    .digest("hex")
    .slice(0, 16);
