/**
 * Wakes an idle ECS worker service the moment the splitter enqueues, instead of waiting a
 * minute or more for the backlog alarm (SQS metrics arrive per minute, later for a queue idle
 * for hours). The backlog alarms stay the steady-state policy: they scale further out, and in
 * to zero after the idle period, as before.
 */
import { DescribeServicesCommand, UpdateServiceCommand, type ECSClient } from "@aws-sdk/client-ecs";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import type { FleetWaker } from "../core/ports.js";
import type { Preference } from "../core/job/spec.js";

export interface EcsFleetOptions {
  readonly cluster: string;
  readonly service: string;
  /** The spot lane's service (a stack with `spot: "per-job"`): a job that prefers `cheapest` wakes it instead. */
  readonly spotService?: string;
  /** The service's most workers (the stack's maxWorkers). */
  readonly maxWorkers: number;
  /** Tasks one worker runs at once. */
  readonly tasksPerWorker: number;
}

/**
 * Workers to ask for: one per `tasksPerWorker` tasks, at least one, at most the fleet's maximum;
 * one for a job that prefers `cheapest` (the backlog alarm adds more while the queue stays full).
 */
export const workersFor = (
  tasks: number,
  options: Pick<EcsFleetOptions, "maxWorkers" | "tasksPerWorker">,
  prefer: Preference = "fastest",
): number =>
  prefer === "cheapest" ? 1 : Math.max(1, Math.min(options.maxWorkers, Math.ceil(tasks / Math.max(1, options.tasksPerWorker))));

export class EcsFleetWaker implements FleetWaker {
  readonly #ecs: ECSClient;
  readonly #options: EcsFleetOptions;

  constructor(ecs: ECSClient, options: EcsFleetOptions) {
    this.#ecs = ecs;
    this.#options = options;
  }

  async wake(tasks: number, prefer?: Preference): Promise<number> {
    const { cluster, spotService } = this.#options;
    if (tasks <= 0) return 0;
    // The job's lane (lib/core/pipeline/lanes.ts): the spot service for a job that prefers `cheapest`.
    const service = prefer === "cheapest" && spotService ? spotService : this.#options.service;
    // Awake, or waking: the backlog alarm's policy owns the count from here. A service scaled in
    // to zero whose last tasks are still stopping is not: they hand this job's tasks back.
    if (((await this.#describe(service)).desiredCount ?? 0) > 0) return 0;
    const desiredCount = workersFor(tasks, this.#options, prefer);
    await this.#ecs.send(new UpdateServiceCommand({ cluster, service, desiredCount }));
    // Two jobs starting at once both find the service idle: the smaller count must not win.
    if (((await this.#describe(service)).desiredCount ?? 0) < desiredCount)
      await this.#ecs.send(new UpdateServiceCommand({ cluster, service, desiredCount }));
    return desiredCount;
  }

  async #describe(service: string) {
    const { cluster } = this.#options;
    const { services } = await this.#ecs.send(new DescribeServicesCommand({ cluster, services: [service] }));
    const found = services?.[0];
    if (!found) throw new CloudmillError(ErrorCode.ENVIRONMENT, `worker service ${service} not found in cluster ${cluster}`);
    return found;
  }
}
