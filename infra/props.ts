/**
 * The props of `CloudmillPipeline`, their defaults, and the checks that refuse a bad
 * combination at synth time with one exact line (tests match these messages).
 */
import { FLEET_MAX_TASK_SECONDS } from "../lib/core/queueLimits.js";
import { statSync } from "node:fs";
import * as path from "node:path";
import { Duration, RemovalPolicy } from "aws-cdk-lib";
import type * as ec2 from "aws-cdk-lib/aws-ec2";
import type * as ecs from "aws-cdk-lib/aws-ecs";
import { RetentionDays } from "aws-cdk-lib/aws-logs";
import { DEFAULTS, MiB } from "../lib/core/constants.js";
import { isArm64InstanceType, vcpusOfSize } from "./instances.js";
import { BUCKET_NAME } from "../lib/core/s3Uri.js";

export const LOG_LEVELS = ["DEBUG", "INFO", "WARN", "ERROR"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `lab`: only what carries the lab's cost-allocation tag; `account`: everything the account spends. */
export const BUDGET_SCOPES = ["lab", "account"] as const;
export type BudgetScope = (typeof BUDGET_SCOPES)[number];

/** The tag every resource carries, for cost allocation by lab. */
export const LAB_TAG_KEY = "cloudmill:lab";

/** Lab names: they end up in stack, budget and resource names. */
export const LAB_NAME_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/;

/** How long undelivered tasks and part events stay in their queues; a job's deadline must fit inside it. */
export const QUEUE_RETENTION = Duration.days(4);

export interface CloudmillPipelineProps {
  /** The lab this pipeline belongs to: lowercase letters, digits and '-' (1 to 32 characters). */
  readonly labName: string;
  /**
   * EC2 instance types for workers, all ARM64 (Graviton). With more than one, or with spot,
   * the Auto Scaling group uses a mixed-instances policy over them, in this order of priority.
   * @default ["m7g.large"]
   */
  readonly instanceTypes?: readonly string[];
  /**
   * Run workers on spot instances (price-capacity-optimized over `instanceTypes`, with capacity
   * rebalancing and ECS spot draining). A reclaimed worker's chunks are simply received again.
   * `"per-job"`: two worker services, each with its own task queue, one on on-demand instances and
   * one on spot; a job that prefers `cheapest` runs on spot, every other job on demand. Each
   * service scales from zero up to `maxWorkers` on its own backlog.
   * @default false
   */
  readonly spot?: boolean | "per-job";
  /**
   * Most EC2 instances the fleet may run at once.
   * @default 4
   */
  readonly maxInstances?: number;
  /**
   * Stopped instances an Auto Scaling warm pool keeps ready, so a woken fleet starts one in
   * seconds rather than booting it; they cost only their EBS volumes while stopped. 0 turns it off.
   * @default 1
   */
  readonly warmPool?: number;
  /**
   * Jobs of at most this many input bytes are mapped in the splitter function where they start
   * (seconds from upload to result), when their op is cheap enough: built-ins, and lab ops that
   * set `inline`. What the function's time cannot cover goes to the fleet. 0 turns it off.
   * @default 64 MiB
   */
  readonly inlineMaxBytes?: number;
  /**
   * Most worker tasks at once.
   * @default - `maxInstances` times the workers that fit on the largest instance type
   */
  readonly maxWorkers?: number;
  /**
   * vCPUs reserved for each worker task; also the number of chunks a worker maps at once
   * (CLOUDMILL_WORKER_CONCURRENCY).
   * @default - all the vCPUs of the smallest instance type, so one worker fills one instance
   */
  readonly workerVcpus?: number;
  /**
   * Memory limit of each worker container, in MiB.
   * @default - 1536 MiB per worker vCPU (fits every Graviton m, c and r size)
   */
  readonly workerMemoryMiB?: number;
  /**
   * Size of each instance's encrypted gp3 root volume, in GiB. Keyed jobs' reduce tasks spill
   * their sorted runs there while it keeps 15 % of it (1 to 4 GiB) free, and to S3 past that: a lab that sorts or
   * groups much more than its instances' memory gains from more.
   * @default 30 (the AL2023 ECS AMI's own size)
   */
  readonly workerDiskGiB?: number;
  /**
   * Chunk size, in bytes, for jobs that do not set one.
   * @default DEFAULTS.chunkSize (16 MiB)
   */
  readonly defaultChunkSize?: number;
  /**
   * Times a chunk is tried before it goes to the dead-letter queue and fails its job.
   * @default DEFAULTS.maxAttempts (3)
   */
  readonly maxAttempts?: number;
  /**
   * Visibility timeout of the task queue: how long a received chunk stays hidden before another
   * worker may take it. The worker extends it every DEFAULTS.heartbeatSeconds while it works.
   * @default Duration.seconds(DEFAULTS.visibilityTimeoutSeconds) (2 minutes)
   */
  readonly visibilityTimeout?: Duration;
  /**
   * Longest a worker maps one chunk: an op still running then is ended with its thread, the
   * attempt fails with TASK_TIMEOUT, and the chunk is tried again (then fails its job).
   * @default Duration.seconds(DEFAULTS.taskTimeoutSeconds) (15 minutes)
   */
  readonly taskTimeout?: Duration;
  /**
   * A job not finished after this long is marked failed.
   * @default Duration.seconds(DEFAULTS.jobDeadlineSeconds) (6 hours)
   */
  readonly jobDeadline?: Duration;
  /**
   * Monthly AWS Budget, in USD, alerting `alertEmail` at 80% actual and 100% forecast spend.
   * @default - no budget
   */
  readonly budgetLimitUsd?: number;
  /**
   * What the budget counts. `lab` filters on the `user:cloudmill:lab` cost-allocation tag, which
   * must be activated once in the Billing console; `account` counts the whole account.
   * @default "lab"
   */
  readonly budgetScope?: BudgetScope;
  /**
   * Where alarms and budget alerts are emailed (the subscription must be confirmed once).
   * @default - alarms publish to the alarm topic with no subscriber
   */
  readonly alertEmail?: string;
  /**
   * Days before intermediate state under `_work/` in the output bucket, and files the SDK or CLI
   * staged under `_uploads/` in the input bucket, expire. Must outlast `jobDeadline`.
   * @default 7
   */
  readonly workRetentionDays?: number;
  /**
   * Retention of function, worker, S3 access and VPC flow logs.
   * @default RetentionDays.ONE_MONTH
   */
  readonly logRetention?: RetentionDays;
  /**
   * What `cdk destroy` does with the input bucket. DESTROY empties and deletes it.
   * @default RemovalPolicy.DESTROY
   */
  readonly inputRemovalPolicy?: RemovalPolicy;
  /**
   * What `cdk destroy` does with the output bucket (results) and the access-log bucket.
   * @default RemovalPolicy.RETAIN
   */
  readonly outputRemovalPolicy?: RemovalPolicy;
  /**
   * Other buckets that SDK jobs may name as inputs (`s3://other/key`): the splitter may list and
   * read them, workers may read them.
   * @default - none
   */
  readonly extraInputBuckets?: readonly string[];
  /**
   * The AWS accounts (12-digit ids) `extraInputBuckets` may belong to: their grants hold only for
   * a bucket one of these owns (`s3:ResourceAccount`), so a bucket of that name deleted and
   * created again in another account is not read.
   * @default - the stack's own account
   */
  readonly extraInputBucketOwners?: readonly string[];
  /**
   * POWERTOOLS_LOG_LEVEL of the functions and the worker.
   * @default "INFO"
   */
  readonly logLevel?: LogLevel;
  /**
   * Alarm when the oldest queued chunk is older than this.
   * @default Duration.hours(1)
   */
  readonly oldestTaskAlarmAge?: Duration;
  /**
   * Workers scale in to zero once no chunk has been queued or in flight for this long (whole minutes).
   * @default Duration.minutes(5)
   */
  readonly scaleInAfterIdle?: Duration;
  /**
   * Most concurrent reducer invocations (the parts queue's event source maximum concurrency).
   * @default 10
   */
  readonly reducerMaxConcurrency?: number;
  /**
   * The lab's own op modules (each exporting ops made with `defineOp`), relative to the CDK app's
   * working directory or absolute. Each is bundled with esbuild at synth (its npm dependencies
   * included; esbuild must be installed) into the worker image and the splitter's and reducer's
   * code, and loaded beside the built-ins. The deployed listing, with each op's code digest, is
   * published to `_ops/registry.json` in the output bucket.
   * @default - none: the built-in ops only
   */
  readonly ops?: readonly string[];
  /**
   * A Dockerfile stage appended to the worker image, for native tools an op runs: it must start
   * `FROM cloudmill-worker` (e.g. `USER root`, `RUN apt-get install -y imagemagick`, `USER node`).
   * Its folder is in the build context as `lab/` (`COPY lab/...`), less what a `.dockerignore` in
   * it names, node_modules, cdk.out, .git, and credential folders and files (`.aws/`, `.ssh/`,
   * `.env*`, `.npmrc`, `*.pem`, SSH keys, ...: infra/README.md): keep it in a folder of its own.
   * Relative to the CDK app's working directory, or absolute.
   * @default - the worker image as cloudmill builds it
   */
  readonly workerDockerfile?: string;
  /**
   * The worker image, instead of the one cloudmill builds (which holds the prebuilt worker and
   * the lab's `ops`); cannot be combined with `ops` or `workerDockerfile`. It runs as uid:gid
   * 1000:1000 with every Linux capability dropped, as cloudmill's image does.
   * @default - built at synth from worker/Dockerfile and the prebuilt worker bundle, for linux/arm64
   */
  readonly workerImage?: ecs.ContainerImage;
  /**
   * The VPC workers run in.
   * @default - a new two-AZ VPC with public subnets only (no NAT gateway), no inbound rules,
   * an S3 gateway endpoint and flow logs
   */
  readonly vpc?: ec2.IVpc;
  /**
   * Subnets of `vpc` the workers run in; they need a route to AWS APIs (public IP or NAT).
   * @default - the public subnets
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
}

/** A bad prop, or a bad combination of props, refused at synth time. */
export class CloudmillConfigError extends Error {
  public constructor(message: string) {
    super(`cloudmill: ${message}`);
    this.name = "CloudmillConfigError";
  }
}

/** Props with every default applied and every check passed. */
export interface PipelineConfig {
  readonly labName: string;
  readonly instanceTypes: readonly string[];
  /** Every worker is on spot (`spot: true`). */
  readonly spot: boolean;
  /** A second worker service on spot, for jobs that prefer `cheapest` (`spot: "per-job"`); the first is on demand. */
  readonly spotLane: boolean;
  readonly maxInstances: number;
  readonly maxWorkers: number;
  readonly warmPool: number;
  readonly inlineMaxBytes: number;
  readonly workerVcpus: number;
  readonly workerMemoryMiB: number;
  readonly workerDiskGiB: number;
  readonly defaultChunkSize: number;
  readonly maxAttempts: number;
  readonly visibilityTimeout: Duration;
  readonly taskTimeout: Duration;
  readonly jobDeadline: Duration;
  readonly budget?: { readonly limitUsd: number; readonly scope: BudgetScope };
  readonly alertEmail?: string;
  readonly workRetentionDays: number;
  readonly logRetention: RetentionDays;
  readonly inputRemovalPolicy: RemovalPolicy;
  readonly outputRemovalPolicy: RemovalPolicy;
  readonly extraInputBuckets: readonly string[];
  /** Accounts that may own `extraInputBuckets`; empty: the stack's own. */
  readonly extraInputBucketOwners: readonly string[];
  readonly logLevel: LogLevel;
  readonly oldestTaskAlarmAge: Duration;
  readonly scaleInAfterIdleMinutes: number;
  readonly reducerMaxConcurrency: number;
  /** Absolute paths of the lab's op modules, in the order given. */
  readonly ops: readonly string[];
  /** Absolute path of the lab's worker Dockerfile stage. */
  readonly workerDockerfile?: string;
}

const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
const MEMORY_PER_VCPU_MIB = 1536;
/** Root volume of each instance by default, and at least: the AL2023 ECS AMI's own size. */
export const ROOT_VOLUME_GIB = 30;

/** An absolute path for a file the lab names (relative to the app's working directory), or a refusal naming it. */
const existingFile = (what: string, file: string): string => {
  const absolute = path.resolve(file);
  let isFile = false;
  try {
    isFile = statSync(absolute).isFile();
  } catch {
    // missing: refused below
  }
  if (!isFile) throw new CloudmillConfigError(`${what}: no file at ${JSON.stringify(file)} (resolved to ${absolute})`);
  return absolute;
};

const isWhole = (n: number, min: number, max: number): boolean => Number.isInteger(n) && n >= min && n <= max;

const wholeNumber = (name: string, value: number, min: number, max: number): number => {
  if (!isWhole(value, min, max)) throw new CloudmillConfigError(`${name} must be a whole number from ${min} to ${max}, got ${value}`);
  return value;
};

const checkInstanceTypes = (types: readonly string[], spot: boolean): void => {
  if (types.length === 0) {
    throw new CloudmillConfigError(
      spot ? "spot needs at least one instance type in instanceTypes" : "instanceTypes must name at least one instance type",
    );
  }
  for (const t of types) {
    if (!isArm64InstanceType(t)) {
      throw new CloudmillConfigError(`instance type "${t}" is not ARM64 (Graviton); workers run the ARM64 ECS-optimized AMI`);
    }
  }
  if (new Set(types).size !== types.length) throw new CloudmillConfigError(`instanceTypes lists a type twice: ${types.join(", ")}`);
};

const resolveWorkerVcpus = (types: readonly string[], explicit: number | undefined): number => {
  if (explicit !== undefined) {
    wholeNumber("workerVcpus", explicit, 1, 192);
    for (const t of types) {
      const vcpus = vcpusOfSize(t);
      if (vcpus !== undefined && explicit > vcpus) {
        throw new CloudmillConfigError(
          `workerVcpus (${explicit}) exceeds the ${vcpus} vCPUs of ${t}; a worker must fit on every instance type`,
        );
      }
    }
    return explicit;
  }
  let smallest = Infinity;
  for (const t of types) {
    const vcpus = vcpusOfSize(t);
    if (vcpus === undefined) throw new CloudmillConfigError(`cannot tell the vCPUs of "${t}" from its name; set workerVcpus`);
    smallest = Math.min(smallest, vcpus);
  }
  return smallest;
};

/** Applies the defaults of `CloudmillPipelineProps` and refuses bad values with one exact line. */
export const resolvePipelineConfig = (props: CloudmillPipelineProps): PipelineConfig => {
  if (!LAB_NAME_PATTERN.test(props.labName)) {
    throw new CloudmillConfigError(
      `labName must be 1 to 32 lowercase letters, digits or '-', starting and ending with a letter or digit; got ` +
        `${JSON.stringify(props.labName)}`,
    );
  }
  const spot = props.spot === true;
  const spotLane = props.spot === "per-job";
  const instanceTypes = props.instanceTypes ?? [DEFAULTS.instanceType];
  checkInstanceTypes(instanceTypes, spot || spotLane);
  const maxInstances = wholeNumber("maxInstances", props.maxInstances ?? 4, 1, 100);
  const workerVcpus = resolveWorkerVcpus(instanceTypes, props.workerVcpus);
  const workerMemoryMiB = wholeNumber("workerMemoryMiB", props.workerMemoryMiB ?? workerVcpus * MEMORY_PER_VCPU_MIB, 512, 1_048_576);
  // The AMI's snapshot is 30 GiB: a root volume may not be smaller. gp3 volumes reach 16 TiB.
  const workerDiskGiB = wholeNumber("workerDiskGiB", props.workerDiskGiB ?? ROOT_VOLUME_GIB, ROOT_VOLUME_GIB, 16_384);
  const perInstance = Math.max(...instanceTypes.map((t) => Math.max(1, Math.floor((vcpusOfSize(t) ?? workerVcpus) / workerVcpus))));
  const maxWorkers = wholeNumber("maxWorkers", props.maxWorkers ?? maxInstances * perInstance, 1, 1000);
  // EC2 Auto Scaling keeps no warm pool for a group of mixed instances (spot, or several types).
  // With a spot lane, the pool is the on-demand lane's.
  const mixed = spot || instanceTypes.length > 1;
  const warmPool = wholeNumber("warmPool", props.warmPool ?? (mixed ? 0 : 1), 0, maxInstances);
  if (warmPool > 0 && mixed)
    throw new CloudmillConfigError(
      "warmPool needs a single on-demand instance type: EC2 Auto Scaling keeps no warm pool for spot or mixed instance types; " +
        "set warmPool: 0",
    );
  const inlineMaxBytes = wholeNumber("inlineMaxBytes", props.inlineMaxBytes ?? DEFAULTS.inlineMaxBytes, 0, 1024 * MiB);

  const defaultChunkSize = wholeNumber(
    "defaultChunkSize",
    props.defaultChunkSize ?? DEFAULTS.chunkSize,
    DEFAULTS.minChunkSize,
    DEFAULTS.maxChunkSize,
  );
  const maxAttempts = wholeNumber("maxAttempts", props.maxAttempts ?? DEFAULTS.maxAttempts, 1, 1000);

  const visibilityTimeout = props.visibilityTimeout ?? Duration.seconds(DEFAULTS.visibilityTimeoutSeconds);
  const minVisibility = 2 * DEFAULTS.heartbeatSeconds;
  if (!isWhole(visibilityTimeout.toSeconds(), minVisibility, 43_200)) {
    throw new CloudmillConfigError(
      `visibilityTimeout must be from ${minVisibility} to 43200 seconds (at least twice the worker heartbeat of ` +
        `${DEFAULTS.heartbeatSeconds}s), got ${visibilityTimeout.toSeconds()}`,
    );
  }
  const taskTimeout = props.taskTimeout ?? Duration.seconds(DEFAULTS.taskTimeoutSeconds);
  // SQS hides a received task for at most 12 hours: a longer one would be handed out again.
  if (!isWhole(taskTimeout.toSeconds(), 1, FLEET_MAX_TASK_SECONDS)) {
    throw new CloudmillConfigError(
      `taskTimeout must be from 1 to ${FLEET_MAX_TASK_SECONDS} seconds (SQS hides a task for at most 12 hours), ` +
        `got ${taskTimeout.toSeconds()}`,
    );
  }
  const jobDeadline = props.jobDeadline ?? Duration.seconds(DEFAULTS.jobDeadlineSeconds);
  if (!isWhole(jobDeadline.toSeconds(), 60, QUEUE_RETENTION.toSeconds())) {
    throw new CloudmillConfigError(
      `jobDeadline must be from 60 to ${QUEUE_RETENTION.toSeconds()} seconds (the task queue's retention), got ${jobDeadline.toSeconds()}`,
    );
  }

  const alertEmail = props.alertEmail;
  if (alertEmail !== undefined && !EMAIL.test(alertEmail))
    throw new CloudmillConfigError(`alertEmail must be an email address, got ${JSON.stringify(alertEmail)}`);
  let budget: PipelineConfig["budget"];
  if (props.budgetLimitUsd !== undefined) {
    if (!(Number.isFinite(props.budgetLimitUsd) && props.budgetLimitUsd > 0)) {
      throw new CloudmillConfigError(`budgetLimitUsd must be a positive amount of USD, got ${props.budgetLimitUsd}`);
    }
    if (alertEmail === undefined) throw new CloudmillConfigError("budgetLimitUsd needs alertEmail: a budget alert must go to someone");
    budget = { limitUsd: props.budgetLimitUsd, scope: props.budgetScope ?? "lab" };
  } else if (props.budgetScope !== undefined) {
    throw new CloudmillConfigError("budgetScope needs budgetLimitUsd");
  }

  const workRetentionDays = wholeNumber("workRetentionDays", props.workRetentionDays ?? 7, 1, 3650);
  // Expiry counts from each object's creation: a job's manifest and staged uploads must outlive it.
  if (workRetentionDays * 86_400 <= jobDeadline.toSeconds()) {
    throw new CloudmillConfigError(
      `workRetentionDays (${workRetentionDays}) must outlast jobDeadline (${jobDeadline.toSeconds()} seconds): ` +
        "a job's state under _work/ and its staged uploads would expire while it runs",
    );
  }
  const extraInputBuckets = props.extraInputBuckets ?? [];
  for (const b of extraInputBuckets) {
    if (!BUCKET_NAME.test(b) || b.includes(".."))
      throw new CloudmillConfigError(`extraInputBuckets: ${JSON.stringify(b)} is not an S3 bucket name`);
  }
  const extraInputBucketOwners = props.extraInputBucketOwners ?? [];
  for (const a of extraInputBucketOwners) {
    if (!/^\d{12}$/.test(a))
      throw new CloudmillConfigError(`extraInputBucketOwners: ${JSON.stringify(a)} is not a 12-digit AWS account id`);
  }
  if (extraInputBucketOwners.length > 0 && extraInputBuckets.length === 0)
    throw new CloudmillConfigError("extraInputBucketOwners needs extraInputBuckets");
  const scaleIn = props.scaleInAfterIdle ?? Duration.minutes(5);
  const scaleInAfterIdleMinutes = scaleIn.toSeconds() / 60;
  if (!isWhole(scaleInAfterIdleMinutes, 1, 60)) {
    throw new CloudmillConfigError(`scaleInAfterIdle must be a whole number of minutes from 1 to 60, got ${scaleIn.toSeconds()} seconds`);
  }
  const oldestTaskAlarmAge = props.oldestTaskAlarmAge ?? Duration.hours(1);
  if (oldestTaskAlarmAge.toSeconds() < 60)
    throw new CloudmillConfigError(`oldestTaskAlarmAge must be at least 60 seconds, got ${oldestTaskAlarmAge.toSeconds()}`);

  const ops = (props.ops ?? []).map((m) => existingFile("ops", m));
  const workerDockerfile = props.workerDockerfile === undefined ? undefined : existingFile("workerDockerfile", props.workerDockerfile);
  if (props.workerImage !== undefined && (ops.length > 0 || workerDockerfile !== undefined)) {
    throw new CloudmillConfigError(
      "workerImage cannot be combined with ops or workerDockerfile: those build on the image cloudmill builds; drop workerImage",
    );
  }

  return {
    labName: props.labName,
    instanceTypes,
    spot,
    spotLane,
    maxInstances,
    maxWorkers,
    warmPool,
    inlineMaxBytes,
    workerVcpus,
    workerMemoryMiB,
    workerDiskGiB,
    defaultChunkSize,
    maxAttempts,
    visibilityTimeout,
    taskTimeout,
    jobDeadline,
    budget,
    alertEmail,
    workRetentionDays,
    logRetention: props.logRetention ?? RetentionDays.ONE_MONTH,
    inputRemovalPolicy: props.inputRemovalPolicy ?? RemovalPolicy.DESTROY,
    outputRemovalPolicy: props.outputRemovalPolicy ?? RemovalPolicy.RETAIN,
    extraInputBuckets,
    extraInputBucketOwners,
    logLevel: props.logLevel ?? "INFO",
    oldestTaskAlarmAge,
    scaleInAfterIdleMinutes,
    reducerMaxConcurrency: wholeNumber("reducerMaxConcurrency", props.reducerMaxConcurrency ?? 10, 2, 1000),
    ops,
    workerDockerfile,
  };
};
