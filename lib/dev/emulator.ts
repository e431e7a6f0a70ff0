/**
 * An emulated AWS (S3 + SQS wire protocols) in this process, on 127.0.0.1: what tests and
 * `cloudmill dev` run against. Built on fauxqs 1.9.2, with its gaps filled here:
 *
 * - S3 event notifications: a successful PutObject / CopyObject / CompleteMultipartUpload
 *   becomes an AWS-shaped ObjectCreated record handed to `onObjectCreated` listeners after
 *   the response is sent.
 * - Body limit: raised from 11 MiB to 1 GiB, so single PUTs (e.g. `aws s3 cp` of a large
 *   part) are not refused. Everything is held in memory, so keep dev data modest.
 * - Bodies are bytes: a PUT sent as `application/x-www-form-urlencoded` (curl's default for
 *   `--data-binary`, common with presigned URLs) is stored as sent, not parsed as a form.
 * - Listing order: fauxqs sorts keys with localeCompare (so `B` < `a` fails, and pages can
 *   skip keys); S3 lists in UTF-8 byte order, which this emulator restores.
 * - Message bodies: fauxqs refuses characters beyond U+FFFF (emoji) that SQS accepts; fixed.
 * - Abandoned long polls are left as SQS leaves them: a client that aborts a ReceiveMessage
 *   may lose the next message to it (hidden for its visibility timeout, its receive counted),
 *   so a client must not abort one it cares about. `hurryLongPolls` ends them for a teardown.
 * - POST-policy uploads (browser forms, boto3's presigned POST) and UploadPartCopy (a large
 *   `aws s3 cp` from one key to another), which fauxqs lacks: answered here (s3Forms.ts).
 * - An empty PUT without a Content-Type, or one sent as SQS's JSON type, is bytes too.
 * - ListObjectsV2 with `encoding-type=url`: keys and prefixes URL-encoded (a key's carriage
 *   return would reach an XML parser as a line feed).
 * - Refused as S3 refuses them: a key over 1,024 bytes (KeyTooLongError), and a body that does
 *   not match its Content-MD5 (BadDigest), which fauxqs would store.
 *
 * Queues are found only by the exact URL fauxqs issued: always take URLs from CreateQueue /
 * GetQueueUrl (createDevResources returns them), never build them.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { S3Event, S3EventRecord } from "aws-lambda";
import { buildApp } from "fauxqs";
import type { BuildAppOptions } from "fauxqs";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import type { S3Client } from "@aws-sdk/client-s3";
import { CreateQueueCommand, GetQueueAttributesCommand, GetQueueUrlCommand, SetQueueAttributesCommand } from "@aws-sdk/client-sqs";
import type { SQSClient } from "@aws-sdk/client-sqs";
import { DEFAULTS, DEV_BUCKETS, DEV_QUEUES } from "../core/constants.js";
import { fitsS3Key } from "../core/keys.js";
import { escapeXml, S3Refusal, isFormUpload, parseFormUpload, partCopySource, postResponseXml, s3ErrorXml } from "./s3Forms.js";

export type ObjectCreatedListener = (event: S3Event) => void | Promise<void>;

export interface Emulator {
  /** `http://127.0.0.1:<port>`: give it to awsClients({ endpoint }). */
  readonly endpoint: string;
  readonly port: number;
  /** Calls listener with one record per object created; returns a function that unsubscribes. */
  onObjectCreated(listener: ObjectCreatedListener): () => void;
  /** Requests served so far, by kind: what a job costs in requests, as AWS would bill them. */
  requests(): RequestCounts;
  /**
   * Requests served so far, by API action (`GetObject`, `HeadObject`, `DeleteMessageBatch`, …;
   * a notification delivered to SQS is a `SendMessage`): what tests hold a task's cost to.
   */
  requestActions(): Readonly<Record<string, number>>;
  /**
   * Puts a message on a queue as an AWS service's notification does (S3 → SQS): in this process,
   * through the SendMessage action a client's request reaches (its checks, its wake-up of long
   * polls), counted as the SQS request AWS bills for it. No HTTP round trip: in the dev cloud
   * that trip through the SDK cost the emulator's one thread as much CPU as a task's own requests.
   */
  deliver(queueUrl: string, body: string): void;
  /**
   * Ends every long poll waiting now and answers later ones at once, for tearing a dev cloud
   * down: its workers, told to stop, wait for their poll's answer rather than abandon it (SQS
   * would hand a message that arrives meanwhile to the client that left, hidden and counted).
   */
  hurryLongPolls(): void;
  /** ReceiveMessage requests waiting for a message now, whether or not their client is still there. */
  longPolls(): number;
  /** Closes the server and waits for listeners already called. */
  stop(): Promise<void>;
}

