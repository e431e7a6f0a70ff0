/**
 * One chaos scenario over the emulated cloud, in two sizes: bounded in `npm test`
 * (test/reliability/chaos.test.ts) and long in `npm run soak` (bench/soak.ts).
 *
 * A `stats` job over a file whose line i holds the number i, so the exact answer is known in
 * closed form and any chunk lost or counted twice changes count and sum. While it runs:
 * - every worker's S3 and SQS calls, and those of the splitter, reducer and dead-letter roles,
 *   meet seeded faults at the SDK's request handler (throttling, 5xx, lost responses, bodies
 *   reset part-way, delays);
 * - workers are SIGKILLed at seeded moments (the dev cloud starts new ones, as ECS would);
 * - task messages are duplicated, some delayed up to 5 s;
 * - the reducer is invoked concurrently with the dev cloud's own, over and over;
 * - the S3/SQS endpoint goes away for a few seconds (every connection reset, new ones
 *   refused), as if the emulator restarted, with the data kept.
 * Then it checks that the job ended, and how: exact result, one part per chunk, nothing left
 * in any queue, the result unchanged by late duplicates and more concurrent reducers.
 */
import { readFileSync } from "node:fs";
import net from "node:net";
import { isDeepStrictEqual } from "node:util";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { GetQueueAttributesCommand, GetQueueUrlCommand, SendMessageBatchCommand } from "@aws-sdk/client-sqs";
import { S3BlobStore } from "../lib/aws/S3BlobStore.js";
import type { AwsClients } from "../lib/aws/clients.js";
import { cloudDeps, cloudSplitDeps } from "../lib/aws/cloudDeps.js";
import { DEV_QUEUES } from "../lib/core/constants.js";
import { manifestKey, partsPrefix, succeededKey } from "../lib/core/keys.js";
import { startDevCloud, type DevCloud, type DevCloudOptions } from "../lib/dev/devCloud.js";
import { toCloudmillError } from "../lib/core/errors.js";
import { JobStatus, Manifest, type TaskMessage } from "../lib/core/job/manifest.js";
import { planChunks } from "../lib/core/job/planner.js";
import { jsonLogger } from "../lib/core/log.js";
import { readBytes } from "../lib/core/pipeline/blobJson.js";
import { reduceJob } from "../lib/core/pipeline/reduce.js";
import { faultyClients, type FaultConfigInput, type InjectedFault } from "../lib/dev/faultInjection.js";
import { prng } from "../lib/dev/prng.js";

/** Re-exported for the reliability tests, which take every seeded decision from here. */
export { prng };

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Polls fn until it returns something other than undefined; fails naming `what` after timeoutMs.
 */
