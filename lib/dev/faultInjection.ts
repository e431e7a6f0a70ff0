/**
 * Fault injection at the AWS SDK's HTTP layer: a request handler that wraps the real one
 * (NodeHttpHandler) and, for a seeded fraction of requests, answers the way S3 and SQS do
 * when they are overloaded or the network misbehaves. Nothing of cloudmill's own code is
 * mocked: the SDK parses these answers, classifies them and retries them with its own retry
 * strategy, and what the SDK gives up on reaches cloudmill's adapters as it would from AWS.
 *
 * Kinds of fault:
 * - `throttle`: S3 `503 SlowDown` (REST-XML), SQS `RequestThrottled` (JSON 1.0 with the
 *   query-compatible `x-amzn-query-error` header). The SDK sees a retryable throttle.
 * - `server-error`: S3 `500 InternalError`, SQS `500 InternalFailure`. Retryable.
 * - `lost-response`: the request reaches the service and is carried out, then the connection
 *   resets before the answer arrives (ECONNRESET). The SDK retries, so the service sees the
 *   request twice: this is how duplicated SQS messages and repeated S3 writes arise for real.
 * - `reset-body`: the answer starts, then the connection resets part-way through its body.
 *   For a streamed GetObject the SDK has already returned, so the reader sees the error.
 * - `delay`: the request waits `delayMs` before it is sent (a slow network; a delayed
 *   SendMessageBatch delivers its messages late).
 *
 * Decisions are seeded: the n-th request through a handler gets the same decision in every
 * run with the same seed and stream (which request is n-th still depends on timing).
 *
 * Handed in from outside only: `faultyClients` here for roles in this process, and the dev
 * cloud's worker entry (faultyWorker.ts) for worker processes. Nothing a deployed role reads
 * (environment, job spec, stack) can turn it on.
 */
import { Readable } from "node:stream";
import type { NodeHttpHandler } from "@smithy/node-http-handler";
import * as z from "zod";
import { awsClients, type AwsClientOptions, type AwsClients } from "../aws/clients.js";
import { ErrorCode } from "../core/errors.js";
import { parseJsonWith } from "../core/parseJson.js";
import { sleep } from "../core/sleep.js";
import { prng } from "./prng.js";

export const FAULT_KINDS = ["throttle", "server-error", "lost-response", "reset-body", "delay"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export type FaultService = "s3" | "sqs";

/** A fault configuration (JSON where it crosses a process boundary). */
export const FaultConfig = z.strictObject({
  /** Fraction of requests that get a fault, 0 to 1. */
  rate: z.number().min(0).max(1),
  /** Seed of the decisions. Default 1. */
  seed: z.number().int().default(1),
  /** Kinds to draw from, uniformly. Default: all. */
  kinds: z.array(z.enum(FAULT_KINDS)).min(1).optional(),
  /** Only requests of these operations (`GetObject`, `ReceiveMessage`, ...) may get a fault. Default: all. */
  operations: z.array(z.string().min(1)).min(1).optional(),
  /** How long a `delay` fault holds a request. Default 1000 ms. */
  delayMs: z.number().int().min(0).max(60_000).default(1000),
  /** At most this many faults in all, then none. Default: no limit. */
  limit: z.number().int().min(0).optional(),
});
export type FaultConfig = z.output<typeof FaultConfig>;
export type FaultConfigInput = z.input<typeof FaultConfig>;

/** Parses a fault configuration given as JSON text; `what` names its source in the error. */
export const parseFaultConfig = (text: string, what: string): FaultConfig => parseJsonWith(text, FaultConfig, what, ErrorCode.ENVIRONMENT);

/** One request as the handler sees it (the operation is recovered from the HTTP request). */
export interface RequestInfo {
  readonly service: FaultService;
  readonly operation: string;
  readonly bucket?: string;
  readonly key?: string;
  /** The prefix of a listing. */
  readonly prefix?: string;
  /** The SQS queue URL of the request, when the body names one. */
  readonly queueUrl?: string;
}

export interface InjectedFault extends RequestInfo {
  /** 1-based index of the request through this handler. */
  readonly n: number;
  readonly kind: FaultKind;
}

/** A request that completed (or failed) at the HTTP layer, for recording what a role does. */
export interface CompletedRequest extends RequestInfo {
  /** HTTP status, or undefined when no answer came (a fault or a network error). */
  readonly status?: number;
}

export interface FaultStats {
  readonly requests: number;
  readonly injected: number;
  readonly byKind: Readonly<Record<FaultKind, number>>;
  readonly byOperation: Readonly<Record<string, number>>;
}

export interface FaultInjectionOptions extends FaultConfigInput {
  /** Mixed into the seed so that S3 and SQS clients (or two processes) draw different sequences. */
  readonly stream?: string;
  /** In this process only (a test's switch): only requests it says yes to may get a fault. */
  readonly only?: (request: RequestInfo) => boolean;
  /** Called once per injected fault, before it takes effect. */
  readonly onInject?: (fault: InjectedFault) => void;
  /** Called once per request when its answer (or failure) is known; rate 0 makes a pure recorder. */
  readonly onRequest?: (request: CompletedRequest) => void;
}

/** The handler interface the SDK clients take (as NodeHttpHandler implements it). */
type InnerHandler = Pick<NodeHttpHandler, "handle" | "updateHttpClientConfig" | "httpHandlerConfigs" | "destroy" | "metadata">;
type HttpRequest = Parameters<NodeHttpHandler["handle"]>[0];
type HttpHandlerOptions = NonNullable<Parameters<NodeHttpHandler["handle"]>[1]>;
type HttpResponse = Awaited<ReturnType<NodeHttpHandler["handle"]>>["response"];
type HandlerConfig = ReturnType<NodeHttpHandler["httpHandlerConfigs"]>;

/** FNV-1a of a string, to mix a stream name into a seed. */
const fnv1a = (s: string): number => {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
};

const header = (request: HttpRequest, name: string): string | undefined => {
  const found = Object.keys(request.headers).find((k) => k.toLowerCase() === name);
  return found === undefined ? undefined : request.headers[found];
};

const decodeKey = (s: string): string => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
};

