/**
 * The whole cloudmill pipeline as one construct (docs/design.md, "The flow"):
 * input bucket ─ObjectCreated→ splitter ─→ task queue ─→ workers ─→ `_work/…/*.part.json`
 * ─ObjectCreated→ parts queue ─→ reducer ─→ result.json + status.json; task DLQ ─→ dead-letter function.
 */
import { createHash } from "node:crypto";
import { CfnResource, Duration, Names, RemovalPolicy, Stack, Stage, Tags } from "aws-cdk-lib";
import * as ecrAssets from "aws-cdk-lib/aws-ecr-assets";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as iam from "aws-cdk-lib/aws-iam";
import * as lambda from "aws-cdk-lib/aws-lambda";
import { SqsEventSource } from "aws-cdk-lib/aws-lambda-event-sources";
import * as logs from "aws-cdk-lib/aws-logs";
import * as s3 from "aws-cdk-lib/aws-s3";
import * as s3n from "aws-cdk-lib/aws-s3-notifications";
import * as sqs from "aws-cdk-lib/aws-sqs";
import * as cr from "aws-cdk-lib/custom-resources";
import { Construct } from "constructs";
import { DEFAULTS, MiB, type Role } from "../lib/core/constants.js";
import {
  cancelKey,
  CHUNK_PART_PATTERN,
  failureKey,
  FLEET_PREFIX,
  ITEM_OUTPUT_PATTERNS,
  OUTPUT_PART_PATTERN,
  SPILL_PATTERN,
  JOBS_PREFIX,
  OPS_LISTING_KEY,
  RESULT_FILE,
  RUNNING_SUFFIX,
  UPLOADS_PREFIX,
  STATUS_FILE,
  WORK_PREFIX,
} from "../lib/core/keys.js";
import type { OpsListing } from "../lib/core/ops/registryListing.js";
import {
  LAMBDA_TASK_ROOT,
  WORKER_APP_DIR,
  freshStagingDir,
  functionCode,
  opsModulePaths,
  stageOps,
  stageWorkerContext,
  type StagedOps,
} from "./assets.js";
import { roleEnvironment, type EnvValues } from "./environment.js";
import { acknowledge, wildcardResourceFinding } from "./nag.js";
import { PipelineMonitoring } from "./PipelineMonitoring.js";
import { LAB_TAG_KEY, QUEUE_RETENTION, resolvePipelineConfig, type CloudmillPipelineProps, type PipelineConfig } from "./props.js";
import { WorkerFleet } from "./WorkerFleet.js";

/** The feature flag that has S3 server access logs delivered under a bucket policy rather than an ACL. */
const S3_LOGS_BY_POLICY = "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy";

/** How each function is sized. A function's queue keeps a message hidden six times its timeout. */
const FUNCTION_SIZING = {
  // One full vCPU: small jobs are mapped here (inline.ts), and CPU scales with memory.
  splitter: { memorySize: DEFAULTS.splitterMemoryMiB, timeout: Duration.minutes(5) },
  reducer: { memorySize: 1024, timeout: Duration.minutes(5) },
  deadLetters: { memorySize: 256, timeout: Duration.minutes(1) },
} as const satisfies Record<Exclude<Role, "worker">, { memorySize: number; timeout: Duration }>;

/** Keys a job's roles read and write in the output bucket: intermediate state, job-spec outputs, and results and statuses beside inputs. */
const JOB_OUTPUT_KEYS = [`${WORK_PREFIX}*`, `${JOBS_PREFIX}*`, `*/${RESULT_FILE}`, `*/${STATUS_FILE}`] as const;

const DEAD_LETTER_RETENTION = Duration.days(14);

/** CDK's Lambda-backed deploy-time handlers in a stack (provider construct id, handler's id in it), when present. */
const CDK_HANDLERS = [
  ["Custom::S3AutoDeleteObjectsCustomResourceProvider", "Handler"],
  ["Custom::VpcRestrictDefaultSGCustomResourceProvider", "Handler"],
  ["BucketNotificationsHandler050a0587b7544547bf325f094a3db834", "Resource"],
] as const;
/** The id of the log group given to each of CDK_HANDLERS, beside it. */
const CDK_HANDLER_LOGS = "CloudmillLogs";

/**
 * A queue as a bucket's event destination, as s3n.SqsDestination makes it but with the queue
 * policy AWS documents for it: S3 may send only for this bucket (aws:SourceArn) in the bucket's
 * own account (aws:SourceAccount; an S3 ARN names no account), and may only send.
 */
const bucketEventsQueue = (queue: sqs.IQueue): s3.IBucketNotificationDestination => ({
  bind: (_scope, bucket) => {
    queue.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: "BucketEvents",
        principals: [new iam.ServicePrincipal("s3.amazonaws.com")],
        actions: ["sqs:SendMessage"],
        resources: [queue.queueArn],
        conditions: {
          ArnLike: { "aws:SourceArn": bucket.bucketRef.bucketArn },
          StringEquals: { "aws:SourceAccount": Stack.of(bucket).account },
        },
      }),
    );
    return { arn: queue.queueArn, type: s3.BucketNotificationDestinationType.QUEUE, dependencies: [queue] };
  },
});

/** SQS's longest queue name, a FIFO queue's `.fifo` included. */
const QUEUE_NAME_MAX = 80;

