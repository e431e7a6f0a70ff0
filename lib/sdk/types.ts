/** The SDK's public types. */
import type { S3Client } from "@aws-sdk/client-s3";
import type { JobStatus as StoredJobStatus } from "../core/job/manifest.js";
import type { Format, OnBadRecord, ParamValue } from "../core/job/spec.js";
import type { Logger } from "../core/log.js";
import type { AnyOp } from "../core/ops/types.js";
import type { GrepResult } from "../core/ops/grep.js";
import type { HistogramResult } from "../core/ops/histogram.js";
import type { StatsResult } from "../core/ops/stats.js";
import type { WordcountResult } from "../core/ops/wordcount.js";

/**
 * Which pipeline to drive. Give a stack name (its CloudFormation outputs name the buckets,
 * queue and fleet), or an endpoint (`cloudmill dev`: buckets default to cloudmill-input and
 * cloudmill-output), or the buckets themselves. Explicit fields win over the stack's outputs.
 * Credentials and region come from the default AWS chain (environment, profile, SSO, role).
 */
export interface CloudmillOptions {
  /** CloudFormation stack, e.g. `Cloudmill-mylab` (`npx cdk deploy -c lab=mylab`). */
  readonly stack?: string;
  /** An emulator's endpoint, e.g. `http://127.0.0.1:4566` from `cloudmill dev`. Default: AWS. */
  readonly endpoint?: string;
  /** Default: the AWS chain (AWS_REGION, the profile's region); us-east-1 with an endpoint. */
  readonly region?: string;
  /** Where job specs and uploads go. Default: the stack's InputBucketName, or cloudmill-input with an endpoint. */
  readonly inputBucket?: string;
  /** Where results and statuses are. Default: the stack's OutputBucketName, or cloudmill-output with an endpoint. */
  readonly outputBucket?: string;
  /** The task queue, for the backlog in fleet(). Default: the stack's TaskQueueUrl. */
  readonly taskQueueUrl?: string;
  /** ECS cluster of the workers, for fleet(). Default: the stack's ClusterName. */
  readonly cluster?: string;
  /** ECS service of the workers, for fleet(). Default: the stack's ServiceName. */
  readonly service?: string;
  /** How result() polls. Default: 250 ms, growing 1.5× per poll to 5 s. */
  readonly poll?: PollOptions;
  /**
   * How long one S3 or SQS request may go without a byte of answer before its try fails; the
   * AWS SDK tries 3 times, then the call fails with "nothing answers at …". Default 20 000 ms.
   */
  readonly requestTimeoutMs?: number;
  /** Default: silent. */
  readonly log?: Logger;
  /**
   * An S3 client of your own (credentials, retries, middleware) for jobs, uploads and results.
   * Default: one made for the region and endpoint. close() leaves a given client open.
   */
  readonly s3?: S3Client;
}

export interface PollOptions {
  /** First wait between polls. Default 250 ms. */
  readonly initialMs?: number;
  /** Longest wait between polls. Default 5000 ms. */
  readonly maxMs?: number;
  /** Growth of the wait per poll. Default 1.5. */
  readonly factor?: number;
}

/** What `submit` takes: a job spec as `cloudmill run` knows it, whose inputs may be local paths. */
export interface SubmitSpec {
  /** Op name (`wordcount`, …, or a user op built into the worker image). */
  readonly op: string;
  /** Local files or directories (uploaded first), `s3://bucket/key` objects or `s3://bucket/prefix/` (used in place). */
  readonly inputs: readonly string[];
  readonly params?: Readonly<Record<string, ParamValue>>;
  /** Record format; default: the op's own (or by extension: .csv, .jsonl). */
  readonly format?: Format;
  /** Bytes per chunk, as a number or a size like `16MiB`. Default: the deployment's. */
  readonly chunkSize?: number | string;
  /** Tries per chunk. Default: the deployment's (3). */
  readonly maxAttempts?: number;
  /** `fail` (default) or `skip` bad records. */
  readonly onBadRecord?: OnBadRecord;
  /** Fail the job if not finished after this long. */
  readonly deadlineSeconds?: number;
  /** Longest one chunk may take before its attempt fails with TASK_TIMEOUT. Default: the deployment's (15 min). */
  readonly taskTimeoutSeconds?: number;
  /** Heap one chunk's mapping may use, in MiB, before its attempt fails with OUT_OF_MEMORY. Default: the worker's share. */
  readonly taskMemoryMiB?: number;
  /** Longest record to read, as a number or a size like `256MiB`; a longer one is a bad record. Default 64 MiB. */
  readonly maxRecordBytes?: number | string;
  /** The most the job may cost at list prices: a job estimated over it is refused with COST_LIMIT before any task. */
  readonly maxCostUsd?: number;
  /** A keyed op's partitions: its reduce tasks and output parts. Default: one per 256 MiB of input. */
  readonly partitions?: number;
  /**
   * A chunk running longer than this (and 3× the median of those mapped, once three quarters are)
   * is queued once more; the first copy to finish wins. 0: no backups. Default 60.
   */
  readonly backupAfterSeconds?: number;
  /** Parts one merge task (and the reducer) reads: more chunks merge in a tree. Default 64. Not for keyed ops. */
  readonly fanIn?: number;
  /** How far an idle fleet is woken: `fastest` (default) all it can use at once, `cheapest` one worker to start. */
  readonly prefer?: "cheapest" | "fastest";
}

