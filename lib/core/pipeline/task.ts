/**
 * The map role: one chunk in, one part out. The part's key is a pure function of
 * (job id, chunk index), so a repeated task rewrites identical bytes.
 */
import { MAX_TIMER_MS } from "../sleep.js";
import { withArchiveSpan } from "./archiveSpan.js";
import { backupWonKey, cancelKey, chunkErrorKey, mergedKey, mergeErrorKey, partKey, pastEndKey } from "../keys.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../errors.js";
import {
  chunkBytes,
  chunkParts,
  isMapTask,
  isMergeTask,
  isReduceTask,
  taskIndex,
  type Chunk,
  type InputObject,
  type MapTask,
  type RanOn,
  type TaskMessage,
  type TaskRun,
  type TaskStart,
} from "../job/manifest.js";
import { appendAll } from "../appendAll.js";
import { mapInOrder } from "../mapInOrder.js";
import type { MapContext } from "../ops/types.js";
import { csvOptions, type FormatOptions } from "../ops/formatReaders.js";
import type { AnyOp } from "../ops/types.js";
import type { RemoteMapped } from "./mappers.js";
import { fleetLaneMapper, INLINE_MAP_BYTES } from "./laneMapper.js";
import { isTaskOp } from "../ops/defineTask.js";
import { BUILTIN_DIGEST_PREFIX, isBuiltinOp, opDigest } from "../ops/registry.js";
import { ownedRecordLanes, RecordCutter, type RangeBytes, type RecordBlock, type RecordLimits } from "../records/alignedBlocks.js";
import { DEFAULTS } from "../constants.js";
import type { Codec } from "../records/codecs.js";
import { inputRangeBytes, type InputRange } from "../records/inputBytes.js";
import { CsvRecordEnds, lineEnds } from "../records/recordEnds.js";
import { recordLimitsOf } from "./recordLimits.js";
import { compressedInputError, SIGNATURE_BYTES } from "../records/compressed.js";
import type { Params } from "../job/spec.js";
import { decodeUtf16Block, Utf16RecordEnds, utf16Of, type Utf16 } from "../records/utf16.js";
import type { RecordEnds } from "../records/recordEnds.js";
import { readCsvInput } from "./csvInput.js";
import { nowOf, type PipelineDeps } from "./deps.js";
import { exists, readBytes, writeJson } from "./blobJson.js";
import { failedInRun } from "./status.js";
import { keptErrorOf, type Part, type Reading } from "./part.js";
import { logFieldsOf } from "./logFields.js";
import { readItems, runItems, type ChunkItem } from "./items.js";
import { reducePartition, shufflePart } from "./reduceTask.js";
import { sortedRunPart } from "./sortStage.js";
import { mergeSortedRuns, type SortedRun, type SortFormat } from "../shuffle/sortRun.js";
import { mergeKeyedPartials } from "../ops/keyedOp.js";
import type { KeyedPartial } from "../shuffle/shuffleRun.js";
import type { MergeTask, ReduceTask, TaskJob } from "../job/manifest.js";
import { runMergeTask, type MergeOptions } from "./mergeTask.js";

export type TaskOutcome =
  | { readonly kind: "done"; readonly bytes: number; readonly skipped: number; readonly partial: unknown }
  | { readonly kind: "duplicate" }
  | { readonly kind: "job-ended" };

/** Where a chunk is, for error messages: `data.txt (bytes 0-16777216)`. */
export const chunkContext = (jobId: string, chunk: Chunk) => ({
  jobId,
  chunk: chunk.index,
  input: chunk.input.name,
  range: [chunk.start, chunk.end] as const,
});

/**
 * An error with its chunk's whereabouts. An input the error names itself is kept: a zip entry's
 * local header is the archive's, and its offset is the archive's, not a byte of the entry.
 */
const inChunk = (err: CloudmillError, jobId: string, chunk: Chunk): CloudmillError => {
  const where = chunkContext(jobId, chunk);
  return err.withContext(err.context.input === undefined ? where : { ...where, input: err.context.input });
};

/**
 * Errors that would recur on every attempt: retrying them only delays the failure. Not
 * OP_MISMATCH: another worker may still run the job's code, and after the last attempt the
 * dead-letter handler fails the job with it.
 */
