/**
 * The fault injector (lib/dev/faultInjection.ts) against the in-process emulator, through
 * the real AWS SDK: each kind of fault has the shape the SDK expects of S3 and SQS (so its
 * own retry strategy classifies and retries it), decisions are seeded, and what the SDK gives
 * up on reaches cloudmill's adapters as a CloudmillError ENVIRONMENT.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { ReceiveMessageCommand, SendMessageBatchCommand } from "@aws-sdk/client-sqs";
import type { NodeHttpHandler } from "@smithy/node-http-handler";
import { isThrottlingError, isTransientError } from "@smithy/core/retry";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { S3BlobStore } from "../../lib/aws/S3BlobStore.js";
import { SqsTaskQueue } from "../../lib/aws/SqsTaskQueue.js";
import { awsClients, type AwsClients } from "../../lib/aws/clients.js";
import { createDevResources, startEmulator, type Emulator } from "../../lib/dev/emulator.js";
import { CloudmillError } from "../../lib/core/errors.js";
import { packageRoot } from "../../lib/local/paths.js";
import {
  describeRequest,
  FaultInjectingHandler,
  faultyClients,
  parseFaultConfig,
  type FaultInjectionOptions,
  type InjectedFault,
} from "../../lib/dev/faultInjection.js";

let emulator: Emulator;
let plain: AwsClients;
let queueUrl: string;
const BUCKET = "cloudmill-input";
const opened: AwsClients[] = [];

beforeAll(async () => {
  emulator = await startEmulator();
  plain = awsClients({ endpoint: emulator.endpoint });
  ({ taskQueueUrl: queueUrl } = await createDevResources(plain, {
    taskQueue: "fi-tasks",
    deadLetterQueue: "fi-dlq",
    visibilitySeconds: 30,
  }));
  await plain.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "fi/object.txt", Body: Buffer.alloc(256 * 1024, "abcdefgh\n") }));
}, 60_000);

afterAll(async () => {
  for (const c of [plain, ...opened]) {
    c.s3.destroy();
    c.sqs.destroy();
  }
  await emulator?.stop();
});

/** Clients whose every request goes through a fault injector with these options. */
const faulty = (faults: FaultInjectionOptions): ReturnType<typeof faultyClients> => {
  const c = faultyClients({ endpoint: emulator.endpoint }, faults);
  opened.push(c);
  return c;
};

/** The SDK's error of a call, with its metadata. */
const errorOf = async (p: Promise<unknown>): Promise<Error & { $metadata: { httpStatusCode?: number; attempts?: number } }> => {
  try {
    await p;
  } catch (err) {
    return err as Error & { $metadata: { httpStatusCode?: number; attempts?: number } };
  }
  throw new Error("expected the call to fail");
};

