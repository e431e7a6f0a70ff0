/**
 * The worker fleet as one view: the ECS service's desired, running and pending tasks, the
 * tasks themselves, and the EC2 instances behind them (type, spot or on-demand, launch time)
 * with the CPU and memory their tasks reserve. About six requests, whatever the fleet's size
 * up to 100 instances (ECS describes 100 at a time).
 */
import {
  DescribeContainerInstancesCommand,
  DescribeServicesCommand,
  DescribeTasksCommand,
  paginateListContainerInstances,
  paginateListTasks,
  type ContainerInstance,
  type ECSClient,
  type Resource,
  type Task,
} from "@aws-sdk/client-ecs";
import { DescribeInstancesCommand, type EC2Client, type Instance } from "@aws-sdk/client-ec2";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import { withAws, type AwsTarget } from "./awsErrors.js";
import type { FleetInstance, FleetTask, FleetView, InstanceMarket, Reservation } from "./types.js";

export interface FleetClients {
  readonly ecs: ECSClient;
  readonly ec2: EC2Client;
}

export interface FleetTarget {
  readonly cluster: string;
  readonly service: string;
  /** The spot lane's service (a stack with `spot: "per-job"`), shown beside the first. */
  readonly spotService?: string;
  readonly endpoint?: string;
  readonly region?: string;
}

const chunks = <T>(items: readonly T[], size: number): T[][] => {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
};

const resource = (resources: readonly Resource[] | undefined, name: string): number =>
  resources?.find((r) => r.name === name)?.integerValue ?? 0;

const reservation = (registered: number, remaining: number): Reservation => {
  const reserved = Math.max(0, registered - remaining);
  return { registered, reserved, fraction: registered > 0 ? reserved / registered : 0 };
};

const sum = (rs: readonly Reservation[]): Reservation =>
  reservation(
    rs.reduce((s, r) => s + r.registered, 0),
    rs.reduce((s, r) => s + r.registered - r.reserved, 0),
  );

/** EC2 leaves InstanceLifecycle out for on-demand instances. */
const marketOf = (i: Instance | undefined): InstanceMarket => {
  const l = i?.InstanceLifecycle;
  return l === "spot" || l === "scheduled" || l === "capacity-block" ? l : "on-demand";
};

const numberOr = (s: string | undefined): number | undefined => {
  const n = s === undefined ? NaN : Number(s);
  return Number.isFinite(n) ? n : undefined;
};

