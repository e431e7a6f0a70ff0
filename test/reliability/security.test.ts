/**
 * The security review, as tests:
 * - no data resource is reachable without TLS or from the public (every bucket and queue of
 *   the synthesized stack, so a new one added without the guard fails too);
 * - each role may do exactly what its code does: every S3/SQS request each role makes (recorded
 *   at the SDK's request handler while the real role code runs against the emulator) must be
 *   allowed by that role's synthesized policy, and every data grant must be used by some request;
 * - uploads cannot choose code, only a registered op;
 * - the test-only fault switch is never set by the stack.
 * (Logs carrying no object contents or credentials: test/reliability/hostileInputs.test.ts.)
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { DeleteObjectCommand, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { App } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import * as ecs from "aws-cdk-lib/aws-ecs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CloudmillStack } from "../../infra/CloudmillStack.js";
import { FsBlobStore } from "../../lib/fs/FsBlobStore.js";
import { SpillStore } from "../../lib/aws/SpillStore.js";
import { MemoryTaskQueue } from "../../lib/local/MemoryTaskQueue.js";
import { SqsTaskQueue } from "../../lib/aws/SqsTaskQueue.js";
import { SqsPartNotifier } from "../../lib/aws/SqsPartNotifier.js";
import { SqsWakeSender } from "../../lib/aws/SqsWakeSender.js";
import { awsClients, type AwsClients } from "../../lib/aws/clients.js";
import { cloudDeps, cloudSplitDeps } from "../../lib/aws/cloudDeps.js";
import { DEV_BUCKETS } from "../../lib/core/constants.js";
import { failureKey, jobSpecOutputKeys, partKey, partsPrefix, pastEndKey, retryRequestKey } from "../../lib/core/keys.js";
import { createDevResources, encodeEventKey, startEmulator, type Emulator } from "../../lib/dev/emulator.js";
import { silentLogger } from "../../lib/core/log.js";
import { OpRegistry } from "../../lib/core/ops/registry.js";
import { packageRoot } from "../../lib/local/paths.js";
import { continuationHandler, deadLetterHandler, reducerHandler } from "../../lib/aws/handlers.js";
import { SqsContinuationSender } from "../../lib/aws/SqsContinuationSender.js";
import { CloudmillError, ErrorCode } from "../../lib/core/errors.js";
import { failJob } from "../../lib/core/pipeline/deadLetter.js";
import { handleObjectCreated, type TriggerConfig } from "../../lib/core/pipeline/trigger.js";
import type { PipelineDeps } from "../../lib/core/pipeline/deps.js";
import { faultyClients, type CompletedRequest, type FaultInjectionOptions } from "../../lib/dev/faultInjection.js";
import { TaskWorker } from "../../lib/aws/TaskWorker.js";
import { startUsageReports } from "../../lib/aws/usage.js";
import { opsRegistry } from "../../lib/core/ops/opModules.js";
import { ThreadItemRunner } from "../../lib/sandbox/ThreadItemRunner.js";
import { TASKS_MODULE } from "../helpers/tasks.js";
import { flat } from "../infra/synth.js";
import { waitFor } from "./helpers.js";

// ── The synthesized stack ──────────────────────────────────────────────────────────────────

type Resource = { Type: string; Properties?: Record<string, unknown> };
interface Statement {
  Sid?: string;
  Effect: string;
  Principal?: unknown;
  Action: string | string[];
  Resource?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

let template: Template;
let resources: Record<string, Resource>;

beforeAll(() => {
  // Functions are not bundled and the worker image is not built: the template is what matters.
  const cdkJson = JSON.parse(readFileSync(path.join(packageRoot, "cdk.json"), "utf8")) as { context: Record<string, unknown> };
  const app = new App({ context: { ...cdkJson.context, "aws:cdk:bundling-stacks": [] } });
  const stack = new CloudmillStack(app, "SecurityReview", {
    pipeline: {
      labName: "security",
      alertEmail: "pi@lab.example.org",
      workerImage: ecs.ContainerImage.fromRegistry("cloudmill-worker:review"),
    },
  });
  template = Template.fromStack(stack);
  resources = template.toJSON()["Resources"] as Record<string, Resource>;
}, 120_000);

const ofType = (type: string): [string, Resource][] => Object.entries(resources).filter(([, r]) => r.Type === type);
const one = (type: string, prefix: string): string => {
  const found = ofType(type).filter(([id]) => id.startsWith(prefix));
  if (found.length !== 1) throw new Error(`expected one ${type} ${prefix}*, found ${found.map(([id]) => id).join(", ") || "none"}`);
  return found[0]![0];
};
const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Allow statements of the policies attached to a role. */
const statementsOf = (roleId: string): Statement[] =>
  ofType("AWS::IAM::Policy")
    .filter(([, p]) => list(p.Properties?.["Roles"] as { Ref: string }[]).some((r) => r.Ref === roleId))
    .flatMap(([, p]) => (p.Properties?.["PolicyDocument"] as { Statement: Statement[] } | undefined)?.Statement ?? []);

