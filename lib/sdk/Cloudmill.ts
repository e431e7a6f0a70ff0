/**
 * The SDK's client: one object that submits jobs to a lab's pipeline (or `cloudmill dev`) and
 * hands back futures.
 *
 * ```ts
 * const mill = new Cloudmill({ stack: "Cloudmill-mylab" });
 * const [a, b] = await waitAll(mill.map("wordcount", ["a.txt", "s3://lab-data/b.txt"]));
 * ```
 */
import { refuseTaskTimeoutPastQueue } from "../core/queueLimits.js";
import { HiddenFiles, hiddenNotice } from "../core/hiddenNames.js";
import { CloudFormationClient } from "@aws-sdk/client-cloudformation";
import { ApplicationAutoScalingClient } from "@aws-sdk/client-application-auto-scaling";
import { EC2Client } from "@aws-sdk/client-ec2";
import { ECSClient } from "@aws-sdk/client-ecs";
import { paginateListObjectsV2, type S3Client } from "@aws-sdk/client-s3";
import type { SQSClient } from "@aws-sdk/client-sqs";
import * as z from "zod";
import { SqsTaskQueue } from "../aws/SqsTaskQueue.js";
import { S3BlobStore } from "../aws/S3BlobStore.js";
import { awsClients, EMULATOR_CREDENTIALS } from "../aws/clients.js";
import { s3Uri } from "../core/s3Uri.js";
import { DEFAULTS, DEV_BUCKETS } from "../core/constants.js";
import {
  cancelKey,
  FLEET_PREFIX,
  JOBS_PREFIX,
  jobSpecKey,
  jobSpecOutputKeys,
  manifestKey,
  OPS_LISTING_KEY,
  type OutputKeys,
  RESULT_FILE,
  reportKey,
  retryRequestKey,
  STATUS_FILE,
  succeededKey,
} from "../core/keys.js";
import { JobReport } from "../core/report/jobReport.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../core/errors.js";
import { Manifest, JobStatus as StoredJobStatus } from "../core/job/manifest.js";
import { JobId, MaxRecordBytes, parseJobSpec, parseJobSpecJson, type JobSpecInput } from "../core/job/spec.js";
import { silentLogger, type Logger } from "../core/log.js";
import { defineOp, type UserOp } from "../core/ops/defineOp.js";
import { builtinOps, isBuiltinOp, OpRegistry } from "../core/ops/registry.js";
import { checkAgainstDeployed, listingOf, readRegistryListing, type OpsListing } from "../core/ops/registryListing.js";
import type { AnyOp } from "../core/ops/types.js";
import { exists, readBytes, readJsonIfExists } from "../core/pipeline/blobJson.js";
import { cancelJob } from "../core/pipeline/cancel.js";
import { CancelRecord, failureOfRun, runningStatus } from "../core/pipeline/status.js";
import { isUploadJobIdForm } from "../core/job/planner.js";
import { RetryRequest, retryRefusal } from "../core/pipeline/resume.js";
import { WorkerUsage } from "../aws/usage.js";
import { resolveS3Inputs } from "../core/pipeline/resolveInputs.js";
import { withCodecs } from "../core/pipeline/inputCodecs.js";
import { estimatedFormat, estimatedPlan, estimateJob, type Estimate } from "../core/report/estimate.js";
import { CAPACITIES, checkedPrices, withPrices } from "../core/report/prices.js";
import { vcpusOfSize } from "../core/instanceTypes.js";
import { calibratedRates, calibrateSample, sampleBytesFor, type Calibration } from "../local/calibrate.js";
import { CalibrationCache, calibrationCacheDir } from "../local/calibrationCache.js";

/** A usage report older than this many of its intervals (plus a grace) is a worker gone. */
const USAGE_FRESH_INTERVALS = 3;
const USAGE_GRACE_MS = 30_000;
import { batchSizeFor, itemsChunkSize, itemsJsonl, resolveStoredResult } from "../core/pipeline/items.js";
import type { OnItemError, TaskOp, TaskResult } from "../core/ops/defineTask.js";
import { withAws, type AwsTarget } from "./awsErrors.js";
import { backoff, deadlineSignal } from "./poll.js";
import { sleep } from "../core/sleep.js";
import { DEFAULT_JOBS_LIMIT, FILES_AT_ONCE, REQUEST_TIMEOUT_MS, STATUS_READS_AT_ONCE, UPLOADS_PREFIX } from "./constants.js";
import { mapInOrder } from "../core/mapInOrder.js";
import { Slots } from "../core/slots.js";
import { describeFleet, type FleetTarget } from "./fleet.js";
import { holdFleet, readHold, stopFleet, type HoldClients } from "./fleetHold.js";
import { JobFuture, type JobBackend } from "./JobFuture.js";
import { newJobId } from "./jobId.js";
import { readStackOutputs, type StackOutputs } from "./stack.js";
import type {
  CloudmillOptions,
  EstimateCalibration,
  EstimateSpec,
  FleetHold,
  FleetView,
  JobStatus,
  JobSummary,
  ResultOf,
  RetryOptions,
  SubmitOptions,
  SubmitSpec,
} from "./types.js";
import { planInputs, uploadFile } from "./uploads.js";
import { quietly } from "./quietClients.js";

/** Where the client ended up connected: what the options and the stack's outputs say. */
export interface CloudmillTarget {
  readonly region: string;
  readonly endpoint?: string;
  readonly stack?: string;
  readonly inputBucket: string;
  readonly outputBucket: string;
  readonly taskQueueUrl?: string;
  readonly cluster?: string;
  readonly service?: string;
  /** A stack with `spot: "per-job"`: the spot lane's service and task queue (from its outputs). */
  readonly spotService?: string;
  readonly spotTaskQueueUrl?: string;
}

interface Connected {
  readonly target: CloudmillTarget;
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly input: S3BlobStore;
  readonly output: S3BlobStore;
}

/** Settings of one job in map(): everything a spec has but op, inputs and params. */
export type MapOptions = Omit<SubmitSpec, "op" | "inputs" | "params"> & SubmitOptions;

/** Params of a job: values as the CLI would pass them (strings) or typed. */
export type JobParams = SubmitSpec["params"];

