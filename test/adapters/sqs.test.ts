import { Readable } from "node:stream";
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from "@aws-sdk/client-sqs";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { describe, expect, it } from "vitest";
import { SqsTaskQueue } from "../../lib/aws/SqsTaskQueue.js";
import { createDevResources, startEmulator } from "../../lib/dev/emulator.js";
import { awsClients } from "../../lib/aws/clients.js";
import { waitFor } from "../helpers/devCloud.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { describeTaskQueueContract } from "../contract/taskQueueContract.js";
import { useEmulator } from "../helpers/emulator.js";

const aws = useEmulator();

describeTaskQueueContract("SqsTaskQueue (emulated)", async ({ visibilitySeconds, maxReceiveCount }) => {
  const { url, deadLetterUrl } = await aws.freshQueue({ visibilitySeconds, maxReceiveCount });
  return { queue: new SqsTaskQueue(aws.sqs, url), deadLetter: new SqsTaskQueue(aws.sqs, deadLetterUrl) };
});

type HttpRequest = Parameters<NodeHttpHandler["handle"]>[0];
type HandleResult = Awaited<ReturnType<NodeHttpHandler["handle"]>>;
interface BatchEntry {
  Id: string;
  MessageBody: string;
}
/** What to do with one entry of a SendMessageBatch: pass it on, or fail it (retryable or not). */
type Verdict = "pass" | "fail" | "sender-fault";

/** A batch request's answer as SQS sent it. */
const batchAnswer = async (response: HandleResult["response"]): Promise<{ Successful?: unknown[]; Failed?: unknown[] }> => {
  const chunks: Buffer[] = [];
  for await (const c of response.body as Readable) chunks.push(Buffer.from(c as Uint8Array));
  return JSON.parse(Buffer.concat(chunks).toString()) as { Successful?: unknown[]; Failed?: unknown[] };
};

/** An answer of SQS's JSON protocol, as the handler gives it to the SDK. */
const answered = (output: object): HandleResult => {
  const body = Buffer.from(JSON.stringify(output));
  return {
    response: {
      statusCode: 200,
      headers: { "content-type": "application/x-amz-json-1.0", "content-length": String(body.length) },
      body: Readable.from([body]),
    },
  } as HandleResult;
};

/**
 * A request handler in front of the real one that makes SQS fail some SendMessageBatch entries
 * (they are taken out of the request and reported as Failed) or whole requests.
 */
class FaultyHandler {
  readonly inner = new NodeHttpHandler();
  batchRequests = 0;

  constructor(
    private readonly verdict: (entry: BatchEntry) => Verdict,
    private readonly dropRequest: (n: number) => boolean = () => false,
  ) {}

  async handle(request: HttpRequest, options?: Parameters<NodeHttpHandler["handle"]>[1]): Promise<HandleResult> {
    if (request.headers["x-amz-target"] !== "AmazonSQS.SendMessageBatch") return this.inner.handle(request, options);
    this.batchRequests++;
    if (this.dropRequest(this.batchRequests)) {
      throw Object.assign(new Error("socket hang up (injected)"), { code: "ECONNRESET" });
    }
    const input = JSON.parse(Buffer.from(request.body as string | Uint8Array).toString()) as { QueueUrl: string; Entries: BatchEntry[] };
    const failed: { Id: string; SenderFault: boolean; Code: string; Message: string }[] = [];
    const kept = input.Entries.filter((e) => {
      const v = this.verdict(e);
      if (v !== "pass") failed.push({ Id: e.Id, SenderFault: v === "sender-fault", Code: "InternalError", Message: "injected failure" });
      return v === "pass";
    });
    let output: { Successful?: unknown[]; Failed?: unknown[] } = { Successful: [] };
    if (kept.length > 0) {
      request.body = JSON.stringify({ ...input, Entries: kept });
      request.headers["content-length"] = String(Buffer.byteLength(request.body as string));
      const { response } = await this.inner.handle(request, options);
      output = await batchAnswer(response);
    }
    return answered({ ...output, Failed: [...(output.Failed ?? []), ...failed] });
  }

  updateHttpClientConfig(key: never, value: never): void {
    this.inner.updateHttpClientConfig(key, value);
  }

  httpHandlerConfigs(): ReturnType<NodeHttpHandler["httpHandlerConfigs"]> {
    return this.inner.httpHandlerConfigs();
  }

  destroy(): void {
    this.inner.destroy();
  }
}

