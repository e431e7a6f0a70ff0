/** The logging port: structured fields, never object contents. Adapters: stderr lines, JSON (Powertools), silent. */
export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds these fields to every line (job id, chunk index). */
  child(fields: LogFields): Logger;
}

export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
export type LogLevel = keyof typeof LEVELS;

/** One JSON object per line on the given stream (the worker's and dev's format). */
export const jsonLogger = (write: (line: string) => void, level: LogLevel = "info", base: LogFields = {}): Logger => {
  const at = (l: LogLevel) => (message: string, fields?: LogFields) => {
    if (LEVELS[l] < LEVELS[level]) return;
    write(`${JSON.stringify({ level: l.toUpperCase(), timestamp: new Date().toISOString(), message, ...base, ...fields })}\n`);
  };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (f) => jsonLogger(write, level, { ...base, ...f }),
  };
};

/** Plain `warning:` lines for warnings, and `error:` lines for errors when asked, nothing else (the CLI's quiet mode). */
export const warningsOnly = (write: (line: string) => void, base: LogFields = {}, errors = false): Logger => {
  const line = (kind: string) => (message: string, fields?: LogFields) => {
    const all = { ...base, ...fields };
    const rest = Object.keys(all).length ? ` ${JSON.stringify(all)}` : "";
    write(`cloudmill: ${kind}: ${message}${rest}\n`);
  };
  return {
    ...silentLogger,
    warn: line("warning"),
    ...(errors ? { error: line("error") } : {}),
    child: (f) => warningsOnly(write, { ...base, ...f }, errors),
  };
};

/** How a process's log is passed to its threads, which cannot be handed a Logger: by what it shows. */
export type ThreadLog = "silent" | "warnings" | LogLevel;

/**
 * A thread's own logger, writing to its standard error (the process's). With "warnings", errors
 * show too: on a task thread they are a lab's own ctx.log.error, which the run's end says nothing of.
 */
export const threadLogger = (kind: ThreadLog | undefined, write: (line: string) => void): Logger =>
  kind === undefined || kind === "silent" ? silentLogger : kind === "warnings" ? warningsOnly(write, {}, true) : jsonLogger(write, kind);
