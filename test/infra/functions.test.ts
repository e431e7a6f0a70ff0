import { readFileSync } from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { Match, type Template } from "aws-cdk-lib/assertions";
import { RUNNING_SUFFIX, WORK_PREFIX } from "../../lib/core/keys.js";
import {
  LAB_CONTEXT,
  SPOT_CONTEXT,
  actionsOf,
  flat,
  grantsOf,
  resource,
  resourcesOf,
  statementsOf,
  synth,
  type Synthesized,
} from "./synth.js";

const FUNCTIONS = ["Splitter", "Reducer", "DeadLetters"] as const;

describe("functions", () => {
  let lab: Synthesized;
  let template: Template;
  let spot: Template;
  beforeAll(() => {
    lab = synth(LAB_CONTEXT, {}, { bundle: true });
    template = lab.template;
    spot = synth(SPOT_CONTEXT).template;
  });

  const fn = (name: string) => resource(template, "AWS::Lambda::Function", `Pipeline${name}`);

  it.each(FUNCTIONS)("%s runs Node.js 22 on ARM64 with its own log group kept logRetentionDays", (name) => {
    const { resource: f } = fn(name);
    expect(f.Properties).toMatchObject({ Runtime: "nodejs22.x", Architectures: ["arm64"], Handler: "index.handler" });
    const logGroup = (f.Properties!["LoggingConfig"] as { LogGroup: { Ref: string } }).LogGroup.Ref;
    expect(template.toJSON().Resources[logGroup]).toMatchObject({
      Type: "AWS::Logs::LogGroup",
      Properties: { RetentionInDays: 30 },
      DeletionPolicy: "Delete",
    });
  });

  it("keeps logs as long as asked", () => {
    for (const lg of Object.values(spot.findResources("AWS::Logs::LogGroup")))
      expect(lg["Properties"]).toMatchObject({ RetentionInDays: 14 });
  });

  it.each(FUNCTIONS)("%s is an esbuild ESM bundle with the createRequire banner, exporting handler", (name) => {
    const key = (fn(name).resource.Properties!["Code"] as { S3Key: string }).S3Key;
    const bundle = readFileSync(path.join(lab.app.outdir, `asset.${key.replace(/\.zip$/, "")}`, "index.mjs"), "utf8");
    expect(bundle.startsWith("import { createRequire } from 'module'; const require = createRequire(import.meta.url);")).toBe(true);
    expect(bundle).toMatch(/export\s*\{[^}]*handler/);
  });

  it.each(FUNCTIONS)("%s has a role with no AWS managed policy", (name) => {
    const role = resource(template, "AWS::IAM::Role", `Pipeline${name}Role`).resource;
    expect(role.Properties!["ManagedPolicyArns"]).toBeUndefined();
  });

  it("starts the splitter on every object created in the input bucket, whatever its key", () => {
    const input = resource(template, "AWS::S3::Bucket", "PipelineInputBucket").id;
    template.hasResourceProperties("Custom::S3BucketNotifications", {
      BucketName: { Ref: input },
      NotificationConfiguration: {
        LambdaFunctionConfigurations: [{ Events: ["s3:ObjectCreated:*"], LambdaFunctionArn: { "Fn::GetAtt": [fn("Splitter").id, "Arn"] } }],
      },
    });
    template.hasResourceProperties("AWS::Lambda::Permission", {
      Action: "lambda:InvokeFunction",
      FunctionName: { "Fn::GetAtt": [fn("Splitter").id, "Arn"] },
      Principal: "s3.amazonaws.com",
      SourceAccount: { Ref: "AWS::AccountId" },
      SourceArn: { "Fn::GetAtt": [input, "Arn"] },
    });
  });

  it("sends long chunks' running markers created in the output bucket, and nothing else, to the parts queue (workers name their parts)", () => {
    const output = resource(template, "AWS::S3::Bucket", "PipelineOutputBucket").id;
    const parts = resource(template, "AWS::SQS::Queue", "PipelinePartsQueue").id;
    template.hasResourceProperties("Custom::S3BucketNotifications", {
      BucketName: { Ref: output },
      NotificationConfiguration: {
        QueueConfigurations: Match.arrayEquals([
          {
            Events: ["s3:ObjectCreated:*"],
            Filter: {
              Key: {
                FilterRules: Match.arrayEquals([
                  { Name: "suffix", Value: RUNNING_SUFFIX },
                  { Name: "prefix", Value: WORK_PREFIX },
                ]),
              },
            },
            QueueArn: { "Fn::GetAtt": [parts, "Arn"] },
          },
        ]),
      },
    });
  });

  it("changes the output bucket's notification only after the fleet's service and the reducer", () => {
    // A stack that raised an event per part stops only once no worker of the release before runs.
    const notifications = resource(template, "Custom::S3BucketNotifications", "PipelineOutputBucketNotifications").resource;
    expect(notifications.DependsOn).toEqual(
      expect.arrayContaining([resource(template, "AWS::ECS::Service", "PipelineWorkersService").id, fn("Reducer").id]),
    );
  });

  it("feeds the reducer from the parts queue in batches, reporting item failures, with bounded concurrency", () => {
    template.hasResourceProperties("AWS::Lambda::EventSourceMapping", {
      EventSourceArn: { "Fn::GetAtt": [resource(template, "AWS::SQS::Queue", "PipelinePartsQueue").id, "Arn"] },
      FunctionName: { Ref: fn("Reducer").id },
      BatchSize: 100,
      MaximumBatchingWindowInSeconds: 5,
      FunctionResponseTypes: ["ReportBatchItemFailures"],
      ScalingConfig: { MaximumConcurrency: 10 },
    });
    // And, more slowly, from the parts dead-letter queue: a job's last event is tried until its job ends.
    template.hasResourceProperties("AWS::Lambda::EventSourceMapping", {
      EventSourceArn: { "Fn::GetAtt": [resource(template, "AWS::SQS::Queue", "PipelinePartsDeadLetterQueue").id, "Arn"] },
      FunctionName: { Ref: fn("Reducer").id },
      BatchSize: 10,
      FunctionResponseTypes: ["ReportBatchItemFailures"],
      ScalingConfig: { MaximumConcurrency: 2 },
    });
    const parts = resource(template, "AWS::SQS::Queue", "PipelinePartsQueue").resource.Properties as Record<string, unknown>;
    expect(parts["RedrivePolicy"]).toMatchObject({ maxReceiveCount: 5 });
    // Lambda needs a source queue's visibility to cover the function's timeout (300 s).
    for (const q of ["PipelinePartsQueue", "PipelinePartsDeadLetterQueue"])
      expect((resource(template, "AWS::SQS::Queue", q).resource.Properties as Record<string, unknown>)["VisibilityTimeout"]).toBe(1800);
  });

  it("feeds the dead-letter function from the task, the splitter's and the continuations' dead-letter queues", () => {
    for (const queue of ["PipelineDeadLetterQueue", "PipelineSplitterDeadLetterQueue", "PipelineContinuationDeadLetterQueue"])
      template.hasResourceProperties("AWS::Lambda::EventSourceMapping", {
        EventSourceArn: { "Fn::GetAtt": [resource(template, "AWS::SQS::Queue", queue).id, "Arn"] },
        FunctionName: { Ref: fn("DeadLetters").id },
        FunctionResponseTypes: ["ReportBatchItemFailures"],
        ScalingConfig: { MaximumConcurrency: 2 },
      });
    template.resourceCountIs("AWS::Lambda::EventSourceMapping", 6);
  });

  it("invokes the splitter again from its continuation queue, one listing at a time", () => {
    const props = {
      EventSourceArn: { "Fn::GetAtt": [resource(template, "AWS::SQS::Queue", "PipelineContinuationQueue").id, "Arn"] },
      FunctionName: { Ref: fn("Splitter").id },
      BatchSize: 1,
      FunctionResponseTypes: ["ReportBatchItemFailures"],
      ScalingConfig: { MaximumConcurrency: 2 },
    };
    template.hasResourceProperties("AWS::Lambda::EventSourceMapping", props);
    // Lambda takes no batching window from a FIFO queue.
    const [mapping] = Object.values(template.findResources("AWS::Lambda::EventSourceMapping", { Properties: props }));
    expect(mapping!["Properties"]).not.toHaveProperty("MaximumBatchingWindowInSeconds");
  });

  it("sends uploads the splitter failed on, after two retries, to its dead-letter queue", () => {
    expect(fn("Splitter").resource.Properties!["DeadLetterConfig"]).toEqual({
      TargetArn: { "Fn::GetAtt": [resource(template, "AWS::SQS::Queue", "PipelineSplitterDeadLetterQueue").id, "Arn"] },
    });
    template.hasResourceProperties("AWS::Lambda::EventInvokeConfig", { FunctionName: { Ref: fn("Splitter").id }, MaximumRetryAttempts: 2 });
  });
});