/** Settings of a mapItems job. */
export interface MapItemsOptions {
  /** The task's own params. */
  readonly params?: JobParams;
  /**
   * Items per task message (a worker runs a message's items one after another).
   * Default: 1 up to 1,000 items, then as many as keep the job at 1,000 messages.
   */
  readonly batchSize?: number;
  /** `collect` (default): failed items are listed in the result's errors; `fail`: the first fails the job. */
  readonly onItemError?: OnItemError;
  /** Tries per message. Default: the deployment's (3). */
  readonly maxAttempts?: number;
  /** Fail the job if not finished after this long. */
  readonly deadlineSeconds?: number;
}

const ANY_JSON = z.unknown();

/** A lab op known by its name alone (deployed, not given here): an op of lines, mapped on the fleet. */
const namedLabOp = (name: string): AnyOp => defineOp({ name, format: "lines", map: () => 0, combine: (a: number) => a });

export class Cloudmill {
  readonly #options: CloudmillOptions;
  readonly #env: Readonly<Record<string, string | undefined>>;
  readonly #log: Logger;
  #connected: Promise<Connected> | undefined;
  #extra: { ecs?: ECSClient; ec2?: EC2Client; cfn?: CloudFormationClient; scaling?: ApplicationAutoScalingClient } = {};
  #closed = false;
  /** What futures of submitted jobs read through. */
  readonly #backend: JobBackend;
  /** Uploads of local files in progress, over every submission (FILES_AT_ONCE). */
  readonly #uploads = new Slots(FILES_AT_ONCE);
  /** Where jobs' status and result are, as their manifests (or a listing) said: an upload's beside its input. */
  readonly #outputKeys = new Map<string, OutputKeys>();

