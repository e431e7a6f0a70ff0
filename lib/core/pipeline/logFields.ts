/** What of an error may reach a log: where it is, always; what it says, only when it cannot quote data. */
import { ErrorCode, type CloudmillError } from "../errors.js";

/**
 * Codes whose messages may quote input data or user code: a bad record's text, a job spec's
 * JSON, an op's own exception. Their messages go to status.json (the user's own bucket), never
 * to logs.
 */
const QUOTES_DATA: ReadonlySet<string> = new Set([
  ErrorCode.BAD_RECORD,
  ErrorCode.INVALID_SPEC,
  ErrorCode.INTERNAL,
  ErrorCode.CHUNK_FAILED,
  ErrorCode.OP_FAILED,
]);

/**
 * An error as log fields: its code and where it is, always; its message only when it cannot
 * quote object contents. Logs carry no object contents (and no credentials: none ever reach
 * an error).
 */
export const logFieldsOf = (err: CloudmillError): Record<string, unknown> => {
  const c = err.context;
  return {
    code: err.code,
    ...(c.jobId !== undefined ? { jobId: c.jobId } : {}),
    ...(c.input !== undefined ? { input: c.input } : {}),
    ...(c.chunk !== undefined ? { chunk: c.chunk } : {}),
    ...(c.range ? { range: [c.range[0], c.range[1]] } : {}),
    ...(c.offset !== undefined ? { offset: c.offset } : {}),
    ...(c.line !== undefined ? { line: c.line } : {}),
    ...(c.field !== undefined ? { field: c.field } : {}),
    error: QUOTES_DATA.has(err.code) ? "(message withheld from logs: it may quote input data; see the job's status.json)" : err.message,
  };
};
