/**
 * A manifest's inputs resolved under the splitter's time budget (lib/core/pipeline/listing.ts,
 * resolveInputs.ts), on a fake clock: each HEAD of a listed object costs the invocation 10 ms, so
 * an invocation of 1 s that keeps 0.9 s back resolves three pieces of five lines and hands on.
 * Across invocations, each kind of manifest (a plain list, a Batch Operations CSV, an inventory
 * without sizes) gives the inputs of one resolution in one go, in order, each object HEADed
 * once; a copy of a continuation goes on from the store; a bad line in a later piece fails the
 * job naming its line; a manifest rewritten between invocations is refused.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jobSpecOutputKeys, listingPieceKey } from "../../lib/core/keys.js";
import { readBytes } from "../../lib/core/pipeline/blobJson.js";
import { listJobInputs, type Listing } from "../../lib/core/pipeline/listing.js";
import { resolveS3Inputs } from "../../lib/core/pipeline/resolveInputs.js";
import { handleObjectCreated } from "../../lib/core/pipeline/trigger.js";
import type { BlobStore, ListingContinuation } from "../../lib/core/ports.js";
import { localPipeline } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-manifest-listing-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const OBJECTS = 47;
const PER_PIECE = 5;
const JOB = "listed-manifest";
const keyOf = (i: number): string => `plate/img-${String(i).padStart(2, "0")}.txt`;

/** S3 Inventory's CSV key encoding: form-encoded, `+` for a space. */
const inventoryKey = (key: string): string => encodeURIComponent(key).replaceAll("%2F", "/").replaceAll("%20", "+");

/** Each kind of manifest over the OBJECTS objects, in order: where it is, and how to write it. */
const KINDS = {
  list: {
    // 5 lines a piece, 15 an invocation: its comment and blank lines take the room of 2 inputs in the first, 1 in the second.
    found: [13, 26, 40],
    uri: "manifest:s3://lab-in/lists/keys.txt",
    // Comments and blank lines among the keys, a full URI: lines a piece reads and takes nothing of.
    write: (inputs: BlobStore) =>
      inputs.put(
        "lists/keys.txt",
        ["# the plate", ...Array.from({ length: OBJECTS }, (_, i) => (i % 9 === 4 ? `\ns3://lab-in/${keyOf(i)}` : keyOf(i)))].join("\n"),
      ),
  },
  csv: {
    found: [15, 30, 45],
    uri: "manifest:s3://lab-in/lists/keys.csv",
    write: (inputs: BlobStore) =>
      inputs.put(
        "lists/keys.csv",
        `${Array.from({ length: OBJECTS }, (_, i) => `lab-in,${encodeURIComponent(keyOf(i))}`).join("\r\n")}\r\n`,
      ),
  },
  inventory: {
    found: [15, 30, 45],
    uri: "manifest:s3://lab-in/inventory/2026-12-01/manifest.json",
    // Two data files (the cursor crosses from one to the other), keys only: each object is HEADed.
    write: async (inputs: BlobStore) => {
      const rows = Array.from({ length: OBJECTS }, (_, i) => `"lab-in","${inventoryKey(keyOf(i))}"`);
      await inputs.put("inventory/data/a.csv.gz", gzipSync(`${rows.slice(0, 23).join("\n")}\n`));
      await inputs.put("inventory/data/b.csv.gz", gzipSync(`${rows.slice(23).join("\n")}\n`));
      await inputs.put(
        "inventory/2026-12-01/manifest.json",
        JSON.stringify({
          sourceBucket: "lab-in",
          destinationBucket: "arn:aws:s3:::lab-in",
          fileFormat: "CSV",
          fileSchema: "Bucket, Key",
          files: [{ key: "inventory/data/a.csv.gz" }, { key: "inventory/data/b.csv.gz" }],
        }),
      );
    },
  },
} as const;

/** OBJECTS objects, a manifest of them, and a store whose HEADs run a fake invocation's clock down (and are counted). */
const setUp = async (name: string, kind: keyof typeof KINDS) => {
  const { inputs, output, deps } = localPipeline(path.join(dir, name), { inputsPerPiece: PER_PIECE });
  for (let i = 0; i < OBJECTS; i++) await inputs.put(keyOf(i), `line ${i}\n`);
  await KINDS[kind].write(inputs);
  const clock = { left: 0 };
  const heads = new Map<string, number>();
  const timed: BlobStore = Object.assign(Object.create(inputs) as BlobStore, {
    async head(key: string) {
      if (key.startsWith("plate/")) {
        clock.left -= 10;
        heads.set(key, (heads.get(key) ?? 0) + 1);
      }
      return inputs.head(key);
    },
  });
  const uris = [KINDS[kind].uri];
  const invoke = (hint?: number): Promise<Listing> => {
    clock.left = 1000;
    return listJobInputs({ ...deps, inputStore: () => timed }, JOB, uris, {
      spec: '{"op":"count"}',
      resumed: hint !== undefined,
      ...(hint !== undefined ? { hint } : {}),
      budget: { remainingMs: () => clock.left, reserveMs: 900 },
    });
  };
  const oneGo = () => resolveS3Inputs({ inputStore: () => inputs }, uris);
  return { inputs, output, invoke, oneGo, heads };
};

const listed = (l: Listing) => {
  expect(l.kind).toBe("listed");
  return (l as Extract<Listing, { kind: "listed" }>).inputs;
};