const faultyClient = (handler: FaultyHandler): SQSClient =>
  new SQSClient({
    endpoint: aws.emulator.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
    requestHandler: handler,
    maxAttempts: 1, // so our own retries are what is under test
  });

/** A handler that fails nothing and notes each SQS request's action. */
class CountingHandler extends FaultyHandler {
  readonly targets: string[] = [];

  constructor() {
    super(() => "pass");
  }

  override handle(request: HttpRequest, options?: Parameters<NodeHttpHandler["handle"]>[1]): Promise<HandleResult> {
    this.targets.push(String(request.headers["x-amz-target"]));
    return super.handle(request, options);
  }
}

/**
 * A handler that takes two entries out of each DeleteMessageBatch: the first it reports Failed,
 * the second it leaves out of the answer altogether (neither Successful nor Failed).
 */
class TamperedDeletes extends FaultyHandler {
  constructor() {
    super(() => "pass");
  }

  override async handle(request: HttpRequest, options?: Parameters<NodeHttpHandler["handle"]>[1]): Promise<HandleResult> {
    if (request.headers["x-amz-target"] !== "AmazonSQS.DeleteMessageBatch") return super.handle(request, options);
    const input = JSON.parse(Buffer.from(request.body as string | Uint8Array).toString()) as {
      QueueUrl: string;
      Entries: { Id: string; ReceiptHandle: string }[];
    };
    // The second entry is the one left unanswered.
    const [failed, , ...kept] = input.Entries;
    request.body = JSON.stringify({ ...input, Entries: kept });
    request.headers["content-length"] = String(Buffer.byteLength(request.body as string));
    const { response } = await this.inner.handle(request, options);
    const output = await batchAnswer(response);
    return answered({
      ...output,
      Failed: [...(output.Failed ?? []), { Id: failed!.Id, SenderFault: false, Code: "InternalError", Message: "injected" }],
    });
  }
}

/** Receives and deletes everything, returning the bodies. */
const drain = async (queue: SqsTaskQueue): Promise<string[]> => {
  const bodies: string[] = [];
  for (;;) {
    const got = await queue.receive({ maxMessages: 10 });
    if (got.length === 0) return bodies;
    for (const m of got) {
      bodies.push(m.body);
      await queue.delete(m.receiptHandle);
    }
  }
};

const bodies25 = Array.from({ length: 25 }, (_, i) => `task-${i}`);

