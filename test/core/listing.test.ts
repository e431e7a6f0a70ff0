/**
 * A job's inputs listed under the splitter's time budget (lib/core/pipeline/listing.ts), on a
 * fake clock: each listed object costs the invocation 10 ms, so an invocation of 1 s that keeps
 * 0.9 s back lists three pieces of five and hands on. Across invocations, the inputs are those of
 * one listing in one go, in order, each once; a copy of a continuation, a piece stored again
 * with another cursor, and the input limit behave as one listing would.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HiddenFiles } from "../../lib/core/hiddenNames.js";
import { jobSpecOutputKeys, listingPieceKey, listingSpecKey } from "../../lib/core/keys.js";
import { cancelJob } from "../../lib/core/pipeline/cancel.js";
import { handleObjectCreated } from "../../lib/core/pipeline/trigger.js";
import { readBytes, writeJson } from "../../lib/core/pipeline/blobJson.js";
import { listJobInputs, outOfTime, type Listing } from "../../lib/core/pipeline/listing.js";
import { resolveS3Inputs } from "../../lib/core/pipeline/resolveInputs.js";
import type { BlobStore, ListingContinuation, ListOptions } from "../../lib/core/ports.js";
import { describeStatus } from "../../lib/cli/commands/status.js";
import { localPipeline } from "../helpers/jobs.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-listing-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const OBJECTS = 47;
const PER_PIECE = 5;
const URIS = ["s3://lab-in/plate/"];
const JOB = "listed-plate";

/** A prefix of OBJECTS objects and two hidden ones, on a store whose listing runs a fake invocation's clock down. */
const setUp = async (name: string, maxInputs = 1000) => {
  const { inputs, output, deps } = localPipeline(path.join(dir, name), { inputsPerPiece: PER_PIECE, maxInputs });
  for (let i = 0; i < OBJECTS; i++) await inputs.put(`plate/img-${String(i).padStart(2, "0")}.txt`, `line ${i}\n`);
  await inputs.put("plate/zz/_SUCCESS", "");
  await inputs.put("plate/zz/.DS_Store", "x");
  const clock = { left: 0 };
  const startsAfter: (string | undefined)[] = [];
  const timed: BlobStore = Object.assign(Object.create(inputs) as BlobStore, {
    async *list(prefix: string, options?: ListOptions) {
      startsAfter.push(options?.startAfter);
      for await (const o of inputs.list(prefix, options)) {
        clock.left -= 10;
        yield o;
      }
    },
  });
  const invoke = (hint?: number): Promise<Listing> => {
    clock.left = 1000;
    return listJobInputs({ ...deps, inputStore: () => timed }, JOB, URIS, {
      spec: '{"op":"count"}',
      resumed: hint !== undefined,
      ...(hint !== undefined ? { hint } : {}),
      budget: { remainingMs: () => clock.left, reserveMs: 900 },
    });
  };
  /** Invocations from the first until one lists the end: each one's outcome. */
  const untilListed = async (): Promise<Listing[]> => {
    const outcomes = [await invoke()];
    while (outcomes.at(-1)!.kind === "handedOn") {
      const last = outcomes.at(-1) as Extract<Listing, { kind: "handedOn" }>;
      outcomes.push(await invoke(last.seq));
    }
    return outcomes;
  };
  return { inputs, output, deps, invoke, untilListed, startsAfter };
};

/** Where each piece's listing starts: after the last key of the piece before. */
const EACH_PIECE = [undefined, ...Array.from({ length: 9 }, (_, i) => `plate/img-${String(i * 5 + 4).padStart(2, "0")}.txt`)];

const jsonAt = async (store: BlobStore, key: string): Promise<Record<string, unknown>> =>
  JSON.parse((await readBytes(store, key)).toString("utf8")) as Record<string, unknown>;

const oneGo = async (store: BlobStore) => {
  const hidden = new HiddenFiles();
  const inputs = await resolveS3Inputs({ inputStore: () => store }, URIS, hidden);
  return { inputs, hidden };
};

