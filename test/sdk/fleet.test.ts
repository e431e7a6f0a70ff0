/**
 * The fleet view and connecting by stack name, against moto: a real wire protocol for ECS
 * (JSON 1.1), EC2 (query/XML), CloudFormation (query/XML), S3 and SQS, driven through the real
 * AWS SDK. moto 5.2.1 ships on the node machine image (.ci/run checks it); without it this
 * file fails rather than skip (recorded.test.ts covers what moto does not).
 */
import { CloudFormationClient, CreateStackCommand } from "@aws-sdk/client-cloudformation";
import { DescribeImagesCommand, EC2Client, RunInstancesCommand, type Instance } from "@aws-sdk/client-ec2";
import {
  CreateClusterCommand,
  CreateServiceCommand,
  DescribeServicesCommand,
  ECSClient,
  ListContainerInstancesCommand,
  RegisterContainerInstanceCommand,
  RegisterTaskDefinitionCommand,
  StartTaskCommand,
  UpdateServiceCommand,
} from "@aws-sdk/client-ecs";
import { SendMessageBatchCommand, SQSClient } from "@aws-sdk/client-sqs";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import {
  ApplicationAutoScalingClient,
  DeregisterScalableTargetCommand,
  DescribeScalableTargetsCommand,
  DescribeScheduledActionsCommand,
  RegisterScalableTargetCommand,
} from "@aws-sdk/client-application-auto-scaling";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli } from "../helpers/cli.js";
import { Cloudmill, CloudmillError, STACK_OUTPUTS } from "../../lib/sdk/index.js";
import { startMoto, type Moto } from "./support.js";
import { EcsFleetWaker } from "../../lib/aws/EcsFleetWaker.js";

const started: Moto | undefined = await startMoto();
if (!started) throw new Error("moto is required for the fleet tests (python3 -c 'import moto'); it ships on the node machine image");
const moto: Moto = started;
const STACK = "Cloudmill-testlab";
const CLUSTER = "cloudmill-testlab-workers";
const SERVICE = "cloudmill-testlab-worker";
const config = () => ({ endpoint: moto.endpoint, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" } });

let ecs: ECSClient;
let onDemand: Instance;
let spot: Instance;
let queueUrl: string;

beforeAll(async () => {
  ecs = new ECSClient(config());
  const ec2 = new EC2Client(config());
  const cfn = new CloudFormationClient(config());
  const sqs = new SQSClient(config());
  try {
    // The stack, with the outputs CloudmillStack declares.
    const template = {
      Resources: {
        Input: { Type: "AWS::S3::Bucket", Properties: { BucketName: "testlab-input" } },
        Output: { Type: "AWS::S3::Bucket", Properties: { BucketName: "testlab-output" } },
        Tasks: { Type: "AWS::SQS::Queue", Properties: { QueueName: "testlab-tasks" } },
        Dead: { Type: "AWS::SQS::Queue", Properties: { QueueName: "testlab-tasks-dlq" } },
      },
      Outputs: {
        [STACK_OUTPUTS.inputBucket]: { Value: { Ref: "Input" } },
        [STACK_OUTPUTS.outputBucket]: { Value: { Ref: "Output" } },
        [STACK_OUTPUTS.taskQueueUrl]: { Value: { Ref: "Tasks" } },
        [STACK_OUTPUTS.deadLetterQueueUrl]: { Value: { Ref: "Dead" } },
        [STACK_OUTPUTS.cluster]: { Value: CLUSTER },
        [STACK_OUTPUTS.service]: { Value: SERVICE },
      },
    };
    await cfn.send(new CreateStackCommand({ StackName: STACK, TemplateBody: JSON.stringify(template) }));

    // Two instances: one on demand, one spot; both registered with the cluster.
    const { Images } = await ec2.send(new DescribeImagesCommand({}));
    const ami = Images![0]!.ImageId!;
    onDemand = (await ec2.send(new RunInstancesCommand({ ImageId: ami, MinCount: 1, MaxCount: 1, InstanceType: "c7g.xlarge" })))
      .Instances![0]!;
    spot = (
      await ec2.send(
        new RunInstancesCommand({
          ImageId: ami,
          MinCount: 1,
          MaxCount: 1,
          InstanceType: "m7g.large",
          InstanceMarketOptions: { MarketType: "spot" },
        }),
      )
    ).Instances![0]!;
    await ecs.send(new CreateClusterCommand({ clusterName: CLUSTER }));
    for (const i of [onDemand, spot]) {
      await ecs.send(
        new RegisterContainerInstanceCommand({
          cluster: CLUSTER,
          instanceIdentityDocument: JSON.stringify({ instanceId: i.InstanceId, region: "us-east-1" }),
          totalResources: [
            { name: "CPU", type: "INTEGER", integerValue: 4096 },
            { name: "MEMORY", type: "INTEGER", integerValue: 7680 },
          ],
        }),
      );
    }
    await ecs.send(
      new RegisterTaskDefinitionCommand({
        family: "worker",
        cpu: "1024",
        memory: "2048",
        containerDefinitions: [{ name: "worker", image: "cloudmill-worker", cpu: 1024, memory: 2048 }],
      }),
    );
    await ecs.send(new CreateServiceCommand({ cluster: CLUSTER, serviceName: SERVICE, taskDefinition: "worker", desiredCount: 3 }));
    // Three worker tasks: two on the on-demand instance, one on the spot instance.
    const arns = (await ecs.send(new ListContainerInstancesCommand({ cluster: CLUSTER }))).containerInstanceArns!;
    const arnOf = async (instanceId: string): Promise<string> => {
      const { DescribeContainerInstancesCommand } = await import("@aws-sdk/client-ecs");
      const d = await ecs.send(new DescribeContainerInstancesCommand({ cluster: CLUSTER, containerInstances: arns }));
      return d.containerInstances!.find((c) => c.ec2InstanceId === instanceId)!.containerInstanceArn!;
    };
    const a = await arnOf(onDemand.InstanceId!);
    const b = await arnOf(spot.InstanceId!);
    for (const target of [a, a, b]) {
      await ecs.send(
        new StartTaskCommand({
          cluster: CLUSTER,
          taskDefinition: "worker",
          containerInstances: [target],
          group: `service:${SERVICE}`,
          startedBy: "ecs-svc/1",
        }),
      );
    }
    // A backlog of three chunks.
    const { GetQueueUrlCommand } = await import("@aws-sdk/client-sqs");
    queueUrl = (await sqs.send(new GetQueueUrlCommand({ QueueName: "testlab-tasks" }))).QueueUrl!;
    await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: [0, 1, 2].map((i) => ({ Id: String(i), MessageBody: `{"chunk":${i}}` })),
      }),
    );
  } finally {
    ec2.destroy();
    cfn.destroy();
    sqs.destroy();
  }
}, 60_000);

