// Lambda: S3 ObjectCreated in the input bucket → a job (lib/core/pipeline/trigger.ts does the work).
import { ECSClient } from "@aws-sdk/client-ecs";
import { cloudSplitDeps } from "../lib/aws/cloudDeps.js";
import { EcsFleetWaker } from "../lib/aws/EcsFleetWaker.js";
import { readSplitterConfig } from "../lib/aws/env.js";
import { splitterEntry } from "../lib/aws/handlers.js";
import { powertoolsLogger } from "../lib/aws/logger.js";
import { functionMappers } from "../lib/aws/functionMappers.js";
import { SqsWakeSender } from "../lib/aws/SqsWakeSender.js";
import { SqsContinuationSender } from "../lib/aws/SqsContinuationSender.js";
import { opsRegistry } from "../lib/core/ops/opModules.js";

const config = readSplitterConfig(process.env);
const { logger } = powertoolsLogger(config.serviceName, config.logLevel);
const fleet = config.fleet && new EcsFleetWaker(new ECSClient({}), config.fleet);
const mappers = functionMappers(config);
const base = cloudSplitDeps(config, logger);
const deps = {
  ...base,
  ...(mappers ? { mappers } : {}),
  registry: await opsRegistry(config.opsModules),
  ...(fleet ? { fleet } : {}),
  ...(config.instanceType ? { instanceType: config.instanceType } : {}),
  ...(config.capacity ? { capacity: config.capacity } : {}),
  taskTimeoutSeconds: config.taskTimeoutSeconds,
  // A resume that queues no chunk starts the reducer's wake-ups (wake.ts).
  ...(config.partsQueueUrl ? { wake: new SqsWakeSender(base.clients.sqs, config.partsQueueUrl) } : {}),
  // A listing out of time goes on in a later invocation, through this function's own queue (listing.ts).
  ...(config.continuationQueueUrl ? { continuations: new SqsContinuationSender(base.clients.sqs, config.continuationQueueUrl) } : {}),
};
export const handler = splitterEntry(deps, config);
