/**
 * The reducer's wake-ups for a job whose merge or reduce tasks are all that is left: one chain
 * per job. A wake delivered twice, or met by one an event sent meanwhile, ends its chain rather
 * than fork a second; a job keeps exactly one wake pending.
 */
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../lib/core/log.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { keepAwake, wakeOf } from "../../lib/core/pipeline/wake.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-wake-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

describe("keepAwake", () => {
  it("keeps one wake pending per job, whatever order events, wakes and duplicates come in", async () => {
    const output = new FsBlobStore(path.join(dir, "out"));
    let now = 1_000_000;
    const sent: { jobId: string; seconds: number; due: number }[] = [];
    const deps = {
      output,
      inputStore: () => output,
      registry: new OpRegistry(),
      log: silentLogger,
      now: () => now,
      wake: { wakeAfter: async (jobId: string, seconds: number, due: number) => void sent.push({ jobId, seconds, due }) },
    };
    const LEASE = 60_000;
    // Merge tasks queued: the first event sends a wake; more events while it is pending send none.
    expect(await keepAwake(deps, "j", LEASE)).toBe(true);
    now += 10_000;
    expect(await keepAwake(deps, "j", LEASE)).toBe(false);
    expect(sent).toEqual([{ jobId: "j", seconds: 60, due: 1_060_000 }]);
    const first = sent[0]!.due;
    // Past its due time, an event comes before the wake is handled: it sends the next one...
    now = first + 500;
    expect(await keepAwake(deps, "j", LEASE)).toBe(true);
    // ...and the late wake, seeing a later one pending, ends its chain instead of forking another.
    expect(await keepAwake(deps, "j", LEASE, first)).toBe(false);
    expect(sent).toHaveLength(2);
    // The pending wake arrives: it sends the next; delivered twice, the copy sends none.
    const second = sent[1]!.due;
    now = second;
    expect(await keepAwake(deps, "j", LEASE, second)).toBe(true);
    expect(await keepAwake(deps, "j", LEASE, second)).toBe(false);
    expect(sent.map((s) => s.due)).toEqual([first, second, second + 60_000]);
    // Another job's chain is its own; a delay past SQS's 15 minutes is capped at them.
    expect(await keepAwake(deps, "k", 3_600_000)).toBe(true);
    expect(sent.at(-1)).toMatchObject({ jobId: "k", seconds: 900 });
  });

  it("reads a wake-up message, and nothing else, as one", () => {
    expect(wakeOf({ wake: { jobId: "j", due: 5 } })).toEqual({ jobId: "j", due: 5 });
    expect(wakeOf({ wake: { jobId: "j" } })).toEqual({ jobId: "j" });
    expect(wakeOf({ Records: [] })).toBeUndefined();
    expect(wakeOf({ wake: { jobId: "" } })).toBeUndefined();
  });
});
