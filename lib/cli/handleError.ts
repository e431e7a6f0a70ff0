/** Every error a command can raise becomes one line on stderr and an exit code, here and only here. */
import { CommanderError } from "commander";
import { CloudmillError, ErrorCode, toCloudmillError } from "../core/errors.js";
import type { CliIO } from "./io.js";

export const EXIT_CODES: Readonly<Record<ErrorCode, number>> = {
  INVALID_SPEC: 2,
  UNKNOWN_OP: 2,
  OP_MISMATCH: 2,
  INPUT_NOT_FOUND: 3,
  BAD_RECORD: 4,
  INPUT_CHANGED: 5,
  CHUNK_FAILED: 6,
  OP_FAILED: 6,
  TASK_TIMEOUT: 6,
  OUT_OF_MEMORY: 6,
  ITEM_FAILED: 6,
  ITEM_TIMEOUT: 6,
  ITEM_OUT_OF_MEMORY: 6,
  DEADLINE: 6,
  COST_LIMIT: 8,
  ENVIRONMENT: 7,
  NOT_FINISHED: 75,
  CANCELLED: 130,
  INTERNAL: 70,
};

export const handleError = (err: unknown, io: CliIO): number => {
  if (err instanceof CommanderError) {
    // Commander has printed its message (or help) already.
    return err.exitCode === 0 ? 0 : 2;
  }
  // Ctrl-C: what the command was doing when it was stopped (an abort, not a bug) is not the news.
  if (io.signal?.aborted && !(err instanceof CloudmillError)) {
    io.stderr.write("cloudmill: stopped\n");
    return EXIT_CODES.CANCELLED;
  }
  const e = err instanceof CloudmillError ? err : toCloudmillError(err, ErrorCode.INTERNAL);
  io.stderr.write(`cloudmill: ${e.describe()}\n`);
  if (e.code === ErrorCode.INTERNAL && io.env.CLOUDMILL_DEBUG && e.cause instanceof Error) io.stderr.write(`${e.cause.stack}\n`);
  return EXIT_CODES[e.code];
};
