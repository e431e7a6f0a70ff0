import { CloudmillError, ErrorCode } from "./errors.js";
import type { ReceiveOptions } from "./ports.js";

/** SQS's limits, enforced by every TaskQueue so that a local run fails where AWS would. */
export const QUEUE_LIMITS = {
  maxMessages: 10,
  maxWaitSeconds: 20,
  maxVisibilitySeconds: 43_200,
} as const;

/**
 * The longest a task may run on the fleet: SQS hides a received message for at most 12 hours
 * (heartbeats cannot extend it past that), less 10 minutes for the last beat and the part's write.
 * A task still running then would be handed out again, a duplicate using up an attempt.
 */
export const FLEET_MAX_TASK_SECONDS = QUEUE_LIMITS.maxVisibilitySeconds - 600;

/** Why a fleet task cannot have this time limit (more than the queue can hide it for), or undefined. */
export const taskTimeoutPastQueue = (taskTimeoutSeconds: number | undefined): string | undefined =>
  taskTimeoutSeconds !== undefined && taskTimeoutSeconds > FLEET_MAX_TASK_SECONDS
    ? `taskTimeoutSeconds ${taskTimeoutSeconds} is more than the fleet's ${FLEET_MAX_TASK_SECONDS}: SQS hides a task ` +
      "from other workers for at most 12 hours, and one still running then would be run again; split the work into smaller chunks"
    : undefined;

/** INVALID_SPEC when a job asks its fleet tasks for more time than the queue can give them. */
export const refuseTaskTimeoutPastQueue = (taskTimeoutSeconds: number | undefined, where: string): void => {
  const why = taskTimeoutPastQueue(taskTimeoutSeconds);
  if (why) throw new CloudmillError(ErrorCode.INVALID_SPEC, `${where}: ${why}`, { field: "taskTimeoutSeconds" });
};

const check = (ok: boolean, what: string): void => {
  if (!ok) throw new CloudmillError(ErrorCode.INTERNAL, what);
};

export const validateVisibility = (seconds: number): void =>
  check(
    Number.isInteger(seconds) && seconds >= 0 && seconds <= QUEUE_LIMITS.maxVisibilitySeconds,
    `visibility timeout must be an integer from 0 to ${QUEUE_LIMITS.maxVisibilitySeconds} seconds, got ${seconds}`,
  );

/** Receive options with defaults applied; throws CloudmillError INTERNAL when out of SQS's range. */
export const validateReceive = (
  options: ReceiveOptions,
  defaultVisibility: number,
): { maxMessages: number; waitSeconds: number; visibilitySeconds: number } => {
  const maxMessages = options.maxMessages ?? 1;
  const waitSeconds = options.waitSeconds ?? 0;
  const visibilitySeconds = options.visibilitySeconds ?? defaultVisibility;
  check(
    Number.isInteger(maxMessages) && maxMessages >= 1 && maxMessages <= QUEUE_LIMITS.maxMessages,
    `maxMessages must be an integer from 1 to ${QUEUE_LIMITS.maxMessages}, got ${maxMessages}`,
  );
  check(
    Number.isInteger(waitSeconds) && waitSeconds >= 0 && waitSeconds <= QUEUE_LIMITS.maxWaitSeconds,
    `waitSeconds must be an integer from 0 to ${QUEUE_LIMITS.maxWaitSeconds}, got ${waitSeconds}`,
  );
  validateVisibility(visibilitySeconds);
  return { maxMessages, waitSeconds, visibilitySeconds };
};

/** Characters SQS accepts in a message body. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: SQS admits exactly these characters; the rest must be named.
const INVALID_BODY_CHAR = /[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;
/** SQS's largest message body, and largest SendMessageBatch (all its bodies together), in UTF-8 bytes. */
const MAX_BODY_BYTES = 1024 * 1024;

/** Why SQS would refuse this body, or undefined if it would take it. */
export const invalidBody = (body: string): string | undefined => {
  if (INVALID_BODY_CHAR.test(body)) return "InvalidMessageContents: characters outside SQS's allowed set";
  if (Buffer.byteLength(body) > MAX_BODY_BYTES) return `InvalidParameterValue: message longer than ${MAX_BODY_BYTES} bytes`;
  return undefined;
};

/** Bodies grouped as SendMessageBatch takes them: at most 10 per batch, at most MAX_BODY_BYTES together, in order. */
export const sendBatches = (bodies: readonly string[]): string[][] => {
  const batches: string[][] = [];
  let batch: string[] = [];
  let bytes = 0;
  for (const body of bodies) {
    const size = Buffer.byteLength(body);
    if (batch.length > 0 && (batch.length === QUEUE_LIMITS.maxMessages || bytes + size > MAX_BODY_BYTES)) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(body);
    bytes += size;
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
};
