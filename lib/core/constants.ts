/**
 * Every name and default that more than one part of cloudmill shares lives here:
 * the CDK stack, the Lambda handlers, the worker and the CLI import the same values,
 * so infrastructure and code cannot drift apart.
 */

/** Environment variable names read by the handlers and the worker (and set by the stack). */
export const ENV = {
  /**
   * The AWS SDK's own region variable. Lambda sets it; the worker's task definition sets it too,
   * since ECS agents older than 2026 do not, and a worker would then call us-east-1.
   */
  REGION: "AWS_REGION",
  OUTPUT_BUCKET: "CLOUDMILL_OUTPUT_BUCKET",
  TASK_QUEUE_URL: "CLOUDMILL_TASK_QUEUE_URL",
  /** The spot lane's task queue (a stack with `spot: "per-job"`); empty: one lane. */
  SPOT_TASK_QUEUE_URL: "CLOUDMILL_SPOT_TASK_QUEUE_URL",
  /** The queue that brings the reducer part events, on which it also sends itself wake-ups. */
  PARTS_QUEUE_URL: "CLOUDMILL_PARTS_QUEUE_URL",
  /** The splitter's own queue: a listing out of time is handed on there, and invokes it again. */
  CONTINUATION_QUEUE_URL: "CLOUDMILL_CONTINUATION_QUEUE_URL",
  DEFAULT_CHUNK_SIZE: "CLOUDMILL_DEFAULT_CHUNK_SIZE",
  MAX_ATTEMPTS: "CLOUDMILL_MAX_ATTEMPTS",
  JOB_DEADLINE_SECONDS: "CLOUDMILL_JOB_DEADLINE_SECONDS",
  VISIBILITY_TIMEOUT_SECONDS: "CLOUDMILL_VISIBILITY_TIMEOUT_SECONDS",
  WORKER_CONCURRENCY: "CLOUDMILL_WORKER_CONCURRENCY",
  /** The op modules a lab deployed (JSON array of paths or file URLs), loaded beside the built-ins. */
  OPS_MODULES: "CLOUDMILL_OPS_MODULES",
  TASK_TIMEOUT_SECONDS: "CLOUDMILL_TASK_TIMEOUT_SECONDS",
  /** How often a worker writes its usage report (`_fleet/`); 0: never. */
  USAGE_REPORT_SECONDS: "CLOUDMILL_USAGE_REPORT_SECONDS",
  /** MiB of pairs a worker's reduce task holds before it spills a sorted run to the container's disk. */
  REDUCE_SPILL_MIB: "CLOUDMILL_REDUCE_SPILL_MIB",
  /** The buckets a job may name inputs in (comma-separated): the input bucket and extraInputBuckets; unset: any. */
  INPUT_BUCKETS: "CLOUDMILL_INPUT_BUCKETS",
  /** Jobs of at most this many input bytes are mapped in the splitter's function (0: none). */
  INLINE_MAX_BYTES: "CLOUDMILL_INLINE_MAX_BYTES",
  /** The worker service the splitter wakes: its cluster, name and most workers. */
  WORKER_CLUSTER: "CLOUDMILL_WORKER_CLUSTER",
  WORKER_SERVICE: "CLOUDMILL_WORKER_SERVICE",
  /** The spot lane's worker service (a stack with `spot: "per-job"`); empty: one lane. */
  SPOT_WORKER_SERVICE: "CLOUDMILL_SPOT_WORKER_SERVICE",
  MAX_WORKERS: "CLOUDMILL_MAX_WORKERS",
  /** The fleet's instance type, priced in job reports. */
  INSTANCE_TYPE: "CLOUDMILL_INSTANCE_TYPE",
  /** How the fleet's instances are bought (`spot` or `on-demand`; the default lane's, with two), priced with them. */
  CAPACITY: "CLOUDMILL_CAPACITY",
  LOG_LEVEL: "POWERTOOLS_LOG_LEVEL",
  SERVICE_NAME: "POWERTOOLS_SERVICE_NAME",
} as const;

export type EnvName = (typeof ENV)[keyof typeof ENV];

