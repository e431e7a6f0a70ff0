/** Configuration: cdk.json and `-c` context → props, and the exact one-line refusals of bad values. */
import * as path from "node:path";
import { App, CfnResource, Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import { ContainerImage } from "aws-cdk-lib/aws-ecs";
import { RetentionDays } from "aws-cdk-lib/aws-logs";
import { describe, expect, it } from "vitest";
import { DEFAULTS } from "../../lib/core/constants.js";
import { CloudmillPipeline } from "../../infra/CloudmillPipeline.js";
import { DEFAULT_LAB, readCloudmillContext } from "../../infra/context.js";
import { CloudmillConfigError, resolvePipelineConfig, type CloudmillPipelineProps } from "../../infra/props.js";
import { cdkJsonContext } from "./synth.js";

const read = (overrides: Record<string, unknown> = {}) => {
  const context: Record<string, unknown> = { ...cdkJsonContext(), ...overrides };
  return readCloudmillContext((key) => context[key]);
};
const resolve = (props: Partial<CloudmillPipelineProps>) => resolvePipelineConfig({ labName: "lab", ...props });

describe("context (cdk.json, -c key=value)", () => {
  it("ships defaults that synthesize a preview of lab 'default' on a fresh clone", () => {
    const c = read();
    expect(c).toMatchObject({ lab: DEFAULT_LAB, stackName: "Cloudmill-default", preview: true });
    expect(c.props).toMatchObject({
      labName: "default",
      instanceTypes: ["m7g.large"],
      spot: false,
      maxInstances: 4,
      defaultChunkSize: 16 * 1024 * 1024,
      maxAttempts: 3,
      workRetentionDays: 7,
      logRetention: RetentionDays.ONE_MONTH,
    });
    // No alertEmail in cdk.json: the preview has no budget, and says so.
    expect(c.props.budgetLimitUsd).toBeUndefined();
    expect(c.warnings.join("\n")).toContain("no budget is created");
  });

  it("names the stack after the lab and takes -c values as strings", () => {
    const c = read({
      lab: "genomics",
      alertEmail: "pi@lab.example.org",
      spot: "true",
      instanceTypes: "m7g.large, c7g.large",
      maxInstances: "8",
      chunkSize: "64MiB",
      budgetLimitUsd: "250.5",
      logRetentionDays: "90",
      outputRemoval: "destroy",
      extraInputBuckets: '["a-bucket","b.bucket"]',
      extraInputBucketOwners: "111122223333",
    });
    expect(c).toMatchObject({ lab: "genomics", stackName: "Cloudmill-genomics", preview: false, warnings: [] });
    expect(c.props).toMatchObject({
      spot: true,
      instanceTypes: ["m7g.large", "c7g.large"],
      maxInstances: 8,
      defaultChunkSize: 64 * 1024 * 1024,
      budgetLimitUsd: 250.5,
      alertEmail: "pi@lab.example.org",
      logRetention: RetentionDays.THREE_MONTHS,
      outputRemovalPolicy: RemovalPolicy.DESTROY,
      extraInputBuckets: ["a-bucket", "b.bucket"],
      extraInputBucketOwners: ["111122223333"],
    });
  });

  it("takes ops as a list, from -c or cdk.json, relative to where the app runs", () => {
    const fixture = "./test/fixtures/lab-ops/index.ts";
    expect(read({ ops: `${fixture}, ${fixture}` }).props.ops).toEqual([fixture, fixture]);
    expect(read({ ops: [fixture] }).props.ops).toEqual([fixture]);
    expect(read().props.ops).toBeUndefined();
  });

  it("lets a named lab opt out of the budget with budgetLimitUsd=0", () => {
    expect(read({ lab: "genomics", budgetLimitUsd: "0" }).props.budgetLimitUsd).toBeUndefined();
  });

  it.each([
    [
      { lab: "genomics" },
      'cloudmill: context "alertEmail" is required with a budget (budgetLimitUsd=100): pass -c alertEmail=<address>, or -c budgetLimitUsd=0 for no budget',
    ],
    [
      { lab: "Genomics Lab" },
      `cloudmill: context "lab" must be 1 to 32 lowercase letters, digits or '-', starting and ending with a letter or digit, got "Genomics Lab"`,
    ],
    [{ maxInstances: "four" }, 'cloudmill: context "maxInstances" must be a whole number, got "four"'],
    [{ spot: "yes" }, 'cloudmill: context "spot" must be true, false or per-job, got "yes"'],
    [{ chunkSize: "2GiB" }, 'cloudmill: context "chunkSize" must be a size from 1 byte to 1GiB, e.g. 16MiB, got "2GiB"'],
    [{ logRetentionDays: 31 }, 'cloudmill: context "logRetentionDays" must be one of CloudWatch Logs\' retention periods'],
    [{ budgetScope: "team" }, 'cloudmill: context "budgetScope" must be one of lab, account, got "team"'],
    [{ outputRemoval: "keep" }, 'cloudmill: context "outputRemoval" must be retain or destroy, got "keep"'],
    [
      { ops: "./test/fixtures/lab-ops/index.ts,./ops/missing.ts" },
      `cloudmill: context "ops": no file at "./ops/missing.ts" (resolved to ${path.resolve("ops/missing.ts")})`,
    ],
    [{ ops: "[1]" }, 'cloudmill: context "ops" must be a list of op module paths, e.g. ./ops/index.ts,./ops/more.ts, got "[1]"'],
    [
      { workerDockerfile: "worker.Dockerfile" },
      `cloudmill: context "workerDockerfile": no file at "worker.Dockerfile" (resolved to ${path.resolve("worker.Dockerfile")})`,
    ],
  ])("refuses %j with one line", (overrides, message) => {
    expect(() => read(overrides)).toThrow(CloudmillConfigError);
    expect(() => read(overrides)).toThrow(message);
  });
});

describe("CloudmillPipeline props", () => {
  it("defaults to a small on-demand Graviton fleet, sized one worker per instance", () => {
    expect(resolve({})).toMatchObject({
      instanceTypes: ["m7g.large"],
      spot: false,
      maxInstances: 4,
      workerVcpus: 2,
      workerMemoryMiB: 3072,
      workerDiskGiB: 30,
      maxWorkers: 4,
      defaultChunkSize: DEFAULTS.chunkSize,
      maxAttempts: DEFAULTS.maxAttempts,
      inputRemovalPolicy: RemovalPolicy.DESTROY,
      outputRemovalPolicy: RemovalPolicy.RETAIN,
      budget: undefined,
      scaleInAfterIdleMinutes: 5,
    });
  });

  it.each<[Partial<CloudmillPipelineProps>, string]>([
    [{ spot: true, instanceTypes: [] }, "cloudmill: spot needs at least one instance type in instanceTypes"],
    [{ instanceTypes: [] }, "cloudmill: instanceTypes must name at least one instance type"],
    // The AMI's snapshot is 30 GiB: a smaller root volume cannot be made.
    [{ workerDiskGiB: 20 }, "cloudmill: workerDiskGiB must be a whole number from 30 to 16384, got 20"],
    [{ budgetLimitUsd: 100 }, "cloudmill: budgetLimitUsd needs alertEmail: a budget alert must go to someone"],
    [{ budgetLimitUsd: -5, alertEmail: "a@b.org" }, "cloudmill: budgetLimitUsd must be a positive amount of USD, got -5"],
    [{ alertEmail: "not-an-email" }, 'cloudmill: alertEmail must be an email address, got "not-an-email"'],
    [
      { instanceTypes: ["m7i.large"] },
      'cloudmill: instance type "m7i.large" is not ARM64 (Graviton); workers run the ARM64 ECS-optimized AMI',
    ],
    [{ instanceTypes: ["m7g.metal"] }, 'cloudmill: cannot tell the vCPUs of "m7g.metal" from its name; set workerVcpus'],
    [
      { instanceTypes: ["m7g.large"], workerVcpus: 4 },
      "cloudmill: workerVcpus (4) exceeds the 2 vCPUs of m7g.large; a worker must fit on every instance type",
    ],
    [{ maxInstances: 0 }, "cloudmill: maxInstances must be a whole number from 1 to 100, got 0"],
    [{ maxAttempts: 1001 }, "cloudmill: maxAttempts must be a whole number from 1 to 1000, got 1001"],
    [
      { visibilityTimeout: Duration.seconds(30) },
      "cloudmill: visibilityTimeout must be from 60 to 43200 seconds (at least twice the worker heartbeat of 30s), got 30",
    ],
    [
      { taskTimeout: Duration.hours(12) },
      "cloudmill: taskTimeout must be from 1 to 42600 seconds (SQS hides a task for at most 12 hours), got 43200",
    ],
    [
      { jobDeadline: Duration.days(5) },
      "cloudmill: jobDeadline must be from 60 to 345600 seconds (the task queue's retention), got 432000",
    ],
    [
      { workRetentionDays: 1, jobDeadline: Duration.days(2) },
      "cloudmill: workRetentionDays (1) must outlast jobDeadline (172800 seconds): a job's state under _work/ and its staged uploads would expire while it runs",
    ],
    [{ extraInputBuckets: ["Not_A_Bucket"] }, 'cloudmill: extraInputBuckets: "Not_A_Bucket" is not an S3 bucket name'],
    [
      { extraInputBuckets: ["a-bucket"], extraInputBucketOwners: ["1111-2222-3333"] },
      'cloudmill: extraInputBucketOwners: "1111-2222-3333" is not a 12-digit AWS account id',
    ],
    [{ extraInputBucketOwners: ["111122223333"] }, "cloudmill: extraInputBucketOwners needs extraInputBuckets"],
    [{ ops: ["./nowhere/ops.ts"] }, `cloudmill: ops: no file at "./nowhere/ops.ts" (resolved to ${path.resolve("nowhere/ops.ts")})`],
    [
      { workerImage: ContainerImage.fromRegistry("lab/worker"), ops: ["./test/fixtures/lab-ops/index.ts"] },
      "cloudmill: workerImage cannot be combined with ops or workerDockerfile: those build on the image cloudmill builds; drop workerImage",
    ],
    [
      { labName: "-lab" },
      `cloudmill: labName must be 1 to 32 lowercase letters, digits or '-', starting and ending with a letter or digit; got "-lab"`,
    ],
  ])("refuses %j with an exact message", (props, message) => {
    expect(() => resolve(props)).toThrow(new CloudmillConfigError(message.replace(/^cloudmill: /, "")));
  });

  it("refuses before building anything, when constructed in a stack", () => {
    const stack = new Stack(new App(), "Refused");
    expect(() => new CloudmillPipeline(stack, "Pipeline", { labName: "lab", spot: true, instanceTypes: [] })).toThrow(
      "cloudmill: spot needs at least one instance type in instanceTypes",
    );
    expect(stack.node.findAll().filter((c) => CfnResource.isCfnResource(c))).toEqual([]);
  });
});