export const isDeterministic = (err: CloudmillError): boolean =>
  err.code === ErrorCode.DEADLINE ||
  err.code === ErrorCode.BAD_RECORD ||
  err.code === ErrorCode.INPUT_CHANGED ||
  err.code === ErrorCode.INPUT_NOT_FOUND ||
  err.code === ErrorCode.INVALID_SPEC ||
  err.code === ErrorCode.UNKNOWN_OP ||
  err.code === ErrorCode.OP_FAILED ||
  err.code === ErrorCode.ITEM_FAILED ||
  err.code === ErrorCode.ITEM_TIMEOUT ||
  err.code === ErrorCode.ITEM_OUT_OF_MEMORY;

/** A job's deadline passed: it is failed rather than left running with no end. */
export const deadlineError = (jobId: string, deadline: number): CloudmillError =>
  new CloudmillError(ErrorCode.DEADLINE, `job did not finish before its deadline (${new Date(deadline).toISOString()})`, { jobId });

export interface RunTaskOptions {
  readonly signal?: AbortSignal;
  /**
   * false: no part is written, and the caller alone holds the chunk's partial (a local task
   * thread merging it into its running total), so it must map the chunk again if it loses it.
   */
  readonly writePart?: boolean;
  /**
   * false: run the op without comparing its code digest with the job's. A local run loads the
   * same module files into every thread at once, so only a fleet's long-lived workers can hold
   * another version (and a test runner's module transforms change function text). Default true.
   */
  readonly checkOpDigest?: boolean;
  /** Aborted when the worker starts to stop (SIGTERM): a task's items see it as ctx.signal. */
  readonly drain?: AbortSignal;
  /** Where this runs: a map task's part then records it, when the task started and how long it took. */
  readonly ranOn?: RanOn;
  /** Which process runs it (`<host>/<pid>`), recorded with `ranOn`. */
  readonly worker?: string;
  /**
   * True when another copy of the chunk may have written its part (this one has run long enough
   * to get a backup): the part is then written only if absent, so the first copy's stands.
   * A backup itself always checks.
   */
  readonly mayHaveBackup?: () => boolean;
  /**
   * True for a queue message's first delivery: no earlier copy can have written the part (a
   * rare duplicate delivery maps the chunk again and writes the same part), so the HEAD that
   * skips a done chunk is spared. A backup, and any task of a keyed job, still looks.
   */
  readonly firstDelivery?: boolean;
  /**
   * Whether the task's job (this run of it) has ended; by default two HEADs per task. A worker
   * caches its answer for 5 s, and also counts a run a resume superseded as ended: it is asked
   * again before a map task writes its part, so a copy still mapping once the worker has seen the
   * resume writes nothing.
   */
  readonly jobEnded?: (task: TaskMessage) => Promise<boolean>;
}

/** Whether run `run` of a job has ended in failure or cancellation: its markers. */
export const jobEndedMarkers = async (output: PipelineDeps["output"], jobId: string, run: number): Promise<boolean> =>
  (await failedInRun(output, jobId, run)) || (await exists(output, cancelKey(jobId)));