/**
 * A FIFO queue's props: its name must end in `.fifo`, so it is named here (unique to the stack,
 * as CloudFormation would name it, which may pass 80 characters with the suffix). Senders name
 * each message's deduplication id, so content-based deduplication stays off.
 */
const fifoQueue = (scope: Construct, id: string): Pick<sqs.QueueProps, "fifo" | "queueName" | "contentBasedDeduplication"> => {
  const suffix = `-${id}.fifo`;
  return {
    fifo: true,
    queueName: `${Names.uniqueResourceName(scope, { maxLength: QUEUE_NAME_MAX - suffix.length, separator: "-" })}${suffix}`,
    contentBasedDeduplication: false,
  };
};

export class CloudmillPipeline extends Construct {
  /** The props with their defaults applied. */
  public readonly config: PipelineConfig;
  /** Uploads (`<op>/<path>`) and job specs (`_jobs/<id>.json`); every new object starts the splitter. */
  public readonly inputBucket: s3.Bucket;
  /** Results, statuses and intermediate state (`_work/`, expired by a lifecycle rule). */
  public readonly outputBucket: s3.Bucket;
  /** Server access logs of both buckets and the VPC's flow logs. */
  public readonly logBucket: s3.Bucket;
  /** One message per chunk (the on-demand lane's, with `spot: "per-job"`). */
  public readonly taskQueue: sqs.Queue;
  /** The spot lane's task queue (`spot: "per-job"`): tasks of jobs that prefer `cheapest`. */
  public readonly spotTaskQueue?: sqs.Queue;
  /** Chunks that failed `maxAttempts` times; the dead-letter function marks their jobs failed. */
  public readonly deadLetterQueue: sqs.Queue;
  /** ObjectCreated events of part objects, feeding the reducer. */
  public readonly partsQueue: sqs.Queue;
  /** Part events the reducer failed on every attempt. */
  public readonly partsDeadLetterQueue: sqs.Queue;
  /** Upload events the splitter failed on after Lambda's asynchronous retries (and its continuations that failed on every try). */
  public readonly splitterDeadLetterQueue: sqs.Queue;
  /**
   * The splitter's own queue: a listing out of time is handed on there, and invokes it again
   * (lib/core/pipeline/listing.ts). FIFO, one message group per job: a job's continuations run one
   * at a time, and a copy sent twice within 5 minutes is dropped (SqsContinuationSender).
   */
  public readonly continuationQueue: sqs.Queue;
  /** Continuations that failed on every try (FIFO, as a FIFO queue's dead letters must be); the dead-letter function fails their jobs. */
  public readonly continuationDeadLetterQueue: sqs.Queue;
  public readonly splitter: lambda.Function;
  public readonly reducer: lambda.Function;
  public readonly deadLetters: lambda.Function;
  /**
   * The ops this pipeline deploys (built-ins and `ops`), with the code digests jobs record: what
   * `_ops/registry.json` in the output bucket holds after a deploy.
   */
  public readonly opsListing: OpsListing;
  /** Writes `opsListing` to `_ops/registry.json` in the output bucket at deploy. */
  public readonly opsListingPublisher: cr.AwsCustomResource;
  /** The worker image's build context, staged at synth (undefined with `workerImage`). */
  public readonly workerContextDir?: string;
  public readonly fleet: WorkerFleet;
  public readonly monitoring: PipelineMonitoring;

