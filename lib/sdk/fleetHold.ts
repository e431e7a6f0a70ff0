/**
 * Holding the fleet warm by hand (CloudArray's `createcontainers(n)`): the worker service's
 * scalable target gets a minimum of N tasks, so its step scaling can add workers but never go
 * below N, and ECS is asked for N at once. `for` ends the hold with a scheduled action that sets
 * the minimum back to 0 (the backlog alarm then scales the idle fleet in). Stopping sets the
 * minimum and the desired count to 0: ECS stops idle workers, and task scale-in protection lets
 * busy ones finish their chunks first.
 */
import {
  type ApplicationAutoScalingClient,
  DeleteScheduledActionCommand,
  DescribeScalableTargetsCommand,
  DescribeScheduledActionsCommand,
  ObjectNotFoundException,
  PutScheduledActionCommand,
  RegisterScalableTargetCommand,
} from "@aws-sdk/client-application-auto-scaling";
import { UpdateServiceCommand, type ECSClient } from "@aws-sdk/client-ecs";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import { withAws, type AwsTarget } from "./awsErrors.js";
import type { FleetTarget } from "./fleet.js";
import type { FleetHold } from "./types.js";

export interface HoldClients {
  readonly ecs: ECSClient;
  readonly scaling: ApplicationAutoScalingClient;
}

/** The scheduled action that ends a timed hold: one per service, replaced by each new hold. */
export const HOLD_END_ACTION = "cloudmill-fleet-hold-end";

const dimension = { ServiceNamespace: "ecs", ScalableDimension: "ecs:service:DesiredCount" } as const;
const resourceId = (t: FleetTarget): string => `service/${t.cluster}/${t.service}`;
const awsOf =
  (t: FleetTarget) =>
  (action: string): AwsTarget => ({ action, ...(t.endpoint ? { endpoint: t.endpoint } : {}), ...(t.region ? { region: t.region } : {}) });

/** `at(...)` in Application Auto Scaling's form: UTC, to the second, no zone. */
const atExpression = (d: Date): string => `at(${d.toISOString().slice(0, 19)})`;

/** The service's minimum and maximum, as registered (the stack registers 0 to maxWorkers). */
const scalableTarget = async ({ scaling }: HoldClients, t: FleetTarget): Promise<{ min: number; max: number }> => {
  const aws = awsOf(t);
  const res = await withAws(aws(`read the scaling range of ${t.service}`), () =>
    scaling.send(new DescribeScalableTargetsCommand({ ...dimension, ResourceIds: [resourceId(t)] })),
  );
  const target = res.ScalableTargets?.[0];
  if (!target)
    throw new CloudmillError(
      ErrorCode.ENVIRONMENT,
      `service ${t.service} in cluster ${t.cluster} has no scaling range: is the stack deployed?`,
    );
  return { min: target.MinCapacity ?? 0, max: target.MaxCapacity ?? 0 };
};

/** The hold in force: its minimum, and when it ends if it was given a time. */
export const readHold = async (clients: HoldClients, t: FleetTarget): Promise<FleetHold> => {
  const { min, max } = await scalableTarget(clients, t);
  const res = await withAws(awsOf(t)(`read the scheduled actions of ${t.service}`), () =>
    clients.scaling.send(
      new DescribeScheduledActionsCommand({ ...dimension, ResourceId: resourceId(t), ScheduledActionNames: [HOLD_END_ACTION] }),
    ),
  );
  const ends = res.ScheduledActions?.[0]?.Schedule;
  const m = ends ? /^at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)$/.exec(ends) : null;
  return { workers: min, maxWorkers: max, ...(m ? { until: new Date(`${m[1]}Z`) } : {}) };
};

/** Holds `workers` warm workers, until `until` if given (else until stopped). */
export const holdFleet = async (clients: HoldClients, t: FleetTarget, workers: number, until?: Date): Promise<FleetHold> => {
  const aws = awsOf(t);
  const { max } = await scalableTarget(clients, t);
  if (workers > max)
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `--scale ${workers}: the stack allows at most ${max} workers (its maxWorkers)`, {
      field: "scale",
    });
  await withAws(aws(`hold ${workers} workers of ${t.service}`), () =>
    clients.scaling.send(
      new RegisterScalableTargetCommand({ ...dimension, ResourceId: resourceId(t), MinCapacity: workers, MaxCapacity: max }),
    ),
  );
  await withAws(aws(`ask ECS for ${workers} workers`), () =>
    clients.ecs.send(new UpdateServiceCommand({ cluster: t.cluster, service: t.service, desiredCount: workers })),
  );
  if (until) {
    await withAws(aws(`schedule the end of the hold of ${t.service}`), () =>
      clients.scaling.send(
        new PutScheduledActionCommand({
          ...dimension,
          ResourceId: resourceId(t),
          ScheduledActionName: HOLD_END_ACTION,
          Schedule: atExpression(until),
          ScalableTargetAction: { MinCapacity: 0, MaxCapacity: max },
        }),
      ),
    );
  } else await removeHoldEnd(clients, t);
  return { workers, maxWorkers: max, ...(until ? { until } : {}) };
};

/** Ends any hold and asks for no workers: idle ones stop now, busy ones once their chunks are done. */
export const stopFleet = async (clients: HoldClients, t: FleetTarget): Promise<FleetHold> => {
  const aws = awsOf(t);
  const { max } = await scalableTarget(clients, t);
  await removeHoldEnd(clients, t);
  await withAws(aws(`release the hold of ${t.service}`), () =>
    clients.scaling.send(new RegisterScalableTargetCommand({ ...dimension, ResourceId: resourceId(t), MinCapacity: 0, MaxCapacity: max })),
  );
  await withAws(aws(`stop the workers of ${t.service}`), () =>
    clients.ecs.send(new UpdateServiceCommand({ cluster: t.cluster, service: t.service, desiredCount: 0 })),
  );
  return { workers: 0, maxWorkers: max };
};

const removeHoldEnd = async ({ scaling }: HoldClients, t: FleetTarget): Promise<void> => {
  await withAws(awsOf(t)(`remove the scheduled end of the hold of ${t.service}`), async () => {
    try {
      await scaling.send(
        new DeleteScheduledActionCommand({ ...dimension, ResourceId: resourceId(t), ScheduledActionName: HOLD_END_ACTION }),
      );
    } catch (err) {
      if (!(err instanceof ObjectNotFoundException)) throw err;
    }
  });
};
