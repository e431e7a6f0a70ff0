/**
 * What an ObjectCreated event in the input bucket means: an upload under `<op>/...` starts a
 * job for that object; `_jobs/<jobId>.json` starts the job it describes; `_retries/<jobId>.json`
 * resumes that job if it failed or was cancelled. Anything invalid ends as a `failed` status
 * beside where the result would have been, with no tasks.
 */
import { isHiddenBelow } from "../hiddenNames.js";
import type { CreatedObject } from "../ports.js";
import { s3Uri } from "../s3Uri.js";
import {
  cancelKey,
  failureKey,
  fitsS3Key,
  JOBS_PREFIX,
  enqueuedKey,
  jobSpecOutputKeys,
  manifestKey,
  RESULT_FILE,
  RETRIES_PREFIX,
  S3_MAX_KEY_BYTES,
  uploadOutputKeys,
  type OutputKeys,
} from "../keys.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../errors.js";
import { digest, isUploadJobIdForm, uploadJobId } from "../job/planner.js";
import { JobId, OpName, parseJobSpec, parseJobSpecJson } from "../job/spec.js";
import { DEFAULTS } from "../constants.js";
import { refuseTaskTimeoutPastQueue } from "../queueLimits.js";
import type { PipelineDeps, SplitDeps } from "./deps.js";
import { failJob } from "./deadLetter.js";
import { exists, readBytes, readJsonIfExists, writeJson } from "./blobJson.js";
import { Manifest, taskCount, type JobStatus } from "../job/manifest.js";
import { forgetListing, handedOnSpec, listJobInputs, type ListingBudget } from "./listing.js";
import { deadlineSecondsOf, earlierStart, namesForFormat, startJob, taskJobOf, type StartedJob } from "./split.js";
import type { InlineOptions } from "./inline.js";
import { parseRetryRequest, resumeJob, type RetryRequest } from "./resume.js";

export interface TriggerConfig {
  readonly defaultChunkSize: number;
  readonly maxAttempts: number;
  readonly jobDeadlineSeconds: number;
  /** Jobs of at most this many input bytes are mapped in the splitter's function (0 or unset: none). */
  readonly inlineMaxBytes?: number;
  /** Time an inline run keeps back to hand the rest to the fleet. Default DEFAULTS.inlineReserveMs. */
  readonly inlineReserveMs?: number;
  /** Time a listing of a job's inputs keeps back to hand the rest on (listing.ts). Default DEFAULTS.listingReserveMs. */
  readonly listingReserveMs?: number;
}

/** The function invocation handling an event. */
export interface Invocation {
  /** Milliseconds it has left before it is stopped. */
  remainingMs(): number;
}

const inlineOf = (config: TriggerConfig, invocation: Invocation | undefined): InlineOptions | undefined =>
  invocation && config.inlineMaxBytes
    ? {
        maxBytes: config.inlineMaxBytes,
        remainingMs: () => invocation.remainingMs(),
        reserveMs: config.inlineReserveMs ?? DEFAULTS.inlineReserveMs,
      }
    : undefined;

export type { CreatedObject };

export type TriggerOutcome =
  | { readonly kind: "ignored"; readonly reason: string }
  | { readonly kind: "started" | "duplicate"; readonly jobId: string; readonly chunks: number }
  | { readonly kind: "resumed"; readonly jobId: string; readonly tasks: number }
  /** Out of time while listing the job's inputs: `listed` so far, stored in `pieces` and handed on. */
  | { readonly kind: "listing"; readonly jobId: string; readonly listed: number; readonly pieces: number }
  | { readonly kind: "failed"; readonly jobId: string; readonly error: string };

/** The listing's budget: only with a clock to keep it by and a way to hand the rest on. */
const listingBudgetOf = (deps: SplitDeps, config: TriggerConfig, invocation: Invocation | undefined): ListingBudget | undefined =>
  invocation && deps.continuations
    ? { remainingMs: () => invocation.remainingMs(), reserveMs: config.listingReserveMs ?? DEFAULTS.listingReserveMs }
    : undefined;

const optionalBudget = (budget: ListingBudget | undefined): { budget?: ListingBudget } => (budget ? { budget } : {});