export const runTask = async (deps: PipelineDeps, task: TaskMessage, options: RunTaskOptions = {}): Promise<TaskOutcome> => {
  const { signal, writePart = true, checkOpDigest = true, drain, ranOn, worker, mayHaveBackup, firstDelivery = false } = options;
  const backup = !isReduceTask(task) && task.backup === true;
  const { jobId, job } = task;
  const ran: TaskStart | undefined = ranOn ? { on: ranOn, at: new Date(nowOf(deps)).toISOString() } : undefined;
  const done = (start: TaskStart, bytes: number, objects: number): TaskRun => ({
    ...start,
    ms: Math.max(0, nowOf(deps) - Date.parse(start.at)),
    ...(worker !== undefined ? { worker } : {}),
    bytes,
    ...(objects > 1 ? { objects } : {}),
    ...(backup ? { backup: true as const } : {}),
  });
  const output = deps.output;
  const key = taskPartKey(task);
  const redo = isMapTask(task) && task.redo === true;
  // A keyed job's tasks and merge tasks always look: two reducers may both enqueue its reduce or
  // merge tasks, and a map task's shuffle objects may already be named in reduce plans.
  const looks = !firstDelivery || backup || !isMapTask(task) || job.partitions !== undefined;
  if (!redo && looks && (await exists(output, key))) return { kind: "duplicate" };
  if (await (options.jobEnded ?? ((t: TaskMessage) => jobEndedMarkers(output, t.jobId, t.job.generation ?? 0)))(task))
    return { kind: "job-ended" };
  const deadline = job.deadline;
  const map = (s: AbortSignal | undefined): Promise<TaskOutcome> =>
    isReduceTask(task)
      ? reduceTaskOutcome(deps, task, checkOpDigest, ran && ((b: number, o: number) => done(ran, b, o)), s)
      : isMergeTask(task)
        ? mergeTaskOutcome(deps, task, checkOpDigest, {
            ...(ran ? { ran: () => done(ran, 0, task.merge.to - task.merge.from) } : {}),
            ...(mayHaveBackup ? { firstCopyWins: mayHaveBackup } : {}),
            ...(s ? { signal: s } : {}),
          })
        : mapChunk(
            deps,
            task,
            {
              writePart,
              checkOpDigest,
              ...(drain ? { drain } : {}),
              ...(ran ? { ran: (b, o) => done(ran, b, o) } : {}),
              // A redo replaces the part it finds: the part there is the one to replace.
              firstCopyWins: () => !redo && (backup || (mayHaveBackup?.() ?? false)),
              ...(options.jobEnded ? { ended: () => options.jobEnded!(task) } : {}),
            },
            s,
          );
  if (deadline === undefined) return map(signal);
  const left = deadline - nowOf(deps);
  if (left <= 0) throw deadlineError(jobId, deadline);
  if (left > MAX_TIMER_MS) return map(signal);

  // A chunk still being read when the deadline passes is abandoned, and the job failed.
  const expired = new AbortController();
  const timer = setTimeout(() => expired.abort(deadlineError(jobId, deadline)), left);
  const forward = (): void => expired.abort(signal!.reason);
  signal?.addEventListener("abort", forward, { once: true });
  if (signal?.aborted) forward();
  try {
    return await map(expired.signal);
  } catch (err) {
    const reason: unknown = expired.signal.reason;
    if (expired.signal.aborted && !signal?.aborted && reason instanceof CloudmillError) throw reason;
    throw err;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", forward);
  }
};

/**
 * A task of a job started with other code of its lab's op is refused: a job runs on one version
 * of it. A built-in's digest names the release that started the job (shown in its status) and is
 * not held against a worker of another: a refused task takes an attempt, so during a rolling
 * deploy every job in flight would fail, and a retry after an upgrade could never run.
 */
const refuseOtherOpCode = (job: TaskJob, op: AnyOp): void => {
  const digest = opDigest(op);
  if (isBuiltinOp(op) && job.opDigest?.startsWith(BUILTIN_DIGEST_PREFIX)) return;
  if (job.opDigest !== undefined && job.opDigest !== digest) {
    throw new CloudmillError(
      ErrorCode.OP_MISMATCH,
      `op ${job.op}: this worker runs code ${digest}, the job was started with ${job.opDigest}; ` +
        "a job runs on one version of its op: start it again once every worker runs the new code",
    );
  }
};

/** The key of the part a task writes: its chunk's or partition's, or (a merge task) its merged part's. */
export const taskPartKey = (task: TaskMessage): string =>
  isMergeTask(task)
    ? mergedKey(task.jobId, task.job.generation ?? 0, task.merge.level, task.merge.group)
    : partKey(task.jobId, taskIndex(task));

/** Where a task's latest error is recorded. */
export const taskErrorKey = (task: TaskMessage): string =>
  isMergeTask(task)
    ? mergeErrorKey(task.jobId, task.job.generation ?? 0, task.merge.level, task.merge.group)
    : chunkErrorKey(task.jobId, taskIndex(task));

/** A merge task of a job's merge tree (mergeTask.ts). */
const mergeTaskOutcome = async (
  deps: PipelineDeps,
  task: MergeTask,
  checkOpDigest: boolean,
  options: MergeOptions,
): Promise<TaskOutcome> => {
  try {
    const op = deps.registry.get(task.job.op);
    // Parts hold partials in their op's shape: another version of the op may merge them otherwise.
    if (checkOpDigest) refuseOtherOpCode(task.job, op);
    await runMergeTask(deps, task, op, options);
    return { kind: "done", bytes: 0, skipped: 0, partial: null };
  } catch (err) {
    throw toCloudmillError(err).withContext({ jobId: task.jobId });
  }
};

