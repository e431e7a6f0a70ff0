import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { S3Client } from "@aws-sdk/client-s3";
import { SQSClient } from "@aws-sdk/client-sqs";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import { FaultInjectingHandler, type FaultInjectionOptions } from "../dev/faultInjection.js";

export interface AwsClientOptions {
  /** A custom endpoint (the emulator: `http://127.0.0.1:4566`). Default: AWS. */
  readonly endpoint?: string;
  /** Default: AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1. */
  readonly region?: string;
  /** Sockets per client. Default 64: enough for a worker's concurrent range reads and long polls. */
  readonly maxSockets?: number;
  /** Tests only: inject faults into a seeded fraction of requests (lib/testing/faultInjection.ts). */
  readonly faults?: FaultInjectionOptions;
}

export interface AwsClients {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  /** The fault injectors, when `faults` was given: what each has injected so far. */
  readonly injectors?: { readonly s3: FaultInjectingHandler; readonly sqs: FaultInjectingHandler };
}

/** Credentials for an emulator, which accepts any; used only when none are configured. */
const EMULATOR_CREDENTIALS = { accessKeyId: "cloudmill", secretAccessKey: "cloudmill" } as const;

/**
 * The S3 and SQS clients every role uses. Each gets its own keep-alive pool, so long polls
 * cannot starve range reads of sockets.
 *
 * `env` is the SDK's own environment (region and credentials), not cloudmill configuration.
 */
export const awsClients = (options: AwsClientOptions = {}, env: NodeJS.ProcessEnv = process.env): AwsClients => {
  const region = options.region ?? env["AWS_REGION"] ?? env["AWS_DEFAULT_REGION"] ?? "us-east-1";
  const emulated =
    options.endpoint === undefined
      ? {}
      : {
          endpoint: options.endpoint,
          ...(env["AWS_ACCESS_KEY_ID"] ? {} : { credentials: EMULATOR_CREDENTIALS }),
        };
  const handler = (): NodeHttpHandler => {
    const agent = { keepAlive: true, maxSockets: options.maxSockets ?? 64 };
    return new NodeHttpHandler({ httpAgent: new HttpAgent(agent), httpsAgent: new HttpsAgent(agent) });
  };
  const faults = options.faults;
  const injectors = faults && { s3: new FaultInjectingHandler(handler(), "s3", faults), sqs: new FaultInjectingHandler(handler(), "sqs", faults) };
  return {
    s3: new S3Client({ region, ...emulated, forcePathStyle: options.endpoint !== undefined, requestHandler: injectors?.s3 ?? handler() }),
    sqs: new SQSClient({ region, ...emulated, requestHandler: injectors?.sqs ?? handler() }),
    ...(injectors ? { injectors } : {}),
  };
};

export const s3Uri = (bucket: string, key: string): string => `s3://${bucket}/${key}`;

/** `s3://bucket/some/key` → { bucket, key }. The key is taken literally (S3 URIs are not URL-encoded). */
export const parseS3Uri = (uri: string): { bucket: string; key: string } => {
  const m = /^s3:\/\/([^/]+)\/(.+)$/s.exec(uri);
  if (!m || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(m[1]!)) {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `not an S3 object URI: ${JSON.stringify(uri)} (expected s3://bucket/key)`);
  }
  return { bucket: m[1]!, key: m[2]! };
};