const optionalInline = (inline: InlineOptions | undefined): { inline?: InlineOptions } => (inline ? { inline } : {});

const unquote = (etag: string): string => etag.replace(/^W\//, "").replace(/^"|"$/g, "");

const startedOutcome = ({ manifest, duplicate }: StartedJob): TriggerOutcome => ({
  kind: duplicate ? "duplicate" : "started",
  jobId: manifest.jobId,
  chunks: manifest.chunks,
});

/** Failing before a manifest exists: the status alone tells the user why. */
const failEarly = async (deps: SplitDeps, jobId: string, output: OutputKeys, err: unknown): Promise<TriggerOutcome> => {
  const error = toCloudmillError(err);
  // Errors of the environment (throttling, permissions) are retried by the caller, not reported as the job's.
  if (error.code === ErrorCode.ENVIRONMENT || error.code === ErrorCode.INTERNAL) throw error;
  await failJob(deps, { jobId, output, chunks: 0, done: 0 }, error);
  return { kind: "failed", jobId, error: error.describe() };
};

/** A listing handed on (listing.ts): the continuation's last piece. */
export interface Continued {
  readonly seq: number;
}

export const handleObjectCreated = async (
  deps: SplitDeps,
  config: TriggerConfig,
  obj: CreatedObject,
  invocation?: Invocation,
  continued?: Continued,
): Promise<TriggerOutcome> => {
  const { key } = obj;
  if (key.endsWith("/")) return { kind: "ignored", reason: "folder marker" };
  if (key.startsWith(JOBS_PREFIX)) {
    return isSpecKey(key) ? startSpecJob(deps, config, obj, invocation, continued) : { kind: "ignored", reason: "not a job spec" };
  }
  if (key.startsWith(RETRIES_PREFIX)) return resume(deps, config, obj);
  if (key.startsWith("_")) return { kind: "ignored", reason: "reserved prefix" };
  // A folder copied up whole (`aws s3 cp --recursive`) brings its .DS_Store, .git/ and _SUCCESS:
  // as a folder's listing leaves them out, an upload of one starts no job.
  if (isHiddenBelow(key)) return { kind: "ignored", reason: "hidden file (a name starting with . or _): no job" };
  return startUploadJob(deps, config, obj, invocation);
};

/** A job spec's key: `_jobs/<name>.json`, in no folder below. */
const isSpecKey = (key: string): boolean => key.endsWith(".json") && !key.slice(JOBS_PREFIX.length).includes("/");

/**
 * Where an upload's job reports: beside the upload, or (`roomy` false: an input key within S3's
 * limit may have no room for `/result.json` after it) under its id, where `cloudmill jobs` lists
 * it, rather than nowhere.
 */
const uploadOutput = (key: string, jobId: string): { roomy: boolean; output: OutputKeys } => {
  const beside = uploadOutputKeys(key);
  const roomy = fitsS3Key(beside.result) && fitsS3Key(beside.status);
  return { roomy, output: roomy ? beside : jobSpecOutputKeys(jobId) };
};

/** The op an upload names: its first folder. */
const uploadOp = (key: string): string => {
  const slash = key.indexOf("/");
  return slash > 0 ? key.slice(0, slash) : "";
};

/**
 * An upload's job id, from its ETag (`tag`, unquoted). Each write is its own job: by version where
 * the bucket keeps them, else by the event's sequencer. The ETag alone would make A, B, A again one
 * job twice, and leave B's answer for the file's A. A bucket whose versioning is suspended names
 * every new write's version "null". The id leads with the op's name only when it is one (`file:x`,
 * `a b` are not), so every id, and the status that names it, stays readable by the JobId schema.
 */
const uploadJobIdOf = (obj: CreatedObject, tag: string): string => {
  const version = obj.versionId === "null" ? undefined : obj.versionId;
  const write = version ?? (obj.sequencer === undefined ? tag : `${tag}@${obj.sequencer}`);
  const op = uploadOp(obj.key);
  return uploadJobId(OpName.safeParse(op).success ? op : "invalid", obj.bucket, obj.key, write);
};

/** A spec file's job id: its name, or one of its own for a name that is no job id (or an upload's). */
const specJobIdOf = (bucket: string, key: string): string => {
  const name = key.slice(JOBS_PREFIX.length, -".json".length);
  return JobId.safeParse(name).success && !isUploadJobIdForm(name) ? name : `invalid-${digest(bucket, key)}`;
};

/** The job a created object starts and where its status goes, if it starts one. */
const jobOfCreated = (obj: CreatedObject): { jobId: string; output: OutputKeys } | undefined => {
  const { key } = obj;
  if (key.endsWith("/")) return undefined;
  if (key.startsWith(JOBS_PREFIX)) {
    if (!isSpecKey(key)) return undefined;
    const jobId = specJobIdOf(obj.bucket, key);
    return { jobId, output: jobSpecOutputKeys(jobId) };
  }
  if (key.startsWith("_") || obj.etag === undefined) return undefined;
  const jobId = uploadJobIdOf(obj, unquote(obj.etag));
  return { jobId, output: uploadOutput(key, jobId).output };
};

/**
 * A created object the splitter failed on at every try (Lambda's retries, then its dead-letter
 * queue, whose handler calls this): the job it would have started fails, saying so, where its
 * status goes. Else that job would show pending for good: its deadline starts with its manifest.
 * A job that did start is left to end as it will.
 */
export const failUnsplit = async (deps: PipelineDeps, obj: CreatedObject, reason: string): Promise<TriggerOutcome> => {
  const target = jobOfCreated(obj);
  if (!target) return { kind: "ignored", reason: "starts no job" };
  // Started is queued: a splitter that died between the manifest and its tasks left a job nothing
  // else would end (no task carries its deadline, no part wakes the reducer).
  if (await exists(deps.output, enqueuedKey(target.jobId))) return { kind: "ignored", reason: "its job started" };
  const manifest = await readJsonIfExists(deps.output, manifestKey(target.jobId), Manifest);
  const error = new CloudmillError(
    ErrorCode.ENVIRONMENT,
    `the splitter failed on ${s3Uri(obj.bucket, obj.key)} at every try, so the job never started: ${reason}`,
  );
  const planned = manifest
    ? { output: manifest.output, chunks: taskCount(manifest), startedAt: manifest.createdAt, run: manifest.retries ?? 0 }
    : { output: target.output, chunks: 0 };
  await failJob(deps, { jobId: target.jobId, done: 0, ...planned }, error);
  return { kind: "failed", jobId: target.jobId, error: error.describe() };
};

const startUploadJob = async (
  deps: SplitDeps,
  config: TriggerConfig,
  obj: CreatedObject,
  invocation?: Invocation,
): Promise<TriggerOutcome> => {
  const { bucket, key } = obj;
  const op = uploadOp(key);
  const idOf = (tag: string): string => uploadJobIdOf(obj, tag);
  // Before the object is looked at: a start an earlier invocation made stands even if the object
  // was deleted or overwritten since (else its job would show running for good).
  const named = obj.versionId !== undefined || obj.etag !== undefined;
  if (named) {
    const earlier = await earlierStart(deps, idOf(unquote(obj.etag ?? "")));
    if (earlier) return startedOutcome(earlier);
  }
  const info = await deps.inputStore(bucket).head(key);
  if (!info) return { kind: "ignored", reason: "object no longer exists" };
  if (obj.etag && unquote(obj.etag) !== unquote(info.etag))
    return { kind: "ignored", reason: "overwritten since; the newer upload starts its own job" };
  const jobId = idOf(unquote(info.etag));
  const { roomy, output } = uploadOutput(key, jobId);
  try {
    const earlier = named ? undefined : await earlierStart(deps, jobId);
    if (earlier) return startedOutcome(earlier);
    if (!roomy) {
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        `upload ${[...key].slice(0, 60).join("")}…: its result would go to the key plus "/${RESULT_FILE}", past S3's limit of ` +
          `${S3_MAX_KEY_BYTES} bytes; upload it under a key of at most ${S3_MAX_KEY_BYTES - RESULT_FILE.length - 1} bytes`,
      );
    }
    if (!op) {
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        `uploads go under a folder named after the op, e.g. wordcount/${key} (ops: ${deps.registry.names().join(", ")})`,
      );
    }
    const spec = parseJobSpec(
      { op, inputs: [s3Uri(bucket, key)], chunkSize: config.defaultChunkSize, maxAttempts: config.maxAttempts },
      `upload ${key}`,
    );
    const job = taskJobOf(spec, deps.registry, [key]);
    const started = await startJob(deps, {
      jobId,
      job,
      inputs: [{ bucket, key, size: info.size, etag: info.etag, name: s3Uri(bucket, key) }],
      chunkSize: spec.chunkSize,
      output,
      trigger: s3Uri(bucket, key),
      ...(obj.eventTime !== undefined ? { triggeredAt: obj.eventTime } : {}),
      ...optionalInline(inlineOf(config, invocation)),
      deadlineSeconds: config.jobDeadlineSeconds,
    });
    return startedOutcome(started);
  } catch (err) {
    return failEarly(deps, jobId, output, err);
  }
};