/** Objects of a packed chunk read at once. */
const PACK_READS = 4;

/** A reduce task of a keyed job (reduceTask.ts); its errors name the job and partition. */
const reduceTaskOutcome = async (
  deps: PipelineDeps,
  task: ReduceTask,
  checkOpDigest: boolean,
  ran: ((bytes: number, objects: number) => TaskRun) | undefined,
  signal?: AbortSignal,
): Promise<TaskOutcome> => {
  try {
    // The map stage wrote values in its op's shape: another version of the op may read them otherwise.
    if (checkOpDigest) refuseOtherOpCode(task.job, deps.registry.get(task.job.op));
    const { bytes, partial } = await reducePartition(deps, task, { ...(signal ? { signal } : {}), ...(ran ? { ran } : {}) });
    return { kind: "done", bytes, skipped: 0, partial };
  } catch (err) {
    throw toCloudmillError(err).withContext({ jobId: task.jobId, partition: task.reduce.partition });
  }
};

const mapChunk = async (
  deps: PipelineDeps,
  task: MapTask,
  options: {
    readonly writePart: boolean;
    readonly checkOpDigest: boolean;
    readonly drain?: AbortSignal;
    /** The run to record in the part, given the bytes and objects read. */
    readonly ran?: (bytes: number, objects: number) => TaskRun;
    /** True: another copy may have written the part; it is then left as it is. */
    readonly firstCopyWins?: () => boolean;
    /** Whether the task's run has ended since it began (asked before its part is written). */
    readonly ended?: () => Promise<boolean>;
  },
  signal?: AbortSignal,
): Promise<TaskOutcome> => {
  const { writePart, checkOpDigest, drain, ran, firstCopyWins, ended } = options;
  const { jobId, chunk, job } = task;
  const key = partKey(jobId, chunk.index);
  /** A packed chunk's error names the object it is in; a range's gets the chunk's context below. */
  const inObject = async <T>(sub: Chunk, fn: () => Promise<T>): Promise<T> => {
    if (!chunk.more) return fn();
    try {
      return await fn();
    } catch (err) {
      throw inChunk(toCloudmillError(err), jobId, sub);
    }
  };
  try {
    const op = deps.registry.get(job.op);
    if (checkOpDigest) refuseOtherOpCode(job, op);
    const objects = chunkParts(chunk);
    const reads = await withArchiveSpan(deps, objects, signal);
    let part: Part;
    if (isTaskOp(op)) {
      let skipped = 0;
      let firstSkipped: CloudmillError | undefined;
      const items: ChunkItem[] = [];
      for (const sub of objects) {
        const ctx: MapContext = {
          inputIndex: sub.inputIndex,
          inputName: sub.input.name,
          format: job.format,
          bad(error) {
            if (job.onBadRecord === "fail") throw error;
            skipped++;
            firstSkipped ??= inChunk(error, jobId, sub);
          },
        };
        appendAll(items, await inObject(sub, () => readItems(reads, { ...task, chunk: sub }, ctx, signal)));
      }
      const partial = await runItems(deps, task, op, items, { signal, drain });
      part = { v: 1, jobId, index: chunk.index, partial, skipped };
      if (firstSkipped) deps.log.info("bad records skipped", { ...logFieldsOf(firstSkipped), skipped });
    } else {
      const parts = await mapInOrder(objects, PACK_READS, (sub) =>
        inObject(sub, () => mapObject(reads, { ...task, chunk: sub }, op, signal)),
      );
      part = parts.length === 1 ? parts[0]! : packedPart(task, op, parts);
    }
    // The other copy's part stands: this one writes nothing, not even its shuffle output.
    if (writePart && firstCopyWins?.() && (await exists(deps.output, key))) return { kind: "duplicate" };
    if (writePart && (await ended?.())) return { kind: "job-ended" };
    if (op.keyed) {
      const partitions = job.partitions;
      if (partitions === undefined)
        throw new CloudmillError(ErrorCode.INTERNAL, `op ${op.name} is keyed, but the task names no partitions`);
      part = await shufflePart(deps, jobId, partitions, part);
    } else if (op.sorts) part = await sortedRunPart(deps, jobId, part);
    if (writePart && task.backup)
      await writeJson(deps.output, backupWonKey(jobId, chunk.index, job.generation), { at: new Date(nowOf(deps)).toISOString() });
    if (writePart) await writeJson(deps.output, key, ran ? { ...part, ran: ran(chunkBytes(chunk), objects.length) } : part);
    return { kind: "done", bytes: chunkBytes(chunk), skipped: part.skipped, partial: part.partial };
  } catch (err) {
    const error = toCloudmillError(err);
    if (chunk.more) throw error.withContext({ jobId, chunk: chunk.index });
    // Garbled records past an input's first chunk may be compressed data: say so, not "bad number".
    const compressed = error.code === ErrorCode.BAD_RECORD && chunk.start > 0 ? await compressedInputOf(deps, task, signal) : undefined;
    throw inChunk(compressed ?? error, jobId, chunk);
  }
};

