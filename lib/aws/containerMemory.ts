/**
 * The container's memory as its cgroup counts it (v2, else v1): what the kernel's OOM killer
 * compares with the limit. The worker stops taking chunks when it nears the limit, and sizes
 * its mapper threads' heaps from it.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";

export interface MemoryUse {
  /** Bytes in use, less inactive file cache (which the kernel reclaims before killing), as `docker stats` counts. */
  readonly used: number;
  readonly limit: number;
}

/** A v1 "no limit" is a page-rounded 2^63; anything this large is no limit. */
const NO_LIMIT = 2 ** 60;

const numberIn = async (file: string): Promise<number | undefined> => {
  const text = (await readFile(file, "utf8").catch(() => undefined))?.trim();
  if (text === undefined || text === "max") return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
};

const inactiveFile = async (file: string, field: string): Promise<number> => {
  const text = await readFile(file, "utf8").catch(() => "");
  const line = text.split("\n").find((l) => l.startsWith(`${field} `));
  return line ? Number(line.slice(field.length + 1)) || 0 : 0;
};

/** Reads the container's memory use under `root` (default /sys/fs/cgroup); undefined without a limit. */
export const containerMemory =
  (root = "/sys/fs/cgroup") =>
  async (): Promise<MemoryUse | undefined> => {
    const v2 = await numberIn(path.join(root, "memory.current"));
    const [current, limit, cache] =
      v2 !== undefined
        ? [v2, await numberIn(path.join(root, "memory.max")), await inactiveFile(path.join(root, "memory.stat"), "inactive_file")]
        : [
            await numberIn(path.join(root, "memory", "memory.usage_in_bytes")),
            await numberIn(path.join(root, "memory", "memory.limit_in_bytes")),
            await inactiveFile(path.join(root, "memory", "memory.stat"), "total_inactive_file"),
          ];
    if (current === undefined || limit === undefined || limit >= NO_LIMIT) return undefined;
    return { used: Math.max(0, current - cache), limit };
  };

/** Heap left for the main thread, the SDK's buffers and Node itself, in MiB. */
const RESERVED_MIB = 384;
const MIN_THREAD_MIB = 128;

/**
 * Heap limits for the worker's mapper threads, in MiB, from the container's memory (or the
 * machine's): each chunk in progress gets an equal share, and a job may ask for less, not more
 * (its chunks run beside others). A CSV chunk read two ways has two threads of that share.
 */
export const mapperHeap = (limitBytes: number, concurrency: number): { readonly memoryMiB: number; readonly maxMemoryMiB: number } => {
  const usable = Math.max(MIN_THREAD_MIB, Math.floor(limitBytes / 2 ** 20) - RESERVED_MIB);
  const share = Math.max(MIN_THREAD_MIB, Math.floor(usable / Math.max(1, concurrency)));
  return { memoryMiB: share, maxMemoryMiB: share };
};