const startSpecJob = async (
  deps: SplitDeps,
  config: TriggerConfig,
  obj: CreatedObject,
  invocation?: Invocation,
  continued?: Continued,
): Promise<TriggerOutcome> => {
  const { bucket, key } = obj;
  const name = key.slice(JOBS_PREFIX.length, -".json".length);
  const id = JobId.safeParse(name);
  // A spec whose file name is no job id reports under an id of its own; so does one named as an
  // upload's job, whose markers it must not write.
  const jobId = specJobIdOf(bucket, key);
  const output = jobSpecOutputKeys(jobId);
  const store = deps.inputStore(bucket);
  try {
    if (!id.success)
      throw new CloudmillError(ErrorCode.INVALID_SPEC, `job spec file name ${JSON.stringify(name)}: ${id.error.issues[0]!.message}`);
    if (isUploadJobIdForm(name))
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        `job spec file name ${JSON.stringify(name)}: ids of the form <op>-<24 hex digits> are uploads' own; name the job otherwise`,
      );
    // Before the spec is read: a job id names one job, whatever its spec says now.
    const earlier = await earlierStart(deps, jobId);
    if (earlier) return startedOutcome(earlier);
    // A job ended while it listed (cancelled, or failed by the splitter's dead letters): its
    // continuation stops, and writes neither a status nor another continuation over the end.
    const ended = async (): Promise<boolean> =>
      (await exists(deps.output, cancelKey(jobId))) || (await exists(deps.output, failureKey(jobId)));
    if (continued && (await ended())) return { kind: "ignored", reason: `job ${jobId} ended while it was listed` };
    // A spec uploaded again after its job failed before it began (a typo) lists afresh, not
    // what its failed listing had stored.
    if (!continued && (await exists(deps.output, failureKey(jobId)))) {
      await forgetListing(deps.output, jobId);
      await deps.output.delete(failureKey(jobId));
    }
    // A listing an earlier invocation handed on lists the spec it read, whatever the spec says now.
    const handedOn = await handedOnSpec(deps.output, jobId);
    let text = handedOn;
    if (text === undefined) {
      const info = await store.head(key);
      if (!info) return { kind: "ignored", reason: "job spec no longer exists" };
      if (info.size > DEFAULTS.maxJobSpecBytes)
        throw new CloudmillError(ErrorCode.INVALID_SPEC, `job spec ${key}: larger than ${DEFAULTS.maxJobSpecBytes} bytes`);
      text = (await readBytes(store, key)).toString("utf8");
    }
    const spec = parseJobSpecJson(text, `job spec ${key}`, {
      chunkSize: config.defaultChunkSize,
      maxAttempts: config.maxAttempts,
    });
    // The task queue hands a task to its dead-letter queue after the stack's attempts: a job
    // cannot have more (fewer it can: its worker dead-letters its task itself).
    if (spec.maxAttempts > config.maxAttempts)
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        `job spec ${key}: maxAttempts ${spec.maxAttempts} is more than this stack's ${config.maxAttempts} (its task queue gives up ` +
          "on a task then): ask for at most that many, or deploy the stack with a higher maxAttempts",
        { field: "maxAttempts" },
      );
    refuseTaskTimeoutPastQueue(spec.taskTimeoutSeconds, `job spec ${key}`);
    if (spec.id !== undefined && spec.id !== jobId)
      throw new CloudmillError(ErrorCode.INVALID_SPEC, `job spec ${key}: id ${JSON.stringify(spec.id)} differs from its file name`, {
        field: "id",
      });
    const listing = await listJobInputs(deps, jobId, spec.inputs, {
      spec: text,
      resumed: handedOn !== undefined,
      ...(continued ? { hint: continued.seq } : {}),
      ...optionalBudget(listingBudgetOf(deps, config, invocation)),
    });
    if (listing.kind === "handedOn") {
      if (await ended()) return { kind: "ignored", reason: `job ${jobId} ended while it was listed` };
      // Its status says so (running, no chunk yet), and the continuation goes last: it finds every piece.
      await writeJson(deps.output, output.status, {
        jobId,
        state: "running",
        chunks: 0,
        done: 0,
        op: spec.op,
        inputs: spec.inputs,
        listing: { objects: listing.found, pieces: listing.seq },
      } satisfies JobStatus);
      await deps.continuations!.handOn({ jobId, seq: listing.seq, from: continued?.seq ?? 0, object: obj });
      deps.log.info("listing handed on", { jobId, listed: listing.found, pieces: listing.seq });
      return { kind: "listing", jobId, listed: listing.found, pieces: listing.seq };
    }
    const { inputs, hidden } = listing;
    const job = taskJobOf(spec, deps.registry, namesForFormat(inputs.map((i) => ({ name: i.key, size: i.size }))));
    // No earlier start, yet a failure: the spec failed before its job began (a typo), and this is
    // the spec uploaded again. Nothing ran, so the job starts afresh rather than stay failed.
    await deps.output.delete(failureKey(jobId));
    const started = await startJob(deps, {
      jobId,
      job,
      inputs,
      given: spec.inputs,
      hidden,
      chunkSize: spec.chunkSize,
      output,
      trigger: s3Uri(bucket, key),
      ...(obj.eventTime !== undefined ? { triggeredAt: obj.eventTime } : {}),
      ...optionalInline(inlineOf(config, invocation)),
      ...(spec.maxCostUsd !== undefined ? { maxCostUsd: spec.maxCostUsd } : {}),
      ...(spec.fanIn !== undefined ? { fanIn: spec.fanIn } : {}),
      ...(spec.prefer !== undefined ? { prefer: spec.prefer } : {}),
      deadlineSeconds: deadlineSecondsOf(spec, config.jobDeadlineSeconds),
    });
    return startedOutcome(started);
  } catch (err) {
    return failEarly(deps, jobId, output, err);
  }
};