/** The part of one input's range (a packed chunk's object, read whole, or a chunk of its own). */
const mapObject = async (deps: PipelineDeps, task: MapTask, op: AnyOp, signal?: AbortSignal): Promise<Part> => {
  const { chunk, job } = task;
  const store = deps.inputStore(chunk.input.bucket);
  // The separator this input is read with (a .tsv's tab, or sniffed) goes to the op as its param.
  const csvInput = job.format === "csv" ? await readCsvInput(store, chunk.input, op, job.params, signal) : undefined;
  const rawParams = csvInput?.params ?? job.params;
  const params = op.parseParams(rawParams);
  const csv = csvInput ? csvOptions(params as FormatOptions) : undefined;
  const header = csvInput?.header;
  const mapCtx = { inputIndex: chunk.inputIndex, inputName: chunk.input.name, format: job.format, ...(header ? { header } : {}) };
  const encoding = csvInput?.encoding;
  const recordJob: RecordJob = {
    op,
    params,
    rawParams,
    mapCtx,
    multiline: csv?.multiline === true,
    separator: csv?.separator ?? ",",
    ...(encoding ? { encoding } : {}),
    // A blob is its bytes as stored: a .gz image is checksummed, not decoded.
    ...(csvInput ? { codec: csvInput.codec ?? null } : job.format === "blob" ? { codec: null } : {}),
  };
  const part = await mapRecords(deps, task, recordJob, signal);
  return csvInput?.sniffed !== undefined && chunk.start === 0
    ? { ...part, sniffed: { input: chunk.input.name, separator: csvInput.sniffed } }
    : part;
};

/**
 * One part for a packed chunk: its objects' partials merged in input order (the reducer merges
 * parts the same way). Each object was read whole, from its first byte, so a CSV's quote state
 * starts afresh after it, as it does at the next input.
 */
const packedPart = (task: MapTask, op: AnyOp, parts: readonly Part[]): Part => {
  const params = op.parseParams(task.job.params);
  let partial: unknown;
  if (op.keyed)
    partial = mergeKeyedPartials(
      op,
      params,
      parts.map((p) => p.partial as KeyedPartial),
    );
  else if (op.sorts)
    partial = mergeSortedRuns(
      task.job.format as SortFormat,
      parts.map((p) => p.partial as SortedRun),
    );
  else {
    const merger = op.merger(params);
    for (const p of parts) merger.add(p.partial);
    partial = merger.value();
  }
  const sniffed = parts.flatMap((p) => (p.sniffed === undefined ? [] : [p.sniffed].flat()));
  return {
    v: 1,
    jobId: task.jobId,
    index: task.chunk.index,
    partial,
    skipped: parts.reduce((n, p) => n + p.skipped, 0),
    ...(parts.some((p) => p.quotes) ? { quotes: { first: true, odd: false } } : {}),
    ...(sniffed.length > 0 ? { sniffed } : {}),
  };
};