export const waitFor = async <T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 90_000,
  intervalMs = 200,
): Promise<T> => {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ""}`);
    await sleep(intervalMs);
  }
};

// ── An emulated cloud whose logs are kept ──────────────────────────────────────────────────

/** One log line: from the host (dev cloud, splitter, reducer) or a worker process (its slot). */
export interface LogLine {
  readonly source: "host" | number;
  readonly raw: string;
  readonly json?: Readonly<Record<string, unknown>>;
}

const parseLine = (source: LogLine["source"], raw: string): LogLine => {
  if (raw.startsWith("{")) {
    try {
      return { source, raw, json: JSON.parse(raw) as Record<string, unknown> };
    } catch {
      // not JSON after all
    }
  }
  return { source, raw };
};

/**
 * A TCP proxy in front of the emulator for the workers: `outage(ms)` resets every connection
 * and refuses new ones for ms, then accepts again (the emulator restarted, data kept).
 */
export class OutageProxy {
  readonly #server = net.createServer((client) => this.#accept(client));
  readonly #sockets = new Set<net.Socket>();
  #target = 0;
  port = 0;
  outages = 0;

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(this.port, "127.0.0.1", resolve));
    this.port = (this.#server.address() as net.AddressInfo).port;
  }

  setTarget(port: number): void {
    this.#target = port;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  #accept(client: net.Socket): void {
    if (this.#target === 0) return void client.destroy();
    const upstream = net.connect(this.#target, "127.0.0.1");
    for (const s of [client, upstream]) {
      this.#sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => {
        this.#sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  async outage(ms: number): Promise<void> {
    this.outages++;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
    await sleep(ms);
    await this.listen();
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }
}

export interface ChaosCloudOptions extends Omit<DevCloudOptions, "log" | "onWorkerOutput" | "port"> {
  /** Workers reach S3 and SQS through an OutageProxy. */
  readonly proxy?: boolean;
  /** Copy every line to stderr. */
  readonly verbose?: boolean;
  /** Keep every line (tests); otherwise only counts by message (the soak). Default true. */
  readonly keepLines?: boolean;
  /** Log level of the dev cloud's own roles. Default info. */
  readonly hostLogLevel?: "debug" | "info" | "warn" | "error";
}

export interface ChaosCloud {
  readonly cloud: DevCloud;
  readonly clients: AwsClients;
  readonly inputBucket: string;
  readonly outputBucket: string;
  readonly partsQueueUrl: string;
  readonly proxy?: OutageProxy;
  /** Every line so far, in arrival order (with keepLines). */
  readonly lines: LogLine[];
  /** Lines seen, by their `message` field. */
  readonly counts: Map<string, number>;
  onLine(listener: (line: LogLine) => void): () => void;
  /** The task and dead-letter queues hold nothing (visible, in flight or delayed), the parts queue nothing but wake-ups. */
  idle(): Promise<boolean>;
  stop(): Promise<void>;
}

/** Longer than the dev cloud's poll of the parts queue (a 1 s long poll). */
const IDLE_RECHECK_MS = 1500;

export const startChaosCloud = async (options: ChaosCloudOptions): Promise<ChaosCloud> => {
  const { proxy: useProxy, verbose, keepLines = true, hostLogLevel = "info", ...devOptions } = options;
  const lines: LogLine[] = [];
  const counts = new Map<string, number>();
  const listeners = new Set<(line: LogLine) => void>();
  const take = (line: LogLine): void => {
    if (verbose) process.stderr.write(`[${line.source === "host" ? "host" : `worker ${line.source}`}] ${line.raw}\n`);
    if (keepLines) lines.push(line);
    const message = line.json?.["message"];
    if (typeof message === "string") counts.set(message, (counts.get(message) ?? 0) + 1);
    for (const l of listeners) l(line);
  };
  const proxy = useProxy ? new OutageProxy() : undefined;
  await proxy?.listen();
  const cloud = await startDevCloud({
    inlineMaxBytes: 0,
    ...devOptions,
    port: 0,
    log: jsonLogger((l) => take(parseLine("host", l.trimEnd())), hostLogLevel),
    workerEnv: { ...devOptions.workerEnv, ...(proxy ? { AWS_ENDPOINT_URL: proxy.endpoint } : {}) },
    onWorkerOutput: (worker, raw) => take(parseLine(worker, raw)),
  });
  proxy?.setTarget(cloud.port);
  const { QueueUrl: partsQueueUrl } = await cloud.clients.sqs.send(new GetQueueUrlCommand({ QueueName: DEV_QUEUES.parts }));
  /** Messages visible, in flight and (unless `timers`) delayed. */
  const depth = async (url: string, timers = true): Promise<number> => {
    const { Attributes: a = {} } = await cloud.clients.sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: url,
        AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"],
      }),
    );
    return (
      Number(a["ApproximateNumberOfMessages"] ?? 0) +
      Number(a["ApproximateNumberOfMessagesNotVisible"] ?? 0) +
      (timers ? Number(a["ApproximateNumberOfMessagesDelayed"] ?? 0) : 0)
    );
  };
  return {
    cloud,
    clients: cloud.clients,
    inputBucket: cloud.inputBucket,
    outputBucket: cloud.outputBucket,
    partsQueueUrl: partsQueueUrl!,
    ...(proxy ? { proxy } : {}),
    lines,
    counts,
    onLine(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    async idle() {
      const tasks = [cloud.taskQueueUrl, ...(cloud.spotTaskQueueUrl ? [cloud.spotTaskQueueUrl] : []), cloud.deadLetterQueueUrl];
      const empty = async (): Promise<boolean> => {
        for (const url of tasks) if ((await depth(url)) > 0) return false;
        // A delayed message there is the reducer's own wake-up (pipeline/wake.ts): it may outlive the
        // job by its lease, and finds the job ended when it comes.
        return (await depth(partsQueueUrl!, false)) === 0;
      };
      // Empty, and still empty a poll later: drained is a state that stays. One read alone can fall
      // between a reducer's batch and the next part event it takes, and call busy queues drained.
      if (!(await empty())) return false;
      await new Promise((resolve) => setTimeout(resolve, IDLE_RECHECK_MS));
      return empty();
    },
    async stop() {
      await cloud.stop();
      await proxy?.close();
    },
  };
};

// ── The scenario ───────────────────────────────────────────────────────────────────────────

export interface ChaosScenario {
  readonly seed: number;
  /** Chunks of the job (the file is cut to exactly this many). */
  readonly chunks: number;
  readonly chunkSize: number;
  readonly workers: number;
  readonly workerConcurrency: number;
  /** Fraction of S3/SQS requests of workers and roles that get a fault. */
  readonly faultRate: number;
  /** Workers SIGKILLed, at seeded points of progress. */
  readonly kills: number;
  /** Fraction of chunks whose task message is sent again (half of them delayed up to 5 s). */
  readonly duplicateFraction: number;
  /** Endpoint outages, at seeded points of progress. */
  readonly outages: number;
  readonly outageMs: number;
  /** Concurrent reduceJob calls the scenario makes, again and again, while the job runs (0: none). */
  readonly rogueReducers: number;
  /** Pause between rounds of those calls. Default 250 ms. */
  readonly rogueEveryMs?: number;
  readonly maxAttempts: number;
  readonly visibilitySeconds: number;
  /** The job's own deadline (its spec's deadlineSeconds). */
  readonly deadlineSeconds: number;
  /** The scenario's hard limit: past it, the job hung. */
  readonly timeoutMs: number;
  /** Sample RSS of workers and this process every so often (ms); 0: never. */
  readonly rssEveryMs?: number;
  readonly verbose?: boolean;
  readonly keepLines?: boolean;
  /** Progress lines (what was injected, when). */
  readonly report?: (line: string) => void;
}

export interface RssSeries {
  readonly startKiB: number;
  /** At a quarter of the samples (after start-up), half, and the last. */
  readonly quarterKiB: number;
  readonly halfKiB: number;
  readonly peakKiB: number;
  readonly endKiB: number;
  readonly samples: number;
}

export interface ChaosReport {
  readonly jobId: string;
  readonly state: string;
  readonly error?: unknown;
  readonly elapsedMs: number;
  readonly chunks: number;
  readonly bytes: number;
  readonly injected: {
    readonly workerFaults: number;
    readonly workerFaultsByKind: Readonly<Record<string, number>>;
    readonly roleFaults: number;
    readonly roleFaultsByKind: Readonly<Record<string, number>>;
    readonly kills: number;
    readonly duplicates: number;
    readonly delayedDuplicates: number;
    readonly outages: number;
    readonly rogueReduceCalls: number;
    readonly rogueReduceErrors: number;
  };
  readonly verified: {
    readonly expected: Readonly<Record<string, number>>;
    readonly result: unknown;
    readonly exact: boolean;
    readonly parts: number;
    readonly lost: number;
    readonly duplicateParts: number;
    readonly misplacedParts: number;
    readonly statusDone: number;
    readonly resultUnchangedAfterLateDuplicates: boolean;
    readonly concurrentReducersAfterwards: readonly string[];
    readonly queuesDrained: boolean;
    /** Chunks mapped more than once (redelivered or duplicated messages racing): harmless, counted. */
    readonly chunksMappedTwice: number;
    readonly duplicateTasksSeen: number;
    readonly workerRestarts: number;
    /** Worker processes that exited without being killed (a crash, or an empty event loop). */
    readonly unexpectedWorkerExits: number;
  };
  readonly rss?: {
    readonly workers: Readonly<Record<string, RssSeries>>;
    readonly host: RssSeries;
    readonly hostHeapUsed: RssSeries;
  };
}

/** VmRSS of a process in KiB, from /proc (undefined once it is gone). */
export const vmRssKiB = (pid: number): number | undefined => {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
};

class Series {
  readonly values: number[] = [];
  add(v: number): void {
    this.values.push(v);
  }
  done(): RssSeries {
    const v = this.values;
    const at = (f: number): number => v[Math.min(v.length - 1, Math.floor(f * v.length))] ?? 0;
    return {
      startKiB: at(0),
      quarterKiB: at(0.25),
      halfKiB: at(0.5),
      peakKiB: Math.max(0, ...v),
      endKiB: v.at(-1) ?? 0,
      samples: v.length,
    };
  }
}

/** The file: line i holds i, for i = 1..n, cut so the job has exactly `chunks` chunks. */
export const numberedLines = (chunks: number, chunkSize: number): { bytes: Buffer; n: number } => {
  const limit = chunks * chunkSize;
  const parts: string[] = [];
  let size = 0;
  let n = 0;
  for (;;) {
    const line = `${n + 1}\n`;
    if (size + line.length > limit) break;
    parts.push(line);
    size += line.length;
    n++;
  }
  const bytes = Buffer.from(parts.join(""));
  if (Math.ceil(bytes.length / chunkSize) !== chunks)
    throw new Error(`cannot cut ${chunks} chunks of ${chunkSize} bytes from numbered lines`);
  return { bytes, n };
};

/** What `stats` must answer for 1..n, computed in exact integer arithmetic and rounded once. */
export const expectedStats = (n: number): Record<string, number> => {
  const N = BigInt(n);
  const sum = (N * (N + 1n)) / 2n;
  const squares = (N * (N + 1n) * (2n * N + 1n)) / 6n;
  const numerator = N * squares - sum * sum;
  return { count: n, sum: Number(sum), min: 1, max: n, mean: nearestRatio(sum, N), variance: nearestRatio(numerator, N * N) };
};

/**
 * p / q (both positive) rounded once to the nearest double: a quotient of at least 70 bits, plus
 * a sticky bit for a nonzero remainder, which Number() then rounds correctly.
 */
const nearestRatio = (p: bigint, q: bigint): number => {
  const k = Math.max(0, 70 - (p.toString(2).length - q.toString(2).length));
  const scaled = p << BigInt(k);
  const sticky = scaled % q === 0n ? 0n : 1n;
  return Number(((scaled / q) << 1n) | sticky) * 2 ** -(k + 1);
};

export const runChaos = async (s: ChaosScenario): Promise<ChaosReport> => {
  const say = s.report ?? (() => undefined);
  const random = prng(s.seed);
  const jobId = `chaos-${s.seed}-${s.chunks}`;
  const { bytes, n } = numberedLines(s.chunks, s.chunkSize);
  const expected = expectedStats(n);
  const workerFaults: FaultConfigInput = { rate: s.faultRate, seed: s.seed };
  const roleFaultsByKind: Record<string, number> = {};
  let roleFaults = 0;
  const countRoleFault = (f: InjectedFault): void => {
    roleFaults++;
    roleFaultsByKind[f.kind] = (roleFaultsByKind[f.kind] ?? 0) + 1;
  };

  const c = await startChaosCloud({
    workers: s.workers,
    workerConcurrency: s.workerConcurrency,
    chunkSize: s.chunkSize,
    maxAttempts: s.maxAttempts,
    visibilitySeconds: s.visibilitySeconds,
    workerFaults,
    roleFaults: { rate: s.faultRate, seed: s.seed + 1, stream: "roles", onInject: countRoleFault },
    proxy: s.outages > 0,
    keepLines: s.keepLines ?? true,
    ...(s.verbose !== undefined ? { verbose: s.verbose } : {}),
  });
  const workerFaultsByKind: Record<string, number> = {};
  const mapped = new Map<number, number>();
  let duplicateTasksSeen = 0;
  let unexpectedExits = 0;
  const offLines = c.onLine((line) => {
    const j = line.json;
    if (j && line.source === "host" && j["message"] === "worker exited; starting a new one" && j["signal"] !== "SIGKILL") unexpectedExits++;
    if (!j || line.source === "host") return;
    if (j["message"] === "fault injected") {
      const kind = String(j["kind"]);
      workerFaultsByKind[kind] = (workerFaultsByKind[kind] ?? 0) + 1;
    } else if (j["message"] === "chunk done" && j["jobId"] === jobId) {
      if (j["outcome"] === "done") mapped.set(Number(j["chunk"]), (mapped.get(Number(j["chunk"])) ?? 0) + 1);
      else if (j["outcome"] === "duplicate") duplicateTasksSeen++;
    }
  });

  // The rogue reducers and the checks use their own clients: faulty like the roles', so a
  // reducer racing the dev cloud's also meets throttling and resets.
  const rogueClients = faultyClients({ endpoint: c.cloud.endpoint }, { rate: s.faultRate, seed: s.seed + 2, stream: "rogue" });
  // They merge as the stack's reducer does: a job of many chunks in a tree of merge tasks.
  const rogueDeps = cloudSplitDeps(
    { outputBucket: c.outputBucket, taskQueueUrl: c.cloud.taskQueueUrl },
    jsonLogger(() => undefined),
    rogueClients,
  );
  const checkDeps = cloudDeps(
    { outputBucket: c.outputBucket },
    jsonLogger(() => undefined),
    c.clients,
  );

  const rss = { workers: new Map<string, Series>(), host: new Series(), heap: new Series() };
  const sampleRss = (): void => {
    c.cloud.workerPids().forEach((pid, slot) => {
      const kib = pid > 0 ? vmRssKiB(pid) : undefined;
      if (kib === undefined) return;
      const key = `slot ${slot} pid ${pid}`;
      let series = rss.workers.get(key);
      if (!series) rss.workers.set(key, (series = new Series()));
      series.add(kib);
    });
    const m = process.memoryUsage();
    rss.host.add(Math.round(m.rss / 1024));
    rss.heap.add(Math.round(m.heapUsed / 1024));
  };
  const rssTimer = s.rssEveryMs ? setInterval(sampleRss, s.rssEveryMs) : undefined;

  const started = Date.now();
  let kills = 0;
  let outages = 0;
  let duplicates = 0;
  let delayedDuplicates = 0;
  let rogueReduceCalls = 0;
  let rogueReduceErrors = 0;
  let restarts = 0;
  let stopRogues = false;
  const background: Promise<unknown>[] = [];
  try {
    // Let the workers start (they load the SDK) before the clock matters.
    await waitFor("worker processes", () => (c.cloud.workerPids().every((p) => p > 0) ? true : undefined), 30_000);
    const input = `_inputs/chaos-${s.seed}.txt`;
    await c.clients.s3.send(new PutObjectCommand({ Bucket: c.inputBucket, Key: input, Body: bytes }));
    const spec = {
      op: "stats",
      inputs: [`s3://${c.inputBucket}/${input}`],
      chunkSize: s.chunkSize,
      maxAttempts: s.maxAttempts,
      deadlineSeconds: s.deadlineSeconds,
    };
    await c.clients.s3.send(new PutObjectCommand({ Bucket: c.inputBucket, Key: `_jobs/${jobId}.json`, Body: JSON.stringify(spec) }));
    say(
      `job ${jobId}: ${s.chunks} chunks of ${s.chunkSize} B (${bytes.length} B, ${n} numbers), ${s.workers} workers × ${s.workerConcurrency}, faults ${s.faultRate * 100}% (seed ${s.seed})`,
    );
    const manifest = await waitFor(
      "the manifest",
      async () => {
        const b = await getBytes(c, c.outputBucket, manifestKey(jobId));
        return b && Manifest.parse(JSON.parse(b.toString("utf8")));
      },
      120_000,
    );

    // Seeded points of progress (fractions of the chunks mapped) for kills, duplicates and outages.
    const at = (k: number): number[] => Array.from({ length: k }, () => 0.05 + random() * 0.85).sort((a, b) => a - b);
    const killAt = at(s.kills);
    const outageAt = at(s.outages);
    const duplicateAt = 0.1 + random() * 0.3;
    // One input: the manifest lists it (never in pieces).
    const plan = planChunks(manifest.inputs!, manifest.chunkSize);
    const taskBody = (i: number): string =>
      JSON.stringify({ v: 1, jobId, chunk: plan.chunkAt(i), job: manifest.job } satisfies TaskMessage);

    if (s.rogueReducers > 0) {
      background.push(
        (async () => {
          while (!stopRogues) {
            await Promise.all(
              Array.from({ length: s.rogueReducers }, async () => {
                rogueReduceCalls++;
                try {
                  await reduceJob(rogueDeps, jobId, { fleet: true });
                } catch (err) {
                  // Transient errors (the injected faults) are what a Lambda retry absorbs.
                  if (toCloudmillError(err).code !== "ENVIRONMENT") throw err;
                  rogueReduceErrors++;
                }
              }),
            );
            await sleep(s.rogueEveryMs ?? 250);
          }
        })(),
      );
    }

    const progress = (): number => mapped.size / s.chunks;
    let duplicated = false;
    let lastSay = 0;
    const killedPids = new Set<number>();
    const status = await waitFor(
      `job ${jobId} to end`,
      async () => {
        const p = progress();
        while (killAt.length && p >= killAt[0]!) {
          const slot = Math.floor(random() * s.workers);
          // A worker still going down from an earlier kill is not killed again (that would be one
          // restart for two kills): the kill waits for the next poll, when its replacement runs.
          const pid = c.cloud.workerPids()[slot];
          if (pid === undefined || pid < 0 || killedPids.has(pid)) break;
          killAt.shift();
          killedPids.add(pid);
          c.cloud.killWorker(slot, "SIGKILL");
          kills++;
          say(`  ${(p * 100).toFixed(0)}%: SIGKILL worker ${slot}`);
        }
        while (outageAt.length && p >= outageAt[0]!) {
          outageAt.shift();
          outages++;
          say(`  ${(p * 100).toFixed(0)}%: endpoint outage for ${s.outageMs} ms`);
          background.push(c.proxy!.outage(s.outageMs));
        }
        if (!duplicated && p >= duplicateAt) {
          duplicated = true;
          const chosen = Array.from({ length: s.chunks }, (_, i) => i).filter(() => random() < s.duplicateFraction);
          for (let i = 0; i < chosen.length; i += 10) {
            const entries = chosen.slice(i, i + 10).map((index, j) => {
              const delay = random() < 0.5 ? Math.floor(random() * 6) : 0;
              if (delay > 0) delayedDuplicates++;
              return { Id: String(j), MessageBody: taskBody(index), DelaySeconds: delay };
            });
            await c.clients.sqs.send(new SendMessageBatchCommand({ QueueUrl: c.cloud.taskQueueUrl, Entries: entries }));
          }
          duplicates = chosen.length;
          say(`  ${(p * 100).toFixed(0)}%: ${duplicates} task messages duplicated (${delayedDuplicates} delayed up to 5 s)`);
        }
        if (Date.now() - lastSay > 15_000) {
          lastSay = Date.now();
          say(`  ${((Date.now() - started) / 1000).toFixed(0)} s: ${mapped.size}/${s.chunks} chunks mapped`);
        }
        const b = await getBytes(c, c.outputBucket, manifest.output.status);
        const st = b && JobStatus.parse(JSON.parse(b.toString("utf8")));
        return st && st.state !== "running" ? st : undefined;
      },
      s.timeoutMs,
      250,
    );
    const elapsedMs = Date.now() - started;
    stopRogues = true;
    say(`job ${status.state} after ${(elapsedMs / 1000).toFixed(1)} s`);

    const resultKey = manifest.output.result;
    const resultBytes = await getBytes(c, c.outputBucket, resultKey);
    const result = resultBytes && (JSON.parse(resultBytes.toString("utf8")) as unknown);

    // Late duplicates and more concurrent reducers must change nothing.
    await waitFor(
      "every queue to drain",
      async () => ((await c.idle()) ? true : undefined),
      Math.max(60_000, s.visibilitySeconds * 4000 + 30_000),
      500,
    );
    const concurrent = await Promise.all(
      Array.from({ length: 8 }, async () => {
        try {
          return (await reduceJob(checkDeps, jobId)).kind;
        } catch (err) {
          return `error: ${toCloudmillError(err).message}`;
        }
      }),
    );
    await waitFor("every queue to drain again", async () => ((await c.idle()) ? true : undefined), 60_000, 500);
    const after = await getBytes(c, c.outputBucket, resultKey);
    const statusAfter = await getBytes(c, c.outputBucket, manifest.output.status);

    // One part per chunk, each holding its own index.
    const partKeys: string[] = [];
    for await (const info of checkDeps.output.list(partsPrefix(jobId))) partKeys.push(info.key);
    let misplaced = 0;
    const indexes = new Set<number>();
    for (const key of partKeys) {
      const part = JSON.parse((await getBytes(c, c.outputBucket, key))!.toString("utf8")) as { jobId: string; index: number };
      if (part.jobId !== jobId || !key.endsWith(`${String(part.index).padStart(7, "0")}.part.json`)) misplaced++;
      indexes.add(part.index);
    }
    const lost = Array.from({ length: s.chunks }, (_, i) => i).filter((i) => !indexes.has(i)).length;
    restarts = c.counts.get("worker exited; starting a new one") ?? 0;
    const succeededMarker = await getBytes(c, c.outputBucket, succeededKey(jobId));

    return {
      jobId,
      state: status.state,
      ...(status.error ? { error: status.error } : {}),
      elapsedMs,
      chunks: s.chunks,
      bytes: bytes.length,
      injected: {
        workerFaults: c.counts.get("fault injected") ?? 0,
        workerFaultsByKind,
        roleFaults,
        roleFaultsByKind,
        kills,
        duplicates,
        delayedDuplicates,
        outages,
        rogueReduceCalls,
        rogueReduceErrors,
      },
      verified: {
        expected,
        result,
        exact: status.state === "succeeded" && isDeepStrictEqual(result, expected) && succeededMarker !== undefined,
        parts: partKeys.length,
        lost,
        duplicateParts: partKeys.length - indexes.size,
        misplacedParts: misplaced,
        statusDone: JobStatus.parse(JSON.parse(statusAfter!.toString("utf8"))).done,
        resultUnchangedAfterLateDuplicates: resultBytes !== undefined && after !== undefined && resultBytes.equals(after),
        concurrentReducersAfterwards: concurrent,
        queuesDrained: await c.idle(),
        chunksMappedTwice: [...mapped.values()].filter((k) => k > 1).length,
        duplicateTasksSeen,
        workerRestarts: restarts,
        unexpectedWorkerExits: unexpectedExits,
      },
      ...(s.rssEveryMs
        ? {
            rss: {
              workers: Object.fromEntries([...rss.workers].map(([k, v]) => [k, v.done()])),
              host: rss.host.done(),
              hostHeapUsed: rss.heap.done(),
            },
          }
        : {}),
    };
  } finally {
    stopRogues = true;
    if (rssTimer) clearInterval(rssTimer);
    offLines();
    await Promise.allSettled(background);
    rogueClients.s3.destroy();
    rogueClients.sqs.destroy();
    await c.stop();
  }
};