afterAll(async () => {
  ecs?.destroy();
  await moto.stop();
});

describe("against moto (ECS, EC2, CloudFormation, S3, SQS wire protocols)", () => {
  it("connects by stack name: the stack's outputs name the buckets, queue, cluster and service", async () => {
    const mill = await Cloudmill.connect({ stack: STACK, endpoint: moto.endpoint }, {});
    try {
      expect(await mill.target()).toEqual({
        region: "us-east-1",
        endpoint: moto.endpoint,
        stack: STACK,
        inputBucket: "testlab-input",
        outputBucket: "testlab-output",
        // CloudFormation's Ref of a queue is its AWS-style URL; the queue is found by it all the same (fleet().queue).
        taskQueueUrl: expect.stringMatching(/^https:\/\/sqs\.us-east-1\.amazonaws\.com\/\d{12}\/testlab-tasks$/),
        cluster: CLUSTER,
        service: SERVICE,
      });
      await expect(mill.jobs()).resolves.toEqual([]);
    } finally {
      mill.close();
    }
  });

  it("fleet() tells desired, running and pending tasks, the instances behind them and their reservation", async () => {
    const mill = new Cloudmill({ stack: STACK, endpoint: moto.endpoint }, {});
    try {
      const view = await mill.fleet();
      const svc = (await ecs.send(new DescribeServicesCommand({ cluster: CLUSTER, services: [SERVICE] }))).services![0]!;
      expect(view).toMatchObject({ cluster: CLUSTER, service: SERVICE, desired: 3, running: svc.runningCount, pending: svc.pendingCount });
      expect(view.instances.map((i) => [i.instanceId, i.type, i.market, i.launchTime?.toISOString()])).toEqual(
        [
          [onDemand.InstanceId, "c7g.xlarge", "on-demand", onDemand.LaunchTime!.toISOString()],
          [spot.InstanceId, "m7g.large", "spot", spot.LaunchTime!.toISOString()],
        ].sort((x, y) => String(x[3]).localeCompare(String(y[3])) || String(x[0]).localeCompare(String(y[0]))),
      );
      const byId = new Map(view.instances.map((i) => [i.instanceId, i]));
      expect(byId.get(onDemand.InstanceId!)).toMatchObject({
        runningTasks: 2,
        cpu: { registered: 4096, reserved: 2048, fraction: 0.5 },
        memoryMiB: { reserved: 4096 },
      });
      expect(byId.get(spot.InstanceId!)).toMatchObject({
        runningTasks: 1,
        cpu: { registered: 4096, reserved: 1024, fraction: 0.25 },
        memoryMiB: { reserved: 2048 },
      });
      expect(view.reservation.cpu).toEqual({ registered: 8192, reserved: 3072, fraction: 3072 / 8192 });
      expect(view.tasks.map((t) => t.instanceId).sort()).toEqual([onDemand.InstanceId, onDemand.InstanceId, spot.InstanceId].sort());
      expect(view.queue).toEqual({ visible: 3, inFlight: 0 });
    } finally {
      mill.close();
    }
  });

  it("`cloudmill fleet --stack` prints the service line, the backlog and one row per instance", async () => {
    const r = await cli(["fleet", "--stack", STACK, "--endpoint", moto.endpoint]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(`^service ${SERVICE} in cluster ${CLUSTER}: 3 desired, \\d+ running, \\d+ pending worker task\\(s\\)`),
    );
    expect(r.stdout).toContain("task queue: 3 chunk(s) waiting, 0 in flight");
    expect(r.stdout).toMatch(new RegExp(`${onDemand.InstanceId}\\s+c7g\\.xlarge\\s+on-demand\\s+.*\\s2\\s+2048/4096 50%`));
    expect(r.stdout).toMatch(new RegExp(`${spot.InstanceId}\\s+m7g\\.large\\s+spot\\s+.*\\s1\\s+1024/4096 25%`));
  });

  it("a stack that does not exist is one line that says how to deploy it", async () => {
    const err = await Cloudmill.connect({ stack: "Cloudmill-nolab", endpoint: moto.endpoint }, {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CloudmillError);
    expect(err).toMatchObject({
      code: "ENVIRONMENT",
      message:
        "no stack Cloudmill-nolab in us-east-1: deploy it with `npx cdk deploy -c lab=nolab`, or check the stack name and AWS_REGION",
    });
    const r = await cli(["jobs", "--stack", "Cloudmill-nolab", "--endpoint", moto.endpoint]);
    expect(r.code).toBe(7);
    expect(r.stderr).toBe(
      "cloudmill: no stack Cloudmill-nolab in us-east-1: deploy it with `npx cdk deploy -c lab=nolab`, or check the stack name and AWS_REGION\n",
    );
  });
});

describe("waking an idle fleet (the splitter's EcsFleetWaker), against moto's ECS", () => {
  const IDLE = "cloudmill-testlab-idle";
  const desired = async (): Promise<number> =>
    (await ecs.send(new DescribeServicesCommand({ cluster: CLUSTER, services: [IDLE] }))).services![0]!.desiredCount!;

  it("raises an idle service to one worker per tasksPerWorker tasks, within the maximum, and leaves an awake one alone", async () => {
    await ecs.send(new CreateServiceCommand({ cluster: CLUSTER, serviceName: IDLE, taskDefinition: "worker", desiredCount: 0 }));
    const waker = new EcsFleetWaker(ecs, { cluster: CLUSTER, service: IDLE, maxWorkers: 3, tasksPerWorker: 2 });
    expect(await waker.wake(3)).toBe(2);
    expect(await desired()).toBe(2);
    // Awake now: the backlog alarm's policy owns the count.
    expect(await waker.wake(100)).toBe(0);
    expect(await desired()).toBe(2);
    await ecs.send(new UpdateServiceCommand({ cluster: CLUSTER, service: IDLE, desiredCount: 0 }));
    expect(await waker.wake(100)).toBe(3);
    expect(await desired()).toBe(3);
    // A job that prefers cheapest asks for one worker, however many tasks it has.
    await ecs.send(new UpdateServiceCommand({ cluster: CLUSTER, service: IDLE, desiredCount: 0 }));
    expect(await waker.wake(100, "cheapest")).toBe(1);
    expect(await desired()).toBe(1);
  });

  it("wakes a service scaled in to zero whose last tasks are still stopping", async () => {
    await ecs.send(
      new CreateServiceCommand({ cluster: CLUSTER, serviceName: `${IDLE}-draining`, taskDefinition: "worker", desiredCount: 0 }),
    );
    // moto's running count follows the desired one: its answer shows two tasks still stopping, as ECS's does.
    const draining = new ECSClient(config());
    draining.middlewareStack.add(
      (next) => async (args) => {
        const out = await next(args);
        const services = (out.output as { services?: { desiredCount?: number; runningCount?: number }[] }).services;
        for (const s of services ?? []) if (s.desiredCount === 0) s.runningCount = 2;
        return out;
      },
      { step: "initialize" },
    );
    const waker = new EcsFleetWaker(draining, { cluster: CLUSTER, service: `${IDLE}-draining`, maxWorkers: 10, tasksPerWorker: 2 });
    expect(await waker.wake(40)).toBe(10);
    const { services } = await ecs.send(new DescribeServicesCommand({ cluster: CLUSTER, services: [`${IDLE}-draining`] }));
    expect(services![0]!.desiredCount).toBe(10);
    draining.destroy();
  });

  it("with a spot lane, wakes the spot service for a job that prefers cheapest and the on-demand one otherwise", async () => {
    const ON_DEMAND = "cloudmill-testlab-lane-od";
    const SPOT = "cloudmill-testlab-lane-spot";
    for (const serviceName of [ON_DEMAND, SPOT])
      await ecs.send(new CreateServiceCommand({ cluster: CLUSTER, serviceName, taskDefinition: "worker", desiredCount: 0 }));
    const count = async (service: string): Promise<number> =>
      (await ecs.send(new DescribeServicesCommand({ cluster: CLUSTER, services: [service] }))).services![0]!.desiredCount!;
    const waker = new EcsFleetWaker(ecs, { cluster: CLUSTER, service: ON_DEMAND, spotService: SPOT, maxWorkers: 3, tasksPerWorker: 1 });
    expect(await waker.wake(10, "cheapest")).toBe(1);
    expect([await count(ON_DEMAND), await count(SPOT)]).toEqual([0, 1]);
    expect(await waker.wake(10)).toBe(3);
    expect([await count(ON_DEMAND), await count(SPOT)]).toEqual([3, 1]);
    expect(await waker.wake(10, "fastest")).toBe(0);
  });

  it("a service that is not there is an ENVIRONMENT error naming it (the splitter logs it and the job waits for the backlog alarm)", async () => {
    const waker = new EcsFleetWaker(ecs, { cluster: CLUSTER, service: "no-such-service", maxWorkers: 3, tasksPerWorker: 1 });
    await expect(waker.wake(1)).rejects.toMatchObject({ code: "ENVIRONMENT", message: expect.stringContaining("no-such-service") });
  });
});

describe("holding the fleet warm (cloudmill fleet --scale / --stop), against moto's Application Auto Scaling and ECS", () => {
  const scaling = () => new ApplicationAutoScalingClient(config());
  const target = {
    ServiceNamespace: "ecs",
    ScalableDimension: "ecs:service:DesiredCount",
    ResourceId: `service/${CLUSTER}/${SERVICE}`,
  } as const;
  const range = async (): Promise<[number | undefined, number | undefined]> => {
    const c = scaling();
    try {
      const t = (await c.send(new DescribeScalableTargetsCommand({ ...target, ResourceIds: [target.ResourceId] }))).ScalableTargets![0]!;
      return [t.MinCapacity, t.MaxCapacity];
    } finally {
      c.destroy();
    }
  };
  const holdEnd = async () => {
    const c = scaling();
    try {
      return (await c.send(new DescribeScheduledActionsCommand({ ServiceNamespace: "ecs", ResourceId: target.ResourceId })))
        .ScheduledActions!;
    } finally {
      c.destroy();
    }
  };
  const desired = async (): Promise<number> =>
    (await ecs.send(new DescribeServicesCommand({ cluster: CLUSTER, services: [SERVICE] }))).services![0]!.desiredCount!;
  const run = (...args: string[]) => cli(["fleet", ...args, "--stack", STACK, "--endpoint", moto.endpoint]);

  beforeAll(async () => {
    // As the stack registers it: from 0 to maxWorkers.
    const c = scaling();
    try {
      await c.send(new RegisterScalableTargetCommand({ ...target, MinCapacity: 0, MaxCapacity: 20 }));
    } finally {
      c.destroy();
    }
  });

  it("--scale 4 --for 30m sets the scaling minimum, asks ECS for 4, and schedules the minimum back to 0 in 30 minutes", async () => {
    const before = Date.now();
    const r = await run("--scale", "4", "--for", "30m");
    expect(r.code, r.stderr).toBe(0);
    expect(await range()).toEqual([4, 20]);
    expect(await desired()).toBe(4);
    const [end] = await holdEnd();
    expect(end).toMatchObject({
      ScheduledActionName: "cloudmill-fleet-hold-end",
      ScalableTargetAction: { MinCapacity: 0, MaxCapacity: 20 },
    });
    const at = Date.parse(`${/^at\((.+)\)$/.exec(end!.Schedule!)![1]}Z`);
    expect(at).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 30 * 60_000);
    expect(at).toBeLessThanOrEqual(Date.now() + 30 * 60_000);
    expect(r.stdout).toBe(`held at 4 warm worker(s) (at most 20) until ${new Date(at).toISOString().slice(0, 16).replace("T", " ")}Z\n`);
    // The fleet view says so.
    const view = await run();
    expect(view.stdout).toContain(
      `held at 4 warm worker(s) (at most 20) until ${new Date(at).toISOString().slice(0, 16).replace("T", " ")}Z`,
    );
  });

  it("--scale without --for holds until stopped (no scheduled end); more than maxWorkers is refused", async () => {
    expect((await run("--scale", "2")).stdout).toBe("held at 2 warm worker(s) (at most 20) until `cloudmill fleet --stop`\n");
    expect(await range()).toEqual([2, 20]);
    expect(await holdEnd()).toEqual([]);
    const over = await run("--scale", "21");
    expect(over).toMatchObject({ code: 2, stderr: "cloudmill: --scale 21: the stack allows at most 20 workers (its maxWorkers)\n" });
    expect(await run("--for", "30m")).toMatchObject({ code: 2, stderr: "cloudmill: --for: --for needs --scale N\n" });
    expect(await run("--scale", "2", "--for", "5x")).toMatchObject({ code: 2 });
  });

  it("--stop ends the hold and asks for no workers", async () => {
    await run("--scale", "3", "--for", "2h");
    const r = await run("--stop");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^fleet stopped: no hold;/);
    expect(await range()).toEqual([0, 20]);
    expect(await holdEnd()).toEqual([]);
    expect(await desired()).toBe(0);
  });
});

