/** Names and defaults of the SDK. The stack's output keys must match infra/CloudmillStack.ts (a test compares them). */

/** CloudFormation output keys of a `Cloudmill-<lab>` stack, read by `Cloudmill.connect({ stack })`. */
export const STACK_OUTPUT_KEYS = {
  inputBucket: "InputBucketName",
  outputBucket: "OutputBucketName",
  taskQueueUrl: "TaskQueueUrl",
  deadLetterQueueUrl: "DeadLetterQueueUrl",
  cluster: "ClusterName",
  service: "ServiceName",
} as const;

/** Local files are uploaded to the input bucket under `_uploads/<jobId>/` (keys starting with `_` never trigger a job). */
export const UPLOADS_PREFIX = "_uploads/";

/** The stack name of a lab, as `npx cdk deploy -c lab=<name>` names it. */
export const stackNameOf = (lab: string): string => `Cloudmill-${lab}`;

/** How result() polls status.json: one GET per poll, backing off from initial to max. */
export const POLL_DEFAULTS = {
  initialMs: 250,
  maxMs: 5_000,
  factor: 1.5,
} as const;

/** Multipart part size for uploads: ≥ 5 MiB (S3's minimum), ≤ 10 MiB (the emulator's body limit). */
export const UPLOAD_PART_BYTES = 8 * 1024 * 1024;
/** Parts of one file uploaded at once. */
export const UPLOAD_CONCURRENCY = 4;
/** Recent jobs `jobs()` returns by default. */
export const DEFAULT_JOBS_LIMIT = 20;
