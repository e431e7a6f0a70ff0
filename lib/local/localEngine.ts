/**
 * The embedded default: the same pipeline roles (split, map, reduce, dead-letter) over the
 * local adapters — files for blobs, an in-process queue with SQS semantics — with tasks on
 * worker threads. Memory is bounded by chunk size × workers, not by input size.
 */
import { enableLinearRegExp } from "../sandbox/linearRegExp.js";
import { HiddenFiles } from "../core/hiddenNames.js";
import { copyFile, lstat, mkdir, mkdtemp, readdir, realpath, rename, rm, rmdir, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { FsBlobStore } from "../fs/FsBlobStore.js";
import { namespace, processFolder, removeDeadTemps, tempFor } from "../fs/processFolders.js";
import { itemsScratchRoot, removeDeadItemScratch } from "./itemScratch.js";
import { LOCK_NAME, lockFolder } from "../fs/folderLock.js";
import { fileFailure } from "../fs/fsErrors.js";
import { MemoryTaskQueue } from "./MemoryTaskQueue.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../core/errors.js";
import {
  chunkBytes,
  isMergeTask,
  isReduceTask,
  taskCount,
  taskIndex,
  JobStatus as JobStatusSchema,
  TaskMessage,
  type Chunk,
  type MapTask,
  type InputObject,
  type JobStatus,
  type Manifest,
  shownInputs,
} from "../core/job/manifest.js";
import { digestOf, planChunks, planOptionsOf } from "../core/job/planner.js";
import { appendAll } from "../core/appendAll.js";
import type { JobSpec } from "../core/job/spec.js";
import { silentLogger, type Logger, type ThreadLog } from "../core/log.js";
import type { OpRegistry } from "../core/ops/registry.js";
import type { SplitDeps } from "../core/pipeline/deps.js";
import { failJob, handleDeadLetter } from "../core/pipeline/deadLetter.js";
import { readBytes, readJson, writeJson } from "../core/pipeline/blobJson.js";
import { backupRaces, median, stragglerAfterMs, stragglers } from "../core/pipeline/backups.js";
import { backupKey, JOBS_PREFIX } from "../core/keys.js";
import { OrderedPartMerge, type MergedParts } from "../core/pipeline/partMerge.js";
import { partsCarryReadings } from "../core/pipeline/part.js";
import { reduceJob } from "../core/pipeline/reduce.js";
import { deadlineSecondsOf, namesForFormat, startJob, taskJobOf } from "../core/pipeline/split.js";
import { tasksOf } from "../core/pipeline/mapTasks.js";
import { enqueueTasks } from "../core/pipeline/enqueue.js";
import { afterFailedAttempt } from "../core/pipeline/attempts.js";
import { lineNumberAt, lineNumberIn } from "../core/records/lineNumber.js";
import { inputRangeBytes } from "../core/records/inputBytes.js";
import type { Span } from "../core/records/alignedBlocks.js";
import { isTaskOp, type TaskResult } from "../core/ops/defineTask.js";
import { DEFAULTS } from "../core/constants.js";
import { ThreadMapperHost } from "../sandbox/ThreadMapperHost.js";
import { isShuffled } from "../core/ops/types.js";
import { resolveStoredResult } from "../core/pipeline/items.js";
import { ThreadItemRunner } from "../sandbox/ThreadItemRunner.js";
import { inlineExecutor, threadExecutor, type TaskExecutor } from "./executor.js";
import { buildReport, RunLog, type JobReport } from "../core/report/jobReport.js";
import { resolveLocalInputs } from "./localInputs.js";

export interface Progress {
  readonly chunksDone: number;
  readonly chunks: number;
  readonly bytesDone: number;
  readonly bytes: number;
  readonly elapsedMs: number;
}

export interface LocalRunOptions {
  readonly spec: JobSpec;
  readonly registry: OpRegistry;
  /** Modules of user ops, loaded by every worker thread as by the CLI (`--ops`). */
  readonly opsModules?: readonly string[];
  /** Worker threads; 0 runs tasks on this thread (tests, tiny inputs). Default: all cores. */
  readonly workers?: number;
  readonly log?: Logger;
  /** What the worker threads log, as `log` shows it (a Logger cannot cross to them). Default silent. */
  readonly threadLog?: ThreadLog;
  readonly onProgress?: (p: Progress) => void;
  /** Record each task's run and build the job's report (LocalRunResult.report). */
  readonly report?: boolean;
  readonly signal?: AbortSignal;
  /** Where intermediate state goes; default a fresh temp directory, removed afterwards. */
  readonly workDir?: string;
  readonly keepWork?: boolean;
  /**
   * Longest one chunk may take on a worker thread: past it the thread is ended and the attempt
   * fails with TASK_TIMEOUT. Default DEFAULTS.taskTimeoutSeconds (15 minutes); none with 0 workers.
   */
  readonly taskTimeoutSeconds?: number;
  /**
   * Bytes a reduce task holds before it spills runs (default DEFAULTS.reduceSpillBytes), for a
   * reduce on this thread (workers 0): calibrations time a spilling reduce. Task threads keep the default.
   */
  readonly spillBytes?: number;
  /**
   * Where a keyed op's parts go (`part-00000.jsonl`, …); the result's keys are their paths.
   * Default `cloudmill-out/<jobId>` under the working directory.
   */
  readonly outDir?: string;
}

export interface LocalRunResult {
  readonly jobId: string;
  readonly result: unknown;
  readonly status: JobStatus;
  /** Where the chunks were mapped: on this thread (a small job of a built-in op) or on task threads. */
  readonly ranOn: "inline" | "threads";
  /** Every map task's timing, per task slot, when asked for (`cloudmill run --report`). */
  readonly report?: JobReport;
}

const RESULT_KEY = "result.json";
const STATUS_KEY = "status.json";

async function* bytesOf(spans: AsyncIterable<Span>): AsyncGenerator<Uint8Array> {
  for await (const span of spans) yield span.bytes;
}

/** Adds the line number to an error at a record (a bad one, or one a lab's op threw on), reading the input up to its offset. */
const withLineNumber = async (err: CloudmillError, inputs: readonly InputObject[], root: FsBlobStore): Promise<CloudmillError> => {
  const { offset, input } = err.context;
  if (offset === undefined || err.context.line !== undefined || err.context.binary) return err;
  const obj = inputs.find((i) => i.name === input);
  if (!obj) return err;
  // A BGZF block's offset has no line without decoding the blocks before it.
  if (err.context.block !== undefined) return err;
  // A zip entry's offsets count its decoded bytes, as a compressed input's do.
  const line = await (err.context.decoded || obj.member
    ? lineNumberIn(bytesOf(inputRangeBytes(root, obj, { start: 0, end: obj.size }).owned()), offset)
    : lineNumberAt(root, obj.key, offset)
  ).catch(() => undefined);
  return line === undefined ? err : err.withContext({ line });
};

export const runLocal = async (options: LocalRunOptions): Promise<LocalRunResult> => {
  enableLinearRegExp();
  const { spec, registry } = options;
  const log = options.log ?? silentLogger;
  const root = new FsBlobStore("/");
  const hidden = new HiddenFiles();
  const inputs = await resolveLocalInputs(spec.inputs, root, hidden);
  const job = taskJobOf(spec, registry, namesForFormat(inputs));
  // An estimate (packs counted; a big gzip file still as many chunks, not one, before the splitter reads its first bytes).
  const chunks = planChunks(inputs, spec.chunkSize, planOptionsOf(job.format)).total;
  // A job of one chunk gains nothing from threads but their start-up, however many were asked
  // for. Only a built-in op runs inline: it ends in linear time, where a lab's op may need the
  // task time limit a thread gives.
  const op = registry.get(job.op);
  // A job that sets its own time or heap limit gets a thread too: only a thread can keep them.
  const ownLimits = spec.taskTimeoutSeconds !== undefined || spec.taskMemoryMiB !== undefined || options.taskTimeoutSeconds !== undefined;
  const inline = options.workers === 0 || (chunks <= 1 && op.digest === undefined && !isTaskOp(op) && !ownLimits);
  const workers = inline ? 0 : (options.workers ?? os.availableParallelism());
  // Whatever changes the answer is in the id: two runs share a default --out-dir only if their parts are the same.
  const given = [job.op, JSON.stringify(job.params), String(spec.chunkSize), job.format, String(spec.partitions ?? "")];
  const jobId = spec.id ?? `local-${digestOf([...given, ...inputs.flatMap((i) => [i.key, i.etag])])}`;

  const outDir = path.resolve(options.outDir ?? path.join("cloudmill-out", jobId));
  // Made before any work, so that one that cannot be made fails now; removed again if the job fails.
  // A task's is made only once its items have stored objects to keep (keepFiles).
  const madeDirs = isShuffled(op) ? await makeOutDir(outDir, spec.inputs, inputs) : [];
  // One keyed run at a time writes an out dir: two would leave a _SUCCESS that lists the other's parts.
  const unlock = isShuffled(op) ? await lockOutDir(outDir, madeDirs) : undefined;
  let succeeded = false;
  const tmp = os.tmpdir();
  let workDir: string;
  try {
    // Named for this process: a later run removes it if this one is killed before it can.
    // One kept on purpose (keepWork) is named otherwise, and stays.
    workDir =
      options.workDir ?? (options.keepWork ? await mkdtemp(path.join(tmp, "cloudmill-kept-")) : await processFolder(tmp, "cloudmill-run-"));
    // Item threads' scratch folders are named alike: those of runs that were killed go now.
    await removeDeadItemScratch();
  } catch (err) {
    await unlock?.();
    for (const dir of madeDirs.toReversed()) await rmdir(dir).catch(() => undefined);
    throw fileFailure(`TMPDIR ${tmp}: cannot make a work folder there`, err);
  }
  // A failure to write the work folder there (full, read-only, over quota) names TMPDIR: what to free, or point elsewhere.
  const outputLabel = options.workDir === undefined ? `TMPDIR ${tmp}` : undefined;
  const output = new FsBlobStore(workDir, outputLabel === undefined ? {} : { label: outputLabel });
  const deadLetters = new MemoryTaskQueue({ name: "dead-letters" });
  // Crashes are seen directly (a thread's exit), so the visibility timeout only guards against hangs.
  const queue = new MemoryTaskQueue({
    name: "tasks",
    visibilitySeconds: 3600,
    deadLetter: { queue: deadLetters, maxReceiveCount: spec.maxAttempts },
  });
  const items = new ThreadItemRunner({ opsModules: options.opsModules ?? [], scratchRoot: itemsScratchRoot });
  // A lab op's merges on this thread, and its finalize, run on a thread of their own, each call
  // under the task's time limit: op code that never returns fails the job, not hangs the run.
  // Only for an op the modules define, as given (a thread loads the modules, not the registry).
  // The fold's thread loads the modules anyway and says whether it knows the op by digest, so
  // this thread loads none of them (a module's own start-up runs once per thread, not twice).
  const modules = options.opsModules ?? [];
  // (A keyed op or sort has no fold: its reduce tasks write the result.)
  const foldHost =
    op.digest !== undefined && !isTaskOp(op) && !isShuffled(op) && modules.length > 0
      ? new ThreadMapperHost({ opsModules: modules, taskTimeoutSeconds: options.taskTimeoutSeconds ?? DEFAULTS.taskTimeoutSeconds })
      : undefined;
  const deps: SplitDeps = {
    output,
    queue,
    inputStore: () => root,
    registry,
    log,
    items,
    ...(options.spillBytes !== undefined ? { spillBytes: options.spillBytes } : {}),
  };
  let executor: TaskExecutor =
    workers > 0
      ? threadExecutor(
          workers,
          {
            outputRoot: workDir,
            ...(outputLabel !== undefined ? { outputLabel } : {}),
            opsModules: options.opsModules ?? [],
            ...(options.threadLog !== undefined ? { log: options.threadLog } : {}),
            ...(spec.taskMemoryMiB !== undefined ? { memoryMiB: spec.taskMemoryMiB } : {}),
          },
          // A task's chunk has no time limit of its own, as on the fleet: each item has its own.
          isTaskOp(op) ? Number.POSITIVE_INFINITY : options.taskTimeoutSeconds,
        )
      : inlineExecutor(deps);

  try {
    // Asked now, answered while the job starts; a job that fails first never reads the answer.
    const fromModules = foldHost?.knows(op.name, op.digest!, {
      what: `job ${jobId}`,
      memoryMiB: spec.taskMemoryMiB,
      timeoutSeconds: spec.taskTimeoutSeconds,
      signal: options.signal,
    });
    fromModules?.catch(() => undefined);
    // Inside: threads that fail to start still leave no work directory behind.
    executor.warm(chunks);
    const { manifest } = await startJob(deps, {
      jobId,
      job,
      inputs,
      given: spec.inputs,
      hidden,
      chunkSize: spec.chunkSize,
      output: { result: RESULT_KEY, status: STATUS_KEY },
      trigger: "cli",
      deadlineSeconds: deadlineSecondsOf(spec),
    });
    // A keyed job of empty inputs has no chunks, but still its reduce tasks (empty parts).
    const runs = options.report ? new RunLog() : undefined;
    const concurrency = Math.max(1, workers);
    const folds = foldHost && (await fromModules) ? foldHost : undefined;
    const mergeDeps = folds ? { ...deps, mappers: folds } : deps;
    // With no task threads (-w 0), a lab op its modules define still maps on that thread, as on
    // the fleet (laneMapper.ts): one that never returns meets the task's time limit, and an
    // interrupt is heard, where on this thread it would block both. (Not a keyed lab op's map.)
    if (workers === 0 && folds) executor = inlineExecutor(mergeDeps);
    if (taskCount(manifest) > 0)
      await mapAndReduce({
        deps,
        mergeDeps,
        manifest,
        deadLetters,
        executor,
        concurrency,
        options,
        inputs,
        root,
        ...(runs ? { runs } : {}),
      });
    const status = await readJson(output, STATUS_KEY, JobStatusSchema);
    if (status.state !== "succeeded") {
      const e = status.error;
      throw new CloudmillError((e?.code as ErrorCode | undefined) ?? ErrorCode.INTERNAL, e?.message ?? `job ${status.state}`, { jobId });
    }
    const stored: unknown = JSON.parse((await readBytes(output, RESULT_KEY)).toString("utf8"));
    // Item outputs stored on their own are read back before the work directory goes; a keyed
    // job's parts move to the output directory.
    const result = isTaskOp(op)
      ? await keepFiles(workDir, (await resolveStoredResult(output, stored, jobId)) as TaskResult, jobId, {
          outDir,
          inputs: spec.inputs,
          objects: inputs,
        })
      : isShuffled(op)
        ? await moveParts(workDir, stored, outDir)
        : stored;
    succeeded = true;
    const report =
      runs &&
      buildReport({
        jobId,
        op: manifest.job.op,
        ...shownInputs(manifest),
        finishedAt: status.finishedAt ?? new Date().toISOString(),
        runs,
        result,
        ...(status.backups ? { backups: await backupRaces({ output }, jobId) } : {}),
        chunks: manifest.chunks,
        ...(manifest.job.partitions !== undefined ? { partitions: manifest.job.partitions } : {}),
      });
    return { jobId, result, status, ranOn: workers > 0 ? "threads" : "inline", ...(report ? { report } : {}) };
  } finally {
    // Each step whatever fails before it, and none fails the run: a run's answer (or its own
    // error) stands, and the lock always goes (a process that runs again, runLocal being the
    // library's, would otherwise find its own lock, held for good). A work folder left behind
    // is said; a later run removes it once this process has ended.
    const cleanUp = async (what: string, step: () => unknown): Promise<void> => {
      try {
        await step();
      } catch (err) {
        log.warn(`${what} failed`, { error: toCloudmillError(err).message });
      }
    };
    await cleanUp("closing the item threads", () => items.close());
    await cleanUp("closing the fold's thread", () => foldHost?.close());
    await cleanUp("closing the task threads", () => executor.close());
    await cleanUp("closing the task queue", () => queue.close());
    await cleanUp("closing the dead-letter queue", () => deadLetters.close());
    if (!options.keepWork && !options.workDir)
      await cleanUp(`removing the work folder ${workDir}`, () => rm(workDir, { recursive: true, force: true }));
    await cleanUp(`unlocking --out-dir ${outDir}`, () => unlock?.());
    // rmdir, deepest first: a folder something else wrote into meanwhile stays.
    if (!succeeded) for (const dir of madeDirs.toReversed()) await rmdir(dir).catch(() => undefined);
  }
};

/**
 * Takes `outDir`'s lock for this run, or refuses it at once when another live run holds it
 * (removing the folders this run made for it). Resolves with the lock's release.
 */
const lockOutDir = async (outDir: string, madeDirs: readonly string[]): Promise<() => Promise<void>> => {
  const locked = await lockFolder(outDir).catch((err: unknown) => fileFailure(`--out-dir ${outDir}: cannot lock it`, err));
  if ("release" in locked) return locked.release;
  for (const dir of madeDirs.toReversed()) await rmdir(dir).catch(() => undefined);
  if (locked instanceof CloudmillError) throw locked;
  const lock = path.join(outDir, LOCK_NAME);
  // A pid of another PID namespace means nothing here: whether that run is still writing only its own host can tell.
  if (locked.heldBy && locked.heldBy.namespace !== namespace)
    throw new CloudmillError(
      ErrorCode.ENVIRONMENT,
      `--out-dir ${outDir} is locked by a cloudmill run in another container or host (pid ${locked.heldBy.pid} there): ` +
        `if no run is writing there, remove ${lock}; or give another --out-dir`,
      { field: "outDir" },
    );
  const who = locked.heldBy
    ? `cloudmill run pid ${locked.heldBy.pid}`
    : `another cloudmill run (its ${lock} names none: remove it if no run is writing there)`;
  throw new CloudmillError(
    ErrorCode.ENVIRONMENT,
    `--out-dir ${outDir} is being written by ${who}: wait for it to end, or give another --out-dir`,
    { field: "outDir" },
  );
};

/**
 * Refuses, before any work, an out dir the parts cannot go to: one that is a file or under one,
 * one inside an input directory (the next run would read its parts as input), or one that cannot
 * be made. Makes the folders missing on its path, one at a time (Node's recursive mkdir loops
 * for ever under /proc), and returns them, outermost first.
 */
const makeOutDir = async (outDir: string, inputs: readonly string[], objects: readonly InputObject[]): Promise<string[]> => {
  const missing: string[] = [];
  for (let dir = outDir; ; dir = path.dirname(dir)) {
    const found = await stat(dir).catch(() => undefined);
    if (!found) missing.push(dir);
    if (!found && (await lstat(dir).catch(() => undefined))?.isSymbolicLink())
      throw new CloudmillError(ErrorCode.INVALID_SPEC, `--out-dir ${outDir}: ${dir} is a symbolic link to nothing`, { field: "outDir" });
    if (found && !found.isDirectory()) {
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        dir === outDir ? `--out-dir ${outDir} is a file, not a directory` : `--out-dir ${outDir}: ${dir} is a file, not a directory`,
        { field: "outDir" },
      );
    }
    if (found || path.dirname(dir) === dir) break;
  }
  for (const input of inputs) {
    const dir = path.resolve(input);
    if (!(await stat(dir).catch(() => undefined))?.isDirectory()) continue;
    if (outDir === dir || outDir.startsWith(`${dir}${path.sep}`)) {
      throw new CloudmillError(
        ErrorCode.INVALID_SPEC,
        `the parts would go to ${outDir}, inside input ${input}, and be read as input next time: give --out-dir outside it`,
        { field: "outDir" },
      );
    }
  }
  // An input folder may reach the out dir through a link: an earlier run's parts, read as input.
  const realOut = await realpath(outDir).catch(() => undefined);
  if (realOut !== undefined) {
    for (const o of objects) {
      const file = `/${o.key}`;
      if (!PART_NAME.test(path.basename(file))) continue;
      if ((await realpath(path.dirname(file)).catch(() => undefined)) === realOut)
        throw new CloudmillError(
          ErrorCode.INVALID_SPEC,
          `input ${o.name} is a part in --out-dir ${outDir} (through a link): ` +
            "the parts would be read as input: give --out-dir outside the inputs",
          { field: "outDir" },
        );
    }
  }
  const made: string[] = [];
  for (const dir of missing.toReversed()) {
    try {
      await mkdir(dir);
      made.push(dir);
    } catch (err) {
      for (const m of made.toReversed()) await rmdir(m).catch(() => undefined);
      // "ENOENT: no such file or directory", without Node's ", mkdir '<dir>'".
      const why = (err as Error).message.replace(/, mkdir .*$/, "");
      throw new CloudmillError(ErrorCode.INVALID_SPEC, `--out-dir ${outDir}: cannot make ${dir}: ${why}`, { field: "outDir" });
    }
  }
  return made;
};

