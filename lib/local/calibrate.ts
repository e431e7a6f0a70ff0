/**
 * An op's mapping rate on this machine, measured on a sample of the real input: its first
 * SAMPLE_BYTES (cut after a newline) mapped on this thread, as one chunk. What `cloudmill
 * estimate` and the SDK's estimate scale to the whole job.
 */
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { DEFAULTS, MiB } from "../core/constants.js";
import { parseJobSpec } from "../core/job/spec.js";
import { silentLogger } from "../core/log.js";
import type { OpRegistry } from "../core/ops/registry.js";
import { isShuffled } from "../core/ops/types.js";
import { type CalibrationCache, calibrationKey } from "./calibrationCache.js";
import { runLocal } from "./localEngine.js";

/** Bytes of the first input a calibration maps. */
export const SAMPLE_BYTES = 8 * MiB;

/**
 * A calibration: MB/s per core of the map stage, and of a keyed op's reduce stage (per reduce
 * task, in input MB), both as it holds its runs in memory and as it spills them, which a
 * combining reduce does past DEFAULTS.reduceSpillBytes (a sort's reduce streams its runs and
 * never spills: it has the one rate).
 */
export interface Calibration {
  readonly rate: number;
  readonly reduceRate?: number;
  readonly spilledReduceRate?: number;
  readonly bytes: number;
}

/** A calibration's rates as an estimate takes them (estimate.ts's EstimateInput). */
export const calibratedRates = (
  c: Calibration | undefined,
): { mbPerSecond?: number; reduceMbPerSecond?: number; spilledReduceMbPerSecond?: number } => ({
  ...(c ? { mbPerSecond: c.rate } : {}),
  ...(c?.reduceRate ? { reduceMbPerSecond: c.reduceRate } : {}),
  ...(c?.spilledReduceRate ? { spilledReduceMbPerSecond: c.spilledReduceRate } : {}),
});

/** A calibration's spilling reduce holds this share of the sample before it spills (the sample's one run spills at least once). */
const SPILL_SHARE = 4;

/**
 * Rates of the op on `sample` (bytes from the start of an input named like `name`). The sample is
 * mapped twice and the second run counts: a long job runs on code the JIT has warmed.
 */
export const calibrateOn = async (
  sample: Uint8Array,
  name: string,
  spec: { readonly op: string; readonly params: Readonly<Record<string, string>> },
  registry: OpRegistry,
): Promise<Calibration> => {
  const buf = Buffer.from(sample.buffer, sample.byteOffset, sample.byteLength);
  const cut = buf.length < SAMPLE_BYTES ? buf.length : buf.lastIndexOf(0x0a, buf.length - 1) + 1 || buf.length;
  const dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-calibrate-"));
  try {
    const file = path.join(dir, `sample${path.extname(name)}`);
    await writeFile(file, buf.subarray(0, cut));
    const job = parseJobSpec({ op: spec.op, inputs: [file], params: { ...spec.params }, chunkSize: Math.max(cut, DEFAULTS.minChunkSize) });
    const once = async (spillBytes?: number) => {
      const { report } = await runLocal({
        spec: job,
        registry,
        workers: 0,
        report: true,
        log: silentLogger,
        outDir: path.join(dir, "out"),
        ...(spillBytes !== undefined ? { spillBytes } : {}),
      });
      // The sample is one chunk (its size is the chunk size), task 0; a keyed op's reduce tasks follow it, each timed by itself.
      const tasks = report?.tasks ?? [];
      const seconds = (stage: (index: number) => boolean): number =>
        Math.max(tasks.reduce((n, t) => (stage(t.index) ? n + t.ms : n), 0) / 1000, 0.001);
      return { map: seconds((i) => i === 0), reduce: seconds((i) => i > 0) };
    };
    await once();
    const { map, reduce } = await once();
    const op = registry.get(spec.op);
    if (!isShuffled(op)) return { rate: cut / 1e6 / map, bytes: cut };
    if (op.keyed === undefined) return { rate: cut / 1e6 / map, reduceRate: cut / 1e6 / reduce, bytes: cut };
    // Spilling, twice: the second on warm spill code.
    const spillBytes = Math.max(1024, Math.ceil(cut / SPILL_SHARE));
    await once(spillBytes);
    const spilled = await once(spillBytes);
    return { rate: cut / 1e6 / map, reduceRate: cut / 1e6 / reduce, spilledReduceRate: cut / 1e6 / spilled.reduce, bytes: cut };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
};

/**
 * MB/s per core of the op on the first SAMPLE_BYTES of a local file; with a cache, the rate
 * stored for the same op code, params, sample bytes and machine type (then `cachedAt` says when),
 * unless `fresh` asks for a new measurement (which replaces it).
 */
export const calibrate = async (
  file: string,
  spec: { readonly op: string; readonly params: Readonly<Record<string, string>> },
  registry: OpRegistry,
  cache?: { readonly store: CalibrationCache; readonly fresh?: boolean },
): Promise<Calibration & { readonly cachedAt?: string }> => {
  const handle = await open(file);
  const buf = Buffer.alloc(SAMPLE_BYTES);
  const { bytesRead } = await handle.read(buf, 0, SAMPLE_BYTES, 0).finally(() => handle.close());
  return calibrateSample(buf.subarray(0, bytesRead), file, spec, registry, cache);
};

/** calibrateOn, or the calibration the cache holds for the same sample, op code and machine. */
export const calibrateSample = async (
  sample: Uint8Array,
  name: string,
  spec: { readonly op: string; readonly params: Readonly<Record<string, string>> },
  registry: OpRegistry,
  cache?: { readonly store: CalibrationCache; readonly fresh?: boolean },
): Promise<Calibration & { readonly cachedAt?: string }> => {
  const key = cache && calibrationKey({ op: spec.op, digest: registry.digestOf(spec.op), params: spec.params, name, sample });
  const cached = key && !cache.fresh ? await cache.store.get(key) : undefined;
  if (cached) {
    const { at, ...calibration } = cached;
    return { ...calibration, cachedAt: at };
  }
  const calibration = await calibrateOn(sample, name, spec, registry);
  if (key) await cache.store.set(key, calibration);
  return calibration;
};