export const describeFleet = async ({ ecs, ec2 }: FleetClients, target: FleetTarget): Promise<FleetView> => {
  const { cluster, service, spotService } = target;
  const aws = (action: string): AwsTarget => ({
    action,
    ...(target.endpoint ? { endpoint: target.endpoint } : {}),
    ...(target.region ? { region: target.region } : {}),
  });

  const described = await withAws(aws(`describe ECS service ${service}`), () =>
    ecs.send(new DescribeServicesCommand({ cluster, services: [service, ...(spotService ? [spotService] : [])] })),
  );
  // A service may be named or given by its ARN.
  const named = (name: string) => described.services?.find((s) => s.serviceName === name || s.serviceArn === name);
  const svc = named(service);
  const spotSvc = spotService ? named(spotService) : undefined;
  if (!svc) {
    const why = described.failures?.find((f) => f.arn?.endsWith(`/${service}`) || f.arn === service)?.reason ?? "not found";
    throw new CloudmillError(ErrorCode.ENVIRONMENT, `no ECS service ${service} in cluster ${cluster} (${why}): is the stack deployed?`);
  }

  const tasksOf = (serviceName: string) =>
    withAws(aws(`list tasks of ${serviceName}`), async () => {
      const arns: string[] = [];
      for await (const page of paginateListTasks({ client: ecs }, { cluster, serviceName })) arns.push(...(page.taskArns ?? []));
      return arns;
    });
  const taskArns = [...new Set([...(await tasksOf(service)), ...(spotSvc ? await tasksOf(spotSvc.serviceName!) : [])])];
  const instanceArns = await withAws(aws(`list container instances of ${cluster}`), async () => {
    const arns: string[] = [];
    for await (const page of paginateListContainerInstances({ client: ecs }, { cluster })) arns.push(...(page.containerInstanceArns ?? []));
    return arns;
  });

  const tasks: Task[] = [];
  for (const batch of chunks(taskArns, 100)) {
    const res = await withAws(aws("describe worker tasks"), () => ecs.send(new DescribeTasksCommand({ cluster, tasks: batch })));
    tasks.push(...(res.tasks ?? []));
  }
  const containerInstances: ContainerInstance[] = [];
  for (const batch of chunks(instanceArns, 100)) {
    const res = await withAws(aws("describe container instances"), () =>
      ecs.send(new DescribeContainerInstancesCommand({ cluster, containerInstances: batch })),
    );
    containerInstances.push(...(res.containerInstances ?? []));
  }

  const ec2Ids = containerInstances.map((c) => c.ec2InstanceId).filter((id): id is string => !!id);
  const ec2ById = new Map<string, Instance>();
  for (const batch of chunks(ec2Ids, 100)) {
    const res = await withAws(aws("describe EC2 instances"), () => ec2.send(new DescribeInstancesCommand({ InstanceIds: batch })));
    for (const r of res.Reservations ?? []) for (const i of r.Instances ?? []) if (i.InstanceId) ec2ById.set(i.InstanceId, i);
  }

  const instanceOfArn = new Map(containerInstances.map((c) => [c.containerInstanceArn, c.ec2InstanceId]));
  const instances: FleetInstance[] = containerInstances
    .filter((c) => c.containerInstanceArn && c.ec2InstanceId)
    .map((c) => {
      const i = ec2ById.get(c.ec2InstanceId!);
      return {
        instanceId: c.ec2InstanceId!,
        containerInstanceArn: c.containerInstanceArn!,
        ...(i?.InstanceType ? { type: i.InstanceType } : {}),
        market: marketOf(i),
        ...(i?.LaunchTime ? { launchTime: i.LaunchTime } : {}),
        ...(i?.Placement?.AvailabilityZone ? { availabilityZone: i.Placement.AvailabilityZone } : {}),
        ...(i?.State?.Name ? { state: i.State.Name } : {}),
        ...(c.status ? { status: c.status } : {}),
        ...(c.agentConnected !== undefined ? { agentConnected: c.agentConnected } : {}),
        runningTasks: c.runningTasksCount ?? 0,
        pendingTasks: c.pendingTasksCount ?? 0,
        cpu: reservation(resource(c.registeredResources, "CPU"), resource(c.remainingResources, "CPU")),
        memoryMiB: reservation(resource(c.registeredResources, "MEMORY"), resource(c.remainingResources, "MEMORY")),
      };
    })
    .sort((a, b) => (a.launchTime?.getTime() ?? 0) - (b.launchTime?.getTime() ?? 0) || a.instanceId.localeCompare(b.instanceId));

  const fleetTasks: FleetTask[] = tasks
    .filter((t) => t.taskArn)
    .map((t) => {
      const instanceId = t.containerInstanceArn ? instanceOfArn.get(t.containerInstanceArn) : undefined;
      const cpu = numberOr(t.cpu);
      const memoryMiB = numberOr(t.memory);
      return {
        taskArn: t.taskArn!,
        lastStatus: t.lastStatus ?? "UNKNOWN",
        desiredStatus: t.desiredStatus ?? "UNKNOWN",
        ...(instanceId ? { instanceId } : {}),
        ...(t.startedAt ? { startedAt: t.startedAt } : {}),
        ...(cpu !== undefined ? { cpu } : {}),
        ...(memoryMiB !== undefined ? { memoryMiB } : {}),
        // ECS groups a service's tasks as `service:<name>`.
        ...(spotSvc && t.group === `service:${spotSvc.serviceName}` ? { lane: "spot" as const } : {}),
      };
    })
    .sort((a, b) => a.taskArn.localeCompare(b.taskArn));

  return {
    cluster,
    service,
    desired: svc.desiredCount ?? 0,
    running: svc.runningCount ?? 0,
    pending: svc.pendingCount ?? 0,
    ...(spotSvc
      ? {
          spotLane: {
            service: spotSvc.serviceName!,
            desired: spotSvc.desiredCount ?? 0,
            running: spotSvc.runningCount ?? 0,
            pending: spotSvc.pendingCount ?? 0,
          },
        }
      : {}),
    tasks: fleetTasks,
    instances,
    reservation: { cpu: sum(instances.map((i) => i.cpu)), memoryMiB: sum(instances.map((i) => i.memoryMiB)) },
  };
};
