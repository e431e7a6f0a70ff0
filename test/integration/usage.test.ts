/**
 * Each worker reports what it uses (CloudArray's cpuusage/memusage/iousage/netusage): CPU over
 * the interval, memory, network and disk bytes from /proc, chunks in progress and done. The
 * parsers are checked against /proc's formats; on the emulated fleet, `cloudmill fleet` lists
 * one row per live worker process, named by its host and pid.
 */
import os from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cpuPercent, parseNetDev, parseProcIo, type WorkerUsage } from "../../lib/aws/usage.js";
import { ENV } from "../../lib/core/constants.js";
import { cli } from "../helpers/cli.js";
import { chunksOf, requireBuild, startTestCloud, textOf, waitFor, type TestCloud } from "../helpers/devCloud.js";

describe("reading /proc", () => {
  it("sums every interface but loopback, reads the storage bytes, and turns CPU time into a share of one vCPU", () => {
    const netDev = [
      "Inter-|   Receive                                                |  Transmit",
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed",
      "    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0",
      "  eth0: 52341 300 0 0 0 0 0 0 8123 90 0 0 0 0 0 0",
      "  eth1: 7 1 0 0 0 0 0 0 3 1 0 0 0 0 0 0",
    ].join("\n");
    expect(parseNetDev(netDev)).toEqual({ rxBytes: 52348, txBytes: 8126 });
    const io = "rchar: 6976\nwchar: 10\nsyscr: 10\nsyscw: 0\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
    expect(parseProcIo(io)).toEqual({ readBytes: 4096, writeBytes: 8192 });
    expect(parseProcIo("rchar: 1\n")).toBeUndefined();
    // 1.5 s of CPU in a 1 s interval: one vCPU and a half.
    expect(cpuPercent(1_500_000, 1000)).toBe(150);
    expect(cpuPercent(123_456, 1000)).toBe(12.3);
    expect(cpuPercent(5, 0)).toBe(0);
  });
});

describe("on the emulated fleet", () => {
  let cloud: TestCloud;
  beforeAll(async () => {
    requireBuild();
    cloud = await startTestCloud({ workers: 2, workerEnv: { [ENV.USAGE_REPORT_SECONDS]: "1" } });
  }, 90_000);
  afterAll(async () => cloud?.stop(), 60_000);

  it("cloudmill fleet --endpoint shows one row per live worker, with the chunks it mapped", async () => {
    const bytes = textOf(60 * 1024, 3);
    await cloud.put("_inputs/usage.txt", bytes);
    await cloud.put(
      "_jobs/usage-1.json",
      JSON.stringify({ op: "wordcount", inputs: [`s3://${cloud.input}/_inputs/usage.txt`], chunkSize: 4096 }),
    );
    expect((await cloud.waitForEnd("_jobs/usage-1/status.json")).state).toBe("succeeded");
    const workers = cloud.cloud
      .workerPids()
      .map((pid) => `${os.hostname()}/${pid}`)
      .sort();
    const chunks = chunksOf(bytes.length, 4096);
    const usage = await waitFor(
      "a report from every worker counting every chunk",
      async () => {
        const r = await cli(["fleet", "--json", "--endpoint", cloud.cloud.endpoint]);
        const u = (JSON.parse(r.stdout) as { usage: WorkerUsage[] }).usage;
        const done = u.reduce((n, w) => n + w.chunks.done, 0);
        return u.length === workers.length && done >= chunks ? u : undefined;
      },
      30_000,
      200,
    );
    expect(usage.map((u) => u.worker).sort()).toEqual(workers);
    for (const u of usage) {
      expect(u.cpuPercent).toBeGreaterThanOrEqual(0);
      expect(u.rssBytes).toBeGreaterThan(10e6);
      expect(u.network?.rxBytes).toBeGreaterThanOrEqual(0);
      expect(u.chunks.running).toBe(0);
    }
    // Each worker's count is its own: together, every chunk once (none is retried here).
    expect(usage.reduce((n, w) => n + w.chunks.done, 0)).toBe(chunks);
    const text = await cli(["fleet", "--endpoint", cloud.cloud.endpoint]);
    expect(text.stdout).toMatch(/^2 worker\(s\) reporting \(local processes\):\nWORKER\s+CPU\s+MEMORY MB/);
    for (const w of workers) expect(text.stdout).toMatch(new RegExp(`${w}\\s+[\\d.]+%\\s+[\\d.]+ rss`));
  }, 90_000);
});
