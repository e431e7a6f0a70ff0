/** `cloudmill fleet`: the worker fleet — tasks wanted, running and pending; instances and their reservation. */
import { Command } from "commander";
import { z } from "zod";
import type { FleetView, Reservation } from "../../sdk/types.js";
import { parseFlags, usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import type { CliIO } from "../io.js";
import { table } from "./jobs.js";

const pct = (r: Reservation): string => `${Math.round(r.fraction * 100)}%`;
const share = (r: Reservation, unit = ""): string => `${r.reserved}/${r.registered}${unit} ${pct(r)}`;

export const describeFleetView = (f: FleetView, now = Date.now()): string => {
  const lines = [
    `service ${f.service} in cluster ${f.cluster}: ${f.desired} desired, ${f.running} running, ${f.pending} pending worker task(s)`,
  ];
  if (f.queue) lines.push(`task queue: ${f.queue.visible} chunk(s) waiting, ${f.queue.inFlight} in flight`);
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
  return lines.join("\n");
};

const FleetFlags = z.object({ json: z.boolean().default(false) });

export const fleetCommand = (io: CliIO): Command =>
  withCloudOptions(
    new Command("fleet")
      .description(
        "show the worker fleet: desired, running and pending tasks; instances, spot or on-demand, and their CPU and memory reservation",
      )
      .option("--json", "print the view as JSON"),
  ).action(async (raw: Record<string, unknown>) => {
    const flags = parseFlags(FleetFlags, raw);
    await usingCloudmill(raw, io, async (mill) => {
      const view = await mill.fleet();
      io.stdout.write(flags.json ? `${JSON.stringify(view, null, 2)}\n` : `${describeFleetView(view)}\n`);
    });
  });
