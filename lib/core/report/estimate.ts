/**
 * What a job will take and cost, before anything is queued: from input sizes (listed, not read)
 * and a mapping rate (calibrated on a sample of the real input, or the op's default), the
 * chunks, task time, wall time at N workers and at the fleet's most, and the dollars, priced as
 * job reports price a finished job (prices.ts), so the two can be compared.
 */
import * as z from "zod";
import {
  CAPACITIES,
  PRICES,
  putRequestsOf,
  requestUsd,
  shuffleRequestUsd,
  sizedShuffle,
  vcpuSecondUsd,
  type Capacity,
  type PriceTable,
} from "./prices.js";
import { SPLITTER_GB } from "./jobReport.js";
import { DEFAULTS } from "../constants.js";
import type { InputObject } from "../job/manifest.js";
import { planChunks, planOptionsOf } from "../job/planner.js";
import { defaultPartitions, type Format } from "../job/spec.js";
import { isShuffled, type AnyOp } from "../ops/types.js";
import { runsInline } from "../pipeline/inline.js";
import { uncompressedName } from "../records/codecs.js";

/**
 * Mapping rates per vCPU (MB/s) when none is calibrated: about the slowest each built-in op
 * showed in docs/benchmarks.md on one core of a 2-core x86 machine; a lab's op gets the last.
 */
export const DEFAULT_MB_PER_SECOND: Readonly<Record<string, number>> = {
  count: 150,
  grep: 60,
  wordcount: 25,
  stats: 20,
  histogram: 20,
  distinct: 15,
  groupby: 12,
  sort: 8,
};
export const LAB_OP_MB_PER_SECOND = 10;
/** Time a task spends on its requests and start, beyond its bytes. */
export const TASK_OVERHEAD_SECONDS = 0.05;
/** Log bytes a task writes (a few JSON lines), and CloudWatch Logs' price per GB ingested. */
const LOG_BYTES_PER_TASK = 1000;
const LOGS_USD_PER_GB = 0.5;

export const Estimate = z.object({
  op: z.string(),
  bytes: z.number(),
  chunks: z.number().int(),
  rate: z.object({
    mbPerSecondPerVcpu: z.number(),
    source: z.enum(["calibrated", "default"]),
    /** The share of it a task keeps beside another (EstimateInput.sharedShare), when measured. */
    shared: z.number().optional(),
    /** A fresh thread's first chunk's extra seconds (EstimateInput.coldSeconds), when measured. */
    coldSeconds: z.number().optional(),
  }),
  /** Where it would run: the splitter maps a job itself when runsInline says so (pipeline/inline.ts). */
  runsOn: z.enum(["lambda", "fleet"]),
  /**
   * Bytes of compressed inputs (a codec found, or a name such as .gz): priced as stored, since
   * their decoded size is known only by reading them, so task time may be short of the truth.
   */
  compressedBytes: z.number().optional(),
  /** What a folder's or prefix's listing left out (hiddenNames.ts): not read by the job, so not priced. */
  hidden: z.object({ count: z.number().int().positive(), first: z.array(z.string()) }).optional(),
  taskSeconds: z.number(),
  workerHours: z.number(),
  wallSeconds: z.object({ atWorkers: z.number(), workers: z.number(), atMost: z.number(), maxWorkers: z.number() }),
  cost: z.object({
    currency: z.literal("USD"),
    pricesAsOf: z.string(),
    instanceType: z.string(),
    capacity: z.enum(CAPACITIES),
    fleetPriced: z.boolean(),
    instances: z.number(),
    lambda: z.number(),
    s3Requests: z.number(),
    sqs: z.number(),
    logs: z.number(),
    total: z.number(),
  }),
});
export type Estimate = z.infer<typeof Estimate>;

