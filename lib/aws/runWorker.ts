/**
 * The container's main, as a function: configuration from the environment, the loop over
 * SQS and S3, and a graceful stop on SIGTERM (ECS sends it, then SIGKILL after stopTimeout).
 */
import { rm, statfs } from "node:fs/promises";
import os from "node:os";
import { enableLinearRegExp } from "../sandbox/linearRegExp.js";
import type { Logger } from "../core/log.js";
import { opsRegistry } from "../core/ops/opModules.js";
import { ThreadItemRunner } from "../sandbox/ThreadItemRunner.js";
import { ThreadMapperHost } from "../sandbox/ThreadMapperHost.js";
import { MainThreadWatchdog } from "../sandbox/MainThreadWatchdog.js";
import { awsClients, destroyClients, type AwsClientOptions } from "./clients.js";
import { cloudDeps } from "./cloudDeps.js";
import { containerMemory, mapperHeap } from "./containerMemory.js";
import { readWorkerConfig } from "./env.js";
import { powertoolsLogger } from "./logger.js";
import { SpillStore, spillFolder } from "./SpillStore.js";
import { SqsPartNotifier } from "./SqsPartNotifier.js";
import { SqsTaskQueue } from "./SqsTaskQueue.js";
import { ecsTaskProtection, noProtection } from "./taskProtection.js";
import { TaskWorker, WORKER_ID } from "./TaskWorker.js";
import { startUsageReports } from "./usage.js";

/**
 * What a worker's disk keeps free of spilled runs: a share of it, from 1 to 4 GiB. The instance's
 * root volume holds its images too, and every task the worker runs at once spills there.
 */
const SPILL_RESERVE_SHARE = 0.15;
const SPILL_RESERVE_MIN_BYTES = 1024 ** 3;
const SPILL_RESERVE_MAX_BYTES = 4 * 1024 ** 3;

/** Time allowed for a heartbeat sent just before a long call to reach SQS. */
const HEARTBEAT_LANDS_SECONDS = 5;

/**
 * How long a done task's delete waits for others to share its DeleteMessageBatch (up to 10). No
 * slot waits for it, and its message stays hidden meanwhile, so a quarter of a second costs nothing
 * and lets tiny tasks' deletes go ten at a time instead of one or two.
 */
const DELETE_WINDOW_MS = 250;

/** How long a done task's part notice waits for others to share its message: as its delete, which waits for it. */
const NOTICE_WINDOW_MS = 250;

/** Time to finish in-flight chunks after SIGTERM; ECS's stopTimeout (120 s) leaves a margin. */
export const STOP_GRACE_MS = 100_000;

/** What a caller hands in from outside the environment: only the dev cloud's entry does. */
export interface WorkerHooks {
  readonly proc?: NodeJS.Process;
  /** Wraps the clients' HTTP handlers (fault injection); given the worker's logger. */
  readonly wrapHandler?: (logger: Logger) => NonNullable<AwsClientOptions["wrapHandler"]>;
}