const PART_NAME = /^part-\d{5,}\.(jsonl|txt)$/;

/**
 * Copies the objects a task's items stored (ctx.put) out of the work directory, which goes when
 * the run ends: `_jobs/<jobId>/files/<name>` to `<outDir>/files/<name>`, listed by path there.
 * The out dir is made only then; an object of the same name there is replaced, nothing else is.
 */
const keepFiles = async (
  workDir: string,
  result: TaskResult,
  jobId: string,
  out: { readonly outDir: string; readonly inputs: readonly string[]; readonly objects: readonly InputObject[] },
): Promise<TaskResult> => {
  if (result.files.length === 0) return result;
  const { outDir } = out;
  await makeOutDir(outDir, out.inputs, out.objects);
  const from = path.join(workDir, JOBS_PREFIX, jobId, "files");
  const to = path.join(outDir, "files");
  // Each file under a temporary name, then renamed: a run killed mid-copy leaves no short file
  // under a stored name, and an earlier run's file of that name stays whole until replaced.
  for (const rel of await readdir(from, { recursive: true })) {
    const source = path.join(from, rel);
    if (!(await stat(source)).isFile()) continue;
    const target = path.join(to, rel);
    const temp = tempFor(target);
    try {
      await mkdir(path.dirname(target), { recursive: true });
      await copyFile(source, temp);
      await rename(temp, target);
    } catch (err) {
      await rm(temp, { force: true }).catch(() => undefined);
      throw fileFailure(`--out-dir ${outDir}: cannot write ${target}`, err);
    }
  }
  const prefix = `${JOBS_PREFIX}${jobId}/files/`;
  return { ...result, files: result.files.map((key) => (key.startsWith(prefix) ? path.join(to, key.slice(prefix.length)) : key)) };
};