/** One reading of a chunk's records by the op: a mapper on this thread or on a mapper host's. */
interface Lane {
  readonly cutter: RecordCutter;
  /** What the reading does with a record too long to read (fail, or skip it). */
  readonly limits: RecordLimits;
  /** Where records end, for a multiline CSV or UTF-16 text (a CSV's quote state gives the chunk's parity). */
  readonly quotes?: RecordEnds & { readonly inside: boolean };
  readonly mapper: {
    block(block: RecordBlock): Promise<void> | void;
    finish(): Promise<RemoteMapped> | RemoteMapped;
    close(): void;
    /** On the fleet: aborted when the reading is past the chunk's time limit or its thread ended (the read ends too). */
    readonly stop?: AbortSignal;
  };
  error?: CloudmillError;
}

interface RecordJob {
  readonly op: AnyOp;
  readonly params: unknown;
  /** The params as the op parses them (a mapper thread parses them again). */
  readonly rawParams: Params;
  readonly mapCtx: Omit<MapContext, "bad">;
  /** CSV read with quoted newlines: records end at newlines outside quotes. */
  readonly multiline: boolean;
  readonly separator: string;
  /** UTF-16 text: cut on its units, decoded to UTF-8 block by block for the op. */
  readonly encoding?: Utf16;
  /** How the input is compressed, when its CSV head was read (null: not at all); unset: the task finds out. */
  readonly codec?: Codec | null;
}

/**
 * Maps the chunk's records to a part. A multiline CSV chunk past its input's start is read
 * both ways (as if it began outside quotes, and inside), from one read of its bytes, and
 * the part keeps both readings and the chunk's quote parity for the merge to choose
 * (QuoteSpeculation in part.ts). A reading the wrong guess made usually ends at its first
 * record, on a quote that cannot pair up; its error is kept, raised only if it is chosen.
 */