export interface EstimateInput {
  readonly op: string;
  /** Each input's size in bytes. */
  readonly sizes: readonly number[];
  readonly chunkSize: number;
  /**
   * The tasks the job is planned as (planChunks: small inputs packed into one task); unset: each
   * input's size over the chunk size, as if none were packed. Each piece of an input is still one GET.
   */
  readonly chunks?: number;
  /** The objects the tasks read, a GET each (planned: a compressed stream is read once); unset: each input's pieces. */
  readonly objects?: number;
  /** Calibrated MB/s per vCPU; unset: the op's default. */
  readonly mbPerSecond?: number;
  /**
   * The op shuffles (a keyed op, or sort): its reduce stage and the shuffle's requests are priced.
   * Its partitions: `partitions`, or the splitter's default (one per 256 MiB, within the shuffle's
   * segment limit).
   */
  readonly shuffled?: boolean;
  readonly partitions?: number;
  /**
   * A shuffling op's reduce stage, in input MB per second of one reduce task (calibrated with the
   * map rate; unset: the op's map rate, as each record is parsed again): its partitions run side
   * by side, at most one per vCPU.
   */
  readonly reduceMbPerSecond?: number;
  /** The same, for a reduce task whose partition is past DEFAULTS.reduceSpillBytes and spills its runs; unset: reduceMbPerSecond. */
  readonly spilledReduceMbPerSecond?: number;
  /**
   * The share of its rate a task keeps while another runs beside it on the machine (calibrated;
   * default 1). It applies wherever more than one task runs at once: at more than one worker, and
   * on every fleet instance of more than one vCPU.
   */
  readonly sharedShare?: number;
  /** Fixed time before the first task (a local run's process and threads); default 0. */
  readonly startSeconds?: number;
  /**
   * Time a fresh task thread's first chunk takes beyond a warm one, while its op code is compiled
   * (calibrated; default 0): once in the wall time, once per task slot in the task time.
   */
  readonly coldSeconds?: number;
  /** Time a task spends beyond its bytes: its requests on the fleet. Default TASK_OVERHEAD_SECONDS; a local run's is about 0. */
  readonly taskOverheadSeconds?: number;
  readonly instanceType: string;
  /** How the fleet's instances are bought (default on demand). */
  readonly capacity?: Capacity;
  /** The prices (default the shipped table). */
  readonly prices?: PriceTable;
  /** Worker tasks at once, and the vCPUs (tasks at once) of each. */
  readonly workers: number;
  readonly vcpusPerWorker: number;
  readonly maxWorkers: number;
  /** The splitter maps the job itself (runsInline's answer, as estimatedPlan gives it). */
  readonly inline: boolean;
  /** The bytes of the largest task (a compressed stream is one task whatever the chunk size); unset: the chunk size. */
  readonly taskBytes?: number;
  /** Bytes of compressed inputs, said with the estimate. */
  readonly compressedBytes?: number;
  /** What the inputs' listings left out, said with the estimate. */
  readonly hidden?: { readonly count: number; readonly first: readonly string[] };
  /**
   * S3 requests of writes as big as each task's bytes (a sort's runs: putRequestsOf each); unset:
   * from the sizes, each input cut in chunks.
   */
  readonly chunkPuts?: number;
}

/** What an estimate takes from a job's plan: the fields of EstimateInput the splitter's own planning decides. */
export type EstimatedPlan = Pick<
  EstimateInput,
  "sizes" | "chunks" | "objects" | "shuffled" | "inline" | "taskBytes" | "compressedBytes" | "chunkPuts"
>;

/** The format an estimate plans for: the op's default (an estimate is given no format). */
export const estimatedFormat = (op: AnyOp): Format => op.formats[0]!;

/**
 * A job planned as the splitter plans it, from its inputs as withCodecs gives them (a gzip or
 * zstd stream is one task, a BGZF file splits at its blocks, a zip is its entries): its tasks,
 * the largest task's bytes, and whether the splitter would map it itself (`inlineMaxBytes`: the
 * stack's limit, 0 for none).
 */
export const estimatedPlan = (op: AnyOp, inputs: readonly InputObject[], chunkSize: number, inlineMaxBytes: number): EstimatedPlan => {
  const plan = planChunks(inputs, chunkSize, planOptionsOf(estimatedFormat(op)));
  let taskBytes = 0;
  let chunkPuts = 0;
  let objects = 0;
  for (const chunk of plan.chunks()) {
    objects += 1 + (chunk.more?.length ?? 0);
    const bytes = chunk.end - chunk.start + (chunk.more ?? []).reduce((n, m) => n + m.input.size, 0);
    taskBytes = Math.max(taskBytes, bytes);
    chunkPuts += putRequestsOf(bytes);
  }
  const compressed = inputs.filter((i) => i.codec !== undefined || uncompressedName(i.name) !== i.name);
  return {
    sizes: inputs.map((i) => i.size),
    chunks: plan.total,
    objects,
    shuffled: isShuffled(op),
    inline: plan.total > 0 && runsInline(op, inputs, inlineMaxBytes),
    taskBytes,
    chunkPuts,
    ...(compressed.length > 0 ? { compressedBytes: compressed.reduce((n, i) => n + i.size, 0) } : {}),
  };
};

export const defaultRate = (op: string): number => DEFAULT_MB_PER_SECOND[op] ?? LAB_OP_MB_PER_SECOND;

