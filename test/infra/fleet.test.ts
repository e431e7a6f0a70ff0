import { beforeAll, describe, expect, it } from "vitest";
import { readFileSync, readdirSync } from "node:fs";
import * as path from "node:path";
import type { Template } from "aws-cdk-lib/assertions";
import { ContainerImage } from "aws-cdk-lib/aws-ecs";
import { STACK_OUTPUTS } from "../../lib/core/stack.js";
import {
  LAB_CONTEXT,
  PER_JOB_CONTEXT,
  REPO_ROOT,
  SPOT_CONTEXT,
  actionsOf,
  flat,
  grantsOf,
  resource,
  resourcesOf,
  statementsOf,
  synth,
  type Statement,
  type Synthesized,
} from "./synth.js";

describe("worker fleet", () => {
  let lab: Synthesized;
  let template: Template;
  let spot: Template;
  beforeAll(() => {
    lab = synth(LAB_CONTEXT);
    template = lab.template;
    spot = synth(SPOT_CONTEXT).template;
  });

  const props = (t: Template, type: string, prefix: string) => resource(t, type, prefix).resource.Properties!;

  describe("network: no NAT, no inbound", () => {
    it("has public subnets only, no NAT gateway, and an S3 gateway endpoint", () => {
      template.resourceCountIs("AWS::EC2::NatGateway", 0);
      template.resourceCountIs("AWS::EC2::Subnet", 2);
      template.hasResourceProperties("AWS::EC2::VPCEndpoint", {
        VpcEndpointType: "Gateway",
        ServiceName: { "Fn::Join": ["", ["com.amazonaws.", { Ref: "AWS::Region" }, ".s3"]] },
      });
    });

    it("lets instances accept no inbound traffic and send only HTTPS", () => {
      const sg = props(template, "AWS::EC2::SecurityGroup", "PipelineWorkersInstanceSecurityGroup");
      expect(sg["SecurityGroupIngress"]).toBeUndefined();
      expect(sg["SecurityGroupEgress"]).toEqual([
        expect.objectContaining({ CidrIp: "0.0.0.0/0", IpProtocol: "tcp", FromPort: 443, ToPort: 443 }),
      ]);
      template.resourceCountIs("AWS::EC2::SecurityGroupIngress", 0);
    });

    it("logs VPC flows to the log bucket", () => {
      const logBucket = resource(template, "AWS::S3::Bucket", "PipelineLogBucket").id;
      expect(flat(props(template, "AWS::EC2::FlowLog", "PipelineWorkersVpcFlowLog")["LogDestination"])).toBe(
        `<${logBucket}>/vpc-flow-logs/`,
      );
    });
  });

  describe("instances", () => {
    it("boot the ECS-optimized Amazon Linux 2023 ARM64 AMI (resolved at deploy time)", () => {
      const imageId = (
        props(template, "AWS::EC2::LaunchTemplate", "PipelineWorkersLaunchTemplate")["LaunchTemplateData"] as { ImageId: { Ref: string } }
      ).ImageId.Ref;
      expect(template.toJSON().Parameters[imageId]).toMatchObject({
        Type: "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
        Default: "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id",
      });
    });

    it("require IMDSv2 with a hop limit of 1, so containers cannot reach the instance role", () => {
      for (const t of [template, spot]) {
        expect(props(t, "AWS::EC2::LaunchTemplate", "PipelineWorkersLaunchTemplate")["LaunchTemplateData"]).toMatchObject({
          MetadataOptions: { HttpTokens: "required", HttpPutResponseHopLimit: 1, HttpEndpoint: "enabled" },
        });
      }
    });

    it("encrypt their root volume, 30 GiB unless the lab asks for more room to spill", () => {
      for (const t of [template, spot]) {
        expect(props(t, "AWS::EC2::LaunchTemplate", "PipelineWorkersLaunchTemplate")["LaunchTemplateData"]).toMatchObject({
          BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { Encrypted: true, VolumeType: "gp3", VolumeSize: 30 } }],
        });
      }
      const roomy = synth({ workerDiskGiB: "200" }).template;
      expect(props(roomy, "AWS::EC2::LaunchTemplate", "PipelineWorkersLaunchTemplate")["LaunchTemplateData"]).toMatchObject({
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { Encrypted: true, VolumeType: "gp3", VolumeSize: 200 } }],
      });
    });

    it("scale from 0 to maxInstances, protected from scale-in for the capacity provider", () => {
      expect(props(template, "AWS::AutoScaling::AutoScalingGroup", "PipelineWorkers")).toMatchObject({
        MinSize: "0",
        MaxSize: "4",
        NewInstancesProtectedFromScaleIn: true,
      });
      expect(props(spot, "AWS::AutoScaling::AutoScalingGroup", "PipelineWorkers")).toMatchObject({ MinSize: "0", MaxSize: "3" });
    });

    it("tell the splitter and the reducer how the fleet is bought, so reports and price ceilings price it so", () => {
      for (const [t, capacity] of [
        [template, "on-demand"],
        [spot, "spot"],
      ] as const)
        for (const fn of ["PipelineSplitter", "PipelineReducer"]) {
          const env = (props(t, "AWS::Lambda::Function", fn)["Environment"] as { Variables: Record<string, unknown> }).Variables;
          expect(env["CLOUDMILL_CAPACITY"], fn).toBe(capacity);
        }
    });

    it("run on demand, one instance type, when spot is off", () => {
      const asg = props(template, "AWS::AutoScaling::AutoScalingGroup", "PipelineWorkers");
      expect(asg["MixedInstancesPolicy"]).toBeUndefined();
      expect(asg["LaunchTemplate"]).toBeDefined();
      expect(props(template, "AWS::EC2::LaunchTemplate", "PipelineWorkersLaunchTemplate")["LaunchTemplateData"]).toMatchObject({
        InstanceType: "m7g.large",
      });
    });

    it("run on spot over every listed type, price-capacity-optimized, rebalancing, with ECS spot draining, when spot is on", () => {
      const asg = props(spot, "AWS::AutoScaling::AutoScalingGroup", "PipelineWorkers");
      expect(asg).toMatchObject({
        CapacityRebalance: true,
        MixedInstancesPolicy: {
          InstancesDistribution: {
            OnDemandBaseCapacity: 0,
            OnDemandPercentageAboveBaseCapacity: 0,
            SpotAllocationStrategy: "price-capacity-optimized",
          },
          LaunchTemplate: { Overrides: [{ InstanceType: "m7g.large" }, { InstanceType: "c7g.xlarge" }] },
        },
      });
      const userData = JSON.stringify(props(spot, "AWS::EC2::LaunchTemplate", "PipelineWorkersLaunchTemplate")["LaunchTemplateData"]);
      expect(userData).toContain("ECS_ENABLE_SPOT_INSTANCE_DRAINING=true");
      const cluster = resource(spot, "AWS::ECS::Cluster", "PipelineWorkersCluster").id;
      expect(grantsOf(spot, "PipelineWorkersInstanceRole")["ecs:UpdateContainerInstancesState"]).toEqual([
        `arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:container-instance/<${cluster}>/*`,
      ]);
      expect(grantsOf(template, "PipelineWorkersInstanceRole")["ecs:UpdateContainerInstancesState"]).toBeUndefined();
      expect(JSON.stringify(props(template, "AWS::EC2::LaunchTemplate", "PipelineWorkersLaunchTemplate"))).not.toContain("SPOT");
    });
  });

  describe("instance role", () => {
    /** Every Allow statement of every role in `t` with Resource "*", as `<role> <actions>`. */
    const starGrants = (t: Template): string[] =>
      Object.values(t.findResources("AWS::IAM::Policy") as Record<string, { Properties: Record<string, unknown> }>).flatMap((p) =>
        (p.Properties["PolicyDocument"] as { Statement: Statement[] }).Statement.filter(
          (s) => s.Effect === "Allow" && resourcesOf(s).includes("*"),
        ).map((s) => `${flat((p.Properties["Roles"] as unknown[])[0])} ${actionsOf(s).sort().join(",")}`),
      );

    it("lets the ECS agent register and poll this cluster, and write no logs (the execution role does)", () => {
      const cluster = `<${resource(template, "AWS::ECS::Cluster", "PipelineWorkersCluster").id}>`;
      for (const t of [template, spot, synth(PER_JOB_CONTEXT).template]) {
        const statements = statementsOf(t, "PipelineWorkersInstanceRole");
        expect(statements.flatMap(actionsOf).filter((a) => a.startsWith("logs:"))).toEqual([]);
        const grants = grantsOf(t, "PipelineWorkersInstanceRole");
        expect(grants).toMatchObject({
          "ecs:RegisterContainerInstance": [cluster],
          "ecs:DeregisterContainerInstance": [cluster],
          "ecs:Submit*": [cluster],
          "ecs:Poll": ["*"],
          "ecs:StartTelemetrySession": ["*"],
          "ecs:DiscoverPollEndpoint": ["*"],
          "ecr:GetAuthorizationToken": ["*"],
        });
        expect(Object.keys(grants).sort()).toEqual(
          [
            "ecr:GetAuthorizationToken",
            "ecs:DeregisterContainerInstance",
            "ecs:DiscoverPollEndpoint",
            "ecs:Poll",
            "ecs:RegisterContainerInstance",
            "ecs:StartTelemetrySession",
            "ecs:Submit*",
            ...(t === template ? [] : ["ecs:UpdateContainerInstancesState"]),
          ].sort(),
        );
        const poll = statements.find((s) => actionsOf(s).includes("ecs:Poll"))!;
        expect(flat((poll.Condition as { ArnEquals: Record<string, unknown> }).ArnEquals["ecs:cluster"])).toBe(cluster);
      }
    });

    it("leaves Resource * only to actions without resource-level permissions, in every cloudmill role", () => {
      const instanceRole = `<${resource(template, "AWS::IAM::Role", "PipelineWorkersInstanceRole").id}>`;
      const executionRole = `<${resource(template, "AWS::IAM::Role", "PipelineWorkersWorkerTaskExecutionRole").id}>`;
      expect(starGrants(template).sort()).toEqual(
        [
          `${instanceRole} ecr:GetAuthorizationToken,ecs:DiscoverPollEndpoint`,
          `${instanceRole} ecs:Poll,ecs:StartTelemetrySession`,
          `${executionRole} ecr:GetAuthorizationToken`,
        ].sort(),
      );
    });
  });

  describe("ready fast from idle", () => {
    const userData = (t: Template): string =>
      JSON.stringify(props(t, "AWS::EC2::LaunchTemplate", "PipelineWorkersLaunchTemplate")["LaunchTemplateData"]);

    it("keeps a warm pool of one stopped, prepared instance by default, which the agent leaves alone", () => {
      const pool = props(template, "AWS::AutoScaling::WarmPool", "PipelineWorkers");
      expect(pool).toMatchObject({ MinSize: 1, MaxGroupPreparedCapacity: 1, PoolState: "Stopped" });
      // Amazon ECS does not support ReuseOnScaleIn for a cluster's Auto Scaling group (its warm pool guide).
      expect(pool["InstanceReusePolicy"]).toBeUndefined();
      expect(flat(pool["AutoScalingGroupName"])).toBe(
        `<${resource(template, "AWS::AutoScaling::AutoScalingGroup", "PipelineWorkers").id}>`,
      );
      expect(userData(template)).toContain("ECS_WARM_POOLS_CHECK=true");
    });

    it("sizes the warm pool as configured, and has none at 0 or on spot", () => {
      expect(props(synth({ ...LAB_CONTEXT, warmPool: "3" }).template, "AWS::AutoScaling::WarmPool", "PipelineWorkers")).toMatchObject({
        MinSize: 3,
        MaxGroupPreparedCapacity: 3,
      });
      const none = synth({ ...LAB_CONTEXT, warmPool: "0" }).template;
      none.resourceCountIs("AWS::AutoScaling::WarmPool", 0);
      expect(userData(none)).not.toContain("ECS_WARM_POOLS_CHECK");
      spot.resourceCountIs("AWS::AutoScaling::WarmPool", 0);
      expect(() => synth({ ...SPOT_CONTEXT, warmPool: "1" })).toThrow(/warmPool needs a single on-demand instance type/);
    });

    it("keeps a pulled image cached on the instance", () => {
      for (const t of [template, spot]) expect(userData(t)).toContain("ECS_IMAGE_PULL_BEHAVIOR=prefer-cached");
    });

    it("lets the splitter wake only its own worker service, sized by the stack's maximum", () => {
      const service = resource(template, "AWS::ECS::Service", "PipelineWorkersService").id;
      const cluster = resource(template, "AWS::ECS::Cluster", "PipelineWorkersCluster").id;
      const splitter = props(template, "AWS::Lambda::Function", "PipelineSplitter");
      const env = (splitter["Environment"] as { Variables: Record<string, unknown> }).Variables;
      expect(flat(env["CLOUDMILL_WORKER_CLUSTER"])).toBe(`<${cluster}>`);
      expect(flat(env["CLOUDMILL_WORKER_SERVICE"])).toContain(service);
      const scalable = props(template, "AWS::ApplicationAutoScaling::ScalableTarget", "PipelineWorkersWorkerCount");
      expect(env["CLOUDMILL_MAX_WORKERS"]).toBe(String(scalable["MaxCapacity"]));
      const grants = grantsOf(template, "PipelineSplitterRole");
      expect(grants["ecs:UpdateService"]).toEqual([`<${service}>`]);
      expect(grants["ecs:DescribeServices"]).toEqual([`<${service}>`]);
      for (const [action, resources] of Object.entries(grants)) if (action.startsWith("ecs:")) expect(resources).toEqual([`<${service}>`]);
      // Its count only: no other task definition, no ECS Exec.
      const update = statementsOf(template, "PipelineSplitterRole").find((st) => actionsOf(st).includes("ecs:UpdateService"))!;
      const taskDefinition = resource(template, "AWS::ECS::TaskDefinition", "PipelineWorkersWorkerTask").id;
      expect(update.Condition).toEqual({
        StringEqualsIfExists: { "ecs:task-definition": { Ref: taskDefinition } },
        BoolIfExists: { "ecs:enable-execute-command": "false" },
      });
    });
  });

  describe("cluster and service", () => {
    it("turns on Container Insights with enhanced observability (per-container CPU, memory, disk, network)", () => {
      template.hasResourceProperties("AWS::ECS::Cluster", { ClusterSettings: [{ Name: "containerInsights", Value: "enhanced" }] });
    });

    it("uses an Auto Scaling group capacity provider with managed scaling and managed termination protection", () => {
      const cp = resource(template, "AWS::ECS::CapacityProvider", "PipelineWorkersCapacityProvider");
      expect(cp.resource.Properties).toMatchObject({
        AutoScalingGroupProvider: {
          AutoScalingGroupArn: { Ref: resource(template, "AWS::AutoScaling::AutoScalingGroup", "PipelineWorkers").id },
          ManagedScaling: { Status: "ENABLED", TargetCapacity: 100 },
          ManagedTerminationProtection: "ENABLED",
        },
      });
      template.hasResourceProperties("AWS::ECS::ClusterCapacityProviderAssociations", { CapacityProviders: [{ Ref: cp.id }] });
    });

    it("runs the worker service on that capacity provider, starting at zero tasks, after the provider is associated", () => {
      const service = resource(template, "AWS::ECS::Service", "PipelineWorkersService");
      const cp = resource(template, "AWS::ECS::CapacityProvider", "PipelineWorkersCapacityProvider").id;
      expect(service.resource.Properties).toMatchObject({
        DesiredCount: 0,
        CapacityProviderStrategy: [{ CapacityProvider: { Ref: cp }, Weight: 1 }],
      });
      const association = resource(template, "AWS::ECS::ClusterCapacityProviderAssociations", "PipelineWorkersCluster").id;
      expect(service.resource.DependsOn).toContain(association);
    });

    it("runs the image cloudmill builds, sized to the instance, stopping gracefully in 120 s", () => {
      const td = props(template, "AWS::ECS::TaskDefinition", "PipelineWorkersWorkerTask");
      expect(td).toMatchObject({ NetworkMode: "bridge", RequiresCompatibilities: ["EC2"] });
      expect((td["ContainerDefinitions"] as unknown[])[0]).toMatchObject({
        Name: "worker",
        Cpu: 2048,
        Memory: 3072,
        StopTimeout: 120,
        Essential: true,
        LinuxParameters: { InitProcessEnabled: true },
        LogConfiguration: { LogDriver: "awslogs" },
        Image: { "Fn::Sub": expect.stringContaining("container-assets") },
      });
    });

    it("runs the worker as node's uid 1000, never root, with every Linux capability dropped, in every lane", () => {
      // Whatever the image's USER: a lab's stage that ends as root, or a workerImage, runs as 1000 too.
      const perJob = synth(PER_JOB_CONTEXT).template;
      const ownImage = synth(LAB_CONTEXT, { workerImage: ContainerImage.fromRegistry("public.ecr.aws/lab/worker:1") }).template;
      for (const [t, lanes] of [
        [template, ["PipelineWorkersWorkerTask"]],
        [ownImage, ["PipelineWorkersWorkerTask"]],
        [spot, ["PipelineWorkersWorkerTask"]],
        [perJob, ["PipelineWorkersWorkerTask", "PipelineWorkersSpotWorkerTask"]],
      ] as const) {
        for (const lane of lanes) {
          const [worker] = props(t, "AWS::ECS::TaskDefinition", lane)["ContainerDefinitions"] as Record<string, unknown>[];
          expect(worker).toMatchObject({
            User: "1000:1000",
            LinuxParameters: { InitProcessEnabled: true, Capabilities: { Drop: ["ALL"] } },
          });
          expect(worker!["Privileged"]).toBeUndefined();
          expect((worker!["LinuxParameters"] as { Capabilities: { Add?: unknown } }).Capabilities.Add).toBeUndefined();
        }
      }
    });

    it("builds that image for linux/arm64 from a staged context: cloudmill's Dockerfile, the worker bundle and the ops, nothing else", () => {
      const { app, stack } = lab;
      const manifest = JSON.parse(readFileSync(path.join(app.outdir, `${stack.artifactId}.assets.json`), "utf8")) as {
        dockerImages: Record<string, { source: { directory: string; dockerFile: string; platform: string } }>;
      };
      const images = Object.values(manifest.dockerImages);
      expect(images).toHaveLength(1);
      expect(images[0]!.source).toMatchObject({ dockerFile: "Dockerfile", platform: "linux/arm64" });
      const context = path.join(app.outdir, images[0]!.source.directory);
      // Staged in the cloud assembly, not taken from a repository: no sources, lock file or node_modules to send Docker.
      expect(path.relative(app.outdir, context).startsWith("..")).toBe(false);
      expect(readdirSync(context).sort()).toEqual(["Dockerfile", "ops", "worker"]);
      expect(readdirSync(path.join(context, "worker")).sort()).toEqual(["itemThread.mjs", "main.mjs", "mapperThread.mjs"]);
      expect(readdirSync(path.join(context, "ops"))).toEqual(["registry.json"]);
      expect(readFileSync(path.join(context, "Dockerfile"), "utf8")).toBe(readFileSync(path.join(REPO_ROOT, "worker/Dockerfile"), "utf8"));
    });

    it("gives a worker all vCPUs of the smallest type, and lets the fleet hold as many as fit", () => {
      const td = props(spot, "AWS::ECS::TaskDefinition", "PipelineWorkersWorkerTask");
      expect((td["ContainerDefinitions"] as unknown[])[0]).toMatchObject({ Cpu: 2048, Memory: 3072 });
      // 3 instances × (4 vCPUs of c7g.xlarge / 2 per worker)
      expect(props(spot, "AWS::ApplicationAutoScaling::ScalableTarget", "PipelineWorkersWorkerCount")).toMatchObject({
        MinCapacity: 0,
        MaxCapacity: 6,
      });
    });
  });

  describe("scaling on the task queue's backlog", () => {
    const alarm = (prefix: string) => props(template, "AWS::CloudWatch::Alarm", prefix);
    const policy = (prefix: string) => resource(template, "AWS::ApplicationAutoScaling::ScalingPolicy", prefix);
    const taskQueue = () => resource(template, "AWS::SQS::Queue", "PipelineTaskQueue").id;

    it("scales the service between 0 and maxWorkers through the ECS service-linked role", () => {
      expect(props(template, "AWS::ApplicationAutoScaling::ScalableTarget", "PipelineWorkersWorkerCount")).toMatchObject({
        MinCapacity: 0,
        MaxCapacity: 4,
        ScalableDimension: "ecs:service:DesiredCount",
        ServiceNamespace: "ecs",
      });
    });

    it("names the service as fleet --scale holds it: service/<cluster>/<service>, its minimum 0 until a hold raises it", () => {
      const scalable = props(template, "AWS::ApplicationAutoScaling::ScalableTarget", "PipelineWorkersWorkerCount");
      const cluster = resource(template, "AWS::ECS::Cluster", "PipelineWorkersCluster").id;
      const service = resource(template, "AWS::ECS::Service", "PipelineWorkersService").id;
      // The hold (lib/sdk/fleetHold.ts) registers the same target by this id, from the stack's ClusterName and ServiceName outputs.
      expect(flat(scalable["ResourceId"])).toBe(`service/<${cluster}>/<${service}>`);
      const outputs = template.toJSON()["Outputs"] as Record<string, { Value: unknown }>;
      expect(flat(outputs[STACK_OUTPUTS.cluster]!.Value)).toBe(`<${cluster}>`);
      expect(flat(outputs[STACK_OUTPUTS.service]!.Value)).toBe(`<${service}>`);
      expect(scalable["MinCapacity"]).toBe(0);
      // No scheduled action in the template: a hold's end is put by the CLI at run time.
      expect(scalable["ScheduledActions"]).toBeUndefined();
    });

    it("never scales on CPU: two step policies, no target tracking", () => {
      template.resourceCountIs("AWS::ApplicationAutoScaling::ScalingPolicy", 2);
      for (const p of Object.values(template.findResources("AWS::ApplicationAutoScaling::ScalingPolicy"))) {
        expect(p["Properties"]["PolicyType"]).toBe("StepScaling");
      }
      expect(JSON.stringify(template.findResources("AWS::CloudWatch::Alarm"))).not.toContain("CPUUtilization");
    });

    it("starts a worker for the first visible chunk", () => {
      const out = policy("PipelineWorkersScaleOut");
      expect(alarm("PipelineWorkersScaleOutAlarm")).toMatchObject({
        Namespace: "AWS/SQS",
        MetricName: "ApproximateNumberOfMessagesVisible",
        Dimensions: [{ Name: "QueueName", Value: { "Fn::GetAtt": [taskQueue(), "QueueName"] } }],
        Statistic: "Maximum",
        Period: 60,
        Threshold: 1,
        ComparisonOperator: "GreaterThanOrEqualToThreshold",
        EvaluationPeriods: 1,
        AlarmActions: [{ Ref: out.id }],
      });
      expect(out.resource.Properties).toMatchObject({
        StepScalingPolicyConfiguration: {
          AdjustmentType: "ChangeInCapacity",
          // Bounds are relative to the threshold of 1: the first step covers 1..9 visible chunks.
          StepAdjustments: [
            { MetricIntervalLowerBound: 0, MetricIntervalUpperBound: 9, ScalingAdjustment: 1 },
            { MetricIntervalLowerBound: 9, MetricIntervalUpperBound: 99, ScalingAdjustment: 2 },
            { MetricIntervalLowerBound: 99, ScalingAdjustment: 4 },
          ],
        },
      });
    });

    it("goes back to zero only when workers are wanted and nothing is visible or in flight for five minutes", () => {
      const scaleIn = policy("PipelineWorkersScaleIn");
      expect(scaleIn.resource.Properties).toMatchObject({
        StepScalingPolicyConfiguration: {
          AdjustmentType: "ExactCapacity",
          StepAdjustments: [{ MetricIntervalUpperBound: 0, ScalingAdjustment: 0 }],
        },
      });
      const a = alarm("PipelineWorkersScaleInAlarm");
      expect(a).toMatchObject({
        Threshold: 0,
        ComparisonOperator: "LessThanOrEqualToThreshold",
        EvaluationPeriods: 5,
        DatapointsToAlarm: 5,
        TreatMissingData: "notBreaching",
        AlarmActions: [{ Ref: scaleIn.id }],
      });
      const metrics = a["Metrics"] as {
        Id: string;
        Expression?: string;
        MetricStat?: { Metric: { MetricName: string; Dimensions: unknown } };
      }[];
      // With no worker wanted the expression is 1: an idle fleet's alarm is OK, so it cannot undo a wake.
      expect(metrics.find((m) => m.Expression)?.Expression).toBe("IF(FILL(desired, 0) > 0, FILL(visible, 0) + FILL(inFlight, 0), 1)");
      expect(metrics.filter((m) => m.MetricStat).map((m) => [m.Id, m.MetricStat!.Metric.MetricName])).toEqual([
        ["visible", "ApproximateNumberOfMessagesVisible"],
        ["inFlight", "ApproximateNumberOfMessagesNotVisible"],
        ["desired", "DesiredTaskCount"],
      ]);
      for (const m of metrics.filter((x) => x.MetricStat && x.Id !== "desired")) {
        expect(m.MetricStat!.Metric.Dimensions).toEqual([{ Name: "QueueName", Value: { "Fn::GetAtt": [taskQueue(), "QueueName"] } }]);
      }
      const service = resource(template, "AWS::ECS::Service", "PipelineWorkersService").id;
      const cluster = resource(template, "AWS::ECS::Cluster", "PipelineWorkersCluster").id;
      expect(flat(metrics.find((m) => m.Id === "desired")!.MetricStat!.Metric.Dimensions)).toBe(
        flat([
          { Name: "ClusterName", Value: { Ref: cluster } },
          { Name: "ServiceName", Value: { "Fn::GetAtt": [service, "Name"] } },
        ]),
      );
    });
  });
});