export interface RequestCounts {
  /** GetObject (whole or ranged). */
  readonly s3Get: number;
  /** Every other S3 request: HEAD, PUT, LIST, DELETE, multipart. */
  readonly s3Other: number;
  readonly sqs: number;
}

/** What a request is, by its wire form: SQS's JSON or query protocol, else S3 (path style). */
const requestKind = (method: string, url: string, target: unknown): keyof RequestCounts => {
  if ((typeof target === "string" && target.startsWith("AmazonSQS")) || /[?&]Action=/.test(url)) return "sqs";
  const [path = "", query = ""] = url.split("?");
  const isObject = path.split("/").filter(Boolean).length >= 2;
  return method === "GET" && isObject && !/(^|&)(uploadId|uploads|list-type|tagging|acl)(=|&|$)/.test(query) ? "s3Get" : "s3Other";
};

/** The API action of a request, by its wire form (SQS's JSON target or query Action, else S3's method and subresource). */
const requestAction = (method: string, url: string, target: unknown): string => {
  if (typeof target === "string" && target.startsWith("AmazonSQS")) return target.slice(target.indexOf(".") + 1);
  const [path = "", query = ""] = url.split("?");
  const sqsAction = /(?:^|&)Action=([A-Za-z]+)/.exec(query)?.[1];
  if (sqsAction) return sqsAction;
  const has = (name: string): boolean => new RegExp(`(^|&)${name}(=|&|$)`).test(query);
  const isObject = path.split("/").filter(Boolean).length >= 2;
  if (!isObject) {
    if (method === "GET") return has("list-type") ? "ListObjectsV2" : "ListObjects";
    if (method === "POST" && has("delete")) return "DeleteObjects";
    return `${method} bucket`;
  }
  if (has("uploadId")) return method === "PUT" ? "UploadPart" : method === "POST" ? "CompleteMultipartUpload" : `${method} upload`;
  if (has("uploads")) return "CreateMultipartUpload";
  return { GET: "GetObject", HEAD: "HeadObject", PUT: "PutObject", DELETE: "DeleteObject", POST: "PostObject" }[method] ?? method;
};

/** A request whose body is S3 data (an object, a part, a multipart or delete listing), not query-protocol fields. */
const isS3Body = (method: string, url: string): boolean =>
  method === "PUT" || (method === "POST" && /[?&](uploads|uploadId|delete)(=|&|$)/.test(url.split("?")[1] ?? ""));

export interface EmulatorOptions {
  /** Default 0: any free port. `cloudmill dev` uses DEV_DEFAULT_PORT. */
  readonly port?: number;
  /** Default 127.0.0.1. Never 0.0.0.0 unless you mean to expose an unauthenticated S3. */
  readonly host?: string;
  /** Region in event records and of queues. Default us-east-1. */
  readonly region?: string;
}

/** Largest request body (a single PutObject or UploadPart). */
const BODY_LIMIT = 1024 * 1024 * 1024;

const refuseLongKey = (key: string): void => {
  if (!fitsS3Key(key)) throw new S3Refusal("KeyTooLongError", "Your key is too long");
};

