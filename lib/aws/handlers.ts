/**
 * The Lambda handlers' cores over the events AWS delivers (events.ts): functions/* are
 * one-line wrappers over these, and the dev cloud calls them as Lambda would.
 */
import { parseMergedKey, parsePartKey, parseRunningKey } from "../core/keys.js";
import { toCloudmillError } from "../core/errors.js";
import type { PipelineDeps, SplitDeps } from "../core/pipeline/deps.js";
import { failJobOfTask, handleDeadLetter } from "../core/pipeline/deadLetter.js";
import { costCeilingError } from "../core/pipeline/costCeiling.js";
import { reduceJob } from "../core/pipeline/reduce.js";
import { keepAwakeForLease, wakeOf } from "../core/pipeline/wake.js";
import { noticedKeys } from "../core/pipeline/partNotices.js";
import { launchBackups, launchMergeBackups, launchReduceBackups } from "../core/pipeline/backups.js";
import { logFieldsOf } from "../core/pipeline/logFields.js";
import { continuationOf, createdObjects, SqsEvent, type SqsBatchResponse } from "./events.js";
import {
  failUnsplit,
  handleObjectCreated,
  type Continued,
  type CreatedObject,
  type Invocation,
  type TriggerConfig,
  type TriggerOutcome,
} from "../core/pipeline/trigger.js";

/** What Lambda's context offers that the handlers use. */
export interface LambdaContext {
  getRemainingTimeInMillis(): number;
}

/** Lambda's clock, if the caller passed one: without it nothing is mapped inline, and a listing runs to its end. */
const invocationOf = (context: LambdaContext | undefined): Invocation | undefined =>
  typeof context?.getRemainingTimeInMillis === "function" ? { remainingMs: () => context.getRemainingTimeInMillis() } : undefined;

/** One created object, or a listing handed on for it, handled and logged. */
const handleLogged = async (
  deps: SplitDeps,
  config: TriggerConfig,
  obj: CreatedObject,
  invocation: Invocation | undefined,
  continued?: Continued,
): Promise<TriggerOutcome> => {
  const outcome = await handleObjectCreated(deps, config, obj, invocation, continued);
  // A failed outcome's message may quote the job spec: it is in status.json, not in the log.
  const { error: _withheld, ...fields } = outcome as TriggerOutcome & { error?: string };
  deps.log.info(continued ? "listing continued" : "object created", { bucket: obj.bucket, key: obj.key, ...fields });
  return outcome;
};

/** The splitter: every created object of the notification, in order; small jobs mapped here while time allows. */
export const splitterHandler =
  (deps: SplitDeps, config: TriggerConfig) =>
  async (event: unknown, context?: LambdaContext): Promise<TriggerOutcome[]> => {
    const outcomes: TriggerOutcome[] = [];
    const invocation = invocationOf(context);
    for (const obj of createdObjects(event)) outcomes.push(await handleLogged(deps, config, obj, invocation));
    return outcomes;
  };

/**
 * The splitter invoked by its continuation queue (SqsContinuationSender): each listing handed on
 * goes on where its pieces end; those that fail are reported for SQS to deliver again.
 */
export const continuationHandler =
  (deps: SplitDeps, config: TriggerConfig) =>
  async (event: unknown, context?: LambdaContext): Promise<SqsBatchResponse> => {
    const invocation = invocationOf(context);
    const failures: { itemIdentifier: string }[] = [];
    for (const record of SqsEvent.parse(event).Records) {
      const continuation = continuationOf(parsedBody(record.body));
      if (!continuation) {
        deps.log.warn("not a listing continuation; dropped", { messageId: record.messageId });
        continue;
      }
      try {
        await handleLogged(deps, config, continuation.object, invocation, { seq: continuation.seq });
      } catch (err) {
        deps.log.error("listing continuation failed; will retry", { messageId: record.messageId, ...logFieldsOf(toCloudmillError(err)) });
        failures.push({ itemIdentifier: record.messageId });
      }
    }
    return { batchItemFailures: failures };
  };

/** The splitter function's one entry: S3 notifications, and batches of its continuation queue. */
export const splitterEntry = (deps: SplitDeps, config: TriggerConfig) => {
  const split = splitterHandler(deps, config);
  const goOn = continuationHandler(deps, config);
  return (event: unknown, context?: LambdaContext): Promise<TriggerOutcome[] | SqsBatchResponse> =>
    isSqsEvent(event) ? goOn(event, context) : split(event, context);
};

/** An SQS batch (the continuation queue's) rather than an S3 notification. */
const isSqsEvent = (event: unknown): boolean => {
  const records = (event as { Records?: unknown } | null)?.Records;
  return Array.isArray(records) && records.length > 0 && (records[0] as { eventSource?: unknown }).eventSource === "aws:sqs";
};

const parsedBody = (body: string): unknown => {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
};

/**
 * The reducer, over a batch of its queue's messages: workers' part notices, S3's events of long
 * tasks' running markers, and its own wake-ups. Each job named in the batch is reduced once (for
 * a keyed job whose chunks are all mapped, that enqueues its reduce tasks); a job whose reduce
 * throws reports its records as failed, so SQS redelivers just those.
 */
