/**
 * The stack hands each function and the worker exactly the variables the code reads:
 * ROLE_ENV (lib/config/constants.ts) is the single definition both sides import.
 */
import { beforeAll, describe, expect, it } from "vitest";
import type { Template } from "aws-cdk-lib/assertions";
import { DEFAULTS, ENV, ROLE_ENV, type Role } from "../../lib/core/constants.js";
import { readDeadLetterConfig, readReducerConfig, readSplitterConfig, readWorkerConfig } from "../../lib/aws/env.js";
import { LAB_CONTEXT, SPOT_CONTEXT, resource, synth } from "./synth.js";

type Env = Record<string, unknown>;

const functionEnv = (t: Template, prefix: string): Env =>
  (resource(t, "AWS::Lambda::Function", prefix).resource.Properties!["Environment"] as { Variables: Env }).Variables;

const workerEnv = (t: Template): Env => {
  const td = resource(t, "AWS::ECS::TaskDefinition", "PipelineWorkersWorkerTask").resource.Properties!;
  const [container] = td["ContainerDefinitions"] as { Environment: { Name: string; Value: unknown }[] }[];
  return Object.fromEntries(container!.Environment.map((e) => [e.Name, e.Value]));
};

const envOf = (t: Template, role: Role): Env =>
  role === "worker" ? workerEnv(t) : functionEnv(t, `Pipeline${role[0]!.toUpperCase()}${role.slice(1)}`);

/** What the deployed process would see: references resolved to placeholder strings. */
const asProcessEnv = (env: Env): Record<string, string> =>
  Object.fromEntries(Object.entries(env).map(([k, v]) => [k, typeof v === "string" ? v : `resolved:${JSON.stringify(v)}`]));

describe("environment variables", () => {
  let template: Template;
  let spot: Template;
  beforeAll(() => {
    template = synth(LAB_CONTEXT).template;
    spot = synth(SPOT_CONTEXT).template;
  });

  it.each(Object.keys(ROLE_ENV) as Role[])("%s gets exactly the variables ROLE_ENV says it reads", (role) => {
    for (const t of [template, spot]) expect(Object.keys(envOf(t, role)).sort()).toEqual([...ROLE_ENV[role]].sort());
  });

  it("points every role at the output bucket, and the splitter and worker at the task queue", () => {
    const output = { Ref: resource(template, "AWS::S3::Bucket", "PipelineOutputBucket").id };
    const queue = { Ref: resource(template, "AWS::SQS::Queue", "PipelineTaskQueue").id };
    for (const role of Object.keys(ROLE_ENV) as Role[]) {
      expect(envOf(template, role)[ENV.OUTPUT_BUCKET]).toEqual(output);
      expect(envOf(template, role)[ENV.SERVICE_NAME]).toBe(`cloudmill-${role}`);
      expect(envOf(template, role)[ENV.LOG_LEVEL]).toBe("INFO");
      expect(envOf(spot, role)[ENV.LOG_LEVEL]).toBe("DEBUG");
    }
    expect(envOf(template, "splitter")[ENV.TASK_QUEUE_URL]).toEqual(queue);
    expect(envOf(template, "worker")[ENV.TASK_QUEUE_URL]).toEqual(queue);
  });

  it("gives the splitter the chunk size in bytes, the attempts the queue redrives after, and the job deadline", () => {
    expect(envOf(template, "splitter")).toMatchObject({
      [ENV.DEFAULT_CHUNK_SIZE]: String(DEFAULTS.chunkSize),
      [ENV.MAX_ATTEMPTS]: String(DEFAULTS.maxAttempts),
      [ENV.JOB_DEADLINE_SECONDS]: String(DEFAULTS.jobDeadlineSeconds),
    });
    const taskQueue = resource(spot, "AWS::SQS::Queue", "PipelineTaskQueue").resource.Properties!;
    expect(envOf(spot, "splitter")).toMatchObject({
      [ENV.DEFAULT_CHUNK_SIZE]: String(64 * 1024 * 1024),
      [ENV.MAX_ATTEMPTS]: String((taskQueue["RedrivePolicy"] as { maxReceiveCount: number }).maxReceiveCount),
    });
  });

  it("gives the worker the task queue's visibility timeout and the vCPUs of its task", () => {
    for (const t of [template, spot]) {
      const visibility = resource(t, "AWS::SQS::Queue", "PipelineTaskQueue").resource.Properties!["VisibilityTimeout"];
      const td = resource(t, "AWS::ECS::TaskDefinition", "PipelineWorkersWorkerTask").resource.Properties!;
      const cpu = (td["ContainerDefinitions"] as { Cpu: number }[])[0]!.Cpu;
      expect(envOf(t, "worker")).toMatchObject({
        [ENV.VISIBILITY_TIMEOUT_SECONDS]: String(visibility),
        [ENV.WORKER_CONCURRENCY]: String(cpu / 1024),
      });
    }
  });

  it("is accepted by the code's own readers (lib/config/env.ts), which recover the stack's values", () => {
    expect(readSplitterConfig(asProcessEnv(envOf(template, "splitter")))).toMatchObject({
      defaultChunkSize: DEFAULTS.chunkSize,
      maxAttempts: DEFAULTS.maxAttempts,
      jobDeadlineSeconds: DEFAULTS.jobDeadlineSeconds,
      serviceName: "cloudmill-splitter",
      logLevel: "INFO",
    });
    expect(readWorkerConfig(asProcessEnv(envOf(template, "worker")))).toMatchObject({
      visibilitySeconds: DEFAULTS.visibilityTimeoutSeconds,
      concurrency: 2,
      serviceName: "cloudmill-worker",
    });
    expect(readReducerConfig(asProcessEnv(envOf(template, "reducer")))).toMatchObject({ serviceName: "cloudmill-reducer" });
    expect(readDeadLetterConfig(asProcessEnv(envOf(spot, "deadLetters")))).toMatchObject({ serviceName: "cloudmill-dead-letters", logLevel: "DEBUG" });
  });
});