/** S3 checks a body against its Content-MD5 (an aws-chunked body is checked by its trailer, not here). */
const checkContentMd5 = (headers: IncomingMessage["headers"], body: Buffer): void => {
  const given = headers["content-md5"];
  if (typeof given !== "string" || String(headers["content-encoding"] ?? "").includes("aws-chunked")) return;
  const digest = Buffer.from(given, "base64");
  if (digest.length !== 16 || digest.toString("base64") !== given.trim())
    throw new S3Refusal("InvalidDigest", "The Content-MD5 you specified was invalid.");
  if (!createHash("md5").update(body).digest().equals(digest))
    throw new S3Refusal("BadDigest", "The Content-MD5 you specified did not match what we received.");
};

/** An object's subresources (`?tagging`, `?acl`, …) the emulator does not keep. */
const OBJECT_SUBRESOURCES = ["tagging", "acl", "retention", "legal-hold", "torrent", "restore", "select", "attributes"] as const;

type Stores = NonNullable<BuildAppOptions["stores"]>;
type S3Store = Stores["s3Store"];
type SqsStore = Stores["sqsStore"];
type S3ListResult = ReturnType<S3Store["listObjects"]>;
type S3ListOptions = NonNullable<Parameters<S3Store["listObjects"]>[1]>;

