/**
 * What each worker uses, as CloudArray's cpuusage/memusage/iousage/netusage showed it: every
 * interval the worker writes `_fleet/<worker>.json` to the output bucket with its CPU share over
 * the interval, its memory (the process's, and its container's as the cgroup counts it), and
 * its network and disk bytes so far, read from /proc. `cloudmill fleet` joins the reports to
 * the service's tasks. On ECS the report is named by the task's id (from the task metadata
 * endpoint); elsewhere (`cloudmill dev`) by host and pid.
 */
import { readFile } from "node:fs/promises";
import * as z from "zod";
import { usageKey } from "../core/keys.js";
import type { BlobStore } from "../core/ports.js";
import { writeJson } from "../core/pipeline/blobJson.js";
import type { MemoryUse } from "./containerMemory.js";

export const WorkerUsage = z.object({
  v: z.literal(1),
  /** `<host>/<pid>`, as task records name workers. */
  worker: z.string(),
  /** The ECS task's id, when the worker runs in one. */
  taskId: z.string().optional(),
  at: z.string(),
  intervalSeconds: z.number(),
  /** CPU time over the interval, as a percentage of one vCPU (200: two vCPUs busy). */
  cpuPercent: z.number(),
  rssBytes: z.number(),
  /** The container's memory use and limit (cgroup), when it has a limit. */
  memory: z.object({ used: z.number(), limit: z.number() }).optional(),
  /** Bytes since the worker started, from /proc (absent where /proc does not say). */
  network: z.object({ rxBytes: z.number(), txBytes: z.number() }).optional(),
  disk: z.object({ readBytes: z.number(), writeBytes: z.number() }).optional(),
  /** Chunks in progress when the report was made, and done since the worker started. */
  chunks: z.object({ running: z.number(), done: z.number() }),
});
export type WorkerUsage = z.infer<typeof WorkerUsage>;

/** Received and sent bytes over every interface but loopback, from /proc/<pid>/net/dev. */
export const parseNetDev = (text: string): { rxBytes: number; txBytes: number } => {
  let rxBytes = 0;
  let txBytes = 0;
  for (const line of text.split("\n").slice(2)) {
    const [name, rest] = line.split(":");
    if (rest === undefined || name!.trim() === "lo") continue;
    const f = rest.trim().split(/\s+/).map(Number);
    rxBytes += f[0] ?? 0;
    txBytes += f[8] ?? 0;
  }
  return { rxBytes, txBytes };
};

/** Bytes the process made the storage layer read and write, from /proc/<pid>/io. */
export const parseProcIo = (text: string): { readBytes: number; writeBytes: number } | undefined => {
  const field = (name: string): number | undefined => {
    const m = new RegExp(`^${name}: (\\d+)$`, "m").exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const readBytes = field("read_bytes");
  const writeBytes = field("write_bytes");
  return readBytes === undefined || writeBytes === undefined ? undefined : { readBytes, writeBytes };
};

/** CPU time used over an interval, as a percentage of one vCPU. */
export const cpuPercent = (cpuMicros: number, intervalMs: number): number =>
  intervalMs > 0 ? Math.round((cpuMicros / 1000 / intervalMs) * 1000) / 10 : 0;

/** The ECS task this container runs in (its ARN's last part), from the task metadata endpoint. */
const ecsTaskId = async (metadataUri: string | undefined): Promise<string | undefined> => {
  if (!metadataUri) return undefined;
  const res = await fetch(`${metadataUri}/task`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
  const arn = res?.ok ? ((await res.json().catch(() => ({}))) as { TaskARN?: string }).TaskARN : undefined;
  return arn?.split("/").at(-1);
};

export interface UsageReporterOptions {
  readonly store: BlobStore;
  readonly everySeconds: number;
  readonly worker: string;
  readonly memory?: () => Promise<MemoryUse | undefined>;
  readonly chunks: () => { running: number; done: number };
  /** ECS_CONTAINER_METADATA_URI_V4, when in an ECS task. */
  readonly metadataUri?: string;
  /** Where /proc is (tests give a directory of their own). Default /proc/self. */
  readonly proc?: string;
}

/** Reports every interval until stopped; a failed report is skipped (the next one comes). `report` makes one now. */
export const startUsageReports = (options: UsageReporterOptions): { report(): Promise<void>; stop(): Promise<void> } => {
  const proc = options.proc ?? "/proc/self";
  const taskId = ecsTaskId(options.metadataUri);
  let last = { cpu: process.cpuUsage(), at: Date.now() };
  let pending: Promise<void> = Promise.resolve();
  const report = async (): Promise<void> => {
    const now = Date.now();
    const cpu = process.cpuUsage();
    const used = cpu.user - last.cpu.user + (cpu.system - last.cpu.system);
    const interval = now - last.at;
    last = { cpu, at: now };
    const [net, io, memory, id] = await Promise.all([
      readFile(`${proc}/net/dev`, "utf8").then(parseNetDev, () => undefined),
      readFile(`${proc}/io`, "utf8").then(parseProcIo, () => undefined),
      options.memory?.().catch(() => undefined),
      taskId,
    ]);
    const usage: WorkerUsage = {
      v: 1,
      worker: options.worker,
      ...(id ? { taskId: id } : {}),
      at: new Date(now).toISOString(),
      intervalSeconds: interval / 1000,
      cpuPercent: cpuPercent(used, interval),
      rssBytes: process.memoryUsage.rss(),
      ...(memory ? { memory } : {}),
      ...(net ? { network: net } : {}),
      ...(io ? { disk: io } : {}),
      chunks: options.chunks(),
    };
    await writeJson(options.store, usageKey(id ?? options.worker), usage);
  };
  const timer = setInterval(() => {
    pending = pending.then(report).catch(() => undefined);
  }, options.everySeconds * 1000);
  timer.unref();
  return {
    report: () => (pending = pending.then(report)),
    stop: async () => {
      clearInterval(timer);
      await pending;
    },
  };
};
