/**
 * Integration-test helpers over the emulated cloud (lib/dev/devCloud.ts): start one per file
 * or per describe, talk to it through the real AWS SDK, wait for jobs, read worker logs,
 * check a result against the reference implementation's answer for the same bytes, run worker
 * processes by hand, and play the ECS agent. Worker processes run the compiled dist/ (build first).
 *
 * Everything waits by polling with generous timeouts: the machine running the suite is small
 * and shared. Never call execFileSync/spawnSync here: the emulator shares this event loop.
 */
import { parseS3Uri } from "../../lib/core/s3Uri.js";
import * as z from "zod";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import { GetQueueAttributesCommand, GetQueueUrlCommand } from "@aws-sdk/client-sqs";
import type { SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, expect } from "vitest";
import { DEV_QUEUES, ENV } from "../../lib/core/constants.js";
import { onLines, startDevCloud, type DevCloud, type DevCloudOptions } from "../../lib/dev/devCloud.js";
import { JobStatus } from "../../lib/core/job/manifest.js";
import type { Params } from "../../lib/core/job/spec.js";
import { jsonLogger } from "../../lib/core/log.js";
import { prng } from "../../lib/dev/prng.js";
import { waitFor as pollUntil } from "../../bench/chaos.js";
import { refResult } from "./reference.js";

export const ROOT = path.resolve(import.meta.dirname, "../..");
export const WORKER_MAIN = path.join(ROOT, "dist/worker/main.js");
export const BIN = path.join(ROOT, "bin/cloudmill.js");

/** Fails early, with the fix, when dist/ is missing (worker processes run it). */
export const requireBuild = (): void => {
  if (!existsSync(WORKER_MAIN)) throw new Error("build first: npx tsc -p tsconfig.build.json");
};

/** Set CLOUDMILL_TEST_VERBOSE=1 to see the dev cloud's and workers' logs on stderr. */
const VERBOSE = process.env["CLOUDMILL_TEST_VERBOSE"] === "1";

/**
 * Polls fn until it returns something other than undefined; fails naming `what` after timeoutMs.
 * The last value or error seen is in the failure message.
 */
/** Polls fn until it gives a value (bench/chaos.ts's waitFor, polling a little faster). */
export const waitFor = <T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 90_000,
  intervalMs = 150,
): Promise<T> => pollUntil(what, fn, timeoutMs, intervalMs);

/** One line a worker process printed; `json` when it is a JSON object (Powertools logs). */
export interface WorkerLine {
  readonly worker: number;
  readonly raw: string;
  readonly json?: Readonly<Record<string, unknown>>;
}

const parseLine = (worker: number, raw: string): WorkerLine => {
  if (raw.startsWith("{")) {
    try {
      return { worker, raw, json: JSON.parse(raw) as Record<string, unknown> };
    } catch {
      // not JSON after all
    }
  }
  return { worker, raw };
};

/** Lines with this message (and every given field equal), e.g. ("chunk received", { jobId, chunk: 2 }). */
export const linesOf = (lines: readonly WorkerLine[], message: string, fields: Readonly<Record<string, unknown>> = {}): WorkerLine[] =>
  lines.filter((l) => l.json?.["message"] === message && Object.entries(fields).every(([k, v]) => l.json?.[k] === v));

export interface QueueDepth {
  readonly visible: number;
  readonly inFlight: number;
  readonly delayed: number;
}

export const queueDepth = async (sqs: SQSClient, queueUrl: string): Promise<QueueDepth> => {
  const { Attributes: a = {} } = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"],
    }),
  );
  return {
    visible: Number(a["ApproximateNumberOfMessages"] ?? 0),
    inFlight: Number(a["ApproximateNumberOfMessagesNotVisible"] ?? 0),
    delayed: Number(a["ApproximateNumberOfMessagesDelayed"] ?? 0),
  };
};