describe("SqsTaskQueue", () => {
  it("deletes made together go in DeleteMessageBatch requests of up to 10, a stale handle among them", async () => {
    const { url } = await aws.freshQueue();
    const queue = new SqsTaskQueue(aws.sqs, url);
    await queue.sendBatch(bodies25);
    const received = [];
    while (received.length < 25) received.push(...(await queue.receive({ maxMessages: 10 })));
    const counted = new CountingHandler();
    const client = faultyClient(counted);
    try {
      const deleting = new SqsTaskQueue(client, url);
      await Promise.all([...received.map((m) => deleting.delete(m.receiptHandle)), deleting.delete(received[0]!.receiptHandle)]);
      expect(counted.targets).toEqual(["AmazonSQS.DeleteMessageBatch", "AmazonSQS.DeleteMessageBatch", "AmazonSQS.DeleteMessageBatch"]);
      expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0 });
    } finally {
      client.destroy();
    }
  });

  it("a batched delete that SQS failed, or did not answer for, is not taken for done: its message stays", async () => {
    const { url } = await aws.freshQueue();
    const queue = new SqsTaskQueue(aws.sqs, url);
    await queue.sendBatch(bodies25.slice(0, 5));
    const received = [];
    while (received.length < 5) received.push(...(await queue.receive({ maxMessages: 10 })));
    const client = faultyClient(new TamperedDeletes());
    try {
      const deleting = new SqsTaskQueue(client, url);
      const settled = await Promise.allSettled(received.map((m) => deleting.delete(m.receiptHandle)));
      expect(settled.map((s) => s.status)).toEqual(["rejected", "rejected", "fulfilled", "fulfilled", "fulfilled"]);
      expect(String((settled[0] as PromiseRejectedResult).reason)).toMatch(/DeleteMessageBatch .* InternalError/);
      expect(String((settled[1] as PromiseRejectedResult).reason)).toMatch(/DeleteMessageBatch .* no answer/);
      expect(await queue.depth()).toEqual({ visible: 0, inFlight: 2 });
    } finally {
      client.destroy();
    }
  });

  it("retries only the entries SQS failed, so each message arrives exactly once", async () => {
    const { url } = await aws.freshQueue();
    const attempts = new Map<string, number>();
    const handler = new FaultyHandler((e) => {
      const n = (attempts.get(e.MessageBody) ?? 0) + 1;
      attempts.set(e.MessageBody, n);
      // Every third message fails twice before it is taken.
      return Number(e.MessageBody.slice(5)) % 3 === 0 && n <= 2 ? "fail" : "pass";
    });
    const client = faultyClient(handler);
    try {
      await new SqsTaskQueue(client, url, { sendConcurrency: 2 }).sendBatch(bodies25);
      expect(handler.batchRequests).toBe(3 * 3);
      expect([...attempts.values()].filter((n) => n === 3).length).toBe(9);
      expect((await drain(new SqsTaskQueue(aws.sqs, url))).sort()).toEqual([...bodies25].sort());
    } finally {
      client.destroy();
    }
  });

  it("keeps each SendMessageBatch within SQS's 1 MiB for all its messages together (packed chunks make big ones)", async () => {
    const { url } = await aws.freshQueue();
    let largest = 0;
    const handler = new FaultyHandler((e) => {
      return e.MessageBody.length > 0 ? "pass" : "fail";
    });
    const inner = handler.handle.bind(handler);
    handler.handle = async (request, options) => {
      if (request.headers["x-amz-target"] === "AmazonSQS.SendMessageBatch") {
        const entries = (JSON.parse(Buffer.from(request.body as string | Uint8Array).toString()) as { Entries: BatchEntry[] }).Entries;
        largest = Math.max(
          largest,
          entries.reduce((n, e) => n + Buffer.byteLength(e.MessageBody), 0),
        );
      }
      return inner(request, options);
    };
    const client = faultyClient(handler);
    // Ten messages of 200 KB in three-byte characters: 600 KB each in UTF-8.
    const bodies = Array.from({ length: 10 }, (_, i) => `${i}:${"€".repeat(200_000)}`);
    try {
      await new SqsTaskQueue(client, url).sendBatch(bodies);
      expect(largest).toBeGreaterThan(500_000);
      expect(largest).toBeLessThanOrEqual(1024 * 1024);
      expect(handler.batchRequests).toBe(10);
      expect((await drain(new SqsTaskQueue(aws.sqs, url))).sort()).toEqual([...bodies].sort());
    } finally {
      client.destroy();
    }
  });

  it("rejects with one line saying how many could not be sent and why, having sent the rest", async () => {
    const { url } = await aws.freshQueue();
    const handler = new FaultyHandler((e) => (e.MessageBody === "task-3" || e.MessageBody === "task-17" ? "fail" : "pass"));
    const client = faultyClient(handler);
    try {
      const err = await new SqsTaskQueue(client, url, { maxSendRetries: 2 }).sendBatch(bodies25).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CloudmillError);
      expect((err as CloudmillError).code).toBe(ErrorCode.ENVIRONMENT);
      expect((err as CloudmillError).message).toMatch(
        /^could not send 2 of 25 messages to SQS queue test-.*: InternalError: injected failure \(3 attempts\)$/,
      );
      expect((await drain(new SqsTaskQueue(aws.sqs, url))).length).toBe(23);
    } finally {
      client.destroy();
    }
  });

  it("does not retry entries rejected as the sender's fault", async () => {
    const { url } = await aws.freshQueue();
    const handler = new FaultyHandler((e) => (e.MessageBody === "task-0" ? "sender-fault" : "pass"));
    const client = faultyClient(handler);
    try {
      await expect(new SqsTaskQueue(client, url).sendBatch(bodies25.slice(0, 5))).rejects.toThrow(/could not send 1 of 5 .*\(1 attempt\)/);
      expect(handler.batchRequests).toBe(1);
    } finally {
      client.destroy();
    }
  });

  it("retries whole requests that fail on the wire", async () => {
    const { url } = await aws.freshQueue();
    const handler = new FaultyHandler(
      () => "pass",
      (n) => n <= 2,
    );
    const client = faultyClient(handler);
    try {
      await new SqsTaskQueue(client, url, { sendConcurrency: 1 }).sendBatch(bodies25);
      expect(handler.batchRequests).toBe(2 + 3);
      expect((await drain(new SqsTaskQueue(aws.sqs, url))).sort()).toEqual([...bodies25].sort());
    } finally {
      client.destroy();
    }
  });

  it("reports a missing queue as ENVIRONMENT with the AWS error name", async () => {
    const { url } = await aws.freshQueue();
    const queue = new SqsTaskQueue(aws.sqs, `${url}-gone`);
    await expect(queue.depth()).rejects.toMatchObject({
      code: ErrorCode.ENVIRONMENT,
      message: expect.stringContaining("QueueDoesNotExist"),
    });
    await expect(queue.sendBatch(["x"])).rejects.toThrow(/could not send 1 of 1 .*QueueDoesNotExist.*\(1 attempt\)/);
  });
});

