/**
 * The splitter role: validate, plan chunks from sizes alone, write manifest and status,
 * enqueue one task per chunk (waking an idle fleet first). O(1) requests per input plus one
 * message per chunk. A small job is mapped here instead, while time allows (inline.ts).
 * A repeated trigger (same job id) finds the earlier start's manifest and queues only what it did not.
 */
import { DEFAULTS } from "../constants.js";
import type { HiddenFiles } from "../hiddenNames.js";
import { enqueuedKey, manifestKey, parsePartKey, partsPrefix, type OutputKeys } from "../keys.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../errors.js";
import { Manifest, type InputObject, type MapTask, type TaskJob } from "../job/manifest.js";
import { planChunks, planOptionsOf } from "../job/planner.js";
import { defaultPartitions, mostPartitions, type Format, type JobSpec } from "../job/spec.js";
import { opDigest, type OpRegistry } from "../ops/registry.js";
import { isShuffled, type AnyOp } from "../ops/types.js";
import { nowOf, type SplitDeps } from "./deps.js";
import { exists, readJsonIfExists, writeJson } from "./blobJson.js";
import { reduceJob } from "./reduce.js";
import { keepAwakeForLease } from "./wake.js";
import { withCodecs } from "./inputCodecs.js";
import { enqueueTasks } from "./enqueue.js";
import { inLaneOf } from "./lanes.js";
import { INPUTS_PER_PIECE, inputFields, inputsOf, writeInputPieces } from "./manifestInputs.js";
import { terminalStatus, writeProgress } from "./status.js";
import { tooManyInputs } from "./resolveInputs.js";
import { countDiedAttempt, inlineBegun, mapInline, runsInline, type InlineOptions } from "./inline.js";
import { logFieldsOf } from "./logFields.js";
import { estimatedPlan, estimateJob } from "../report/estimate.js";
import { usdOver } from "../report/prices.js";
import { unpricedCeiling } from "./costCeiling.js";
import { uncompressedName } from "../records/codecs.js";
import { refuseParamsOfOtherFormats } from "../ops/formatReaders.js";
import { isTaskOp } from "../ops/defineTask.js";
import type { Preference } from "../job/spec.js";

export interface JobPlan {
  readonly jobId: string;
  readonly job: TaskJob;
  readonly inputs: readonly InputObject[];
  /** The spec's inputs as given (prefixes, manifest lists), for a job of more inputs than a manifest lists itself. */
  readonly given?: readonly string[];
  /** What the inputs' folders or prefixes left out (hiddenNames.ts). */
  readonly hidden?: HiddenFiles;
  readonly chunkSize: number;
  readonly output: OutputKeys;
  readonly trigger: string;
  /** When the object that triggered the job was created. */
  readonly triggeredAt?: string;
  readonly deadlineSeconds: number;
  /** Map a small job here rather than on the fleet (the splitter's function sets it). */
  readonly inline?: InlineOptions;
  /** The job's ceiling: refused with COST_LIMIT when its estimate is over it. */
  readonly maxCostUsd?: number;
  /** The spec's merge fan-in on the fleet (default DEFAULTS.mergeFanIn, for an op that merges in a tree). */
  readonly fanIn?: number;
  /** How far an idle fleet is woken for the job (default: fastest). */
  readonly prefer?: Preference;
}

/**
 * Whether the fleet may merge an op's parts in a tree (mergeTree.ts): grouping changes no bit
 * of an order-free op's answer, but may change a float sum's rounding in another's.
 */
const mergesInTree = (op: AnyOp): boolean => op.orderFreeMerge === true && !isShuffled(op);

const FORMAT_OF_EXTENSION: Readonly<Record<string, Format>> = {
  ".csv": "csv",
  ".tsv": "csv",
  ".tab": "csv",
  ".jsonl": "jsonl",
  ".ndjson": "jsonl",
};

/** The format a name's extension names, under any compression extension. */
const formatOfName = (name: string): Format | undefined =>
  FORMAT_OF_EXTENSION[/\.[^./]+$/.exec(uncompressedName(name))?.[0]?.toLowerCase() ?? ""];

