/** Line-level views of a record block. A line excludes its `\n` and a `\r` before it. */
import type { RecordBlock } from "./alignedBlocks.js";

const NL = 0x0a;
const CR = 0x0d;

/** Records in a block: every line, empty ones too; a block always holds at least one. */
export const countLines = (bytes: Buffer): number => {
  let n = 0;
  let i = bytes.indexOf(NL);
  while (i >= 0) {
    n++;
    i = bytes.indexOf(NL, i + 1);
  }
  return bytes.length === 0 || bytes[bytes.length - 1] !== NL ? n + 1 : n;
};

/**
 * Calls fn(start, end, offset) for each line of the block: [start, end) indexes into
 * block.bytes without the line ending; offset is the line's absolute byte offset.
 */
export const forEachLine = (block: RecordBlock, fn: (start: number, end: number, offset: number) => void): void => {
  const b = block.bytes;
  let s = 0;
  const n = b.length;
  if (n === 0) {
    fn(0, 0, block.offset);
    return;
  }
  while (s < n) {
    let nl = b.indexOf(NL, s);
    const next = nl < 0 ? n : nl + 1;
    if (nl < 0) nl = n;
    const e = nl > s && b[nl - 1] === CR ? nl - 1 : nl;
    fn(s, e, block.offset + s);
    s = next;
  }
};

/** ASCII whitespace as docs/design.md defines it: space, \t, \n, \v, \f, \r. */
export const WHITESPACE = new Uint8Array(256);
for (const c of [0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d]) WHITESPACE[c] = 1;

/** [start, end) with ASCII whitespace trimmed off both ends. */
export const trimRange = (b: Buffer, start: number, end: number): [number, number] => {
  let s = start;
  let e = end;
  while (s < e && WHITESPACE[b[s]!]) s++;
  while (e > s && WHITESPACE[b[e - 1]!]) e--;
  return [s, e];
};

/** Text of a line for messages: at most `max` characters, decoded as UTF-8. */
export const previewText = (b: Buffer, start: number, end: number, max = 60): string => {
  const text = b.toString("utf8", start, Math.min(end, start + max * 4));
  return text.length > max ? `${text.slice(0, max)}…` : text;
};

type Latin1Sliceable = { latin1Slice(start: number, end: number): string };

/**
 * Bytes [start, end) as a latin1 string: one char per byte, so it is a lossless,
 * fast map key for arbitrary bytes (decoded as UTF-8 only for output).
 * `latin1Slice` is Buffer's own fast path behind toString("latin1") (Node ≥ 0.x, not in the typings).
 */
export const latin1 = (b: Buffer, start: number, end: number): string => (b as unknown as Latin1Sliceable).latin1Slice(start, end);

/** A latin1 "byte string" back to text, decoding its bytes as UTF-8. */
export const bytesToUtf8 = (s: string): string => Buffer.from(s, "latin1").toString("utf8");