describe("least privilege", () => {
  let template: Template;
  let spot: Template;
  let input: string;
  let output: string;
  beforeAll(() => {
    template = synth(LAB_CONTEXT, {}, { bundle: true }).template;
    spot = synth(SPOT_CONTEXT).template;
    input = `<${resource(template, "AWS::S3::Bucket", "PipelineInputBucket").id}>`;
    output = `<${resource(template, "AWS::S3::Bucket", "PipelineOutputBucket").id}>`;
  });
  const q = (t: Template, prefix: string) => `<${resource(t, "AWS::SQS::Queue", prefix).id}>`;
  const jobKeys = () => [`${output}/*/result.json`, `${output}/*/status.json`, `${output}/_jobs/*`, `${output}/_work/*`].sort();

  it("grants no wildcard action and no s3:* or sqs:* anywhere", () => {
    for (const policy of Object.values(template.findResources("AWS::IAM::Policy"))) {
      for (const s of (policy["Properties"] as { PolicyDocument: { Statement: Parameters<typeof actionsOf>[0][] } }).PolicyDocument
        .Statement) {
        for (const action of actionsOf(s)) {
          expect(action).not.toBe("*");
          expect(action).not.toMatch(/^(s3|sqs|ecs|logs|lambda|iam):\*$/);
          // The one wildcard action is aws-ecs's ecs:Submit* for the ECS agent, on the cluster only (acknowledged in nag).
          if (action.includes("*")) expect(action).toBe("ecs:Submit*");
        }
      }
    }
  });

  it("splitter: read inputs and specs, list inputs, read/write job state, queue chunks, wake only its own worker service, resume jobs (and wake the reducer)", () => {
    const service = `<${resource(template, "AWS::ECS::Service", "PipelineWorkersService").id}>`;
    expect(grantsOf(template, "PipelineSplitterRole")).toEqual({
      "ecs:DescribeServices": [service],
      "ecs:UpdateService": [service],
      // A retry removes a failed or cancelled job's end marker, and the part of a chunk it maps again; nothing else.
      "s3:DeleteObject": [`${output}/_work/*/cancelled.json`, `${output}/_work/*/failure.json`, `${output}/_work/*/parts/*.part.json`],
      "logs:CreateLogStream": [`<${resource(template, "AWS::Logs::LogGroup", "PipelineSplitterLogs").id}>`],
      "logs:PutLogEvents": [`<${resource(template, "AWS::Logs::LogGroup", "PipelineSplitterLogs").id}>`],
      "s3:GetObject": [`${input}/*`, `${output}/*/status.json`, `${output}/_work/*`].sort(),
      "s3:ListBucket": [input, output].sort(),
      "s3:PutObject": jobKeys(),
      // A large body goes up in parts; a failed upload is aborted.
      "s3:AbortMultipartUpload": jobKeys(),
      "sqs:SendMessage": [
        q(template, "PipelineSplitterDeadLetterQueue"),
        q(template, "PipelineTaskQueue"),
        q(template, "PipelinePartsQueue"),
        // A listing out of time is handed on to a later invocation.
        q(template, "PipelineContinuationQueue"),
      ].sort(),
      // Its continuation queue's event source consumes it on its behalf.
      "sqs:ChangeMessageVisibility": [q(template, "PipelineContinuationQueue")],
      "sqs:DeleteMessage": [q(template, "PipelineContinuationQueue")],
      "sqs:GetQueueAttributes": [q(template, "PipelineContinuationQueue")],
      "sqs:GetQueueUrl": [q(template, "PipelineContinuationQueue")],
      "sqs:ReceiveMessage": [q(template, "PipelineContinuationQueue")],
    });
  });

  it("worker: read inputs, read and write _work/ and status.json (never result.json), write items' own outputs, keyed parts and its usage report, consume the task queue, protect its own task", () => {
    const grants = grantsOf(template, "PipelineWorkersTaskRole");
    const cluster = resource(template, "AWS::ECS::Cluster", "PipelineWorkersCluster").id;
    const written = [
      `${output}/*/status.json`,
      `${output}/_fleet/*`,
      `${output}/_jobs/*/files/*`,
      `${output}/_jobs/*/part-*`,
      `${output}/_jobs/*/results/*`,
      `${output}/_work/*`,
    ];
    expect(grants).toEqual({
      "s3:GetObject": [`${input}/*`, `${output}/*/status.json`, `${output}/_work/*`],
      "s3:PutObject": written,
      "s3:AbortMultipartUpload": written,
      // A reduce task whose disk is short spills to S3 and removes those runs; a failure marker it wrote
      // for a run a resume had just superseded is taken back. Nothing else is ever deleted.
      "s3:DeleteObject": [`${output}/_work/*/failure.json`, `${output}/_work/*/spill/*`],
      // S3 answers a missing part, marker or input with 404 only to a role that may list the bucket.
      "s3:ListBucket": [input, output].sort(),
      "sqs:ReceiveMessage": [q(template, "PipelineTaskQueue")],
      "sqs:DeleteMessage": [q(template, "PipelineTaskQueue")],
      "sqs:ChangeMessageVisibility": [q(template, "PipelineTaskQueue")],
      // A task it is stopped under goes back to its own queue as a fresh message; the parts it
      // wrote are named to the reducer on the parts queue.
      "sqs:SendMessage": [q(template, "PipelineTaskQueue"), q(template, "PipelinePartsQueue")].sort(),
      "ecs:UpdateTaskProtection": [`arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/<${cluster}>/*`],
      "ecs:GetTaskProtection": [`arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/<${cluster}>/*`],
    });
  });

  it("reducer: list the output bucket, read job state, write job state and results, consume the parts queue, enqueue reduce tasks and wake-ups", () => {
    const grants = grantsOf(template, "PipelineReducerRole");
    expect(grants["s3:GetObject"]).toEqual([`${output}/*/status.json`, `${output}/_work/*`]);
    expect(grants["s3:PutObject"]).toEqual(jobKeys());
    // Unconditioned: a HEAD or GET carries no s3:prefix, and a 404 (not 403) needs ListBucket.
    expect(grants["s3:ListBucket"]).toEqual([output]);
    expect(grants["sqs:ReceiveMessage"]?.sort()).toEqual(
      [q(template, "PipelinePartsDeadLetterQueue"), q(template, "PipelinePartsQueue")].sort(),
    );
    // A keyed job's reduce tasks, once its chunks are mapped, to the task queue; its own wake-ups
    // (wake.ts), to the parts queue. Send only, to those two only.
    expect(grants["sqs:SendMessage"]?.sort()).toEqual([q(template, "PipelinePartsQueue"), q(template, "PipelineTaskQueue")].sort());
    const env = resource(template, "AWS::Lambda::Function", "PipelineReducer").resource.Properties!["Environment"] as {
      Variables: Record<string, unknown>;
    };
    expect(env.Variables["CLOUDMILL_PARTS_QUEUE_URL"]).toEqual({ Ref: resource(template, "AWS::SQS::Queue", "PipelinePartsQueue").id });
    expect(
      Object.keys(grants)
        .filter((a) => a.startsWith("s3:"))
        .sort(),
    ).toEqual(["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:ListBucket", "s3:PutObject"]);
    // Of objects, only a failure marker it wrote for a run a resume had just superseded.
    expect(grants["s3:DeleteObject"]).toEqual([`${output}/_work/*/failure.json`]);
    // The task queue's backlog, before a merge or reduce task past its lease is queued again (wake.ts).
    expect(grants["sqs:GetQueueAttributes"]?.sort()).toEqual(
      [q(template, "PipelinePartsDeadLetterQueue"), q(template, "PipelinePartsQueue"), q(template, "PipelineTaskQueue")].sort(),
    );
    expect(
      Object.keys(grants)
        .filter((a) => a.startsWith("sqs:") && a !== "sqs:SendMessage" && a !== "sqs:GetQueueAttributes")
        .every((a) =>
          grants[a]!.every((r) => r === q(template, "PipelinePartsQueue") || r === q(template, "PipelinePartsDeadLetterQueue")),
        ),
    ).toBe(true);
  });

  it("dead letters: read/write job state, list the output bucket, consume the task, splitter and continuation dead-letter queues", () => {
    const grants = grantsOf(template, "PipelineDeadLettersRole");
    expect(grants["s3:GetObject"]).toEqual([`${output}/*/status.json`, `${output}/_work/*`]);
    // Its failure marker and the status, nothing else: not a success marker, a manifest or a part.
    expect(grants["s3:PutObject"]).toEqual([`${output}/*/status.json`, `${output}/_work/*/failure.json`]);
    expect(grants["s3:ListBucket"]).toEqual([output]);
    expect(grants["s3:DeleteObject"]).toEqual([`${output}/_work/*/failure.json`]);
    expect(
      Object.keys(grants)
        .filter((a) => a.startsWith("s3:"))
        .sort(),
    ).toEqual(["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:ListBucket", "s3:PutObject"]);
    expect(
      Object.keys(grants)
        .filter((a) => a.startsWith("sqs:"))
        .every((a) =>
          grants[a]!.every((r) =>
            [
              q(template, "PipelineDeadLetterQueue"),
              q(template, "PipelineSplitterDeadLetterQueue"),
              q(template, "PipelineContinuationDeadLetterQueue"),
            ].includes(r),
          ),
        ),
    ).toBe(true);
  });

  it("no role but the splitter and the reducer may send tasks (workers: back to their own queue, and notices to the parts queue), and no function may touch the input bucket except the splitter", () => {
    for (const role of ["PipelineDeadLettersRole", "PipelineWorkersTaskRole"]) {
      const grants = grantsOf(template, role);
      if (role === "PipelineWorkersTaskRole")
        expect(grants["sqs:SendMessage"]?.sort()).toEqual([q(template, "PipelineTaskQueue"), q(template, "PipelinePartsQueue")].sort());
      else expect(grants["sqs:SendMessage"]).toBeUndefined();
      if (role !== "PipelineWorkersTaskRole")
        expect(
          Object.values(grants)
            .flat()
            .some((r) => r.startsWith(input)),
        ).toBe(false);
    }
  });

  it("extraInputBuckets: the splitter and workers may list and read them", () => {
    const extra = "arn:<AWS::Partition>:s3:::shared-datasets";
    const splitter = grantsOf(spot, "PipelineSplitterRole");
    expect(splitter["s3:GetObject"]).toContain(`${extra}/*`);
    expect(splitter["s3:ListBucket"]).toContain(extra);
    const worker = grantsOf(spot, "PipelineWorkersTaskRole");
    expect(worker["s3:GetObject"]).toContain(`${extra}/*`);
    expect(
      Object.values(worker)
        .flat()
        .filter((r) => r.startsWith(extra)),
    ).toEqual([`${extra}/*`, extra]);
  });

  it("the splitter refuses inputs outside the buckets it is granted: it is told the input bucket and extraInputBuckets", () => {
    const splitter = resource(spot, "AWS::Lambda::Function", "PipelineSplitter").resource;
    const env = (splitter.Properties!["Environment"] as { Variables: Record<string, unknown> }).Variables;
    const input = resource(spot, "AWS::S3::Bucket", "PipelineInputBucket").id;
    expect(flat(env["CLOUDMILL_INPUT_BUCKETS"])).toBe(`<${input}>,shared-datasets`);
  });

  it("extraInputBuckets: only while the stack's account owns them (or the accounts the lab names)", () => {
    const extra = "arn:<AWS::Partition>:s3:::shared-datasets";
    /** The conditions of every statement of `role` that names the extra bucket. */
    const conditionsOn = (t: Template, role: string): unknown[] =>
      statementsOf(t, role)
        .filter((st) => resourcesOf(st).some((r) => flat(r).startsWith(extra)))
        .map((st) => st.Condition);
    for (const role of ["PipelineSplitterRole", "PipelineWorkersTaskRole"]) {
      expect(conditionsOn(spot, role)).toEqual([
        { StringEquals: { "s3:ResourceAccount": [{ Ref: "AWS::AccountId" }] } },
        { StringEquals: { "s3:ResourceAccount": [{ Ref: "AWS::AccountId" }] } },
      ]);
      // The lab's own input bucket is the stack's: its statements are not widened or narrowed.
      expect(statementsOf(spot, role).find((st) => st.Sid === "ReadInputs")?.Condition).toBeUndefined();
    }
    const shared = synth(SPOT_CONTEXT, { extraInputBucketOwners: ["111122223333", "444455556666"] }).template;
    for (const role of ["PipelineSplitterRole", "PipelineWorkersTaskRole"]) {
      expect(conditionsOn(shared, role)).toEqual([
        { StringEquals: { "s3:ResourceAccount": ["111122223333", "444455556666"] } },
        { StringEquals: { "s3:ResourceAccount": ["111122223333", "444455556666"] } },
      ]);
    }
  });
});
