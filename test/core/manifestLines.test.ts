/**
 * A manifest's lines read a window at a time (manifestLines.ts): a line too long to name an
 * object is refused at its line and byte, not held whole however long it grows.
 */
import { describe, expect, it } from "vitest";
import type { CloudmillError } from "../../lib/core/errors.js";
import { MAX_MANIFEST_LINE } from "../../lib/core/pipeline/inputManifests.js";
import { manifestLines } from "../../lib/core/pipeline/manifestLines.js";

const WINDOW = 64 * 1024;

const readerOf = (file: Buffer) => ({ read: async (start: number, end: number) => file.subarray(start, end) });

describe("a manifest's lines", () => {
  it("a line longer than MAX_MANIFEST_LINE is refused at its line and first byte, before the file's end is read", async () => {
    const head = "data/a.txt\ndata/b.txt\n";
    // Line 3 runs on past the limit, and the file goes on for as long again after it.
    const file = Buffer.concat([Buffer.from(head), Buffer.alloc(2 * MAX_MANIFEST_LINE, "x"), Buffer.from("\ndata/c.txt\n")]);
    const { read } = readerOf(file);
    const seen: string[] = [];
    let reads = 0;
    const counting = async (start: number, end: number) => {
      reads++;
      return read(start, end);
    };
    const err = await (async () => {
      for await (const l of manifestLines(counting, file.length, "s3://lab/list.txt", { at: 0, line: 0 }, WINDOW)) seen.push(l.row);
    })().then(
      () => undefined,
      (e: unknown) => e as CloudmillError,
    );
    expect(seen).toEqual(["data/a.txt", "data/b.txt"]);
    expect(err?.code).toBe("INVALID_SPEC");
    expect(err?.context).toMatchObject({ input: "s3://lab/list.txt", line: 3, offset: Buffer.byteLength(head) });
    expect(err?.message).toMatch(/a line longer than 1048576 bytes/);
    // Refused once the line passed the limit: about MAX_MANIFEST_LINE / WINDOW reads, not the whole file's.
    expect(reads).toBeLessThanOrEqual(Math.ceil((Buffer.byteLength(head) + MAX_MANIFEST_LINE) / WINDOW) + 1);
  });

  it.each([
    ["inside the first window", "a\n", "\nb\n"],
    ["the last, with no newline", "a\n", ""],
  ])("a line too long %s is refused too", async (_, before, after) => {
    const file = Buffer.concat([Buffer.from(before), Buffer.alloc(MAX_MANIFEST_LINE + 10, "y"), Buffer.from(after)]);
    // One window holds the whole file: no line is carried from one read to the next.
    const window = file.length + 1;
    const err = await (async () => {
      for await (const _ of manifestLines(readerOf(file).read, file.length, "list.txt", { at: 0, line: 0 }, window));
    })().then(
      () => undefined,
      (e: unknown) => e as CloudmillError,
    );
    expect(err?.context).toMatchObject({ input: "list.txt", line: 2, offset: Buffer.byteLength(before) });
  });

  it("a line just under the limit is read whole, across windows", async () => {
    const long = "k".repeat(MAX_MANIFEST_LINE - 1);
    const file = Buffer.from(`first\n${long}\nlast`);
    const rows: string[] = [];
    for await (const l of manifestLines(readerOf(file).read, file.length, "list.txt", { at: 0, line: 0 }, WINDOW)) rows.push(l.row);
    expect(rows.map((r) => r.length)).toEqual([5, MAX_MANIFEST_LINE - 1, 4]);
  });
});
