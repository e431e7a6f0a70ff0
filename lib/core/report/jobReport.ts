/**
 * A finished job's report (`_jobs/<jobId>/report.json`): every task's run as its part recorded
 * it, the workers and how busy they were, the stragglers, throughput over time, and what the
 * task time cost at list prices. Built from the parts alone, so it is a pure function of them.
 */
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../errors.js";
import { DEFAULTS } from "../constants.js";
import { RanOn, type TaskRun } from "../job/manifest.js";
import {
  CAPACITIES,
  PRICES,
  putRequestsOf,
  requestUsd,
  S3_GETS_PER_TASK,
  S3_PUTS_PER_TASK,
  shuffleUsd,
  sizedShuffle,
  SQS_PER_TASK,
  vcpuSecondUsd,
  type Capacity,
  type ShuffleRole,
} from "./prices.js";

/** Tasks a report lists one by one; a bigger job's report keeps its totals and its slowest tasks. */
export const MAX_REPORT_TASKS = 20_000;
/** Stragglers a report lists (the slowest); `straggling` counts them all. */
export const MAX_REPORT_STRAGGLERS = 1_000;
/** A task is a straggler past this many times the median task time. */
export const STRAGGLER_FACTOR = 3;
/** Points of the throughput series. */
const THROUGHPUT_POINTS = 60;
/** The splitter function's memory, in GB as Lambda bills it. */
export const SPLITTER_GB = DEFAULTS.splitterMemoryMiB / 1024;

/** PUTs of a shuffle task's shuffle object or output part: putRequestsOf its bytes read where they size it (`sized`), else one. */
const shufflePuts = (bytes: number, sized: boolean): number => (sized ? putRequestsOf(bytes) : 1);

/** USD a shuffle adds to one task's requests in its role: a map task's shuffle object, or a reduce task's plan and output part. */
const shuffleTaskUsd = (role: ShuffleRole, bytes: number, sized: boolean): number =>
  role === "map" ? shuffleUsd(shufflePuts(bytes, sized), 0) : shuffleUsd(0, 1, shufflePuts(bytes, sized));

/**
 * Objects a run's own GETs are priced for: those it read, but none for a merge task, whose
 * objects are its children's parts, each priced already as its child's S3_GETS_PER_TASK.
 */
const pricedObjects = (objects: number, merge: boolean): number => (merge ? 0 : objects);

/**
 * What one task's run cost at list prices, as a report prices it: its time on its instance's
 * vCPU (fleet) or in the splitter (Lambda), and its requests (a merge task's, or a shuffle's too
 * for its role; `sized`: its writes are as big as its bytes read, sizedShuffle).
 * Undefined when its fleet type is unpriced.
 */
export const runCostUsd = (
  run: TaskRun,
  instanceType: string,
  capacity: Capacity = "on-demand",
  role?: ShuffleRole | "merge",
  sized = false,
): number | undefined => {
  const seconds = (run.ms ?? 0) / 1000;
  const perVcpu = vcpuSecondUsd(instanceType, capacity);
  if (run.on === "fleet" && perVcpu === undefined) return undefined;
  const compute = run.on === "fleet" ? seconds * perVcpu! : run.on === "lambda" ? seconds * SPLITTER_GB * PRICES.lambdaGbSecond : 0;
  const cloud = run.on === "local" ? 0 : 1;
  const { s3, sqs } = requestUsd(cloud, cloud * pricedObjects(run.objects ?? 1, role === "merge"), run.on === "fleet" ? 1 : 0);
  const shuffled = role === undefined || role === "merge" ? 0 : cloud * shuffleTaskUsd(role, run.bytes ?? 0, sized);
  return compute + s3 + sqs + shuffled;
};

export const TaskRecord = z.object({
  index: z.number().int().nonnegative(),
  on: RanOn,
  worker: z.string(),
  /** Milliseconds from the job's first task start. */
  start: z.number(),
  ms: z.number().nonnegative(),
  bytes: z.number().int().nonnegative(),
});
export type TaskRecord = z.infer<typeof TaskRecord>;

