/**
 * result({ timeoutMs }) and result({ signal }) against the emulated S3, with real timers: a job
 * that never starts (no splitter runs here) times out at its timeout, not at the next poll, and
 * the future then leaves no timer and sends no request.
 *
 * No narrow time windows: a deadline is checked from below (not early), and "at the timeout,
 * not at the next poll" by polls a minute apart; "nothing more happens" is the state after,
 * no timer left (a poll loop still going always holds its sleep or its request's timers).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { awsClients } from "../../lib/aws/clients.js";
import { createDevResources, startEmulator, type Emulator } from "../../lib/dev/emulator.js";
import { Cloudmill } from "../../lib/sdk/index.js";
import type { JobStatus } from "../../lib/sdk/types.js";
import { countingS3 } from "./support.js";

let emulator: Emulator;
let counter: ReturnType<typeof countingS3>;
let mill: Cloudmill;

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
/**
 * Waits until no more timers are active than `baseline`. A request's own socket timers go
 * with its close event, a tick or so after its answer; a leftover poll sleep never would.
 */
const noTimerBeyond = (baseline: number): Promise<void> =>
  vi.waitFor(() => expect(timers()).toBeLessThanOrEqual(baseline), { timeout: 5_000, interval: 20 });

beforeAll(async () => {
  emulator = await startEmulator({ port: 0 });
  const clients = awsClients({ endpoint: emulator.endpoint }, {});
  await createDevResources(clients);
  clients.s3.destroy();
  clients.sqs.destroy();
  counter = countingS3(emulator.endpoint);
  mill = new Cloudmill({ endpoint: emulator.endpoint, s3: counter.s3 });
});

afterAll(async () => {
  mill?.close();
  counter?.s3.destroy();
  await emulator?.stop();
});

describe("waiting with a timeout or a signal", () => {
  it("a timeout rejects with NOT_FINISHED at the timeout, not at the next poll, then no timer is left and no request is sent", async () => {
    // Polls a minute apart: a deadline noticed only at the next poll would come a minute late.
    const slow = new Cloudmill({ endpoint: emulator.endpoint, s3: counter.s3, poll: { initialMs: 60_000 } });
    try {
      const baseline = timers();
      const future = slow.submit({ op: "count", inputs: ["s3://cloudmill-input/_never/started.txt"] });
      await future.submitted;
      await noTimerBeyond(baseline); // the submit's requests are over
      const seen: JobStatus[] = [];
      const started = Date.now();
      const err = await future.result({ timeoutMs: 2_000, onStatus: (s) => seen.push(s) }).catch((e: unknown) => e);
      const took = Date.now() - started;
      const sent = counter.total();
      expect(err).toMatchObject({
        code: "NOT_FINISHED",
        message: expect.stringMatching(/had not ended after 2s \(pending, 0\/0 chunks\)/),
      });
      // One poll, then the minute's sleep the deadline cut short.
      expect(seen).toEqual([{ jobId: future.id, state: "pending", chunks: 0, done: 0 }]);
      // Not early (a timer may fire a little before Date.now() says, hence the tolerance) and
      // not at the next poll, a minute on: the test would time out first.
      expect(took).toBeGreaterThanOrEqual(1_950);
      await noTimerBeyond(baseline);
      // With no timer left and no request pending, nothing is left that could send one.
      expect(counter.total()).toBe(sent);
    } finally {
      slow.close();
    }
  });

  it("an aborted signal rejects with its reason, and leaves no timer either", async () => {
    const baseline = timers();
    const future = mill.submit({ op: "count", inputs: ["s3://cloudmill-input/_never/started.txt"] });
    await future.submitted;
    await noTimerBeyond(baseline);
    const reason = new Error("stop waiting");
    const controller = new AbortController();
    let polls = 0;
    // Aborted while it sleeps between its second and third poll (the sleep starts as onStatus returns).
    const onStatus = (): void => {
      if (++polls === 2) setImmediate(() => controller.abort(reason));
    };
    const aborted = future.result({ signal: controller.signal, onStatus }).catch((e: unknown) => e);
    expect(await aborted).toBe(reason);
    const sent = counter.total();
    expect(polls).toBe(2);
    await noTimerBeyond(baseline);
    expect(counter.total()).toBe(sent);
  });
});