/**
 * Exactly the variables each role reads. The stack sets these and no others
 * (test/infra/environment.test.ts checks the synthesized template against each role's reader).
 */
export const ROLE_ENV = {
  splitter: [
    ENV.OUTPUT_BUCKET,
    ENV.TASK_QUEUE_URL,
    ENV.SPOT_TASK_QUEUE_URL,
    ENV.DEFAULT_CHUNK_SIZE,
    ENV.MAX_ATTEMPTS,
    ENV.JOB_DEADLINE_SECONDS,
    ENV.OPS_MODULES,
    ENV.INPUT_BUCKETS,
    ENV.INLINE_MAX_BYTES,
    ENV.TASK_TIMEOUT_SECONDS,
    ENV.WORKER_CLUSTER,
    ENV.WORKER_SERVICE,
    ENV.SPOT_WORKER_SERVICE,
    ENV.MAX_WORKERS,
    ENV.WORKER_CONCURRENCY,
    ENV.INSTANCE_TYPE,
    ENV.CAPACITY,
    ENV.PARTS_QUEUE_URL,
    ENV.CONTINUATION_QUEUE_URL,
    ENV.LOG_LEVEL,
    ENV.SERVICE_NAME,
  ],
  worker: [
    ENV.OUTPUT_BUCKET,
    ENV.TASK_QUEUE_URL,
    ENV.PARTS_QUEUE_URL,
    ENV.MAX_ATTEMPTS,
    ENV.REGION,
    ENV.VISIBILITY_TIMEOUT_SECONDS,
    ENV.WORKER_CONCURRENCY,
    ENV.TASK_TIMEOUT_SECONDS,
    ENV.USAGE_REPORT_SECONDS,
    ENV.REDUCE_SPILL_MIB,
    ENV.OPS_MODULES,
    ENV.LOG_LEVEL,
    ENV.SERVICE_NAME,
  ],
  reducer: [
    ENV.OUTPUT_BUCKET,
    ENV.TASK_QUEUE_URL,
    ENV.SPOT_TASK_QUEUE_URL,
    ENV.PARTS_QUEUE_URL,
    ENV.OPS_MODULES,
    ENV.TASK_TIMEOUT_SECONDS,
    ENV.INSTANCE_TYPE,
    ENV.CAPACITY,
    ENV.LOG_LEVEL,
    ENV.SERVICE_NAME,
  ],
  deadLetters: [ENV.OUTPUT_BUCKET, ENV.LOG_LEVEL, ENV.SERVICE_NAME],
} as const satisfies Record<string, readonly EnvName[]>;

export type Role = keyof typeof ROLE_ENV;

export const MiB = 1024 * 1024;

