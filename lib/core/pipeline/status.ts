/**
 * status.json is a view users read. The terminal facts live in their own objects
 * (result.json, _work/<id>/failure.json, _work/<id>/cancelled.json), and a progress update
 * re-checks them after writing, so a late "running" can never hide a finished job for long.
 */
import { z } from "zod";
import { cancelKey, failureKey, succeededKey } from "../keys.js";
import type { CloudmillError, ErrorContext } from "../errors.js";
import { JobStatus, taskCount, type Manifest } from "../job/manifest.js";
import type { PipelineDeps } from "./deps.js";
import { readJsonIfExists, writeJson } from "./blobJson.js";

export const StatusError = JobStatus.shape.error.unwrap();
export type StatusError = z.infer<typeof StatusError>;

export const FailureRecord = z.object({ error: StatusError, at: z.string() });

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
  ...(e.line !== undefined ? { line: e.line } : {}),
});

const base = (m: Manifest) => ({
  jobId: m.jobId,
  chunks: taskCount(m),
  op: m.job.op,
  ...(m.job.opDigest !== undefined ? { opDigest: m.job.opDigest } : {}),
  inputs: m.inputs.map((i) => i.name),
  startedAt: m.createdAt,
});

export const runningStatus = (m: Manifest, done: number): JobStatus => ({ ...base(m), state: "running", done });

export const succeededStatus = (
  m: Manifest,
  skipped: number,
  now: number,
  sniffed: readonly { input: string; separator: string }[] = [],
): JobStatus => ({
  ...base(m),
  state: "succeeded",
  done: taskCount(m),
  finishedAt: new Date(now).toISOString(),
  ...(skipped ? { skipped } : {}),
  ...(sniffed.length ? { csv: [...sniffed] } : {}),
});

/** The status the terminal markers imply, if any: succeeded, then failed, then cancelled. */
export const terminalStatus = async (deps: PipelineDeps, m: Manifest, done: number): Promise<JobStatus | undefined> => {
  const succeeded = await readJsonIfExists(deps.output, succeededKey(m.jobId), JobStatus);
  if (succeeded) return succeeded;
  const failure = await readJsonIfExists(deps.output, failureKey(m.jobId), FailureRecord);
  if (failure) return { ...base(m), state: "failed", done, finishedAt: failure.at, error: failure.error };
  const cancel = await readJsonIfExists(deps.output, cancelKey(m.jobId), z.object({ at: z.string() }));
  if (cancel) return { ...base(m), state: "cancelled", done, finishedAt: cancel.at };
  return undefined;
};

/**
 * True when the status at `statusKey` belongs to a job started later than this one (the
 * same upload key overwritten): an older job must then leave result and status alone.
 */
export const superseded = async (deps: PipelineDeps, statusKey: string, jobId: string, startedAt: string | undefined): Promise<boolean> => {
  if (startedAt === undefined) return false;
  const current = await readJsonIfExists(deps.output, statusKey, JobStatus).catch(() => undefined);
  return current !== undefined && current.jobId !== jobId && current.startedAt !== undefined && current.startedAt > startedAt;
};

/** Writes a progress status unless the job has ended; repairs it if the job ended meanwhile. */
export const writeProgress = async (deps: PipelineDeps, m: Manifest, done: number): Promise<void> => {
  if (await terminalStatus(deps, m, done)) return;
  if (await superseded(deps, m.output.status, m.jobId, m.createdAt)) return;
  await writeJson(deps.output, m.output.status, runningStatus(m, done));
  const after = await terminalStatus(deps, m, done);
  if (after) await writeJson(deps.output, m.output.status, after);
};
