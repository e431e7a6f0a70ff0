/**
 * The list prices a job report and an estimate price work with: on-demand Linux prices of the
 * Graviton types the stack supports, Lambda on ARM, S3 requests and SQS, in us-east-1, as
 * published when this table was written. Spot prices move by the hour and the zone: the table
 * keeps a typical spot price per family as a share of on-demand, for a fleet that runs on spot.
 */
import * as z from "zod";
import { ErrorCode } from "../errors.js";
import { parseWith } from "../parseJson.js";
import { vcpusOfSize } from "../instanceTypes.js";
import { DEFAULTS } from "../constants.js";
import { sort } from "../ops/sort.js";

/** A price table: the shipped one (PRICES), or a lab's own for today's prices (`cloudmill estimate --prices`). */
export interface PriceTable {
  readonly asOf: string;
  readonly region: string;
  readonly vcpuHour: Readonly<Record<string, number>>;
  readonly spotShare: Readonly<Record<string, number>>;
  readonly lambdaGbSecond: number;
  readonly lambdaRequest: number;
  readonly s3Get1000: number;
  readonly s3Put1000: number;
  readonly sqsMillion: number;
}

export const PRICES: PriceTable = {
  asOf: "2025-01",
  region: "us-east-1",
  /**
   * USD per vCPU-hour, on demand, by instance family: within a family the price is linear in
   * the vCPUs (m7g.large, 2 vCPUs, is $0.0816 an hour). Families not listed are unpriced.
   */
  vcpuHour: {
    m6g: 0.0385,
    c6g: 0.034,
    r6g: 0.0504,
    m7g: 0.0408,
    c7g: 0.03625,
    r7g: 0.05355,
    m8g: 0.04488,
    c8g: 0.03988,
    r8g: 0.0589,
  } as Readonly<Record<string, number>>,
  /**
   * A typical spot price as a share of on-demand, by family (us-east-1, early 2025): what a
   * fleet with `spot` pays, roughly. `aws ec2 describe-spot-price-history` gives today's.
   */
  spotShare: { m6g: 0.42, c6g: 0.42, r6g: 0.4, m7g: 0.4, c7g: 0.4, r7g: 0.38, m8g: 0.48, c8g: 0.48, r8g: 0.45 } as Readonly<
    Record<string, number>
  >,
  /** USD per GB-second of Lambda on ARM, and per invocation. */
  lambdaGbSecond: 0.0000133334,
  lambdaRequest: 0.0000002,
  /** USD per 1,000 S3 GET/HEAD and PUT/LIST requests (S3 Standard). */
  s3Get1000: 0.0004,
  s3Put1000: 0.005,
  /** USD per million SQS requests (standard queue). */
  sqsMillion: 0.4,
};

const usd = z.number().nonnegative().finite();
const FAMILY = /^[a-z][a-z0-9-]*$/;
/** The first key of an object that is no instance family's name. */
const notFamily = (v: unknown): string | undefined =>
  typeof v === "object" && v !== null ? Object.keys(v).find((k) => !FAMILY.test(k)) : undefined;
/**
 * Figures per instance family (m7g). Keys are checked on the object as given: a record's parse
 * drops a `__proto__` key without a word, which would price nothing the lab asked for.
 */
const perFamily = (value: z.ZodType<number>) =>
  z
    .custom<Record<string, unknown>>((v) => notFamily(v) === undefined, {
      error: (issue) => `key ${JSON.stringify(notFamily(issue.input))}: expected an instance family such as m7g`,
    })
    .pipe(z.record(z.string(), value));
/**
 * A lab's prices over the shipped table: its date, and any figures it gives (a family's price
 * or spot share is added, or replaces the shipped one). Unknown fields are refused: a misspelt
 * one would otherwise price nothing.
 */
export const PriceOverride = z.strictObject({
  asOf: z.string().min(1),
  region: z.string().min(1).optional(),
  vcpuHour: perFamily(usd).optional(),
  spotShare: perFamily(z.number().positive().max(1)).optional(),
  lambdaGbSecond: usd.optional(),
  lambdaRequest: usd.optional(),
  s3Get1000: usd.optional(),
  s3Put1000: usd.optional(),
  sqsMillion: usd.optional(),
});
export type PriceOverride = z.infer<typeof PriceOverride>;

/** A lab's prices given as a value (the SDK's `prices`), checked: INVALID_SPEC naming the first bad field. */
export const checkedPrices = (value: unknown, what = "prices"): PriceOverride =>
  parseWith(value, PriceOverride, what, ErrorCode.INVALID_SPEC);

/** The shipped table with a lab's override laid over it. */
export const withPrices = (override: PriceOverride, base: PriceTable = PRICES): PriceTable => {
  const { vcpuHour, spotShare, region, ...rest } = override;
  return {
    ...base,
    ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)),
    region: region ?? base.region,
    vcpuHour: { ...base.vcpuHour, ...vcpuHour },
    spotShare: { ...base.spotShare, ...spotShare },
  };
};

/** How the fleet's instances are bought: the stack's `spot` setting. */
export type Capacity = "on-demand" | "spot";
export const CAPACITIES = ["on-demand", "spot"] as const satisfies readonly Capacity[];

