// Lambda: part-created notifications (S3 → SQS) → merge once all parts exist (lib/core/pipeline/reduce.ts).
import { cloudSplitDeps } from "../lib/aws/cloudDeps.js";
import { readReducerConfig } from "../lib/aws/env.js";
import { reducerHandler } from "../lib/aws/handlers.js";
import { powertoolsLogger } from "../lib/aws/logger.js";
import { SqsWakeSender } from "../lib/aws/SqsWakeSender.js";
import { opsRegistry } from "../lib/core/ops/opModules.js";
import { functionMappers } from "../lib/aws/functionMappers.js";

const config = readReducerConfig(process.env);
const { logger } = powertoolsLogger(config.serviceName, config.logLevel);
const mappers = functionMappers(config);
const deps = { ...cloudSplitDeps(config, logger), registry: await opsRegistry(config.opsModules), ...(mappers ? { mappers } : {}) };
export const handler = reducerHandler({
  ...deps,
  ...(config.instanceType ? { instanceType: config.instanceType } : {}),
  ...(config.capacity ? { capacity: config.capacity } : {}),
  taskTimeoutSeconds: config.taskTimeoutSeconds,
  ...(config.partsQueueUrl ? { wake: new SqsWakeSender(deps.clients.sqs, config.partsQueueUrl) } : {}),
});
