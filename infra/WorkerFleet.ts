/**
 * The worker fleet: ECS on EC2 (ECS-optimized AL2023 ARM64), an Auto Scaling group capacity provider
 * with managed scaling and managed termination protection, and a service whose task count follows
 * the task queue's backlog from zero to the maximum and back to zero.
 */
import { Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import * as appscaling from "aws-cdk-lib/aws-applicationautoscaling";
import * as autoscaling from "aws-cdk-lib/aws-autoscaling";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import * as cwActions from "aws-cdk-lib/aws-cloudwatch-actions";
import * as ec2 from "aws-cdk-lib/aws-ec2";
import * as ecs from "aws-cdk-lib/aws-ecs";
import * as iam from "aws-cdk-lib/aws-iam";
import * as logs from "aws-cdk-lib/aws-logs";
import type * as s3 from "aws-cdk-lib/aws-s3";
import type * as sqs from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import { acknowledge, wildcardActionFinding, wildcardResourceFinding } from "./nag.js";
import type { PipelineConfig } from "./props.js";
import { ENV } from "../lib/core/constants.js";

export interface WorkerFleetProps {
  /** The pipeline's resolved configuration (instance types, spot, sizes, limits). */
  readonly config: PipelineConfig;
  /** The queue the workers consume; its backlog drives scaling. */
  readonly taskQueue: sqs.IQueue;
  /** The spot lane's queue (`spot: "per-job"`): a second service on spot instances consumes it. */
  readonly spotTaskQueue?: sqs.IQueue;
  /** The worker container's environment (exactly ROLE_ENV.worker); a lane's task queue URL is its own. */
  readonly environment: Readonly<Record<string, string>>;
  /** The worker image. */
  readonly image: ecs.ContainerImage;
  /** Where VPC flow logs go when the fleet creates its own VPC. */
  readonly flowLogBucket: s3.IBucket;
  /**
   * The VPC to run in.
   * @default - a new two-AZ VPC with public subnets only and an S3 gateway endpoint
   */
  readonly vpc?: ec2.IVpc;
  /**
   * Subnets of the VPC for the instances.
   * @default - the public subnets
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
}

/**
 * The user the worker container runs as, whatever the image says: the `node` user of
 * cloudmill's image (node:22's uid and gid 1000), by number so that it also holds for a lab's
 * `workerDockerfile` stage that ends as root and for a `workerImage` with no `node` user. The
 * worker writes only under os.tmpdir() (/tmp: spilled runs, task items' scratch), which any
 * user may write in.
 */
export const WORKER_USER = "1000:1000";

/** Seconds between the worker receiving SIGTERM and SIGKILL: enough to finish or release in-flight chunks. */
export const WORKER_STOP_TIMEOUT = Duration.seconds(120);
/**
 * Scale-out cooldown: about the time an instance needs to boot, join the cluster and start a worker.
 * Within it, repeated alarms do not add the same capacity twice.
 */
const SCALE_OUT_COOLDOWN = Duration.minutes(4);

/**
 * One worker service and what it runs on: an Auto Scaling group and its capacity provider, the
 * task definition (its own task queue in the environment), and the scaling on that queue.
 */
export interface WorkerLane {
  /** What the lane's workers may do: the S3 grants are the pipeline's, the same for every lane. */
  readonly taskRole: iam.Role;
  /** The lane's own: its user data differs (spot draining), and its instance type when not mixed. */
  readonly launchTemplate: ec2.LaunchTemplate;
  /** Whether its group buys instances by a mixed-instances policy (spot, or several types). */
  readonly mixedInstances: boolean;
  readonly autoScalingGroup: autoscaling.AutoScalingGroup;
  readonly capacityProvider: ecs.AsgCapacityProvider;
  readonly taskDefinition: ecs.Ec2TaskDefinition;
  readonly container: ecs.ContainerDefinition;
  readonly service: ecs.Ec2Service;
  readonly scalableTarget: appscaling.ScalableTarget;
  /** Adds workers while chunks are waiting (visible ≥ 1). */
  readonly scaleOutAlarm: cloudwatch.Alarm;
  /** Sets the worker count to zero once nothing is visible or in flight for `scaleInAfterIdle`. */
  readonly scaleInAlarm: cloudwatch.Alarm;
  /** Chunks waiting plus chunks in flight on the lane's task queue. */
  readonly backlogMetric: cloudwatch.IMetric;
}

export class WorkerFleet extends Construct implements WorkerLane {
  public readonly vpc: ec2.IVpc;
  public readonly securityGroup: ec2.SecurityGroup;
  public readonly instanceRole: iam.Role;
  public readonly launchTemplate: ec2.LaunchTemplate;
  public readonly mixedInstances: boolean;
  public readonly autoScalingGroup: autoscaling.AutoScalingGroup;
  public readonly cluster: ecs.Cluster;
  public readonly capacityProvider: ecs.AsgCapacityProvider;
  public readonly taskRole: iam.Role;
  public readonly taskDefinition: ecs.Ec2TaskDefinition;
  public readonly container: ecs.ContainerDefinition;
  public readonly logGroup: logs.LogGroup;
  public readonly service: ecs.Ec2Service;
  public readonly scalableTarget: appscaling.ScalableTarget;
  /** Adds workers while chunks are waiting (visible ≥ 1). */
  public readonly scaleOutAlarm: cloudwatch.Alarm;
  /** Sets the worker count to zero once nothing is visible or in flight for `scaleInAfterIdle`. */
  public readonly scaleInAlarm: cloudwatch.Alarm;
  /** Chunks waiting plus chunks in flight on the task queue. */
  public readonly backlogMetric: cloudwatch.IMetric;
  /** Every lane's task role: what a lab's own extra access for its ops must be granted to (taskRole is the first lane's only). */
  public get taskRoles(): iam.Role[] {
    return [this.taskRole, ...(this.spotLane ? [this.spotLane.taskRole] : [])];
  }

  /** The spot lane (`spot: "per-job"`), for jobs that prefer `cheapest`; the fields above are the on-demand lane's. */
  public readonly spotLane?: WorkerLane;

  public constructor(scope: Construct, id: string, props: WorkerFleetProps) {
    super(scope, id);
    const { config } = props;

    this.vpc = props.vpc ?? this.createVpc(props.flowLogBucket);

    this.securityGroup = new ec2.SecurityGroup(this, "InstanceSecurityGroup", {
      vpc: this.vpc,
      description: "cloudmill workers: no inbound traffic; outbound HTTPS to AWS APIs only",
      allowAllOutbound: false,
    });
    this.securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs (S3, SQS, ECS, ECR, CloudWatch Logs)");

    this.instanceRole = new iam.Role(this, "InstanceRole", {
      assumedBy: new iam.ServicePrincipal("ec2.amazonaws.com"),
      description: "cloudmill ECS container instances: register with the cluster and nothing else",
    });

    this.cluster = new ecs.Cluster(this, "Cluster", {
      vpc: this.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENHANCED,
    });
    // What the ECS agent needs, written here rather than left to aws-ecs: adding a capacity
    // provider has it add these to the group's role plus logs:CreateLogStream/PutLogEvents on `*`,
    // which nothing on the instance uses (the worker's awslogs driver writes with the task's
    // execution role, to the worker log group only). The launch templates get the role without
    // policy updates, so that statement goes nowhere.
    this.instanceRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: "RegisterWithCluster",
        actions: ["ecs:DeregisterContainerInstance", "ecs:RegisterContainerInstance", "ecs:Submit*"],
        resources: [this.cluster.clusterArn],
      }),
    );
    this.instanceRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: "PollCluster",
        actions: ["ecs:Poll", "ecs:StartTelemetrySession"],
        resources: ["*"],
        conditions: { ArnEquals: { "ecs:cluster": this.cluster.clusterArn } },
      }),
    );
    this.instanceRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: "FindEndpointAndRegistry",
        // Neither supports resource-level permissions.
        actions: ["ecs:DiscoverPollEndpoint", "ecr:GetAuthorizationToken"],
        resources: ["*"],
      }),
    );
    if (config.spot || config.spotLane) {
      // A spot interruption notice drains the instance: the agent sets it DRAINING, ECS stops its tasks
      // (SIGTERM, 120 s to release chunks) and starts replacements elsewhere.
      this.instanceRole.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: "SpotDraining",
          actions: ["ecs:UpdateContainerInstancesState"],
          resources: [this.containerInstancesArn()],
        }),
      );
    }

    // Removed with the stack, as the functions' log groups are: a torn-down lab leaves nothing behind.
    this.logGroup = new logs.LogGroup(this, "Logs", { retention: config.logRetention, removalPolicy: RemovalPolicy.DESTROY });
    const tasksArn = this.cluster.arnForTasks("*");
    const main = this.addLane("", props, { queue: props.taskQueue, spot: config.spot, warmPool: config.warmPool, tasksArn });
    this.taskRole = main.taskRole;
    this.launchTemplate = main.launchTemplate;
    this.mixedInstances = main.mixedInstances;
    this.autoScalingGroup = main.autoScalingGroup;
    this.capacityProvider = main.capacityProvider;
    this.taskDefinition = main.taskDefinition;
    this.container = main.container;
    this.service = main.service;
    this.scalableTarget = main.scalableTarget;
    this.scaleOutAlarm = main.scaleOutAlarm;
    this.scaleInAlarm = main.scaleInAlarm;
    this.backlogMetric = main.backlogMetric;
    if (config.spotLane) {
      if (!props.spotTaskQueue) throw new Error("a fleet with a spot lane needs its task queue (spotTaskQueue)");
      this.spotLane = this.addLane("Spot", props, { queue: props.spotTaskQueue, spot: true, warmPool: 0, tasksArn });
    }

    this.acknowledgeFindings(config, tasksArn);
  }

  /**
   * A lane: its Auto Scaling group, capacity provider, task definition, service and scaling. The
   * first lane's constructs keep the ids they had before lanes existed (prefix ""), so a deployed
   * stack updates them in place.
   */
  private addLane(
    prefix: string,
    props: WorkerFleetProps,
    lane: { readonly queue: sqs.IQueue; readonly spot: boolean; readonly warmPool: number; readonly tasksArn: string },
  ): WorkerLane {
    const { config } = props;
    // Each lane's workers consume their own queue only.
    const taskRole = new iam.Role(this, `${prefix}TaskRole`, {
      assumedBy: new iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
      description: "cloudmill worker: read inputs, write parts, consume the task queue, protect itself from scale-in",
    });
    taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: "ConsumeTasks",
        // SendMessage: a task the worker is stopped under goes back as a fresh message (no attempt of its used).
        actions: ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage"],
        resources: [lane.queue.queueArn],
      }),
    );
    taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: "ScaleInProtection",
        actions: ["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"],
        resources: [lane.tasksArn],
      }),
    );
    const stack = Stack.of(this);
    const vpcSubnets = props.vpcSubnets ?? { subnetType: ec2.SubnetType.PUBLIC };
    // Spot needs a mixed-instances policy (its allocation strategy); so do several types.
    const mixed = lane.spot || config.instanceTypes.length > 1;

    // IMDSv2 only, one hop: the ECS agent (host network) reaches it, bridge-mode containers cannot,
    // so a worker can never borrow the instance role.
    const launchTemplate = new ec2.LaunchTemplate(this, `${prefix}LaunchTemplate`, {
      machineImage: ecs.EcsOptimizedImage.amazonLinux2023(ecs.AmiHardwareType.ARM),
      instanceType: mixed ? undefined : new ec2.InstanceType(config.instanceTypes[0]!),
      userData: ec2.UserData.forLinux(),
      // Without policy updates: the instance role's statements are the ones above, not aws-ecs's.
      role: this.instanceRole.withoutPolicyUpdates(),
      securityGroup: this.securityGroup,
      httpTokens: ec2.LaunchTemplateHttpTokens.REQUIRED,
      httpEndpoint: true,
      httpPutResponseHopLimit: 1,
      requireImdsv2: true,
      blockDevices: [
        {
          deviceName: "/dev/xvda",
          volume: ec2.BlockDeviceVolume.ebs(config.workerDiskGiB, {
            encrypted: true,
            volumeType: ec2.EbsDeviceVolumeType.GP3,
            deleteOnTermination: true,
          }),
        },
      ],
    });

    const autoScalingGroup = new autoscaling.AutoScalingGroup(this, `${prefix}AutoScalingGroup`, {
      vpc: this.vpc,
      vpcSubnets,
      minCapacity: 0,
      maxCapacity: config.maxInstances,
      ...(mixed
        ? {
            mixedInstancesPolicy: {
              launchTemplate,
              launchTemplateOverrides: config.instanceTypes.map((t) => ({ instanceType: new ec2.InstanceType(t) })),
              instancesDistribution: {
                onDemandBaseCapacity: 0,
                onDemandPercentageAboveBaseCapacity: lane.spot ? 0 : 100,
                onDemandAllocationStrategy: autoscaling.OnDemandAllocationStrategy.PRIORITIZED,
                ...(lane.spot ? { spotAllocationStrategy: autoscaling.SpotAllocationStrategy.PRICE_CAPACITY_OPTIMIZED } : {}),
              },
            },
            capacityRebalance: lane.spot,
          }
        : { launchTemplate }),
      groupMetrics: [autoscaling.GroupMetrics.all()],
    });

    if (lane.warmPool > 0) {
      // Stopped instances, booted once and stopped: a woken fleet starts one rather than launching
      // one. The agent must not register a warm instance while it is prepared. Not reused on
      // scale-in: Amazon ECS does not support returning its container instances to a warm pool.
      autoScalingGroup.addUserData("echo ECS_WARM_POOLS_CHECK=true >> /etc/ecs/ecs.config");
      autoScalingGroup.addWarmPool({
        minSize: lane.warmPool,
        maxGroupPreparedCapacity: lane.warmPool,
        poolState: autoscaling.PoolState.STOPPED,
      });
    }
    // The image stays cached on an instance: a task started again there does not pull it anew.
    autoScalingGroup.addUserData("echo ECS_IMAGE_PULL_BEHAVIOR=prefer-cached >> /etc/ecs/ecs.config");

    const capacityProvider = new ecs.AsgCapacityProvider(this, `${prefix}CapacityProvider`, {
      autoScalingGroup,
      enableManagedScaling: true,
      enableManagedTerminationProtection: true,
      targetCapacityPercent: 100,
      machineImageType: ecs.MachineImageType.AMAZON_LINUX_2,
    });
    this.cluster.addAsgCapacityProvider(capacityProvider);
    if (lane.spot) autoScalingGroup.addUserData("echo ECS_ENABLE_SPOT_INSTANCE_DRAINING=true >> /etc/ecs/ecs.config");

    const taskDefinition = new ecs.Ec2TaskDefinition(this, `${prefix}WorkerTask`, {
      networkMode: ecs.NetworkMode.BRIDGE,
      taskRole,
    });
    // An init process as PID 1 (the worker's watchdog ends a stuck worker with SIGKILL, which node
    // as PID 1 cannot receive), and no Linux capability at all: the worker needs none (it runs as
    // a user, reads /proc/self and the cgroup, writes /tmp, and makes outbound HTTPS calls only).
    const linuxParameters = new ecs.LinuxParameters(this, `${prefix}WorkerLinuxParameters`, { initProcessEnabled: true });
    linuxParameters.dropCapabilities(ecs.Capability.ALL);
    const container = taskDefinition.addContainer("worker", {
      image: props.image,
      essential: true,
      cpu: config.workerVcpus * 1024,
      memoryLimitMiB: config.workerMemoryMiB,
      environment: { ...props.environment, [ENV.TASK_QUEUE_URL]: lane.queue.queueUrl },
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: "worker" }),
      stopTimeout: WORKER_STOP_TIMEOUT,
      user: WORKER_USER,
      linuxParameters,
    });

    const service = new ecs.Ec2Service(this, `${prefix}Service`, {
      cluster: this.cluster,
      taskDefinition,
      desiredCount: 0,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      capacityProviderStrategies: [{ capacityProvider: capacityProvider.capacityProviderName, weight: 1 }],
      placementStrategies: [ecs.PlacementStrategy.packedByCpu()],
      circuitBreaker: { enable: true, rollback: true },
      propagateTags: ecs.PropagatedTagSource.SERVICE,
      enableECSManagedTags: true,
    });
    // The capacity provider must be associated with the cluster before the service can use it.
    service.node.addDependency(this.cluster);

    // Scaling on the queue, never on CPU: a busy worker may be idle on CPU while it waits on S3, and
    // an idle one must not be mistaken for spare capacity mid-chunk.
    const scalableTarget = new appscaling.ScalableTarget(this, `${prefix}WorkerCount`, {
      serviceNamespace: appscaling.ServiceNamespace.ECS,
      scalableDimension: "ecs:service:DesiredCount",
      resourceId: `service/${this.cluster.clusterName}/${service.serviceName}`,
      minCapacity: 0,
      maxCapacity: config.maxWorkers,
      role: iam.Role.fromRoleArn(
        this,
        `${prefix}ScalingServiceLinkedRole`,
        stack.formatArn({
          region: "",
          service: "iam",
          resource: "role/aws-service-role/ecs.application-autoscaling.amazonaws.com",
          resourceName: "AWSServiceRoleForApplicationAutoScaling_ECSService",
        }),
      ),
    });
    scalableTarget.node.addDependency(service);

    const visible = lane.queue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1), statistic: "Maximum" });
    const inFlight = lane.queue.metricApproximateNumberOfMessagesNotVisible({ period: Duration.minutes(1), statistic: "Maximum" });
    const backlogMetric = new cloudwatch.MathExpression({
      expression: "FILL(visible, 0) + FILL(inFlight, 0)",
      usingMetrics: { visible, inFlight },
      label: "Chunks queued or in flight",
      period: Duration.minutes(1),
    });

    // Out: from the first visible chunk. Steps are relative to the threshold of 1 visible message.
    const scaleOut = new appscaling.StepScalingAction(this, `${prefix}ScaleOut`, {
      scalingTarget: scalableTarget,
      adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      metricAggregationType: appscaling.MetricAggregationType.MAXIMUM,
      cooldown: SCALE_OUT_COOLDOWN,
    });
    scaleOut.addAdjustment({ lowerBound: 0, upperBound: 9, adjustment: 1 });
    scaleOut.addAdjustment({ lowerBound: 9, upperBound: 99, adjustment: 2 });
    scaleOut.addAdjustment({ lowerBound: 99, adjustment: config.maxWorkers });
    const scaleOutAlarm = new cloudwatch.Alarm(this, `${prefix}ScaleOutAlarm`, {
      alarmDescription: "cloudmill: chunks are waiting; add workers",
      metric: visible,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    scaleOutAlarm.addAlarmAction(new cwActions.ApplicationScalingAction(scaleOut));

    // In: to zero, only when workers are wanted yet nothing is visible or in flight for the whole
    // idle period. With no worker wanted the alarm stays OK (the expression is 1), so a service the
    // splitter just woke is not set back to zero by an alarm still in ALARM from the last idle spell
    // (Application Auto Scaling re-applies a step policy while its alarm stays in ALARM). Workers
    // protect themselves from scale-in while they hold a chunk.
    const desired = new cloudwatch.Metric({
      namespace: "ECS/ContainerInsights",
      metricName: "DesiredTaskCount",
      dimensionsMap: { ClusterName: this.cluster.clusterName, ServiceName: service.serviceName },
      period: Duration.minutes(1),
      statistic: "Maximum",
    });
    const idleWhileWanted = new cloudwatch.MathExpression({
      expression: "IF(FILL(desired, 0) > 0, FILL(visible, 0) + FILL(inFlight, 0), 1)",
      usingMetrics: { visible, inFlight, desired },
      label: "Chunks queued or in flight while workers are wanted (1: none wanted)",
      period: Duration.minutes(1),
    });
    const scaleIn = new appscaling.StepScalingAction(this, `${prefix}ScaleIn`, {
      scalingTarget: scalableTarget,
      adjustmentType: appscaling.AdjustmentType.EXACT_CAPACITY,
      metricAggregationType: appscaling.MetricAggregationType.MAXIMUM,
    });
    scaleIn.addAdjustment({ upperBound: 0, adjustment: 0 });
    const scaleInAlarm = new cloudwatch.Alarm(this, `${prefix}ScaleInAlarm`, {
      alarmDescription: "cloudmill: workers are wanted but no chunk is queued or in flight; stop all workers",
      metric: idleWhileWanted,
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: config.scaleInAfterIdleMinutes,
      datapointsToAlarm: config.scaleInAfterIdleMinutes,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    scaleInAlarm.addAlarmAction(new cwActions.ApplicationScalingAction(scaleIn));

    return {
      taskRole,
      launchTemplate,
      mixedInstances: mixed,
      autoScalingGroup,
      capacityProvider,
      taskDefinition,
      container,
      service,
      scalableTarget,
      scaleOutAlarm,
      scaleInAlarm,
      backlogMetric,
    };
  }

  /** ARNs of this cluster's container instances. */
  private containerInstancesArn(): string {
    return Stack.of(this).formatArn({ service: "ecs", resource: "container-instance", resourceName: `${this.cluster.clusterName}/*` });
  }

  private createVpc(flowLogBucket: s3.IBucket): ec2.Vpc {
    const vpc = new ec2.Vpc(this, "Vpc", {
      ipAddresses: ec2.IpAddresses.cidr("10.64.0.0/16"),
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: "workers", subnetType: ec2.SubnetType.PUBLIC, cidrMask: 20 }],
      gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
      restrictDefaultSecurityGroup: true,
    });
    vpc.addFlowLog("FlowLog", {
      destination: ec2.FlowLogDestination.toS3(flowLogBucket, "vpc-flow-logs/"),
      trafficType: ec2.FlowLogTrafficType.ALL,
    });
    return vpc;
  }

  private acknowledgeFindings(config: PipelineConfig, tasksArn: string): void {
    const lanes: WorkerLane[] = [this, ...(this.spotLane ? [this.spotLane] : [])];

    const instancePolicy = this.instanceRole.node.findChild("DefaultPolicy");
    acknowledge(
      instancePolicy,
      wildcardActionFinding("ecs:Submit*"),
      "For the ECS agent (SubmitTaskStateChange, SubmitContainerStateChange, ...), as aws-ecs grants it, scoped to this cluster's ARN.",
    );
    acknowledge(
      instancePolicy,
      "AwsSolutions-IAM5[Resource::*]",
      "For the ECS agent: ecs:Poll/StartTelemetrySession (conditioned on this cluster), ecs:DiscoverPollEndpoint and " +
        "ecr:GetAuthorizationToken, which support no resource-level permissions.",
    );
    if (config.spot || config.spotLane) {
      acknowledge(
        instancePolicy,
        wildcardResourceFinding(this, this.containerInstancesArn()),
        "Spot draining lets the ECS agent set its own container instance to DRAINING; instance ids are unknown until launch, so the " +
          "ARN is scoped to this cluster's container instances.",
      );
    }
    for (const lane of lanes) {
      acknowledge(
        lane.taskRole.node.findChild("DefaultPolicy"),
        wildcardResourceFinding(this, tasksArn),
        "ecs:UpdateTaskProtection/GetTaskProtection are scoped to tasks of this cluster only; a worker does not know its own task " +
          "id until it runs, so the task part of the ARN is a wildcard.",
      );
      acknowledge(
        lane.taskDefinition,
        "AwsSolutions-ECS2",
        "The worker's environment holds only resource names and tunables from ROLE_ENV (bucket name, queue URL, timeouts, concurrency, " +
          "log level); it carries no secrets, so Secrets Manager would add cost and nothing else.",
      );
      acknowledge(
        lane.taskDefinition.obtainExecutionRole().node.findChild("DefaultPolicy"),
        "AwsSolutions-IAM5[Resource::*]",
        "ecr:GetAuthorizationToken, which ECS needs to pull the worker image, supports no resource-level permissions; image pulls " +
          "themselves are scoped to the asset repository.",
      );
      acknowledge(
        lane.autoScalingGroup,
        "AwsSolutions-AS3",
        "Scaling events are routine (the fleet returns to zero after every job) and e-mailing each would bury real alarms; fleet size " +
          "is on the dashboard and every event is in the group's activity history.",
      );
      if (lane.mixedInstances) {
        acknowledge(
          lane.autoScalingGroup,
          "AwsSolutions-EC26",
          "The rule cannot follow a launch template inside a MixedInstancesPolicy; the template's only block device is an encrypted " +
            "gp3 volume (asserted in test/infra/fleet.test.ts).",
        );
      }
    }
  }
}