export const reducerHandler =
  (deps: SplitDeps) =>
  async (event: unknown): Promise<SqsBatchResponse> => {
    const { Records } = SqsEvent.parse(event);
    const byJob = new Map<string, string[]>();
    const add = (jobId: string, messageId: string): void => {
      const ids = byJob.get(jobId) ?? [];
      ids.push(messageId);
      byJob.set(jobId, ids);
    };
    /** Jobs this batch has a wake-up of (wake.ts), with the time it was due. */
    const woken = new Map<string, number>();
    for (const record of Records) {
      let objects: { key: string }[] = [];
      try {
        const body: unknown = JSON.parse(record.body);
        const wake = wakeOf(body);
        if (wake !== undefined) {
          add(wake.jobId, record.messageId);
          // A wake of an older reducer carries no due time: it starts its chain afresh.
          woken.set(wake.jobId, Math.max(woken.get(wake.jobId) ?? 0, wake.due ?? Number.MAX_SAFE_INTEGER));
          continue;
        }
        // A worker's notice of parts (partNotices.ts), or S3's event of a long task's running marker.
        objects = noticedKeys(body)?.map((key) => ({ key })) ?? createdObjects(body);
      } catch {
        deps.log.warn("not an S3 notification; dropped", { messageId: record.messageId });
      }
      for (const { key } of objects) {
        // A part, a merged part (the merge tree), or a long chunk's running marker (the straggler check).
        const part = parsePartKey(key) ?? parseMergedKey(key) ?? parseRunningKey(key);
        if (part) add(part.jobId, record.messageId);
      }
    }
    const failures: { itemIdentifier: string }[] = [];
    for (const [jobId, messageIds] of byJob) {
      try {
        const outcome = await reduceJob(deps, jobId, { fleet: true });
        deps.log.info("reduce", {
          jobId,
          outcome: outcome.kind,
          ...(outcome.kind === "incomplete" ? { done: outcome.done, chunks: outcome.chunks } : {}),
        });
        if (outcome.kind === "incomplete" && outcome.progress) {
          const { progress } = outcome;
          const over = await costCeilingError(deps, progress);
          if (over) await failJobOfTask(deps, jobId, progress.manifest.retries ?? 0, over, outcome.done);
          else if (outcome.mapping) {
            // Optional, as below: a failed check must not cost the wake-up.
            await launchBackups(deps, progress.manifest, progress.mapParts).catch((err: unknown) =>
              deps.log.warn("straggler check failed; the next event tries again", { jobId, ...logFieldsOf(toCloudmillError(err)) }),
            );
            // The wake-ups every job on the fleet keeps while it maps (split.ts): a part no notice named is found by one.
            if (woken.has(jobId)) await keepAwakeForLease(deps, jobId, woken.get(jobId));
          } else {
            // A keyed job's reduce stage or a merge tree: a long task's running marker brings its straggler check here.
            // Optional: a failed check must not cost the wake-up below.
            const stragglers =
              progress.reduced.length > 0
                ? launchReduceBackups(deps, progress.manifest, progress.reduced)
                : progress.merged.length > 0
                  ? launchMergeBackups(deps, progress.manifest, progress.merged)
                  : undefined;
            await stragglers?.catch((err: unknown) =>
              deps.log.warn("straggler check failed; the next event tries again", { jobId, ...logFieldsOf(toCloudmillError(err)) }),
            );
            // Only merge or reduce tasks left, which no part event may follow: the reducer wakes itself.
            await keepAwakeForLease(deps, jobId, woken.get(jobId));
          }
        }
      } catch (err) {
        deps.log.error("reduce failed; will retry", { ...logFieldsOf(toCloudmillError(err)), jobId });
        failures.push(...[...new Set(messageIds)].map((itemIdentifier) => ({ itemIdentifier })));
      }
    }
    return { batchItemFailures: failures };
  };

/** An S3 notification the splitter's dead-letter queue holds (Lambda sends the event itself), else undefined. */
const unsplitEvent = (body: string): unknown => {
  try {
    const parsed: unknown = JSON.parse(body);
    return typeof parsed === "object" && parsed !== null && "Records" in parsed ? parsed : undefined;
  } catch {
    return undefined;
  }
};

/**
 * The dead-letter handler. Each message is a task that failed every attempt, or an upload's S3
 * event the splitter failed on at every try (its own dead-letter queue): that job never
 * started, and fails where its status goes.
 */
export const deadLetterHandler =
  (deps: PipelineDeps) =>
  async (event: unknown): Promise<SqsBatchResponse> => {
    const { Records } = SqsEvent.parse(event);
    const failures: { itemIdentifier: string }[] = [];
    for (const record of Records) {
      try {
        const unsplit = unsplitEvent(record.body);
        if (unsplit !== undefined) {
          const reason = record.messageAttributes?.["ErrorMessage"]?.stringValue ?? "see the splitter's log";
          for (const obj of createdObjects(unsplit)) {
            const outcome = await failUnsplit(deps, obj, reason);
            const { error: _withheld, ...fields } = outcome as TriggerOutcome & { error?: string };
            deps.log.info("splitter dead letter", { bucket: obj.bucket, key: obj.key, ...fields });
          }
          continue;
        }
        // No count: a dead letter's ApproximateReceiveCount goes on from its task queue's and
        // counts the move (the emulator said 4 for 2 receives), so it says no number of attempts.
        await handleDeadLetter(deps, record.body);
      } catch (err) {
        deps.log.error("dead letter not handled; will retry", { messageId: record.messageId, ...logFieldsOf(toCloudmillError(err)) });
        failures.push({ itemIdentifier: record.messageId });
      }
    }
    return { batchItemFailures: failures };
  };