const isMissing = (err: unknown): boolean => {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === "NoSuchKey" || e.name === "NotFound" || e.$metadata?.httpStatusCode === 404;
};

export interface TestCloud {
  readonly cloud: DevCloud;
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly input: string;
  readonly output: string;
  readonly chunkSize: number;
  readonly partsQueueUrl: string;
  /** Every line every worker process printed so far, in arrival order. */
  readonly lines: readonly WorkerLine[];
  /** Calls listener for each worker line from now on; returns the unsubscribe function. */
  onLine(listener: (line: WorkerLine) => void): () => void;
  /** PutObject into the input bucket. */
  put(key: string, body: Uint8Array | string): Promise<void>;
  /** The object's bytes, or undefined when it does not exist. */
  get(bucket: string, key: string): Promise<Buffer | undefined>;
  getJson(bucket: string, key: string): Promise<unknown>;
  /** Keys under a prefix, in listing order. */
  keys(bucket: string, prefix: string): Promise<string[]>;
  /** The status at that key in the output bucket once it is terminal (not running). */
  waitForEnd(statusKey: string, timeoutMs?: number): Promise<JobStatus>;
  /** The task, parts and dead-letter queues all empty (nothing visible, in flight or delayed). */
  waitForIdle(timeoutMs?: number): Promise<void>;
  taskDepth(): Promise<QueueDepth>;
  stop(): Promise<void>;
}

export type TestCloudOptions = Partial<Omit<DevCloudOptions, "log">>;

export const startTestCloud = async (options: TestCloudOptions = {}): Promise<TestCloud> => {
  requireBuild();
  const lines: WorkerLine[] = [];
  const listeners = new Set<(line: WorkerLine) => void>();
  const chunkSize = options.chunkSize ?? 16 * 1024;
  const cloud = await startDevCloud({
    port: 0,
    workers: 2,
    visibilitySeconds: 30,
    // The fleet's own tests: every chunk goes to the workers unless a test asks for inline runs.
    inlineMaxBytes: 0,
    ...options,
    chunkSize,
    log: jsonLogger((l) => void (VERBOSE && process.stderr.write(`[dev] ${l}`)), "info"),
    onWorkerOutput: (worker, raw) => {
      if (VERBOSE) process.stderr.write(`[worker ${worker}] ${raw}\n`);
      const line = parseLine(worker, raw);
      lines.push(line);
      for (const l of listeners) l(line);
      options.onWorkerOutput?.(worker, raw);
    },
  });
  const { s3, sqs } = cloud.clients;
  const { QueueUrl: partsQueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: DEV_QUEUES.parts }));

  const get = async (bucket: string, key: string): Promise<Buffer | undefined> => {
    try {
      const res = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await res.Body!.transformToByteArray());
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  };
  const getJson = async (bucket: string, key: string): Promise<unknown> => {
    const bytes = await get(bucket, key);
    return bytes === undefined ? undefined : (JSON.parse(bytes.toString("utf8")) as unknown);
  };
  const taskDepth = () => queueDepth(sqs, cloud.taskQueueUrl);

  return {
    cloud,
    s3,
    sqs,
    input: cloud.inputBucket,
    output: cloud.outputBucket,
    chunkSize,
    partsQueueUrl: partsQueueUrl!,
    lines,
    onLine(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    async put(key, body) {
      await s3.send(new PutObjectCommand({ Bucket: cloud.inputBucket, Key: key, Body: body }));
    },
    get,
    getJson,
    async keys(bucket, prefix) {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const res = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        keys.push(...(res.Contents ?? []).map((o) => o.Key!));
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
      return keys;
    },
    async waitForEnd(statusKey, timeoutMs = 90_000) {
      return waitFor(
        `a final status at s3://${cloud.outputBucket}/${statusKey}`,
        async () => {
          const raw = await getJson(cloud.outputBucket, statusKey);
          if (raw === undefined) return undefined;
          const status = JobStatus.parse(raw);
          return status.state === "running" ? undefined : status;
        },
        timeoutMs,
      );
    },
    async waitForIdle(timeoutMs = 60_000) {
      await waitFor(
        "the task, parts and dead-letter queues to be empty",
        async () => {
          const queues = [
            cloud.taskQueueUrl,
            ...(cloud.spotTaskQueueUrl ? [cloud.spotTaskQueueUrl] : []),
            partsQueueUrl!,
            cloud.deadLetterQueueUrl,
          ];
          for (const url of queues) {
            const d = await queueDepth(sqs, url);
            // A delayed message on the parts queue is the reducer's own wake-up (pipeline/wake.ts):
            // it may outlive the job by its lease, and finds the job ended when it comes.
            if (d.visible + d.inFlight + (url === partsQueueUrl ? 0 : d.delayed) > 0) return undefined;
          }
          return true;
        },
        timeoutMs,
        250,
      );
    },
    taskDepth,
    stop: () => cloud.stop(),
  };
};