describe("createDevResources", () => {
  it("creates buckets and a task queue that redrives to its dead-letter queue, idempotently", async () => {
    const names = {
      inputBucket: "dev-in-test",
      outputBucket: "dev-out-test",
      taskQueue: "dev-tasks-test",
      deadLetterQueue: "dev-dlq-test",
      partsQueue: "dev-parts-test",
      maxReceiveCount: 1,
      visibilitySeconds: 30,
    };
    const first = await createDevResources(aws, names);
    const again = await createDevResources(aws, names);
    expect(again).toEqual(first);
    expect(first.partsQueueUrl).toBeDefined();
    const changed = await createDevResources(aws, { ...names, visibilitySeconds: 45 });
    expect(changed.taskQueueUrl).toBe(first.taskQueueUrl);
    const { Attributes } = await aws.sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: first.taskQueueUrl, AttributeNames: ["VisibilityTimeout"] }),
    );
    expect(Attributes?.["VisibilityTimeout"]).toBe("45");

    const tasks = new SqsTaskQueue(aws.sqs, first.taskQueueUrl);
    await tasks.sendBatch(["doomed"]);
    const [msg] = await tasks.receive();
    await tasks.changeVisibility(msg!.receiptHandle, 0);
    expect(await tasks.receive()).toEqual([]);
    const [dead] = await new SqsTaskQueue(aws.sqs, first.deadLetterQueueUrl).receive();
    expect(dead?.body).toBe("doomed");
  });

  it("delivers a service's notification to a queue in process: a long poll gets it, SQS's checks apply, one request counted", async () => {
    const { url } = await aws.freshQueue({ visibilitySeconds: 30, maxReceiveCount: 3 });
    const queue = new SqsTaskQueue(aws.sqs, url);
    const before = aws.emulator.requests().sqs;
    const polled = queue.receive({ waitSeconds: 5 });
    aws.emulator.deliver(url, '{"Records":[{"s3":{"object":{"key":"k"}}}]}');
    const [got] = await polled;
    expect(got?.body).toBe('{"Records":[{"s3":{"object":{"key":"k"}}}]}');
    // The delivery and the client's one ReceiveMessage.
    expect(aws.emulator.requests().sqs - before).toBe(2);
    expect(() => aws.emulator.deliver(url, "bad \u0000 body")).toThrow(/Invalid characters/);
    expect(() => aws.emulator.deliver(`${url}-missing`, "x")).toThrow();
  });
});

describe("the emulator's long polls", () => {
  it("like SQS, give the next message to a poll whose client left: hidden for its visibility timeout, that receive counted", async () => {
    const { url } = await aws.freshQueue({ visibilitySeconds: 2 });
    const queue = new SqsTaskQueue(aws.sqs, url);
    const ac = new AbortController();
    const polling = queue.receive({ waitSeconds: 20, signal: ac.signal });
    await waitFor("the poll to wait", () => (aws.emulator.longPolls() > 0 ? true : undefined), 10_000, 10);
    ac.abort();
    expect(await polling).toEqual([]);
    await queue.sendBatch(["swallowed"]);
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 1 });
    const [msg] = await queue.receive({ waitSeconds: 20 });
    expect(msg).toMatchObject({ body: "swallowed", receiveCount: 2 });
  });

  it("end at once when hurried (a dev cloud's teardown), and answer later ones without waiting", async () => {
    const emulator = await startEmulator({ port: 0 });
    const { sqs } = awsClients({ endpoint: emulator.endpoint, region: "us-east-1" }, {});
    try {
      const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: "hurried" }));
      const queue = new SqsTaskQueue(sqs, QueueUrl!);
      const started = Date.now();
      const polling = queue.receive({ waitSeconds: 20 });
      await waitFor("the poll to wait", () => (emulator.longPolls() > 0 ? true : undefined), 10_000, 10);
      emulator.hurryLongPolls();
      expect(await polling).toEqual([]);
      expect(await queue.receive({ waitSeconds: 20 })).toEqual([]);
      // Well within one long poll of 20 s, never a narrow window.
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      sqs.destroy();
      await emulator.stop();
    }
  });
});