describe("decisions", () => {
  const okInner = {
    metadata: { handlerProtocol: "http/1.1" },
    handle: async () => ({ response: { statusCode: 200, headers: {}, body: Readable.from([]) } }),
    updateHttpClientConfig: () => {},
    httpHandlerConfigs: () => ({}),
    destroy: () => {},
  } as unknown as NodeHttpHandler;
  const request = (i: number) =>
    ({
      method: "GET",
      protocol: "http:",
      hostname: "127.0.0.1",
      port: 4566,
      path: `/b/k${i}`,
      query: {},
      headers: {},
    }) as unknown as Parameters<NodeHttpHandler["handle"]>[0];

  const run = async (options: FaultInjectionOptions, n = 4000): Promise<InjectedFault[]> => {
    const injected: InjectedFault[] = [];
    const h = new FaultInjectingHandler(okInner, "s3", {
      ...options,
      kinds: options.kinds ?? ["delay"],
      delayMs: 0,
      onInject: (f) => injected.push(f),
    });
    for (let i = 0; i < n; i++) await h.handle(request(i));
    expect(h.stats()).toMatchObject({ requests: n, injected: injected.length });
    return injected;
  };

  it("are seeded: the same seed faults the same requests, another seed others, at about the set rate", async () => {
    const a = await run({ rate: 0.05, seed: 7 });
    const b = await run({ rate: 0.05, seed: 7 });
    const c = await run({ rate: 0.05, seed: 8 });
    expect(b.map((f) => f.n)).toEqual(a.map((f) => f.n));
    expect(c.map((f) => f.n)).not.toEqual(a.map((f) => f.n));
    for (const faults of [a, c]) {
      expect(faults.length).toBeGreaterThan(4000 * 0.035);
      expect(faults.length).toBeLessThan(4000 * 0.065);
    }
  });

  it("draw every kind asked for, only on the operations asked for, and stop at the limit", async () => {
    const injected: InjectedFault[] = [];
    const h = new FaultInjectingHandler(okInner, "s3", {
      rate: 1,
      seed: 3,
      kinds: ["throttle", "server-error"],
      operations: ["GetObject"],
      onInject: (f) => injected.push(f),
    });
    for (let i = 0; i < 200; i++) await h.handle(request(i));
    await h.handle(Object.assign(request(0), { method: "HEAD" }));
    expect(new Set(injected.map((f) => f.kind))).toEqual(new Set(["throttle", "server-error"]));
    expect(injected.every((f) => f.operation === "GetObject")).toBe(true);
    expect(h.stats().byOperation).toEqual({ GetObject: 200 });
    expect((await run({ rate: 1, limit: 3 }, 50)).length).toBe(3);
  });

  it("name the S3 operation, bucket and key of path-style and virtual-hosted requests, and the SQS operation and queue", () => {
    const r = (over: Record<string, unknown>) => ({ ...request(0), ...over }) as Parameters<NodeHttpHandler["handle"]>[0];
    expect(describeRequest(r({ path: "/b/a%20b/c%2Bd.txt" }), "s3")).toEqual({
      service: "s3",
      operation: "GetObject",
      bucket: "b",
      key: "a b/c+d.txt",
    });
    expect(
      describeRequest(
        r({ method: "HEAD", hostname: "my-bucket.s3.us-east-1.amazonaws.com", path: "/_work/j/parts/0000001.part.json" }),
        "s3",
      ),
    ).toEqual({
      service: "s3",
      operation: "HeadObject",
      bucket: "my-bucket",
      key: "_work/j/parts/0000001.part.json",
    });
    expect(describeRequest(r({ path: "/b", query: { "list-type": "2", prefix: "_work/" } }), "s3")).toMatchObject({
      operation: "ListObjectsV2",
      bucket: "b",
    });
    expect(describeRequest(r({ method: "PUT", path: "/b/k", query: { partNumber: "1", uploadId: "u" } }), "s3")).toMatchObject({
      operation: "UploadPart",
    });
    expect(
      describeRequest(
        r({
          method: "POST",
          path: "/",
          headers: { "X-Amz-Target": "AmazonSQS.SendMessageBatch" },
          body: '{"QueueUrl":"http://q/1/tasks","Entries":[]}',
        }),
        "sqs",
      ),
    ).toEqual({
      service: "sqs",
      operation: "SendMessageBatch",
      queueUrl: "http://q/1/tasks",
    });
  });
});

describe("through the SDK", () => {
  it("S3 throttling is a 503 SlowDown the SDK classifies as a throttle and retries", async () => {
    const once = faulty({ rate: 1, limit: 1, kinds: ["throttle"] });
    const out = await once.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "fi/throttled.txt", Body: "x" }));
    expect(out.$metadata.attempts).toBe(2);
    expect(once.injectors!.s3.stats()).toMatchObject({ injected: 1, byKind: { throttle: 1 }, byOperation: { PutObject: 1 } });

    const always = faulty({ rate: 1, kinds: ["throttle"] });
    const err = await errorOf(always.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "fi/object.txt" })));
    expect(err.name).toBe("SlowDown");
    expect(err.$metadata).toMatchObject({ httpStatusCode: 503, attempts: 3 });
    expect(isThrottlingError(err as never)).toBe(true);
  });

  it("S3 server errors are a 500 InternalError the SDK retries as transient", async () => {
    const always = faulty({ rate: 1, kinds: ["server-error"] });
    const err = await errorOf(always.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "fi/object.txt" })));
    expect(err.name).toBe("InternalError");
    expect(err.$metadata).toMatchObject({ httpStatusCode: 500, attempts: 3 });
    expect(isTransientError(err as never)).toBe(true);
  });

  it("SQS throttling is RequestThrottled (JSON 1.0, query-compatible) the SDK classifies as a throttle and retries", async () => {
    const once = faulty({ rate: 1, limit: 1, kinds: ["throttle"] });
    const out = await once.sqs.send(
      new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: [{ Id: "0", MessageBody: "throttled once" }] }),
    );
    expect(out.$metadata.attempts).toBe(2);
    expect(out.Successful).toHaveLength(1);

    const always = faulty({ rate: 1, kinds: ["throttle"] });
    const err = await errorOf(always.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 0 })));
    expect(err.name).toBe("RequestThrottled");
    expect(isThrottlingError(err as never)).toBe(true);
    const server = faulty({ rate: 1, kinds: ["server-error"] });
    const e500 = await errorOf(server.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 0 })));
    expect(e500.$metadata.httpStatusCode).toBe(500);
    expect(isTransientError(e500 as never)).toBe(true);
    await drainQueue();
  });

  it("a lost response is carried out and then retried: a SendMessageBatch delivers its messages twice", async () => {
    await drainQueue();
    const once = faulty({ rate: 1, limit: 1, kinds: ["lost-response"] });
    const out = await once.sqs.send(
      new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: [{ Id: "0", MessageBody: "sent once, delivered twice" }] }),
    );
    expect(out.$metadata.attempts).toBe(2);
    expect((await drainQueue()).filter((b) => b === "sent once, delivered twice")).toHaveLength(2);
  });

  it("a body reset part-way reaches S3BlobStore's reader as ENVIRONMENT naming the object, never as a short read", async () => {
    const store = new S3BlobStore(faulty({ rate: 1, limit: 1, kinds: ["reset-body"], operations: ["GetObject"] }).s3, BUCKET);
    let got = 0;
    const err = await (async () => {
      try {
        for await (const chunk of await store.get("fi/object.txt")) got += chunk.byteLength;
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(CloudmillError);
    expect(err).toMatchObject({ code: "ENVIRONMENT" });
    expect((err as Error).message).toMatch(
      /^GetObject s3:\/\/cloudmill-input\/fi\/object\.txt failed: .*ECONNRESET.*\(while reading the body\)$/,
    );
    expect(got).toBeLessThan(256 * 1024);
    // The next read is whole.
    let whole = 0;
    for await (const chunk of await store.get("fi/object.txt")) whole += chunk.byteLength;
    expect(whole).toBe(256 * 1024);
  });

  it("retries the SDK gives up on reach the adapters as CloudmillError ENVIRONMENT naming the operation", async () => {
    const c = faulty({ rate: 1, kinds: ["throttle"] });
    await expect(new S3BlobStore(c.s3, BUCKET).head("fi/object.txt")).rejects.toMatchObject({
      code: "ENVIRONMENT",
      message: expect.stringMatching(/^HeadObject s3:\/\/cloudmill-input\/fi\/object\.txt failed/),
    });
    await expect(new SqsTaskQueue(c.sqs, queueUrl).receive({ waitSeconds: 0 })).rejects.toMatchObject({
      code: "ENVIRONMENT",
      message: expect.stringMatching(/^ReceiveMessage on SQS queue fi-tasks failed: RequestThrottled/),
    });
  });

  it("a delay holds the request, and an abort during the delay ends it at once", async () => {
    const c = faulty({ rate: 1, limit: 1, kinds: ["delay"], delayMs: 400 });
    const started = performance.now();
    await c.sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: [{ Id: "0", MessageBody: "late" }] }));
    expect(performance.now() - started).toBeGreaterThanOrEqual(390);

    const slow = faulty({ rate: 1, kinds: ["delay"], delayMs: 30_000 });
    const abort = new AbortController();
    const t0 = performance.now();
    const pending = errorOf(
      slow.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 0 }), { abortSignal: abort.signal }),
    );
    setTimeout(() => abort.abort(), 100);
    expect((await pending).name).toBe("AbortError");
    expect(performance.now() - t0).toBeLessThan(5_000);
    await drainQueue();
  });
});

