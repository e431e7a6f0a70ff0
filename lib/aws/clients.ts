import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { SQSClient } from "@aws-sdk/client-sqs";
import { NodeHttpHandler } from "@smithy/node-http-handler";

export type AwsService = "s3" | "sqs";

/** What an SDK client takes as `requestHandler`. */
export type RequestHandler = NonNullable<S3ClientConfig["requestHandler"]>;

export interface AwsClientOptions {
  /** A custom endpoint (the emulator: `http://127.0.0.1:4566`). Default: AWS. */
  readonly endpoint?: string;
  /** Default: AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1. */
  readonly region?: string;
  /** Sockets per client. Default 64: enough for a worker's concurrent range reads and long polls. */
  readonly maxSockets?: number;
  /** How long a connection may take to open before the try fails (and is retried). Default 10 s. */
  readonly connectionTimeoutMs?: number;
  /**
   * How long a request's socket may go without a byte before the try fails (and is retried).
   * Default: none, for the roles: a reading may pause while its consumer maps, and a long poll
   * waits 20 s. A user's client sets one, so that an endpoint that never answers is an error.
   */
  readonly socketTimeoutMs?: number;
  /**
   * Wraps each client's HTTP handler. Handed in from outside only (the dev cloud and tests inject
   * faults this way, lib/dev/faultInjection.ts); no configuration of a deployed role reaches it.
   */
  readonly wrapHandler?: (service: AwsService, handler: NodeHttpHandler) => RequestHandler;
}

export interface AwsClients {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
}

const DEFAULT_CONNECTION_TIMEOUT_MS = 10_000;

/** Credentials for an emulator, which accepts any; used only when none are configured. */
export const EMULATOR_CREDENTIALS = { accessKeyId: "cloudmill", secretAccessKey: "cloudmill" } as const;

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
  const handler = (service: AwsService): RequestHandler => {
    const agent = { keepAlive: true, maxSockets: options.maxSockets ?? 64 };
    const base = new NodeHttpHandler({
      httpAgent: new HttpAgent(agent),
      httpsAgent: new HttpsAgent(agent),
      connectionTimeout: options.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
      ...(options.socketTimeoutMs !== undefined ? { socketTimeout: options.socketTimeoutMs } : {}),
    });
    return options.wrapHandler ? options.wrapHandler(service, base) : base;
  };
  return {
    s3: new S3Client({ region, ...emulated, forcePathStyle: options.endpoint !== undefined, requestHandler: handler("s3") }),
    sqs: new SQSClient({ region, ...emulated, requestHandler: handler("sqs") }),
  };
};

/** Closes both clients' sockets. */
export const destroyClients = (clients: AwsClients): void => {
  clients.s3.destroy();
  clients.sqs.destroy();
};