/** Defaults shared by the local engine, the handlers and the stack. */
export const DEFAULTS = {
  chunkSize: 16 * MiB,
  /** The fleet's instance type when a lab names none. */
  instanceType: "m7g.large",
  /** Smallest chunk a job spec may ask for (1 byte: tests use it to stress alignment). */
  minChunkSize: 1,
  /** Largest chunk: bounded so worker memory stays bounded. */
  maxChunkSize: 1024 * MiB,
  /** Most chunks one job may have: bounds the manifest and the reducer's work. */
  maxChunks: 1_000_000,
  /**
   * Most inputs one job may have. The splitter holds the list while it plans: about 500 MB a
   * million objects (measured), so two million fit its 1,769 MB with room to spare.
   */
  maxInputs: 2_000_000,
  maxAttempts: 3,
  /**
   * Receives of a part event (or a reducer's wake-up) before it goes to the parts dead-letter
   * queue, which the reducer drains too, more slowly: a job's last event is never dropped.
   */
  partEventAttempts: 5,
  /** How long the reducer's event source gathers its queue's messages into one invocation (the stack's maxBatchingWindow). */
  reducerBatchWindowSeconds: 5,
  /** Seconds a received task stays invisible before another worker may take it. */
  visibilityTimeoutSeconds: 120,
  /** The worker extends visibility this often while a chunk is in progress. */
  heartbeatSeconds: 30,
  /** SQS long-poll wait. */
  receiveWaitSeconds: 20,
  /** A job not finished after this long is marked failed. */
  jobDeadlineSeconds: 6 * 60 * 60,
  /** A job spec (the JSON uploaded under _jobs/) may be at most this large. */
  maxJobSpecBytes: 256 * 1024,
  /** A part object larger than this is uploaded with multipart. */
  multipartThreshold: 8 * MiB,
  /** Bytes read past a range's end, per request, to finish its last record. */
  overreadBytes: 64 * 1024,
  /**
   * Longest record a reader assembles: a longer one is a BAD_RECORD (or skipped), never read
   * until the worker runs out of memory. A worker holds about this much per chunk in progress,
   * so 64 MiB is a twenty-fourth of a worker's 1.5 GiB per vCPU.
   */
  maxRecordBytes: 64 * MiB,
  /**
   * Speculative execution, as Hadoop and Spark do it: once three quarters of a job's chunks are
   * mapped, a chunk running longer than 3× their median, and longer than this, is queued once more.
   */
  backupAfterSeconds: 60,
  backupMultiple: 3,
  backupQuantile: 0.75,
  /** A worker's usage report (CPU, memory, network, disk) is this often. */
  usageReportSeconds: 60,
  /** Longest a worker maps one chunk before it ends the op's thread (TASK_TIMEOUT, a failed attempt). */
  taskTimeoutSeconds: 15 * 60,
  /** Size of the blocks a range is streamed in. */
  readBlockBytes: MiB,
  /**
   * A reduce task holds about this many bytes of pairs in memory before it spills a sorted run
   * to disk (a JS map takes a few times its pairs' text: a few hundred MiB of a worker's 1.5 GiB).
   */
  reduceSpillBytes: 64 * MiB,
  /** A keyed job's default partitions: one per this many bytes of input. */
  bytesPerPartition: 256 * MiB,
  /**
   * Most shuffle segments (chunks × partitions) a keyed job may have: the reducer reads each
   * chunk's segment list and writes them out as per-partition plans, about 25 bytes apiece.
   */
  maxShuffleSegments: 4_000_000,
  /**
   * Parts one merge reads on the fleet: a job of more chunks merges them in a tree of merge
   * tasks, so the reducer reads at most this many partials (60,000 chunks: two levels of merges).
   */
  mergeFanIn: 64,
  /**
   * Jobs of at most this many input bytes are mapped in the splitter's function: seconds from
   * upload to result, where a cold fleet takes minutes. At the splitter's one vCPU, 64 MiB of
   * the slowest built-in op (wordcount) takes well under a minute of its five.
   */
  inlineMaxBytes: 64 * MiB,
  /** Time an inline run keeps back to hand the rest of its job to the fleet. */
  inlineReserveMs: 20_000,
  /**
   * Time a splitter invocation keeps back from listing a job's inputs (listing.ts): to store the
   * pieces it listed and hand the rest on, or, having listed the last, to plan the job (pieces of
   * up to two million inputs written, their chunks queued). Of the function's five minutes.
   */
  listingReserveMs: 90_000,
  /** The splitter function's memory, in MB: one full vCPU (Lambda's CPU scales with memory). */
  splitterMemoryMiB: 1769,
} as const;

/** Names of the buckets `cloudmill dev` creates. */
export const DEV_BUCKETS = {
  input: "cloudmill-input",
  output: "cloudmill-output",
} as const;

export const DEV_QUEUES = {
  tasks: "cloudmill-tasks",
  deadLetters: "cloudmill-tasks-dlq",
  parts: "cloudmill-parts",
  partsDeadLetters: "cloudmill-parts-dlq",
  /** The spot lane's task queue (`cloudmill dev` with a spot lane). */
  spotTasks: "cloudmill-spot-tasks",
  /** The splitter's continuation queue, and where a continuation failed on every try goes (both FIFO, as the stack's). */
  continuations: "cloudmill-continuations.fifo",
  continuationDeadLetters: "cloudmill-continuations-dlq.fifo",
} as const;

export const DEV_DEFAULT_PORT = 4566;