/** A retry request: the job resumes with the limits it names, or the log says why not (the job's own status is left alone). */
const resume = async (deps: SplitDeps, config: TriggerConfig, obj: CreatedObject): Promise<TriggerOutcome> => {
  const { bucket, key } = obj;
  const jobId = key.slice(RETRIES_PREFIX.length, -".json".length);
  if (!key.endsWith(".json") || !JobId.safeParse(jobId).success) return { kind: "ignored", reason: "not a retry request" };
  const store = deps.inputStore(bucket);
  const info = await store.head(key);
  if (!info) return { kind: "ignored", reason: "retry request no longer exists" };
  if (info.size > DEFAULTS.maxJobSpecBytes)
    return { kind: "ignored", reason: `retry request larger than ${DEFAULTS.maxJobSpecBytes} bytes` };
  let request: RetryRequest;
  try {
    request = parseRetryRequest((await readBytes(store, key)).toString("utf8"), `retry request ${key}`);
  } catch (err) {
    return { kind: "ignored", reason: toCloudmillError(err).describe() };
  }
  const outcome = await resumeJob(deps, jobId, request, config);
  return outcome.kind === "resumed"
    ? { kind: "resumed", jobId, tasks: outcome.tasks }
    : { kind: "ignored", reason: `job ${jobId} not resumed: ${outcome.reason}` };
};