export const startEmulator = async (options: EmulatorOptions = {}): Promise<Emulator> => {
  const region = options.region ?? "us-east-1";
  const { stores, sendMessage } = await loadStores();
  const app = buildApp({ logger: false, defaultRegion: region, stores });

  // (b) The catch-all parser carries the 11 MiB limit; replace it with a larger one.
  app.removeContentTypeParser("*");
  app.addContentTypeParser("*", { parseAs: "buffer", bodyLimit: BODY_LIMIT }, (_req, body, done) => {
    done(null, body);
  });

  // (c) An S3 body is bytes whatever its Content-Type: curl's --data-binary to a presigned URL
  // sends application/x-www-form-urlencoded, which fauxqs parses as SQS/SNS's query protocol
  // (into an object, and the PUT fails). Only a POST without an S3 subresource is that protocol.
  app.removeContentTypeParser("application/x-www-form-urlencoded");
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "buffer", bodyLimit: BODY_LIMIT }, (req, body, done) => {
    if (isS3Body(req.method, req.url)) return done(null, body);
    const fields: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams((body as Buffer).toString("utf8"))) fields[k] = v;
    done(null, fields);
  });

  // (e) An S3 body sent as SQS's JSON type is bytes too; only SQS's own requests are JSON.
  app.removeContentTypeParser("application/x-amz-json-1.0");
  app.addContentTypeParser("application/x-amz-json-1.0", { parseAs: "buffer", bodyLimit: BODY_LIMIT }, (req, body, done) => {
    if (isS3Body(req.method, req.url)) return done(null, body);
    try {
      done(null, JSON.parse((body as Buffer).toString("utf8")));
    } catch (err) {
      done(err as Error);
    }
  });
  app.addContentTypeParser("multipart/form-data", { parseAs: "buffer", bodyLimit: BODY_LIMIT }, (_req, body, done) => done(null, body));

  // (a) S3 events. onSend runs in the same tick as the handler's send(), so the store still
  // holds exactly the object this request wrote; onResponse then emits after the reply is out.
  const listeners = new Set<ObjectCreatedListener>();
  const running = new Set<Promise<void>>();
  const created = new WeakMap<object, S3EventRecord>();
  let sequence = 0;
  const recordOf = (
    request: { readonly ip: string },
    reply: { getHeader(name: string): unknown },
    bucket: string,
    key: string,
    eventName: string,
    obj: { readonly contentLength: number; readonly etag: string },
  ): S3EventRecord => ({
    eventVersion: "2.1",
    eventSource: "aws:s3",
    awsRegion: region,
    eventTime: new Date().toISOString(),
    eventName,
    userIdentity: { principalId: "AWS:CLOUDMILLDEV" },
    requestParameters: { sourceIPAddress: request.ip },
    responseElements: {
      "x-amz-request-id": String(reply.getHeader("x-amz-request-id") ?? ""),
      "x-amz-id-2": String(reply.getHeader("x-amz-id-2") ?? ""),
    },
    s3: {
      s3SchemaVersion: "1.0",
      configurationId: "cloudmill-dev",
      bucket: { name: bucket, ownerIdentity: { principalId: "CLOUDMILLDEV" }, arn: `arn:aws:s3:::${bucket}` },
      object: {
        key: encodeEventKey(key),
        size: obj.contentLength,
        eTag: obj.etag.replaceAll('"', ""),
        sequencer: `${Date.now().toString(16).padStart(12, "0")}${(sequence++).toString(16).padStart(8, "0")}`.toUpperCase(),
      },
    },
  });

  // (f) What fauxqs lacks, before its handlers run: a form upload is stored and answered here; a
  // part copy's source becomes the part's body; an empty PUT's missing body is empty bytes.
  const partCopies = new WeakSet<object>();
  let hurried = false;
  app.addHook("preHandler", async (request, reply) => {
    if (hurried && request.headers["x-amz-target"] === "AmazonSQS.ReceiveMessage" && typeof request.body === "object" && request.body)
      (request.body as { WaitTimeSeconds?: number }).WaitTimeSeconds = 0;
    const params = request.params as { bucket?: string; "*"?: string } | undefined;
    const query = request.query as Record<string, string | undefined> | undefined;
    try {
      if (isFormUpload(request.method, request.routeOptions.url, params?.["*"], request.headers["content-type"]) && params?.bucket) {
        if (!stores.s3Store.hasBucket(params.bucket)) throw new S3Refusal("NoSuchBucket", "The specified bucket does not exist", 404);
        const upload = await parseFormUpload(request.body as Buffer, request.headers["content-type"]!);
        refuseLongKey(upload.key);
        const obj = stores.s3Store.putObject(params.bucket, upload.key, upload.body, upload.contentType, upload.metadata);
        created.set(request, recordOf(request, reply, params.bucket, upload.key, "ObjectCreated:Post", obj));
        const location = `/${params.bucket}/${upload.key.split("/").map(encodeURIComponent).join("/")}`;
        reply.header("etag", obj.etag).header("location", location);
        if (upload.status !== 201) return reply.status(upload.status).send();
        return reply
          .status(201)
          .header("content-type", "application/xml")
          .send(postResponseXml(location, params.bucket, upload.key, obj.etag));
      }
      // fauxqs takes PUT /bucket/key?tagging as a PutObject of the tags' XML (and DELETE ?tagging as
      // a DeleteObject): the input would be replaced, a job run on the XML. Refused, as not kept here.
      const subresource = request.routeOptions.url === "/:bucket/*" ? OBJECT_SUBRESOURCES.find((q) => query?.[q] !== undefined) : undefined;
      if (subresource)
        throw new S3Refusal("NotImplemented", `cloudmill dev does not keep an object's ${subresource}: the object is left as it is`, 501);
      if (request.routeOptions.url === "/:bucket/*" && params?.["*"] !== undefined) refuseLongKey(params["*"]);
      if (request.method === "PUT" && Buffer.isBuffer(request.body)) checkContentMd5(request.headers, request.body);
      const source = request.headers["x-amz-copy-source"];
      if (request.method === "PUT" && query?.["uploadId"] && query["partNumber"] && typeof source === "string") {
        const { bucket, key, range } = partCopySource(source, request.headers["x-amz-copy-source-range"] as string | undefined);
        const obj = storedObject(stores.s3Store, bucket, key);
        if (!obj) throw new S3Refusal("NoSuchKey", "The specified key does not exist.", 404);
        if (range && range[1] >= obj.body.length)
          throw new S3Refusal("InvalidRange", "The x-amz-copy-source-range is past the end of the source object.");
        request.body = range ? obj.body.subarray(range[0], range[1] + 1) : obj.body;
        partCopies.add(request);
      } else if (request.body === undefined && isS3Body(request.method, request.url)) request.body = Buffer.alloc(0);
    } catch (err) {
      if (!(err instanceof S3Refusal)) throw err;
      return reply.status(err.status).header("content-type", "application/xml").send(s3ErrorXml(err.code, err.message));
    }
    return undefined;
  });

  app.addHook("onSend", (request, reply, payload, done) => {
    const params = request.params as { bucket?: string; "*"?: string } | undefined;
    const query = request.query as Record<string, string | undefined> | undefined;
    const bucket = params?.bucket;
    const key = params?.["*"];
    if (reply.statusCode === 200 && listeners.size > 0 && bucket && key && request.routeOptions.url === "/:bucket/*") {
      let eventName: string | undefined;
      if (request.method === "PUT" && !(query?.["uploadId"] && query["partNumber"])) {
        eventName = request.headers["x-amz-copy-source"] ? "ObjectCreated:Copy" : "ObjectCreated:Put";
      } else if (request.method === "POST" && query?.["uploadId"]) {
        eventName = "ObjectCreated:CompleteMultipartUpload";
      }
      const obj = eventName ? storedObject(stores.s3Store, bucket, key) : undefined;
      if (eventName && obj) created.set(request, recordOf(request, reply, bucket, key, eventName, obj));
    }
    if (partCopies.has(request) && reply.statusCode === 200) {
      // UploadPartCopy answers with its part's ETag in an XML body (UploadPart, in a header).
      reply.header("content-type", "application/xml");
      const etag = escapeXml(String(reply.getHeader("etag") ?? ""));
      payload =
        `<?xml version="1.0" encoding="UTF-8"?>\n<CopyPartResult><ETag>${etag}</ETag>` +
        `<LastModified>${new Date().toISOString()}</LastModified></CopyPartResult>`;
    }
    // (g) A listing asked for with encoding-type=url, which fauxqs ignores: names URL-encoded, as S3 does.
    const listing = request.method === "GET" && query?.["list-type"] === "2" && !key;
    if (listing && query["encoding-type"] === "url" && reply.statusCode === 200 && typeof payload === "string") {
      payload = urlEncodedListing(payload);
    }
    done(null, payload);
  });

  const counts = { s3Get: 0, s3Other: 0, sqs: 0 };
  const actions = new Map<string, number>();
  const countAction = (action: string): void => void actions.set(action, (actions.get(action) ?? 0) + 1);
  app.addHook("onResponse", (request, reply, done) => {
    const target = request.headers["x-amz-target"];
    counts[requestKind(request.method, request.url, target)]++;
    countAction(requestAction(request.method, request.url, target));
    const record = created.get(request);
    if (record && reply.statusCode >= 200 && reply.statusCode < 300) {
      for (const listener of listeners) {
        const run: Promise<void> = Promise.resolve()
          .then(() => listener({ Records: [record] }))
          .catch((err: unknown) => {
            process.stderr.write(
              `cloudmill emulator: S3 event listener failed for s3://${record.s3.bucket.name}/${record.s3.object.key}: ${
                err instanceof Error ? (err.stack ?? err.message) : String(err)
              }\n`,
            );
          })
          .finally(() => running.delete(run));
        running.add(run);
      }
    }
    done();
  });

  const host = options.host ?? "127.0.0.1";
  await app.listen({ host, port: options.port ?? 0 });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : (options.port ?? 0);

  return {
    endpoint: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    requests: () => ({ ...counts }),
    requestActions: () => Object.fromEntries(actions),
    deliver(queueUrl, body) {
      sendMessage({ QueueUrl: queueUrl, MessageBody: body }, stores.sqsStore);
      counts.sqs++;
      countAction("SendMessage");
    },
    hurryLongPolls() {
      hurried = true;
      for (const queue of stores.sqsStore.listQueues()) queue.cancelWaiters();
    },
    longPolls: () => stores.sqsStore.listQueues().reduce((n, queue) => n + queue.pollWaiters.length, 0),
    onObjectCreated(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    async stop() {
      await app.close();
      await Promise.allSettled([...running]);
    },
  };
};