  public constructor(scope: Construct, id: string, props: CloudmillPipelineProps) {
    super(scope, id);
    // Access logs are delivered under a bucket policy, never an ACL (the buckets enforce bucket-owner
    // ownership, which forbids ACLs). Set here, so a lab's app works without `cdk init`'s flags.
    this.node.setContext(S3_LOGS_BY_POLICY, true);
    const config = resolvePipelineConfig(props);
    this.config = config;
    Tags.of(this).add(LAB_TAG_KEY, config.labName);

    // ── Code: the lab's ops bundled and described; the roles' code staged from the package ──
    const stage = Stage.of(this);
    if (stage === undefined) throw new Error("cloudmill: CloudmillPipeline must be inside an App or Stage");
    const staging = freshStagingDir(stage.assetOutdir, Names.uniqueId(this));
    const ops = stageOps(staging, config.ops, props.ops ?? []);
    this.opsListing = ops.listing;

    // ── Storage ──────────────────────────────────────────────────────────────
    this.logBucket = this.createBucket("LogBucket", config.outputRemovalPolicy, {
      lifecycleRules: [{ id: "expire-logs", expiration: Duration.days(config.logRetention) }],
    });
    this.inputBucket = this.createBucket("InputBucket", config.inputRemovalPolicy, {
      serverAccessLogsBucket: this.logBucket,
      serverAccessLogsPrefix: "s3/input/",
      lifecycleRules: [
        { id: "abort-incomplete-uploads", abortIncompleteMultipartUploadAfter: Duration.days(1) },
        // Files the SDK or CLI staged for a job (a submit stopped mid-way leaves them too): kept as
        // long as the job's own state, so a retry within that time still finds them.
        { id: "expire-uploads", prefix: UPLOADS_PREFIX, expiration: Duration.days(config.workRetentionDays) },
      ],
    });
    this.outputBucket = this.createBucket("OutputBucket", config.outputRemovalPolicy, {
      serverAccessLogsBucket: this.logBucket,
      serverAccessLogsPrefix: "s3/output/",
      lifecycleRules: [
        { id: "expire-work", prefix: WORK_PREFIX, expiration: Duration.days(config.workRetentionDays) },
        // Workers' usage reports: a gone worker's last one lingers a day at most.
        { id: "expire-usage", prefix: FLEET_PREFIX, expiration: Duration.days(1) },
        { id: "abort-incomplete-uploads", abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
    });

    // ── Queues ───────────────────────────────────────────────────────────────
    this.deadLetterQueue = this.createQueue("DeadLetterQueue", {
      retentionPeriod: DEAD_LETTER_RETENTION,
      visibilityTimeout: Duration.seconds(6 * FUNCTION_SIZING.deadLetters.timeout.toSeconds()),
    });
    this.taskQueue = this.createQueue("TaskQueue", {
      visibilityTimeout: config.visibilityTimeout,
      retentionPeriod: QUEUE_RETENTION,
      receiveMessageWaitTime: Duration.seconds(DEFAULTS.receiveWaitSeconds),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: config.maxAttempts },
    });
    if (config.spotLane) {
      // Its dead letters are any task's: the same queue and function fail their jobs.
      this.spotTaskQueue = this.createQueue("SpotTaskQueue", {
        visibilityTimeout: config.visibilityTimeout,
        retentionPeriod: QUEUE_RETENTION,
        receiveMessageWaitTime: Duration.seconds(DEFAULTS.receiveWaitSeconds),
        deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: config.maxAttempts },
      });
    }
    // Drained by the reducer too: a job's last part event (or wake-up) that failed on every try
    // is tried again from here until its job ends, rather than leaving the job running for good.
    this.partsDeadLetterQueue = this.createQueue("PartsDeadLetterQueue", {
      visibilityTimeout: Duration.seconds(6 * FUNCTION_SIZING.reducer.timeout.toSeconds()),
      retentionPeriod: DEAD_LETTER_RETENTION,
    });
    this.partsQueue = this.createQueue("PartsQueue", {
      visibilityTimeout: Duration.seconds(6 * FUNCTION_SIZING.reducer.timeout.toSeconds()),
      retentionPeriod: QUEUE_RETENTION,
      deadLetterQueue: { queue: this.partsDeadLetterQueue, maxReceiveCount: DEFAULTS.partEventAttempts },
    });
    // Drained by the dead-letter function too (uploads that never started a job).
    this.splitterDeadLetterQueue = this.createQueue("SplitterDeadLetterQueue", {
      retentionPeriod: DEAD_LETTER_RETENTION,
      visibilityTimeout: Duration.seconds(6 * FUNCTION_SIZING.deadLetters.timeout.toSeconds()),
    });
    // A continuation is one invocation's work: one at a time, each with the whole function's time.
    // FIFO, grouped by job: two copies of one job's continuation never run at once, so the job is
    // planned (and its tasks queued) once. A FIFO queue's dead letters go to a FIFO queue, and
    // Lambda's asynchronous dead-letter queue (the splitter's) must be a standard one: so the
    // continuations have their own, drained by the dead-letter function as the splitter's is.
    this.continuationDeadLetterQueue = this.createQueue("ContinuationDeadLetterQueue", {
      ...fifoQueue(this, "ContinuationDeadLetterQueue"),
      retentionPeriod: DEAD_LETTER_RETENTION,
      visibilityTimeout: Duration.seconds(6 * FUNCTION_SIZING.deadLetters.timeout.toSeconds()),
    });
    this.continuationQueue = this.createQueue("ContinuationQueue", {
      ...fifoQueue(this, "ContinuationQueue"),
      visibilityTimeout: Duration.seconds(6 * FUNCTION_SIZING.splitter.timeout.toSeconds()),
      retentionPeriod: QUEUE_RETENTION,
      deadLetterQueue: { queue: this.continuationDeadLetterQueue, maxReceiveCount: 3 },
    });

    // ── Worker fleet ─────────────────────────────────────────────────────────
    const workerEnv = {
      CLOUDMILL_OUTPUT_BUCKET: this.outputBucket.bucketName,
      CLOUDMILL_TASK_QUEUE_URL: this.taskQueue.queueUrl,
      // Where workers name the parts they wrote, for the reducer (lib/core/pipeline/partNotices.ts).
      CLOUDMILL_PARTS_QUEUE_URL: this.partsQueue.queueUrl,
      // The task queue's maxReceiveCount: a job that allows fewer attempts has its worker fail it.
      CLOUDMILL_MAX_ATTEMPTS: String(config.maxAttempts),
      AWS_REGION: Stack.of(this).region,
      CLOUDMILL_VISIBILITY_TIMEOUT_SECONDS: String(config.visibilityTimeout.toSeconds()),
      CLOUDMILL_WORKER_CONCURRENCY: String(config.workerVcpus),
      CLOUDMILL_TASK_TIMEOUT_SECONDS: String(config.taskTimeout.toSeconds()),
      CLOUDMILL_USAGE_REPORT_SECONDS: String(DEFAULTS.usageReportSeconds),
      CLOUDMILL_REDUCE_SPILL_MIB: String(DEFAULTS.reduceSpillBytes / MiB),
      POWERTOOLS_LOG_LEVEL: config.logLevel,
    };
    let image = props.workerImage;
    if (image === undefined) {
      this.workerContextDir = stageWorkerContext(staging, ops, {
        bundle: Stack.of(this).bundlingRequired,
        workerDockerfile: config.workerDockerfile,
        outdir: stage.outdir,
      });
      image = ecs.ContainerImage.fromAsset(this.workerContextDir, { file: "Dockerfile", platform: ecrAssets.Platform.LINUX_ARM64 });
    }
    this.fleet = new WorkerFleet(this, "Workers", {
      config,
      taskQueue: this.taskQueue,
      ...(this.spotTaskQueue ? { spotTaskQueue: this.spotTaskQueue } : {}),
      environment: roleEnvironment("worker", { ...workerEnv, CLOUDMILL_OPS_MODULES: JSON.stringify(opsModulePaths(WORKER_APP_DIR, ops)) }),
      image,
      flowLogBucket: this.logBucket,
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
    });

    // ── Functions ────────────────────────────────────────────────────────────
    const env: EnvValues = {
      ...workerEnv,
      CLOUDMILL_OPS_MODULES: JSON.stringify(opsModulePaths(LAMBDA_TASK_ROOT, ops)),
      CLOUDMILL_DEFAULT_CHUNK_SIZE: String(config.defaultChunkSize),
      CLOUDMILL_JOB_DEADLINE_SECONDS: String(config.jobDeadline.toSeconds()),
      CLOUDMILL_INLINE_MAX_BYTES: String(config.inlineMaxBytes),
      // The buckets its roles may read: a spec naming another (the output bucket's `_work/`) is refused.
      CLOUDMILL_INPUT_BUCKETS: [this.inputBucket.bucketName, ...config.extraInputBuckets].join(","),
      CLOUDMILL_PARTS_QUEUE_URL: this.partsQueue.queueUrl,
      CLOUDMILL_CONTINUATION_QUEUE_URL: this.continuationQueue.queueUrl,
      CLOUDMILL_WORKER_CLUSTER: this.fleet.cluster.clusterName,
      CLOUDMILL_WORKER_SERVICE: this.fleet.service.serviceName,
      // Empty with one lane (lib/core/pipeline/lanes.ts).
      CLOUDMILL_SPOT_TASK_QUEUE_URL: this.spotTaskQueue?.queueUrl ?? "",
      CLOUDMILL_SPOT_WORKER_SERVICE: this.fleet.spotLane?.service.serviceName ?? "",
      CLOUDMILL_MAX_WORKERS: String(config.maxWorkers),
      CLOUDMILL_INSTANCE_TYPE: config.instanceTypes[0]!,
      CLOUDMILL_CAPACITY: config.spot ? "spot" : "on-demand",
    };
    const code = (role: Exclude<Role, "worker">): lambda.Code => functionCode(staging, role, role === "deadLetters" ? undefined : ops);
    this.splitter = this.createFunction("splitter", "Splitter", code("splitter"), env, {
      deadLetterQueue: this.splitterDeadLetterQueue,
      retryAttempts: 2,
      maxEventAge: Duration.hours(6),
    });
    this.reducer = this.createFunction("reducer", "Reducer", code("reducer"), env);
    this.deadLetters = this.createFunction("deadLetters", "DeadLetters", code("deadLetters"), env);

    // ── Wiring (docs/design.md): uploads → splitter; workers' part notices → parts queue → reducer;
    // dead letters → dead-letter function
    this.inputBucket.addEventNotification(s3.EventType.OBJECT_CREATED, new s3n.LambdaDestination(this.splitter));
    // Lambda stops a chain of invocations through a queue after about 16 (recursive loop detection):
    // some 16 × 3.5 minutes of listing, past what a job's input limit takes.
    this.splitter.addEventSource(
      new SqsEventSource(this.continuationQueue, { batchSize: 1, reportBatchItemFailures: true, maxConcurrency: 2 }),
    );
    // Parts raise no event: their workers name them, many to a message. A long chunk's running
    // marker wakes the reducer through S3: it looks for stragglers to back up.
    this.outputBucket.addEventNotification(s3.EventType.OBJECT_CREATED, bucketEventsQueue(this.partsQueue), {
      prefix: WORK_PREFIX,
      suffix: RUNNING_SUFFIX,
    });
    // On an update, the notification changes only once the fleet is all of the new release and the
    // reducer reads notices: a stack that raised an event per part stops only when no worker
    // relies on it (meanwhile a part may be named twice, which costs a reduce round, no result).
    this.outputBucket.node.findChild("Notifications").node.addDependency(...this.lanes.map((l) => l.service), this.reducer);
    this.reducer.addEventSource(
      new SqsEventSource(this.partsQueue, {
        batchSize: 100,
        maxBatchingWindow: Duration.seconds(DEFAULTS.reducerBatchWindowSeconds),
        reportBatchItemFailures: true,
        maxConcurrency: config.reducerMaxConcurrency,
      }),
    );
    this.reducer.addEventSource(
      new SqsEventSource(this.partsDeadLetterQueue, { batchSize: 10, reportBatchItemFailures: true, maxConcurrency: 2 }),
    );
    this.deadLetters.addEventSource(
      new SqsEventSource(this.deadLetterQueue, { batchSize: 10, reportBatchItemFailures: true, maxConcurrency: 2 }),
    );
    // Uploads the splitter failed on at every try: their jobs never started, and fail with a status.
    this.deadLetters.addEventSource(
      new SqsEventSource(this.splitterDeadLetterQueue, { batchSize: 10, reportBatchItemFailures: true, maxConcurrency: 2 }),
    );
    // Listings that failed on every try: their jobs fail, as an upload's does.
    this.deadLetters.addEventSource(
      new SqsEventSource(this.continuationDeadLetterQueue, { batchSize: 10, reportBatchItemFailures: true, maxConcurrency: 2 }),
    );

    this.grantDataAccess();
    this.opsListingPublisher = this.publishOpsListing(ops);

    this.monitoring = new PipelineMonitoring(this, "Monitoring", {
      config,
      taskQueue: this.taskQueue,
      ...(this.spotTaskQueue ? { spotTaskQueue: this.spotTaskQueue } : {}),
      deadLetterQueue: this.deadLetterQueue,
      partsQueue: this.partsQueue,
      partsDeadLetterQueue: this.partsDeadLetterQueue,
      splitterDeadLetterQueue: this.splitterDeadLetterQueue,
      continuationDeadLetterQueue: this.continuationDeadLetterQueue,
      functions: { splitter: this.splitter, reducer: this.reducer, deadLetters: this.deadLetters },
      fleet: this.fleet,
    });

    this.acknowledgeCdkProviders();
    this.giveCdkHandlersLogGroups();
  }

