/**
 * The container's main, as a function: configuration from the environment, the loop over
 * SQS and S3, and a graceful stop on SIGTERM (ECS sends it, then SIGKILL after stopTimeout).
 */
import { SqsTaskQueue } from "./SqsTaskQueue.js";
import { awsClients } from "./clients.js";
import { cloudDeps } from "./cloudDeps.js";
import { powertoolsLogger } from "./logger.js";
import { readWorkerConfig } from "./env.js";
import { ecsTaskProtection, noProtection } from "./taskProtection.js";
import { TaskWorker } from "./TaskWorker.js";

/** Time to finish in-flight chunks after SIGTERM; ECS's stopTimeout (120 s) leaves a margin. */
export const STOP_GRACE_MS = 100_000;

export const runWorker = async (env: Readonly<Record<string, string | undefined>>, proc: NodeJS.Process = process): Promise<void> => {
  const config = readWorkerConfig(env);
  const { logger } = powertoolsLogger(config.serviceName, config.logLevel);
  const faults = config.faults;
  const clients = awsClients({
    ...(config.endpoint ? { endpoint: config.endpoint } : {}),
    // Tests only (CLOUDMILL_FAULTS): each injected fault is logged, so a test can count them across processes.
    ...(faults ? { faults: { ...faults, onInject: (f) => logger.warn("fault injected", { service: f.service, operation: f.operation, kind: f.kind, n: f.n }) } } : {}),
  });
  const deps = cloudDeps(config, logger, clients);
  const worker = new TaskWorker({
    queue: new SqsTaskQueue(deps.clients.sqs, config.taskQueueUrl),
    deps,
    concurrency: config.concurrency,
    visibilitySeconds: config.visibilitySeconds,
    heartbeatSeconds: config.heartbeatSeconds,
    protection: config.ecsAgentUri ? ecsTaskProtection(config.ecsAgentUri, logger) : noProtection,
  }).start();
  logger.info("worker started", {
    concurrency: config.concurrency,
    visibilitySeconds: config.visibilitySeconds,
    queue: config.taskQueueUrl,
    ...(faults ? { faults: { rate: faults.rate, seed: faults.seed, kinds: faults.kinds ?? "all", operations: faults.operations ?? "all" } } : {}),
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info("stopping: finishing chunks in progress", { signal });
      void worker.stop(STOP_GRACE_MS).then(resolve);
    };
    proc.once("SIGTERM", () => stop("SIGTERM"));
    proc.once("SIGINT", () => stop("SIGINT"));
  });
  deps.clients.s3.destroy();
  deps.clients.sqs.destroy();
  logger.info("worker stopped", clients.injectors ? { faults: { s3: clients.injectors.s3.stats(), sqs: clients.injectors.sqs.stats() } } : {});
};