const XML_ENTITIES: Readonly<Record<string, string>> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };
const unescapeXml = (text: string): string => text.replace(/&(lt|gt|amp|quot|apos);/g, (_, name: string) => XML_ENTITIES[name]!);

/** A ListObjectsV2 answer with its keys and prefixes URL-encoded, saying so. */
const urlEncodedListing = (xml: string): string =>
  xml
    .replace(/<(Key|Prefix|StartAfter|Delimiter)>([^<]*)<\/\1>/g, (_, tag: string, text: string) => {
      return `<${tag}>${escapeXml(encodeEventKey(unescapeXml(text)))}</${tag}>`;
    })
    .replace(/(<MaxKeys>\d+<\/MaxKeys>)/, "$1<EncodingType>url</EncodingType>");

/**
 * An S3 event's key: URL-encoded as S3 does in notifications (form encoding: space → `+`,
 * `+` → `%2B`, non-ASCII as UTF-8 %XX), with `/` kept. Decode with
 * `decodeURIComponent(key.replace(/\+/g, " "))`.
 */
export const encodeEventKey = (key: string): string =>
  key
    .split("/")
    .map((seg) =>
      encodeURIComponent(seg)
        .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
        .replace(/%20/g, "+"),
    )
    .join("/");

export interface DevResourceOptions {
  readonly inputBucket?: string;
  readonly outputBucket?: string;
  readonly taskQueue?: string;
  readonly deadLetterQueue?: string;
  /** Created only when named, redriving to `partsDeadLetterQueue` after DEFAULTS.partEventAttempts receives. */
  readonly partsQueue?: string;
  /** Default DEV_QUEUES.partsDeadLetters. */
  readonly partsDeadLetterQueue?: string;
  /** The parts queue's visibility timeout, and its dead-letter queue's. Default 30 s. */
  readonly partsVisibilitySeconds?: number;
  /** A spot lane's task queue, redriving to the same dead-letter queue (unset: none). */
  readonly spotTaskQueue?: string;
  /**
   * The splitter's continuation queue (unset: none; a FIFO queue's name, ending in `.fifo`),
   * redriving after 3 receives to its own FIFO dead-letter queue (default
   * DEV_QUEUES.continuationDeadLetters), as the stack's does.
   */
  readonly continuationQueue?: string;
  readonly continuationDeadLetterQueue?: string;
  /**
   * The continuation queue's visibility timeout: longer than one invocation, as the stack's (six
   * times the splitter's timeout), or a copy would list beside the one still running. Default
   * `visibilitySeconds`.
   */
  readonly continuationVisibilitySeconds?: number;
  /** Receives before a task goes to the dead-letter queue. Default DEFAULTS.maxAttempts. */
  readonly maxReceiveCount?: number;
  /** Default DEFAULTS.visibilityTimeoutSeconds. */
  readonly visibilitySeconds?: number;
}