/** USD per vCPU-second of an instance type, on demand or (typically) on spot; undefined for a family the table lacks. */
export const vcpuSecondUsd = (instanceType: string, capacity: Capacity = "on-demand", prices = PRICES): number | undefined => {
  const family = instanceType.split(".")[0] ?? "";
  // Own entries only: a family named `constructor` has no price.
  const hour = Object.hasOwn(prices.vcpuHour, family) ? prices.vcpuHour[family] : undefined;
  const share = capacity === "spot" ? (Object.hasOwn(prices.spotShare, family) ? prices.spotShare[family] : undefined) : 1;
  return hour === undefined || share === undefined || vcpusOfSize(instanceType) === undefined ? undefined : (hour * share) / 3600;
};

/**
 * S3 GETs per task beyond one per object it reads: the reducer's (or a merge task's) read of its
 * part. A map task's first delivery looks for no part (a keyed job's, a merge or reduce task's
 * do: a HEAD, left out here) and a worker asks whether a job ended once per 5 s, not per task
 * (docs/benchmarks.md, "The emulated cloud": 2.12 GETs a task with the bench's polls).
 */
export const S3_GETS_PER_TASK = 1;
/** S3 PUTs per task: its part. */
export const S3_PUTS_PER_TASK = 1;
/**
 * SQS requests per fleet task: shares of a batched send, a shared receive, a batched delete and
 * its part's notice to the reducer. Tasks of milliseconds share them (0.8 measured,
 * docs/benchmarks.md); a task of minutes finishes alone and makes each (about 3): this is between.
 */
export const SQS_PER_TASK = 2.2;

/** USD of the S3 and SQS requests of `tasks` cloud tasks reading `objects` objects, `fleetTasks` of them through the queue. */
export const requestUsd = (
  tasks: number,
  objects: number,
  fleetTasks: number,
  prices = PRICES,
): { readonly s3: number; readonly sqs: number } => ({
  s3: ((tasks * S3_GETS_PER_TASK + objects) * prices.s3Get1000) / 1000 + (tasks * S3_PUTS_PER_TASK * prices.s3Put1000) / 1000,
  sqs: fleetTasks * SQS_PER_TASK * (prices.sqsMillion / 1e6),
});

/**
 * S3 requests of a write of `bytes`, each priced as a PUT, as S3BlobStore.put makes them: one
 * PutObject up to DEFAULTS.multipartThreshold; past it a multipart upload: its create, a part per
 * 8 MiB (S3BlobStore's part size, the threshold's) and its complete.
 */
export const putRequestsOf = (bytes: number): number =>
  bytes <= DEFAULTS.multipartThreshold ? 1 : 2 + Math.ceil(bytes / DEFAULTS.multipartThreshold);

/**
 * Whether an op's shuffle writes are as big as the bytes its tasks read, so their multipart
 * requests can be priced: a sort's are (a map task's run holds its chunk's lines, a reduce
 * task's part its partition's). A keyed op's tables may be any size: each is priced as one PUT.
 */
export const sizedShuffle = (op: string): boolean => op === sort.name;

/** What a shuffle's task does beyond its own requests (requestUsd): a map task, or a reduce task. */
export type ShuffleRole = "map" | "reduce";

/**
 * USD of the S3 requests a shuffle adds to its tasks' own (requestUsd, where a reduce task's
 * objects are its segments): the PUTs of the map tasks' shuffle objects (`mapPuts`: one each, or
 * putRequestsOf each where its size is known); per reduce task its plan's PUT (the reducer
 * writes it) and GET; and the PUTs of the reduce tasks' output parts (`outputPuts`, the same).
 */
export const shuffleUsd = (mapPuts: number, reduceTasks: number, outputPuts: number = reduceTasks, prices = PRICES): number =>
  ((mapPuts + reduceTasks + outputPuts) * prices.s3Put1000 + reduceTasks * prices.s3Get1000) / 1000;

/**
 * USD of a keyed (or sorting) job's shuffle beyond its map tasks' own requests: its reduce
 * tasks' own (a ranged GET per chunk's segment of a partition, their parts and messages) and
 * what shuffleUsd adds, with `puts` of its shuffle objects and output parts (default one
 * each). Every segment is taken as non-empty: an upper bound, reached by an op of many keys.
 */
export const shuffleRequestUsd = (
  chunks: number,
  partitions: number,
  onFleet: boolean,
  prices = PRICES,
  puts: { readonly map: number; readonly output: number } = { map: chunks, output: partitions },
): { readonly s3: number; readonly sqs: number } => {
  const reduce = requestUsd(partitions, partitions * chunks, onFleet ? partitions : 0, prices);
  return { s3: reduce.s3 + shuffleUsd(puts.map, partitions, puts.output, prices), sqs: reduce.sqs };
};

/**
 * Dollars past a ceiling, to six decimals, or as many more as it takes to read as past it:
 * "$0.000294 is over $0.000294" would say nothing.
 */
export const usdOver = (amount: number, ceiling: number): string => {
  let digits = 6;
  while (digits < 12 && Number(amount.toFixed(digits)) <= ceiling) digits++;
  return amount.toFixed(digits);
};
