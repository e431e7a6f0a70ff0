/**
 * `cloudmill dev`: an emulated AWS on this machine, wired as the stack wires the real one.
 * S3 and SQS speak the wire protocol (any AWS client can drive them); upload events reach
 * the splitter as S3 → Lambda would; part events go S3 → SQS → reducer in batches; the
 * dead-letter queue feeds the dead-letter handler; workers are separate processes running the
 * container's entry file, restarted if they die, as ECS would.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { SQSClient } from "@aws-sdk/client-sqs";
import type { S3Event } from "aws-lambda";
import { S3BlobStore } from "../aws/S3BlobStore.js";
import { SqsTaskQueue } from "../aws/SqsTaskQueue.js";
import { awsClients, destroyClients, type AwsClients } from "../aws/clients.js";
import { functionMappers } from "../aws/functionMappers.js";
import { SqsWakeSender } from "../aws/SqsWakeSender.js";
import { faultyClients, type FaultConfigInput, type FaultInjectionOptions } from "./faultInjection.js";
import { cloudDeps } from "../aws/cloudDeps.js";
import { DEFAULTS, DEV_BUCKETS, DEV_QUEUES, ENV } from "../core/constants.js";
import { raisesReducerEvent } from "../core/keys.js";
import { toCloudmillError } from "../core/errors.js";
import { sleep } from "../core/sleep.js";
import { opsRegistry } from "../core/ops/opModules.js";
import { publishRegistry } from "../core/ops/registryListing.js";
import type { Logger } from "../core/log.js";
import { compiledFile } from "../local/paths.js";
import type { ContinuationSender, FleetWaker } from "../core/ports.js";
import { dyingAfterParts } from "./dyingInvocation.js";
import { workersFor } from "../aws/EcsFleetWaker.js";
import { decodeUrlEncodedKey, type SqsBatchResponse } from "../aws/events.js";
import { continuationHandler, deadLetterHandler, reducerHandler, splitterHandler } from "../aws/handlers.js";
import { continuationDeduplicationId, SqsContinuationSender } from "../aws/SqsContinuationSender.js";
import { createDevResources, startEmulator, type Emulator, type RequestCounts } from "./emulator.js";
import { DEAD_LETTER_BATCH, pollIntoHandler, REDUCER_BATCH } from "./sqsEventSource.js";

/** Calls onLine with each complete line a text stream carries (without its newline). */
export const onLines = (stream: NodeJS.ReadableStream, onLine: (line: string) => void): void => {
  let buffered = "";
  stream.setEncoding("utf8");
  stream.on("data", (s: string) => {
    buffered += s;
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      onLine(line);
    }
  });
};