/** What `mill.estimate()` prices: a job's op and inputs, and the fleet it would run on. */
export interface EstimateSpec {
  /** A built-in's name, or a lab's op itself (as `map` takes it): planned by its shape (keyed, inline), at the default rate for lab ops. */
  readonly op: string | AnyOp;
  /** `s3://bucket/key` objects or `s3://bucket/prefix/` prefixes (listed, not read). */
  readonly inputs: readonly string[];
  readonly params?: Readonly<Record<string, string>>;
  /** Default 16 MiB. */
  readonly chunkSize?: number;
  /** A keyed op's partitions (reduce tasks), as the job would ask; default one per 256 MiB of input. */
  readonly partitions?: number;
  /** Worker tasks to give the wall time at (default 1), and the fleet's most (default 4). */
  readonly workers?: number;
  readonly maxWorkers?: number;
  /** Default the stack's default type, m7g.large. */
  readonly instanceType?: string;
  /** Price the instances on demand (the default) or as a spot fleet buys them (the price table's typical share). */
  readonly capacity?: "on-demand" | "spot";
  /** Prices laid over the shipped table (`asOf`, and any of `vcpuHour`, `spotShare`, …), checked as `--prices` checks a file. */
  readonly prices?: Readonly<Record<string, unknown>>;
  /** The stack's inline limit: a job this small maps in the splitter. Default 64 MiB; 0: none. */
  readonly inlineMaxBytes?: number;
  /** Map the first chunk of the first input here (at most 16 MiB) to measure the op's rate (default true); false: its default rate. */
  readonly calibrate?: boolean;
  /**
   * Measure again even when the calibration cache (as `cloudmill estimate` keeps it, in
   * `$CLOUDMILL_CACHE_DIR` or the user's cache directory) holds this sample's rate. Default false.
   */
  readonly fresh?: boolean;
  /**
   * Where calibrations are cached; false: nowhere. Default `$CLOUDMILL_CACHE_DIR`, else
   * `$XDG_CACHE_HOME/cloudmill`, else `~/.cache/cloudmill`.
   */
  readonly cacheDir?: string | false;
}

/** Where an estimate's rate came from: a sample of this many bytes of the input, measured here or cached. */
export interface EstimateCalibration {
  readonly input: string;
  readonly bytes: number;
  /** When the cached rate was measured; absent when it was measured now. */
  readonly cachedAt?: string;
}