describe("a manifest resolved under the listing budget", () => {
  for (const kind of Object.keys(KINDS) as (keyof typeof KINDS)[]) {
    it(`goes on across invocations a piece at a time (${kind}): every input once, in order, each object HEADed once`, async () => {
      const s = await setUp(`budget-${kind}`, kind);
      const outcomes = [await s.invoke()];
      while (outcomes.at(-1)!.kind === "handedOn") outcomes.push(await s.invoke((outcomes.at(-1) as { seq: number }).seq));
      // Three pieces of five lines (150 ms of HEADs at most) per invocation; the fourth resolves the rest.
      expect(outcomes.slice(0, -1).map((o) => (o as { seq: number; found: number }).found)).toEqual(KINDS[kind].found);
      const inputs = listed(outcomes.at(-1)!);
      expect(inputs).toEqual(await s.oneGo());
      expect(inputs.map((i) => i.key)).toEqual(Array.from({ length: OBJECTS }, (_, i) => keyOf(i)));
      expect([...s.heads.values()].every((n) => n === 1)).toBe(true);
      expect(s.heads.size).toBe(OBJECTS);
    });
  }

  it("goes on from the last stored piece when a copy of a continuation comes", async () => {
    const s = await setUp("copies", "csv");
    expect(await s.invoke()).toMatchObject({ kind: "handedOn", seq: 3, found: 15 });
    expect(await s.invoke(3)).toMatchObject({ kind: "handedOn", seq: 6, found: 30 });
    // The first continuation again: it finds pieces 4 to 6 and resolves on after them.
    expect(await s.invoke(3)).toMatchObject({ kind: "handedOn", seq: 9, found: 45 });
    // A copy of the spec's own event (no hint) does too.
    expect(listed(await s.invoke(0))).toEqual(await s.oneGo());
    expect([...s.heads.values()].every((n) => n === 1)).toBe(true);
    expect(s.heads.size).toBe(OBJECTS);
    // Each piece starts at the line after the one before ended: its number, and its byte (15 rows of 27 bytes).
    const piece = JSON.parse((await readBytes(s.output, listingPieceKey(JOB, 4))).toString("utf8")) as { from: object };
    expect(piece.from).toMatchObject({ uri: 0, taken: 15, manifest: { line: 15, at: 15 * 27 } });
  });

  it("refuses a manifest rewritten between invocations, rather than go on at a line of another file", async () => {
    const s = await setUp("rewritten", "list");
    const first = await s.invoke();
    expect(first.kind).toBe("handedOn");
    await s.inputs.put("lists/keys.txt", `${keyOf(3)}\n${keyOf(1)}\n`);
    await expect(s.invoke((first as { seq: number }).seq)).rejects.toMatchObject({
      code: "INPUT_CHANGED",
      context: { input: "s3://lab-in/lists/keys.txt" },
    });
  });
});

describe("a manifest's bad line in a later piece", () => {
  const CONFIG = { defaultChunkSize: 1 << 20, maxAttempts: 3, jobDeadlineSeconds: 3600, listingReserveMs: 10 * 60_000 };

  it("fails the job naming the manifest and the line, after earlier pieces were handed on", async () => {
    const root = await mkdtemp(path.join(dir, "bad-line-"));
    const sent: ListingContinuation[] = [];
    const p = localPipeline(root, { inputsPerPiece: PER_PIECE, continuations: { handOn: async (c) => void sent.push(c) } });
    for (let i = 0; i < OBJECTS; i++) await p.inputs.put(keyOf(i), `line ${i}\n`);
    // Line 38 names an object that is not there.
    const lines = Array.from({ length: OBJECTS }, (_, i) => (i === 37 ? "plate/img-gone.txt" : keyOf(i)));
    await p.inputs.put("lists/gone.txt", `${lines.join("\n")}\n`);
    await p.inputs.put("_jobs/gone.json", JSON.stringify({ op: "count", inputs: ["manifest:s3://lab-in/lists/gone.txt"] }));
    const obj = { bucket: "lab-in", key: "_jobs/gone.json" };
    // Out of time after each piece (the reserve is more than the invocation has).
    const fire = (seq?: number) =>
      handleObjectCreated(p.deps, CONFIG, obj, { remainingMs: () => 300_000 }, seq !== undefined ? { seq } : undefined);
    const outcomes = [await fire()];
    while (outcomes.at(-1)!.kind === "listing") outcomes.push(await fire((outcomes.at(-1) as { pieces: number }).pieces));
    // Pieces 1 to 7 (35 lines) handed on one at a time; the eighth holds line 38.
    expect(outcomes.slice(0, -1).map((o) => (o as { pieces: number }).pieces)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(sent).toHaveLength(7);
    const failed = outcomes.at(-1)!;
    expect(failed.kind).toBe("failed");
    expect((failed as { error: string }).error).toContain("s3://lab-in/lists/gone.txt:38");
    expect((failed as { error: string }).error).toContain("s3://lab-in/plate/img-gone.txt: no such object or prefix");
    const status = JSON.parse((await readBytes(p.output, jobSpecOutputKeys("gone").status)).toString("utf8")) as Record<string, unknown>;
    expect(status).toMatchObject({ state: "failed", error: { code: "INPUT_NOT_FOUND", input: "s3://lab-in/lists/gone.txt", line: 38 } });
  });
});