describe("the listing budget", () => {
  it("is spent when the invocation has less left than its reserve", () => {
    let left = 5000;
    const budget = { remainingMs: () => left, reserveMs: 1000 };
    expect(outOfTime(budget)).toBe(false);
    left = 1000;
    expect(outOfTime(budget)).toBe(false);
    left = 999;
    expect(outOfTime(budget)).toBe(true);
  });

  it("hands on after the pieces that spend it, and the last invocation has every input once, in order", async () => {
    const s = await setUp("budget");
    const outcomes = await s.untilListed();
    // 15 objects (150 ms) per invocation: pieces 3, 6, 9; the fourth lists the rest (and the hidden two).
    expect(outcomes.slice(0, -1)).toEqual([
      { kind: "handedOn", seq: 3, found: 15 },
      { kind: "handedOn", seq: 6, found: 30 },
      { kind: "handedOn", seq: 9, found: 45 },
    ]);
    const last = outcomes.at(-1) as Extract<Listing, { kind: "listed" }>;
    const whole = await oneGo(s.inputs);
    expect(last.inputs).toEqual(whole.inputs);
    expect(last.inputs).toHaveLength(OBJECTS);
    expect({ count: last.hidden.count, first: last.hidden.first }).toEqual({ count: 2, first: whole.hidden.first });
    // Each piece listed on after the last key the one before it saw, across invocations too: no key listed twice.
    expect(s.startsAfter).toEqual(EACH_PIECE);
    // The spec as read is stored with the pieces, for the continuations to list the same inputs.
    expect(await jsonAt(s.output, listingSpecKey(JOB))).toEqual({ v: 1, spec: '{"op":"count"}' });
  });

  it("counts a hidden folder once, as a local walk does, also when pieces and invocations end inside it", async () => {
    const { inputs, deps } = localPipeline(path.join(dir, "hidden-folder"), { inputsPerPiece: PER_PIECE });
    const keys = [
      "repo/a.txt",
      ...Array.from({ length: 12 }, (_, i) => `repo/.git/objects/${String(i).padStart(2, "0")}`),
      "repo/.gitignore",
      "repo/_logs/run.log",
      "repo/b.txt",
    ];
    for (const k of keys) await inputs.put(k, "x\n");
    // Folder markers, as consoles make them (S3 lists them, a folder cannot hold them): one of an
    // empty hidden folder, and .git's own, where a piece may end.
    const markers = ["repo/.empty/", "repo/.git/"].map((key) => ({ key, size: 0, etag: '"d41d8cd98f00b204e9800998ecf8427e"' }));
    const clock = { left: 0 };
    const timed: BlobStore = Object.assign(Object.create(inputs) as BlobStore, {
      async *list(prefix: string, options?: ListOptions) {
        const all = [];
        for await (const o of inputs.list(prefix)) all.push(o);
        all.push(...markers.filter((m) => m.key.startsWith(prefix)));
        all.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
        for (const o of all) {
          if (options?.startAfter !== undefined && Buffer.compare(Buffer.from(o.key), Buffer.from(options.startAfter)) <= 0) continue;
          clock.left -= 10;
          yield o;
        }
      },
    });
    const invoke = (hint?: number): Promise<Listing> => {
      clock.left = 1000;
      return listJobInputs({ ...deps, inputStore: () => timed }, "hidden-folder", ["s3://lab-in/repo/"], {
        spec: '{"op":"count"}',
        resumed: hint !== undefined,
        ...(hint !== undefined ? { hint } : {}),
        budget: { remainingMs: () => clock.left, reserveMs: 900 },
      });
    };
    let outcome = await invoke();
    let invocations = 1;
    while (outcome.kind === "handedOn") {
      outcome = await invoke(outcome.seq);
      invocations++;
    }
    // The .git folder's 12 objects span pieces of 5 keys and more than one invocation.
    expect(invocations).toBeGreaterThan(1);
    const listed = outcome as Extract<Listing, { kind: "listed" }>;
    expect(listed.inputs.map((i) => i.key)).toEqual(["repo/a.txt", "repo/b.txt"]);
    expect({ count: listed.hidden.count, first: listed.hidden.first }).toEqual({
      count: 4,
      first: ["s3://lab-in/repo/.empty/", "s3://lab-in/repo/.git/", "s3://lab-in/repo/.gitignore"],
    });
  });

  it("lists in one go with time to spare, storing nothing", async () => {
    const s = await setUp("in-time");
    const listing = await listJobInputs({ ...s.deps }, JOB, URIS, {
      spec: "{}",
      resumed: false,
      budget: { remainingMs: () => 300_000, reserveMs: 90_000 },
    });
    expect(listing.kind).toBe("listed");
    expect(await s.output.head(listingSpecKey(JOB))).toBeUndefined();
    expect(await s.output.head(listingPieceKey(JOB, 1))).toBeUndefined();
  });

  it("goes on from the last stored piece when a copy of an earlier continuation comes", async () => {
    const s = await setUp("copies");
    expect(await s.invoke()).toMatchObject({ kind: "handedOn", seq: 3 });
    expect(await s.invoke(3)).toMatchObject({ kind: "handedOn", seq: 6 });
    // A second copy of the first continuation: it finds pieces 4 to 6, and lists on after them.
    expect(await s.invoke(3)).toMatchObject({ kind: "handedOn", seq: 9, found: 45 });
    // A copy with no hint (Lambda's retry of the spec's event) does too.
    const last = await s.invoke(0);
    expect(last.kind).toBe("listed");
    expect((last as Extract<Listing, { kind: "listed" }>).inputs).toEqual((await oneGo(s.inputs)).inputs);
    expect(s.startsAfter).toEqual(EACH_PIECE);
  });

  it("lists again from where stored pieces stop following one another (two copies raced)", async () => {
    const s = await setUp("raced");
    await s.invoke();
    await s.invoke(3);
    // Piece 5 as another copy stored it, from another cursor: pieces 5 and 6 no longer follow piece 4.
    const five = await jsonAt(s.output, listingPieceKey(JOB, 5));
    await writeJson(s.output, listingPieceKey(JOB, 5), { ...five, from: { ...(five["from"] as object), after: "plate/img-18.txt" } });
    const outcomes = [await s.invoke(6)];
    while (outcomes.at(-1)!.kind === "handedOn") outcomes.push(await s.invoke((outcomes.at(-1) as { seq: number }).seq));
    const last = outcomes.at(-1) as Extract<Listing, { kind: "listed" }>;
    expect(last.inputs).toEqual((await oneGo(s.inputs)).inputs);
  });

  it("counts the input limit across invocations", async () => {
    const s = await setUp("limit", 40);
    await expect(s.untilListed()).rejects.toThrow(/more than 40 inputs/);
  });
});

