/** `cloudmill fleet`: the worker fleet — tasks wanted, running and pending; instances and their reservation. */
import { Command } from "commander";
import * as z from "zod";
import type { FleetHold, FleetView, Reservation, WorkerUsage } from "../../sdk/types.js";
import { parseFlags, usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import { numberFlag } from "../options.js";
import type { CliIO } from "../io.js";
import { table } from "./jobs.js";

const pct = (r: Reservation): string => `${Math.round(r.fraction * 100)}%`;
const share = (r: Reservation, unit = ""): string => `${r.reserved}/${r.registered}${unit} ${pct(r)}`;

export const describeFleetView = (f: FleetView, now = Date.now()): string => {
  const lines = [
    `service ${f.service} in cluster ${f.cluster}: ${f.desired} desired, ${f.running} running, ${f.pending} pending worker task(s)`,
  ];
  if (f.queue) lines.push(`task queue: ${f.queue.visible} chunk(s) waiting, ${f.queue.inFlight} in flight`);
  if (f.hold && f.hold.workers > 0) lines.push(holdLine(f.hold));
  const spot = f.spotLane;
  if (spot) {
    lines.push(
      `spot lane (jobs that prefer cheapest): service ${spot.service}: ${spot.desired} desired, ${spot.running} running, ` +
        `${spot.pending} pending worker task(s)`,
    );
    if (spot.queue) lines.push(`spot task queue: ${spot.queue.visible} chunk(s) waiting, ${spot.queue.inFlight} in flight`);
    if (spot.hold && spot.hold.workers > 0) lines.push(`spot lane ${holdLine(spot.hold)}`);
  }
  if (f.instances.length === 0) {
    lines.push("no instances (the fleet scales to zero when the queue is empty)");
    return lines.join("\n");
  }
  const age = (d: Date | undefined): string => {
    if (!d) return "-";
    const m = Math.max(0, Math.floor((now - d.getTime()) / 60_000));
    return `${d
      .toISOString()
      .replace("T", " ")
      .replace(/:\d\d\.\d+Z$/, "Z")} (${m < 120 ? `${m}m` : `${Math.floor(m / 60)}h`} ago)`;
  };
  lines.push(
    table([
      ["INSTANCE", "TYPE", "MARKET", "LAUNCHED", "TASKS", "CPU RESERVED", "MEMORY RESERVED"],
      ...f.instances.map((i) => [
        i.instanceId,
        i.type ?? "-",
        i.market,
        age(i.launchTime),
        `${i.runningTasks}${i.pendingTasks ? `+${i.pendingTasks}` : ""}`,
        share(i.cpu),
        share(i.memoryMiB, " MiB"),
      ]),
    ]),
  );
  lines.push(`in all: CPU ${share(f.reservation.cpu)}, memory ${share(f.reservation.memoryMiB, " MiB")} reserved`);
  if (f.usage?.length) lines.push("use over the last report interval, per worker:", usageTable(f.usage, now));
  return lines.join("\n");
};

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)}`;

/** One row per worker's latest usage report: CPU, memory, network and disk, chunks. */
export const usageTable = (usage: readonly WorkerUsage[], now = Date.now()): string =>
  table([
    ["WORKER", "CPU", "MEMORY MB", "NET IN/OUT MB", "DISK R/W MB", "CHUNKS NOW/DONE", "REPORTED"],
    ...usage.map((u) => [
      u.taskId ?? u.worker,
      `${u.cpuPercent}%`,
      u.memory ? `${mb(u.memory.used)}/${mb(u.memory.limit)}` : `${mb(u.rssBytes)} rss`,
      u.network ? `${mb(u.network.rxBytes)}/${mb(u.network.txBytes)}` : "-",
      u.disk ? `${mb(u.disk.readBytes)}/${mb(u.disk.writeBytes)}` : "-",
      `${u.chunks.running}/${u.chunks.done}`,
      `${Math.max(0, Math.round((now - Date.parse(u.at)) / 1000))}s ago`,
    ]),
  ]);

/** `held at 3 warm workers (at most 20) until 2026-12-03 23:00Z`. */
export const holdLine = (h: FleetHold): string =>
  `held at ${h.workers} warm worker(s) (at most ${h.maxWorkers})${
    h.until
      ? ` until ${h.until
          .toISOString()
          .replace("T", " ")
          .replace(/:\d\d\.\d+Z$/, "Z")}`
      : " until `cloudmill fleet --stop`"
  }`;

const SECONDS_OF = { s: 1, m: 60, h: 3600 } as const;

/** `90s`, `30m`, `2h`: seconds, from one minute to a week. */
const Duration = z
  .string()
  .regex(/^\d+[smh]$/, { error: "expected a duration like 30m, 2h or 90s" })
  .transform((d) => Number(d.slice(0, -1)) * SECONDS_OF[d.at(-1) as keyof typeof SECONDS_OF])
  .refine((s) => s >= 60 && s <= 7 * 86_400, { error: "must be from 1 minute to 7 days" });

const FleetFlags = z
  .object({
    json: z.boolean().default(false),
    scale: numberFlag("a whole number of workers", { min: 1 }).optional(),
    for: Duration.optional(),
    spot: z.boolean().default(false),
    stop: z.boolean().default(false),
  })
  .refine((f) => !(f.stop && f.scale !== undefined), { error: "--stop and --scale: give one", path: ["stop"] })
  .refine((f) => f.for === undefined || f.scale !== undefined, { error: "--for needs --scale N", path: ["for"] })
  .refine((f) => !f.spot || f.scale !== undefined, { error: "--spot needs --scale N", path: ["spot"] });

export const fleetCommand = (io: CliIO): Command =>
  withCloudOptions(
    new Command("fleet")
      .description(
        "show the worker fleet: desired, running and pending tasks; instances, spot or on-demand, and their CPU and memory reservation",
      )
      .option("--json", "print the view as JSON")
      .option("--scale <n>", "hold n warm workers (the scaling minimum; the backlog still adds more)")
      .option("--for <duration>", "with --scale: end the hold after this long, e.g. 30m or 2h (default: until --stop)")
      .option("--spot", "with --scale: hold the spot lane's workers (a stack deployed with -c spot=per-job)")
      .option("--stop", "end any hold and scale to zero (both lanes): idle workers stop now, busy ones after their chunks"),
  ).action(async (raw: Record<string, unknown>) => {
    const flags = parseFlags(FleetFlags, raw);
    await usingCloudmill(raw, io, async (mill) => {
      if (flags.scale !== undefined || flags.stop) {
        const hold = flags.stop
          ? await mill.stopFleet()
          : await mill.scaleFleet(flags.scale!, {
              ...(flags.for === undefined ? {} : { forMs: flags.for * 1000 }),
              ...(flags.spot ? { lane: "spot" as const } : {}),
            });
        io.stdout.write(
          flags.json
            ? `${JSON.stringify(hold, null, 2)}\n`
            : hold.workers > 0
              ? `${flags.spot ? "spot lane " : ""}${holdLine(hold)}\n`
              : "fleet stopped: no hold; idle workers stop now, busy ones once their chunks are done (queued work starts them again)\n",
        );
        return;
      }
      // cloudmill dev: no ECS service, its workers are local processes; their reports are the view.
      if (!(await mill.target()).cluster) {
        const usage = await mill.workerUsage();
        io.stdout.write(
          flags.json
            ? `${JSON.stringify({ usage }, null, 2)}\n`
            : usage.length
              ? `${usage.length} worker(s) reporting (local processes):\n${usageTable(usage)}\n`
              : "no worker has reported its use yet (workers report every minute)\n",
        );
        return;
      }
      const view = await mill.fleet();
      io.stdout.write(flags.json ? `${JSON.stringify(view, null, 2)}\n` : `${describeFleetView(view)}\n`);
    });
  });
