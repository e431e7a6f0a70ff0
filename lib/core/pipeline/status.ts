/**
 * status.json is a view users read. The terminal facts live in their own objects
 * (result.json, _work/<id>/failure.json, _work/<id>/cancelled.json), and a progress update
 * re-checks them after writing, so a late "running" can never hide a finished job for long.
 */
import * as z from "zod";
import { cancelKey, failureKey, succeededKey } from "../keys.js";
import type { CloudmillError, ErrorContext } from "../errors.js";
import { JobStatus, shownInputs, taskCount, type Manifest, type TaskStart } from "../job/manifest.js";
import type { PipelineDeps } from "./deps.js";
import { exists, readJsonIfExists, writeJson } from "./blobJson.js";

export const StatusError = JobStatus.shape.error.unwrap();
export type StatusError = z.infer<typeof StatusError>;

/** A job's cancel marker: when it was cancelled, and when a cancel was last asked, if since. */
export const CancelRecord = z.object({
  at: z.string(),
  /** A cancel asked again (of a job cancelled already): a retry asked before it does not resume the job. */
  asked: z.string().optional(),
});
export type CancelRecord = z.infer<typeof CancelRecord>;

export const FailureRecord = z.object({
  error: StatusError,
  at: z.string(),
  /** The run of the job it failed (absent: every run up to now, as a failure before any run). */
  run: z.number().int().min(0).optional(),
});
export type FailureRecord = z.infer<typeof FailureRecord>;

/**
 * The job's failure marker, if it ends run `run`: a judge of an earlier run may write its marker
 * after a resume began this one (and take it back a moment later), which is no end of this run.
 */
export const failureOfRun = async (output: PipelineDeps["output"], jobId: string, run: number): Promise<FailureRecord | undefined> => {
  const failure = await readJsonIfExists(output, failureKey(jobId), FailureRecord);
  return failure && (failure.run === undefined || failure.run >= run) ? failure : undefined;
};

/** Whether a failure marker ends run `run`: for a run no resume began (0), its being there says so. */
export const failedInRun = async (output: PipelineDeps["output"], jobId: string, run: number): Promise<boolean> =>
  run === 0 ? exists(output, failureKey(jobId)) : (await failureOfRun(output, jobId, run)) !== undefined;

export const statusErrorOf = (err: CloudmillError): StatusError => {
  const c = err.context;
  return {
    code: err.code,
    message: err.describe(),
    ...(c.input !== undefined ? { input: c.input } : {}),
    ...(c.range ? { range: [c.range[0], c.range[1]] as [number, number] } : {}),
    ...(c.offset !== undefined ? { offset: c.offset } : {}),
    ...(c.decoded ? { decoded: true } : {}),
    ...(c.block !== undefined ? { block: c.block } : {}),
    ...(c.gzipTail ? { gzipTail: true } : {}),
    ...(c.line !== undefined ? { line: c.line } : {}),
    ...(c.chunk !== undefined ? { chunk: c.chunk } : {}),
    ...(c.partition !== undefined ? { partition: c.partition } : {}),
  };
};

/** Where a stored error is, as an error context (statusErrorOf's location fields read back). */
export const statusContext = (e: StatusError): ErrorContext => ({
  ...(e.input !== undefined ? { input: e.input } : {}),
  ...(e.range ? { range: e.range } : {}),
  ...(e.offset !== undefined ? { offset: e.offset } : {}),
  ...(e.decoded ? { decoded: true } : {}),
  ...(e.block !== undefined ? { block: e.block } : {}),
  ...(e.gzipTail ? { gzipTail: true } : {}),
  ...(e.line !== undefined ? { line: e.line } : {}),
});

/** Where a job's tasks ran, as its status reports it. */
export interface WhereRan {
  readonly firstChunk?: TaskStart;
  readonly ranOn?: JobStatus["ranOn"];
}

/** Gathers the starts parts record: the earliest, and the places tasks ran. */
export class TaskStarts {
  #first: TaskStart | undefined;
  readonly #places = new Set<TaskStart["on"]>();