/** The S3 operation, bucket and key of a request, path-style or virtual-hosted. */
const describeS3 = (request: HttpRequest): RequestInfo => {
  const query = request.query ?? {};
  const has = (q: string): boolean => Object.hasOwn(query, q);
  const virtual = /^(.+)\.s3[.-]/.exec(request.hostname);
  const path = request.path.startsWith("/") ? request.path.slice(1) : request.path;
  let bucket: string | undefined;
  let key: string | undefined;
  if (virtual) {
    bucket = virtual[1];
    key = path === "" ? undefined : decodeKey(path);
  } else {
    const slash = path.indexOf("/");
    bucket = decodeKey(slash < 0 ? path : path.slice(0, slash)) || undefined;
    key = slash < 0 || slash === path.length - 1 ? undefined : decodeKey(path.slice(slash + 1));
  }
  let operation: string;
  switch (request.method) {
    case "HEAD":
      operation = key === undefined ? "HeadBucket" : "HeadObject";
      break;
    case "GET":
      operation =
        key !== undefined ? "GetObject" : has("list-type") ? "ListObjectsV2" : has("uploads") ? "ListMultipartUploads" : "ListObjects";
      break;
    case "PUT":
      operation =
        key === undefined
          ? "CreateBucket"
          : has("partNumber")
            ? "UploadPart"
            : header(request, "x-amz-copy-source")
              ? "CopyObject"
              : "PutObject";
      break;
    case "POST":
      operation = has("uploads")
        ? "CreateMultipartUpload"
        : has("uploadId")
          ? "CompleteMultipartUpload"
          : has("delete")
            ? "DeleteObjects"
            : "PostObject";
      break;
    case "DELETE":
      operation = key === undefined ? "DeleteBucket" : has("uploadId") ? "AbortMultipartUpload" : "DeleteObject";
      break;
    default:
      operation = request.method;
  }
  const prefix = operation.startsWith("List") && typeof query["prefix"] === "string" ? query["prefix"] : undefined;
  return {
    service: "s3",
    operation,
    ...(bucket !== undefined ? { bucket } : {}),
    ...(key !== undefined ? { key } : {}),
    ...(prefix !== undefined ? { prefix } : {}),
  };
};

/** The SQS operation (JSON protocol: `x-amz-target: AmazonSQS.<Operation>`) and queue of a request. */
const describeSqs = (request: HttpRequest): RequestInfo => {
  const target = header(request, "x-amz-target") ?? "";
  const operation = target.includes(".") ? target.slice(target.lastIndexOf(".") + 1) : target || "Unknown";
  let queueUrl: string | undefined;
  const body: unknown = request.body;
  const text =
    typeof body === "string"
      ? body
      : body instanceof Uint8Array
        ? Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8")
        : undefined;
  if (text !== undefined) {
    const m = /"QueueUrl"\s*:\s*"([^"]+)"/.exec(text);
    if (m) queueUrl = m[1]!;
  }
  return { service: "sqs", operation, ...(queueUrl !== undefined ? { queueUrl } : {}) };
};