const getBytes = async (c: ChaosCloud, bucket: string, key: string): Promise<Buffer | undefined> => {
  try {
    return await readBytes(new S3BlobStore(c.clients.s3, bucket), key);
  } catch (err) {
    if (toCloudmillError(err).code === "INPUT_NOT_FOUND") return undefined;
    throw err;
  }
};

/** One line per figure, for the test's and the soak's output. */
export const describeReport = (r: ChaosReport): string[] => {
  const kinds = (o: Readonly<Record<string, number>>): string =>
    Object.entries(o)
      .sort()
      .map(([k, v]) => `${k} ${v}`)
      .join(", ") || "none";
  const lines = [
    `job ${r.jobId}: ${r.state} in ${(r.elapsedMs / 1000).toFixed(1)} s; ${r.chunks} chunks, ${r.bytes} bytes`,
    `injected: worker faults ${r.injected.workerFaults} (${kinds(r.injected.workerFaultsByKind)}); role faults ${r.injected.roleFaults} (${kinds(r.injected.roleFaultsByKind)})`,
    `injected: ${r.injected.kills} SIGKILLs, ${r.injected.duplicates} duplicated tasks (${r.injected.delayedDuplicates} delayed), ${r.injected.outages} endpoint outages, ${r.injected.rogueReduceCalls} concurrent reduce calls (${r.injected.rogueReduceErrors} met a fault)`,
    `verified: exact result ${r.verified.exact}; parts ${r.verified.parts}/${r.chunks}; lost ${r.verified.lost}; duplicate parts ${r.verified.duplicateParts}; misplaced parts ${r.verified.misplacedParts}; status done ${r.verified.statusDone}`,
    `verified: result unchanged after late duplicates and 8 more concurrent reducers (${[...new Set(r.verified.concurrentReducersAfterwards)].join(", ")}): ${r.verified.resultUnchangedAfterLateDuplicates}; queues drained: ${r.verified.queuesDrained}`,
    `verified: ${r.verified.workerRestarts} worker restarts for ${r.injected.kills} kills; worker processes that exited unkilled: ${r.verified.unexpectedWorkerExits}`,
    `observed: ${r.verified.duplicateTasksSeen} tasks found their part already written, ${r.verified.chunksMappedTwice} chunks mapped twice (racing deliveries, identical bytes)`,
  ];
  if (r.error) lines.push(`error: ${JSON.stringify(r.error)}`);
  if (r.rss) {
    const mib = (k: number): string => `${(k / 1024).toFixed(0)}`;
    const w = Object.values(r.rss.workers);
    const longest = w.reduce<RssSeries | undefined>((a, b) => (!a || b.samples > a.samples ? b : a), undefined);
    const curve = (x: RssSeries): string =>
      `start ${mib(x.startKiB)}, at 1/4 ${mib(x.quarterKiB)}, at 1/2 ${mib(x.halfKiB)}, end ${mib(x.endKiB)}, peak ${mib(x.peakKiB)}`;
    if (longest)
      lines.push(
        `RSS of the longest-lived worker (MiB, ${longest.samples} samples): ${curve(longest)}; peak of any worker ${mib(Math.max(...w.map((s) => s.peakKiB)))}`,
      );
    lines.push(`RSS of the host: emulator (holding every object and message) + splitter + reducer (MiB): ${curve(r.rss.host)}`);
    lines.push(`heap used by the host (MiB): ${curve(r.rss.hostHeapUsed)}`);
  }
  return lines;
};
