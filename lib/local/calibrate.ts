/**
 * An op's mapping rate on this machine, measured on a sample of the real input: its first chunk
 * (at most MAX_SAMPLE_BYTES, cut after a newline) mapped on this thread, as one chunk, again on
 * two threads at once, and on a fresh thread (its cold first chunk). What `cloudmill estimate`
 * and the SDK's estimate scale to the whole job.
 */
import { link, mkdtemp, open, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { DEFAULTS, MiB } from "../core/constants.js";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import { parseJobSpec } from "../core/job/spec.js";
import { silentLogger } from "../core/log.js";
import type { OpRegistry } from "../core/ops/registry.js";
import { isShuffled } from "../core/ops/types.js";
import { codecOf } from "../core/records/codecs.js";
import { isZipMagic, isZipName } from "../core/records/zip.js";
import { type CalibrationCache, calibrationKey } from "./calibrationCache.js";
import { runLocal } from "./localEngine.js";

/** Most bytes of the first input a calibration maps: one default chunk. */
export const MAX_SAMPLE_BYTES = DEFAULTS.chunkSize;
/** Fewest: a smaller chunk is sampled as this much (its rate is then its overhead's, which a rate cannot say). */
const MIN_SAMPLE_BYTES = MiB;

/**
 * The sample for a job of this chunk size: one chunk, as the job cuts it. An op's rate depends on
 * the chunk (distinct maps a 16 MiB chunk at 16 MB/s and a 4 MiB one at 24 MB/s on this
 * machine: its tables outgrow the caches), so the sample is no smaller than a chunk.
 */
export const sampleBytesFor = (chunkSize: number): number => Math.min(MAX_SAMPLE_BYTES, Math.max(MIN_SAMPLE_BYTES, chunkSize));

/**
 * A calibration: MB/s per core of the map stage, and of a keyed op's reduce stage (per reduce
 * task, in input MB), both as it holds its runs in memory and as it spills them, which a
 * combining reduce does past DEFAULTS.reduceSpillBytes (a sort's reduce streams its runs and
 * never spills: it has the one rate). `shared`: the share of its rate a task keeps while
 * another runs beside it on the machine (memory bandwidth and caches are shared; unset: not
 * measured, a machine of one core or an op the task threads cannot load). `cold`: the seconds a
 * task thread's first full chunk takes beyond a warm one, while the JIT compiles the op's hot
 * code (what any first task pays is a run's start-up, not this; unset: not measured, as
 * `shared`, or a compressed sample).
 */
export interface Calibration {
  readonly rate: number;
  readonly reduceRate?: number;
  readonly spilledReduceRate?: number;
  readonly shared?: number;
  readonly cold?: number;
  readonly bytes: number;
}

/** A calibration's rates as an estimate takes them (estimate.ts's EstimateInput). */
export const calibratedRates = (
  c: Calibration | undefined,
): {
  mbPerSecond?: number;
  reduceMbPerSecond?: number;
  spilledReduceMbPerSecond?: number;
  sharedShare?: number;
  coldSeconds?: number;
} => ({
  ...(c ? { mbPerSecond: c.rate } : {}),
  ...(c?.reduceRate ? { reduceMbPerSecond: c.reduceRate } : {}),
  ...(c?.spilledReduceRate ? { spilledReduceMbPerSecond: c.spilledReduceRate } : {}),
  ...(c?.shared ? { sharedShare: c.shared } : {}),
  ...(c?.cold !== undefined ? { coldSeconds: c.cold } : {}),
});

/** A calibration's spilling reduce holds this share of the sample before it spills (the sample's one run spills at least once). */
const SPILL_SHARE = 4;

export interface CalibrateOptions {
  /** Where the task threads load the op: the modules of a lab's ops (a built-in op needs none). */
  readonly opsModules?: readonly string[];
  /** The sample is the whole input: mapped as it is (a compressed file or an archive cut short would not decode). */
  readonly whole?: boolean;
}

/** Mapping the calibration times on this thread, at the least, in at most this many runs of the sample. */
const MIN_TIMED_SECONDS = 1;
const MOST_TIMED_RUNS = 15;

/** Threads of a shared measurement, and about how long each maps before it is timed (the JIT warms) and while. */
const SHARED_THREADS = 2;
const WARM_SECONDS = 1;
const TIMED_SECONDS = 1;
/** Most chunks per thread in each of the two spells (an op so fast that its chunks take under 1/16 s). */
const MOST_CHUNKS = 16;

/**
 * Rates of the op on `sample` (bytes from the start of an input named like `name`). The sample is
 * mapped once, then timed three times or more (MIN_TIMED_SECONDS), and the median counts: a long
 * job runs on code the JIT has warmed. Then, on a machine of two cores or more, copies of it are
 * mapped on two threads at once for `shared`, and one copy on a fresh thread for `cold`.
 */
export const calibrateOn = async (
  sample: Uint8Array,
  name: string,
  spec: { readonly op: string; readonly params: Readonly<Record<string, string>> },
  registry: OpRegistry,
  options: CalibrateOptions = {},
): Promise<Calibration> => {
  const buf = Buffer.from(sample.buffer, sample.byteOffset, sample.byteLength);
  // Whole lines: a record cut at the sample's end would be a bad record.
  const cut = options.whole ? buf.length : buf.lastIndexOf(0x0a, buf.length - 1) + 1 || buf.length;
  const dir = await mkdtemp(path.join(os.tmpdir(), "cloudmill-calibrate-"));
  try {
    const ext = path.extname(name);
    const file = path.join(dir, `sample${ext}`);
    await writeFile(file, buf.subarray(0, cut));
    const chunkSize = Math.max(cut, DEFAULTS.minChunkSize);
    const job = parseJobSpec({ op: spec.op, inputs: [file], params: { ...spec.params }, chunkSize });
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
    // The median of timed runs, three at least and as many as MIN_TIMED_SECONDS of mapping takes:
    // one run moves by a fifth with the host's spells, and a fast op maps its sample in 15 ms.
    const timed = [await once(), await once(), await once()];
    while (timed.length < MOST_TIMED_RUNS && timed.reduce((n, t) => n + t.map, 0) < MIN_TIMED_SECONDS) timed.push(await once());
    const middle = (of: (t: (typeof timed)[number]) => number): number => timed.map(of).sort((a, b) => a - b)[timed.length >> 1]!;
    const map = middle((t) => t.map);
    const reduce = middle((t) => t.reduce);
    const rate = cut / 1e6 / map;
    const op = registry.get(spec.op);
    // Optional: a failure here (a filesystem without hard links, say) leaves the rate alone as measured.
    const shared = await sharedShare().catch(() => undefined);
    const cold = await coldSeconds().catch(() => undefined);
    const withShared = <T extends object>(c: T): T & { shared?: number; cold?: number } => ({
      ...c,
      ...(shared !== undefined ? { shared } : {}),
      ...(cold !== undefined ? { cold } : {}),
    });
    if (!isShuffled(op)) return withShared({ rate, bytes: cut });
    if (op.keyed === undefined) return withShared({ rate, reduceRate: cut / 1e6 / reduce, bytes: cut });
    // Spilling, twice: the second on warm spill code.
    const spillBytes = Math.max(1024, Math.ceil(cut / SPILL_SHARE));
    await once(spillBytes);
    const spilled = await once(spillBytes);
    return withShared({ rate, reduceRate: cut / 1e6 / reduce, spilledReduceRate: cut / 1e6 / spilled.reduce, bytes: cut });

    /**
     * The map throughput per thread of two threads mapping copies of the sample at once, over
     * the rate of one alone. Timed from the end of the warm-up's last chunk to the end of the
     * next-to-last chunk, so that both threads map throughout; the job is stopped there (a keyed
     * op's reduce is not wanted).
     */
    async function sharedShare(): Promise<number | undefined> {
      if (os.availableParallelism() < SHARED_THREADS) return undefined;
      if (op.digest !== undefined && !options.opsModules?.length) return undefined;
      const chunkSeconds = cut / 1e6 / rate;
      const spell = (seconds: number): number => Math.min(MOST_CHUNKS, Math.max(1, Math.ceil(seconds / chunkSeconds)));
      const from = SHARED_THREADS * spell(WARM_SECONDS);
      const to = from + SHARED_THREADS * spell(TIMED_SECONDS);
      const copies = await copiesOfSample(to + 1);
      const ends: number[] = [];
      const stop = new AbortController();
      await runLocal({
        spec: parseJobSpec({ ...job, inputs: copies }),
        registry,
        ...(options.opsModules ? { opsModules: options.opsModules } : {}),
        workers: SHARED_THREADS,
        log: silentLogger,
        outDir: path.join(dir, "shared-out"),
        signal: stop.signal,
        onProgress: (p) => {
          if (p.chunksDone <= to) ends[p.chunksDone] = performance.now();
          if (p.chunksDone >= to) stop.abort();
        },
      }).catch((err: unknown) => {
        if (!(stop.signal.aborted && err instanceof CloudmillError && err.code === ErrorCode.CANCELLED)) throw err;
      });
      const seconds = ((ends[to] ?? Number.NaN) - (ends[from] ?? Number.NaN)) / 1000;
      if (!(seconds > 0)) return undefined;
      const sharedRate = ((to - from) * cut) / 1e6 / seconds / SHARED_THREADS;
      return Math.min(1, sharedRate / rate);
    }

    /**
     * How much longer a fresh task thread maps its first chunk of the sample than a warm one
     * does, while the JIT compiles the op. One thread maps a chunk of one line, which pays what
     * any first task pays (modules, the first part written: a run's start-up, not the op's),
     * then a copy of the sample (a chunk of its own: the two do not fit one), timed by the job's
     * report against the sample's warm time. Not measured for a compressed sample, of which a
     * line is no input.
     */
    async function coldSeconds(): Promise<number | undefined> {
      if (codecOf(buf) !== undefined || isZipMagic(buf) || isZipName(name)) return undefined;
      if (op.digest !== undefined && !options.opsModules?.length) return undefined;
      const line = path.join(dir, `line${ext}`);
      await writeFile(line, buf.subarray(0, buf.indexOf(0x0a) + 1 || cut));
      const [copy] = await copiesOfSample(1, "cold");
      const { report } = await runLocal({
        spec: parseJobSpec({ ...job, inputs: [line, copy!] }),
        registry,
        ...(options.opsModules ? { opsModules: options.opsModules } : {}),
        workers: 1,
        report: true,
        log: silentLogger,
        outDir: path.join(dir, "cold-out"),
      });
      // Task 1 is the copy's chunk (a keyed op's reduce tasks follow it).
      const first = report?.tasks.find((t) => t.index === 1 && t.bytes === cut);
      return first === undefined ? undefined : Math.max(0, first.ms / 1000 - cut / 1e6 / rate);
    }

    /** `n` names of the sample: hard links, so as many inputs as chunks take no more disk. */
    async function copiesOfSample(n: number, tag = "copy"): Promise<string[]> {
      return Promise.all(
        Array.from({ length: n }, async (_, i) => {
          const copy = path.join(dir, `${tag}-${i}${ext}`);
          await link(file, copy);
          return copy;
        }),
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
};

/**
 * MB/s per core of the op on the first chunk of a local file (sampleBytesFor); with a cache, the
 * rate stored for the same op code, params, sample bytes and machine type (then `cachedAt` says
 * when), unless `fresh` asks for a new measurement (which replaces it).
 */
export const calibrate = async (
  file: string,
  spec: { readonly op: string; readonly params: Readonly<Record<string, string>>; readonly chunkSize?: number },
  registry: OpRegistry,
  cache?: { readonly store: CalibrationCache; readonly fresh?: boolean },
  options: CalibrateOptions = {},
): Promise<Calibration & { readonly cachedAt?: string }> => {
  const bytes = sampleBytesFor(spec.chunkSize ?? DEFAULTS.chunkSize);
  const handle = await open(file);
  const buf = Buffer.alloc(bytes);
  const { bytesRead } = await handle.read(buf, 0, bytes, 0).finally(() => handle.close());
  return calibrateSample(buf.subarray(0, bytesRead), file, spec, registry, cache, { ...options, whole: bytesRead < bytes });
};

/** calibrateOn, or the calibration the cache holds for the same sample, op code and machine. */
export const calibrateSample = async (
  sample: Uint8Array,
  name: string,
  spec: { readonly op: string; readonly params: Readonly<Record<string, string>> },
  registry: OpRegistry,
  cache?: { readonly store: CalibrationCache; readonly fresh?: boolean },
  options: CalibrateOptions = {},
): Promise<Calibration & { readonly cachedAt?: string }> => {
  const key = cache && calibrationKey({ op: spec.op, digest: registry.digestOf(spec.op), params: spec.params, name, sample });
  const cached = key && !cache.fresh ? await cache.store.get(key) : undefined;
  if (cached) {
    const { at, ...calibration } = cached;
    return { ...calibration, cachedAt: at };
  }
  const calibration = await calibrateOn(sample, name, spec, registry, options);
  if (key) await cache.store.set(key, calibration);
  return calibration;
};