export interface DevCloudOptions {
  /** Default 0 (any free port); the CLI uses 4566. */
  readonly port?: number;
  readonly workers?: number;
  /** Chunks each worker process maps at once. Default 1. */
  readonly workerConcurrency?: number;
  readonly log: Logger;
  readonly chunkSize?: number;
  readonly maxAttempts?: number;
  readonly visibilitySeconds?: number;
  /**
   * Op modules served beside the built-ins (`cloudmill dev --ops`): the roles here and every
   * worker process load them, as a lab's deployed functions and image would.
   */
  readonly opsModules?: readonly string[];
  /** Extra environment for worker processes. */
  readonly workerEnv?: Readonly<Record<string, string>>;
  /**
   * Tests only: faults injected into worker processes' S3 and SQS calls. Such workers run the
   * dev cloud's own entry (faultyWorker.ts) around the container's worker loop.
   */
  readonly workerFaults?: FaultConfigInput;
  /** Where worker processes' output goes. Default: dropped. */
  readonly onWorkerOutput?: (workerIndex: number, line: string) => void;
  /**
   * Tests only: faults injected into the S3 and SQS calls of the roles that run in this process
   * (splitter, reducer, dead-letter), as `workerFaults` does for worker processes.
   * The emulated AWS plumbing (S3 notifications, Lambda's pollers) is left reliable.
   */
  readonly roleFaults?: FaultInjectionOptions;
  /** Jobs of at most this many input bytes are mapped by the splitter, as the stack's is. Default DEFAULTS.inlineMaxBytes. */
  readonly inlineMaxBytes?: number;
  /**
   * The splitter's time limit per invocation, as its Lambda function has one. Default 5 minutes, as
   * the stack's. Its clock is what it keeps its budgets by (an inline run, a listing); nothing stops it.
   */
  readonly splitterTimeoutMs?: number;
  /**
   * Time a splitter invocation keeps back from listing a job's inputs, handing the rest on through
   * its continuation queue when it has less (default DEFAULTS.listingReserveMs). Tests set it to
   * the timeout, so that every invocation lists one piece and hands on.
   */
  readonly listingReserveMs?: number;
  /** Tests only: inputs a manifest lists itself, per piece of a longer list, and per piece of a listing (default INPUTS_PER_PIECE). */
  readonly inputsPerPiece?: number;
  /**
   * Tests only: each listing continuation is sent this many times. A copy goes in the job's message
   * group under a deduplication id of its own, as one SQS cannot drop arrives (sent again past its
   * 5-minute window): the queue, not deduplication, must keep two copies from listing at once. Default 1.
   */
  readonly continuationCopies?: number;
  /**
   * Most worker processes an idle fleet is woken to when the splitter enqueues, as the stack's
   * splitter raises the worker service's count. Default `workers`: with `workers: 0`, nothing wakes
   * and tasks wait for `startWorkers`.
   */
  readonly maxWorkers?: number;
  /**
   * Tests only: the splitter's first invocation for an upload dies (its function timed out) once
   * it has written this many parts of a job it maps inline; Lambda then invokes it again.
   */
  readonly splitterDiesAfterParts?: number;
  /**
   * A spot lane (a stack with `spot: "per-job"`): its own task queue and this many worker
   * processes on it (0: woken by the first job that prefers cheapest, up to maxWorkers). Unset: one lane.
   */
  readonly spotWorkers?: number;
  /** Tests only: how long a queued merge or reduce task is left to its worker before the reducer queues it again. Default 10 minutes. */
  readonly taskLeaseSeconds?: number;
  /**
   * How long the reducer's event source gathers messages into one invocation. Default 1 s, for
   * quick tests; the stack's is DEFAULTS.reducerBatchWindowSeconds, which benchmarks of its
   * requests use.
   */
  readonly reducerWindowMs?: number;
  /**
   * Buckets besides the input bucket that jobs may read, as the stack's `extraInputBuckets`:
   * the splitter refuses any other (the output bucket included), as the stack's does.
   */
  readonly extraInputBuckets?: readonly string[];
  /**
   * Tests only: how long a part event the reducer failed on stays invisible before it is tried
   * again (the stack's is 30 minutes). Default 30 s. After DEFAULTS.partEventAttempts receives it
   * goes to the parts dead-letter queue, which the reducer drains too, as the stack's does.
   */
  readonly partsVisibilitySeconds?: number;
}

export interface DevCloud {
  readonly endpoint: string;
  readonly port: number;
  readonly inputBucket: string;
  readonly outputBucket: string;
  readonly taskQueueUrl: string;
  /** The reducer's queue: workers' part notices, running markers' events, wake-ups. */
  readonly partsQueueUrl: string;
  readonly deadLetterQueueUrl: string;
  /** The spot lane's task queue, with `spotWorkers`. */
  readonly spotTaskQueueUrl?: string;
  readonly clients: AwsClients;
  /** Worker processes by slot; a dead one is replaced. */
  workerPids(): number[];
  /** The spot lane's worker processes by slot (their output's slots are SPOT_SLOTS + slot). */
  spotWorkerPids(): number[];
  /** Starts this many more worker processes (a fleet that was idle, or scaled out by hand). */
  startWorkers(count: number): void;
  /** Worker processes started when the splitter woke the idle fleet, so far. */
  woken(): number;
  /** Kills a worker process with the signal (tests: SIGKILL mid-chunk); it is replaced. */
  killWorker(index: number, signal?: NodeJS.Signals): void;
  /** Requests the emulated AWS served so far, by kind (every client's: roles, workers, uploads). */
  requests(): RequestCounts;
  /** The same requests by API action (Emulator.requestActions). */
  requestActions(): Readonly<Record<string, number>>;
  /** ReceiveMessage requests waiting for a message now (tests: a worker idle in its long poll). */
  longPolls(): number;
  stop(): Promise<void>;
}

