/**
 * The one place that reads cloudmill's environment variables (names in constants.ts),
 * with typed getters per role. Nothing else in the code touches process.env.
 */
import os from "node:os";
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import { parseJsonWith } from "../core/parseJson.js";
import { parseSize } from "../core/job/size.js";
import { DEFAULTS, ENV, MiB } from "../core/constants.js";
import { CAPACITIES, type Capacity } from "../core/report/prices.js";

type Env = Readonly<Record<string, string | undefined>>;

const required = (env: Env, name: string): string => {
  const v = env[name];
  if (v === undefined || v === "") throw new CloudmillError(ErrorCode.ENVIRONMENT, `${name} is not set`);
  return v;
};

/** Not set by the stack: see `protectionIdleMs`. */
export const PROTECTION_IDLE_MS_ENV = "CLOUDMILL_PROTECTION_IDLE_MS";
const DEFAULT_PROTECTION_IDLE_MS = 2000;

const intOf = (env: Env, name: string, fallback: number, min = 1): number => {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min)
    throw new CloudmillError(ErrorCode.ENVIRONMENT, `${name}: expected a whole number ≥ ${min}, got ${JSON.stringify(raw)}`);
  return n;
};

const LogLevel = z.enum(["DEBUG", "INFO", "WARN", "ERROR"]).catch("INFO");

/** Endpoint override for an emulator (`cloudmill dev`); the AWS SDK's own variable. */
export const endpointOf = (env: Env): string | undefined => env["AWS_ENDPOINT_URL"] || undefined;

const common = (env: Env) => ({
  outputBucket: required(env, ENV.OUTPUT_BUCKET),
  logLevel: LogLevel.parse((env[ENV.LOG_LEVEL] ?? "INFO").toUpperCase()),
  serviceName: env[ENV.SERVICE_NAME] ?? "cloudmill",
  endpoint: endpointOf(env),
});

/** The op modules the lab deployed, for the roles that need the op registry (unset: built-ins only). */
const opsModulesOf = (env: Env): string[] => {
  const raw = env[ENV.OPS_MODULES];
  return raw === undefined || raw === "" ? [] : parseJsonWith(raw, z.array(z.string().min(1)), ENV.OPS_MODULES, ErrorCode.ENVIRONMENT);
};

/** The worker service to wake, if the stack names one. */
const fleetOf = (env: Env) => {
  const cluster = env[ENV.WORKER_CLUSTER];
  const service = env[ENV.WORKER_SERVICE];
  if (!cluster || !service) return undefined;
  return {
    cluster,
    service,
    spotService: env[ENV.SPOT_WORKER_SERVICE] || undefined,
    maxWorkers: intOf(env, ENV.MAX_WORKERS, 1),
    tasksPerWorker: intOf(env, ENV.WORKER_CONCURRENCY, 1),
  };
};

/** How the fleet's instances are bought, for prices; unset: on demand. */
const capacityOf = (env: Env): Capacity | undefined => {
  const value = env[ENV.CAPACITY];
  if (!value) return undefined;
  if (!(CAPACITIES as readonly string[]).includes(value))
    throw new CloudmillError(ErrorCode.ENVIRONMENT, `${ENV.CAPACITY}: expected ${CAPACITIES.join(" or ")}, got ${JSON.stringify(value)}`);
  return value as Capacity;
};