  private createBucket(id: string, removalPolicy: RemovalPolicy, props: s3.BucketProps): s3.Bucket {
    const bucket = new s3.Bucket(this, id, {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy,
      autoDeleteObjects: removalPolicy === RemovalPolicy.DESTROY,
      ...props,
    });
    // A bucket kept past the stack keeps its policy (TLS only, the access logs' delivery) with it.
    bucket.policy?.applyRemovalPolicy(removalPolicy);
    return bucket;
  }

  /** The worker services: the on-demand lane's, and the spot lane's when the stack has one. */
  private get lanes(): readonly { readonly service: ecs.Ec2Service; readonly taskDefinition: ecs.TaskDefinition }[] {
    return [this.fleet, ...(this.fleet.spotLane ? [this.fleet.spotLane] : [])];
  }

  private createQueue(id: string, props: sqs.QueueProps): sqs.Queue {
    return new sqs.Queue(this, id, {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      removalPolicy: RemovalPolicy.DESTROY,
      ...props,
    });
  }

  private createFunction(
    role: Exclude<Role, "worker">,
    id: string,
    code: lambda.Code,
    env: EnvValues,
    extra: Partial<lambda.FunctionProps> = {},
  ): lambda.Function {
    const logGroup = new logs.LogGroup(this, `${id}Logs`, { retention: this.config.logRetention, removalPolicy: RemovalPolicy.DESTROY });
    // An explicit role: no AWS managed policy, log writes to this function's own log group only.
    const executionRole = new iam.Role(this, `${id}Role`, {
      assumedBy: new iam.ServicePrincipal("lambda.amazonaws.com"),
      description: `cloudmill ${role} function`,
    });
    logGroup.grantWrite(executionRole);
    // Prebuilt single-file ESM bundles (assets.ts): `index.mjs`, every dependency inside.
    const fn = new lambda.Function(this, id, {
      code,
      handler: "index.handler",
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      ...FUNCTION_SIZING[role],
      role: executionRole,
      logGroup,
      environment: roleEnvironment(role, env),
      description: `cloudmill ${role} (${this.config.labName})`,
      ...extra,
    });
    acknowledge(
      fn,
      "AwsSolutions-L1",
      "Node.js 22 is pinned on purpose: it matches the worker image (node:22) and the runtime the code is tested on, and is in AWS " +
        "standard support until April 2027; moving to a newer runtime is a deliberate, tested change.",
    );
    return fn;
  }

