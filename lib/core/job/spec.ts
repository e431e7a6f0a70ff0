/**
 * The job spec: what a user asks for, from the CLI, the SDK or a `_jobs/<id>.json` upload.
 * Parsed with zod at every edge; every invalid spec gets one line naming the field and why.
 */
import * as z from "zod";
import { DEFAULTS } from "../constants.js";
import { CloudmillError, ErrorCode } from "../errors.js";
import { parseJsonWith } from "../parseJson.js";
import { parseSize } from "./size.js";

/** What a job asks of an idle fleet's wake: everything at once, or one worker to start. */
export const PREFERENCES = ["cheapest", "fastest"] as const;
export type Preference = (typeof PREFERENCES)[number];

/** Record formats; `blob` is each input object whole, as one record of bytes (images, PDFs, archives' files). */
export const FORMATS = ["lines", "numbers", "csv", "jsonl", "blob"] as const;
export const Format = z.enum(FORMATS);
export type Format = z.infer<typeof Format>;

/** Op names are plain identifiers: an upload can select an op, never a path or code. */
/** An op's name, without anchors: upload job ids (`<op>-<digest>`) are made of it too. */
export const OP_NAME_PATTERN = "[a-z][a-z0-9-]{0,63}";

export const OpName = z
  .string()
  .regex(new RegExp(`^${OP_NAME_PATTERN}$`), { error: "must be a lowercase name like `wordcount` (letters, digits, '-')" });

/** Param names are identifiers (so no `__proto__`, no `constructor.prototype`). */
export const ParamName = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_-]{0,63}$/, { error: "param names are letters, digits, '_' or '-', starting with a letter" });
export const ParamValue = z.union([z.string().max(4096), z.number(), z.boolean()]);
export type ParamValue = z.infer<typeof ParamValue>;
export const Params = z.record(ParamName, ParamValue).refine((p) => Object.keys(p).length <= 32, { error: "at most 32 params" });
export type Params = Readonly<Record<string, ParamValue>>;

