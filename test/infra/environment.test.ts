/**
 * The stack hands each function and the worker exactly the variables its code reads. The
 * expectation is written out here, not taken from ROLE_ENV or ENV (the constants the stack
 * builds the environment from, so comparing with them proves nothing): each role's own config
 * reader (lib/aws/env.ts) is given the synthesized environment, must read every variable the
 * stack sets and no other the stack could have set, and must recover the stack's resources and
 * settings. A name spelled differently on the two sides fails here.
 */
import { PROTECTION_IDLE_MS_ENV } from "../../lib/aws/env.js";
import os from "node:os";
import { Duration } from "aws-cdk-lib";
import type { Template } from "aws-cdk-lib/assertions";
import { beforeAll, describe, expect, it } from "vitest";
import { readDeadLetterConfig, readReducerConfig, readSplitterConfig, readWorkerConfig } from "../../lib/aws/env.js";
import { LAB_CONTEXT, SPOT_CONTEXT, resource, synth } from "./synth.js";

type Env = Record<string, unknown>;
type Role = "splitter" | "worker" | "reducer" | "deadLetters";
const ROLES: readonly Role[] = ["splitter", "worker", "reducer", "deadLetters"];

/** The variables each role's code reads, as the stack must set them. */
const NAMES: Readonly<Record<Role, readonly string[]>> = {
  splitter: [
    "CLOUDMILL_OUTPUT_BUCKET",
    "CLOUDMILL_TASK_QUEUE_URL",
    "CLOUDMILL_SPOT_TASK_QUEUE_URL",
    "CLOUDMILL_DEFAULT_CHUNK_SIZE",
    "CLOUDMILL_MAX_ATTEMPTS",
    "CLOUDMILL_JOB_DEADLINE_SECONDS",
    "CLOUDMILL_OPS_MODULES",
    "CLOUDMILL_INPUT_BUCKETS",
    "CLOUDMILL_INLINE_MAX_BYTES",
    "CLOUDMILL_TASK_TIMEOUT_SECONDS",
    "CLOUDMILL_WORKER_CLUSTER",
    "CLOUDMILL_WORKER_SERVICE",
    "CLOUDMILL_SPOT_WORKER_SERVICE",
    "CLOUDMILL_MAX_WORKERS",
    "CLOUDMILL_WORKER_CONCURRENCY",
    "CLOUDMILL_INSTANCE_TYPE",
    "CLOUDMILL_CAPACITY",
    "CLOUDMILL_PARTS_QUEUE_URL",
    "CLOUDMILL_CONTINUATION_QUEUE_URL",
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_SERVICE_NAME",
  ],
  worker: [
    "CLOUDMILL_OUTPUT_BUCKET",
    "CLOUDMILL_TASK_QUEUE_URL",
    "CLOUDMILL_PARTS_QUEUE_URL",
    "CLOUDMILL_MAX_ATTEMPTS",
    "AWS_REGION",
    "CLOUDMILL_VISIBILITY_TIMEOUT_SECONDS",
    "CLOUDMILL_WORKER_CONCURRENCY",
    "CLOUDMILL_TASK_TIMEOUT_SECONDS",
    "CLOUDMILL_USAGE_REPORT_SECONDS",
    "CLOUDMILL_REDUCE_SPILL_MIB",
    "CLOUDMILL_OPS_MODULES",
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_SERVICE_NAME",
  ],
  reducer: [
    "CLOUDMILL_PARTS_QUEUE_URL",
    "CLOUDMILL_OUTPUT_BUCKET",
    "CLOUDMILL_TASK_QUEUE_URL",
    "CLOUDMILL_SPOT_TASK_QUEUE_URL",
    "CLOUDMILL_OPS_MODULES",
    "CLOUDMILL_TASK_TIMEOUT_SECONDS",
    "POWERTOOLS_LOG_LEVEL",
    "POWERTOOLS_SERVICE_NAME",
    "CLOUDMILL_INSTANCE_TYPE",
    "CLOUDMILL_CAPACITY",
  ],
  deadLetters: ["CLOUDMILL_OUTPUT_BUCKET", "POWERTOOLS_LOG_LEVEL", "POWERTOOLS_SERVICE_NAME"],
};

/** Read by the code but not set by the stack: the emulator's endpoint (`cloudmill dev`) and the URIs the ECS agent gives every task. */
/** Set by the emulator, the ECS agent, or Lambda itself (the function's memory). */
const SET_ELSEWHERE = [
  "AWS_ENDPOINT_URL",
  "ECS_AGENT_URI",
  "ECS_CONTAINER_METADATA_URI_V4",
  "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
  "TMPDIR",
  // Set by the fault tests, which hold a worker at each chunk's request for protection.
  PROTECTION_IDLE_MS_ENV,
];

/** The reader each role's entry calls on process.env (functions/<role>.ts, lib/aws/runWorker.ts). */
const READERS: Readonly<Record<Role, (env: Readonly<Record<string, string | undefined>>) => Record<string, unknown>>> = {
  splitter: readSplitterConfig,
  worker: readWorkerConfig,
  reducer: readReducerConfig,
  deadLetters: readDeadLetterConfig,
};

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

/** The role's config from the stack's environment, and every variable name its reader looked up. */
const read = (t: Template, role: Role): { config: Record<string, unknown>; looked: Set<string> } => {
  const looked = new Set<string>();
  const env = new Proxy(asProcessEnv(envOf(t, role)), {
    get(target, key, receiver) {
      if (typeof key === "string") looked.add(key);
      return Reflect.get(target, key, receiver) as unknown;
    },
    has(target, key) {
      if (typeof key === "string") looked.add(key);
      return Reflect.has(target, key);
    },
  });
  return { config: READERS[role](env), looked };
};

