/**
 * A lab keyed op's reduce on a mapper thread (ThreadMapperHost.reduce): its runs go in, it
 * spills through the main thread's store (scratchPort.ts), its rows come out in key order and
 * equal an independent count; a thread ended mid-merge leaves no spilled run behind.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { BlobStore } from "../../lib/core/ports.js";
import { encodeShuffle, type KeyedTable } from "../../lib/core/shuffle/shuffleRun.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { ThreadMapperHost } from "../../lib/sandbox/ThreadMapperHost.js";
import { requireBuild, ROOT } from "../helpers/devCloud.js";

let dir: string;
let module: string;
let host: ThreadMapperHost;

beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-thread-reduce-"));
  module = path.join(dir, "keyed-ops.mjs");
  const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
  await writeFile(
    module,
    `import { defineOp } from ${JSON.stringify(defineOp)};
// Gathers every value of a key (a reduce op's lists), then counts them; never returns for key "stuck".
export const tally = defineOp({
  name: "tally",
  format: "lines",
  pairs: (line, emit) => emit(line, 1),
  reduce: (key, values) => { if (key === "stuck") for (;;) {} return { key, n: values.length }; },
});
`,
  );
  host = new ThreadMapperHost({ opsModules: [module], taskTimeoutSeconds: 60 });
}, 60_000);

afterAll(async () => {
  await host?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs of `[key, value]` lines, as map tasks write them: a reduce op's values are lists. */
const runsOf = (words: readonly string[], runs: number): Buffer[] =>
  Array.from({ length: runs }, (_, r) => {
    const counts = new Map<string, unknown[]>();
    for (let i = r; i < words.length; i += runs) counts.set(words[i]!, [...(counts.get(words[i]!) ?? []), 1]);
    const table: KeyedTable = [...counts];
    return encodeShuffle(table, 1).bytes;
  });