/**
 * A dev cloud for the tests of one file or describe block: started in beforeAll, stopped in
 * afterAll. Read it inside tests or hooks. Options may be a function, called in beforeAll
 * (after earlier hooks, e.g. one that starts a fake ECS agent whose URI goes in workerEnv).
 */
export const useDevCloud = (options: TestCloudOptions | (() => TestCloudOptions) = {}): (() => TestCloud) => {
  let cloud: TestCloud | undefined;
  beforeAll(async () => {
    cloud = await startTestCloud(typeof options === "function" ? options() : options);
  }, 90_000);
  afterAll(async () => {
    await cloud?.stop();
    cloud = undefined;
  }, 60_000);
  return () => {
    if (!cloud) throw new Error("useDevCloud(): not started yet (use it inside tests or hooks)");
    return cloud;
  };
};

/**
 * Fails unless `result` is what the single-pass reference (test/helpers/reference.ts, written
 * from the spec) gives for `op` over these bytes, in the op's default format: every emulated-cloud
 * and CLI test takes its expected answer here, never from the local engine or lib's op code,
 * which would share any bug of the code under test. Compared as JSON, the form result.json
 * and the CLI give it in (so -0 reads as 0).
 */
export const expectMatchesReference = (op: string, params: Params, bytes: Uint8Array | string, result: unknown): void => {
  const expected = JSON.parse(JSON.stringify(refResult(op, params, Buffer.from(bytes)))) as unknown;
  expect(result, `${op} ${JSON.stringify(params)} over ${Buffer.byteLength(bytes)} bytes: not the reference's answer`).toStrictEqual(
    expected,
  );
};

/**
 * The source of a test-only op module: `count` with an off-by-one (the last record is dropped),
 * as `count-but-last`. The suite's reference check must reject what it computes.
 */
export const WRONG_COUNT_OP = `import { defineOp } from ${JSON.stringify(pathToFileURL(path.join(ROOT, "dist/lib/core/ops/defineOp.js")).href)};
export const countButLast = defineOp({
  name: "count-but-last",
  format: "lines",
  orderFree: true,
  map: () => 1,
  combine: (a, b) => a + b,
  finalize: (n) => ({ records: Math.max(0, (n ?? 0) - 1) }),
});
`;

/** Number of chunks the splitter cuts `size` bytes into. */
export const chunksOf = (size: number, chunkSize: number): number => Math.ceil(size / chunkSize);