describe("per-worker use in `cloudmill fleet`, from the workers' reports in the output bucket", () => {
  it("joins each live task's latest report: CPU, memory, network, disk and chunks; a stale one is left out", async () => {
    const { ListTasksCommand } = await import("@aws-sdk/client-ecs");
    const taskIds = (await ecs.send(new ListTasksCommand({ cluster: CLUSTER, serviceName: SERVICE }))).taskArns!.map(
      (a) => a.split("/").at(-1)!,
    );
    expect(taskIds.length).toBeGreaterThan(1);
    const s3 = new S3Client({ ...config(), forcePathStyle: true });
    const report = (taskId: string, at: Date, cpuPercent: number) => ({
      v: 1,
      worker: `ip-10-0-0-1/${taskIds.indexOf(taskId) + 7}`,
      taskId,
      at: at.toISOString(),
      intervalSeconds: 60,
      cpuPercent,
      rssBytes: 150e6,
      memory: { used: 900e6, limit: 3840e6 },
      network: { rxBytes: 2.5e9, txBytes: 4e6 },
      disk: { readBytes: 0, writeBytes: 1.2e6 },
      chunks: { running: 2, done: 41 },
    });
    try {
      await s3.send(
        new PutObjectCommand({
          Bucket: "testlab-output",
          Key: `_fleet/${taskIds[0]}.json`,
          Body: JSON.stringify(report(taskIds[0]!, new Date(), 187.5)),
        }),
      );
      // An hour old: its worker is gone.
      await s3.send(
        new PutObjectCommand({
          Bucket: "testlab-output",
          Key: `_fleet/${taskIds[1]}.json`,
          Body: JSON.stringify(report(taskIds[1]!, new Date(Date.now() - 3600_000), 50)),
        }),
      );
    } finally {
      s3.destroy();
    }
    const r = await cli(["fleet", "--stack", STACK, "--endpoint", moto.endpoint]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("use over the last report interval, per worker:");
    expect(r.stdout).toMatch(
      new RegExp(`${taskIds[0]}\\s+187\\.5%\\s+900\\.0/3840\\.0\\s+2500\\.0/4\\.0\\s+0\\.0/1\\.2\\s+2/41\\s+\\d+s ago`),
    );
    expect(r.stdout).not.toContain(taskIds[1]!);
  });
});

describe('a stack with a spot lane (spot: "per-job"), against moto', () => {
  const PER_JOB = "Cloudmill-perjob";
  const SPOT = "cloudmill-perjob-spot";
  const SPOT_QUEUE = "perjob-spot-tasks";
  const scaling = () => new ApplicationAutoScalingClient(config());
  const range = async (service: string): Promise<[number | undefined, number | undefined]> => {
    const c = scaling();
    try {
      const id = `service/${CLUSTER}/${service}`;
      const t = (
        await c.send(
          new DescribeScalableTargetsCommand({ ServiceNamespace: "ecs", ScalableDimension: "ecs:service:DesiredCount", ResourceIds: [id] }),
        )
      ).ScalableTargets![0]!;
      return [t.MinCapacity, t.MaxCapacity];
    } finally {
      c.destroy();
    }
  };
  const desiredOf = async (service: string): Promise<number> =>
    (await ecs.send(new DescribeServicesCommand({ cluster: CLUSTER, services: [service] }))).services![0]!.desiredCount!;
  const run = (...args: string[]) => cli(["fleet", ...args, "--stack", PER_JOB, "--endpoint", moto.endpoint]);

  beforeAll(async () => {
    const cfn = new CloudFormationClient(config());
    const sqs = new SQSClient(config());
    const c = scaling();
    try {
      const template = {
        Resources: {
          Tasks: { Type: "AWS::SQS::Queue", Properties: { QueueName: "perjob-tasks" } },
          SpotTasks: { Type: "AWS::SQS::Queue", Properties: { QueueName: SPOT_QUEUE } },
        },
        Outputs: {
          [STACK_OUTPUTS.inputBucket]: { Value: "testlab-input" },
          [STACK_OUTPUTS.outputBucket]: { Value: "testlab-output" },
          [STACK_OUTPUTS.taskQueueUrl]: { Value: { Ref: "Tasks" } },
          [STACK_OUTPUTS.cluster]: { Value: CLUSTER },
          [STACK_OUTPUTS.service]: { Value: SERVICE },
          [STACK_OUTPUTS.spotService]: { Value: SPOT },
          [STACK_OUTPUTS.spotTaskQueueUrl]: { Value: { Ref: "SpotTasks" } },
        },
      };
      await cfn.send(new CreateStackCommand({ StackName: PER_JOB, TemplateBody: JSON.stringify(template) }));
      await ecs.send(new CreateServiceCommand({ cluster: CLUSTER, serviceName: SPOT, taskDefinition: "worker", desiredCount: 1 }));
      const arns = (await ecs.send(new ListContainerInstancesCommand({ cluster: CLUSTER }))).containerInstanceArns!;
      const { DescribeContainerInstancesCommand } = await import("@aws-sdk/client-ecs");
      const d = await ecs.send(new DescribeContainerInstancesCommand({ cluster: CLUSTER, containerInstances: arns }));
      const onSpot = d.containerInstances!.find((ci) => ci.ec2InstanceId === spot.InstanceId)!.containerInstanceArn!;
      await ecs.send(
        new StartTaskCommand({
          cluster: CLUSTER,
          taskDefinition: "worker",
          containerInstances: [onSpot],
          group: `service:${SPOT}`,
          startedBy: "ecs-svc/2",
        }),
      );
      for (const service of [SERVICE, SPOT])
        await c.send(
          new RegisterScalableTargetCommand({
            ServiceNamespace: "ecs",
            ScalableDimension: "ecs:service:DesiredCount",
            ResourceId: `service/${CLUSTER}/${service}`,
            MinCapacity: 0,
            MaxCapacity: 20,
          }),
        );
      const { GetQueueUrlCommand } = await import("@aws-sdk/client-sqs");
      const spotUrl = (await sqs.send(new GetQueueUrlCommand({ QueueName: SPOT_QUEUE }))).QueueUrl!;
      await sqs.send(
        new SendMessageBatchCommand({ QueueUrl: spotUrl, Entries: [0, 1].map((i) => ({ Id: String(i), MessageBody: `{"chunk":${i}}` })) }),
      );
    } finally {
      cfn.destroy();
      sqs.destroy();
      c.destroy();
    }
  });

  it("fleet() shows the spot lane's service, its queue and its task beside the on-demand lane", async () => {
    const mill = new Cloudmill({ stack: PER_JOB, endpoint: moto.endpoint }, {});
    try {
      const view = await mill.fleet();
      expect(view.service).toBe(SERVICE);
      expect(view.spotLane).toMatchObject({ service: SPOT, desired: 1, queue: { visible: 2, inFlight: 0 } });
      const spotTasks = view.tasks.filter((t) => t.lane === "spot");
      expect(spotTasks.map((t) => t.instanceId)).toEqual([spot.InstanceId]);
      const r = await run();
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`spot lane \\(jobs that prefer cheapest\\): service ${SPOT}: 1 desired`));
      expect(r.stdout).toContain("spot task queue: 2 chunk(s) waiting, 0 in flight");
    } finally {
      mill.close();
    }
  });

  it("--scale 2 --spot holds the spot lane only; --stop ends both lanes", async () => {
    const before = await desiredOf(SERVICE);
    const r = await run("--scale", "2", "--spot");
    expect(r.code, r.stderr).toBe(0);
    expect(await range(SPOT)).toEqual([2, 20]);
    expect(await desiredOf(SPOT)).toBe(2);
    expect(await desiredOf(SERVICE)).toBe(before);
    expect((await run()).stdout).toContain("spot lane held at 2 warm worker(s) (at most 20)");
    // The on-demand lane held too, then both stopped at once.
    expect((await run("--scale", "3")).code).toBe(0);
    expect([await desiredOf(SERVICE), await range(SERVICE)]).toEqual([3, [3, 20]]);
    const stopped = await run("--stop");
    expect(stopped.code, stopped.stderr).toBe(0);
    expect([await desiredOf(SERVICE), await desiredOf(SPOT)]).toEqual([0, 0]);
    expect([await range(SERVICE), await range(SPOT)]).toEqual([
      [0, 20],
      [0, 20],
    ]);
  });

  it("--stop still stops the spot lane when the on-demand lane's range cannot be read, and says which failed", async () => {
    expect((await run("--scale", "2", "--spot")).code).toBe(0);
    expect(await desiredOf(SPOT)).toBe(2);
    const c = scaling();
    const onDemand = {
      ServiceNamespace: "ecs",
      ScalableDimension: "ecs:service:DesiredCount",
      ResourceId: `service/${CLUSTER}/${SERVICE}`,
    } as const;
    try {
      await c.send(new DeregisterScalableTargetCommand(onDemand));
      const stopped = await run("--stop");
      expect(stopped.code).not.toBe(0);
      expect(stopped.stderr).toBe(`cloudmill: service ${SERVICE} in cluster ${CLUSTER} has no scaling range: is the stack deployed?\n`);
      // The spot lane stopped all the same.
      expect([await desiredOf(SPOT), await range(SPOT)]).toEqual([0, [0, 20]]);
    } finally {
      await c.send(new RegisterScalableTargetCommand({ ...onDemand, MinCapacity: 0, MaxCapacity: 20 }));
      c.destroy();
    }
  });

  it("--spot on a stack without a spot lane is refused in one line", async () => {
    const r = await cli(["fleet", "--scale", "2", "--spot", "--stack", STACK, "--endpoint", moto.endpoint]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toBe(
      "cloudmill: --spot: this stack has no spot lane (deploy it with -c spot=per-job for one; with spot=true every worker is on spot)\n",
    );
  });
});
