// Lambda: S3 ObjectCreated in the input bucket → a job (lib/core/pipeline/trigger.ts does the work).
import { cloudSplitDeps } from "../lib/aws/cloudDeps.js";
import { readSplitterConfig } from "../lib/aws/env.js";
import { splitterHandler } from "../lib/aws/handlers.js";
import { powertoolsLogger } from "../lib/aws/logger.js";
import { opsRegistry } from "../lib/core/ops/opModules.js";

const config = readSplitterConfig(process.env);
const { logger } = powertoolsLogger(config.serviceName, config.logLevel);
export const handler = splitterHandler({ ...cloudSplitDeps(config, logger), registry: await opsRegistry(config.opsModules) }, config);