type Lane = "on-demand" | "spot";
/** Where the spot lane's worker slots start in `onWorkerOutput`. */
export const SPOT_SLOTS = 1000;

/** Invocations of the splitter per S3 event, as Lambda makes for an asynchronous invocation. */
const SPLITTER_ATTEMPTS = 3;

/**
 * The continuation queue's, as the stack's: one continuation an invocation, two invocations at
 * most (the FIFO queue hands out one message of a job at a time). It and its dead-letter queue
 * are seldom used: a longer poll keeps their share of the emulator's requests small.
 */
const CONTINUATION_BATCH = { size: 1, windowMs: 0, waitSeconds: 5 } as const;
const CONTINUATION_CONCURRENCY = 2;
const CONTINUATION_DEAD_LETTER_BATCH = { ...DEAD_LETTER_BATCH, waitSeconds: 5 } as const;

/** Tests: the continuation sent, then `copies - 1` copies that SQS's deduplication cannot drop (DevCloudOptions.continuationCopies). */
const copied = (sqs: SQSClient, queueUrl: string, copies: number): ContinuationSender => {
  const sender = new SqsContinuationSender(sqs, queueUrl);
  if (copies <= 1) return sender;
  return {
    handOn: async (continuation) => {
      await sender.handOn(continuation);
      for (let i = 1; i < copies; i++) await sender.send(continuation, `${continuationDeduplicationId(continuation)}-copy-${i}`);
    },
  };
};

/** Deliveries of a splitter's dead letter to the dead-letter handler (the stack's queue keeps it 14 days). */
const SPLITTER_DEAD_LETTER_ATTEMPTS = 10;