  /**
   * A client for one pipeline. Connecting is lazy: the first call reads the stack's outputs
   * (use `Cloudmill.connect` to fail early). `env` is the AWS SDK's own environment (defaults to
   * process.env), read only to tell whether credentials are configured for an emulator.
   */
  constructor(options: CloudmillOptions, env: Readonly<Record<string, string | undefined>> = process.env) {
    if (!options.stack && !options.endpoint && !(options.inputBucket && options.outputBucket)) {
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        'say which pipeline: { stack: "Cloudmill-<lab>" }, { endpoint: "http://127.0.0.1:4566" } for cloudmill dev, or { inputBucket, ' +
          "outputBucket }",
      );
    }
    this.#options = options;
    this.#env = env;
    this.#log = options.log ?? silentLogger;
    this.#backend = this.#backendFor(true);
  }

  /** A client that has read the stack's outputs already: rejects now if the stack or credentials are wrong. */
  static async connect(options: CloudmillOptions, env?: Readonly<Record<string, string | undefined>>): Promise<Cloudmill> {
    const mill = new Cloudmill(options, env);
    await mill.target();
    return mill;
  }

  /** Buckets, queue, fleet and region this client drives (connects if needed). */
  async target(): Promise<CloudmillTarget> {
    return (await this.#connect()).target;
  }

  #aws(action: string, extra: Partial<AwsTarget> = {}): AwsTarget {
    const o = this.#options;
    return { action, ...(o.endpoint ? { endpoint: o.endpoint } : {}), ...(o.stack ? { stack: o.stack } : {}), ...extra };
  }

  /** Client settings for the extra AWS clients (CloudFormation, ECS, EC2). */
  #clientConfig(region: string) {
    const endpoint = this.#options.endpoint;
    return {
      region,
      ...(endpoint ? { endpoint, ...(this.#env["AWS_ACCESS_KEY_ID"] ? {} : { credentials: EMULATOR_CREDENTIALS }) } : {}),
    };
  }

  #connect(): Promise<Connected> {
    if (this.#closed) return Promise.reject(new CloudmillError(ErrorCode.INVALID_SPEC, "this Cloudmill client is closed"));
    this.#connected ??= this.#resolve();
    return this.#connected;
  }

  async #region(): Promise<string> {
    const o = this.#options;
    if (o.region) return o.region;
    if (o.endpoint) return this.#env["AWS_REGION"] || this.#env["AWS_DEFAULT_REGION"] || "us-east-1";
    // The SDK's own chain: AWS_REGION, then the profile's region in ~/.aws/config.
    const probe = quietly(() => new CloudFormationClient({}));
    try {
      return await withAws(this.#aws("find the AWS region"), () => probe.config.region());
    } finally {
      probe.destroy();
    }
  }

  async #resolve(): Promise<Connected> {
    const o = this.#options;
    const region = await this.#region();
    let outputs: StackOutputs = {};
    if (o.stack) {
      const cfn = (this.#extra.cfn ??= quietly(() => new CloudFormationClient(this.#clientConfig(region))));
      outputs = await readStackOutputs(cfn, o.stack, { ...(o.endpoint ? { endpoint: o.endpoint } : {}), region });
    }
    const dev = o.endpoint && !o.stack ? DEV_BUCKETS : undefined;
    const need = (value: string | undefined, output: string, flag: string): string => {
      if (value) return value;
      throw new CloudmillError(
        ErrorCode.ENVIRONMENT,
        o.stack
          ? `stack ${o.stack} has no output ${output}: is it a cloudmill stack? Redeploy it with \`npx cdk deploy\`, or pass ${flag}`
          : `no ${flag} given`,
      );
    };
    const inputBucket = need(o.inputBucket ?? outputs.inputBucket ?? dev?.input, "InputBucketName", "--input-bucket / inputBucket");
    const outputBucket = need(o.outputBucket ?? outputs.outputBucket ?? dev?.output, "OutputBucketName", "--output-bucket / outputBucket");
    const pick = (k: "taskQueueUrl" | "cluster" | "service"): { [key: string]: string } => {
      const v = o[k] ?? outputs[k];
      return v ? { [k]: v } : {};
    };
    const target: CloudmillTarget = {
      region,
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      ...(o.stack ? { stack: o.stack } : {}),
      inputBucket,
      outputBucket,
      ...pick("taskQueueUrl"),
      ...pick("cluster"),
      ...pick("service"),
      ...(outputs.spotService ? { spotService: outputs.spotService } : {}),
      ...(outputs.spotTaskQueueUrl ? { spotTaskQueueUrl: outputs.spotTaskQueueUrl } : {}),
    };
    const socketTimeoutMs = o.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    const made = quietly(() =>
      awsClients(
        {
          region,
          ...(o.endpoint ? { endpoint: o.endpoint } : {}),
          maxSockets: 16,
          socketTimeoutMs,
          connectionTimeoutMs: Math.min(socketTimeoutMs, REQUEST_TIMEOUT_MS),
        },
        this.#env as NodeJS.ProcessEnv,
      ),
    );
    const s3 = o.s3 ?? made.s3;
    if (o.s3) made.s3.destroy();
    this.#log.debug("connected", { ...target });
    return { target, s3, sqs: made.sqs, input: new S3BlobStore(s3, inputBucket), output: new S3BlobStore(s3, outputBucket) };
  }

  // ---- jobs ---------------------------------------------------------------------------------

  /**
   * Submits one job: uploads local inputs (multipart for big files), writes the spec to
   * `_jobs/<jobId>.json` in the input bucket, and returns its future at once. An invalid spec
   * throws here (INVALID_SPEC); upload and AWS errors reject the future's promises.
   */
  submit<const O extends string>(spec: SubmitSpec & { readonly op: O }, options: SubmitOptions = {}): JobFuture<ResultOf<O>> {
    return this.#submit(spec, options);
  }

  /** `opChecked`: settles once the caller's own op is known to be the deployed code (before any upload). */
  #submit<R>(spec: SubmitSpec, options: SubmitOptions, opChecked?: Promise<void>, digest?: string): JobFuture<R> {
    const id = newJobId();
    const given: JobSpecInput = {
      id,
      op: spec.op,
      // The code checked: a pipeline redeployed since refuses the job rather than run other code.
      ...(digest !== undefined ? { opDigest: digest } : {}),
      inputs: [...spec.inputs],
      ...(spec.params !== undefined ? { params: { ...spec.params } } : {}),
      ...(spec.format !== undefined ? { format: spec.format } : {}),
      ...(spec.chunkSize !== undefined ? { chunkSize: spec.chunkSize } : {}),
      ...(spec.maxAttempts !== undefined ? { maxAttempts: spec.maxAttempts } : {}),
      ...(spec.onBadRecord !== undefined ? { onBadRecord: spec.onBadRecord } : {}),
      ...(spec.deadlineSeconds !== undefined ? { deadlineSeconds: spec.deadlineSeconds } : {}),
      ...(spec.taskTimeoutSeconds !== undefined ? { taskTimeoutSeconds: spec.taskTimeoutSeconds } : {}),
      ...(spec.taskMemoryMiB !== undefined ? { taskMemoryMiB: spec.taskMemoryMiB } : {}),
      ...(spec.maxCostUsd !== undefined ? { maxCostUsd: spec.maxCostUsd } : {}),
      ...(spec.maxRecordBytes !== undefined ? { maxRecordBytes: spec.maxRecordBytes } : {}),
      ...(spec.partitions !== undefined ? { partitions: spec.partitions } : {}),
      ...(spec.backupAfterSeconds !== undefined ? { backupAfterSeconds: spec.backupAfterSeconds } : {}),
      ...(spec.fanIn !== undefined ? { fanIn: spec.fanIn } : {}),
      ...(spec.prefer !== undefined ? { prefer: spec.prefer } : {}),
    };
    const parsed = parseJobSpec(given, "");
    // Refused here, before anything is uploaded, as the splitter would refuse it.
    refuseTaskTimeoutPastQueue(parsed.taskTimeoutSeconds, `job ${id}`);
    const abort = new AbortController();
    const { signal } = options;
    const onAbort = (): void => abort.abort(signal!.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
    const submitted = this.#write(id, given, parsed.chunkSize, spec.chunkSize !== undefined, options, abort.signal, opChecked);
    // A caller's signal outlives its submissions (one for a whole notebook): its listener goes with each.
    if (signal) void submitted.finally(() => signal.removeEventListener("abort", onAbort)).catch(() => undefined);
    return new JobFuture<R>(id, this.#backend, { submitted, abort });
  }

  async #write(
    id: string,
    given: JobSpecInput,
    chunkSize: number,
    chunkSizeGiven: boolean,
    options: SubmitOptions,
    signal: AbortSignal,
    opChecked: Promise<void> | undefined,
  ): Promise<void> {
    await opChecked;
    const conn = await this.#connect();
    const staged = await planInputs(conn.target.inputBucket, id, given.inputs);
    if (staged.hidden.count > 0) this.#log.warn(hiddenNotice(staged.hidden), { jobId: id });
    // Only what the caller gave: the deployment's defaults fill the rest, as for any spec upload.
    // Checked whole before any upload: the uploads' URIs can take a spec past its size limit.
    const body = JSON.stringify({ ...given, inputs: staged.uris, ...(chunkSizeGiven ? { chunkSize } : {}) });
    parseJobSpecJson(body, `job spec of ${staged.uris.length} inputs`);
    for (const upload of staged.uploads) {
      await this.#uploads.run(async () => {
        signal.throwIfAborted();
        await withAws(
          this.#aws(`upload ${upload.file} to ${s3Uri(conn.target.inputBucket, upload.key)}`),
          () => uploadFile(conn.s3, conn.target.inputBucket, upload, options.onUpload, signal),
          signal,
        );
      });
    }
    signal.throwIfAborted();
    await withAws(this.#aws(`write job spec ${s3Uri(conn.target.inputBucket, jobSpecKey(id))}`), () =>
      conn.input.put(jobSpecKey(id), body, { contentType: "application/json" }),
    );
    this.#log.info("job submitted", { jobId: id, inputs: staged.uris.length, uploaded: staged.uploads.length });
  }

  /**
   * One job per input, like Cloudknot's `Knot.map`: `futures[i]` resolves to the result of
   * `op` over `inputs[i]`. `op` is a name or an op made with defineOp (built into the workers).
   */
  map<const O extends string>(op: O, inputs: readonly string[], params?: JobParams, options?: MapOptions): JobFuture<ResultOf<O>>[];
  map<P, A, R>(op: UserOp<P, A, R>, inputs: readonly string[], params?: JobParams, options?: MapOptions): JobFuture<R>[];
  map(op: string | AnyOp, inputs: readonly string[], params?: JobParams, options: MapOptions = {}): JobFuture<unknown>[] {
    const name = typeof op === "string" ? op : op.name;
    // One check for all the inputs; each future rejects with its failure.
    const opChecked = typeof op === "string" ? undefined : this.#checkDeployed(op);
    opChecked?.catch(() => undefined);
    const { onUpload, signal, ...rest } = options;
    return inputs.map((input) =>
      this.#submit(
        { ...rest, op: name, inputs: [input], ...(params !== undefined ? { params } : {}) },
        { ...(onUpload ? { onUpload } : {}), ...(signal ? { signal } : {}) },
        opChecked,
        typeof op === "string" ? undefined : op.digest,
      ),
    );
  }

  /**
   * Runs a task once per item, like Cloudknot's `Knot.map` and MyCloud's `cluster.map`: the
   * items (any JSON values) are written as one JSONL object, many items per task message, and
   * one future resolves to `{ items, results, errors, files }`, results in item order. `task` is
   * a name or a task made with defineTask (checked against the deployed code before anything
   * is uploaded). An item that is not JSON throws here, naming its index.
   */
  mapItems<I, O, P>(task: TaskOp<I, O, P>, items: Iterable<I>, options?: MapItemsOptions): JobFuture<TaskResult<O>>;
  mapItems<O = unknown>(task: string, items: Iterable<unknown>, options?: MapItemsOptions): JobFuture<TaskResult<O>>;
  mapItems(task: string | TaskOp, items: Iterable<unknown>, options: MapItemsOptions = {}): JobFuture<TaskResult> {
    const name = typeof task === "string" ? task : task.name;
    const { body, count } = itemsJsonl(items);
    const batchSize = batchSizeFor(count, options.batchSize);
    const id = newJobId();
    const given: JobSpecInput = {
      id,
      op: name,
      inputs: ["s3://placeholder/items.jsonl"],
      ...(typeof task !== "string" && task.digest !== undefined ? { opDigest: task.digest } : {}),
      format: "jsonl",
      chunkSize: itemsChunkSize(Buffer.byteLength(body), count, batchSize),
      params: { ...options.params, ...(options.onItemError ? { onItemError: options.onItemError } : {}) },
      ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
      ...(options.deadlineSeconds !== undefined ? { deadlineSeconds: options.deadlineSeconds } : {}),
    };
    parseJobSpec(given, "");
    const opChecked = typeof task === "string" ? undefined : this.#checkDeployed(task);
    const abort = new AbortController();
    const submitted = (async () => {
      await opChecked;
      const conn = await this.#connect();
      const key = `${UPLOADS_PREFIX}${id}/items.jsonl`;
      abort.signal.throwIfAborted();
      await withAws(this.#aws(`upload items to ${s3Uri(conn.target.inputBucket, key)}`), () =>
        conn.input.put(key, body, { contentType: "application/x-ndjson" }),
      );
      abort.signal.throwIfAborted();
      const spec = { ...given, inputs: [s3Uri(conn.target.inputBucket, key)] };
      await withAws(this.#aws(`write job spec ${s3Uri(conn.target.inputBucket, jobSpecKey(id))}`), () =>
        conn.input.put(jobSpecKey(id), JSON.stringify(spec), { contentType: "application/json" }),
      );
      this.#log.info("items submitted", { jobId: id, items: count, batchSize });
    })();
    return new JobFuture<TaskResult>(id, this.#backend, { submitted, abort });
  }

  /**
   * The ops the pipeline runs, each with its code digest, as its registry published them
   * (`_ops/registry.json` in the output bucket); undefined when it published none.
   */
  async ops(options: { readonly signal?: AbortSignal } = {}): Promise<OpsListing | undefined> {
    return this.#opsListing(await this.#connect(), options.signal);
  }

  /**
   * Refuses a local op whose code the pipeline does not run. A pipeline that publishes no
   * listing runs the built-in ops only (deployed stacks do not bundle a lab's ops yet).
   */
  async #checkDeployed(local: AnyOp): Promise<void> {
    const listing = (await this.ops()) ?? listingOf(new OpRegistry());
    checkAgainstDeployed(local, listing);
  }

  #opsListing(conn: Connected, signal?: AbortSignal): Promise<OpsListing | undefined> {
    return withAws(this.#aws(`read ${s3Uri(conn.output.name, OPS_LISTING_KEY)}`), () => readRegistryListing(conn.output, signal), signal);
  }

  /** A future for a job submitted before (by id), e.g. from another process or the CLI. */
  job<R = unknown>(jobId: string): JobFuture<R> {
    const id = JobId.safeParse(jobId);
    if (!id.success) throw new CloudmillError(ErrorCode.INVALID_SPEC, `job id ${JSON.stringify(jobId)}: ${id.error.issues[0]!.message}`);
    return new JobFuture<R>(jobId, this.#backendFor(false));
  }

  /**
   * Recent jobs, newest first (by when their status last changed): those started by a spec
   * (`_jobs/<id>/status.json`) and by an upload (`<op>/<key>/status.json`, beside its input; an
   * input uploaded again shows its latest job). Its cost: one LIST of the output bucket's top
   * folders, then one LIST per 1,000 objects under `_jobs/` and under each upload folder (an
   * upload's job keeps two objects there), then one GET per job returned (two for a job whose
   * status shows nothing done, to see a cancel).
   */
  async jobs(options: { readonly limit?: number; readonly signal?: AbortSignal } = {}): Promise<JobSummary[]> {
    const conn = await this.#connect();
    const limit = options.limit ?? DEFAULT_JOBS_LIMIT;
    const { signal } = options;
    const bucket = conn.target.outputBucket;
    type Found = { readonly key: string; readonly jobId?: string; readonly updatedAt?: Date };
    const listed = (prefix: string, delimiter?: string) =>
      paginateListObjectsV2({ client: conn.s3 }, { Bucket: bucket, Prefix: prefix, ...(delimiter ? { Delimiter: delimiter } : {}) });
    const folders = await withAws(
      this.#aws(`list jobs in s3://${bucket}/`),
      async () => {
        const out: string[] = [];
        for await (const page of listed("", "/")) for (const p of page.CommonPrefixes ?? []) if (p.Prefix) out.push(p.Prefix);
        return out;
      },
      signal,
    );
    // `_jobs/` holds specs' jobs; other `_` folders are the pipeline's own; every other folder is uploads'.
    const searched = [JOBS_PREFIX, ...folders.filter((f) => !f.startsWith("_"))];
    const found = (
      await mapInOrder(searched, STATUS_READS_AT_ONCE, (prefix) =>
        withAws(
          this.#aws(`list jobs in s3://${bucket}/${prefix}`),
          async () => {
            const out: Found[] = [];
            for await (const page of listed(prefix)) {
              for (const o of page.Contents ?? []) {
                if (!o.Key?.endsWith(`/${STATUS_FILE}`)) continue;
                const updatedAt = o.LastModified ? { updatedAt: o.LastModified } : {};
                if (prefix !== JOBS_PREFIX) out.push({ key: o.Key, ...updatedAt });
                else {
                  const m = /^_jobs\/([^/]+)\/status\.json$/.exec(o.Key);
                  if (m) out.push({ key: o.Key, jobId: m[1]!, ...updatedAt });
                }
              }
            }
            return out;
          },
          signal,
        ),
      )
    ).flat();
    found.sort((a, b) => (b.updatedAt?.getTime() ?? 0) - (a.updatedAt?.getTime() ?? 0) || (a.key < b.key ? 1 : -1));
    const newest = found.slice(0, limit);
    // A few at once, not `limit`: each read holds a listener on the caller's signal.
    const read = await mapInOrder(newest, STATUS_READS_AT_ONCE, async ({ key, jobId, updatedAt }) => {
      const at = updatedAt ? { updatedAt } : {};
      if (jobId !== undefined) return { ...(await this.#readStatus(conn, jobId, { known: true, ...(signal ? { signal } : {}) })), ...at };
      // An upload's job: its id is in its status.
      const status = await this.#getJson(conn.output, key, StoredJobStatus, signal).catch(() => undefined);
      if (!status) return undefined;
      this.#outputKeys.set(status.jobId, { status: key, result: `${key.slice(0, -STATUS_FILE.length)}${RESULT_FILE}` });
      return { ...(await this.#unhidden(conn, status, signal)), ...at };
    });
    return read.filter((j) => j !== undefined);
  }

  /**
   * A finished job's report (`_jobs/<jobId>/report.json`): its tasks' timings per worker,
   * stragglers, throughput and cost. Undefined until the job has succeeded (the reducer writes it).
   */
  async report(jobId: string, options: { readonly signal?: AbortSignal } = {}): Promise<JobReport | undefined> {
    const id = JobId.safeParse(jobId);
    if (!id.success) throw new CloudmillError(ErrorCode.INVALID_SPEC, `job id ${JSON.stringify(jobId)}: ${id.error.issues[0]!.message}`);
    const conn = await this.#connect();
    return this.#getJson(conn.output, reportKey(jobId), JobReport, options.signal);
  }

  /**
   * The worker fleet: desired, running and pending worker tasks, and the EC2 instances behind
   * them (type, spot or on-demand, launch time) with their CPU and memory reservation.
   * Needs the stack's ClusterName and ServiceName (or { cluster, service }).
   */
  async fleet(): Promise<FleetView> {
    const conn = await this.#connect();
    const target = this.#fleetTarget(conn);
    const config = this.#clientConfig(target.region);
    const ecs = (this.#extra.ecs ??= quietly(() => new ECSClient(config)));
    const ec2 = (this.#extra.ec2 ??= quietly(() => new EC2Client(config)));
    const view = await describeFleet({ ecs, ec2 }, target);
    // A stack deployed before holds existed may have no scaling range to read: the view goes without.
    const hold = await readHold(this.#holdClients(target), target).catch(() => undefined);
    const depthOf = (url: string | undefined, which: string) =>
      url ? withAws(this.#aws(`read the ${which} depth`), () => new SqsTaskQueue(conn.sqs, url).depth()) : Promise.resolve(undefined);
    const queue = await depthOf(conn.target.taskQueueUrl, "task queue's");
    const usage = await this.workerUsage();
    let spotLane = view.spotLane;
    if (spotLane && target.spotService) {
      const spotTarget = { ...target, service: target.spotService };
      const spotHold = await readHold(this.#holdClients(spotTarget), spotTarget).catch(() => undefined);
      const spotQueue = await depthOf(conn.target.spotTaskQueueUrl, "spot lane's queue");
      spotLane = { ...spotLane, ...(spotQueue ? { queue: spotQueue } : {}), ...(spotHold ? { hold: spotHold } : {}) };
    }
    return {
      ...view,
      ...(spotLane ? { spotLane } : {}),
      ...(queue ? { queue } : {}),
      ...(hold ? { hold } : {}),
      ...(usage.length ? { usage } : {}),
    };
  }

  /**
   * What a job would take and cost on the fleet, before anything is queued: the inputs' sizes
   * (listed, not read), the op's rate measured here on the first chunk of the first input (at
   * most 16 MiB; or its default), priced as job reports are. The same figures as `cloudmill estimate`.
   */
  async estimate(spec: EstimateSpec): Promise<Estimate & { readonly calibration?: EstimateCalibration }> {
    const conn = await this.#connect();
    const stores = new Map<string, S3BlobStore>();
    const inputStore = (bucket: string): S3BlobStore => {
      let store = stores.get(bucket);
      if (!store) stores.set(bucket, (store = new S3BlobStore(conn.s3, bucket)));
      return store;
    };
    const hidden = new HiddenFiles();
    const inputs = await withAws(this.#aws("list the job's inputs"), () => resolveS3Inputs({ inputStore }, spec.inputs, hidden));
    const first = inputs.find((i) => i.size > 0);
    let measured: (Calibration & { readonly cachedAt?: string }) | undefined;
    let calibration: EstimateCalibration | undefined;
    const registry = new OpRegistry(builtinOps);
    // A lab's op, given as itself, is planned by its shape (keyed, inline); not run here, it is priced at the lab ops' default rate.
    // Named only, it is planned as the fleet maps lines.
    const op = typeof spec.op !== "string" ? spec.op : registry.has(spec.op) ? registry.get(spec.op) : namedLabOp(spec.op);
    if (first && spec.calibrate !== false && isBuiltinOp(op)) {
      const sampleBytes = sampleBytesFor(spec.chunkSize ?? DEFAULTS.chunkSize);
      const sample = await withAws(this.#aws(`read a sample of ${first.name}`), () =>
        readBytes(inputStore(first.bucket), first.key, undefined, { start: 0, end: sampleBytes }),
      );
      // The same cache as `cloudmill estimate` on local files: a sample's bytes, not its name, are its key.
      const cacheDir = spec.cacheDir === false ? undefined : (spec.cacheDir ?? calibrationCacheDir(process.env));
      const cache = cacheDir ? { store: new CalibrationCache(cacheDir), fresh: spec.fresh ?? false } : undefined;
      measured = await calibrateSample(sample, first.key, { op: op.name, params: spec.params ?? {} }, registry, cache, {
        whole: first.size <= sampleBytes,
      }).catch((err: unknown) => {
        // A sample that does not map on its own (a big compressed file or archive, cut short): the op's default rate.
        this.#log.warn("no calibration on the sample; the op's default rate", { input: first.name, error: toCloudmillError(err).message });
        return undefined;
      });
      if (measured)
        calibration = { input: first.name, bytes: measured.bytes, ...(measured.cachedAt ? { cachedAt: measured.cachedAt } : {}) };
    }
    const instanceType = spec.instanceType ?? DEFAULTS.instanceType;
    if (spec.capacity !== undefined && !(CAPACITIES as readonly string[]).includes(spec.capacity))
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        `capacity: expected ${CAPACITIES.join(" or ")}, got ${JSON.stringify(spec.capacity)}`,
      );
    const vcpus = vcpusOfSize(instanceType);
    if (vcpus === undefined) throw new CloudmillError(ErrorCode.INVALID_SPEC, `instanceType ${instanceType}: not an instance type`);
    const chunkSize = spec.chunkSize ?? DEFAULTS.chunkSize;
    // Planned as the splitter plans the job: each input's codec found by its first bytes.
    const sniffed = await withAws(this.#aws("read the first bytes of the job's inputs"), () =>
      withCodecs({ inputStore }, inputs, chunkSize, { raw: estimatedFormat(op) === "blob" }),
    );
    const estimate = estimateJob({
      op: op.name,
      ...estimatedPlan(op, sniffed, chunkSize, spec.inlineMaxBytes ?? DEFAULTS.inlineMaxBytes),
      chunkSize,
      ...(spec.partitions !== undefined ? { partitions: spec.partitions } : {}),
      ...calibratedRates(measured),
      instanceType,
      ...(spec.capacity !== undefined ? { capacity: spec.capacity } : {}),
      ...(spec.prices !== undefined ? { prices: withPrices(checkedPrices(spec.prices)) } : {}),
      workers: spec.workers ?? 1,
      vcpusPerWorker: vcpus,
      maxWorkers: spec.maxWorkers ?? 4,
      hidden,
    });
    return calibration ? { ...estimate, calibration } : estimate;
  }

  /**
   * The workers' latest usage reports (`_fleet/` in the output bucket): CPU, memory, network and
   * disk of each worker that reported within the last three intervals. Works with `cloudmill dev` too.
   */
  async workerUsage(): Promise<WorkerUsage[]> {
    const conn = await this.#connect();
    const now = Date.now();
    return withAws(this.#aws("read the workers' usage reports"), async () => {
      const reports: WorkerUsage[] = [];
      for await (const { key } of conn.output.list(FLEET_PREFIX)) {
        const r = await readJsonIfExists(conn.output, key, WorkerUsage).catch(() => undefined);
        if (r && now - Date.parse(r.at) <= USAGE_FRESH_INTERVALS * r.intervalSeconds * 1000 + USAGE_GRACE_MS) reports.push(r);
      }
      return reports.sort((a, b) => (a.taskId ?? a.worker).localeCompare(b.taskId ?? b.worker));
    });
  }

  /**
   * Holds `workers` warm workers (the service's scaling minimum, and ECS asked for them now), for
   * `forMs` if given, else until stopFleet(). The backlog alarm still adds workers above it.
   */
  async scaleFleet(workers: number, options: { readonly forMs?: number; readonly lane?: "spot" } = {}): Promise<FleetHold> {
    const fleet = this.#fleetTarget(await this.#connect());
    const target = options.lane === "spot" ? this.#spotLaneTarget(fleet) : fleet;
    const until = options.forMs === undefined ? undefined : new Date(Date.now() + options.forMs);
    return holdFleet(this.#holdClients(target), target, workers, until);
  }

  /**
   * Ends any hold and scales the fleet to zero (both lanes of a stack with a spot lane): idle
   * workers stop now, busy ones after their chunks.
   */
  async stopFleet(): Promise<FleetHold> {
    const target = this.#fleetTarget(await this.#connect());
    // Both lanes are asked, whichever fails: a failure of one must not leave the other running.
    const [main, spot] = await Promise.allSettled([
      stopFleet(this.#holdClients(target), target),
      target.spotService ? stopFleet(this.#holdClients(target), this.#spotLaneTarget(target)) : Promise.resolve(undefined),
    ]);
    if (main.status === "rejected") throw main.reason;
    if (spot.status === "rejected") throw spot.reason;
    return main.value;
  }

  /** The spot lane as a fleet target; refused for a stack without one. */
  #spotLaneTarget(fleet: FleetTarget & { readonly region: string }): FleetTarget & { readonly region: string } {
    if (!fleet.spotService)
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        "--spot: this stack has no spot lane (deploy it with -c spot=per-job for one; with spot=true every worker is on spot)",
        { field: "spot" },
      );
    const { spotService: _lane, ...rest } = fleet;
    return { ...rest, service: fleet.spotService };
  }

  #fleetTarget(conn: Connected): FleetTarget & { readonly region: string } {
    const { cluster, service, region, endpoint } = conn.target;
    if (!cluster || !service) {
      throw new CloudmillError(
        ErrorCode.ENVIRONMENT,
        endpoint && !conn.target.stack
          ? `no worker fleet at ${endpoint}: cloudmill dev runs its workers as local processes; connect with --stack to see a lab's fleet`
          : `no worker fleet known: stack ${conn.target.stack ?? "?"} has no ClusterName/ServiceName outputs (pass cluster and service)`,
      );
    }
    const { spotService } = conn.target;
    return { cluster, service, region, ...(endpoint ? { endpoint } : {}), ...(spotService ? { spotService } : {}) };
  }

  #holdClients(target: FleetTarget & { readonly region: string }): HoldClients {
    const config = this.#clientConfig(target.region);
    return {
      ecs: (this.#extra.ecs ??= quietly(() => new ECSClient(config))),
      scaling: (this.#extra.scaling ??= quietly(() => new ApplicationAutoScalingClient(config))),
    };
  }

  /** Releases the client's sockets. Futures of this client stop working. */
  close(): void {
    this.#closed = true;
    void this.#connected?.then(
      (conn) => {
        if (!this.#options.s3) conn.s3.destroy();
        conn.sqs.destroy();
      },
      () => undefined,
    );
    for (const client of Object.values(this.#extra)) client?.destroy();
    this.#extra = {};
  }

  // ---- what futures read --------------------------------------------------------------------

  /** One GET of a JSON object, or undefined when it does not exist. */
  #getJson<S extends z.ZodType>(store: S3BlobStore, key: string, schema: S, signal?: AbortSignal): Promise<z.output<S> | undefined> {
    return withAws(this.#aws(`read ${s3Uri(store.name, key)}`), () => readJsonIfExists(store, key, schema, signal), signal);
  }

  #exists(store: S3BlobStore, key: string, signal?: AbortSignal): Promise<boolean> {
    return withAws(this.#aws(`read ${s3Uri(store.name, key)}`), () => exists(store, key), signal);
  }

  /**
   * Where job `jobId` keeps its status and result: a spec's job under `_jobs/<id>/`; an upload's
   * (an id of the form `<op>-<24 hex digits>`) where its manifest says, beside its input, read
   * once per client and job. Undefined for an upload's job that has no manifest (yet).
   */
  async #keysOf(conn: Connected, jobId: string, signal?: AbortSignal): Promise<{ keys?: OutputKeys; manifest?: Manifest }> {
    const known = this.#outputKeys.get(jobId);
    if (known || !isUploadJobIdForm(jobId)) return { keys: known ?? jobSpecOutputKeys(jobId) };
    const manifest = await this.#getJson(conn.output, manifestKey(jobId), Manifest, signal);
    if (!manifest) return {};
    this.#outputKeys.set(jobId, manifest.output);
    return { keys: manifest.output, manifest };
  }

  /**
   * One GET of status.json (an upload's job: one more, once, of its manifest, which says where
   * that is). Only while nothing is done yet, one more request: before the splitter has run (is
   * the spec there?), or to see a cancel that the splitter's first status may have hidden.
   */
  async #readStatus(
    conn: Connected,
    jobId: string,
    options: { readonly signal?: AbortSignal; readonly known: boolean },
  ): Promise<JobStatus> {
    const { signal } = options;
    const out = conn.target.outputBucket;
    const found = await this.#keysOf(conn, jobId, signal);
    // An upload's job that has no manifest yet, or that failed before it had one, may still be under `_jobs/` (an input key too long).
    const keys = found.keys ?? jobSpecOutputKeys(jobId);
    const status = await this.#getJson(conn.output, keys.status, StoredJobStatus, signal);
    if (status && status.jobId !== jobId) return this.#supersededStatus(conn, jobId, found.manifest, status, signal);
    if (!status) {
      const cancelled = await this.#getJson(conn.output, cancelKey(jobId), CancelRecord, signal);
      if (cancelled) return { jobId, state: "cancelled", chunks: 0, done: 0, finishedAt: cancelled.at };
      // An upload's job started (it has a manifest), its first status not written yet.
      const started =
        found.manifest ??
        (found.keys && isUploadJobIdForm(jobId) ? await this.#getJson(conn.output, manifestKey(jobId), Manifest, signal) : undefined);
      if (started) return runningStatus(started, 0);
      // An upload's job refused before it had a manifest (an unknown op, a missing param): its failure marker says why.
      const refused =
        isUploadJobIdForm(jobId) && !found.keys
          ? await withAws(this.#aws(`read job ${jobId}'s failure`), () => failureOfRun(conn.output, jobId, 0), signal)
          : undefined;
      if (refused) return { jobId, state: "failed", chunks: 0, done: 0, finishedAt: refused.at, error: refused.error };
      if (options.known || (await this.#exists(conn.input, jobSpecKey(jobId), signal)))
        return { jobId, state: "pending", chunks: 0, done: 0 };
      throw new CloudmillError(
        ErrorCode.INPUT_NOT_FOUND,
        isUploadJobIdForm(jobId)
          ? `no job ${jobId}: neither ${s3Uri(out, manifestKey(jobId))} nor its failure exists (\`cloudmill jobs\` lists recent jobs)`
          : `no job ${jobId}: neither ${s3Uri(out, `${JOBS_PREFIX}${jobId}/${STATUS_FILE}`)} nor its spec exists ` +
              "(`cloudmill jobs` lists recent jobs)",
        { jobId },
      );
    }
    return this.#unhidden(conn, status, signal);
  }

  /** A status that shows nothing done yet, with the cancel it may hide (the splitter's first status written after it). */
  async #unhidden(conn: Connected, status: JobStatus, signal?: AbortSignal): Promise<JobStatus> {
    if (status.state !== "running" || status.done !== 0) return status;
    const cancelled = await this.#getJson(conn.output, cancelKey(status.jobId), CancelRecord, signal);
    return cancelled ? { ...status, state: "cancelled", finishedAt: cancelled.at } : status;
  }

  /**
   * An upload's job whose input was uploaded again: the status beside it is the later job's
   * (`shown`). This one's end is in its own markers; running, its progress is not known.
   */
  async #supersededStatus(
    conn: Connected,
    jobId: string,
    given: Manifest | undefined,
    shown: JobStatus,
    signal?: AbortSignal,
  ): Promise<JobStatus> {
    const manifest = given ?? (await this.#getJson(conn.output, manifestKey(jobId), Manifest, signal));
    const succeeded = await this.#getJson(conn.output, succeededKey(jobId), StoredJobStatus, signal);
    if (succeeded) return succeeded;
    if (!manifest)
      throw new CloudmillError(
        ErrorCode.INPUT_NOT_FOUND,
        `no job ${jobId}: its status is job ${shown.jobId}'s now, and it has no manifest`,
        {
          jobId,
        },
      );
    const base = runningStatus(manifest, 0);
    const failure = await withAws(
      this.#aws(`read job ${jobId}'s failure`),
      () => failureOfRun(conn.output, jobId, manifest.retries ?? 0),
      signal,
    );
    if (failure) return { ...base, state: "failed", finishedAt: failure.at, error: failure.error };
    const cancelled = await this.#getJson(conn.output, cancelKey(jobId), CancelRecord, signal);
    return cancelled ? { ...base, state: "cancelled", finishedAt: cancelled.at } : base;
  }

  /**
   * Writes `_retries/<jobId>.json` for the splitter, which resumes the job with its own rights
   * (the caller needs none on the queue), then waits until the job's manifest counts the resume.
   */
  async #retry(conn: Connected, jobId: string, options: RetryOptions): Promise<JobStatus> {
    const { signal } = options;
    const where = `retry job ${jobId}`;
    const manifest = await this.#getJson(conn.output, manifestKey(jobId), Manifest, signal);
    if (!manifest) throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, `no job ${jobId} has started: nothing to retry`, { jobId });
    // An upload's job keeps its status beside its input.
    this.#outputKeys.set(jobId, manifest.output);
    const ended = await this.#readStatus(conn, jobId, { ...(signal ? { signal } : {}), known: true });
    if (ended.state !== "failed" && ended.state !== "cancelled")
      throw new CloudmillError(ErrorCode.INVALID_SPEC, `job ${jobId} is ${ended.state}: only a failed or cancelled job can be retried`, {
        jobId,
      });
    const parsedMax = options.maxRecordBytes === undefined ? undefined : MaxRecordBytes.safeParse(options.maxRecordBytes);
    if (parsedMax?.success === false)
      throw new CloudmillError(ErrorCode.INVALID_SPEC, `maxRecordBytes: ${parsedMax.error.issues[0]?.message ?? "not a size"}`, {
        field: "maxRecordBytes",
      });
    const maxRecordBytes = parsedMax?.data;
    const request = RetryRequest.parse({
      after: manifest.retries ?? 0,
      at: new Date().toISOString(),
      ...(options.taskTimeoutSeconds !== undefined ? { taskTimeoutSeconds: options.taskTimeoutSeconds } : {}),
      ...(options.taskMemoryMiB !== undefined ? { taskMemoryMiB: options.taskMemoryMiB } : {}),
      ...(maxRecordBytes !== undefined ? { maxRecordBytes } : {}),
      ...(options.maxCostUsd !== undefined ? { maxCostUsd: options.maxCostUsd } : {}),
      ...(options.deadlineSeconds !== undefined ? { deadlineSeconds: options.deadlineSeconds } : {}),
    });
    const refused = retryRefusal(manifest, request);
    if (refused) throw new CloudmillError(ErrorCode.INVALID_SPEC, `job ${jobId} cannot be retried so: ${refused}`, { jobId });
    await withAws(this.#aws(where), () =>
      conn.input.put(retryRequestKey(jobId), JSON.stringify(request), { contentType: "application/json" }),
    );
    const timeoutMs = options.timeoutMs ?? 120_000;
    const deadline = deadlineSignal(
      signal,
      timeoutMs,
      () =>
        new CloudmillError(
          ErrorCode.NOT_FINISHED,
          `job ${jobId}: the stack had not taken the retry within ${timeoutMs} ms; it may yet ` +
            "(`cloudmill status`, or the splitter's log)",
          {
            jobId,
          },
        ),
    );
    try {
      const delay = backoff(this.#options.poll ?? {});
      for (;;) {
        const now = await this.#getJson(conn.output, manifestKey(jobId), Manifest, deadline.signal);
        if ((now?.retries ?? 0) > request.after) return this.#readStatus(conn, jobId, { signal: deadline.signal, known: true });
        await sleep(delay(), deadline.signal);
      }
    } finally {
      deadline.dispose();
    }
  }

  #backendFor(known: boolean): JobBackend {
    return {
      poll: this.#options.poll ?? {},
      readStatus: async (jobId, options) => this.#readStatus(await this.#connect(), jobId, { ...options, known: known && options.known }),
      readResult: async (jobId, signal) => {
        const conn = await this.#connect();
        const keys = (await this.#keysOf(conn, jobId, signal)).keys ?? jobSpecOutputKeys(jobId);
        const key = keys.result;
        // An upload's input uploaded again: the result beside it may be the later job's.
        const shown = isUploadJobIdForm(jobId) ? await this.#getJson(conn.output, keys.status, StoredJobStatus, signal) : undefined;
        if (shown && shown.jobId !== jobId)
          throw new CloudmillError(
            ErrorCode.INPUT_NOT_FOUND,
            `job ${jobId} succeeded, but its input was uploaded again since: ${s3Uri(conn.target.outputBucket, key)} may be ` +
              `job ${shown.jobId}'s result, so it is not read as this job's`,
            { jobId },
          );
        const result = await this.#getJson(conn.output, key, ANY_JSON, signal);
        if (result === undefined)
          throw new CloudmillError(ErrorCode.INTERNAL, `job ${jobId} succeeded but ${s3Uri(conn.target.outputBucket, key)} is missing`, {
            jobId,
          });
        // A task's item outputs too large for its part were stored on their own: read them back.
        return withAws(
          this.#aws(`read item results of job ${jobId}`),
          () => resolveStoredResult(conn.output, result, jobId, signal),
          signal,
        );
      },
      retry: async (jobId, options) => this.#retry(await this.#connect(), jobId, options),
      cancel: async (jobId) => {
        const conn = await this.#connect();
        // A job named by id may not exist (a typo): cancelling it would make a cancelled one of that id.
        if (!known) await this.#readStatus(conn, jobId, { known: false });
        // An upload's job: its status is shown beside its input, where its manifest says.
        const keys = (await this.#keysOf(conn, jobId)).keys ?? jobSpecOutputKeys(jobId);
        const outcome = await withAws(this.#aws(`cancel job ${jobId}`), () =>
          cancelJob({ output: conn.output, log: this.#log }, jobId, keys),
        );
        return outcome.status;
      },
    };
  }
}