export interface DevResources {
  readonly taskQueueUrl: string;
  readonly deadLetterQueueUrl: string;
  readonly partsQueueUrl?: string;
  readonly partsDeadLetterQueueUrl?: string;
  readonly spotTaskQueueUrl?: string;
  readonly continuationQueueUrl?: string;
  readonly continuationDeadLetterQueueUrl?: string;
}

/**
 * Creates the buckets and queues of `cloudmill dev` (names default to DEV_BUCKETS / DEV_QUEUES),
 * the task queue redriving to its dead-letter queue. Idempotent: run it again with other
 * settings and the existing queues are updated.
 */
export const createDevResources = async (
  clients: { readonly s3: S3Client; readonly sqs: SQSClient },
  options: DevResourceOptions = {},
): Promise<DevResources> => {
  for (const bucket of new Set([options.inputBucket ?? DEV_BUCKETS.input, options.outputBucket ?? DEV_BUCKETS.output])) {
    try {
      await clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
    } catch (err) {
      const name = err instanceof Error ? err.name : "";
      if (name !== "BucketAlreadyOwnedByYou" && name !== "BucketAlreadyExists") throw err;
    }
  }
  const ensureQueue = async (name: string, attributes: Record<string, string> = {}): Promise<string> => {
    try {
      const res = await clients.sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
      return res.QueueUrl!;
    } catch (err) {
      // Unmodelled SQS errors are named by their query-protocol code (AWS.SimpleQueueService.…).
      if (!(err instanceof Error && err.name.endsWith("QueueNameExists"))) throw err;
      const { QueueUrl } = await clients.sqs.send(new GetQueueUrlCommand({ QueueName: name }));
      await clients.sqs.send(new SetQueueAttributesCommand({ QueueUrl, Attributes: attributes }));
      return QueueUrl!;
    }
  };
  const arnOf = async (queueUrl: string): Promise<string | undefined> =>
    (await clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["QueueArn"] }))).Attributes?.["QueueArn"];
  const deadLetterQueueUrl = await ensureQueue(options.deadLetterQueue ?? DEV_QUEUES.deadLetters);
  const taskQueueAttributes = {
    VisibilityTimeout: String(options.visibilitySeconds ?? DEFAULTS.visibilityTimeoutSeconds),
    RedrivePolicy: JSON.stringify({
      deadLetterTargetArn: await arnOf(deadLetterQueueUrl),
      maxReceiveCount: options.maxReceiveCount ?? DEFAULTS.maxAttempts,
    }),
  };
  const taskQueueUrl = await ensureQueue(options.taskQueue ?? DEV_QUEUES.tasks, taskQueueAttributes);
  let partsQueueUrl: string | undefined;
  let partsDeadLetterQueueUrl: string | undefined;
  if (options.partsQueue !== undefined) {
    const visibility = { VisibilityTimeout: String(options.partsVisibilitySeconds ?? 30) };
    partsDeadLetterQueueUrl = await ensureQueue(options.partsDeadLetterQueue ?? DEV_QUEUES.partsDeadLetters, visibility);
    partsQueueUrl = await ensureQueue(options.partsQueue, {
      ...visibility,
      RedrivePolicy: JSON.stringify({
        deadLetterTargetArn: await arnOf(partsDeadLetterQueueUrl),
        maxReceiveCount: DEFAULTS.partEventAttempts,
      }),
    });
  }
  const spotTaskQueueUrl = options.spotTaskQueue === undefined ? undefined : await ensureQueue(options.spotTaskQueue, taskQueueAttributes);
  let continuationQueueUrl: string | undefined;
  let continuationDeadLetterQueueUrl: string | undefined;
  if (options.continuationQueue !== undefined) {
    // FIFO, as the stack's: a job's continuations (one message group) never run two at once.
    const fifo = { FifoQueue: "true", ContentBasedDeduplication: "false" };
    for (const name of [options.continuationQueue, options.continuationDeadLetterQueue ?? DEV_QUEUES.continuationDeadLetters])
      if (!name.endsWith(".fifo"))
        throw new Error(`the continuation queues are FIFO: their names end in .fifo, not ${JSON.stringify(name)}`);
    continuationDeadLetterQueueUrl = await ensureQueue(options.continuationDeadLetterQueue ?? DEV_QUEUES.continuationDeadLetters, fifo);
    continuationQueueUrl = await ensureQueue(options.continuationQueue, {
      ...fifo,
      VisibilityTimeout: String(options.continuationVisibilitySeconds ?? options.visibilitySeconds ?? DEFAULTS.visibilityTimeoutSeconds),
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: await arnOf(continuationDeadLetterQueueUrl), maxReceiveCount: 3 }),
    });
  }
  return {
    ...(continuationQueueUrl === undefined ? {} : { continuationQueueUrl, continuationDeadLetterQueueUrl }),
    taskQueueUrl,
    deadLetterQueueUrl,
    ...(partsQueueUrl === undefined ? {} : { partsQueueUrl, partsDeadLetterQueueUrl }),
    ...(spotTaskQueueUrl === undefined ? {} : { spotTaskQueueUrl }),
  };
};

