import { beforeAll, describe, expect, it } from "vitest";
import { Match, type Template } from "aws-cdk-lib/assertions";
import { DEFAULTS } from "../../lib/core/constants.js";
import { LAB_CONTEXT, SPOT_CONTEXT, resource, synth, type Statement } from "./synth.js";

type Policy = { PolicyDocument: { Statement: (Statement & { Principal?: unknown })[] } };

const FOUR_DAYS = 4 * 24 * 3600;
const FOURTEEN_DAYS = 14 * 24 * 3600;

describe("queues", () => {
  let template: Template;
  let spot: Template;
  beforeAll(() => {
    template = synth(LAB_CONTEXT).template;
    spot = synth(SPOT_CONTEXT).template;
  });

  const queue = (t: Template, prefix: string) => resource(t, "AWS::SQS::Queue", prefix);

  it("has a task queue, parts queue, the splitter's continuation queue, and a dead-letter queue for each consumer", () => {
    template.resourceCountIs("AWS::SQS::Queue", 7);
  });

  it("hands a listing out of time to the splitter's continuation queue, hidden six splitter timeouts, its dead letters in a queue of their own", () => {
    const splitterTimeout = resource(template, "AWS::Lambda::Function", "PipelineSplitter").resource.Properties!["Timeout"] as number;
    const dlq = queue(template, "PipelineContinuationDeadLetterQueue");
    expect(queue(template, "PipelineContinuationQueue").resource.Properties).toMatchObject({
      VisibilityTimeout: 6 * splitterTimeout,
      MessageRetentionPeriod: FOUR_DAYS,
      RedrivePolicy: { deadLetterTargetArn: { "Fn::GetAtt": [dlq.id, "Arn"] }, maxReceiveCount: 3 },
    });
  });

  it("makes the continuation queue FIFO, so a job's continuations run one at a time, with ids its sender names and its dead letters FIFO too", () => {
    for (const prefix of ["PipelineContinuationQueue", "PipelineContinuationDeadLetterQueue"]) {
      const props = queue(template, prefix).resource.Properties!;
      expect(props, prefix).toMatchObject({ FifoQueue: true, ContentBasedDeduplication: false, SqsManagedSseEnabled: true });
      // SQS refuses a FIFO queue whose name does not end in .fifo, or is longer than 80 characters.
      expect(props["QueueName"], prefix).toMatch(/^[A-Za-z0-9_-]+\.fifo$/);
      expect((props["QueueName"] as string).length, prefix).toBeLessThanOrEqual(80);
    }
    // Lambda's asynchronous dead-letter queue (the splitter's, for uploads) must be a standard queue; so must the rest.
    const fifo = Object.entries(template.findResources("AWS::SQS::Queue"))
      .filter(([, q]) => (q["Properties"] as Record<string, unknown>)["FifoQueue"] === true)
      .map(([id]) => id.replace(/[0-9A-F]{8}$/, ""))
      .sort();
    expect(fifo).toEqual(["PipelineContinuationDeadLetterQueue", "PipelineContinuationQueue"]);
  });

  it("names the FIFO queues after their stack, so two labs' stacks in one account do not collide", () => {
    for (const prefix of ["PipelineContinuationQueue", "PipelineContinuationDeadLetterQueue"])
      expect(queue(spot, prefix).resource.Properties!["QueueName"]).not.toBe(queue(template, prefix).resource.Properties!["QueueName"]);
  });

  it("encrypts every queue at rest and refuses requests without TLS", () => {
    const queues = template.findResources("AWS::SQS::Queue");
    for (const [id, q] of Object.entries(queues)) {
      expect(q["Properties"]).toMatchObject({ SqsManagedSseEnabled: true });
      template.hasResourceProperties("AWS::SQS::QueuePolicy", {
        Queues: [{ Ref: id }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({
              Effect: "Deny",
              Principal: { AWS: "*" },
              Action: "sqs:*",
              Condition: { Bool: { "aws:SecureTransport": "false" } },
            }),
          ]),
        },
      });
    }
  });

  it("redrives a chunk to the dead-letter queue after maxAttempts receives", () => {
    const dlq = queue(template, "PipelineDeadLetterQueue");
    expect(queue(template, "PipelineTaskQueue").resource.Properties).toMatchObject({
      RedrivePolicy: { deadLetterTargetArn: { "Fn::GetAtt": [dlq.id, "Arn"] }, maxReceiveCount: DEFAULTS.maxAttempts },
    });
    expect(queue(spot, "PipelineTaskQueue").resource.Properties).toMatchObject({ RedrivePolicy: { maxReceiveCount: 5 } });
  });

  it("sizes the task queue's visibility timeout to the chunk work, long-polls, and keeps tasks for 4 days", () => {
    expect(queue(template, "PipelineTaskQueue").resource.Properties).toMatchObject({
      VisibilityTimeout: DEFAULTS.visibilityTimeoutSeconds,
      ReceiveMessageWaitTimeSeconds: DEFAULTS.receiveWaitSeconds,
      MessageRetentionPeriod: FOUR_DAYS,
    });
  });

  it("feeds part events through a queue with its own dead-letter queue, hidden six reducer timeouts", () => {
    const dlq = queue(template, "PipelinePartsDeadLetterQueue");
    const reducerTimeout = resource(template, "AWS::Lambda::Function", "PipelineReducer").resource.Properties!["Timeout"] as number;
    expect(queue(template, "PipelinePartsQueue").resource.Properties).toMatchObject({
      VisibilityTimeout: 6 * reducerTimeout,
      MessageRetentionPeriod: FOUR_DAYS,
      RedrivePolicy: { deadLetterTargetArn: { "Fn::GetAtt": [dlq.id, "Arn"] }, maxReceiveCount: 5 },
    });
  });

  it("keeps dead letters for 14 days, and hides them from other consumers while the dead-letter function works", () => {
    for (const prefix of [
      "PipelineDeadLetterQueue",
      "PipelinePartsDeadLetterQueue",
      "PipelineSplitterDeadLetterQueue",
      "PipelineContinuationDeadLetterQueue",
    ]) {
      expect(queue(template, prefix).resource.Properties).toMatchObject({ MessageRetentionPeriod: FOURTEEN_DAYS });
    }
    const deadLettersTimeout = resource(template, "AWS::Lambda::Function", "PipelineDeadLetters").resource.Properties!["Timeout"] as number;
    expect(queue(template, "PipelineDeadLetterQueue").resource.Properties!["VisibilityTimeout"]).toBeGreaterThanOrEqual(deadLettersTimeout);
  });

  it("lets only the output bucket send part events to the parts queue", () => {
    const parts = queue(template, "PipelinePartsQueue");
    const output = resource(template, "AWS::S3::Bucket", "PipelineOutputBucket");
    template.hasResourceProperties("AWS::SQS::QueuePolicy", {
      Queues: [{ Ref: parts.id }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: "Allow",
            Principal: { Service: "s3.amazonaws.com" },
            Action: "sqs:SendMessage",
            Condition: {
              ArnLike: { "aws:SourceArn": { "Fn::GetAtt": [output.id, "Arn"] } },
              StringEquals: { "aws:SourceAccount": { Ref: "AWS::AccountId" } },
            },
          }),
        ]),
      },
    });
    // That statement only: no grant to S3 without the account condition.
    const policies = Object.values(template.findResources("AWS::SQS::QueuePolicy") as Record<string, { Properties: Policy }>);
    const s3Grants = policies
      .flatMap((p) => p.Properties.PolicyDocument.Statement)
      .filter((st) => st.Effect === "Allow" && JSON.stringify(st.Principal).includes("s3.amazonaws.com"));
    expect(s3Grants).toHaveLength(1);
    expect(s3Grants[0]!.Condition).toHaveProperty(["StringEquals", "aws:SourceAccount"]);
    // S3 checks it may send when the notification is configured: the policy must exist by then.
    const notifications = resource(template, "Custom::S3BucketNotifications", "PipelineOutputBucketNotifications").resource;
    expect(notifications.DependsOn).toContain(resource(template, "AWS::SQS::QueuePolicy", "PipelinePartsQueuePolicy").id);
  });
});