const mapRecords = async (deps: PipelineDeps, task: MapTask, job: RecordJob, signal?: AbortSignal): Promise<Part> => {
  const { jobId, chunk } = task;
  const { onBadRecord } = task.job;
  const store = deps.inputStore(chunk.input.bucket);
  // UTF-16 units sit at even offsets: both ends move to the next even offset, as the neighbours' do.
  const unit = job.encoding ? 2 : 1;
  const align = (at: number): number => Math.min(chunk.input.size, at + (at % unit));
  const range = { ...chunk.input, start: align(chunk.start), end: align(chunk.end) };
  const speculate = job.multiline && range.start > 0;
  const where = chunkContext(jobId, chunk);
  /** The range's bytes, once its read has begun: an object read whole knows its codec from its first block on. */
  let source: InputRange | undefined;
  const whole = range.start <= 0 && range.end >= chunk.input.size;
  /** Whether a reading may map on the worker's main thread (laneMapper.ts): a built-in op's small uncompressed range. */
  const inline = ((): boolean | (() => boolean) => {
    if (chunk.input.member !== undefined || range.end - range.start > INLINE_MAP_BYTES || !isBuiltinOp(job.op)) return false;
    // Its CSV head showed no compression.
    if (job.codec === null) return true;
    if (job.codec !== undefined || chunk.input.codec !== undefined) return false;
    // A part of an input planned uncompressed is plain; an object read whole tells by its first bytes.
    return whole ? () => source?.codec() === undefined : true;
  })();
  if (job.encoding && (job.codec === "bgzf" || chunk.input.codec === "bgzf")) {
    // Its blocks may cut a code unit in two, and its positions jump at each block.
    throw new CloudmillError(
      ErrorCode.BAD_RECORD,
      "UTF-16 text in a BGZF file is not read: convert it to UTF-8 (iconv -f UTF-16 -t UTF-8), or compress it with gzip",
      { input: chunk.input.name },
    );
  }

  const openLane = (inside: boolean): Lane => {
    let skipped = 0;
    let firstSkipped: CloudmillError | undefined;
    const ctx: MapContext = {
      ...job.mapCtx,
      bad(error) {
        if (onBadRecord === "fail") throw error;
        skipped++;
        firstSkipped ??= error;
      },
    };
    const csv = job.multiline ? { inside, separator: job.separator } : undefined;
    const quotes = job.encoding ? new Utf16RecordEnds(job.encoding, csv) : csv ? new CsvRecordEnds(inside, job.separator) : undefined;
    const limits = recordLimitsOf(ctx, task.job);
    const cutter = new RecordCutter(quotes ?? lineEnds(), range.start, limits);
    const lane = { cutter, limits, ...(quotes ? { quotes } : {}) };
    if (deps.mappers)
      return {
        ...lane,
        mapper: fleetLaneMapper({
          host: deps.mappers,
          request: {
            op: task.job.op,
            params: job.rawParams,
            ctx: { ...job.mapCtx, onBadRecord },
            ...(signal ? { signal } : {}),
            ...(task.job.taskTimeoutSeconds !== undefined ? { timeoutSeconds: task.job.taskTimeoutSeconds } : {}),
            ...(task.job.taskMemoryMiB !== undefined ? { memoryMiB: task.job.taskMemoryMiB } : {}),
          },
          onThisThread: (bad) => job.op.mapper(job.params, { ...job.mapCtx, bad }),
          onBadRecord,
          readerSkips: () => ({ skipped, first: firstSkipped }),
          inline,
        }),
      };
    const mapper = job.op.mapper(job.params, ctx);
    return {
      ...lane,
      mapper: {
        block: (b) => mapper.block(b),
        close: () => undefined,
        finish: () => ({ partial: mapper.finish(), skipped, ...(firstSkipped ? { firstSkipped: firstSkipped.toJSON() } : {}) }),
      },
    };
  };

  const lanes: Lane[] = [];
  /** Where an error's offset is in a compressed input (decoded bytes, or a BGZF block's). */
  let located = (err: CloudmillError): CloudmillError => err;
  try {
    lanes.push(openLane(false));
    if (speculate) lanes.push(openLane(true));
    const stops = lanes.flatMap((l) => (l.mapper.stop ? [l.mapper.stop] : []));
    /** Aborted when a lane is past the chunk's time limit, or its thread ended: the read ends too. */
    const stopped = (): AbortSignal | undefined => stops.find((s) => s.aborted);
    const reads = stops.length === 0 ? signal : AbortSignal.any(signal ? [signal, ...stops] : stops);
    let odd = false;
    const parity = job.multiline ? lanes[0]!.quotes : undefined;
    // The quotes before the chunk's last unit, counted from the unit before it (the outside reading starts at even).
    const mark = parity ? { unit, reached: () => void (odd = parity.inside) } : undefined;
    /**
     * A lane's error: the chunk's own unless the chunk is read two ways. Then it is the reading's,
     * kept for the merge, unless the environment failed (a crashed thread, a failed read): that
     * attempt fails, to be retried.
     */
    const laneFailed = (lane: Lane, err: unknown): void => {
      const timedOut = stopped();
      if (timedOut) throw timedOut.reason;
      const error = located(toCloudmillError(err));
      // The environment or the thread's limits failed the attempt, not the data: retried, never kept.
      if (!speculate || error.code === ErrorCode.ENVIRONMENT || error.code === ErrorCode.OUT_OF_MEMORY) throw error;
      lane.error = error.withContext(where);
      // Read no further for it (its quotes are still counted).
      lane.cutter.stop();
    };
    const bytes = inputRangeBytes(store, chunk.input, range, {
      lookBehind: unit,
      ...(reads ? { signal: reads } : {}),
      ...(job.codec !== undefined ? { codec: job.codec } : {}),
    });
    source = bytes;
    located = (err) => {
      const offset = err.context.offset;
      // Once: an error located in the lane is thrown on through the read's catch.
      return offset !== undefined && bytes.codec() && !err.context.decoded ? err.withContext(bytes.where(offset)) : err;
    };
    try {
      if (job.mapCtx.format === "blob") await mapBlob(bytes, chunk.input, lanes[0]!, job.op, task.job.maxRecordBytes);
      else
        for await (const read of ownedRecordLanes(
          bytes,
          lanes.map((l) => l.cutter),
          mark ? { mark } : {},
        )) {
          const lane = lanes[read.lane]!;
          if (lane.error) continue;
          if (read.block === undefined) {
            laneFailed(lane, read.error);
          } else {
            const refused =
              read.block.first && !job.encoding
                ? compressedInputError(read.block.bytes, chunk.input.name, chunk.input.member !== undefined)
                : undefined;
            if (refused) throw refused;
            const decoded = job.encoding ? decodeUtf16Block(read.block, job.encoding) : undefined;
            try {
              await lane.mapper.block(decoded ?? read.block);
            } catch (err) {
              laneFailed(lane, decoded ? decoded.fileOffset(toCloudmillError(err)) : err);
            }
          }
          if (lanes.every((l) => l.error)) break;
        }
    } catch (err) {
      throw stopped()?.reason ?? located(toCloudmillError(err));
    }
    const readings: Reading[] = [];
    for (const lane of lanes) {
      if (!lane.error) {
        try {
          const mapped = await lane.mapper.finish();
          readings.push({ partial: mapped.partial, skipped: mapped.skipped });
          if (!speculate && mapped.firstSkipped) {
            const first = toCloudmillError(mapped.firstSkipped).withContext(where);
            // Info: the job's status counts them, and `cloudmill run` says how many at its end.
            deps.log.info("bad records skipped", { ...logFieldsOf(first), skipped: mapped.skipped });
          }
          continue;
        } catch (err) {
          laneFailed(lane, err);
        }
      }
      readings.push({ partial: null, skipped: 0, error: keptErrorOf(lane.error!) });
    }
    const [out, inside] = readings as [Reading, Reading | undefined];
    return {
      v: 1,
      jobId,
      index: chunk.index,
      partial: out.partial,
      skipped: out.skipped,
      ...(job.multiline
        ? { quotes: { first: !speculate, odd, ...(out.error ? { error: out.error } : {}), ...(inside ? { inside } : {}) } }
        : {}),
    };
  } finally {
    for (const lane of lanes) lane.mapper.close();
  }
};