describe("a lab keyed op's reduce on its thread", () => {
  it("spills through the worker's store, writes rows equal to awk's count in byte order, and leaves no run", async () => {
    const words = Array.from({ length: 20_000 }, (_, i) => `w${(i * 7919) % 3001}`);
    const scratchDir = path.join(dir, "scratch");
    const scratch = new FsBlobStore(scratchDir);
    const reducer = host.reduce(
      { op: "tally", params: {}, what: "partition 0's reduce task", spillBytes: 16 * 1024, prefix: "spill/" },
      scratch,
    );
    const pieces: Buffer[] = [];
    let written: { records: number; spilledBytes: number };
    try {
      for (const run of runsOf(words, 7)) await reducer.addRun(run, "a run");
      written = await reducer.finish(async (piece) => {
        pieces.push(piece);
      });
    } finally {
      await reducer.close();
    }
    const rows = Buffer.concat(pieces).toString().split("\n").filter(Boolean);
    const awk = execFileSync("sh", ["-c", "awk '{ n[$0]++ } END { for (k in n) print k, n[k] }' | LC_ALL=C sort"], {
      input: `${words.join("\n")}\n`,
    })
      .toString()
      .trim()
      .split("\n");
    expect(rows.map((r) => JSON.parse(r) as { key: string; n: number }).map((r) => `${r.key} ${r.n}`)).toEqual(awk);
    expect(written.records).toBe(awk.length);
    expect(written.spilledBytes).toBeGreaterThan(0);
    expect(await readdir(path.join(scratchDir, "spill")).catch(() => [])).toEqual([]);
  }, 60_000);

  it("stopped while a spilled run is still being written: removes that run too once its write lands", async () => {
    const words = Array.from({ length: 20_000 }, (_, i) => `w${i % 4000}`);
    const scratchDir = path.join(dir, "scratch-slow");
    const fs = new FsBlobStore(scratchDir);
    let puts = 0;
    let landed = 0;
    // Each run's write takes 400 ms (an S3 spill): the task is stopped while one is in flight.
    const slow: BlobStore = {
      name: fs.name,
      head: (k) => fs.head(k),
      get: (k, o) => fs.get(k, o),
      list: (p) => fs.list(p),
      delete: (k) => fs.delete(k),
      put: async (k, body, o) => {
        puts++;
        await new Promise((r) => setTimeout(r, 400));
        await fs.put(k, body, o);
        landed++;
      },
    };
    const stop = new AbortController();
    const reducer = host.reduce(
      { op: "tally", params: {}, what: "partition 0's reduce task", spillBytes: 16 * 1024, prefix: "spill/", signal: stop.signal },
      slow,
    );
    const fed = (async () => {
      for (const run of runsOf(words, 9)) await reducer.addRun(run, "a run");
    })().catch((e: unknown) => e);
    await vi.waitFor(() => expect(puts).toBeGreaterThan(0), { timeout: 10_000, interval: 5 });
    stop.abort(new Error("a backup copy won"));
    await fed;
    await reducer.close();
    // Every write begun has landed: what is left now stays.
    await vi.waitFor(() => expect(landed).toBe(puts), { timeout: 10_000, interval: 20 });
    expect(await readdir(path.join(scratchDir, "spill")).catch(() => [])).toEqual([]);
  }, 60_000);

  it("past the task's limit: ends the thread with TASK_TIMEOUT naming the task, and removes the runs it spilled", async () => {
    const words = [...Array.from({ length: 20_000 }, (_, i) => `w${i % 2000}`), "stuck"];
    const scratchDir = path.join(dir, "scratch-stuck");
    const scratch = new FsBlobStore(scratchDir);
    const reducer = host.reduce(
      { op: "tally", params: {}, what: "partition 3's reduce task", spillBytes: 16 * 1024, prefix: "spill/", timeoutSeconds: 2 },
      scratch,
    );
    let spilled: string[] = [];
    const err = await (async () => {
      for (const run of runsOf(words, 5)) await reducer.addRun(run, "a run");
      spilled = await readdir(path.join(scratchDir, "spill"));
      await reducer.finish(async () => undefined);
    })().then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    );
    await reducer.close();
    expect(spilled.length).toBeGreaterThan(0);
    expect(err?.code).toBe("TASK_TIMEOUT");
    expect(err?.message).toBe("partition 3's reduce task did not finish within 2 s (taskTimeoutSeconds)");
    expect(await readdir(path.join(scratchDir, "spill"))).toEqual([]);
  }, 60_000);

  it("under a small heap limit spills early enough to finish, not run the process out of memory", async () => {
    // A process of its own: a thread past its heap in a Map's growth can abort the whole process.
    const counting = path.join(dir, "counting.mjs");
    await writeFile(
      counting,
      `import { defineOp } from ${JSON.stringify(pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href)};
export const tally = defineOp({ name: "tally-sum", format: "lines", pairs: (l, emit) => emit(l, 1), combine: (a, b) => a + b });
`,
    );
    const script = path.join(dir, "small-heap.mjs");
    const dist = (p: string) => JSON.stringify(pathToFileURL(path.join(ROOT, "dist/lib", p)).href);
    await writeFile(
      script,
      `import { ThreadMapperHost } from ${dist("sandbox/ThreadMapperHost.js")};
import { FsBlobStore } from ${dist("fs/FsBlobStore.js")};
import { encodeShuffle } from ${dist("core/shuffle/shuffleRun.js")};
const host = new ThreadMapperHost({ opsModules: [${JSON.stringify(counting)}], taskTimeoutSeconds: 120 });
const scratch = new FsBlobStore(${JSON.stringify(path.join(dir, "scratch-small-heap"))});
const r = host.reduce({ op: "tally-sum", params: {}, what: "p", spillBytes: 64 * 2 ** 20, prefix: "sp/", memoryMiB: 64 }, scratch);
try {
  for (let run = 0; run < 4; run++) {
    const table = [];
    for (let i = run; i < 800000; i += 4) table.push(["key-" + i, 1]);
    await r.addRun(encodeShuffle(table, 1).bytes, "run " + run);
  }
  console.log(JSON.stringify(await r.finish(async () => {})));
} finally {
  await r.close();
  await host.close();
}
`,
    );
    const out = execFileSync(process.execPath, [script], { encoding: "utf8" });
    const written = JSON.parse(out) as { records: number; spilledBytes: number };
    expect(written.records).toBe(800_000);
    expect(written.spilledBytes).toBeGreaterThan(0);
  }, 120_000);
});
