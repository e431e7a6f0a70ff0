/**
 * `spot: "per-job"`: two worker lanes in one cluster. The on-demand lane is the stack's usual
 * one (same logical ids); the spot lane has its own launch template, Auto Scaling group,
 * capacity provider, task definition, service, task queue and scaling, and shares the dead-letter
 * queue. The splitter and reducer learn the spot lane's queue and service; each may reach exactly
 * what its code uses. A stack of one lane passes both names empty.
 */
import { beforeAll, describe, expect, it } from "vitest";
import type { Template } from "aws-cdk-lib/assertions";
import { CloudmillConfigError } from "../../infra/props.js";
import { STACK_OUTPUTS } from "../../lib/core/stack.js";
import { LAB_CONTEXT, PER_JOB_CONTEXT, buildApp, flat, grantsOf, resource, statementsOf, synth } from "./synth.js";

const props = (t: Template, type: string, prefix: string) => resource(t, type, prefix).resource.Properties!;
const ref = (t: Template, type: string, prefix: string) => ({ Ref: resource(t, type, prefix).id });
const envOf = (t: Template, prefix: string) =>
  (props(t, "AWS::Lambda::Function", prefix)["Environment"] as { Variables: Record<string, unknown> }).Variables;
const workerEnv = (t: Template, prefix: string): Record<string, unknown> => {
  const [container] = props(t, "AWS::ECS::TaskDefinition", prefix)["ContainerDefinitions"] as {
    Environment: { Name: string; Value: unknown }[];
  }[];
  return Object.fromEntries(container!.Environment.map((e) => [e.Name, e.Value]));
};