const isPublic = (principal: unknown): boolean =>
  principal === "*" ||
  (typeof principal === "object" && principal !== null && list((principal as { AWS?: unknown }).AWS).some((p) => p === "*"));

describe("no data resource is reachable without TLS or from the public", () => {
  it("every bucket blocks public access and is encrypted, and its policy denies any request without TLS (1.2+)", () => {
    const buckets = ofType("AWS::S3::Bucket");
    expect(buckets.length).toBeGreaterThanOrEqual(2);
    const policies = ofType("AWS::S3::BucketPolicy").map(([, p]) => p.Properties!);
    for (const [id, bucket] of buckets) {
      expect(bucket.Properties?.["PublicAccessBlockConfiguration"], id).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
      expect(bucket.Properties?.["BucketEncryption"], id).toBeDefined();
      const policy = policies.find((p) => (p["Bucket"] as { Ref?: string }).Ref === id);
      expect(policy, `${id} has no bucket policy`).toBeDefined();
      const statements = (policy!["PolicyDocument"] as { Statement: Statement[] }).Statement;
      const denyPlain = statements.find(
        (s) =>
          s.Effect === "Deny" &&
          isPublic(s.Principal) &&
          list(s.Action).includes("s3:*") &&
          s.Condition?.["Bool"]?.["aws:SecureTransport"] === "false",
      );
      expect(denyPlain, `${id} does not deny requests without TLS`).toBeDefined();
      // The deny covers the bucket and every object in it.
      expect(list(denyPlain!.Resource).map(flat).sort()).toEqual([`<${id}>`, `<${id}>/*`]);
      expect(
        statements.some((s) => s.Effect === "Deny" && s.Condition?.["NumericLessThan"]?.["s3:TlsVersion"] === 1.2),
        `${id} accepts TLS < 1.2`,
      ).toBe(true);
    }
  });

  it("every queue is encrypted, and its policy denies any request without TLS", () => {
    const queues = ofType("AWS::SQS::Queue");
    expect(queues.length).toBeGreaterThanOrEqual(3);
    const policies = ofType("AWS::SQS::QueuePolicy").map(([, p]) => p.Properties!);
    for (const [id, queue] of queues) {
      expect(queue.Properties?.["SqsManagedSseEnabled"] ?? queue.Properties?.["KmsMasterKeyId"], `${id} is not encrypted`).toBeTruthy();
      const policy = policies.find((p) => list(p["Queues"] as unknown[]).some((q) => flat(q) === `<${id}>`));
      expect(policy, `${id} has no queue policy`).toBeDefined();
      const statements = (policy!["PolicyDocument"] as { Statement: Statement[] }).Statement;
      expect(
        statements.some(
          (s) =>
            s.Effect === "Deny" &&
            isPublic(s.Principal) &&
            list(s.Action).includes("sqs:*") &&
            s.Condition?.["Bool"]?.["aws:SecureTransport"] === "false",
        ),
        `${id} does not deny requests without TLS`,
      ).toBe(true);
    }
  });

  it("no policy anywhere allows the public, no function has a URL, and no security group admits traffic", () => {
    const documents: [string, Statement[]][] = [];
    for (const [id, r] of Object.entries(resources)) {
      const doc = (r.Properties?.["PolicyDocument"] ?? r.Properties?.["AssumeRolePolicyDocument"]) as
        | { Statement?: Statement[] }
        | undefined;
      if (doc?.Statement) documents.push([id, doc.Statement]);
    }
    expect(documents.length).toBeGreaterThan(5);
    for (const [id, statements] of documents) {
      for (const s of statements)
        expect(s.Effect === "Allow" && isPublic(s.Principal), `${id} allows the public: ${JSON.stringify(s)}`).toBe(false);
    }
    expect(ofType("AWS::Lambda::Url")).toEqual([]);
    for (const [id, p] of ofType("AWS::Lambda::Permission")) expect(p.Properties?.["Principal"], id).not.toBe("*");
    for (const [id, sg] of ofType("AWS::EC2::SecurityGroup")) expect(sg.Properties?.["SecurityGroupIngress"] ?? [], id).toEqual([]);
    expect(ofType("AWS::EC2::SecurityGroupIngress")).toEqual([]);
  });
});

// ── What each role does, recorded at the SDK's request handler ─────────────────────────────