/** The names a job's format is inferred from: those of its inputs that hold bytes, else all of them. */
export const namesForFormat = (inputs: readonly { readonly name: string; readonly size: number }[]): string[] => {
  const holding = inputs.filter((i) => i.size > 0);
  return (holding.length > 0 ? holding : inputs).map((i) => i.name);
};

/**
 * The format named by the inputs' common extension (`.csv`, `.jsonl.gz`), if the op reads it.
 * Inputs that disagree, one naming a format the op reads, are refused: read all as lines, a
 * CSV's header and quoted newlines would count as records.
 */
const inferFormat = (names: readonly string[], formats: readonly Format[]): Format | undefined => {
  const named = names.map((name) => ({ name, format: formatOfName(name) }));
  const read = named.find((n) => n.format !== undefined && formats.includes(n.format));
  if (!read) return undefined;
  const other = named.find((n) => n.format !== read.format);
  if (other)
    throw new CloudmillError(
      ErrorCode.INVALID_SPEC,
      `the inputs name different formats: ${read.name} is ${read.format}, ${other.name} ` +
        `${other.format ? `is ${other.format}` : "names none"}: set one (--format), or name only the data files ` +
        "(a folder's README is read too: only names starting with . or _ are not), or list them in a manifest",
      { field: "format" },
    );
  return read.format;
};

/**
 * Checks op, format and params against the registry; returns what every task needs.
 * Without a format, inputs all ending in .csv or .jsonl are read as such when the op can.
 * `inputNames`: namesForFormat's (an empty `_SUCCESS` marker beside a folder's `part-*.csv`
 * holds no record in any format, and must not make them lines).
 */
export const taskJobOf = (spec: JobSpec, registry: OpRegistry, inputNames: readonly string[] = []): TaskJob => {
  const op = registry.get(spec.op);
  if (spec.opDigest !== undefined && spec.opDigest !== opDigest(op))
    throw new CloudmillError(
      ErrorCode.OP_MISMATCH,
      `op ${op.name}: the job was submitted for code ${spec.opDigest}, but this pipeline runs ${opDigest(op)}: ` +
        "redeploy the lab's ops, or submit with the code deployed",
      { field: "opDigest" },
    );
  const format = spec.format ?? inferFormat(inputNames, op.formats) ?? op.formats[0]!;
  if (!op.formats.includes(format)) {
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `op ${op.name} does not read ${format} (it reads: ${op.formats.join(", ")})`, {
      field: "format",
    });
  }
  op.parseParams(spec.params); // fail now, not in every task
  // A task's params are all its own (the engine reads its items with none).
  if (!isTaskOp(op)) refuseParamsOfOtherFormats(spec.params, format, op.digest !== undefined);
  if (spec.partitions !== undefined && !isShuffled(op))
    throw new CloudmillError(ErrorCode.INVALID_SPEC, `partitions: op ${op.name} is not keyed (it has one result, not parts)`, {
      field: "partitions",
    });
  if (spec.fanIn !== undefined && !mergesInTree(op))
    throw new CloudmillError(
      ErrorCode.INVALID_SPEC,
      isShuffled(op)
        ? `fanIn: op ${op.name} is keyed (its reduce tasks merge by partition)`
        : `fanIn: op ${op.name} merges its parts in chunk order, one at a time (it does not set orderFree)`,
      { field: "fanIn" },
    );
  // Built-ins carry theirs too (`builtin-<version>`), which names the release that started the job.
  return {
    op: op.name,
    opDigest: opDigest(op),
    params: spec.params,
    format,
    onBadRecord: spec.onBadRecord,
    maxAttempts: spec.maxAttempts,
    ...(spec.taskTimeoutSeconds !== undefined ? { taskTimeoutSeconds: spec.taskTimeoutSeconds } : {}),
    ...(spec.maxRecordBytes !== undefined ? { maxRecordBytes: spec.maxRecordBytes } : {}),
    ...(spec.taskMemoryMiB !== undefined ? { taskMemoryMiB: spec.taskMemoryMiB } : {}),
    ...(spec.backupAfterSeconds !== undefined ? { backupAfterSeconds: spec.backupAfterSeconds } : {}),
    ...(spec.maxCostUsd !== undefined ? { maxCostUsd: spec.maxCostUsd } : {}),
    ...(isShuffled(op) && spec.partitions !== undefined ? { partitions: spec.partitions } : {}),
  };
};