export const startDevCloud = async (options: DevCloudOptions): Promise<DevCloud> => {
  const log = options.log;
  // Absolute file URLs, so workers started elsewhere load the same files; a bad module fails here.
  const opsModules = (options.opsModules ?? []).map((m) => (m.startsWith("file:") ? m : pathToFileURL(path.resolve(m)).href));
  const registry = await opsRegistry(opsModules);
  const emulator: Emulator = await startEmulator({ port: options.port ?? 0 });
  const clients = awsClients({ endpoint: emulator.endpoint });
  const maxAttempts = options.maxAttempts ?? DEFAULTS.maxAttempts;
  const visibilitySeconds = options.visibilitySeconds ?? 30;
  const splitterTimeoutMs = options.splitterTimeoutMs ?? 5 * 60_000;
  let resources: Awaited<ReturnType<typeof createDevResources>>;
  try {
    resources = await createDevResources(clients, {
      partsQueue: DEV_QUEUES.parts,
      ...(options.partsVisibilitySeconds !== undefined ? { partsVisibilitySeconds: options.partsVisibilitySeconds } : {}),
      ...(options.spotWorkers !== undefined ? { spotTaskQueue: DEV_QUEUES.spotTasks } : {}),
      continuationQueue: DEV_QUEUES.continuations,
      // As the stack's: six invocations' time, so that no copy lists beside one still running.
      continuationVisibilitySeconds: Math.ceil((6 * splitterTimeoutMs) / 1000),
      maxReceiveCount: maxAttempts,
      visibilitySeconds,
    });
    // The ops this cloud serves, with their digests, for clients to list and check against.
    await publishRegistry(new S3BlobStore(clients.s3, DEV_BUCKETS.output), registry);
  } catch (err) {
    destroyClients(clients);
    await emulator.stop();
    throw err;
  }
  const stop = new AbortController();
  const outputBucket = DEV_BUCKETS.output;
  const inputBucket = DEV_BUCKETS.input;

  // The roles' own clients (faulty when asked); the plumbing below keeps the reliable ones.
  const roleClients = options.roleFaults ? faultyClients({ endpoint: emulator.endpoint }, options.roleFaults) : clients;
  // Reports price the work as the stack's default instance type would.
  const deps = {
    ...cloudDeps({ outputBucket, endpoint: emulator.endpoint }, log, roleClients),
    registry,
    instanceType: DEFAULTS.instanceType,
  };
  // Lab ops mapped inline run on threads, as in the stack's splitter function.
  const taskTimeout = Number(options.workerEnv?.[ENV.TASK_TIMEOUT_SECONDS] ?? DEFAULTS.taskTimeoutSeconds);
  const mappers = functionMappers({ opsModules, memoryMiB: DEFAULTS.splitterMemoryMiB, taskTimeoutSeconds: taskTimeout });
  const splitDeps = {
    ...deps,
    queue: new SqsTaskQueue(roleClients.sqs, resources.taskQueueUrl),
    // A spot lane (lanes.ts): jobs that prefer cheapest are queued there, for its own workers.
    ...(resources.spotTaskQueueUrl ? { spotQueue: new SqsTaskQueue(roleClients.sqs, resources.spotTaskQueueUrl) } : {}),
    ...(mappers ? { mappers } : {}),
    // The reducer's own wake-ups, on the parts queue, as the stack's splitter and reducer send them.
    wake: new SqsWakeSender(roleClients.sqs, resources.partsQueueUrl!),
    // A listing out of time goes on in a later invocation, through the splitter's own queue.
    continuations: copied(roleClients.sqs, resources.continuationQueueUrl!, options.continuationCopies ?? 1),
    ...(options.inputsPerPiece !== undefined ? { inputsPerPiece: options.inputsPerPiece } : {}),
    ...(options.taskLeaseSeconds !== undefined ? { taskLeaseMs: options.taskLeaseSeconds * 1000 } : {}),
    taskTimeoutSeconds: taskTimeout,
    inputBuckets: [inputBucket, ...(options.extraInputBuckets ?? [])],
  };
  const maxWorkers = options.maxWorkers ?? options.workers ?? 2;
  let woken = 0;
  // The fleet as the splitter wakes it: worker processes, started only when none run.
  const fleet: FleetWaker = {
    wake: async (tasks, prefer) => {
      // The job's lane: the spot lane's pool for one that prefers cheapest, when there is one.
      const lane: Lane = prefer === "cheapest" && resources.spotTaskQueueUrl ? "spot" : "on-demand";
      if (pools[lane].some((w) => w !== undefined) || maxWorkers === 0) return 0;
      const count = workersFor(tasks, { maxWorkers, tasksPerWorker: options.workerConcurrency ?? 1 }, prefer);
      startWorkers(count, lane);
      woken += count;
      return count;
    },
  };
  const triggerConfig = {
    defaultChunkSize: options.chunkSize ?? DEFAULTS.chunkSize,
    maxAttempts,
    jobDeadlineSeconds: DEFAULTS.jobDeadlineSeconds,
    inlineMaxBytes: options.inlineMaxBytes ?? DEFAULTS.inlineMaxBytes,
    ...(options.listingReserveMs !== undefined ? { listingReserveMs: options.listingReserveMs } : {}),
  };
  const diedOnce = new Set<string>();
  // One invocation as Lambda makes it: a clock that runs out, and (tests) a death after N parts.
  const contextOfInvocation = () => {
    const ends = Date.now() + splitterTimeoutMs;
    return { getRemainingTimeInMillis: () => Math.max(0, ends - Date.now()) };
  };
  const split = (event: S3Event): Promise<unknown> => {
    const context = contextOfInvocation();
    const key = event.Records[0]?.s3.object.key ?? "";
    const dies = options.splitterDiesAfterParts;
    if (dies === undefined || diedOnce.has(key)) return splitterHandler({ ...splitDeps, fleet }, triggerConfig)(event, context);
    diedOnce.add(key);
    return splitterHandler(dyingAfterParts({ ...splitDeps, fleet }, dies), triggerConfig)(event, context);
  };
  // The continuation queue's event source: one continuation per invocation, each with its own clock.
  const continueListing = (event: unknown): Promise<SqsBatchResponse> =>
    continuationHandler({ ...splitDeps, fleet }, triggerConfig)(event, contextOfInvocation());
  const continuations = new SqsTaskQueue(clients.sqs, resources.continuationQueueUrl!);
  const continuationDeadLetters = new SqsTaskQueue(clients.sqs, resources.continuationDeadLetterQueueUrl!);
  const partsQueue = new SqsTaskQueue(clients.sqs, resources.partsQueueUrl!);
  const partsDeadLetters = new SqsTaskQueue(clients.sqs, resources.partsDeadLetterQueueUrl!);
  const deadLetters = new SqsTaskQueue(clients.sqs, resources.deadLetterQueueUrl);

  // S3 → Lambda invokes the splitter asynchronously: Lambda retries a failed invocation twice
  // (after about 1 and 2 minutes; here after 1 and 2 seconds), then gives up on the event.
  const splitWithRetries = async (event: S3Event): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        await split(event);
        return;
      } catch (err) {
        if (attempt >= SPLITTER_ATTEMPTS || stop.signal.aborted) throw err;
        log.warn("splitter failed; Lambda retries the event", { attempt, error: toCloudmillError(err).message });
        await sleep(attempt * 1000, stop.signal).catch(() => undefined);
      }
    }
  };

  // S3 → Lambda for the input bucket; S3 → SQS for running markers, as the stack's notifications do
  // (workers name their parts to the reducer themselves).
  const pendingSplits = new Set<Promise<unknown>>();
  emulator.onObjectCreated(async (event: S3Event) => {
    for (const record of event.Records) {
      const bucket = record.s3.bucket.name;
      const key = record.s3.object.key;
      if (bucket === inputBucket) {
        // Past its retries, Lambda sends the event to the splitter's dead-letter queue, with the
        // last error; the stack's dead-letter function fails the job that never started.
        const p = splitWithRetries({ Records: [record] }).catch(async (err: unknown) => {
          const message = toCloudmillError(err).message;
          log.error("splitter failed; event sent to its dead-letter queue", { key, error: message });
          const letter = {
            messageId: `splitter-${Date.now()}`,
            body: JSON.stringify({ Records: [record] }),
            messageAttributes: { ErrorMessage: { stringValue: message, dataType: "String" } },
          };
          // The queue hands a letter its handler failed on back after its visibility timeout: here, after 1, 2, … s.
          for (let attempt = 1; attempt <= SPLITTER_DEAD_LETTER_ATTEMPTS && !stop.signal.aborted; attempt++) {
            const { batchItemFailures } = await deadLetterHandler(deps)({ Records: [letter] });
            if (batchItemFailures.length === 0) return;
            await sleep(attempt * 1000, stop.signal).catch(() => undefined);
          }
          log.error("splitter dead letter not handled", { key });
        });
        pendingSplits.add(p);
        void p.finally(() => pendingSplits.delete(p));
      } else if (bucket === outputBucket && raisesReducerEvent(decodeUrlEncodedKey(key))) {
        emulator.deliver(resources.partsQueueUrl!, JSON.stringify({ Records: [record] }));
      }
    }
  });

  const pollers = [
    pollIntoHandler(partsQueue, reducerHandler(splitDeps), stop.signal, log, {
      ...REDUCER_BATCH,
      ...(options.reducerWindowMs !== undefined ? { windowMs: options.reducerWindowMs } : {}),
    }),
    pollIntoHandler(partsDeadLetters, reducerHandler(splitDeps), stop.signal, log, DEAD_LETTER_BATCH),
    pollIntoHandler(deadLetters, deadLetterHandler(deps), stop.signal, log, DEAD_LETTER_BATCH),
    ...Array.from({ length: CONTINUATION_CONCURRENCY }, () =>
      pollIntoHandler(continuations, continueListing, stop.signal, log, CONTINUATION_BATCH),
    ),
    // Continuations that failed on every try: their jobs fail, as an event the splitter failed on does.
    pollIntoHandler(continuationDeadLetters, deadLetterHandler(deps), stop.signal, log, CONTINUATION_DEAD_LETTER_BATCH),
  ];

  // Worker processes: the container's entry file, configured as the stack configures it.
  const workerEnv: Record<string, string> = {
    ...Object.fromEntries(
      Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined && !e[0].startsWith("CLOUDMILL_")),
    ),
    [ENV.OUTPUT_BUCKET]: outputBucket,
    [ENV.TASK_QUEUE_URL]: resources.taskQueueUrl,
    [ENV.PARTS_QUEUE_URL]: resources.partsQueueUrl!,
    [ENV.VISIBILITY_TIMEOUT_SECONDS]: String(visibilitySeconds),
    [ENV.MAX_ATTEMPTS]: String(maxAttempts),
    [ENV.WORKER_CONCURRENCY]: String(options.workerConcurrency ?? 1),
    [ENV.SERVICE_NAME]: "cloudmill-worker",
    // Usage reports more often than a deployed worker's minute: `cloudmill fleet --endpoint` shows them.
    [ENV.USAGE_REPORT_SECONDS]: "5",
    ...(opsModules.length > 0 ? { [ENV.OPS_MODULES]: JSON.stringify(opsModules) } : {}),
    AWS_ENDPOINT_URL: emulator.endpoint,
    AWS_REGION: "us-east-1",
    ...options.workerEnv,
  };
  const workerArgs = options.workerFaults
    ? [compiledFile("lib/dev/faultyWorker.js"), JSON.stringify(options.workerFaults)]
    : [compiledFile("worker/main.js")];
  // Worker processes by lane: the spot lane's consume its own queue (its slots are numbered after 1000 in output).
  const pools: Record<Lane, (ChildProcess | undefined)[]> = { "on-demand": [], spot: [] };
  const workers = pools["on-demand"];
  const startWorker = (i: number, lane: Lane = "on-demand"): void => {
    const env = lane === "spot" ? { ...workerEnv, [ENV.TASK_QUEUE_URL]: resources.spotTaskQueueUrl! } : workerEnv;
    const child = spawn(process.execPath, workerArgs, { env, stdio: ["ignore", "pipe", "pipe"] });
    pools[lane][i] = child;
    const slot = lane === "spot" ? SPOT_SLOTS + i : i;
    for (const stream of [child.stdout, child.stderr]) onLines(stream, (line) => options.onWorkerOutput?.(slot, line));
    child.once("exit", (code, signal) => {
      if (stop.signal.aborted) return;
      log.warn("worker exited; starting a new one", { worker: slot, code, signal });
      startWorker(i, lane);
    });
  };
  for (let i = 0; i < (options.workers ?? 2); i++) startWorker(i);
  for (let i = 0; i < (options.spotWorkers ?? 0); i++) startWorker(i, "spot");
  /** More worker processes, in new slots of the lane. */
  function startWorkers(count: number, lane: Lane = "on-demand"): void {
    for (let i = 0; i < count; i++) startWorker(pools[lane].length, lane);
  }

  return {
    endpoint: emulator.endpoint,
    port: emulator.port,
    inputBucket,
    outputBucket,
    taskQueueUrl: resources.taskQueueUrl,
    partsQueueUrl: resources.partsQueueUrl!,
    ...(resources.spotTaskQueueUrl ? { spotTaskQueueUrl: resources.spotTaskQueueUrl } : {}),
    deadLetterQueueUrl: resources.deadLetterQueueUrl,
    clients,
    workerPids: () => workers.map((w) => w?.pid ?? -1),
    spotWorkerPids: () => pools.spot.map((w) => w?.pid ?? -1),
    startWorkers: (count) => startWorkers(count),
    woken: () => woken,
    killWorker: (i, signal = "SIGKILL") => void workers[i]?.kill(signal),
    requests: () => emulator.requests(),
    requestActions: () => emulator.requestActions(),
    longPolls: () => emulator.longPolls(),
    async stop() {
      stop.abort();
      const exited = [...workers, ...pools.spot].map(
        (w) =>
          new Promise<void>((resolve) => {
            if (!w || w.exitCode !== null || w.signalCode !== null) return resolve();
            w.once("exit", () => resolve());
            w.kill("SIGTERM");
            setTimeout(() => w.kill("SIGKILL"), 10_000).unref();
          }),
      );
      // Stopping workers wait for their long poll's answer: the cloud is going, so it comes now.
      emulator.hurryLongPolls();
      await Promise.all(exited);
      await Promise.all(pollers);
      await Promise.all(pendingSplits);
      await mappers?.close();
      await emulator.stop();
      destroyClients(clients);
      if (roleClients !== clients) destroyClients(roleClients);
    },
  };
};