export const readSplitterConfig = (env: Env) => {
  const chunk = env[ENV.DEFAULT_CHUNK_SIZE];
  const chunkSize = chunk ? parseSize(chunk) : DEFAULTS.chunkSize;
  if (chunkSize === undefined || chunkSize < 1)
    throw new CloudmillError(ErrorCode.ENVIRONMENT, `${ENV.DEFAULT_CHUNK_SIZE}: expected a size, got ${JSON.stringify(chunk)}`);
  return {
    ...common(env),
    opsModules: opsModulesOf(env),
    taskQueueUrl: required(env, ENV.TASK_QUEUE_URL),
    /** The spot lane's queue (lib/core/pipeline/lanes.ts); unset: one lane. */
    spotTaskQueueUrl: env[ENV.SPOT_TASK_QUEUE_URL] || undefined,
    /** The buckets a job may read (unset: any). */
    inputBuckets: env[ENV.INPUT_BUCKETS] ? env[ENV.INPUT_BUCKETS]!.split(",") : undefined,
    defaultChunkSize: chunkSize,
    maxAttempts: intOf(env, ENV.MAX_ATTEMPTS, DEFAULTS.maxAttempts),
    jobDeadlineSeconds: intOf(env, ENV.JOB_DEADLINE_SECONDS, DEFAULTS.jobDeadlineSeconds),
    inlineMaxBytes: intOf(env, ENV.INLINE_MAX_BYTES, DEFAULTS.inlineMaxBytes, 0),
    /** A lab op's chunk mapped inline ends at this limit, as on the fleet. */
    taskTimeoutSeconds: intOf(env, ENV.TASK_TIMEOUT_SECONDS, DEFAULTS.taskTimeoutSeconds),
    /** Set by Lambda: the function's memory, which caps a lab op's heap when mapped inline. */
    memoryMiB: intOf(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", Math.floor(os.totalmem() / 2 ** 20)),
    fleet: fleetOf(env),
    instanceType: env[ENV.INSTANCE_TYPE] || undefined,
    capacity: capacityOf(env),
    /** Where a resume that queues no chunk sends the reducer's first wake-up (unset: none). */
    partsQueueUrl: env[ENV.PARTS_QUEUE_URL] || undefined,
    /** Where a listing out of time is handed on (unset: a listing runs to its end). */
    continuationQueueUrl: env[ENV.CONTINUATION_QUEUE_URL] || undefined,
  };
};
export type SplitterConfig = ReturnType<typeof readSplitterConfig>;

export const readWorkerConfig = (env: Env) => {
  const visibilitySeconds = intOf(env, ENV.VISIBILITY_TIMEOUT_SECONDS, DEFAULTS.visibilityTimeoutSeconds, 2);
  return {
    ...common(env),
    opsModules: opsModulesOf(env),
    taskQueueUrl: required(env, ENV.TASK_QUEUE_URL),
    /** The reducer's queue, where finished tasks' parts are named (partNotices.ts). */
    partsQueueUrl: required(env, ENV.PARTS_QUEUE_URL),
    /** Receives after which the task queue hands a task to its dead-letter queue (the stack's maxAttempts). */
    queueAttempts: intOf(env, ENV.MAX_ATTEMPTS, DEFAULTS.maxAttempts),
    /** The stack's region (unset: the SDK's environment, then us-east-1). */
    region: env[ENV.REGION] || undefined,
    visibilitySeconds,
    // A heartbeat well inside the visibility timeout, so a slow chunk is never handed out twice.
    heartbeatSeconds: Math.max(1, Math.min(DEFAULTS.heartbeatSeconds, Math.floor(visibilitySeconds / 3))),
    concurrency: intOf(env, ENV.WORKER_CONCURRENCY, os.availableParallelism()),
    taskTimeoutSeconds: intOf(env, ENV.TASK_TIMEOUT_SECONDS, DEFAULTS.taskTimeoutSeconds),
    usageReportSeconds: intOf(env, ENV.USAGE_REPORT_SECONDS, DEFAULTS.usageReportSeconds, 0),
    spillBytes: intOf(env, ENV.REDUCE_SPILL_MIB, DEFAULTS.reduceSpillBytes / MiB) * MiB,
    /** Where reduce tasks spill: the container's own disk. */
    spillRoot: env["TMPDIR"] || os.tmpdir(),
    /** Set by ECS: where the task's metadata (its id) is read. */
    ecsMetadataUri: env["ECS_CONTAINER_METADATA_URI_V4"] || undefined,
    /** Set by the ECS agent: where task scale-in protection is requested. */
    ecsAgentUri: env["ECS_AGENT_URI"] || undefined,
    /**
     * How long an idle worker keeps scale-in protection, so that back-to-back chunks keep it; 0
     * gives it up after each chunk (the stack sets none: tests that hold a worker per chunk do).
     */
    protectionIdleMs: intOf(env, PROTECTION_IDLE_MS_ENV, DEFAULT_PROTECTION_IDLE_MS, 0),
  };
};
export type WorkerConfig = ReturnType<typeof readWorkerConfig>;

/** The reducer enqueues a keyed job's reduce tasks once its chunks are mapped. */
export const readReducerConfig = (env: Env) => ({
  ...common(env),
  opsModules: opsModulesOf(env),
  taskQueueUrl: required(env, ENV.TASK_QUEUE_URL),
  /** The spot lane's queue (lib/core/pipeline/lanes.ts); unset: one lane. */
  spotTaskQueueUrl: env[ENV.SPOT_TASK_QUEUE_URL] || undefined,
  /** The stack's task time limit: how long the queue must look idle before a lost stage task is queued again. */
  taskTimeoutSeconds: intOf(env, ENV.TASK_TIMEOUT_SECONDS, DEFAULTS.taskTimeoutSeconds),
  /** Where the reducer sends itself a job's wake-ups (unset: it sends none). */
  partsQueueUrl: env[ENV.PARTS_QUEUE_URL] || undefined,
  instanceType: env[ENV.INSTANCE_TYPE] || undefined,
  capacity: capacityOf(env),
  /** Set by Lambda: the function's memory, which caps the heap of the thread a lab op's parts are folded on. */
  memoryMiB: intOf(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", Math.floor(os.totalmem() / 2 ** 20)),
});
export const readDeadLetterConfig = (env: Env) => common(env);