type RoleName = "splitter" | "worker" | "reducer" | "deadLetters";
const ROLES: readonly RoleName[] = ["splitter", "worker", "reducer", "deadLetters"];

describe("each role may do exactly what its code does", () => {
  let emulator: Emulator;
  let plain: AwsClients;
  let taskQueueUrl: string;
  let partsQueueUrl: string;
  let continuationQueueUrl: string;
  const recorded = new Map<RoleName, CompletedRequest[]>(ROLES.map((r) => [r, []]));
  const opened: AwsClients[] = [];
  /** Clients that record every request of the role (and inject the faults given, if any). */
  const clientsOf = (role: RoleName, faults: Omit<FaultInjectionOptions, "onRequest"> = { rate: 0 }): AwsClients => {
    const c = faultyClients({ endpoint: emulator.endpoint }, { ...faults, onRequest: (r) => recorded.get(role)!.push(r) });
    opened.push(c);
    return c;
  };

  let tasksDir: string;
  let items: ThreadItemRunner | undefined;

  beforeAll(async () => {
    // A lab's task too, whose items store an object (ctx.put) and an output too big for a part.
    tasksDir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-review-tasks-"));
    const tasksModule = path.join(tasksDir, "tasks.mjs");
    await writeFile(tasksModule, TASKS_MODULE);
    const registry = await opsRegistry([tasksModule]);
    items = new ThreadItemRunner({ opsModules: [tasksModule] });
    emulator = await startEmulator();
    plain = awsClients({ endpoint: emulator.endpoint });
    opened.push(plain);
    const queues = await createDevResources(plain, {
      taskQueue: "review-tasks",
      deadLetterQueue: "review-dlq",
      partsQueue: "review-parts",
      continuationQueue: "review-continuations.fifo",
      maxReceiveCount: 3,
    });
    taskQueueUrl = queues.taskQueueUrl;
    partsQueueUrl = queues.partsQueueUrl!;
    continuationQueueUrl = queues.continuationQueueUrl!;
    const put = (key: string, body: string) => plain.s3.send(new PutObjectCommand({ Bucket: DEV_BUCKETS.input, Key: key, Body: body }));
    await put("count/review data.txt", "a\nb\nc\n".repeat(40));
    await put("count/dead letters.txt", "x\n".repeat(100));
    await put("_inputs/dir/a.txt", "one two\n".repeat(30));
    await put("_inputs/dir/b.txt", "three\n".repeat(30));
    await put("stats/bad.txt", `${"1\n".repeat(60)}x\n`);
    // A keyed job: its reduce tasks (enqueued by the reducer) write parts and spill, then remove the runs.
    await put("distinct/review words.txt", "pear\napple\nfig\napple\n".repeat(40));
    await put(
      "_jobs/review-spec-1.json",
      JSON.stringify({ op: "wordcount", inputs: [`s3://${DEV_BUCKETS.input}/_inputs/dir/`], chunkSize: 64 }),
    );
    await put("_jobs/review-bad-1.json", "{not json");
    await put("affine/review items.jsonl", '{"n":0,"put":"out/a.txt"}\n{"n":1,"big":300000}\n{"n":2}\n');

    const config: TriggerConfig = { defaultChunkSize: 64, maxAttempts: 3, jobDeadlineSeconds: 3600 };
    const splitClients = clientsOf("splitter");
    const split = { ...cloudSplitDeps({ outputBucket: DEV_BUCKETS.output, taskQueueUrl }, silentLogger, splitClients), registry };
    const created = (key: string) => handleObjectCreated(split, config, { bucket: DEV_BUCKETS.input, key });
    const queue = new SqsTaskQueue(plain.sqs, taskQueueUrl);

    // A job whose tasks are lost: its dead letters go to the dead-letter role.
    const dead = await created("count/dead letters.txt");
    const lost: string[] = [];
    await waitFor(
      "the lost job's tasks",
      async () => {
        for (const m of await queue.receive({ maxMessages: 10 })) {
          lost.push(m.body);
          await queue.delete(m.receiptHandle);
        }
        return lost.length >= (dead as { chunks: number }).chunks ? true : undefined;
      },
      30_000,
      50,
    );
    const reducerClients = clientsOf("reducer");
    // With its own wake-ups, which the keyed job's reduce stage sends (wake.ts), and a lease of 0:
    // it looks at the task queue's backlog before it would queue a reduce task again.
    const reduce = reducerHandler({
      ...cloudSplitDeps({ outputBucket: DEV_BUCKETS.output, taskQueueUrl }, silentLogger, reducerClients),
      registry,
      wake: new SqsWakeSender(reducerClients.sqs, partsQueueUrl),
      taskLeaseMs: 0,
    });
    const partEvents = (jobId: string, indexes: number[]) => ({
      Records: indexes.map((i) => ({
        messageId: `${jobId}-${i}`,
        body: JSON.stringify({
          Records: [
            {
              eventName: "ObjectCreated:Put",
              s3: { bucket: { name: DEV_BUCKETS.output }, object: { key: encodeEventKey(partKey(jobId, i)) } },
            },
          ],
        }),
      })),
    });
    await put(
      "_jobs/review-lost-2.json",
      JSON.stringify({ op: "count", inputs: [`s3://${DEV_BUCKETS.input}/count/dead letters.txt`], chunkSize: 64 }),
    );
    const deadSpec = await created("_jobs/review-lost-2.json");
    const lostSpec: string[] = [];
    await waitFor(
      "the lost spec job's tasks",
      async () => {
        for (const m of await queue.receive({ maxMessages: 10 })) {
          lostSpec.push(m.body);
          await queue.delete(m.receiptHandle);
        }
        return lostSpec.length >= (deadSpec as { chunks: number }).chunks ? true : undefined;
      },
      30_000,
      50,
    );
    const deadJob = (dead as { jobId: string }).jobId;
    await reduce(partEvents(deadJob, [0])); // incomplete: progress only
    const deadLetters = deadLetterHandler(cloudDeps({ outputBucket: DEV_BUCKETS.output }, silentLogger, clientsOf("deadLetters")));
    await deadLetters({ Records: [{ messageId: "dl-1", body: lost[0]!, attributes: { ApproximateReceiveCount: "3" } }] });
    await deadLetters({ Records: [{ messageId: "dl-2", body: lostSpec[0]!, attributes: { ApproximateReceiveCount: "3" } }] });
    // A late copy of the failed chunk wrote its part after all: the resume maps that chunk again,
    // and removes the part first.
    await plain.s3.send(new PutObjectCommand({ Bucket: DEV_BUCKETS.output, Key: partKey(deadJob, 0), Body: '{"v":1}' }));
    // The failed job resumed (cloudmill retry): its failure marker goes, its missing chunks are queued again.
    await put(retryRequestKey(deadJob), JSON.stringify({ after: 0, taskTimeoutSeconds: 60 }));
    expect(await created(retryRequestKey(deadJob))).toMatchObject({ kind: "resumed", jobId: deadJob });

    // Jobs that run: an upload (and its duplicate event), a spec over a prefix, a bad record; and refusals.
    await put("count/review empty.txt", "");
    // An input deleted once its job has started: the worker's read of it is answered 404 (so the job
    // fails INPUT_NOT_FOUND at once), which S3 gives only to a role that may list the bucket.
    await put("count/review gone.txt", "a\nb\n");
    await created("count/review gone.txt");
    await plain.s3.send(new DeleteObjectCommand({ Bucket: DEV_BUCKETS.input, Key: "count/review gone.txt" }));
    const started = [
      await created("count/review empty.txt"),
      await created("count/review data.txt"),
      await created("count/review data.txt"),
      await created("_jobs/review-spec-1.json"),
      await created("stats/bad.txt"),
      await created("affine/review items.jsonl"),
      await created("distinct/review words.txt"),
    ];
    await created("_jobs/review-bad-1.json");
    await created("nope/x.txt");
    // A spec whose listing is out of time: its first piece stored, the rest handed on to the
    // splitter's continuation queue, and listed by the invocation that queue starts.
    const listingSplit = {
      ...split,
      inputsPerPiece: 1,
      continuations: new SqsContinuationSender(splitClients.sqs, continuationQueueUrl),
    };
    await put("_jobs/review-listed-1.json", JSON.stringify({ op: "count", inputs: [`s3://${DEV_BUCKETS.input}/_inputs/dir/`] }));
    const spent = { remainingMs: () => 0 };
    expect(
      await handleObjectCreated(listingSplit, config, { bucket: DEV_BUCKETS.input, key: "_jobs/review-listed-1.json" }, spent),
    ).toMatchObject({
      kind: "listing",
      pieces: 1,
    });
    const [continuation] = await new SqsTaskQueue(plain.sqs, continuationQueueUrl).receive({ maxMessages: 1, waitSeconds: 1 });
    const continued = await continuationHandler(listingSplit, config)(
      { Records: [{ messageId: continuation!.id, body: continuation!.body }] },
      { getRemainingTimeInMillis: () => 300_000 },
    );
    expect(continued).toEqual({ batchItemFailures: [] });

    // The worker, whose first range read is cut part-way (so it also takes the retry path).
    const workerClients = clientsOf("worker", { rate: 1, limit: 1, kinds: ["reset-body"], operations: ["GetObject"] });
    // A spill threshold of a few pairs, and a disk always short of its reserve: the keyed job's reduce tasks spill
    // runs to S3 and remove them, the path whose grants this test checks (the disk's is checked in test/integration/keyed).
    const workerDeps: PipelineDeps = {
      ...cloudDeps({ outputBucket: DEV_BUCKETS.output }, silentLogger, workerClients),
      registry,
      items,
      scratch: new SpillStore({
        dir: path.join(tasksDir, "spill"),
        fallback: cloudDeps({ outputBucket: DEV_BUCKETS.output }, silentLogger, workerClients).output,
        reserveBytes: Number.MAX_SAFE_INTEGER,
      }),
      spillBytes: 100,
    };
    const runWorker = async () => {
      const worker = new TaskWorker({
        queue: new SqsTaskQueue(workerClients.sqs, taskQueueUrl),
        deps: workerDeps,
        concurrency: 2,
        visibilitySeconds: 30,
        heartbeatSeconds: 1,
        waitSeconds: 1,
        notices: new SqsPartNotifier(workerClients.sqs, partsQueueUrl, 5),
      }).start();
      await waitFor(
        "the task queue to empty",
        async () => {
          const d = await queue.depth();
          return d.visible + d.inFlight === 0 ? true : undefined;
        },
        60_000,
        200,
      );
      // Its usage report (cloudmill fleet), as runWorker writes one each minute.
      const usage = startUsageReports({ store: workerDeps.output, everySeconds: 3600, worker: "review/1", chunks: () => worker.chunks });
      await usage.report();
      await usage.stop();
      await worker.stop(5_000);
    };
    await runWorker();
    // Duplicate deliveries after the fact: parts exist, jobs ended.
    await queue.sendBatch([...lost.slice(0, 1)]);
    await runWorker();

    for (const outcome of started) {
      if (!("jobId" in outcome)) continue;
      const indexes: number[] = [];
      for await (const _part of cloudDeps({ outputBucket: DEV_BUCKETS.output }, silentLogger, plain).output.list(
        partsPrefix(outcome.jobId),
      ))
        indexes.push(indexes.length);
      await reduce(partEvents(outcome.jobId, indexes.length ? indexes : [0]));
      await reduce(partEvents(outcome.jobId, [0])); // again: already succeeded (or ended)
    }
    // The keyed job's reduce tasks, which the reducer enqueued once its chunks were mapped; then its result.
    const keyed = started.at(-1) as { jobId: string };
    await runWorker();
    await reduce(partEvents(keyed.jobId, [0]));

    // A worker stopped mid-task (ECS's stop, a spot interruption) hands its task back as a fresh message.
    await put("affine/review stopped.jsonl", '{"n":1,"sleep":1500}\n');
    await created("affine/review stopped.jsonl");
    const stopped = new TaskWorker({
      queue: new SqsTaskQueue(workerClients.sqs, taskQueueUrl),
      deps: workerDeps,
      concurrency: 1,
      visibilitySeconds: 30,
      heartbeatSeconds: 1,
      waitSeconds: 1,
    });
    const handedBack = new Promise<void>((r) => stopped.once("task_failed", () => r()));
    const receivedOne = new Promise<void>((r) => stopped.once("message_received", () => r()));
    stopped.start();
    await receivedOne;
    await stopped.stop(50);
    await handedBack;
    await runWorker();

    // A failure that lands as a resume supersedes the run it judged is taken back (failJob): each
    // role that fails jobs removes the marker it wrote. The resume's own first step lands while the
    // marker's write is under way.
    const roleOutputs = {
      worker: workerDeps,
      reducer: cloudDeps({ outputBucket: DEV_BUCKETS.output }, silentLogger, reducerClients),
      deadLetters: cloudDeps({ outputBucket: DEV_BUCKETS.output }, silentLogger, clientsOf("deadLetters")),
    };
    const plainOutput = cloudDeps({ outputBucket: DEV_BUCKETS.output }, silentLogger, plain).output;
    for (const [role, deps] of Object.entries(roleOutputs)) {
      const jobId = `review-taken-back-${role}`;
      const output = Object.assign(Object.create(deps.output) as typeof deps.output, {
        put: async (key: string, body: Parameters<typeof deps.output.put>[1], options?: Parameters<typeof deps.output.put>[2]) => {
          if (key === failureKey(jobId)) await plainOutput.put(pastEndKey(jobId, 1), "{}");
          return deps.output.put(key, body, options);
        },
      });
      const target = { jobId, output: jobSpecOutputKeys(jobId), chunks: 1, done: 0, run: 0 };
      expect(
        await failJob({ ...deps, output }, target, new CloudmillError(ErrorCode.BAD_RECORD, "a record of the run before")),
      ).toBeUndefined();
    }
    const status = await plain.s3.send(new GetObjectCommand({ Bucket: DEV_BUCKETS.output, Key: "distinct/review words.txt/status.json" }));
    expect(JSON.parse(await status.Body!.transformToString())).toMatchObject({ state: "succeeded" });
    const result = await plain.s3.send(new GetObjectCommand({ Bucket: DEV_BUCKETS.output, Key: "distinct/review words.txt/result.json" }));
    expect(JSON.parse(await result.Body!.transformToString()).spilledBytes).toBeGreaterThan(0);
  }, 180_000);

  afterAll(async () => {
    await items?.close();
    if (tasksDir) await rm(tasksDir, { recursive: true, force: true });
    for (const c of opened) {
      c.s3.destroy();
      c.sqs.destroy();
    }
    await emulator?.stop();
  });

  /** One permission a recorded request needs: action, resource (as the template writes it) and condition context. */
  interface Need {
    readonly role: RoleName;
    readonly action: string;
    readonly resource: string;
    readonly context: Readonly<Record<string, string>>;
    readonly why: string;
  }

  const needsOf = (): Need[] => {
    const bucketIds: Record<string, string> = {
      [DEV_BUCKETS.input]: one("AWS::S3::Bucket", "PipelineInputBucket"),
      [DEV_BUCKETS.output]: one("AWS::S3::Bucket", "PipelineOutputBucket"),
    };
    const queueIds: Record<string, string> = {
      [taskQueueUrl]: one("AWS::SQS::Queue", "PipelineTaskQueue"),
      [partsQueueUrl]: one("AWS::SQS::Queue", "PipelinePartsQueue"),
      [continuationQueueUrl]: one("AWS::SQS::Queue", "PipelineContinuationQueue"),
    };
    const needs: Need[] = [];
    for (const role of ROLES) {
      for (const r of recorded.get(role)!) {
        const why = `${r.operation} ${r.bucket ?? r.queueUrl ?? ""}${r.key ? `/${r.key}` : ""}${r.prefix !== undefined ? ` prefix=${r.prefix}` : ""} → ${r.status ?? "no answer"}`;
        if (r.service === "s3") {
          const bucket = `<${bucketIds[r.bucket!]}>`;
          const object = `${bucket}/${r.key ?? ""}`;
          switch (r.operation) {
            case "HeadObject":
            case "GetObject":
              needs.push({ role, action: "s3:GetObject", resource: object, context: {}, why });
              // S3 answers 404 for a missing key only to those who may list the bucket; others get 403.
              if (r.status === 404)
                needs.push({ role, action: "s3:ListBucket", resource: bucket, context: {}, why: `${why} (404 needs s3:ListBucket)` });
              break;
            case "PutObject":
            case "CreateMultipartUpload":
            case "UploadPart":
            case "CompleteMultipartUpload":
              needs.push({ role, action: "s3:PutObject", resource: object, context: {}, why });
              break;
            case "ListObjectsV2":
              needs.push({ role, action: "s3:ListBucket", resource: bucket, context: { "s3:prefix": r.prefix ?? "" }, why });
              break;
            case "DeleteObject":
              needs.push({ role, action: "s3:DeleteObject", resource: object, context: {}, why });
              break;
            default:
              throw new Error(`no IAM mapping for S3 ${r.operation}`);
          }
        } else {
          const action =
            { SendMessageBatch: "sqs:SendMessage", SendMessage: "sqs:SendMessage", DeleteMessageBatch: "sqs:DeleteMessage" }[r.operation] ??
            `sqs:${r.operation}`;
          expect(queueIds[r.queueUrl!], r.queueUrl).toBeDefined();
          needs.push({ role, action, resource: `<${queueIds[r.queueUrl!]}>`, context: {}, why });
        }
      }
    }
    return needs;
  };

  const glob = (pattern: string): RegExp =>
    new RegExp(
      `^${pattern
        .replace(/[.+^${}()|[\]\\]/g, "\\$&")
        .replace(/\*/g, ".*")
        .replace(/\?/g, ".")}$`,
    );
  const conditionHolds = (condition: Statement["Condition"], context: Readonly<Record<string, string>>): boolean =>
    Object.entries(condition ?? {}).every(([operator, tests]) =>
      Object.entries(tests).every(([key, values]) => {
        const actual = context[key];
        if (actual === undefined) return false;
        if (operator === "StringLike") return list(values as string[]).some((v) => glob(v).test(actual));
        if (operator === "StringEquals") return list(values as string[]).includes(actual);
        return false; // an operator this review does not model never grants
      }),
    );
  const allows = (s: Statement, need: Need): boolean =>
    s.Effect === "Allow" &&
    list(s.Action).some((a) => glob(a).test(need.action)) &&
    list(s.Resource)
      .map(flat)
      .some((r) => glob(r).test(need.resource)) &&
    conditionHolds(s.Condition, need.context);

  const roleIds = (): Record<RoleName, string> => ({
    splitter: one("AWS::IAM::Role", "PipelineSplitterRole"),
    worker: one("AWS::IAM::Role", "PipelineWorkersTaskRole"),
    reducer: one("AWS::IAM::Role", "PipelineReducerRole"),
    deadLetters: one("AWS::IAM::Role", "PipelineDeadLettersRole"),
  });

  it("every role exercised the code paths under review", () => {
    const ops = (role: RoleName) => new Set(recorded.get(role)!.map((r) => r.operation));
    expect([...ops("splitter")].sort()).toEqual(
      expect.arrayContaining(["DeleteObject", "GetObject", "HeadObject", "ListObjectsV2", "PutObject", "SendMessage", "SendMessageBatch"]),
    );
    // Its listing out of time went on through its own continuation queue.
    expect(recorded.get("splitter")!.some((r) => r.operation === "SendMessage" && r.queueUrl === continuationQueueUrl)).toBe(true);
    expect([...ops("worker")].sort()).toEqual(
      expect.arrayContaining([
        "ChangeMessageVisibility",
        "DeleteMessage",
        "GetObject",
        "HeadObject",
        "PutObject",
        "ReceiveMessage",
        "SendMessageBatch",
      ]),
    );
    expect([...ops("reducer")].sort()).toEqual(
      expect.arrayContaining(["GetObject", "GetQueueAttributes", "ListObjectsV2", "PutObject", "SendMessage", "SendMessageBatch"]),
    );
    // Its wake-up went to its own queue.
    expect(recorded.get("reducer")!.some((r) => r.operation === "SendMessage" && r.queueUrl === partsQueueUrl)).toBe(true);
    // Workers named their parts on it.
    expect(recorded.get("worker")!.some((r) => r.operation === "SendMessage" && r.queueUrl === partsQueueUrl)).toBe(true);
    expect([...ops("deadLetters")].sort()).toEqual(expect.arrayContaining(["GetObject", "HeadObject", "PutObject"]));
  });

  it("every S3 and SQS request each role's code makes is allowed by that role's synthesized policy", () => {
    const ids = roleIds();
    // One line per distinct grant missing, with the first request that needed it.
    const missing = new Map<string, string>();
    for (const need of needsOf()) {
      if (statementsOf(ids[need.role]).some((s) => allows(s, need))) continue;
      const generic = need.resource
        .replace(/\/_work\/[^/]+\//, "/_work/<job>/")
        .replace(/\/_jobs\/[^/]+\//, "/_jobs/<job>/")
        .replace(/\/(parts|errors)\/\d+/, "/$1/<n>")
        .replace(/>\/(?!_work|_jobs)[^<]*\/(status|result)\.json$/, ">/<input key>/$1.json");
      const grant = `${need.role}: ${need.action} on ${generic}${Object.keys(need.context).length ? ` ${JSON.stringify(need.context)}` : ""}`;
      if (!missing.has(grant)) missing.set(grant, need.why);
    }
    expect([...missing].map(([grant, why]) => `${grant} — e.g. ${why}`).sort()).toEqual([]);
  });

  it("every S3 grant, every grant on the task queue and every send to the continuation queue is used by some request of that role (nothing broader than needed)", () => {
    const ids = roleIds();
    const needs = needsOf();
    const unused: string[] = [];
    const taskQueue = `<${one("AWS::SQS::Queue", "PipelineTaskQueue")}>`;
    const continuationQueue = `<${one("AWS::SQS::Queue", "PipelineContinuationQueue")}>`;
    for (const role of ROLES) {
      for (const s of statementsOf(ids[role])) {
        if (s.Effect !== "Allow") continue;
        for (const action of list(s.Action)) {
          for (const resource of list(s.Resource).map(flat)) {
            // Queues a Lambda event source or dead-letter target uses on the function's behalf are not the code's.
            // The splitter's sends to its continuation queue are its code's too (its event source consumes it).
            const data =
              action.startsWith("s3:") ||
              (action.startsWith("sqs:") && resource === taskQueue) ||
              (action === "sqs:SendMessage" && resource === continuationQueue);
            if (!data) continue;
            // A PutObject may be a multipart upload, which S3BlobStore aborts when it fails: the abort
            // goes with every PutObject grant, used where the PutObject is.
            const covers = (need: string): boolean =>
              glob(action).test(need) || (action === "s3:AbortMultipartUpload" && need === "s3:PutObject");
            const used = needs.some(
              (n) => n.role === role && covers(n.action) && glob(resource).test(n.resource) && conditionHolds(s.Condition, n.context),
            );
            if (!used) unused.push(`${role}: ${action} on ${resource}`);
          }
        }
      }
    }
    expect(unused.sort()).toEqual([]);
  });
});

// ── Uploads select an op; they never choose code ───────────────────────────────────────────

describe("uploads cannot choose code, only a registered op", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-nocode-"));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it("no module that handles job data can load code: no dynamic import, require, eval or Function", async () => {
    const roots = ["lib/core", "lib/aws", "functions", "worker"];
    const offenders: string[] = [];
    for (const root of roots) {
      for (const entry of await readdir(path.join(packageRoot, root), { recursive: true })) {
        const file = path.join(root, entry);
        if (!file.endsWith(".ts")) continue;
        const text = await readFile(path.join(packageRoot, file), "utf8");
        for (const m of text.matchAll(/\bimport\s*\(|\brequire\s*\(|\beval\s*\(|\bnew\s+Function\s*\(|\bcreateRequire\b/g)) {
          offenders.push(`${file}: ${text.slice(Math.max(0, m.index - 30), m.index + 30).replace(/\s+/g, " ")}`);
        }
      }
    }
    // The one loader of op modules is the operator's --ops flag (CLI and worker image), never a job.
    expect(offenders.filter((o) => !o.startsWith(path.join("lib/core/ops/opModules.ts")))).toEqual([]);
  });

  it("task messages naming a module, a path or a file URL are refused without loading anything", async () => {
    const marker = path.join(dir, "evil-ran");
    const evil = path.join(dir, "evil.mjs");
    await writeFile(
      evil,
      `import { writeFileSync } from "node:fs"; writeFileSync(${JSON.stringify(marker)}, "ran"); export const op = {};\n`,
    );
    const store = new FsBlobStore(path.join(dir, "store"));
    await store.put("data.txt", "a\nb\n");
    const info = (await store.head("data.txt"))!;
    const input = { bucket: "b", key: "data.txt", size: info.size, etag: info.etag, name: "data.txt" };
    const job = { op: "count", params: {}, format: "lines", onBadRecord: "fail", maxAttempts: 1 };
    const chunk = { index: 0, inputIndex: 0, input, start: 0, end: info.size };
    const hostile = [
      { v: 1, jobId: "evil-1", chunk, job: { ...job, op: evil } },
      { v: 1, jobId: "evil-2", chunk, job: { ...job, op: `file://${evil}` } },
      { v: 1, jobId: "evil-3", chunk, job: { ...job, op: "../../../../tmp/evil" } },
      { v: 1, jobId: "evil-4", chunk, job: { ...job, ops: [evil] } },
      { v: 1, jobId: "evil-5", chunk, job: { ...job, params: { ops: `file://${evil}` } } },
      { v: 1, jobId: "evil-6", chunk, job: { ...job, op: "constructor" } },
    ];
    const queue = new MemoryTaskQueue({ visibilitySeconds: 30 });
    await queue.sendBatch(hostile.map((t) => JSON.stringify(t)));
    const deps: PipelineDeps = {
      output: new FsBlobStore(path.join(dir, "out")),
      inputStore: () => store,
      registry: new OpRegistry(),
      log: silentLogger,
    };
    const refused: string[] = [];
    const worker = new TaskWorker({ queue, deps, concurrency: 1, visibilitySeconds: 30, heartbeatSeconds: 10, waitSeconds: 1 });
    worker.on("task_failed", (task, err) => refused.push(`${task?.jobId ?? "not a task"}: ${err.code}`));
    worker.on("task_done", (task) => refused.push(`${task.jobId}: DONE`));
    worker.start();
    await waitFor(
      "every hostile message handled",
      async () => {
        const d = await queue.depth();
        return d.visible + d.inFlight === 0 ? true : undefined;
      },
      30_000,
      50,
    );
    await worker.stop(5_000);
    queue.close();
    expect(existsSync(marker)).toBe(false);
    // Not task messages at all (an op that is no name, an unknown field), or an op no registry holds.
    expect(refused.sort()).toEqual([
      "evil-5: INVALID_SPEC",
      "evil-6: UNKNOWN_OP",
      "not a task: INVALID_SPEC",
      "not a task: INVALID_SPEC",
      "not a task: INVALID_SPEC",
      "not a task: INVALID_SPEC",
    ]);
  });
});