describe('a stack with spot: "per-job"', () => {
  let t: Template;
  let one: Template;
  beforeAll(() => {
    t = synth(PER_JOB_CONTEXT).template;
    one = synth(LAB_CONTEXT).template;
  });

  it("changes the output bucket's notification only after both lanes' services and the reducer", () => {
    // Old workers of either lane, relying on parts' S3 events, are gone before those events stop.
    const notifications = resource(t, "Custom::S3BucketNotifications", "PipelineOutputBucketNotifications").resource;
    const after = [
      resource(t, "AWS::ECS::Service", "PipelineWorkersService").id,
      resource(t, "AWS::ECS::Service", "PipelineWorkersSpotService").id,
      resource(t, "AWS::Lambda::Function", "PipelineReducer").id,
    ];
    expect((notifications.DependsOn as string[]).filter((d) => after.includes(d)).sort()).toEqual([...after].sort());
  });

  it("runs two services in one cluster, each on its own capacity provider and task queue", () => {
    t.resourceCountIs("AWS::ECS::Cluster", 1);
    t.resourceCountIs("AWS::ECS::Service", 2);
    t.resourceCountIs("AWS::ECS::CapacityProvider", 2);
    t.resourceCountIs("AWS::AutoScaling::AutoScalingGroup", 2);
    const main = props(t, "AWS::ECS::Service", "PipelineWorkersService");
    const spot = props(t, "AWS::ECS::Service", "PipelineWorkersSpotService");
    expect(main["TaskDefinition"]).toEqual(ref(t, "AWS::ECS::TaskDefinition", "PipelineWorkersWorkerTask"));
    expect(spot["TaskDefinition"]).toEqual(ref(t, "AWS::ECS::TaskDefinition", "PipelineWorkersSpotWorkerTask"));
    const provider = (p: Record<string, unknown>) =>
      (p["CapacityProviderStrategy"] as { CapacityProvider: unknown }[])[0]!.CapacityProvider;
    expect(provider(main)).toEqual(ref(t, "AWS::ECS::CapacityProvider", "PipelineWorkersCapacityProvider"));
    expect(provider(spot)).toEqual(ref(t, "AWS::ECS::CapacityProvider", "PipelineWorkersSpotCapacityProvider"));
    // Each lane's workers consume their own queue; every other variable is the same.
    const mainEnv = workerEnv(t, "PipelineWorkersWorkerTask");
    const spotEnv = workerEnv(t, "PipelineWorkersSpotWorkerTask");
    expect(mainEnv["CLOUDMILL_TASK_QUEUE_URL"]).toEqual(ref(t, "AWS::SQS::Queue", "PipelineTaskQueue"));
    expect(spotEnv["CLOUDMILL_TASK_QUEUE_URL"]).toEqual(ref(t, "AWS::SQS::Queue", "PipelineSpotTaskQueue"));
    const { CLOUDMILL_TASK_QUEUE_URL: _a, ...mainRest } = mainEnv;
    const { CLOUDMILL_TASK_QUEUE_URL: _b, ...spotRest } = spotEnv;
    expect(spotRest).toEqual(mainRest);
  });

  it("buys the first lane on demand and the spot lane on spot, draining only the spot lane's instances", () => {
    const main = props(t, "AWS::AutoScaling::AutoScalingGroup", "PipelineWorkersAutoScalingGroup");
    const spot = props(t, "AWS::AutoScaling::AutoScalingGroup", "PipelineWorkersSpotAutoScalingGroup");
    // One on-demand type: a plain launch template with its type, as a stack of one lane has.
    expect(main["MixedInstancesPolicy"]).toBeUndefined();
    expect(props(t, "AWS::EC2::LaunchTemplate", "PipelineWorkersLaunchTemplate")["LaunchTemplateData"]).toMatchObject({
      InstanceType: "m7g.large",
    });
    expect(spot).toMatchObject({
      CapacityRebalance: true,
      MixedInstancesPolicy: {
        InstancesDistribution: { OnDemandPercentageAboveBaseCapacity: 0, SpotAllocationStrategy: "price-capacity-optimized" },
      },
    });
    const userData = (prefix: string) => JSON.stringify(props(t, "AWS::EC2::LaunchTemplate", prefix)["LaunchTemplateData"]);
    expect(userData("PipelineWorkersSpotLaunchTemplate")).toContain("ECS_ENABLE_SPOT_INSTANCE_DRAINING=true");
    expect(userData("PipelineWorkersLaunchTemplate")).not.toContain("SPOT");
    // The on-demand lane keeps its warm pool; EC2 Auto Scaling keeps none for the spot lane's mixed group.
    t.resourceCountIs("AWS::AutoScaling::WarmPool", 1);
    expect(props(t, "AWS::AutoScaling::WarmPool", "PipelineWorkersAutoScalingGroupWarmPool")["AutoScalingGroupName"]).toEqual(
      ref(t, "AWS::AutoScaling::AutoScalingGroup", "PipelineWorkersAutoScalingGroup"),
    );
  });

  it("scales each service on its own queue, up to maxWorkers", () => {
    t.resourceCountIs("AWS::ApplicationAutoScaling::ScalableTarget", 2);
    const target = (prefix: string) => flat(props(t, "AWS::ApplicationAutoScaling::ScalableTarget", prefix)["ResourceId"]);
    expect(target("PipelineWorkersWorkerCount")).toContain(`<${resource(t, "AWS::ECS::Service", "PipelineWorkersService").id}>`);
    expect(target("PipelineWorkersSpotWorkerCount")).toContain(`<${resource(t, "AWS::ECS::Service", "PipelineWorkersSpotService").id}>`);
    const queueOfAlarm = (prefix: string) =>
      JSON.stringify(props(t, "AWS::CloudWatch::Alarm", prefix)["Dimensions"] ?? props(t, "AWS::CloudWatch::Alarm", prefix)["Metrics"]);
    expect(queueOfAlarm("PipelineWorkersScaleOutAlarm")).toContain(resource(t, "AWS::SQS::Queue", "PipelineTaskQueue").id);
    expect(queueOfAlarm("PipelineWorkersSpotScaleOutAlarm")).toContain(resource(t, "AWS::SQS::Queue", "PipelineSpotTaskQueue").id);
    expect(queueOfAlarm("PipelineWorkersSpotScaleInAlarm")).toContain(resource(t, "AWS::SQS::Queue", "PipelineSpotTaskQueue").id);
  });

  it("alarms when a chunk waits too long on the spot lane's queue, as on the on-demand one", () => {
    const alarm = props(t, "AWS::CloudWatch::Alarm", "PipelineMonitoringOldestSpotTaskAlarm");
    expect(alarm["MetricName"]).toBe("ApproximateAgeOfOldestMessage");
    expect(JSON.stringify(alarm["Dimensions"])).toContain(resource(t, "AWS::SQS::Queue", "PipelineSpotTaskQueue").id);
    expect(alarm["AlarmActions"]).toEqual(props(t, "AWS::CloudWatch::Alarm", "PipelineMonitoringOldestTaskAlarm")["AlarmActions"]);
    one.resourcePropertiesCountIs("AWS::CloudWatch::Alarm", { MetricName: "ApproximateAgeOfOldestMessage" }, 1);
    // The dashboard graphs the spot lane's queue, group and service, and shows its scaling alarms.
    const dashboard = JSON.stringify(props(t, "AWS::CloudWatch::Dashboard", "PipelineMonitoringDashboard")["DashboardBody"]);
    for (const [type, prefix] of [
      ["AWS::SQS::Queue", "PipelineSpotTaskQueue"],
      ["AWS::AutoScaling::AutoScalingGroup", "PipelineWorkersSpotAutoScalingGroup"],
      ["AWS::CloudWatch::Alarm", "PipelineWorkersSpotScaleOutAlarm"],
      ["AWS::ECS::Service", "PipelineWorkersSpotService"],
    ] as const)
      expect(dashboard).toContain(resource(t, type, prefix).id);
    // Its workers' CPU, memory and counts, from Container Insights, as the on-demand lane's.
    for (const label of ["CPU units used (spot lane)", "Memory used (MiB) (spot lane)", "Workers running (spot lane)"])
      expect(dashboard).toContain(label);
  });

  it("dead-letters the spot queue's tasks to the one dead-letter queue, after maxAttempts", () => {
    const spotQueue = props(t, "AWS::SQS::Queue", "PipelineSpotTaskQueue");
    const mainQueue = props(t, "AWS::SQS::Queue", "PipelineTaskQueue");
    expect(spotQueue["RedrivePolicy"]).toEqual(mainQueue["RedrivePolicy"]);
    expect(flat(spotQueue["RedrivePolicy"])).toContain(resource(t, "AWS::SQS::Queue", "PipelineDeadLetterQueue").id);
    expect(spotQueue["KmsMasterKeyId"] ?? spotQueue["SqsManagedSseEnabled"]).toBe(true);
  });

  it("tells the splitter and reducer the spot lane's queue and service; a stack of one lane leaves them empty", () => {
    const spotQueue = ref(t, "AWS::SQS::Queue", "PipelineSpotTaskQueue");
    expect(envOf(t, "PipelineSplitter")["CLOUDMILL_SPOT_TASK_QUEUE_URL"]).toEqual(spotQueue);
    expect(envOf(t, "PipelineReducer")["CLOUDMILL_SPOT_TASK_QUEUE_URL"]).toEqual(spotQueue);
    expect(flat(envOf(t, "PipelineSplitter")["CLOUDMILL_SPOT_WORKER_SERVICE"])).toBe(
      `<${resource(t, "AWS::ECS::Service", "PipelineWorkersSpotService").id}>`,
    );
    expect(envOf(one, "PipelineSplitter")["CLOUDMILL_SPOT_TASK_QUEUE_URL"]).toBe("");
    expect(envOf(one, "PipelineSplitter")["CLOUDMILL_SPOT_WORKER_SERVICE"]).toBe("");
    expect(envOf(one, "PipelineReducer")["CLOUDMILL_SPOT_TASK_QUEUE_URL"]).toBe("");
  });

  it("lets the splitter and reducer queue on both lanes, the workers consume both, and the splitter set each service's count only", () => {
    const queues = [resource(t, "AWS::SQS::Queue", "PipelineTaskQueue").id, resource(t, "AWS::SQS::Queue", "PipelineSpotTaskQueue").id];
    const arns = queues.map((q) => `<${q}>`).sort();
    expect(grantsOf(t, "PipelineSplitterRole")["sqs:SendMessage"]).toEqual(expect.arrayContaining(arns));
    expect(grantsOf(t, "PipelineReducerRole")["sqs:SendMessage"]).toEqual(expect.arrayContaining(arns));
    expect(grantsOf(t, "PipelineReducerRole")["sqs:GetQueueAttributes"]).toEqual(expect.arrayContaining(arns));
    // Each lane's workers consume their own queue only, and may do the same in S3.
    expect(grantsOf(t, "PipelineWorkersTaskRole")["sqs:ReceiveMessage"]).toEqual([`<${queues[0]}>`]);
    expect(grantsOf(t, "PipelineWorkersSpotTaskRole")["sqs:ReceiveMessage"]).toEqual([`<${queues[1]}>`]);
    const s3Of = (role: string) => Object.fromEntries(Object.entries(grantsOf(t, role)).filter(([a]) => a.startsWith("s3:")));
    expect(s3Of("PipelineWorkersSpotTaskRole")).toEqual(s3Of("PipelineWorkersTaskRole"));
    expect(Object.keys(s3Of("PipelineWorkersTaskRole")).length).toBeGreaterThan(2);
    expect(props(t, "AWS::ECS::TaskDefinition", "PipelineWorkersSpotWorkerTask")["TaskRoleArn"]).toEqual({
      "Fn::GetAtt": [resource(t, "AWS::IAM::Role", "PipelineWorkersSpotTaskRole").id, "Arn"],
    });
    // One UpdateService statement per service, each held to that service's own task definition.
    const updates = statementsOf(t, "PipelineSplitterRole").filter((s) => JSON.stringify(s.Action).includes("ecs:UpdateService"));
    expect(updates.length).toBe(2);
    const pairs = updates.map((s) => [
      flat(s.Resource),
      flat((s as { Condition: { StringEqualsIfExists: Record<string, unknown> } }).Condition.StringEqualsIfExists["ecs:task-definition"]),
    ]);
    expect(pairs.sort()).toEqual(
      [
        [
          `<${resource(t, "AWS::ECS::Service", "PipelineWorkersService").id}>`,
          `<${resource(t, "AWS::ECS::TaskDefinition", "PipelineWorkersWorkerTask").id}>`,
        ],
        [
          `<${resource(t, "AWS::ECS::Service", "PipelineWorkersSpotService").id}>`,
          `<${resource(t, "AWS::ECS::TaskDefinition", "PipelineWorkersSpotWorkerTask").id}>`,
        ],
      ].sort(),
    );
  });

  it("outputs every name the SDK reads, the spot lane's service and queue among them", () => {
    const outputs = t.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(Object.keys(outputs).sort()).toEqual(Object.values(STACK_OUTPUTS).sort());
    expect(outputs[STACK_OUTPUTS.spotTaskQueueUrl]!.Value).toEqual(ref(t, "AWS::SQS::Queue", "PipelineSpotTaskQueue"));
    expect(outputs[STACK_OUTPUTS.spotService]!.Value).toEqual({
      "Fn::GetAtt": [resource(t, "AWS::ECS::Service", "PipelineWorkersSpotService").id, "Name"],
    });
  });

  it("refuses a warm pool only where the on-demand lane's instances are mixed (several types)", () => {
    expect(() => buildApp({ ...PER_JOB_CONTEXT, warmPool: "2" })).not.toThrow();
    const several = { ...PER_JOB_CONTEXT, instanceTypes: "m7g.large,c7g.large", warmPool: "1" };
    expect(() => buildApp(several)).toThrow(CloudmillConfigError);
    expect(() => buildApp(several)).toThrow(/warmPool needs a single on-demand instance type/);
  });
});
