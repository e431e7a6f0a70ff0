/** The pipeline's ports over AWS (or the emulator), as the handlers and the worker use them. */
import { S3BlobStore } from "./S3BlobStore.js";
import { SqsTaskQueue } from "./SqsTaskQueue.js";
import type { Logger } from "../core/log.js";
import { OpRegistry } from "../core/ops/registry.js";
import type { BlobStore } from "../core/ports.js";
import type { PipelineDeps, SplitDeps } from "../core/pipeline/deps.js";
import { awsClients, type AwsClients } from "./clients.js";

export interface CloudConfig {
  readonly outputBucket: string;
  readonly endpoint?: string | undefined;
}

export const cloudDeps = (
  config: CloudConfig,
  log: Logger,
  clients: AwsClients = awsClients(config.endpoint ? { endpoint: config.endpoint } : {}),
): PipelineDeps & { clients: AwsClients } => {
  const stores = new Map<string, BlobStore>();
  const inputStore = (bucket: string): BlobStore => {
    let s = stores.get(bucket);
    if (!s) stores.set(bucket, (s = new S3BlobStore(clients.s3, bucket)));
    return s;
  };
  return { output: inputStore(config.outputBucket), inputStore, registry: new OpRegistry(), log, clients };
};

export const cloudSplitDeps = (
  config: CloudConfig & { taskQueueUrl: string; spotTaskQueueUrl?: string | undefined; inputBuckets?: readonly string[] | undefined },
  log: Logger,
  clients?: AwsClients,
): SplitDeps & { clients: AwsClients } => {
  const deps = cloudDeps(config, log, clients);
  return {
    ...deps,
    queue: new SqsTaskQueue(deps.clients.sqs, config.taskQueueUrl),
    ...(config.spotTaskQueueUrl ? { spotQueue: new SqsTaskQueue(deps.clients.sqs, config.spotTaskQueueUrl) } : {}),
    ...(config.inputBuckets ? { inputBuckets: config.inputBuckets } : {}),
  };
};
