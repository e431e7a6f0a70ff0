// Lambda: the task dead-letter queue → the job is marked failed with the chunk's error (lib/core/pipeline/deadLetter.ts).
import { powertoolsLogger } from "../lib/aws/logger.js";
import { cloudDeps } from "../lib/aws/cloudDeps.js";
import { readDeadLetterConfig } from "../lib/aws/env.js";
import { deadLetterHandler } from "../lib/aws/handlers.js";

const config = readDeadLetterConfig(process.env);
const { logger } = powertoolsLogger(config.serviceName, config.logLevel);
export const handler = deadLetterHandler(cloudDeps(config, logger));