/** A port nothing listens on right now (listen on 0, close). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });

/** A child process whose output lines are collected; `exited` resolves with its exit code and signal. */
export interface Child {
  readonly child: ChildProcess;
  readonly stdout: string[];
  readonly stderr: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first stdout line (already printed or to come) that matches. */
  waitForLine(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
}

export const spawnChild = (
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; name?: string } = {},
): Child => {
  const child = spawn(command, args, { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<(line: string) => void>();
  const collect = (stream: NodeJS.ReadableStream, into: string[], isStdout: boolean) =>
    onLines(stream, (line) => {
      into.push(line);
      if (VERBOSE) process.stderr.write(`[${options.name ?? path.basename(args[0] ?? command)}${isStdout ? "" : " stderr"}] ${line}\n`);
      if (isStdout) for (const w of waiters) w(line);
    });
  collect(child.stdout!, stdout, true);
  collect(child.stderr!, stderr, false);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  return {
    child,
    stdout,
    stderr,
    exited,
    waitForLine(match, timeoutMs = 60_000) {
      const seen = stdout.find(match);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no matching line within ${timeoutMs} ms; stdout:\n${stdout.join("\n")}\nstderr:\n${stderr.join("\n")}`));
        }, timeoutMs);
        const waiter = (line: string) => {
          if (!match(line)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          resolve(line);
        };
        waiters.add(waiter);
        void exited.then(({ code, signal }) => {
          if (!waiters.has(waiter)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          reject(
            new Error(`exited (${code ?? signal}) before a matching line; stdout:\n${stdout.join("\n")}\nstderr:\n${stderr.join("\n")}`),
          );
        });
      });
    },
  };
};

/**
 * A worker process (dist/worker/main.js) run by hand against a dev cloud, configured as the
 * dev cloud configures its own, plus `env`.
 */
export const spawnWorker = (cloud: DevCloud, env: Readonly<Record<string, string>> = {}): Child =>
  spawnChild(process.execPath, [WORKER_MAIN], {
    name: "worker",
    env: {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CLOUDMILL_"))),
      [ENV.OUTPUT_BUCKET]: cloud.outputBucket,
      [ENV.TASK_QUEUE_URL]: cloud.taskQueueUrl,
      [ENV.PARTS_QUEUE_URL]: cloud.partsQueueUrl,
      [ENV.VISIBILITY_TIMEOUT_SECONDS]: "30",
      [ENV.WORKER_CONCURRENCY]: "1",
      [ENV.SERVICE_NAME]: "cloudmill-worker",
      AWS_ENDPOINT_URL: cloud.endpoint,
      AWS_REGION: "us-east-1",
      ...env,
    },
  });

/** One PUT /task-protection/v1/state the fake ECS agent received. */
export interface ProtectionRequest {
  readonly path: string;
  readonly body: { ProtectionEnabled?: boolean; ExpiresInMinutes?: number };
  /** Whatever the test's hook returned for it (e.g. what it saw at that moment). */
  note?: unknown;
  /** Answered 503 (FakeEcsAgent.refusing). */
  refused?: boolean;
}

export interface FakeEcsAgent {
  /** Give this to workers as ECS_AGENT_URI. */
  readonly uri: string;
  readonly requests: readonly ProtectionRequest[];
  /**
   * Called for each request before it is answered: the agent answers only once the returned
   * promise settles, so a test can hold a worker at a known point (it waits for protection
   * before it maps its chunk). Its value is kept as the request's note.
   */
  onRequest: ((request: ProtectionRequest) => unknown) | undefined;
  /** Requests still to refuse (answered `refusingStatus`), each one refused counting it down. */
  refusing: number;
  /** How it refuses: 503 (busy: worth asking again, the default) or a 4xx (it would refuse again). */
  refusingStatus: number;
  /**
   * The refusal's body, as the agent passes ECS's answer on: `{ error: { Code } }` with the
   * status (ECS throttles with a 400), or `{ failure: { Reason } }` with a 200. None by default.
   */
  refusingBody: unknown;
  close(): Promise<void>;
}

/** The ECS agent's task-protection endpoint on 127.0.0.1, recording what workers ask for. */
export const startFakeEcsAgent = async (): Promise<FakeEcsAgent> => {
  const requests: ProtectionRequest[] = [];
  const agent: FakeEcsAgent = {
    uri: "",
    requests,
    onRequest: undefined,
    refusing: 0,
    refusingStatus: 503,
    refusingBody: undefined,
    close: async () => {},
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (s: string) => (text += s));
    req.on("end", () => {
      void (async () => {
        if (req.method !== "PUT" || !req.url?.endsWith("/task-protection/v1/state")) {
          res.writeHead(404).end();
          return;
        }
        const request: ProtectionRequest = { path: req.url, body: JSON.parse(text || "{}") as ProtectionRequest["body"] };
        requests.push(request);
        try {
          request.note = await agent.onRequest?.(request);
        } catch (err) {
          request.note = err;
        }
        if (res.destroyed) return;
        if (agent.refusing > 0) {
          agent.refusing--;
          request.refused = true;
          if (agent.refusingBody === undefined) res.writeHead(agent.refusingStatus).end();
          else res.writeHead(agent.refusingStatus, { "content-type": "application/json" }).end(JSON.stringify(agent.refusingBody));
          return;
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ protection: { ProtectionEnabled: request.body.ProtectionEnabled ?? false } }));
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(agent, {
    uri: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
};

// --- Deterministic test data ---------------------------------------------------------------

const WORDS = [
  "the",
  "mill",
  "grinds",
  "über",
  "naïve",
  "日本語",
  "a+b",
  "100%",
  "data",
  "chunk",
  "The",
  "MILL",
  "🚀",
  "x",
  "reduce",
  "map",
  "foo-bar",
];
const SPACES = [" ", " ", " ", "  ", "\t", " \v ", "\f"];

/**
 * Lines of words separated by assorted ASCII whitespace, with empty lines, CRLF endings and
 * no final newline: every record-alignment edge a chunk boundary can land on.
 */
export const textOf = (bytes: number, seed = 1): Buffer => {
  const r = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const lines: string[] = [];
  let size = 0;
  while (size < bytes) {
    const roll = r();
    let line: string;
    if (roll < 0.05) line = "";
    else {
      const n = 1 + Math.floor(r() * 14);
      line = Array.from({ length: n }, () => pick(WORDS)).join(pick(SPACES));
      if (roll > 0.9) line += "\r";
    }
    lines.push(line);
    size += Buffer.byteLength(line) + 1;
  }
  return Buffer.from(lines.join("\n")); // no final newline
};

/** One number per line (ints, decimals, exponents, signs), with blank lines here and there. */
export const numbersOf = (bytes: number, seed = 2): Buffer => {
  const r = prng(seed);
  const lines: string[] = [];
  let size = 0;
  while (size < bytes) {
    const roll = r();
    const x = r() * 120 - 10; // some below 0 and above 100 for the histogram
    const line =
      roll < 0.03
        ? ""
        : roll < 0.3
          ? String(Math.round(x))
          : roll < 0.35
            ? `${(x / 10).toFixed(2)}e1`
            : roll < 0.4
              ? `+${Math.abs(x).toFixed(1)}`
              : x.toFixed(3);
    lines.push(line);
    size += line.length + 1;
  }
  return Buffer.from(`${lines.join("\n")}\n`);
};

/** A distinct job's result in a test cloud, read from its parts: key → count, and the partitions it has. */
export const distinctCounts = async (t: TestCloud, resultKey: string): Promise<{ partitions: number; counts: Map<string, number> }> => {
  const manifest = z
    .object({ partitions: z.number(), parts: z.array(z.object({ key: z.string() })) })
    .parse(await t.getJson(t.output, resultKey));
  const counts = new Map<string, number>();
  for (const part of manifest.parts) {
    const { bucket, key } = parseS3Uri(part.key);
    for (const line of (await t.get(bucket, key))!.toString("utf8").split("\n")) {
      if (line === "") continue;
      const row = z.object({ key: z.string(), count: z.number() }).parse(JSON.parse(line));
      counts.set(row.key, row.count);
    }
  }
  return { partitions: manifest.partitions, counts };
};
