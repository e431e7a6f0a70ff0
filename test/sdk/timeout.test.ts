/**
 * result({ timeoutMs }) and result({ signal }) against the emulated S3, with real timers: a job
 * that never starts (no splitter runs here) times out on time, and the future then leaves no
 * timer and sends no request.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { awsClients } from "../../lib/aws/clients.js";
import { createDevResources, startEmulator, type Emulator } from "../../lib/dev/emulator.js";
import { Cloudmill } from "../../lib/index.js";
import { countingS3 } from "./support.js";

let emulator: Emulator;
let counter: ReturnType<typeof countingS3>;
let mill: Cloudmill;

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  it("a timeout rejects with DEADLINE on time, then no timer is left and no request is sent", async () => {
    const future = mill.submit({ op: "count", inputs: ["s3://cloudmill-input/_never/started.txt"] });
    await future.submitted;
    await settle(100);
    const baseline = timers();
    const started = Date.now();
    const err = await future.result({ timeoutMs: 1_200 }).catch((e: unknown) => e);
    const took = Date.now() - started;
    expect(err).toMatchObject({ code: "DEADLINE", message: expect.stringMatching(/had not ended after 1\.2s \(pending, 0\/0 chunks\)/) });
    // Not at the next poll (backoff reaches ~850 ms by then): at the timeout.
    expect(took).toBeGreaterThanOrEqual(1_150);
    expect(took).toBeLessThan(1_700);
    await settle(50);
    expect(timers()).toBeLessThanOrEqual(baseline);
    const sent = counter.total();
    await settle(2_000);
    expect(counter.total()).toBe(sent);
    expect(timers()).toBeLessThanOrEqual(baseline);
  });

  it("an aborted signal rejects with its reason, and leaves no timer either", async () => {
    const future = mill.submit({ op: "count", inputs: ["s3://cloudmill-input/_never/started.txt"] });
    await future.submitted;
    await settle(100);
    const baseline = timers();
    const reason = new Error("stop waiting");
    const controller = new AbortController();
    const aborted = future.result({ signal: controller.signal }).catch((e: unknown) => e);
    setTimeout(() => controller.abort(reason), 700);
    expect(await aborted).toBe(reason);
    await settle(50);
    expect(timers()).toBeLessThanOrEqual(baseline);
    const sent = counter.total();
    await settle(1_500);
    expect(counter.total()).toBe(sent);
  });
});