describe("a job's status while it lists", () => {
  it("tells how many objects were listed so far, in place of chunks", () => {
    const line = describeStatus({ jobId: "big", state: "running", chunks: 0, done: 0, op: "count", listing: { objects: 1500, pieces: 3 } });
    expect(line).toBe("big  running  listing: 1,500 objects so far  count");
  });
});

describe("a job that ends while it lists", () => {
  const CONFIG = { defaultChunkSize: 1 << 20, maxAttempts: 3, jobDeadlineSeconds: 3600, listingReserveMs: 10 * 60_000 };
  /** 12 objects of one line each, and a splitter out of time after each piece of 5. */
  const handingOn = async (name: string) => {
    const root = await mkdtemp(path.join(dir, `${name}-`));
    const sent: ListingContinuation[] = [];
    const p = localPipeline(root, { inputsPerPiece: 5, continuations: { handOn: async (c) => void sent.push(c) } });
    for (let i = 0; i < 12; i++) await p.inputs.put(`plate/img-${String(i).padStart(2, "0")}.txt`, `line ${i}\n`);
    const invocation = { remainingMs: () => 300_000 };
    const obj = { bucket: "lab-in", key: "_jobs/plate.json" };
    const fire = (seq?: number) => handleObjectCreated(p.deps, CONFIG, obj, invocation, seq !== undefined ? { seq } : undefined);
    const status = async () => jsonAt(p.output, jobSpecOutputKeys("plate").status);
    return { ...p, sent, fire, status };
  };

  it("a spec uploaded again after its job failed mid-listing lists afresh, not the failed listing's stored spec", async () => {
    const s = await handingOn("failed-then-fixed");
    await s.inputs.put("_jobs/plate.json", JSON.stringify({ op: "count", inputs: ["s3://lab-in/plate/", "s3://lab-in/missing/"] }));
    let out = await s.fire();
    while (out.kind === "listing") out = await s.fire(out.pieces);
    expect(out.kind).toBe("failed");
    await s.inputs.put("_jobs/plate.json", JSON.stringify({ op: "count", inputs: ["s3://lab-in/plate/"] }));
    let again = await s.fire();
    while (again.kind === "listing") again = await s.fire(again.pieces);
    expect(again).toMatchObject({ kind: "started" });
    expect(await s.status()).toMatchObject({ state: "running" });
  });

  it("a job cancelled while it lists stays cancelled: its next continuation stops, sends none and queues no task", async () => {
    const s = await handingOn("cancelled");
    await s.inputs.put("_jobs/plate.json", JSON.stringify({ op: "count", inputs: ["s3://lab-in/plate/"] }));
    const first = await s.fire();
    expect(first.kind).toBe("listing");
    await cancelJob({ output: s.output, log: s.deps.log }, "plate", jobSpecOutputKeys("plate"));
    const sentBefore = s.sent.length;
    const next = await s.fire((first as { pieces: number }).pieces);
    expect(next.kind).toBe("ignored");
    expect(s.sent.length).toBe(sentBefore);
    expect(await s.queue.depth()).toEqual({ visible: 0, inFlight: 0 });
    expect(await s.status()).toMatchObject({ state: "cancelled" });
  });
});