export const describeRequest = (request: HttpRequest, service: FaultService): RequestInfo =>
  service === "s3" ? describeS3(request) : describeSqs(request);

let requestIds = 0;
const requestId = (): string => `FAULT${(++requestIds).toString(16).toUpperCase().padStart(11, "0")}`;

const response = (statusCode: number, headers: Record<string, string>, body: string | undefined): HttpResponse => ({
  statusCode,
  headers: { ...headers, ...(body === undefined ? {} : { "content-length": String(Buffer.byteLength(body)) }) },
  body: Readable.from(body === undefined ? [] : [Buffer.from(body)]),
});

const s3Error = (method: string, status: number, code: string, message: string): HttpResponse => {
  const id = requestId();
  const headers = { "content-type": "application/xml", "x-amz-request-id": id, "x-amz-id-2": `${id}/fault` };
  // HEAD answers carry no body, as S3's do; the SDK then names the error by its status.
  if (method === "HEAD") return response(status, headers, undefined);
  return response(
    status,
    headers,
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message>` +
      `<RequestId>${id}</RequestId><HostId>${id}/fault</HostId></Error>`,
  );
};

const sqsError = (status: number, code: string, type: "Sender" | "Receiver", message: string): HttpResponse =>
  response(
    status,
    { "content-type": "application/x-amz-json-1.0", "x-amzn-requestid": requestId(), "x-amzn-query-error": `${code};${type}` },
    JSON.stringify({ __type: `com.amazonaws.sqs#${code}`, message }),
  );

/** The synthetic answer of a `throttle` or `server-error` fault, shaped as the service's own. */
export const syntheticResponse = (kind: "throttle" | "server-error", service: FaultService, method: string): HttpResponse => {
  if (service === "s3") {
    return kind === "throttle"
      ? s3Error(method, 503, "SlowDown", "Please reduce your request rate.")
      : s3Error(method, 500, "InternalError", "We encountered an internal error. Please try again.");
  }
  return kind === "throttle"
    ? sqsError(400, "RequestThrottled", "Sender", "Request is throttled.")
    : sqsError(500, "InternalFailure", "Receiver", "The request processing has failed because of an unknown error, exception or failure.");
};

/** The error Node's http client gives when the peer resets the connection. */
const connectionReset = (what: string): Error =>
  Object.assign(new Error(`read ECONNRESET (fault injected: ${what})`), { code: "ECONNRESET", errno: -104, syscall: "read" });

const abortError = (signal: HttpHandlerOptions["abortSignal"]): Error => {
  const reason = (signal as { reason?: unknown } | undefined)?.reason;
  if (reason instanceof Error) return reason;
  return Object.assign(new Error("Request aborted"), { name: "AbortError" });
};

/** A delay the SDK can abort: it then rejects with the AbortError the SDK expects. */
const delayRequest = (ms: number, signal: HttpHandlerOptions["abortSignal"]): Promise<void> =>
  sleep(ms, signal as AbortSignal | undefined).catch(() => {
    throw abortError(signal);
  });

/** Reads and discards a response body (so the connection is reused), ignoring its errors. */
const drain = async (body: unknown): Promise<void> => {
  if (body && typeof (body as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function") {
    try {
      for await (const _ of body as AsyncIterable<unknown>) {
        // discard
      }
    } catch {
      // the answer is being thrown away anyway
    }
  }
};

/** Passes `keep` bytes of a body through, then fails as a reset connection would. */
const cutAfter = (body: unknown, keep: number): Readable => {
  async function* cut(): AsyncGenerator<Buffer> {
    let seen = 0;
    if (body && typeof (body as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function") {
      const source = body as AsyncIterable<Uint8Array | string> & { destroy?: () => void };
      for await (const chunk of source) {
        const buf = typeof chunk === "string" ? Buffer.from(chunk) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        if (seen + buf.length > keep) {
          if (keep > seen) yield buf.subarray(0, keep - seen);
          source.destroy?.();
          break;
        }
        seen += buf.length;
        yield buf;
      }
    }
    throw connectionReset("connection reset while reading the response body");
  }
  return Readable.from(cut(), { objectMode: false });
};

/**
 * An SDK request handler that injects faults into a seeded fraction of requests and records
 * what it did. Give it to a client as `requestHandler`; it owns (and destroys) the inner one.
 */
export class FaultInjectingHandler {
  readonly metadata: InnerHandler["metadata"];
  readonly #inner: InnerHandler;
  readonly #service: FaultService;
  readonly #config: FaultConfig;
  readonly #options: FaultInjectionOptions;
  readonly #random: () => number;
  #requests = 0;
  #injected = 0;
  readonly #byKind: Record<FaultKind, number> = { throttle: 0, "server-error": 0, "lost-response": 0, "reset-body": 0, delay: 0 };
  readonly #byOperation: Record<string, number> = {};

  constructor(inner: InnerHandler, service: FaultService, options: FaultInjectionOptions) {
    this.#inner = inner;
    this.metadata = inner.metadata;
    this.#service = service;
    this.#options = options;
    this.#config = FaultConfig.parse({
      rate: options.rate,
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
      ...(options.kinds !== undefined ? { kinds: options.kinds } : {}),
      ...(options.operations !== undefined ? { operations: options.operations } : {}),
      ...(options.delayMs !== undefined ? { delayMs: options.delayMs } : {}),
      ...(options.limit !== undefined ? { limit: options.limit } : {}),
    });
    this.#random = prng(this.#config.seed ^ fnv1a(`${service}/${options.stream ?? ""}`));
  }

  /** What was injected so far. */
  stats(): FaultStats {
    return { requests: this.#requests, injected: this.#injected, byKind: { ...this.#byKind }, byOperation: { ...this.#byOperation } };
  }

  async handle(request: HttpRequest, options: HttpHandlerOptions = {}): Promise<{ response: HttpResponse }> {
    const n = ++this.#requests;
    // Two draws per request, always, so decisions depend only on the request's index.
    const roll = this.#random();
    const pick = this.#random();
    const info = describeRequest(request, this.#service);
    const kinds = this.#config.kinds ?? FAULT_KINDS;
    const eligible =
      (this.#config.operations === undefined || this.#config.operations.includes(info.operation)) &&
      (this.#config.limit === undefined || this.#injected < this.#config.limit) &&
      (this.#options.only?.(info) ?? true);
    const kind: FaultKind | undefined = eligible && roll < this.#config.rate ? kinds[Math.floor(pick * kinds.length)] : undefined;
    if (kind !== undefined) {
      this.#injected++;
      this.#byKind[kind]++;
      this.#byOperation[info.operation] = (this.#byOperation[info.operation] ?? 0) + 1;
      this.#options.onInject?.({ ...info, n, kind });
    }
    const done = (status: number | undefined): void => this.#options.onRequest?.({ ...info, ...(status !== undefined ? { status } : {}) });
    try {
      switch (kind) {
        case "throttle":
        case "server-error": {
          const answer = syntheticResponse(kind, this.#service, request.method);
          done(answer.statusCode);
          return { response: answer };
        }
        case "lost-response": {
          const { response: real } = await this.#inner.handle(request, options);
          await drain(real.body);
          done(undefined);
          throw connectionReset("connection reset after the request was carried out, before its answer arrived");
        }
        case "reset-body": {
          const { response: real } = await this.#inner.handle(request, options);
          const length = Number(real.headers["content-length"] ?? real.headers["Content-Length"] ?? 0);
          done(real.statusCode);
          // Where the body is cut: the fractional part of the draw that chose the kind.
          const at = (pick * kinds.length) % 1;
          return { response: { ...real, body: cutAfter(real.body, Math.floor(at * Math.max(0, length))) } };
        }
        case "delay":
          await delayRequest(this.#config.delayMs, options.abortSignal);
          break;
        case undefined:
          break;
      }
      const out = await this.#inner.handle(request, options);
      done(out.response.statusCode);
      return out;
    } catch (err) {
      if (kind !== "lost-response") done(undefined);
      throw err;
    }
  }

  updateHttpClientConfig(key: keyof HandlerConfig, value: HandlerConfig[typeof key]): void {
    this.#inner.updateHttpClientConfig(key, value);
  }

  httpHandlerConfigs(): HandlerConfig {
    return this.#inner.httpHandlerConfigs();
  }

  destroy(): void {
    this.#inner.destroy();
  }
}

/** AWS clients whose every request goes through a fault injector, and the injectors. */
export const faultyClients = (
  options: Omit<AwsClientOptions, "wrapHandler">,
  faults: FaultInjectionOptions,
): AwsClients & { readonly injectors: { readonly s3: FaultInjectingHandler; readonly sqs: FaultInjectingHandler } } => {
  const injectors: Partial<Record<FaultService, FaultInjectingHandler>> = {};
  const clients = awsClients({
    ...options,
    wrapHandler: (service, handler) => (injectors[service] = new FaultInjectingHandler(handler, service, faults)),
  });
  return { ...clients, injectors: { s3: injectors.s3!, sqs: injectors.sqs! } };
};