/**
 * A keyed job's partitions: as asked, or one per DEFAULTS.bytesPerPartition of input, but no
 * more than keep chunks × partitions (the shuffle segments the reducer gathers into plans)
 * within DEFAULTS.maxShuffleSegments: past that, fewer and larger partitions (reduce tasks spill).
 */
const withPartitions = (job: TaskJob, registry: OpRegistry, inputs: readonly InputObject[], chunks: number): TaskJob => {
  if (!isShuffled(registry.get(job.op))) return job;
  const most = mostPartitions(chunks);
  if (job.partitions !== undefined) {
    if (job.partitions <= most) return job;
    throw new CloudmillError(
      ErrorCode.INVALID_SPEC,
      `partitions: ${job.partitions} partitions of ${chunks} chunks is more shuffle segments than ${DEFAULTS.maxShuffleSegments}; ` +
        `ask for at most ${most} (or larger chunks)`,
      { field: "partitions" },
    );
  }
  return {
    ...job,
    partitions: defaultPartitions(
      inputs.reduce((n, i) => n + i.size, 0),
      chunks,
    ),
  };
};

export interface StartedJob {
  readonly manifest: Manifest;
  /** True when this trigger had already started the job: nothing was enqueued. */
  readonly duplicate: boolean;
}

export const startJob = async (deps: SplitDeps, given: JobPlan): Promise<StartedJob> => {
  const earlier = await earlierStart(deps, given.jobId);
  if (earlier) return earlier;
  const maxInputs = deps.maxInputs ?? DEFAULTS.maxInputs;
  if (given.inputs.length > maxInputs) throw tooManyInputs(maxInputs, given.given?.join(", ") ?? `${given.inputs.length} inputs`);
  const raw = given.job.format === "blob";
  const plan = { ...given, inputs: await withCodecs(deps, given.inputs, given.chunkSize, { raw }) };
  const plannedChunks = planChunks(plan.inputs, plan.chunkSize, planOptionsOf(given.job.format));
  if (plan.maxCostUsd !== undefined) refuseOverCeiling(inLaneOf(deps, plan), plan, plan.maxCostUsd, plannedChunks.total);
  const now = nowOf(deps);
  const deadline = now + plan.deadlineSeconds * 1000;
  // Every task carries the deadline, so a worker that meets a task of an overdue job fails the job.
  const job: TaskJob = { ...withPartitions(plan.job, deps.registry, plan.inputs, plannedChunks.total), deadline };
  const perPiece = deps.inputsPerPiece ?? INPUTS_PER_PIECE;
  const listed = inputFields(plan.inputs, perPiece);
  const manifest: Manifest = Manifest.parse({
    v: 1,
    jobId: plan.jobId,
    job,
    ...listed,
    ...(listed.inputPieces !== undefined && plan.given ? { given: plan.given } : {}),
    ...(plan.hidden?.count ? { hidden: { count: plan.hidden.count, first: plan.hidden.first } } : {}),
    chunkSize: plan.chunkSize,
    chunks: plannedChunks.total,
    output: plan.output,
    createdAt: new Date(now).toISOString(),
    deadline,
    trigger: plan.trigger,
    ...(plan.triggeredAt !== undefined ? { triggeredAt: plan.triggeredAt } : {}),
    // Fixed when the job starts: its merge groups must not change under it.
    ...(mergesInTree(deps.registry.get(job.op)) ? { fanIn: plan.fanIn ?? DEFAULTS.mergeFanIn } : {}),
    ...(plan.prefer !== undefined ? { prefer: plan.prefer } : {}),
  });
  const { jobId } = plan;
  const log = deps.log.child({ jobId });
  // The pieces first: a manifest never counts a piece not yet written.
  await writeInputPieces(deps.output, manifest, plan.inputs, perPiece);
  await writeJson(deps.output, manifestKey(jobId), manifest);
  // Through writeProgress: a job cancelled before this trigger ran stays cancelled.
  await writeProgress(deps, manifest, 0);
  log.info("job started", { op: plan.job.op, inputs: plan.inputs.length, chunks: manifest.chunks, chunkSize: plan.chunkSize });

  const tasks = tasksOfPlan(manifest, plannedChunks);
  if (plan.inline && manifest.chunks > 0 && runsInline(deps.registry.get(job.op), plan.inputs, plan.inline.maxBytes)) {
    const run = await mapInline(
      deps,
      tasks(() => false),
      { ...plan.inline, progress: (mapped) => writeProgress(deps, manifest, mapped) },
    );
    log.info("mapped inline", { mapped: run.mapped, of: manifest.chunks, ...(run.ended ? { ended: true } : {}) });
    // A job that ended (a chunk failed it, or it was cancelled) needs no fleet.
    if (run.ended)
      await queueRest(
        deps,
        manifest,
        tasks(() => true),
        0,
        run.mapped,
      );
    else
      await queueRest(
        deps,
        manifest,
        tasks((i) => i < run.mapped),
        manifest.chunks - run.mapped,
        run.mapped,
      );
  } else
    await queueRest(
      deps,
      manifest,
      tasks(() => false),
      manifest.chunks,
      0,
    );
  return { manifest, duplicate: false };
};

