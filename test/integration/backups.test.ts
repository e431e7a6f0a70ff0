/**
 * Stragglers get a backup: once most chunks are mapped, a chunk running far longer than their
 * median is mapped once more; the first copy to finish wins, and the other is stopped. The test
 * op blocks for two minutes on one line, but only in the first copy that meets it (a marker file
 * tells the copies apart), so the job can end well before that only through its backup. The
 * result is exact and the status counts the backup.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseJobSpec } from "../../lib/core/job/spec.js";
import { opsRegistry } from "../../lib/core/ops/opModules.js";
import { runLocal } from "../../lib/local/localEngine.js";
import { median, stragglers } from "../../lib/core/pipeline/backups.js";
import { requireBuild, ROOT, startTestCloud, type TestCloud } from "../helpers/devCloud.js";

let dir: string;
let module: string;
/** The first copy to meet the line "slow" creates this file, then blocks. */
let marker: string;

/** 120 lines, 12 to a chunk: 10 chunks, the fourth of which holds "slow". */
const LINES = Array.from({ length: 120 }, (_, i) => (i === 40 ? "slow" : `line ${String(i).padStart(4, "0")}`));
const TEXT = `${LINES.join("\n")}\n`;
const CHUNK = Math.ceil(TEXT.length / 10);

beforeAll(async () => {
  requireBuild();
  dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-backups-"));
  module = path.join(dir, "straggle-ops.mjs");
  marker = path.join(dir, "first-copy");
  const defineOp = pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href;
  await writeFile(
    module,
    `import { defineOp } from ${JSON.stringify(defineOp)};
// No import inside map: the test runner rewrites imported names, and the op's digest (its text) would differ from the workers'.
const fs = process.getBuiltinModule("node:fs");
const MARKER = process.env.STRAGGLE_MARKER ?? ${JSON.stringify(marker)};
export const straggle = defineOp({
  name: "straggle",
  format: "lines",
  map: (line) => {
    if (line !== "slow") return 1;
    try {
      fs.closeSync(fs.openSync(MARKER, "wx"));
    } catch {
      return 1; // a later copy: no wait
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120_000);
    return 1;
  },
  combine: (a, b) => a + b,
});
`,
  );
}, 30_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("the straggler rule", () => {
  it("backs up a chunk past max(3 × median, the floor), only once three quarters are mapped", () => {
    const rule = { chunks: 8, done: 6, medianMs: 400, afterSeconds: 1, now: 10_000 };
    const running = [
      { index: 6, startedAt: 10_000 - 1_300 },
      { index: 7, startedAt: 10_000 - 900 },
    ];
    expect(stragglers(rule, running)).toEqual([6]);
    expect(stragglers({ ...rule, medianMs: 500 }, running)).toEqual([]); // 3 × 500 = 1.5 s
    expect(stragglers({ ...rule, afterSeconds: 2 }, running)).toEqual([]);
    expect(stragglers({ ...rule, done: 5 }, running)).toEqual([]); // under 6 of 8
    expect(stragglers({ ...rule, afterSeconds: 0 }, running)).toEqual([]); // backups off
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
});

describe("a job with one straggling chunk", () => {
  it("on this machine: the backup finishes it, the stuck copy is stopped, and the count is exact", async () => {
    await rm(marker, { force: true });
    const file = path.join(dir, "lines.txt");
    await writeFile(file, TEXT);
    const run = await runLocal({
      spec: parseJobSpec({ op: "straggle", inputs: [file], chunkSize: CHUNK, backupAfterSeconds: 1 }),
      registry: await opsRegistry([module]),
      opsModules: [module],
      workers: 2,
    });
    expect(run.result).toBe(LINES.length);
    expect(run.status).toMatchObject({ state: "succeeded", chunks: 10, backups: { launched: 1, won: 1 } });
  }, 60_000);

  describe("on the emulated fleet", () => {
    let cloud: TestCloud;
    beforeAll(async () => {
      await rm(marker, { force: true });
      // A 3 s visibility timeout: heartbeats (and running markers) every second.
      cloud = await startTestCloud({ opsModules: [module], visibilitySeconds: 3, workerEnv: { STRAGGLE_MARKER: marker } });
    }, 90_000);
    afterAll(async () => cloud?.stop(), 60_000);

    it("the reducer queues one backup, which wins; the stuck copy frees its worker; the result is exact", async () => {
      await cloud.put("_inputs/straggle.txt", TEXT);
      const spec = { op: "straggle", inputs: [`s3://${cloud.input}/_inputs/straggle.txt`], chunkSize: CHUNK, backupAfterSeconds: 1 };
      await cloud.put("_jobs/straggle-1.json", JSON.stringify(spec));
      const status = await cloud.waitForEnd("_jobs/straggle-1/status.json", 60_000);
      expect(status).toMatchObject({ state: "succeeded", chunks: 10, backups: { launched: 1, won: 1 } });
      expect(await cloud.getJson(cloud.output, "_jobs/straggle-1/result.json")).toBe(LINES.length);
      const report = (await cloud.getJson(cloud.output, "_jobs/straggle-1/report.json")) as {
        backups?: unknown;
        cost: { lostCopies?: number };
      };
      // The stuck original lost: it ran from its start (the backup marker's time less its elapsed
      // time) to the end of the winning backup's run, as its part records it.
      const [markerKey] = (await cloud.keys(cloud.output, "_work/straggle-1/backups/")).filter((k) => /\/\d+\.json$/.test(k));
      const backup = (await cloud.getJson(cloud.output, markerKey!)) as { at: string; elapsedMs: number };
      const index = Number(/(\d+)\.json$/.exec(markerKey!)![1]);
      const part = (await cloud.getJson(cloud.output, `_work/straggle-1/parts/${String(index).padStart(7, "0")}.part.json`)) as {
        ran: { at: string; ms: number; backup?: true };
      };
      expect(part.ran.backup).toBe(true);
      const lostMs = Date.parse(part.ran.at) + part.ran.ms - (Date.parse(backup.at) - backup.elapsedMs);
      expect(report.backups).toEqual({ launched: 1, won: 1, lostSeconds: Math.round(lostMs) / 1000 });
      expect(report.cost.lostCopies).toBeGreaterThan(0);
      // The blocked copy is stopped once the backup's part exists: nothing stays in flight.
      await cloud.waitForIdle(30_000);
    }, 90_000);
  });
});