  /** Least privilege, by role: no `*` action, data resources narrowed to the keys each role touches. */
  private grantDataAccess(): void {
    const stack = Stack.of(this);
    const extraBuckets = this.config.extraInputBuckets.map((name) =>
      stack.formatArn({ service: "s3", region: "", account: "", resource: name }),
    );
    const inputObjects = [this.inputBucket.arnForObjects("*")];
    const inputBuckets = [this.inputBucket.bucketArn];
    const extraObjects = extraBuckets.map((arn) => `${arn}/*`);
    // A bucket name is global and reusable: one deleted and created again in another account would
    // be read as this lab's input. The grants hold only while the bucket is owned as configured.
    const owners = this.config.extraInputBucketOwners.length > 0 ? [...this.config.extraInputBucketOwners] : [stack.account];
    const ownedAsConfigured = { StringEquals: { "s3:ResourceAccount": owners } };
    const jobObjects = JOB_OUTPUT_KEYS.map((k) => this.outputBucket.arnForObjects(k));
    const workObjects = this.outputBucket.arnForObjects(`${WORK_PREFIX}*`);
    const statusObjects = this.outputBucket.arnForObjects(`*/${STATUS_FILE}`);
    const itemOutputs = ITEM_OUTPUT_PATTERNS.map((k) => this.outputBucket.arnForObjects(k));
    const keyedParts = this.outputBucket.arnForObjects(OUTPUT_PART_PATTERN);
    const spilledRuns = this.outputBucket.arnForObjects(SPILL_PATTERN);
    const usageReports = this.outputBucket.arnForObjects(`${FLEET_PREFIX}*`);

    // Why each wildcard resource is as narrow as it can be; `allow` refuses a wildcard without a reason.
    const reasons = new Map<string, string>([
      [
        this.inputBucket.arnForObjects("*"),
        "Any object in the input bucket can be a job's input (uploads under <op>/, specs under _jobs/); the bucket is the boundary and " +
          "only GetObject is allowed.",
      ],
      [
        workObjects,
        "Intermediate state lives under _work/<jobId>/ for job ids made at run time; the _work/ prefix is the narrowest fixed scope.",
      ],
      [
        itemOutputs[0]!,
        "A task's items store their own objects (ctx.put) under _jobs/<jobId>/files/ for job ids made at run time; only that folder.",
      ],
      [
        itemOutputs[1]!,
        "An item's output over 256 KiB is stored under _jobs/<jobId>/results/ for job ids made at run time; only that folder.",
      ],
      [
        keyedParts,
        "A keyed job's reduce tasks write its parts as _jobs/<jobId>/part-NNNNN.jsonl (.txt for sort) for job ids made at run " +
          "time; only such keys.",
      ],
      [
        this.outputBucket.arnForObjects(failureKey("*")),
        "A retry (cloudmill retry) resumes a failed job by removing its failure marker, _work/<jobId>/failure.json, for job ids " +
          "made at run time; that key only (the failure itself is kept under _work/<jobId>/retries/ first). The roles that fail " +
          "jobs remove a marker they wrote for a run a resume had just superseded, and that key only.",
      ],
      [
        this.outputBucket.arnForObjects(cancelKey("*")),
        "A retry resumes a cancelled job by removing its marker, _work/<jobId>/cancelled.json, for job ids made at run time; " +
          "that key only.",
      ],
      [
        this.outputBucket.arnForObjects(CHUNK_PART_PATTERN),
        "A retry of a job whose merge failed on a chunk's part maps that chunk again and first removes its part, " +
          "_work/<jobId>/parts/<chunk>.part.json, for job ids made at run time; chunk parts only.",
      ],
      [
        usageReports,
        "Each worker writes its usage report as _fleet/<task id>.json (task ids made at run time); only that folder, kept a day.",
      ],
      [
        spilledRuns,
        "A reduce task whose disk is short spills runs under _work/<jobId>/spill/ and removes them, for job ids made at run time; " +
          "only that folder.",
      ],
      [
        this.outputBucket.arnForObjects(`${JOBS_PREFIX}*`),
        "Job-spec results and statuses go under _jobs/<jobId>/ for job ids made at run time.",
      ],
      [
        this.outputBucket.arnForObjects(`*/${RESULT_FILE}`),
        "An upload's result is written beside its input key (<op>/<any/path>/result.json, docs/design.md); the pattern admits " +
          "result.json keys only.",
      ],
      [
        this.outputBucket.arnForObjects(`*/${STATUS_FILE}`),
        "An upload's status is written beside its input key (<op>/<any/path>/status.json, docs/design.md); the pattern admits " +
          "status.json keys only.",
      ],
      ...extraBuckets.map((arn, i): [string, string] => [
        `${arn}/*`,
        `SDK jobs may name inputs in ${this.config.extraInputBuckets[i]} (the extraInputBuckets prop): read-only access to its ` +
          "objects, while the bucket is owned by the configured account (s3:ResourceAccount).",
      ]),
    ]);
    const allow = (
      grantee: iam.IGrantable,
      sid: string,
      actions: string[],
      resources: string[],
      conditions?: Record<string, unknown>,
    ): void => {
      // A PutObject of a large body is a multipart upload, which S3BlobStore aborts when it fails:
      // PutObject does not cover the abort, and a denied abort would hide the upload's own error.
      const all = actions.includes("s3:PutObject") ? [...actions, "s3:AbortMultipartUpload"] : actions;
      grantee.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement({ sid, actions: all, resources, conditions }));
      for (const resource of resources.filter((r) => r.includes("*"))) {
        const reason = reasons.get(resource);
        if (reason === undefined) throw new Error(`cloudmill: no reason recorded for wildcard resource ${resource} (${sid})`);
        acknowledge(grantee.grantPrincipal as iam.Role, wildcardResourceFinding(this, resource), reason);
      }
    };