/** Runs until SIGTERM or SIGINT, then finishes or releases its chunks; resolves with the logger it used. */
export const runWorker = async (env: Readonly<Record<string, string | undefined>>, hooks: WorkerHooks = {}): Promise<Logger> => {
  const proc = hooks.proc ?? process;
  const config = readWorkerConfig(env);
  enableLinearRegExp();
  const { logger } = powertoolsLogger(config.serviceName, config.logLevel);
  // Listened for from the start, and for good: a signal while the worker starts, or a second one
  // while it stops (ECS's SIGTERM, then a Ctrl-C), must not end the process before its chunks are released.
  let asked: string | undefined;
  const stopAsked = new Promise<string>((resolve) => {
    const ask = (signal: string): void => {
      if (asked !== undefined) return void logger.info("already stopping", { signal });
      asked = signal;
      resolve(signal);
    };
    proc.on("SIGTERM", () => ask("SIGTERM"));
    proc.on("SIGINT", () => ask("SIGINT"));
  });
  const clients = awsClients({
    ...(config.endpoint ? { endpoint: config.endpoint } : {}),
    ...(config.region ? { region: config.region } : {}),
    ...(hooks.wrapHandler ? { wrapHandler: hooks.wrapHandler(logger) } : {}),
  });
  const items = new ThreadItemRunner({ opsModules: config.opsModules });
  const memory = containerMemory();
  const limit = (await memory())?.limit ?? os.totalmem();
  const mappers = new ThreadMapperHost({
    opsModules: config.opsModules,
    taskTimeoutSeconds: config.taskTimeoutSeconds,
    ...mapperHeap(limit, config.concurrency),
  });
  const guard = new MainThreadWatchdog({
    defaultLimitSeconds: config.taskTimeoutSeconds,
    // Past this, a message whose last heartbeat went just before the call would be visible again
    // (less a few seconds for that heartbeat's request to land).
    mostSeconds: Math.max(1, config.visibilitySeconds - config.heartbeatSeconds - HEARTBEAT_LANDS_SECONDS),
    onError: (err) => logger.error("the main thread's watchdog failed: op code there runs unguarded", { error: err.message }),
  });
  const cloud = cloudDeps(config, logger, clients);
  const registry = await opsRegistry(config.opsModules);
  // Reduce tasks spill their sorted runs to this container's disk while it has room (SpillStore):
  // a run is read back once, by the task that wrote it, and a killed container takes its runs with it.
  const spillDir = await spillFolder(config.spillRoot);
  const disk = await statfs(spillDir);
  const scratch = new SpillStore({
    dir: spillDir,
    fallback: cloud.output,
    reserveBytes: Math.min(SPILL_RESERVE_MAX_BYTES, Math.max(SPILL_RESERVE_MIN_BYTES, disk.blocks * disk.bsize * SPILL_RESERVE_SHARE)),
  });
  const deps = { ...cloud, registry, items, mappers, guard, scratch, spillBytes: config.spillBytes };
  const worker = new TaskWorker({
    queue: new SqsTaskQueue(clients.sqs, config.taskQueueUrl, { deleteWindowMs: DELETE_WINDOW_MS }),
    deps,
    concurrency: config.concurrency,
    visibilitySeconds: config.visibilitySeconds,
    heartbeatSeconds: config.heartbeatSeconds,
    queueAttempts: config.queueAttempts,
    protection: config.ecsAgentUri ? ecsTaskProtection(config.ecsAgentUri, logger, { idleMs: config.protectionIdleMs }) : noProtection,
    memory,
    notices: new SqsPartNotifier(clients.sqs, config.partsQueueUrl, NOTICE_WINDOW_MS),
  });
  // Told to stop while it started: it takes no task at all.
  if (asked === undefined) worker.start();
  const usage =
    config.usageReportSeconds > 0
      ? startUsageReports({
          store: deps.output,
          everySeconds: config.usageReportSeconds,
          worker: WORKER_ID,
          memory,
          chunks: () => worker.chunks,
          ...(config.ecsMetadataUri ? { metadataUri: config.ecsMetadataUri } : {}),
        })
      : undefined;
  logger.info("worker started", {
    // Which Node the container really runs (the image's node:22; the staged-image test checks it).
    node: process.version,
    concurrency: config.concurrency,
    visibilitySeconds: config.visibilitySeconds,
    mapperHeapMiB: mapperHeap(limit, config.concurrency).memoryMiB,
    queue: config.taskQueueUrl,
  });
  const signal = await stopAsked;
  logger.info("stopping: finishing chunks in progress", { signal });
  await worker.stop(STOP_GRACE_MS);
  await usage?.stop();
  await items.close();
  await mappers.close();
  await guard.close();
  await rm(spillDir, { recursive: true, force: true }).catch((err: unknown) =>
    logger.warn("spill folder not removed", { dir: spillDir, error: (err as Error).message }),
  );
  destroyClients(clients);
  logger.info("worker stopped");
  return logger;
};