/** The placeholder a process sees for a `{ Ref }` to this resource. */
const refTo = (t: Template, type: string, prefix: string): string => `resolved:${JSON.stringify({ Ref: resource(t, type, prefix).id })}`;

const MiB = 1024 * 1024;

describe("environment variables", () => {
  let lab: Template;
  let spot: Template;
  /** Every setting the environment carries away from its default, so a variable the code does not get shows as a default. */
  let custom: Template;
  let all: Template[];
  beforeAll(() => {
    lab = synth(LAB_CONTEXT).template;
    spot = synth(SPOT_CONTEXT).template;
    custom = synth(
      { ...SPOT_CONTEXT, workerVcpus: "1" },
      { visibilityTimeout: Duration.seconds(345), jobDeadline: Duration.seconds(4321), taskTimeout: Duration.seconds(678) },
    ).template;
    all = [lab, spot, custom];
  });

  it.each(ROLES)("%s gets exactly the variables its code reads", (role) => {
    for (const t of all) expect(Object.keys(envOf(t, role)).sort()).toEqual([...NAMES[role]].sort());
  });

  it.each(ROLES)(
    "%s: its config reader reads every variable the stack sets, and no other but the emulator's, the ECS agent's and Lambda's",
    (role) => {
      for (const t of all) {
        const set = Object.keys(envOf(t, role));
        const { looked } = read(t, role);
        for (const name of set) expect(looked, `${role} never reads ${name}, which the stack sets`).toContain(name);
        for (const name of looked)
          expect([...set, ...SET_ELSEWHERE], `${role} reads ${name}, which the stack does not set`).toContain(name);
      }
    },
  );

  it("points every role at the output bucket, and the splitter and worker at the task queue (as the readers see them)", () => {
    for (const t of all) {
      const output = refTo(t, "AWS::S3::Bucket", "PipelineOutputBucket");
      const queue = refTo(t, "AWS::SQS::Queue", "PipelineTaskQueue");
      for (const role of ROLES) expect(read(t, role).config["outputBucket"], role).toBe(output);
      expect(read(t, "splitter").config["taskQueueUrl"]).toBe(queue);
      expect(read(t, "worker").config["taskQueueUrl"]).toBe(queue);
      // Deployed, nothing points the SDK at an emulator.
      for (const role of ROLES) expect(read(t, role).config["endpoint"], role).toBeUndefined();
    }
  });

  it("names each role's logs after it, at the lab's log level", () => {
    const SERVICES: Readonly<Record<Role, string>> = {
      splitter: "cloudmill-splitter",
      worker: "cloudmill-worker",
      reducer: "cloudmill-reducer",
      deadLetters: "cloudmill-dead-letters",
    };
    for (const role of ROLES) {
      const service = SERVICES[role];
      expect(read(lab, role).config).toMatchObject({ serviceName: service, logLevel: "INFO" });
      expect(read(spot, role).config).toMatchObject({ serviceName: service, logLevel: "DEBUG" });
      expect(read(custom, role).config).toMatchObject({ serviceName: service, logLevel: "DEBUG" });
    }
  });

  it("gives the splitter the chunk size in bytes, the attempts the queue redrives after, and the job deadline", () => {
    // cdk.json's defaults (README: chunkSize 16MiB, maxAttempts 3) and a 6-hour deadline.
    expect(read(lab, "splitter").config).toMatchObject({ defaultChunkSize: 16 * MiB, maxAttempts: 3, jobDeadlineSeconds: 6 * 60 * 60 });
    expect(read(spot, "splitter").config).toMatchObject({ defaultChunkSize: 64 * MiB, maxAttempts: 5, jobDeadlineSeconds: 6 * 60 * 60 });
    expect(read(custom, "splitter").config).toMatchObject({ defaultChunkSize: 64 * MiB, maxAttempts: 5, jobDeadlineSeconds: 4321 });
    // A chunk is given up after as many attempts as the task queue delivers it before dead-lettering.
    for (const t of all) {
      const taskQueue = resource(t, "AWS::SQS::Queue", "PipelineTaskQueue").resource.Properties!;
      expect(read(t, "splitter").config["maxAttempts"]).toBe((taskQueue["RedrivePolicy"] as { maxReceiveCount: number }).maxReceiveCount);
    }
  });

  it("gives the worker the task queue's visibility timeout, the vCPUs of its task and the chunk time limit", () => {
    // m7g.large (the default, and the smallest of the spot lab's types) has 2 vCPUs.
    expect(read(lab, "worker").config).toMatchObject({ visibilitySeconds: 120, concurrency: 2, taskTimeoutSeconds: 15 * 60 });
    expect(read(spot, "worker").config).toMatchObject({ visibilitySeconds: 120, concurrency: 2, taskTimeoutSeconds: 15 * 60 });
    expect(read(custom, "worker").config).toMatchObject({ visibilitySeconds: 345, concurrency: 1, taskTimeoutSeconds: 678 });
    // Reduce tasks spill past 64 MiB of pairs (docs/design.md), under the container's temporary folder.
    for (const t of all) expect(read(t, "worker").config).toMatchObject({ spillBytes: 64 * MiB, spillRoot: os.tmpdir() });
    for (const t of all) {
      const visibility = resource(t, "AWS::SQS::Queue", "PipelineTaskQueue").resource.Properties!["VisibilityTimeout"];
      const td = resource(t, "AWS::ECS::TaskDefinition", "PipelineWorkersWorkerTask").resource.Properties!;
      const cpu = (td["ContainerDefinitions"] as { Cpu: number }[])[0]!.Cpu;
      expect(read(t, "worker").config).toMatchObject({ visibilitySeconds: visibility, concurrency: cpu / 1024 });
    }
  });
});