export const estimateJob = (input: EstimateInput): Estimate => {
  const bytes = input.sizes.reduce((n, s) => n + s, 0);
  const pieces = input.sizes.reduce((n, s) => n + (s === 0 ? 0 : Math.ceil(s / input.chunkSize)), 0);
  const chunks = input.chunks ?? pieces;
  const aloneRate = input.mbPerSecond ?? defaultRate(input.op);
  const overhead = input.taskOverheadSeconds ?? TASK_OVERHEAD_SECONDS;
  const shuffled = input.shuffled === true || input.reduceMbPerSecond !== undefined;
  const partitions = input.partitions ?? defaultPartitions(bytes, chunks);
  // Input bytes per partition as a proxy for the runs its reduce task holds: about as many for
  // an op whose map combines little (distinct), fewer for one that combines much (groupby), whose
  // two rates then hardly differ.
  const spills = bytes / partitions > DEFAULTS.reduceSpillBytes;
  const reduceRate = input.reduceMbPerSecond ?? (shuffled ? aloneRate : undefined);
  const aloneReduceRate = spills ? (input.spilledReduceMbPerSecond ?? reduceRate) : reduceRate;
  const { inline } = input;
  /**
   * Task time at this many slots: a task beside another keeps sharedShare of its rate (the map
   * stage's share, taken for the reduce stage too), a stage of one task its whole rate.
   */
  const stage = (slots: number) => {
    const shareAt = (tasks: number): number => (Math.min(tasks, slots) > 1 ? Math.min(1, input.sharedShare ?? 1) : 1);
    const rate = aloneRate * shareAt(chunks);
    const reduceSeconds = aloneReduceRate ? bytes / (aloneReduceRate * shareAt(partitions) * 1e6) : 0;
    // Waves of tasks, each as long as a full chunk: the last wave may be short, the first is not.
    const chunkSeconds = Math.min(input.taskBytes ?? input.chunkSize, bytes) / (rate * 1e6) + overhead;
    const cold = Math.min(chunks, slots) * (input.coldSeconds ?? 0);
    const reduceOverhead = aloneReduceRate ? partitions * overhead : 0;
    return { taskSeconds: bytes / (rate * 1e6) + chunks * overhead + cold + reduceSeconds + reduceOverhead, chunkSeconds, reduceSeconds };
  };
  const slotsAt = (workers: number): number => Math.max(1, workers * input.vcpusPerWorker);
  const wall = (workers: number): number => {
    const slots = slotsAt(workers);
    const { chunkSeconds, reduceSeconds } = stage(slots);
    const cold = chunks > 0 ? (input.coldSeconds ?? 0) : 0;
    return (input.startSeconds ?? 0) + cold + Math.ceil(chunks / slots) * chunkSeconds + reduceSeconds / Math.min(partitions, slots);
  };
  // Inline, the splitter maps the job alone; on the fleet, at the workers asked for.
  const { taskSeconds } = stage(inline ? 1 : slotsAt(input.workers));
  const capacity = input.capacity ?? "on-demand";
  const prices = input.prices ?? PRICES;
  const perVcpu = vcpuSecondUsd(input.instanceType, capacity, prices);
  const instances = inline ? 0 : taskSeconds * (perVcpu ?? 0);
  const lambda = inline ? taskSeconds * SPLITTER_GB * prices.lambdaGbSecond : 0;
  const mapRequests = requestUsd(chunks, input.objects ?? pieces, inline ? 0 : chunks, prices);
  // A sort's runs and output parts are as big as the bytes read: past the multipart threshold, several requests each.
  const sizedPuts = () => ({
    map:
      input.chunkPuts ??
      input.sizes.reduce((n, s) => {
        const rest = s % input.chunkSize;
        return n + Math.floor(s / input.chunkSize) * putRequestsOf(input.chunkSize) + (rest > 0 ? putRequestsOf(rest) : 0);
      }, 0),
    output: partitions * putRequestsOf(bytes / partitions),
  });
  const shuffle = shuffled
    ? shuffleRequestUsd(chunks, partitions, !inline, prices, sizedShuffle(input.op) ? sizedPuts() : undefined)
    : { s3: 0, sqs: 0 };
  const requests = { s3: mapRequests.s3 + shuffle.s3, sqs: mapRequests.sqs + shuffle.sqs };
  const logs = ((chunks * LOG_BYTES_PER_TASK) / 1e9) * LOGS_USD_PER_GB;
  const round = (usd: number): number => Math.round(usd * 1e6) / 1e6;
  return {
    op: input.op,
    bytes,
    chunks,
    rate: {
      mbPerSecondPerVcpu: aloneRate,
      source: input.mbPerSecond === undefined ? "default" : "calibrated",
      ...(input.sharedShare !== undefined ? { shared: input.sharedShare } : {}),
      ...(input.coldSeconds !== undefined ? { coldSeconds: input.coldSeconds } : {}),
    },
    runsOn: inline ? "lambda" : "fleet",
    ...(input.compressedBytes ? { compressedBytes: input.compressedBytes } : {}),
    ...(input.hidden?.count ? { hidden: { count: input.hidden.count, first: [...input.hidden.first] } } : {}),
    taskSeconds,
    workerHours: taskSeconds / input.vcpusPerWorker / 3600,
    wallSeconds: {
      atWorkers: inline ? taskSeconds : wall(input.workers),
      workers: input.workers,
      atMost: inline ? taskSeconds : wall(input.maxWorkers),
      maxWorkers: input.maxWorkers,
    },
    cost: {
      currency: "USD",
      pricesAsOf: prices.asOf,
      instanceType: input.instanceType,
      capacity,
      fleetPriced: inline || perVcpu !== undefined,
      instances: round(instances),
      lambda: round(lambda),
      s3Requests: round(requests.s3),
      sqs: round(requests.sqs),
      logs: round(logs),
      total: round(instances + lambda + requests.s3 + requests.sqs + logs),
    },
  };
};