    // S3 answers 404 for a missing object only to a caller that may list the bucket (403
    // otherwise), and every role checks for objects that usually do not exist yet (markers,
    // parts): so each role that reads the output bucket may list it.
    const outputBucket = [this.outputBucket.bucketArn];
    const stateObjects = [workObjects, statusObjects];
    // A role that fails a job removes the marker it wrote when a resume superseded the run it
    // judged meanwhile (deadLetter.ts failJob), or when the job succeeded meanwhile.
    const failureMarkers = this.outputBucket.arnForObjects(failureKey("*"));

    // Splitter: HEAD/GET inputs and job specs, list directory-like inputs, write manifests and
    // statuses, queue chunks; a job of empty inputs is reduced at once, so it may write result.json.
    allow(this.splitter, "ReadInputs", ["s3:GetObject"], inputObjects);
    allow(this.splitter, "ListInputs", ["s3:ListBucket"], inputBuckets);
    if (extraBuckets.length > 0) {
      allow(this.splitter, "ReadExtraInputs", ["s3:GetObject"], extraObjects, ownedAsConfigured);
      allow(this.splitter, "ListExtraInputs", ["s3:ListBucket"], extraBuckets, ownedAsConfigured);
    }
    allow(this.splitter, "ReadJobState", ["s3:GetObject"], stateObjects);
    allow(this.splitter, "WriteJobState", ["s3:PutObject"], jobObjects);
    allow(this.splitter, "ListJobState", ["s3:ListBucket"], outputBucket);
    const taskQueues = [this.taskQueue.queueArn, ...(this.spotTaskQueue ? [this.spotTaskQueue.queueArn] : [])];
    allow(this.splitter, "QueueChunks", ["sqs:SendMessage"], taskQueues);
    // A job queued on the fleet, or resumed, sends the reducer its first wake-up (wake.ts).
    allow(this.splitter, "WakeReducer", ["sqs:SendMessage"], [this.partsQueue.queueArn]);
    // A listing out of time is handed on to a later invocation of the splitter (listing.ts).
    allow(this.splitter, "ContinueListing", ["sqs:SendMessage"], [this.continuationQueue.queueArn]);
    // A retry request (_retries/<jobId>.json) resumes a failed or cancelled job: its end marker
    // goes, and so does the part of a chunk it maps again (a merge failed on it).
    allow(
      this.splitter,
      "ResumeJobs",
      ["s3:DeleteObject"],
      [failureKey("*"), cancelKey("*"), CHUNK_PART_PATTERN].map((k) => this.outputBucket.arnForObjects(k)),
    );
    // A small job is mapped where it starts: the splitter writes its parts (under _work/, above).
    // An idle fleet is woken at once: this stack's worker service, and no other.
    const { lanes } = this;
    allow(
      this.splitter,
      "WakeFleet",
      ["ecs:DescribeServices"],
      lanes.map((l) => l.service.serviceArn),
    );
    // Its count only: an update that names another task definition or turns on ECS Exec is denied.
    for (const [i, lane] of lanes.entries()) {
      allow(this.splitter, i === 0 ? "WakeFleetCount" : "WakeSpotFleetCount", ["ecs:UpdateService"], [lane.service.serviceArn], {
        StringEqualsIfExists: { "ecs:task-definition": lane.taskDefinition.taskDefinitionArn },
        BoolIfExists: { "ecs:enable-execute-command": "false" },
      });
    }