/**
 * Hands an object to a blob op: whole, as one block (at most maxRecordBytes; a longer one is a
 * bad record), or, to an op that streams blobs, in the pieces it is read in. Either way the
 * mapper sees at least one block, so an empty object is a record too.
 */
const mapBlob = async (source: RangeBytes, input: InputObject, lane: Lane, op: AnyOp, maxRecordBytes?: number): Promise<void> => {
  const size = input.member?.size ?? input.size;
  const limit = maxRecordBytes ?? DEFAULTS.maxRecordBytes;
  if (!op.streamsBlobs && size > limit) {
    lane.limits.onOversized?.(0, limit);
    return;
  }
  const pieces: Buffer[] = [];
  let at = 0;
  for await (const span of source.owned()) {
    const bytes = Buffer.isBuffer(span.bytes) ? span.bytes : Buffer.from(span.bytes.buffer, span.bytes.byteOffset, span.bytes.byteLength);
    if (op.streamsBlobs) await lane.mapper.block({ bytes, offset: span.at, first: span.at === 0 });
    // A copy: the store reads on into the same memory.
    else pieces.push(Buffer.from(bytes));
    at = span.at + bytes.length;
  }
  if (!op.streamsBlobs) await lane.mapper.block({ bytes: Buffer.concat(pieces), offset: 0, first: true });
  else if (at === 0) await lane.mapper.block({ bytes: Buffer.alloc(0), offset: 0, first: true });
};

/** The refusal of the chunk's input if its first bytes are a compressed or archive format (best effort). */
const compressedInputOf = async (deps: PipelineDeps, task: MapTask, signal?: AbortSignal): Promise<CloudmillError | undefined> => {
  const { input } = task.chunk;
  // A compressed input's first bytes say what its codec is, not what the data is; a zip entry's
  // key is its archive's, and its own first bytes were checked as its one chunk began.
  if (input.codec || input.member) return undefined;
  const range = { start: 0, end: SIGNATURE_BYTES, etag: input.etag };
  const first = await readBytes(deps.inputStore(input.bucket), input.key, signal, range).catch(() => undefined);
  // CSV in UTF-16 is read (decoded): its bad records are its own.
  if (!first || (task.job.format === "csv" && utf16Of(first))) return undefined;
  return compressedInputError(first, input.name);
};

/**
 * True when the task was queued before its job's latest resume (resume.ts): a stale copy whose
 * limits and deadline are the earlier run's. Its failure must not fail the resumed job. One HEAD,
 * made only on the way to failing a job.
 */
export const isStaleTask = async (deps: Pick<PipelineDeps, "output">, task: TaskMessage): Promise<boolean> =>
  exists(deps.output, pastEndKey(task.jobId, (task.job.generation ?? 0) + 1));