/**
 * Moves a keyed job's parts from the work directory to `outDir` and names them by path there.
 * They come in under temporary names first (a copy, across filesystems, may fail part-way:
 * then they go and the earlier result stays whole); then the parts of an earlier run are
 * removed, so the directory holds this result only, and the new ones renamed in place.
 */
const moveParts = async (workDir: string, stored: unknown, outDir: string): Promise<unknown> => {
  const result = stored as { records: number; partitions: number; parts: { key: string; records: number; bytes: number }[] };
  /** A filesystem call on the out dir; its failure (a disk full, a folder in the way) is one line naming the path. */
  const step = <T>(what: string, call: () => Promise<T>): Promise<T> =>
    call().catch((err: unknown) => {
      throw fileFailure(`--out-dir ${outDir}: cannot ${what}`, err);
    });
  await step(`make ${outDir}`, () => mkdir(outDir, { recursive: true }));
  await removeDeadTemps(outDir);
  // The marker goes before anything changes and comes back last: a run killed between leaves a
  // folder that says it is not whole (old parts gone, some new ones in), as Hadoop's and Spark's
  // outputs do. Not recursive: a folder of that name is not ours to remove (the run fails here).
  const marker = path.join(outDir, SUCCESS_MARKER);
  await step(`remove ${marker}`, () => rm(marker, { force: true }));
  const moves: { temp: string; to: string }[] = [];
  /** Temporary files of this run in the out dir: whatever fails, none of them stays. */
  const temps = new Set<string>();
  try {
    for (const part of result.parts) {
      const key = /_jobs\/[^/]+\/part-\d+\.(jsonl|txt)$/.exec(part.key)?.[0];
      if (!key) throw new CloudmillError(ErrorCode.INTERNAL, `part ${part.key} is not a job's output part`);
      const to = path.join(outDir, path.basename(key));
      const temp = tempFor(to);
      const from = path.join(workDir, key);
      moves.push({ temp, to });
      temps.add(temp);
      await step(`write ${temp}`, () =>
        rename(from, temp).catch(async (err: NodeJS.ErrnoException) => {
          // Another filesystem (a temp dir on tmpfs): copy instead.
          if (err.code !== "EXDEV") throw err;
          await copyFile(from, temp);
        }),
      );
    }
    for (const name of await step(`list ${outDir}`, () => readdir(outDir)))
      if (PART_NAME.test(name)) await step(`remove ${path.join(outDir, name)}`, () => rm(path.join(outDir, name), { force: true }));
    for (const { temp, to } of moves) {
      await step(`move a part to ${to}`, () => rename(temp, to));
      temps.delete(temp);
    }
    const moved = { ...result, parts: result.parts.map((part, i) => ({ ...part, key: moves[i]!.to })) };
    const temp = tempFor(marker);
    temps.add(temp);
    await step(`write ${marker}`, async () => {
      await writeFile(temp, `${JSON.stringify(moved)}\n`);
      await rename(temp, marker);
    });
    temps.delete(temp);
    return moved;
  } finally {
    await Promise.all([...temps].map((t) => rm(t, { force: true }).catch(() => undefined)));
  }
};

