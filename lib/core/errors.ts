/**
 * One base error for cloudmill. Every error a user can cause carries a code and the
 * context that locates it (file, line, byte offset, job id); the CLI maps codes to
 * exit codes in one place (lib/cli/handleError.ts).
 */

export const ErrorCode = {
  /** A flag, param or job spec field is invalid. */
  INVALID_SPEC: "INVALID_SPEC",
  /** An input file or object does not exist. */
  INPUT_NOT_FOUND: "INPUT_NOT_FOUND",
  /** The op named is not registered. */
  UNKNOWN_OP: "UNKNOWN_OP",
  /** The op's code differs from the code the job was started with (or the client holds). */
  OP_MISMATCH: "OP_MISMATCH",
  /** A record could not be parsed (malformed number, broken JSON line, bad CSV). */
  BAD_RECORD: "BAD_RECORD",
  /** An input changed while its job ran (ETag no longer matches). */
  INPUT_CHANGED: "INPUT_CHANGED",
  /** A chunk failed on every attempt. */
  CHUNK_FAILED: "CHUNK_FAILED",
  /** A lab op's code returned what JSON cannot carry (NaN, a promise, a Map): it would on every attempt. */
  OP_FAILED: "OP_FAILED",
  /** A chunk's mapping ran past the worker's task time limit (taskTimeoutSeconds). */
  TASK_TIMEOUT: "TASK_TIMEOUT",
  /** A chunk's mapping used more heap than its limit (taskMemoryMiB, else the worker's share of its container). */
  OUT_OF_MEMORY: "OUT_OF_MEMORY",
  /** A task's item threw (a task job fails with it under onItemError: fail). */
  ITEM_FAILED: "ITEM_FAILED",
  /** A task's item ran past the task's timeoutSeconds. */
  ITEM_TIMEOUT: "ITEM_TIMEOUT",
  /** A task's item used more heap than the task's memoryMiB. */
  ITEM_OUT_OF_MEMORY: "ITEM_OUT_OF_MEMORY",
  /** A job did not finish before its deadline. */
  DEADLINE: "DEADLINE",
  /** A job had not ended when its end was asked for (a wait that gave up, a result asked of a running job): it goes on. */
  NOT_FINISHED: "NOT_FINISHED",
  /** A job was cancelled. */
  CANCELLED: "CANCELLED",
  /** A job's estimated cost is over its maxCostUsd. */
  COST_LIMIT: "COST_LIMIT",
  /** Something in the environment (AWS, the filesystem) failed. */
  ENVIRONMENT: "ENVIRONMENT",
  /** A bug: an invariant of cloudmill itself did not hold. */
  INTERNAL: "INTERNAL",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Where in the input an error was found. All fields optional; whatever is known is given. */
export interface ErrorContext {
  readonly jobId?: string;
  readonly input?: string;
  readonly line?: number;
  readonly offset?: number;
  /** The offset counts the input's decoded bytes (it is compressed). */
  readonly decoded?: boolean;
  /** The offset is a byte of binary structure (a zip archive's headers): it has no line. */
  readonly binary?: boolean;
  /** The offset counts from the start of the decoded BGZF block at this compressed byte. */
  readonly block?: number;
  /** With `block`: the offset counts the decoded bytes of the plain gzip members that start there, after a BGZF file's blocks. */
  readonly gzipTail?: boolean;
  readonly range?: readonly [number, number];
  readonly chunk?: number;
  /** A keyed job's partition (its reduce task). */
  readonly partition?: number;
  readonly field?: string;
  /**
   * The failure is this machine's and would recur on every attempt here (a disk full, read-only
   * or over quota): the local engine fails the job at once rather than trying again.
   */
  readonly lasting?: boolean;
}

/** `text` on one line: each line break, with the spaces around it, becomes one space. */
export const oneLine = (text: string): string => text.replace(/\s*[\r\n]+\s*/g, " ").trim();

/**
 * Every copy of this module brands its errors alike: a lab's op module imports cloudmill from
 * its own node_modules while the CLI runs from its bundle, and an error one copy throws must
 * still be a CloudmillError to the other (`onBadRecord: "skip"` skips it by that).
 */
const BRAND = Symbol.for("cloudmill.CloudmillError");

export class CloudmillError extends Error {
  readonly code: ErrorCode;
  readonly context: ErrorContext;

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === "object" && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true;
  }

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CloudmillError";
    this.code = code;
    this.context = context;
  }

  /** A copy with more context (e.g. the engine adds the input name to a reader's error). */
  withContext(extra: ErrorContext): CloudmillError {
    const e = new CloudmillError(this.code, this.message, { ...this.context, ...extra }, { cause: this.cause });
    e.stack = this.stack;
    return e;
  }

  /** One line: where, then what. `data.txt:12 (byte 345): expected a number, got "x"`. */
  /** Where, then what: one line (a lab's message over several lines is joined), as a status and the CLI show it. */
  describe(): string {
    return oneLine(`${locate(this.context)}${this.message}`);
  }

  toJSON(): SerializedError {
    return { code: this.code, message: this.message, context: this.context };
  }
}
Object.defineProperty(CloudmillError.prototype, BRAND, { value: true });

export interface SerializedError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly context: ErrorContext;
}

export const invalidSpec = (message: string, field?: string): CloudmillError =>
  new CloudmillError(ErrorCode.INVALID_SPEC, message, field === undefined ? {} : { field });

export const badRecord = (message: string, offset: number): CloudmillError => new CloudmillError(ErrorCode.BAD_RECORD, message, { offset });

/** `input:line (byte offset) ` / `input (bytes a-b) ` / `` — the prefix of a one-line error. */
export const locate = (c: ErrorContext): string => {
  const parts: string[] = [];
  let where = c.input ?? "";
  if (c.line !== undefined) where += `${where ? ":" : "line "}${c.line}`;
  if (where) parts.push(where);
  if (c.partition !== undefined) parts.push(`partition ${c.partition}`);
  if (c.offset !== undefined && c.block !== undefined)
    parts.push(`(byte ${c.offset} of the ${c.gzipTail ? "gzip members" : "BGZF block"} at compressed byte ${c.block})`);
  else if (c.offset !== undefined) parts.push(c.decoded ? `(byte ${c.offset} decompressed)` : `(byte ${c.offset})`);
  else if (c.range) parts.push(`(bytes ${c.range[0]}-${c.range[1]})`);
  return parts.length ? `${parts.join(" ")}: ` : "";
};

/** Turns anything thrown into a CloudmillError, keeping ours as they are. */
export const toCloudmillError = (err: unknown, fallback: ErrorCode = ErrorCode.INTERNAL): CloudmillError => {
  if (err instanceof CloudmillError) return err;
  if (isSerializedError(err)) return new CloudmillError(err.code, err.message, err.context);
  return new CloudmillError(fallback, err instanceof Error ? err.message : shown(err), {}, { cause: err });
};

/** A thrown value as text; one that has no text (an object without a prototype) as JSON, else by its type. */
const shown = (v: unknown): string => {
  try {
    return String(v);
  } catch {
    try {
      return JSON.stringify(v) ?? typeof v;
    } catch {
      return `a thrown ${typeof v} that has no text`;
    }
  }
};

export const isSerializedError = (v: unknown): v is SerializedError =>
  typeof v === "object" &&
  v !== null &&
  typeof (v as { code?: unknown }).code === "string" &&
  Object.values(ErrorCode).includes((v as { code: ErrorCode }).code) &&
  typeof (v as { message?: unknown }).message === "string";