    // Worker: ranged GETs of inputs; HEAD of its part and the job's cancel/failure markers and
    // PUT of parts and chunk errors under _work/; a bad record fails the job at once, so it
    // also reads and writes status.json (never result.json).
    // Every lane's workers alike (each lane's role consumes its own queue: WorkerFleet).
    for (const worker of this.fleet.taskRoles) {
      allow(worker, "ReadInputs", ["s3:GetObject"], inputObjects);
      // So that an input deleted after its job started reads as missing (404, INPUT_NOT_FOUND, the
      // job fails at once) rather than as denied (403, retried as the environment's fault).
      allow(worker, "ListInputs", ["s3:ListBucket"], inputBuckets);
      if (extraBuckets.length > 0) {
        allow(worker, "ReadExtraInputs", ["s3:GetObject"], extraObjects, ownedAsConfigured);
        allow(worker, "ListExtraInputs", ["s3:ListBucket"], extraBuckets, ownedAsConfigured);
      }
      allow(worker, "ReadWorkAndStatus", ["s3:GetObject"], stateObjects);
      allow(worker, "WritePartsAndStatus", ["s3:PutObject"], stateObjects);
      // Tasks (defineTask): the objects items store and the outputs too large for a part.
      allow(worker, "WriteItemOutputs", ["s3:PutObject"], itemOutputs);
      // Each worker's usage report (CPU, memory, network, disk) for `cloudmill fleet`.
      allow(worker, "ReportUsage", ["s3:PutObject"], [usageReports]);
      // Keyed ops: reduce tasks write the job's parts, and remove the runs they spilled to S3 when their disk was short.
      allow(worker, "WriteKeyedParts", ["s3:PutObject"], [keyedParts]);
      allow(worker, "RemoveSpilledRuns", ["s3:DeleteObject"], [spilledRuns]);
      allow(worker, "TakeBackFailure", ["s3:DeleteObject"], [failureMarkers]);
      allow(worker, "ListWork", ["s3:ListBucket"], outputBucket);
      // The parts it wrote, named to the reducer on its queue (partNotices.ts).
      allow(worker, "NoticeParts", ["sqs:SendMessage"], [this.partsQueue.queueArn]);
    }