describe("the fault configuration handed to a dev-cloud worker", () => {
  it("is parsed with its defaults", () => {
    expect(parseFaultConfig('{"rate":0.05,"seed":7}', "arg")).toEqual({ rate: 0.05, seed: 7, delayMs: 1000 });
    expect(parseFaultConfig('{"rate":0.5,"kinds":["throttle"],"operations":["GetObject"]}', "arg")).toMatchObject({
      kinds: ["throttle"],
      operations: ["GetObject"],
      seed: 1,
    });
  });

  it("is named in lib/ only by the dev cloud", async () => {
    const users: string[] = [];
    for (const entry of await readdir(path.join(packageRoot, "lib"), { recursive: true })) {
      if (!entry.endsWith(".ts")) continue;
      const text = await readFile(path.join(packageRoot, "lib", entry), "utf8");
      if (/faultInjection\.js|FaultInjectingHandler|CLOUDMILL_FAULTS/.test(text)) users.push(entry);
    }
    expect(users.sort()).toEqual(["dev/devCloud.ts", "dev/faultInjection.ts", "dev/faultyWorker.ts"]);
  });

  it.each([
    ["not JSON", "{rate:", /^--faults: not valid JSON/],
    ["a rate above 1", '{"rate":2}', /^--faults: rate: /],
    ["an unknown kind", '{"rate":0.1,"kinds":["meteor"]}', /^--faults: kinds\.0: /],
    ["an unknown field", '{"rate":0.1,"sead":7}', /^--faults: value: /],
  ])("refuses %s with an error naming where it came from", (_what, value, message) => {
    expect(() => parseFaultConfig(value, "--faults")).toThrow(
      expect.objectContaining({ code: "ENVIRONMENT", message: expect.stringMatching(message) }),
    );
  });
});

/** Receives and deletes everything visible on the test queue; returns the bodies. */
async function drainQueue(): Promise<string[]> {
  const q = new SqsTaskQueue(plain.sqs, queueUrl);
  const bodies: string[] = [];
  for (;;) {
    const ms = await q.receive({ maxMessages: 10, waitSeconds: 0 });
    if (ms.length === 0) return bodies;
    for (const m of ms) {
      bodies.push(m.body);
      await q.delete(m.receiptHandle);
    }
  }
}