/** What `future.retry()` may change before the job resumes; the rest of the job is as it was. */
export interface RetryOptions {
  readonly taskTimeoutSeconds?: number;
  readonly taskMemoryMiB?: number;
  /** As a number or a size like `256MiB`. */
  readonly maxRecordBytes?: number | string;
  /** A new price ceiling: a job that failed with COST_LIMIT resumes under it. */
  readonly maxCostUsd?: number;
  /** A new deadline, counted from the resume. Default: the deployment's. */
  readonly deadlineSeconds?: number;
  /** How long to wait for the stack to take the request. Default 120 s. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Options of one submit or map call. */
export interface SubmitOptions {
  /** Called as local files upload (multipart for big files). */
  readonly onUpload?: (progress: UploadProgress) => void;
  /**
   * Stops the submission while it uploads: the uploads in flight are aborted and no spec is
   * written, so no job starts (files already uploaded stay under `_uploads/<jobId>/`). Once the
   * spec is written the job runs; `cancel()` stops it.
   */
  readonly signal?: AbortSignal;
}

export interface UploadProgress {
  /** The local path as given. */
  readonly file: string;
  /** Where it goes. */
  readonly uri: string;
  readonly loaded: number;
  readonly total: number;
}

/** `pending`: the spec is written but the pipeline has not started the job yet. */
export type JobState = "pending" | StoredJobStatus["state"];

/** A job's status: status.json as the pipeline writes it, or `pending` before it exists. */
export type JobStatus = Omit<StoredJobStatus, "state"> & { readonly state: JobState };

export interface JobProgress {
  readonly state: JobState;
  /** Chunks mapped. */
  readonly done: number;
  /** Chunks in all (0 while pending). */
  readonly total: number;
  /** done / total, 0 when there are no chunks yet (1 once succeeded). */
  readonly fraction: number;
}

export interface ResultOptions {
  /** Reject with a NOT_FINISHED error if the job has not ended after this long. The job goes on. */
  readonly timeoutMs?: number;
  /** Stop waiting (rejects with the signal's reason). The job goes on. */
  readonly signal?: AbortSignal;
  /** Called with each status polled. */
  readonly onStatus?: (status: JobStatus) => void;
}

/** Results of the built-in ops, by name. */
export interface BuiltinResults {
  readonly count: { readonly records: number };
  readonly stats: StatsResult;
  readonly wordcount: WordcountResult;
  readonly histogram: HistogramResult;
  readonly grep: GrepResult;
}

/** The result type of an op named `O`: a built-in's own, otherwise unknown. */
export type ResultOf<O extends string> = O extends keyof BuiltinResults ? BuiltinResults[O] : unknown;

/** A summary of one job, as `jobs()` lists it. */
export interface JobSummary extends JobStatus {
  /** When status.json was last written. */
  readonly updatedAt?: Date;
}

/** The worker fleet: the ECS service, its tasks, and the EC2 instances behind them. */
export interface FleetView {
  readonly cluster: string;
  readonly service: string;
  /** Worker tasks the service wants. */
  readonly desired: number;
  readonly running: number;
  readonly pending: number;
  /** The spot lane (a stack with `spot: "per-job"`): its service's counts, queue and hold; the fields above are the on-demand lane's. */
  readonly spotLane?: FleetLane;
  /** Both lanes' tasks (a spot lane's say so). */
  readonly tasks: readonly FleetTask[];
  readonly instances: readonly FleetInstance[];
  /** Sums over the instances. */
  readonly reservation: { readonly cpu: Reservation; readonly memoryMiB: Reservation };
  /** Chunks waiting in the task queue and in flight, when the queue is known. */
  readonly queue?: { readonly visible: number; readonly inFlight: number };
  /** The service's scaling range: its minimum is a hold (`fleet --scale`), 0 when none. */
  readonly hold?: FleetHold;
  /** Each live worker's latest usage report (CPU, memory, network, disk), joined to its task by id. */
  readonly usage?: readonly WorkerUsage[];
}

export type { WorkerUsage } from "../aws/usage.js";
import type { WorkerUsage } from "../aws/usage.js";

/** Workers held warm (the scaling minimum), the most allowed, and when the hold ends (unset: when stopped). */
export interface FleetHold {
  readonly workers: number;
  readonly maxWorkers: number;
  readonly until?: Date;
}

/** A second worker service of the fleet: what it wants and runs, its queue and its hold. */
export interface FleetLane {
  readonly service: string;
  readonly desired: number;
  readonly running: number;
  readonly pending: number;
  readonly queue?: { readonly visible: number; readonly inFlight: number };
  readonly hold?: FleetHold;
}

export interface FleetTask {
  readonly taskArn: string;
  /** Set for a task of the spot lane's service. */
  readonly lane?: "spot";
  /** PROVISIONING, PENDING, RUNNING, … */
  readonly lastStatus: string;
  readonly desiredStatus: string;
  readonly instanceId?: string;
  readonly startedAt?: Date;
  /** CPU units (1024 per vCPU) and MiB the task reserves. */
  readonly cpu?: number;
  readonly memoryMiB?: number;
}

export type InstanceMarket = "spot" | "on-demand" | "scheduled" | "capacity-block";

export interface FleetInstance {
  readonly instanceId: string;
  readonly containerInstanceArn: string;
  /** e.g. c7g.xlarge. */
  readonly type?: string;
  readonly market: InstanceMarket;
  readonly launchTime?: Date;
  readonly availabilityZone?: string;
  /** EC2 state: pending, running, … */
  readonly state?: string;
  /** ECS status: ACTIVE, DRAINING, … */
  readonly status?: string;
  readonly agentConnected?: boolean;
  readonly runningTasks: number;
  readonly pendingTasks: number;
  /** CPU units (1024 per vCPU). */
  readonly cpu: Reservation;
  readonly memoryMiB: Reservation;
}

export interface Reservation {
  readonly registered: number;
  readonly reserved: number;
  /** reserved / registered (0 when nothing is registered). */
  readonly fraction: number;
}