export const JobReport = z.object({
  v: z.literal(1),
  jobId: z.string(),
  op: z.string(),
  inputs: z.array(z.string()),
  /** How many inputs the job had, when `inputs` does not name each (JobStatus.inputCount). */
  inputCount: z.number().int().nonnegative().optional(),
  /** The first task's start, ISO; task `start`s count from it. */
  startedAt: z.string(),
  finishedAt: z.string(),
  triggeredAt: z.string().optional(),
  /** Tasks whose parts recorded their run (older workers' parts do not). */
  taskCount: z.number().int().nonnegative(),
  /** The tasks, by index: all of them, or past MAX_REPORT_TASKS the slowest (`omittedTasks` are not listed). */
  tasks: z.array(TaskRecord),
  omittedTasks: z.number().int().nonnegative(),
  workers: z.array(
    z.object({ worker: z.string(), on: RanOn, tasks: z.number().int(), busyMs: z.number(), bytes: z.number(), firstStart: z.number() }),
  ),
  medianMs: z.number(),
  /** The slowest tasks past STRAGGLER_FACTOR × the median, at most MAX_REPORT_STRAGGLERS; `straggling` counts all. */
  stragglers: z.array(z.object({ index: z.number().int(), worker: z.string(), ms: z.number(), timesMedian: z.number() })),
  straggling: z.number().int().nonnegative(),
  /**
   * Backups queued for straggling chunks (speculative execution), how many finished first, and how
   * long the copies that lost ran (priced in `cost.lostCopies`; absent in reports written before it was added).
   */
  backups: z
    .object({
      launched: z.number().int().nonnegative(),
      won: z.number().int().nonnegative(),
      lostSeconds: z.number().nonnegative().optional(),
    })
    .optional(),
  /** Input bytes per second over the job, in equal steps from the first task's start. */
  throughput: z.array(z.object({ at: z.number(), bytesPerSecond: z.number() })),
  taskSeconds: z.object({ fleet: z.number(), lambda: z.number(), local: z.number() }),
  /** What the tasks' own time cost at list prices, on demand or spot (not idle or scaling time, not the reducer). */
  cost: z.object({
    currency: z.literal("USD"),
    pricesAsOf: z.string(),
    instanceType: z.string().optional(),
    /** How the fleet's instances were priced (absent in reports written before spot was priced: on demand). */
    capacity: z.enum(CAPACITIES).optional(),
    /** False when the instance type's family is not in the price table: `fleet` is then 0 and unknown. */
    fleetPriced: z.boolean(),
    fleet: z.number(),
    lambda: z.number(),
    s3Requests: z.number(),
    sqs: z.number(),
    /** What the copies that lost a backup race cost: their time and requests (absent: none, or a report written before it was added). */
    lostCopies: z.number().optional(),
    total: z.number(),
    basis: z.string(),
  }),
  /** The result, when it charts (histogram bins). */
  chart: z.object({ kind: z.literal("histogram"), min: z.number(), max: z.number(), bins: z.array(z.number()) }).optional(),
});
export type JobReport = z.infer<typeof JobReport>;

const ON: readonly RanOn[] = RanOn.options;
/** The furthest a JavaScript date reaches from the epoch, in ms. */
const MAX_DATE_MS = 8.64e15;

/**
 * Arrays whose elements RunLog.fromJSON checks as it copies them: zod checking a million-chunk
 * job's seven million elements one by one took longer than reading the file.
 */
const checkedLater = <T>() => z.custom<T[]>((v) => Array.isArray(v), { error: "expected an array" });

/** A RunLog as JSON: its flat arrays (a keyed job keeps its map stage's runs for its report). */
export const RunLogJson = z.object({
  index: checkedLater<number>(),
  start: checkedLater<number>(),
  ms: checkedLater<number>(),
  bytes: checkedLater<number>(),
  objects: checkedLater<number>(),
  worker: checkedLater<number>(),
  /** By name: another version's order of RanOn must not relabel runs. */
  on: checkedLater<RanOn>(),
  workers: z.array(z.string()),
});
export type RunLogJson = z.infer<typeof RunLogJson>;

/** Whole and at least `min`. */
const whole = (v: unknown, min: number): boolean => Number.isSafeInteger(v) && (v as number) >= min;

