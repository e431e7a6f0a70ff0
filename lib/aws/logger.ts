/** The Logger port over Powertools' structured JSON logger (Lambda and the worker container). */
import { Logger as PowertoolsLogger } from "@aws-lambda-powertools/logger";
import type { Logger, LogFields } from "../core/log.js";

const wrap = (pt: PowertoolsLogger): Logger => ({
  debug: (m, f) => pt.debug(m, { ...f }),
  info: (m, f) => pt.info(m, { ...f }),
  warn: (m, f) => pt.warn(m, { ...f }),
  error: (m, f) => pt.error(m, { ...f }),
  child: (fields: LogFields) => wrap(pt.createChild({ persistentKeys: { ...fields } })),
});

export const powertoolsLogger = (
  serviceName: string,
  logLevel: "DEBUG" | "INFO" | "WARN" | "ERROR",
): { logger: Logger; powertools: PowertoolsLogger } => {
  const powertools = new PowertoolsLogger({ serviceName, logLevel });
  return { logger: wrap(powertools), powertools };
};