/** Written in --out-dir once all of a keyed run's parts are in it: the parts' manifest. */
const SUCCESS_MARKER = "_SUCCESS";

/** What mapAndReduce runs a started job with. */
interface JobRun {
  readonly deps: SplitDeps;
  readonly manifest: Manifest;
  readonly deadLetters: MemoryTaskQueue;
  /** What the job's part merge runs with: the deps, and where a lab op's merges run (a thread). */
  readonly mergeDeps: SplitDeps;
  readonly executor: TaskExecutor;
  /** Tasks mapped at once: one receive loop each. */
  readonly concurrency: number;
  readonly options: LocalRunOptions;
  readonly inputs: readonly InputObject[];
  /** The store the inputs are read from, for a bad record's line number. */
  readonly root: FsBlobStore;
  /** Each map task's run, filled in as they finish, for the job's report (unset: no report asked for). */
  readonly runs?: RunLog;
}

/** Runs every task of the job to completion or failure, merging parts as they come, then reduces. */
const mapAndReduce = async ({
  deps,
  mergeDeps,
  manifest,
  deadLetters,
  executor,
  concurrency,
  options,
  inputs,
  root,
  runs,
}: JobRun): Promise<void> => {
  const started = Date.now();
  const bytes = inputs.reduce((s, i) => s + i.size, 0);
  /** Tasks in all: a keyed job's reduce tasks run once its chunks are mapped. */
  const tasks = taskCount(manifest);
  /** Tasks done when the current stage is: the chunks, then (a keyed job) every task. */
  let goal = manifest.chunks;
  const done = new Set<number>();
  let bytesDone = 0;
  // An op whose merge ignores order is merged by each task thread as it maps (no part is read
  // back); any other is merged here in chunk order while the threads map later chunks.
  const op = deps.registry.get(manifest.job.op);
  // A multiline CSV chunk's reading is chosen by the chunks before it, and a sniffed separator is
  // reported from a part: such parts are written and merged in order.
  const orderFree = op.orderFreeMerge === true && !partsCarryReadings(manifest.job.format, op.parseParams(manifest.job.params));
  const inOrder = orderFree ? undefined : new OrderedPartMerge(mergeDeps, manifest);
  let merged: OrderedPartMerge | undefined;
  // Only a chunk's first attempt joins its thread's total, so no chunk can be in two totals.
  // Such a chunk writes no part (unless work is kept): its thread's total alone holds it. A
  // thread that dies loses its total, and the chunks held only there are mapped again (this
  // time writing parts) once the rest are done; any other chunk is read from its part.
  const attempted = new Set<number>();
  const writeParts = !orderFree || options.keepWork === true;
  const heldOnlyInTotals = new Set<number>();
  let stop = new AbortController();
  let ended: "complete" | "failed" | "aborted" | undefined;
  const finish = (why: NonNullable<typeof ended>) => {
    ended ??= why;
    stop.abort();
  };
  const onAbort = () => finish("aborted");
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) finish("aborted");
  const target = { jobId: manifest.jobId, output: manifest.output, chunks: tasks };
  // Set when the deadline fails the job: a round of mapping again waits for it, and ends.
  let failedByDeadline: Promise<void> | undefined;
  const deadline = setTimeout(
    () => {
      failedByDeadline = failJob(
        deps,
        { ...target, done: done.size },
        new CloudmillError(ErrorCode.DEADLINE, `job did not finish within ${Math.round((manifest.deadline - started) / 1000)}s`, {
          jobId: manifest.jobId,
        }),
      )
        .catch((e: unknown) => deps.log.error("could not record the deadline's failure", { error: toCloudmillError(e).describe() }))
        .then(() => finish("failed"));
    },
    Math.max(0, manifest.deadline - started),
  );
  deadline.unref();

  const fail = async (err: CloudmillError) => {
    await failJob(deps, { ...target, done: done.size }, await withLineNumber(err, inputs, root));
    finish("failed");
  };
  /**
   * A failure of this machine's disk (full, read-only, over quota) that every attempt would meet:
   * the job ends with it at once, said as it is, whether or not its status could still be written.
   */
  let lastingFailure: CloudmillError | undefined;

  /** Map tasks in progress, by chunk: when they began, and how to stop each copy (the first to finish stops the other). */
  const mapping = new Map<number, { readonly task: MapTask; readonly began: number; readonly copies: AbortController[] }>();
  /** How long mapped chunks took, for the straggler rule. */
  const times: number[] = [];
  const backedUp = new Set<number>();

  /**
   * A task is done: count it once, merge it (a chunk), record its run, say so, and end the stage
   * with its last. A reduce task (no chunk) names the bytes it read.
   */
  const finished = (
    index: number,
    chunk: Chunk | undefined,
    run?: { began: number; ms: number; slot: number; bytes: number; backup?: true },
  ) => {
    if (done.has(index)) return;
    done.add(index);
    if (chunk) {
      inOrder?.ready(index);
      bytesDone += chunkBytes(chunk);
      if (run) {
        times.push(run.ms);
        for (const copy of mapping.get(index)?.copies ?? []) copy.abort();
      }
    }
    if (run)
      runs?.add(index, {
        on: "local",
        at: new Date(run.began).toISOString(),
        ms: run.ms,
        worker: `task slot ${run.slot + 1}`,
        bytes: chunk ? chunkBytes(chunk) : run.bytes,
        ...(run.backup ? { backup: run.backup } : {}),
      });
    options.onProgress?.({ chunksDone: done.size, chunks: tasks, bytesDone, bytes, elapsedMs: Date.now() - started });
    if (done.size === goal) finish("complete");
  };

  // A task's items may have effects outside their output (ctx.put, a lab's own calls): never run twice on purpose.
  const backupsAsked = manifest.job.backupAfterSeconds !== undefined && !isTaskOp(op);

  /** A chunk on another thread that is a straggler now (backups.ts), with no backup yet. */
  const straggler = (): { readonly index: number; readonly afterMs: number } | undefined => {
    const rule = {
      chunks: manifest.chunks,
      done: times.length,
      medianMs: median(times),
      // On one machine a slow chunk is nearly always a heavy one, not a slow worker, and stopping
      // the losing copy loses its thread's running total: backups only when the job asks.
      afterSeconds: backupsAsked ? manifest.job.backupAfterSeconds! : 0,
      now: Date.now(),
    };
    const afterMs = stragglerAfterMs(rule);
    if (afterMs === undefined) return undefined;
    const running = [...mapping].filter(([i]) => !backedUp.has(i) && !done.has(i)).map(([index, m]) => ({ index, startedAt: m.began }));
    const index = stragglers(rule, running)[0];
    return index === undefined ? undefined : { index, afterMs };
  };

  /** Maps a straggler's backup on this idle slot, writing its part; the first copy to finish stops the other. */
  const backUp = async ({ index, afterMs }: { index: number; afterMs: number }, slot: number) => {
    const primary = mapping.get(index)!;
    backedUp.add(index);
    const began = Date.now();
    await writeJson(deps.output, backupKey(manifest.jobId, index, manifest.job.generation), {
      at: new Date(began).toISOString(),
      elapsedMs: began - primary.began,
      afterMs,
    });
    deps.log.info("straggling chunk backed up", { chunk: index, runningMs: began - primary.began, afterMs });
    const copy = new AbortController();
    primary.copies.push(copy);
    try {
      const outcome = await executor.run(
        { ...primary.task, backup: true },
        { signal: AbortSignal.any([stop.signal, copy.signal]), writePart: true },
      );
      if (outcome.kind === "done") finished(index, primary.task.chunk, { began, ms: Date.now() - began, slot, bytes: 0, backup: true });
    } catch (e) {
      // A backup that fails or is stopped changes nothing: its chunk's first copy still runs.
      deps.log.debug("backup ended without its part", { chunk: index, error: toCloudmillError(e).describe() });
    }
  };

  /** One task at a time from the queue, until the job ends; an idle slot backs up a straggler. */
  const taskLoop = async (_: unknown, slot: number) => {
    while (!ended) {
      const [msg] = await deps.queue.receive({ maxMessages: 1, waitSeconds: 1, signal: stop.signal });
      if (ended) continue;
      if (!msg) {
        const late = straggler();
        if (late) await backUp(late, slot);
        continue;
      }
      const task = TaskMessage.parse(JSON.parse(msg.body));
      // Local jobs merge in their task threads and the reducer: no one queues merge tasks here.
      if (isMergeTask(task)) throw new CloudmillError(ErrorCode.INTERNAL, `job ${task.jobId}: a merge task in the local engine`);
      const index = taskIndex(task);
      const chunk = isReduceTask(task) ? undefined : task.chunk;
      const copy = new AbortController();
      const began = Date.now();
      if (!isReduceTask(task)) mapping.set(index, { task, began, copies: [copy] });
      try {
        const accumulate = orderFree && !attempted.has(index);
        attempted.add(index);
        const outcome = await executor.run(task, {
          signal: AbortSignal.any([stop.signal, copy.signal]),
          accumulate,
          writePart: writeParts,
        });
        const ms = Date.now() - began;
        await deps.queue.delete(msg.receiptHandle);
        if (outcome.kind === "job-ended") continue;
        if (outcome.kind === "done" && accumulate && !writeParts) heldOnlyInTotals.add(index);
        finished(index, chunk, outcome.kind === "done" ? { began, ms, slot, bytes: outcome.bytes } : undefined);
      } catch (e) {
        const err = toCloudmillError(e);
        if (ended) break;
        if (copy.signal.aborted) {
          // Its backup finished first.
          await deps.queue.delete(msg.receiptHandle);
          continue;
        }
        if (err.context.lasting) {
          await deps.queue.delete(msg.receiptHandle);
          // Where in the input it was met says nothing of it: the disk is the cause.
          lastingFailure ??= new CloudmillError(err.code, err.message, { jobId: manifest.jobId, lasting: true }, { cause: err.cause });
          await fail(err).catch(() => undefined);
          finish("failed");
          continue;
        }
        const next = await afterFailedAttempt(deps, task, err, msg.receiveCount);
        if (next.action === "fail-job") {
          await deps.queue.delete(msg.receiptHandle);
          await fail(err);
        } else {
          // After its last attempt the task goes to the dead letters, which fail the job.
          const what = next.last ? "task failed on its last attempt" : "task failed; will retry";
          deps.log.warn(what, { task: index, attempt: msg.receiveCount, error: err.describe() });
          await deps.queue.changeVisibility(msg.receiptHandle, 0);
        }
      } finally {
        if (mapping.get(index)?.copies[0] === copy) mapping.delete(index);
      }
    }
  };

  const deadLetterLoop = async () => {
    while (!ended) {
      const [msg] = await deadLetters.receive({ maxMessages: 1, waitSeconds: 1, signal: stop.signal });
      if (!msg || ended) continue;
      if ((await handleDeadLetter(deps, msg.body, msg.receiveCount, (err) => withLineNumber(err, inputs, root))) === "failed")
        finish("failed");
      await deadLetters.delete(msg.receiptHandle);
    }
  };

  const totals: MergedParts[] = [];
  // No chunks to map (a keyed job of empty inputs): its reduce tasks are queued already.
  if (goal === 0) finish("complete");
  try {
    for (;;) {
      await Promise.all([...Array.from({ length: concurrency }, taskLoop), deadLetterLoop()]);
      if (ended !== "complete" || !orderFree) break;
      appendAll(totals, await executor.collect(manifest.jobId));
      const lost = lostChunks(heldOnlyInTotals, totals);
      if (lost.length === 0) break;
      deps.log.warn("a task thread died holding the only merge of some chunks; mapping them again", { chunks: lost.length });
      const again = await tasksOf(deps.output, manifest, lost);
      for (const t of again) {
        done.delete(t.chunk.index);
        heldOnlyInTotals.delete(t.chunk.index);
        bytesDone -= chunkBytes(t.chunk);
      }
      // A deadline or an interrupt met while ended was "complete" went unheard: hear it now.
      ended = undefined;
      stop = new AbortController();
      if (options.signal?.aborted) finish("aborted");
      if (failedByDeadline) {
        await failedByDeadline;
        finish("failed");
      }
      if (ended) break;
      await enqueueTasks(deps.queue, again);
    }
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    // A keyed job's deadline covers its reduce stage too; any other job's ends with its map stage.
    if (!(ended === "complete" && tasks > manifest.chunks)) clearTimeout(deadline);
  }
  try {
    if (lastingFailure) throw lastingFailure;
    if (ended === "aborted") throw new CloudmillError(ErrorCode.CANCELLED, "interrupted", { jobId: manifest.jobId });
    if (ended !== "complete") return;
    merged = inOrder ?? new OrderedPartMerge(mergeDeps, manifest, totals);
    const outcome = await reduceJob(deps, manifest.jobId, { merged, locate: (err) => withLineNumber(err, inputs, root) });
    // A keyed job's map stage is done: reduceJob enqueued its reduce tasks; run them, then reduce again.
    if (outcome.kind !== "incomplete" || tasks <= manifest.chunks) return;
    goal = tasks;
    ended = undefined;
    stop = new AbortController();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    if (options.signal?.aborted) finish("aborted");
    // The deadline may have passed while the stage ended: it failed the job, so no reduce task runs.
    if (failedByDeadline) {
      await failedByDeadline;
      finish("failed");
    }
    try {
      if (!ended) await Promise.all([...Array.from({ length: concurrency }, taskLoop), deadLetterLoop()]);
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
    }
    if (lastingFailure) throw lastingFailure;
    if (ended === "aborted") throw new CloudmillError(ErrorCode.CANCELLED, "interrupted", { jobId: manifest.jobId });
    if (ended !== "complete") return;
    clearTimeout(deadline);
    await reduceJob(deps, manifest.jobId);
  } finally {
    clearTimeout(deadline);
    inOrder?.close();
    if (merged !== inOrder) merged?.close();
  }
};

/** Chunks held only in a thread's total that is in none of `totals` (its thread died). */
const lostChunks = (heldOnlyInTotals: ReadonlySet<number>, totals: readonly MergedParts[]): number[] => {
  const held = new Set(totals.flatMap((t) => t.chunks));
  return [...heldOnlyInTotals.keys()].filter((i) => !held.has(i));
};