/**
 * Task runs in a few flat arrays (about fifty bytes a task), so a reducer can hold a
 * million-chunk job's runs; worker names are kept once each.
 */
export class RunLog {
  readonly #index: number[] = [];
  readonly #start: number[] = [];
  readonly #ms: number[] = [];
  readonly #bytes: number[] = [];
  readonly #objects: number[] = [];
  readonly #worker: number[] = [];
  readonly #on: number[] = [];
  readonly #workers: string[] = [];
  readonly #workerIds = new Map<string, number>();

  /** Records a task's run; one without a duration (an older worker's part) is left out. */
  add(index: number, run: TaskRun): void {
    const start = Date.parse(run.at);
    if (run.ms === undefined || !Number.isFinite(start)) return;
    this.#push(index, start, run.ms, run.bytes ?? 0, run.objects ?? 1, this.#workerId(run.worker ?? run.on), ON.indexOf(run.on));
  }

  #workerId(name: string): number {
    let id = this.#workerIds.get(name);
    if (id === undefined) this.#workerIds.set(name, (id = this.#workers.push(name) - 1));
    return id;
  }

  #push(index: number, start: number, ms: number, bytes: number, objects: number, worker: number, on: number): void {
    this.#index.push(index);
    this.#start.push(start);
    this.#ms.push(ms);
    this.#bytes.push(bytes);
    this.#objects.push(objects);
    this.#worker.push(worker);
    this.#on.push(on);
  }

  get size(): number {
    return this.#index.length;
  }

  toJSON(): RunLogJson {
    return {
      index: this.#index,
      start: this.#start,
      ms: this.#ms,
      bytes: this.#bytes,
      objects: this.#objects,
      worker: this.#worker,
      on: this.#on.map((i) => ON[i]!),
      workers: this.#workers,
    };
  }

  /**
   * The runs a RunLog's JSON holds. One whose arrays disagree in length, or hold a value no run
   * has (a negative size, a worker it does not name, an unknown place), is refused.
   */
  static fromJSON(json: RunLogJson): RunLog {
    const n = json.index.length;
    const lengths = [json.start, json.ms, json.bytes, json.objects, json.worker, json.on].map((a) => a.length);
    if (lengths.some((l) => l !== n)) throw new CloudmillError(ErrorCode.INTERNAL, "a run log's arrays differ in length");
    const log = new RunLog();
    // Copied array to array: a million-chunk job's map stage comes back in a moment, not seconds.
    const workers = json.workers.map((name) => log.#workerId(name));
    const on = new Map(ON.map((name, i) => [name, i]));
    for (let i = 0; i < n; i++) {
      const index = json.index[i];
      const start = json.start[i];
      const ms = json.ms[i];
      const bytes = json.bytes[i];
      const objects = json.objects[i];
      const worker = json.worker[i];
      const place = on.get(json.on[i]!);
      if (
        !whole(index, 0) ||
        typeof start !== "number" ||
        typeof ms !== "number" ||
        !(ms >= 0) ||
        !whole(bytes, 0) ||
        !whole(objects, 1) ||
        !whole(worker, 0) ||
        worker! >= workers.length ||
        place === undefined
      )
        throw new CloudmillError(ErrorCode.INTERNAL, `a run log's run ${i} is not one (task ${String(index)})`);
      // A start no date can hold is a run the report cannot place: left out, as add leaves one out.
      if (!(Math.abs(start) <= MAX_DATE_MS)) continue;
      log.#push(index!, start, ms, bytes!, objects!, workers[worker!]!, place);
    }
    return log;
  }

  /** Each task as a record (starts counted from t0), one at a time. */
  *records(t0: number): Generator<TaskRecord & { readonly objects: number }> {
    for (let i = 0; i < this.#index.length; i++) {
      yield {
        index: this.#index[i]!,
        on: ON[this.#on[i]!]!,
        worker: this.#workers[this.#worker[i]!]!,
        start: this.#start[i]! - t0,
        ms: this.#ms[i]!,
        bytes: this.#bytes[i]!,
        objects: this.#objects[i]!,
      };
    }
  }

  firstStart(): number | undefined {
    let t0: number | undefined;
    for (const s of this.#start) t0 = t0 === undefined ? s : Math.min(t0, s);
    return t0;
  }

  /** The tasks' durations; with `below`, only those of tasks indexed below it (the map tasks). */
  durations(below = Number.POSITIVE_INFINITY): Float64Array {
    return Float64Array.from(this.#ms.filter((_, i) => this.#index[i]! < below));
  }
}

/**
 * A backup as its markers tell it: the task, whether the backup wrote the part first, when it was
 * queued and when its original began (ms since the epoch; absent when its marker could not be read).
 */
export interface BackupRace {
  readonly index: number;
  readonly backupWon: boolean;
  readonly queuedAt?: number;
  readonly originalStart?: number;
  /** The race belongs to a run that ended by then (the job was resumed): a run begun since is none of its copies. */
  readonly before?: number;
}

/**
 * How long a race's losing copy ran: the original from its start, or the backup from when it was
 * queued, until the winner ended (the loser stops at its next heartbeat after that). Undefined
 * when the race's times or the winner's run are not known, or the run is not one of the race's
 * copies (a backup starts after it is queued, an original before): a chunk mapped again after a
 * resume, say.
 */
export const lostCopyMs = (race: BackupRace, winner: { readonly start: number; readonly end: number } | undefined): number | undefined => {
  if (race.queuedAt === undefined || race.originalStart === undefined || winner === undefined) return undefined;
  if (race.backupWon ? winner.start < race.queuedAt : winner.start > race.queuedAt) return undefined;
  if (race.before !== undefined && winner.start >= race.before) return undefined;
  return Math.max(0, winner.end - (race.backupWon ? race.originalStart : race.queuedAt));
};

export interface ReportInput {
  readonly jobId: string;
  readonly op: string;
  readonly inputs: readonly string[];
  readonly inputCount?: number;
  readonly triggeredAt?: string;
  readonly finishedAt: string;
  readonly runs: RunLog;
  /** The fleet's instance type, for its price (unset: no fleet price, e.g. a local run). */
  readonly instanceType?: string;
  /** How the fleet's instances are bought (default on demand). */
  readonly capacity?: Capacity;
  readonly result?: unknown;
  /** Backups the job queued for straggling tasks. */
  readonly backups?: readonly BackupRace[];
  /**
   * The job's chunks: tasks of a higher index (a keyed job's reduce tasks, a merge tree's merge
   * tasks) are listed and priced, but left out of the median, the stragglers and the input
   * throughput, which are the map tasks'. Unset: every task is a map task.
   */
  readonly chunks?: number;
  /** A keyed or sorting job's partitions: its tasks past `chunks` are reduce tasks, and the shuffle's requests are priced. */
  readonly partitions?: number;
}

const median = (sorted: Float64Array): number => {
  if (sorted.length === 0) return 0;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** How many of the ascending `sorted` are greater than `x`. */
const countAbove = (sorted: Float64Array, x: number): number => {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! > x) hi = mid;
    else lo = mid + 1;
  }
  return sorted.length - lo;
};

/**
 * A test, met in one pass, that picks exactly the `limit` longest durations (ties at the cut by
 * first come): what a report keeps of a job with more tasks than it lists.
 */
const longest = (sorted: Float64Array, limit: number): ((ms: number) => boolean) => {
  if (limit >= sorted.length) return () => true;
  const cut = sorted[sorted.length - limit]!;
  let ties = limit - countAbove(sorted, cut);
  return (ms) => ms > cut || (ms === cut && ties-- > 0);
};

const Histogram = z.object({ min: z.number(), max: z.number(), bins: z.array(z.number()) });

export const buildReport = (input: ReportInput): JobReport => {
  const { runs } = input;
  const chunks = input.chunks ?? Number.POSITIVE_INFINITY;
  const t0 = runs.firstStart() ?? Date.parse(input.finishedAt);
  const sorted = runs.durations().sort();
  // Stragglers are map tasks slow against map tasks: a reduce task reads far more than a chunk.
  const mapSorted = runs.durations(chunks).sort();
  const med = median(mapSorted);
  const straggling = med > 0 ? countAbove(mapSorted, STRAGGLER_FACTOR * med) : 0;
  const listed = longest(sorted, MAX_REPORT_TASKS);
  const slowStragglers = longest(mapSorted, MAX_REPORT_STRAGGLERS);

  const workers = new Map<string, JobReport["workers"][number]>();
  const seconds = { fleet: 0, lambda: 0, local: 0 };
  let span = 1;
  let cloudTasks = 0;
  let cloudObjects = 0;
  let cloudReduceTasks = 0;
  /** PUTs of the shuffle's objects (map tasks) and output parts (reduce tasks). */
  let shuffleObjectPuts = 0;
  let outputPartPuts = 0;
  const sized = sizedShuffle(input.op);
  let fleetTasks = 0;
  const stragglers: JobReport["stragglers"] = [];
  const tasks: TaskRecord[] = [];
  const races = input.backups ?? [];
  const raced = new Set(races.map((r) => r.index));
  /** The winning run of each raced task. */
  const winners = new Map<
    number,
    { readonly start: number; readonly end: number; readonly on: RanOn; readonly objects: number; readonly bytes: number }
  >();
  for (const { objects, ...t } of runs.records(t0)) {
    if (raced.has(t.index)) winners.set(t.index, { start: t0 + t.start, end: t0 + t.start + t.ms, on: t.on, objects, bytes: t.bytes });
    const w = workers.get(t.worker) ?? { worker: t.worker, on: t.on, tasks: 0, busyMs: 0, bytes: 0, firstStart: t.start };
    w.tasks++;
    w.busyMs += t.ms;
    w.bytes += t.bytes;
    w.firstStart = Math.min(w.firstStart, t.start);
    workers.set(t.worker, w);
    seconds[t.on] += t.ms / 1000;
    span = Math.max(span, t.start + t.ms);
    if (t.on !== "local") {
      cloudTasks++;
      // Past the chunks, a job that does not shuffle runs merge tasks.
      cloudObjects += pricedObjects(objects, t.index >= chunks && input.partitions === undefined);
      if (input.partitions !== undefined && t.index < chunks) shuffleObjectPuts += shufflePuts(t.bytes, sized);
      else if (input.partitions !== undefined) {
        cloudReduceTasks++;
        outputPartPuts += shufflePuts(t.bytes, sized);
      }
    }
    if (t.on === "fleet") fleetTasks++;
    if (listed(t.ms)) tasks.push(t);
    if (t.index < chunks && med > 0 && t.ms > STRAGGLER_FACTOR * med && (straggling <= MAX_REPORT_STRAGGLERS || slowStragglers(t.ms)))
      stragglers.push({ index: t.index, worker: t.worker, ms: t.ms, timesMedian: Math.round((t.ms / med) * 10) / 10 });
  }
  stragglers.sort((a, b) => b.ms - a.ms || a.index - b.index);

  // Each task's bytes spread evenly over its run, summed per step.
  const step = span / THROUGHPUT_POINTS;
  const per = new Array<number>(THROUGHPUT_POINTS).fill(0);
  for (const t of runs.records(t0)) {
    // Input bytes: a reduce task's are the shuffle's, counted once already by the map tasks.
    if (t.index >= chunks) continue;
    const end = t.start + Math.max(t.ms, 1);
    for (let i = Math.min(THROUGHPUT_POINTS - 1, Math.floor(t.start / step)); i < THROUGHPUT_POINTS && i * step < end; i++) {
      const overlap = Math.min(end, (i + 1) * step) - Math.max(t.start, i * step);
      if (overlap > 0) per[i]! += (t.bytes * overlap) / Math.max(t.ms, 1);
    }
  }
  const throughput = per.map((bytes, i) => ({ at: Math.round(i * step), bytesPerSecond: Math.round(bytes / (step / 1000)) }));

  const capacity = input.capacity ?? "on-demand";
  const perVcpu = input.instanceType ? vcpuSecondUsd(input.instanceType, capacity) : undefined;
  const fleet = seconds.fleet * (perVcpu ?? 0);
  const lambda = seconds.lambda * SPLITTER_GB * PRICES.lambdaGbSecond;
  const own = requestUsd(cloudTasks, cloudObjects, fleetTasks);
  const s3Requests = own.s3 + shuffleUsd(shuffleObjectPuts, cloudReduceTasks, outputPartPuts);
  const { sqs } = own;
  // Each losing copy as one more run of its task where the winner ran: its time, and its requests.
  let lostMs = 0;
  let lostUsd = 0;
  for (const race of races) {
    const winner = winners.get(race.index);
    const ms = lostCopyMs(race, winner);
    if (ms === undefined || !winner) continue;
    lostMs += ms;
    // On this machine a copy costs nothing; a backup never runs inline in the splitter.
    if (winner.on !== "fleet") continue;
    const requests = requestUsd(1, winner.objects, 1);
    // A keyed job's copy writes its shuffle output too (or, a reduce task, reads its plan and writes its part).
    const shuffled = input.partitions === undefined ? 0 : shuffleTaskUsd(race.index < chunks ? "map" : "reduce", winner.bytes, sized);
    lostUsd += (ms / 1000) * (perVcpu ?? 0) + requests.s3 + requests.sqs + shuffled;
  }
  const round = (usd: number): number => Math.round(usd * 1e6) / 1e6;
  const histogram = input.op === "histogram" ? Histogram.safeParse(input.result) : undefined;
  return {
    v: 1,
    jobId: input.jobId,
    op: input.op,
    inputs: [...input.inputs],
    ...(input.inputCount !== undefined ? { inputCount: input.inputCount } : {}),
    startedAt: new Date(t0).toISOString(),
    finishedAt: input.finishedAt,
    ...(input.triggeredAt !== undefined ? { triggeredAt: input.triggeredAt } : {}),
    taskCount: runs.size,
    tasks: tasks.sort((a, b) => a.index - b.index),
    omittedTasks: runs.size - tasks.length,
    workers: [...workers.values()].sort((a, b) => a.firstStart - b.firstStart || a.worker.localeCompare(b.worker)),
    medianMs: med,
    stragglers,
    straggling,
    ...(races.length
      ? {
          backups: {
            launched: races.length,
            won: races.filter((r) => r.backupWon).length,
            lostSeconds: Math.round(lostMs) / 1000,
          },
        }
      : {}),
    throughput,
    taskSeconds: seconds,
    cost: {
      currency: "USD",
      pricesAsOf: PRICES.asOf,
      ...(input.instanceType !== undefined ? { instanceType: input.instanceType, capacity } : {}),
      fleetPriced: seconds.fleet === 0 || perVcpu !== undefined,
      fleet: round(fleet),
      lambda: round(lambda),
      s3Requests: round(s3Requests),
      sqs: round(sqs),
      ...(races.length ? { lostCopies: round(lostUsd) } : {}),
      total: round(fleet + lambda + s3Requests + sqs + lostUsd),
      basis:
        `the tasks' own time, not idle or scaling instance time: task-seconds × the ${input.instanceType ?? "(none)"} ${capacity} ` +
        `price per vCPU (a task holds one vCPU${capacity === "spot" ? "; spot at the table's typical share of on-demand" : ""}); ` +
        `inline tasks × ${SPLITTER_GB.toFixed(3)} GB of Lambda on ARM; ` +
        `per task a GET per object it read (a reduce task: per shuffle segment; a merge task's parts are counted as their tasks' below), ` +
        `${S3_GETS_PER_TASK} GET and ${S3_PUTS_PER_TASK} PUT of its part, ` +
        `and on the fleet ${SQS_PER_TASK} SQS requests; ` +
        (input.partitions !== undefined
          ? "the shuffle's PUT of each map task's output, and per reduce task its plan's PUT and GET and its output part's PUT " +
            (sized
              ? `(past ${DEFAULTS.multipartThreshold / 2 ** 20} MiB a multipart upload's requests, as big as its task's bytes read); `
              : "(one each: their sizes are not recorded); ")
          : "") +
        (races.length
          ? "a backup race's losing copy as one more run, from its start (the original) or its queueing (the backup) to the winner's end; "
          : "") +
        `${PRICES.region} list prices as of ${PRICES.asOf}`,
    },
    ...(histogram?.success ? { chart: { kind: "histogram" as const, ...histogram.data } } : {}),
  };
};