/** Bytes, from a number or a size like `16MiB`. */
export const ChunkSize = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const bytes = typeof v === "number" ? v : parseSize(v);
  if (bytes === undefined || !Number.isSafeInteger(bytes)) {
    ctx.addIssue({ code: "custom", message: `expected a whole number of bytes or a size like 16MiB, got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  if (bytes < DEFAULTS.minChunkSize || bytes > DEFAULTS.maxChunkSize) {
    ctx.addIssue({ code: "custom", message: `must be between ${DEFAULTS.minChunkSize} byte and 1GiB, got ${bytes}` });
    return z.NEVER;
  }
  return bytes;
});

/** The smallest maxRecordBytes: records are measured where they are joined across a store's reads (1 MiB at most). */
export const MIN_MAX_RECORD_BYTES = 1024 * 1024;
/** A record bound: a size (`256MiB` or bytes), at least MIN_MAX_RECORD_BYTES. */
export const MaxRecordBytes = ChunkSize.refine((n) => n >= MIN_MAX_RECORD_BYTES, { error: "must be at least 1MiB" });

/** Most partitions a keyed job may have (each is a reduce task, and a segment in every map part). */
export const MAX_PARTITIONS = 10_000;

/** Most partitions a keyed job of this many chunks may have: chunks × partitions within DEFAULTS.maxShuffleSegments. */
export const mostPartitions = (chunks: number): number => Math.max(1, Math.floor(DEFAULTS.maxShuffleSegments / Math.max(1, chunks)));

/** A keyed job's partitions when it asks for none: one per DEFAULTS.bytesPerPartition of input, within mostPartitions. */
export const defaultPartitions = (bytes: number, chunks: number): number =>
  Math.min(MAX_PARTITIONS, mostPartitions(chunks), Math.max(1, Math.ceil(bytes / DEFAULTS.bytesPerPartition)));

export const JobId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, { error: "job ids are letters, digits, '.', '_' or '-' (at most 128)" });

export const OnBadRecord = z.enum(["fail", "skip"]);
export type OnBadRecord = z.infer<typeof OnBadRecord>;

export const JobSpecSchema = z.strictObject({
  id: JobId.optional(),
  op: OpName,
  /** Local paths (files or directories), `s3://bucket/key` or `s3://bucket/prefix/`. */
  inputs: z.array(z.string().min(1).max(4096)).min(1, { error: "needs at least one input" }).max(10_000),
  params: Params.default({}),
  /** Record format; default: the op's own. */
  format: Format.optional(),
  chunkSize: ChunkSize.default(DEFAULTS.chunkSize),
  maxAttempts: z.number().int().min(1).max(20).default(DEFAULTS.maxAttempts),
  /** `fail` (default): a bad record fails the job, naming file and line; `skip`: count and skip it. */
  onBadRecord: OnBadRecord.default("fail"),
  deadlineSeconds: z
    .number()
    .int()
    .min(1)
    .max(7 * 24 * 3600)
    .optional(),
  /** Longest one chunk's mapping may take before it is abandoned (TASK_TIMEOUT); default: the worker's (15 min). */
  taskTimeoutSeconds: z
    .number()
    .int()
    .min(1)
    .max(24 * 3600)
    .optional(),
  /**
   * A chunk running longer than this (and 3× the median of those mapped, once three quarters
   * are) is queued once more; the first copy to finish wins. 0: no backups. Default 60.
   */
  backupAfterSeconds: z
    .number()
    .int()
    .min(0)
    .max(24 * 3600)
    .optional(),
  /**
   * Heap one chunk's mapping may use, in MiB; past it the attempt fails with OUT_OF_MEMORY.
   * Default: the worker's share of its container (locally, V8's own limit).
   */
  taskMemoryMiB: z.number().int().min(64).max(65_536).optional(),
  /**
   * Longest record a reader assembles; a longer one is a BAD_RECORD (skipped with onBadRecord: skip).
   * Default 64 MiB; at least 1 MiB, the most a store reads at once (records are measured where joined).
   */
  maxRecordBytes: MaxRecordBytes.optional(),
  /**
   * The most the job may cost, in USD at list prices: a job whose estimate (from its input sizes
   * and its op's default rate) is over it is refused with COST_LIMIT before any task is queued.
   */
  maxCostUsd: z.number().positive().max(1_000_000).optional(),
  /**
   * The digest of the op's code the client checked its own against (the SDK sets it for an op
   * made with defineOp or defineTask): a pipeline running other code refuses the job with
   * OP_MISMATCH, so that a redeploy between the check and the job cannot run other code.
   */
  opDigest: z
    .string()
    .regex(/^[0-9a-f]{16}$/, { error: "an op's digest is 16 hex digits (as `cloudmill ops` lists it)" })
    .optional(),
  /**
   * How far an idle fleet is woken for the job: `fastest` (the default) asks at once for a worker
   * per task slot the job can fill, up to the stack's maximum; `cheapest` asks for one, and the
   * backlog alarm adds more only while the queue stays full. Spot or on-demand is the stack's
   * `spot` setting.
   */
  prefer: z.enum(PREFERENCES).optional(),
  /** A keyed op's partitions: its output parts, and its reduce tasks. Default: one per 256 MiB of input. */
  partitions: z.number().int().min(1).max(MAX_PARTITIONS).optional(),
  /**
   * On the fleet, parts one merge task (and the reducer) reads: a job of more chunks merges its
   * parts in a tree. Default 64. Not for keyed ops, whose reduce tasks merge by partition.
   */
  fanIn: z.number().int().min(2).max(10_000).optional(),
});

export type JobSpecInput = z.input<typeof JobSpecSchema>;
export type JobSpec = z.output<typeof JobSpecSchema>;

/** The first issue of a zod error as one line: `chunkSize: must be ...`. */
export const describeZodError = (error: z.ZodError, what: string): { message: string; field: string } => {
  const issue = error.issues[0]!;
  const field = issue.path.map(String).join(".");
  let message = issue.message;
  if (issue.code === "unrecognized_keys")
    message = `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`;
  return { message: `${what ? `${what}: ` : ""}${field ? `${field}: ` : ""}${message}`, field };
};

/** Validates a job spec, throwing a one-line INVALID_SPEC error naming the field. */
export const parseJobSpec = (input: unknown, what = "job spec"): JobSpec => {
  const r = JobSpecSchema.safeParse(input);
  if (!r.success) {
    const { message, field } = describeZodError(r.error, what);
    throw new CloudmillError(ErrorCode.INVALID_SPEC, message, { field });
  }
  return r.data;
};

/**
 * Parses a job spec from raw JSON text (an upload), bounding its size first. `defaults`
 * (the deployment's chunk size and attempts) fill fields the spec leaves out.
 */
export const parseJobSpecJson = (text: string, what = "job spec", defaults: { chunkSize?: number; maxAttempts?: number } = {}): JobSpec => {
  if (Buffer.byteLength(text) > DEFAULTS.maxJobSpecBytes) {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `${what}: larger than ${DEFAULTS.maxJobSpecBytes} bytes`);
  }
  let value = parseJsonWith(text, z.unknown(), what, ErrorCode.INVALID_SPEC);
  if (typeof value === "object" && value !== null && !Array.isArray(value)) value = { ...defaults, ...value };
  return parseJobSpec(value, what);
};
