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

/**
 * Commander's own error (an unknown option, a missing argument) as the one line every other
 * error is, pointing at the help of the command that refused it:
 * `cloudmill: unknown option '--bogus' (see cloudmill run --help)`. Commander writes it
 * (main.ts hands this to its outputError) before it throws the CommanderError handled below.
 */
export const usageErrorLine = (message: string, command: string): string => {
  const said = message
    .trim()
    .replace(/^error: /, "")
    // A suggestion comes on a line of its own: "\n(Did you mean --op?)".
    .replace(/\s*\n\s*\(Did you mean (.*)\)$/s, "; did you mean $1")
    .replace(/\s*\n\s*/g, " ")
    .replace(/\.$/, "");
  return `cloudmill: ${said} (see ${command} --help)\n`;
};

export const handleError = (err: unknown, io: CliIO): number => {
  if (err instanceof CommanderError) {
    // Commander has printed its message (usageErrorLine) or help already.
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
