/** The Logger port over Powertools' structured JSON logger (Lambda and the worker container). */
import { Logger as PowertoolsLogger } from "@aws-lambda-powertools/logger";
import type { Logger, LogFields } from "../core/log.js";

/**
 * A child adds its fields to each line itself: Powertools' createChild builds a whole logger
 * (options, console, formatter), which the worker paid on every task (a third of a millisecond).
 */
const wrap = (pt: PowertoolsLogger, base: LogFields = {}): Logger => ({
  debug: (m, f) => pt.debug(m, { ...base, ...f }),
  info: (m, f) => pt.info(m, { ...base, ...f }),
  warn: (m, f) => pt.warn(m, { ...base, ...f }),
  error: (m, f) => pt.error(m, { ...base, ...f }),
  child: (fields: LogFields) => wrap(pt, { ...base, ...fields }),
});

export const powertoolsLogger = (
  serviceName: string,
  logLevel: "DEBUG" | "INFO" | "WARN" | "ERROR",
): { logger: Logger; powertools: PowertoolsLogger } => {
  const powertools = new PowertoolsLogger({ serviceName, logLevel });
  return { logger: wrap(powertools), powertools };
};