type PlannedChunks = ReturnType<typeof planChunks>;

/** The job's map tasks in chunk order, but for those `skip` names. */
const tasksOfPlan = (manifest: Manifest, planned: PlannedChunks) =>
  function* (skip: (index: number) => boolean): Generator<MapTask> {
    for (const chunk of planned.chunks()) if (!skip(chunk.index)) yield { v: 1, jobId: manifest.jobId, chunk, job: manifest.job };
  };

/**
 * A start an earlier invocation of this trigger made (Lambda retries an event whose invocation
 * failed, and S3 may deliver one twice): undefined when there was none. Once the earlier one
 * queued every task (`enqueued.json`), there is nothing to do. If it died after writing the
 * manifest, its plan stands and this one queues the chunks that have no part yet: planning
 * again could list other objects under a prefix, or read a spec rewritten since, and tasks of
 * two plans would map the same chunk indexes over different ranges.
 */
export const earlierStart = async (deps: SplitDeps, jobId: string): Promise<StartedJob | undefined> => {
  const log = deps.log.child({ jobId });
  const manifest = await readJsonIfExists(deps.output, manifestKey(jobId), Manifest);
  if (!manifest) return undefined;
  if (await exists(deps.output, enqueuedKey(jobId))) {
    log.info("duplicate trigger: job already started", { trigger: manifest.trigger });
    return { manifest, duplicate: true };
  }
  // Map parts only: a keyed job's reduce parts follow them.
  const done = new Set([...(await mappedChunks(deps, jobId))].filter((i) => i < manifest.chunks));
  const ended = await terminalStatus(deps, manifest, done.size);
  const begun = await inlineBegun(deps, jobId);
  const tasks = tasksOfPlan(
    manifest,
    planChunks(await inputsOf(deps.output, manifest), manifest.chunkSize, planOptionsOf(manifest.job.format)),
  );
  // An invocation that began mapping inline and died (out of time) counts as an attempt of the chunk it was on.
  if (begun && !ended) {
    const reached = tasks((i) => done.has(i)).next();
    if (!reached.done) await countDiedAttempt(deps, reached.value);
  }
  log.info("an earlier invocation started the job and did not queue all of it", {
    mapped: done.size,
    of: manifest.chunks,
    ...(ended ? { ended: ended.state } : {}),
  });
  // A job that ended meanwhile (cancelled, failed) needs no fleet: it is only marked queued.
  if (ended)
    await queueRest(
      deps,
      manifest,
      tasks(() => true),
      0,
      0,
      false,
    );
  else {
    await writeProgress(deps, manifest, done.size);
    // Only chunks this splitter mapped count as mapped inline (enqueued.json's `inline`): a merge
    // tree stays on for chunks the fleet mapped.
    const rest = tasks((i) => done.has(i));
    await queueRest(deps, manifest, rest, manifest.chunks - done.size, begun ? done.size : 0, done.size === manifest.chunks);
  }
  return { manifest, duplicate: true };
};

