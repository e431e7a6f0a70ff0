/**
 * The worker container's entry (dist/worker/main.js) as ECS runs it, in a process of its own
 * against the emulated cloud: it asks the ECS agent (ECS_AGENT_URI) for task scale-in
 * protection while a chunk is in progress and gives it up after; SIGTERM (what ECS sends to
 * stop a task) makes an idle worker exit 0 once its long poll has answered.
 */
import { describe, expect, it } from "vitest";
import {
  chunksOf,
  expectMatchesReference,
  linesOf,
  requireBuild,
  spawnWorker,
  startFakeEcsAgent,
  textOf,
  useDevCloud,
  waitFor,
} from "../helpers/devCloud.js";

const KiB = 1024;
const CHUNK = 4 * KiB;
const TIMEOUT = 120_000;

describe("a worker process", () => {
  requireBuild();
  // No workers of the dev cloud's own: each test runs its own.
  const cloud = useDevCloud({ chunkSize: CHUNK, workers: 0 });

  it(
    "holds ECS task scale-in protection while a chunk runs, and releases it after",
    async () => {
      const c = cloud();
      const agent = await startFakeEcsAgent();
      // What the agent sees when asked: how many parts exist. The worker waits for the answer
      // before mapping its chunk, so this is the state just before the chunk ran (enable) or
      // just after it ended (disable).
      const parts = async () => (await c.keys(c.output, "_work/")).filter((k) => k.endsWith(".part.json")).length;
      agent.onRequest = () => parts();
      const worker = spawnWorker(c.cloud, { ECS_AGENT_URI: agent.uri, POWERTOOLS_LOG_LEVEL: "DEBUG" });
      try {
        const key = "count/protected.txt";
        const bytes = textOf(11 * KiB, 51);
        const chunks = chunksOf(bytes.length, CHUNK);
        expect(chunks).toBe(3);
        await c.put(key, bytes);
        expect(await c.waitForEnd(`${key}/status.json`)).toMatchObject({ state: "succeeded", chunks, done: chunks });
        expectMatchesReference("count", {}, bytes, await c.getJson(c.output, `${key}/result.json`));
        await waitFor(
          "protection released after the last chunk",
          () => (agent.requests.at(-1)?.body.ProtectionEnabled === false && agent.requests.at(-1)?.note === chunks ? true : undefined),
          30_000,
        );

        // One worker, one chunk at a time: protection asked for before the first chunk (no part
        // there yet) and given up only once idle after the last (every part written). Between
        // back-to-back chunks it is kept; a pause between them (a slow machine) may give it up
        // and ask again, but never while a chunk runs: each enable comes before the next part.
        expect(agent.requests.every((r) => r.path === "/task-protection/v1/state")).toBe(true);
        expect(agent.requests.map((r) => r.body)).toEqual(
          agent.requests.map((_, i) => (i % 2 === 0 ? { ProtectionEnabled: true, ExpiresInMinutes: 120 } : { ProtectionEnabled: false })),
        );
        expect(agent.requests[0]!.note).toBe(0);
        const notes = agent.requests.map((r) => r.note as number);
        expect(notes).toEqual([...notes].sort((a, b) => a - b));
        expect(agent.requests.length).toBeLessThanOrEqual(2 * chunks);
        // The worker's own account agrees: each chunk was received, then done.
        const jobId = ((await c.getJson(c.output, `${key}/status.json`)) as { jobId: string }).jobId;
        const log = worker.stdout.map((raw) => (raw.startsWith("{") ? (JSON.parse(raw) as Record<string, unknown>) : {}));
        const lines = log.map((json) => ({ worker: 0, raw: "", json }));
        expect(linesOf(lines, "chunk received", { jobId }).length).toBe(chunks);
        expect(linesOf(lines, "chunk done", { jobId, outcome: "done" }).length).toBe(chunks);
      } finally {
        worker.child.kill("SIGTERM");
        await worker.exited;
        await agent.close();
      }
    },
    TIMEOUT,
  );

  it(
    "told to stop while idle, lets its long poll end: tasks that arrive meanwhile go back neither hidden nor counted; it exits 0",
    async () => {
      const c = cloud();
      const worker = spawnWorker(c.cloud);
      let next: ReturnType<typeof spawnWorker> | undefined;
      try {
        await worker.waitForLine((l) => l.includes('"worker started"'), 60_000);
        await waitFor("the worker's long poll", () => (c.cloud.longPolls() > 0 ? true : undefined), 30_000, 20);
        expect(await c.taskDepth()).toEqual({ visible: 0, inFlight: 0, delayed: 0 });
        worker.child.kill("SIGTERM");
        await worker.waitForLine((l) => l.includes('"stopping: finishing chunks in progress"'), 15_000);
        // A job's tasks reach the queue while the poll is still open. Had the worker abandoned it,
        // SQS (and the emulator) would give them to the connection that left: hidden, counted.
        const key = "count/arrived-at-stop.txt";
        const bytes = textOf(11 * KiB, 52);
        const chunks = chunksOf(bytes.length, CHUNK);
        await c.put(key, bytes);
        const exit = await Promise.race([worker.exited, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 60_000))]);
        expect(exit, worker.stderr.join("\n")).toEqual({ code: 0, signal: null });
        expect(worker.stdout.some((l) => l.includes('"worker stopped"'))).toBe(true);
        const depth = await waitFor("every task queued", async () => {
          const d = await c.taskDepth();
          return d.visible + d.inFlight === chunks ? d : undefined;
        });
        expect(depth).toEqual({ visible: chunks, inFlight: 0, delayed: 0 });

        // The next worker receives each at its first attempt, and the job is exact.
        next = spawnWorker(c.cloud, { POWERTOOLS_LOG_LEVEL: "DEBUG" });
        expect(await c.waitForEnd(`${key}/status.json`)).toMatchObject({ state: "succeeded", chunks, done: chunks });
        expectMatchesReference("count", {}, bytes, await c.getJson(c.output, `${key}/result.json`));
        const log = next.stdout.map((raw) => ({
          worker: 1,
          raw,
          json: raw.startsWith("{") ? (JSON.parse(raw) as Record<string, unknown>) : {},
        }));
        const received = linesOf(log, "chunk received", {});
        expect(received.length).toBe(chunks);
        expect(received.map((l) => l.json?.["attempt"])).toEqual(Array(chunks).fill(1));
      } finally {
        for (const w of [worker, next]) if (w && w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGKILL");
      }
    },
    TIMEOUT,
  );

  it(
    "a second signal while it stops (ECS's SIGTERM again, then a Ctrl-C) does not cut the stop short",
    async () => {
      const c = cloud();
      const worker = spawnWorker(c.cloud);
      try {
        await worker.waitForLine((l) => l.includes('"worker started"'), 60_000);
        worker.child.kill("SIGTERM");
        await worker.waitForLine((l) => l.includes('"stopping: finishing chunks in progress"'), 15_000);
        worker.child.kill("SIGTERM");
        worker.child.kill("SIGINT");
        // A long poll in flight is let end (up to its 20 s wait) before the worker exits; the
        // bound is only there so that a worker that never exits fails here, not at the test's timeout.
        const exit = await Promise.race([worker.exited, new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 60_000))]);
        expect(exit, worker.stderr.join("\n")).toEqual({ code: 0, signal: null });
        expect(worker.stdout.some((l) => l.includes('"worker stopped"'))).toBe(true);
      } finally {
        if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill("SIGKILL");
      }
    },
    TIMEOUT,
  );
});