/** fauxqs's SendMessage action, as its router calls it with a request's fields. */
type SendMessageAction = (body: { readonly QueueUrl: string; readonly MessageBody: string }, store: SqsStore) => unknown;

/**
 * fauxqs's stores, with S3 listing in byte order. The store classes are not exported by the
 * package, so they are loaded from beside its entry point (fauxqs is pinned at 1.9.2).
 */
const loadStores = async (): Promise<{ readonly stores: Stores; readonly sendMessage: SendMessageAction }> => {
  const entry = import.meta.resolve("fauxqs");
  const load = async <T>(path: string, name: string): Promise<new () => T> => {
    const mod = (await import(new URL(path, entry).href)) as Record<string, unknown>;
    const ctor = mod[name];
    if (typeof ctor !== "function") throw new Error(`fauxqs ${path} has no ${name}: is fauxqs still 1.9.2?`);
    return ctor as new () => T;
  };
  const [S3StoreClass, SqsStoreClass, SnsStoreClass, sqsTypes, sendActions] = await Promise.all([
    load<S3Store>("./s3/s3Store.js", "S3Store"),
    load<SqsStore>("./sqs/sqsStore.js", "SqsStore"),
    load<Stores["snsStore"]>("./sns/snsStore.js", "SnsStore"),
    import(new URL("./sqs/sqsTypes.js", entry).href) as Promise<{ INVALID_MESSAGE_BODY_CHAR?: unknown }>,
    import(new URL("./sqs/actions/sendMessage.js", entry).href) as Promise<{ sendMessage?: unknown }>,
  ]);
  if (typeof sendActions.sendMessage !== "function")
    throw new Error("fauxqs sqs/actions/sendMessage.js has no sendMessage: is fauxqs still 1.9.2?");
  const sendMessage = sendActions.sendMessage as SendMessageAction;
  // SQS accepts #x10000–#x10FFFF (emoji, …) in bodies; fauxqs tests UTF-16 units and refuses
  // them. Its send actions share this one RegExp object, so recompile it with the full rule.
  const invalidBodyChar = sqsTypes.INVALID_MESSAGE_BODY_CHAR;
  if (!(invalidBodyChar instanceof RegExp)) throw new Error("fauxqs sqsTypes.js has no INVALID_MESSAGE_BODY_CHAR: is fauxqs still 1.9.2?");
  invalidBodyChar.compile("[^\\x09\\x0A\\x0D\\x20-\\uD7FF\\uE000-\\uFFFD\\u{10000}-\\u{10FFFF}]", "u");
  const s3Store = new S3StoreClass();
  const localeList = s3Store.listObjects.bind(s3Store);
  s3Store.listObjects = (bucket, opts) => listInByteOrder(localeList, bucket, opts);
  return { stores: { s3Store, sqsStore: new SqsStoreClass(), snsStore: new SnsStoreClass() }, sendMessage };
};