  add(start: TaskStart): void {
    if (this.#first === undefined || start.at < this.#first.at) this.#first = { on: start.on, at: start.at };
    this.#places.add(start.on);
  }

  summary(): WhereRan {
    const ranOn = this.#places.size === 2 ? "lambda+fleet" : [...this.#places][0];
    return { ...(this.#first ? { firstChunk: this.#first } : {}), ...(ranOn ? { ranOn } : {}) };
  }
}

const base = (m: Manifest) => ({
  jobId: m.jobId,
  chunks: taskCount(m),
  op: m.job.op,
  ...(m.job.opDigest !== undefined ? { opDigest: m.job.opDigest } : {}),
  ...shownInputs(m),
  ...(m.hidden !== undefined ? { hidden: m.hidden } : {}),
  startedAt: m.createdAt,
  ...(m.triggeredAt !== undefined ? { triggeredAt: m.triggeredAt } : {}),
  ...(m.retries !== undefined ? { retries: m.retries } : {}),
  ...(m.resumed !== undefined ? { resumed: m.resumed } : {}),
});

export const runningStatus = (m: Manifest, done: number, firstChunk?: TaskStart): JobStatus => ({
  ...base(m),
  state: "running",
  done,
  ...(firstChunk ? { firstChunk } : {}),
});

export const succeededStatus = (
  m: Manifest,
  skipped: number,
  now: number,
  sniffed: readonly { input: string; separator: string }[] = [],
  ran: WhereRan = {},
): JobStatus => ({
  ...base(m),
  state: "succeeded",
  done: taskCount(m),
  ...ran,
  finishedAt: new Date(now).toISOString(),
  ...(skipped ? { skipped } : {}),
  ...(sniffed.length ? { csv: [...sniffed] } : {}),
});

/** The fields of a job's status that describe the job, not its end: kept when its end is shown. */
export const describingFields = (s: JobStatus): Partial<JobStatus> => {
  const { op, opDigest, inputs, inputCount, hidden, triggeredAt, retries, resumed, firstChunk } = s;
  return Object.fromEntries(
    Object.entries({ op, opDigest, inputs, inputCount, hidden, triggeredAt, retries, resumed, firstChunk }).filter(
      ([, v]) => v !== undefined,
    ),
  );
};

/** The status the terminal markers imply, if any: succeeded, then failed, then cancelled. */
export const terminalStatus = async (deps: PipelineDeps, m: Manifest, done: number): Promise<JobStatus | undefined> => {
  const succeeded = await readJsonIfExists(deps.output, succeededKey(m.jobId), JobStatus);
  if (succeeded) return succeeded;
  const failure = await failureOfRun(deps.output, m.jobId, m.retries ?? 0);
  if (failure) return { ...base(m), state: "failed", done, finishedAt: failure.at, error: failure.error };
  const cancel = await readJsonIfExists(deps.output, cancelKey(m.jobId), CancelRecord);
  if (cancel) return { ...base(m), state: "cancelled", done, finishedAt: cancel.at };
  return undefined;
};

const readStatus = (deps: PipelineDeps, statusKey: string): Promise<JobStatus | undefined> =>
  readJsonIfExists(deps.output, statusKey, JobStatus).catch(() => undefined);

/** Whether `current`, the status at a job's status key, is a later job's (the same upload key overwritten). */
export const isSuperseded = (current: JobStatus | undefined, jobId: string, startedAt: string | undefined): boolean =>
  startedAt !== undefined &&
  current !== undefined &&
  current.jobId !== jobId &&
  current.startedAt !== undefined &&
  current.startedAt > startedAt;

/**
 * True when the status at `statusKey` belongs to a job started later than this one (the
 * same upload key overwritten): an older job must then leave result and status alone.
 */
export const superseded = async (deps: PipelineDeps, statusKey: string, jobId: string, startedAt: string | undefined): Promise<boolean> =>
  startedAt !== undefined && isSuperseded(await readStatus(deps, statusKey), jobId, startedAt);

/**
 * Makes the status users read show the end the job's markers record, when the write that showed
 * it was lost (a failure handler whose status write failed after its marker; a late progress
 * write). One that shows it already, or a later job's status at the same key, is left alone.
 * Returns the end, if the job has one.
 */
export const showEnd = async (deps: PipelineDeps, m: Manifest): Promise<JobStatus | undefined> => {
  // The markers first: a running job (the reducer's every wake) costs no read of its status.
  const marked = await terminalStatus(deps, m, 0);
  if (!marked) return undefined;
  const current = await readStatus(deps, m.output.status);
  const own = current?.jobId === m.jobId ? current : undefined;
  // A failure or cancel keeps the progress the status showed.
  const end = marked.state === "succeeded" ? marked : { ...marked, done: own?.done ?? 0 };
  if (own?.state !== end.state && !isSuperseded(current, m.jobId, m.createdAt)) await writeJson(deps.output, m.output.status, end);
  return end;
};

/**
 * Writes a progress status unless the job has ended; repairs it if the job ended meanwhile.
 * `firstStart` tells when the first task started, asked only until a status records it.
 */
export const writeProgress = async (
  deps: PipelineDeps,
  m: Manifest,
  done: number,
  firstStart?: () => Promise<TaskStart | undefined>,
): Promise<void> => {
  if (await terminalStatus(deps, m, done)) return;
  const current = await readStatus(deps, m.output.status);
  if (isSuperseded(current, m.jobId, m.createdAt)) return;
  const known = current?.jobId === m.jobId ? current.firstChunk : undefined;
  const firstChunk = known ?? (done > 0 ? await firstStart?.() : undefined);
  await writeJson(deps.output, m.output.status, runningStatus(m, done, firstChunk));
  const after = await terminalStatus(deps, m, done);
  if (after) await writeJson(deps.output, m.output.status, after);
};