/**
 * Queues a started job's `pending` tasks (`left` of them; `mapped` chunks were mapped here),
 * waking the fleet first, then marks the job queued. A job with no chunks (only empty inputs)
 * is done already; one mapped whole (`reduce`; by default, here) is reduced here too, at once
 * (the reducer, woken later as every job's is, finds it done or writes the same result).
 */
const queueRest = async (
  deps: SplitDeps,
  manifest: Manifest,
  pending: Iterable<MapTask>,
  left: number,
  mapped: number,
  reduce = mapped === manifest.chunks,
): Promise<void> => {
  const log = deps.log.child({ jobId: manifest.jobId });
  if (left > 0 && deps.fleet) {
    // A fleet that could not be woken still scales on its backlog: the job waits, it does not fail.
    await deps.fleet.wake(left, manifest.prefer).then(
      (asked) => asked > 0 && log.info("woke the fleet", { workers: asked, tasks: left }),
      (err: unknown) => log.warn("could not wake the fleet; it scales on its backlog", logFieldsOf(toCloudmillError(err))),
    );
  }
  // Workers' notices wake the reducer as parts are written; these wake-ups find a part none named
  // (a worker of an older release, during a deploy), and end a job past its deadline (wake.ts).
  // A job mapped whole here gets one too: its reduce below may fail, or its invocation end, and
  // a retried invocation finds the job queued; nothing else would ever reduce it.
  if (left > 0 || reduce) await keepAwakeForLease(deps, manifest.jobId);
  await enqueueTasks(inLaneOf(deps, manifest).queue, pending);
  await writeJson(deps.output, enqueuedKey(manifest.jobId), {
    at: new Date(nowOf(deps)).toISOString(),
    chunks: manifest.chunks,
    ...(mapped > 0 ? { inline: mapped } : {}),
  });
  if (reduce) await reduceJob(deps, manifest.jobId);
};

/**
 * Refuses a job whose estimate is over its ceiling, before anything is written or queued. The
 * splitter knows sizes, not speed: it prices the op's default rate, as `cloudmill estimate`
 * does without a sample, on the fleet's instance type (the stack's first, on demand or spot as it runs).
 */
const refuseOverCeiling = (deps: SplitDeps, plan: JobPlan, ceiling: number, chunks: number): void => {
  const instanceType = deps.instanceType ?? DEFAULTS.instanceType;
  const unpriced = unpricedCeiling(deps);
  if (unpriced) throw unpriced;
  const estimate = estimateJob({
    op: plan.job.op,
    ...estimatedPlan(deps.registry.get(plan.job.op), plan.inputs, plan.chunkSize, plan.inline?.maxBytes ?? 0),
    chunkSize: plan.chunkSize,
    chunks,
    ...(plan.job.partitions !== undefined ? { partitions: plan.job.partitions } : {}),
    instanceType,
    ...(deps.capacity !== undefined ? { capacity: deps.capacity } : {}),
    workers: 1,
    vcpusPerWorker: 1,
    maxWorkers: 1,
  });
  if (estimate.cost.total > ceiling) {
    const c = estimate.cost;
    throw new CloudmillError(
      ErrorCode.COST_LIMIT,
      `estimated $${usdOver(c.total, ceiling)} is over maxCostUsd $${ceiling} (${estimate.chunks} chunks, ` +
        `${(estimate.bytes / 1e6).toFixed(1)} MB at ${estimate.rate.mbPerSecondPerVcpu} MB/s per vCPU: $${c.instances.toFixed(6)} of ` +
        `${instanceType} ${c.capacity}, $${(c.lambda + c.s3Requests + c.sqs + c.logs).toFixed(6)} of Lambda, requests and logs)`,
      { field: "maxCostUsd" },
    );
  }
};

/** Chunks of a job that have a part. */
const mappedChunks = async (deps: SplitDeps, jobId: string): Promise<Set<number>> => {
  const done = new Set<number>();
  for await (const info of deps.output.list(partsPrefix(jobId))) {
    const part = parsePartKey(info.key);
    if (part?.jobId === jobId) done.add(part.index);
  }
  return done;
};

export const deadlineSecondsOf = (spec: JobSpec, fallback: number = DEFAULTS.jobDeadlineSeconds): number =>
  spec.deadlineSeconds ?? fallback;