    // Reducer: list and read parts and job state, write results and statuses (a status of a
    // newer job at the same key is left alone). (Consuming the parts queue is granted by its event source.)
    allow(this.reducer, "ReadWork", ["s3:GetObject"], stateObjects);
    allow(this.reducer, "ListWork", ["s3:ListBucket"], outputBucket);
    allow(this.reducer, "WriteResults", ["s3:PutObject"], jobObjects);
    allow(this.reducer, "TakeBackFailure", ["s3:DeleteObject"], [failureMarkers]);
    // A keyed job's reduce tasks are enqueued by the reducer once its chunks are mapped.
    allow(this.reducer, "QueueReduceTasks", ["sqs:SendMessage"], taskQueues);
    // A merge or reduce task past its lease is queued again only while nothing waits on its queue.
    allow(this.reducer, "SeeTaskBacklog", ["sqs:GetQueueAttributes"], taskQueues);
    // While only merge or reduce tasks are left, the reducer wakes itself on its own queue (wake.ts).
    allow(this.reducer, "WakeItself", ["sqs:SendMessage"], [this.partsQueue.queueArn]);

    // Dead letters: read the job's state, mark it failed. (Consuming the dead-letter queue is granted by its event source.)
    allow(this.deadLetters, "ReadJobState", ["s3:GetObject"], stateObjects);
    // Its failure marker and the status: no other state (a part, a manifest, a success marker).
    allow(this.deadLetters, "WriteJobState", ["s3:PutObject"], [failureMarkers, statusObjects]);
    allow(this.deadLetters, "TakeBackFailure", ["s3:DeleteObject"], [failureMarkers]);
    allow(this.deadLetters, "ListJobState", ["s3:ListBucket"], outputBucket);
  }

  /**
   * Publishes the deployed listing to `_ops/registry.json` at deploy (so `cloudmill ops --stack`
   * and SDK clients see what runs): one PutObject on exactly that key, made again whenever the
   * listing changes (the physical id is the listing's digest, and the body is a property).
   */
  private publishOpsListing(ops: StagedOps): cr.AwsCustomResource {
    const body = JSON.stringify(ops.listing);
    const digest = createHash("sha256").update(body).digest("hex").slice(0, 16);
    const put: cr.AwsSdkCall = {
      service: "S3",
      action: "putObject",
      parameters: { Bucket: this.outputBucket.bucketName, Key: OPS_LISTING_KEY, Body: body, ContentType: "application/json" },
      physicalResourceId: cr.PhysicalResourceId.of(`cloudmill-ops-${digest}`),
    };
    const publisher = new cr.AwsCustomResource(this, "OpsListing", {
      resourceType: "Custom::CloudmillOpsListing",
      onCreate: put,
      onUpdate: put,
      policy: cr.AwsCustomResourcePolicy.fromStatements([
        new iam.PolicyStatement({
          sid: "PublishOpsListing",
          actions: ["s3:PutObject"],
          resources: [this.outputBucket.arnForObjects(OPS_LISTING_KEY)],
        }),
      ]),
      installLatestAwsSdk: false,
      logGroup: new logs.LogGroup(this, "OpsListingLogs", { retention: this.config.logRetention, removalPolicy: RemovalPolicy.DESTROY }),
    });
    return publisher;
  }

  /**
   * Gives CDK's deploy-time handlers (emptying a destroyed bucket, restricting the default
   * security group, configuring bucket notifications) a log group of the stack's, removed with
   * it, instead of the `/aws/lambda/<name>` group Lambda would create and `cdk destroy` leave
   * behind. They are stack singletons: the first pipeline in a stack gives each its group.
   */
  private giveCdkHandlersLogGroups(): void {
    const stack = Stack.of(this);
    for (const [provider, handler] of CDK_HANDLERS) {
      const scope = stack.node.tryFindChild(provider);
      const fn = scope?.node.tryFindChild(handler);
      if (scope === undefined || !(fn instanceof CfnResource) || fn.cfnResourceType !== "AWS::Lambda::Function") continue;
      if (scope.node.tryFindChild(CDK_HANDLER_LOGS) !== undefined) continue;
      const group = new logs.LogGroup(scope, CDK_HANDLER_LOGS, {
        retention: this.config.logRetention,
        removalPolicy: RemovalPolicy.DESTROY,
      });
      // Their roles have the basic execution policy (logs on any group), so they can write there.
      fn.addPropertyOverride("LoggingConfig.LogGroup", group.logGroupName);
    }
  }

  /** Findings on the Lambda-backed provider CDK adds to configure S3 notifications at deploy time. */
  private acknowledgeCdkProviders(): void {
    const stack = Stack.of(this);
    const notifications = stack.node.tryFindChild("BucketNotificationsHandler050a0587b7544547bf325f094a3db834");
    if (notifications !== undefined) {
      const role = notifications.node.findChild("Role");
      acknowledge(
        role,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        "CDK's S3 bucket-notifications handler (a deploy-time custom resource, not part of the data path) uses the basic execution " +
          "policy for its own logs.",
      );
    }
    // The AwsCustomResource provider (one per stack) behind opsListingPublisher.
    const sdkCalls = stack.node.tryFindChild("AWS679f53fac002430cb0da5b7982bd2287");
    if (sdkCalls !== undefined) {
      acknowledge(
        sdkCalls.node.findChild("ServiceRole"),
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        "CDK's AwsCustomResource provider (a deploy-time call that publishes _ops/registry.json, not part of the data path) uses " +
          "the basic execution policy for its own logs; its one data permission is s3:PutObject on that single object.",
      );
    }
  }
}