const byteCompare = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** S3's ListObjects semantics in UTF-8 byte order, over fauxqs's full (locale-sorted) listing. */
const listInByteOrder = (localeList: S3Store["listObjects"], bucket: string, opts: S3ListOptions = {}): S3ListResult => {
  const prefix = opts.prefix ?? "";
  const after = opts.startAfter || opts.marker || "";
  const maxKeys = opts.maxKeys ?? 1000;
  const all = localeList(bucket, { prefix, maxKeys: Number.MAX_SAFE_INTEGER }).objects;
  all.sort((a, b) => byteCompare(a.key, b.key));
  const objects: S3ListResult["objects"] = [];
  const commonPrefixes: string[] = [];
  let isTruncated = false;
  for (const obj of all) {
    if (after && byteCompare(obj.key, after) <= 0) continue;
    const cut = opts.delimiter ? obj.key.indexOf(opts.delimiter, prefix.length) : -1;
    const common = cut >= 0 ? obj.key.slice(0, cut + opts.delimiter!.length) : undefined;
    if (common !== undefined && (common === commonPrefixes.at(-1) || (after && byteCompare(common, after) <= 0))) continue;
    if (objects.length + commonPrefixes.length >= maxKeys) {
      isTruncated = true;
      break;
    }
    if (common !== undefined) commonPrefixes.push(common);
    else objects.push(obj);
  }
  return { objects, commonPrefixes, isTruncated };
};

/** The object a request just wrote, or undefined (never throws inside a hook). */
const storedObject = (store: S3Store, bucket: string, key: string): ReturnType<S3Store["headObject"]> | undefined => {
  try {
    return store.headObject(bucket, key);
  } catch {
    return undefined;
  }
};
