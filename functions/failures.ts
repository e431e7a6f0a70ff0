// Lambda: the task dead-letter queue → the job is marked failed with the chunk's error (lib/pipeline/fail.ts).
import { powertoolsLogger } from "../lib/aws/logger.js";
import { cloudDeps } from "../lib/aws/cloudDeps.js";
import { readFailuresConfig } from "../lib/aws/env.js";
import { failuresHandler } from "../lib/aws/handlers.js";

const config = readFailuresConfig(process.env);
const { logger } = powertoolsLogger(config.serviceName, config.logLevel);
export const handler = failuresHandler(cloudDeps(config, logger));
