/**
 * The S3 key layout (docs/design.md, "S3 key layout"), in one place.
 * Input bucket: `<op>/<any/path>` uploads and `_jobs/<jobId>.json` specs.
 * Output bucket: results beside the input's key, job-spec results under `_jobs/<jobId>/`,
 * intermediate state under `_work/<jobId>/`.
 */

export const JOBS_PREFIX = "_jobs/";
export const WORK_PREFIX = "_work/";
export const RESULT_FILE = "result.json";
export const STATUS_FILE = "status.json";
/** Parts end in this suffix, so an S3 notification filter can select exactly them. */
export const PART_SUFFIX = ".part.json";

/** The deployed ops, with their code digests, in the output bucket (written where the registry is set up). */
export const OPS_LISTING_KEY = "_ops/registry.json";

/** Output bucket: each worker's latest usage report (lib/aws/usage.ts), by ECS task id or host and pid. */
export const FLEET_PREFIX = "_fleet/";
export const usageKey = (worker: string): string => `${FLEET_PREFIX}${worker.replace(/[^A-Za-z0-9._-]/g, "-")}.json`;

/** Input bucket: `_retries/<jobId>.json` asks the splitter to resume a failed or cancelled job (docs/reliability.md). */
export const RETRIES_PREFIX = "_retries/";
export const retryRequestKey = (jobId: string): string => `${RETRIES_PREFIX}${jobId}.json`;

/**
 * Input bucket: local files the SDK or CLI staged for a job, under `_uploads/<jobId>/` (keys
 * starting with `_` never trigger a job); the stack expires them with the job's `_work/` state.
 */
export const UPLOADS_PREFIX = "_uploads/";

/** Key of a job spec in the input bucket. */
export const jobSpecKey = (jobId: string): string => `${JOBS_PREFIX}${jobId}.json`;

/** Where a job writes its result and status, in the output bucket. */
export interface OutputKeys {
  readonly result: string;
  readonly status: string;
}

/** The longest key S3 takes, in UTF-8 bytes. */
export const S3_MAX_KEY_BYTES = 1024;

const utf8 = new TextEncoder();
/** Whether S3 takes `key`: at most S3_MAX_KEY_BYTES bytes of UTF-8. */
export const fitsS3Key = (key: string): boolean => key.length * 3 <= S3_MAX_KEY_BYTES || utf8.encode(key).length <= S3_MAX_KEY_BYTES;

/** Result and status of a job started by an upload at `inputKey` (same key, plus `/result.json`). */
export const uploadOutputKeys = (inputKey: string): OutputKeys => ({
  result: `${inputKey}/${RESULT_FILE}`,
  status: `${inputKey}/${STATUS_FILE}`,
});

/** Result and status of a job started by a job spec. */
export const jobSpecOutputKeys = (jobId: string): OutputKeys => ({
  result: `${JOBS_PREFIX}${jobId}/${RESULT_FILE}`,
  status: `${JOBS_PREFIX}${jobId}/${STATUS_FILE}`,
});

/** What a task's items write (ctx.put and large outputs), for any job: the worker may write these and no other `_jobs/` keys. */
export const ITEM_OUTPUT_PATTERNS = [`${JOBS_PREFIX}*/files/*`, `${JOBS_PREFIX}*/results/*`] as const;

/** Objects a task's items store with ctx.put: `_jobs/<jobId>/files/<name>`. */
/** A finished job's report (report.ts), beside a spec job's result. */
export const reportKey = (jobId: string): string => `${JOBS_PREFIX}${jobId}/report.json`;
export const jobFilesPrefix = (jobId: string): string => `${JOBS_PREFIX}${jobId}/files/`;
/** An item's output too large to travel in its part, stored on its own; the result refers to it. */
export const itemResultKey = (jobId: string, input: number, offset: number): string =>
  `${JOBS_PREFIX}${jobId}/results/${input}-${offset}.json`;

export const workPrefix = (jobId: string): string => `${WORK_PREFIX}${jobId}/`;
export const manifestKey = (jobId: string): string => `${workPrefix(jobId)}manifest.json`;
/**
 * One piece of a job's input list, when it has too many inputs to list in its manifest
 * (manifestInputs.ts), under the list's digest: two splitter runs of one job that listed
 * different inputs never mix their pieces.
 */
export const inputPieceKey = (jobId: string, list: string, piece: number): string =>
  `${workPrefix(jobId)}inputs/${list}/${pad(piece)}.json`;
/** A job's listing handed on between splitter invocations (listing.ts): its spec as read, and its pieces in order. */
export const listingSpecKey = (jobId: string): string => `${workPrefix(jobId)}listing/spec.json`;
export const listingPieceKey = (jobId: string, seq: number): string => `${workPrefix(jobId)}listing/${pad(seq)}.json`;
export const partsPrefix = (jobId: string): string => `${workPrefix(jobId)}parts/`;
export const errorsPrefix = (jobId: string): string => `${workPrefix(jobId)}errors/`;
/** Written once a job has failed; it wins over any later progress update. */
export const failureKey = (jobId: string): string => `${workPrefix(jobId)}failure.json`;
/** The final status of a succeeded job, written after its result.json. */
export const succeededKey = (jobId: string): string => `${workPrefix(jobId)}succeeded.json`;
/** Written when the splitter has enqueued every task: a duplicate trigger then does nothing. */
export const enqueuedKey = (jobId: string): string => `${workPrefix(jobId)}enqueued.json`;
/** Written when the splitter begins mapping a small job itself (inline.ts). */
export const inlineKey = (jobId: string): string => `${workPrefix(jobId)}inline.json`;
/** Written when a job is cancelled. */
export const cancelKey = (jobId: string): string => `${workPrefix(jobId)}cancelled.json`;
/** The end a resumed job had before its `retry`-th resume (its failure or cancel marker, kept). */
export const pastEndKey = (jobId: string, retry: number): string => `${workPrefix(jobId)}retries/${pad(retry)}.json`;

/** A long chunk's running marker: written by its worker's heartbeat, it wakes the reducer to look for stragglers. */
export const RUNNING_SUFFIX = ".running.json";
export const runningPrefix = (jobId: string): string => `${workPrefix(jobId)}running/`;
/**
 * A marker's run in its key: nothing for a job's first run, `.g<generation>` for a resumed run's.
 * Two runs' copies of one task never write the same marker, so a copy queued before a resume
 * and still running cannot hide the new run's copy, nor its backup stand for the new run's.
 */
const runSuffix = (generation = 0): string => (generation > 0 ? `.g${generation}` : "");
export const runningKey = (jobId: string, index: number, generation = 0): string =>
  `${runningPrefix(jobId)}${pad(index)}${runSuffix(generation)}${RUNNING_SUFFIX}`;
/**
 * A long merge or reduce task's lease note, rewritten by its worker every LEASE_NOTE_EVERY_MS
 * while it runs: while it is fresh, the task is not queued again as lost. Beside its running
 * marker, but of another suffix, so that writing it wakes no reducer.
 */
export const leaseNoteKey = (jobId: string, index: number, generation = 0): string =>
  `${runningPrefix(jobId)}${pad(index)}${runSuffix(generation)}.lease.json`;
/** The job, task and run a running marker belongs to, or undefined when the key is not one. */
export const parseRunningKey = (key: string): { jobId: string; index: number; generation: number } | undefined => {
  const m = /^_work\/([^/]+)\/running\/(\d{7,})(?:\.g(\d+))?\.running\.json$/.exec(key);
  return m ? { jobId: m[1]!, index: Number(m[2]), generation: Number(m[3] ?? 0) } : undefined;
};
/** Whether writing an output key raises an S3 event for the reducer: the stack's notification filter (prefix _work/, this suffix). */
export const raisesReducerEvent = (key: string): boolean => key.startsWith(WORK_PREFIX) && key.endsWith(RUNNING_SUFFIX);
/** Written once when a straggling chunk's backup is queued: at most one backup per chunk and run, and the job's count. */
export const backupsPrefix = (jobId: string): string => `${workPrefix(jobId)}backups/`;
export const backupKey = (jobId: string, index: number, generation = 0): string =>
  `${backupsPrefix(jobId)}${pad(index)}${runSuffix(generation)}.json`;
/** Written by a backup that found its chunk's part not yet written, just before it writes it: the backup won. */
export const backupWonKey = (jobId: string, index: number, generation = 0): string =>
  `${backupsPrefix(jobId)}${pad(index)}${runSuffix(generation)}.won.json`;
/** A backup marker's task and run, and whether it says the backup won; undefined for another key. */
export const parseBackupKey = (jobId: string, key: string): { index: number; generation: number; won: boolean } | undefined => {
  if (!key.startsWith(backupsPrefix(jobId))) return undefined;
  const m = /^(\d{7,})(?:\.g(\d+))?(\.won)?\.json$/.exec(key.slice(backupsPrefix(jobId).length));
  return m ? { index: Number(m[1]), generation: Number(m[2] ?? 0), won: m[3] !== undefined } : undefined;
};

/** Chunk indexes are zero-padded so that keys sort in chunk order. */
const pad = (index: number): string => String(index).padStart(7, "0");

/** A part's key is a pure function of (job id, chunk index): a repeated task rewrites the same key. */
export const partKey = (jobId: string, index: number): string => `${partsPrefix(jobId)}${pad(index)}${PART_SUFFIX}`;
/** Every chunk's part of every job, as an IAM resource pattern. */
export const CHUNK_PART_PATTERN = `${partsPrefix("*")}*${PART_SUFFIX}`;
export const chunkErrorKey = (jobId: string, index: number): string => `${errorsPrefix(jobId)}${pad(index)}.json`;

/** A map task's shuffle output for one reading of its chunk (0: as read; 1: as if inside CSV quotes). */
export const shuffleKey = (jobId: string, index: number, reading: number): string =>
  `${workPrefix(jobId)}shuffle/${pad(index)}-${reading}.jsonl`;
/** The shuffle segments a reduce task merges, written when the map stage is done. */
export const reducePlanKey = (jobId: string, partition: number): string => `${workPrefix(jobId)}reduce/${pad(partition)}.plan.json`;
/** A keyed job's map tasks' runs (a RunLog's JSON), kept for its report when its reduce tasks are enqueued. */
export const reduceRunsKey = (jobId: string): string => `${workPrefix(jobId)}reduce/runs.json`;
/** When the reducer's pending wake-up for a job is due (pipeline/wake.ts). */
export const wakeKey = (jobId: string): string => `${workPrefix(jobId)}wake.json`;
/** Since when the task queue has looked idle while the job's merge or reduce tasks were past their lease (wake.ts). */
export const idleKey = (jobId: string): string => `${workPrefix(jobId)}idle.json`;
/** Written once a keyed job's reduce tasks are enqueued. */
export const reduceEnqueuedKey = (jobId: string): string => `${workPrefix(jobId)}reduce/enqueued.json`;
/** When a keyed job's missing reduce tasks were last queued again (a lost task, or a resume). */
export const reduceRequeuedKey = (jobId: string): string => `${workPrefix(jobId)}reduce/requeued.json`;
/** Where a reduce task spills runs in its scratch store (a worker's disk, or S3); `attempt` keeps two attempts apart. */
export const spillPrefix = (jobId: string, partition: number, attempt: string): string =>
  `${workPrefix(jobId)}spill/${pad(partition)}/${attempt}/`;
/** Every spilled run, for the worker's permission to remove those that went to S3. */
export const SPILL_PATTERN = `${WORK_PREFIX}*/spill/*`;
/** One partition of a keyed job's output: `_jobs/<jobId>/part-00000.jsonl` (JSON lines), or `.txt` (a sort's lines). */
export const outputPartKey = (jobId: string, partition: number, extension: ".jsonl" | ".txt" = ".jsonl"): string =>
  `${JOBS_PREFIX}${jobId}/part-${String(partition).padStart(5, "0")}${extension}`;
/** What a keyed job's reduce tasks write (the worker may write these `_jobs/` keys too). */
export const OUTPUT_PART_PATTERN = `${JOBS_PREFIX}*/part-*`;

/**
 * A fleet job of many chunks merges its parts in a tree of merge tasks (mergeTree.ts). A merged
 * part's key is a pure function of (job, run, level, group); each run of a resumed job merges
 * under its own generation, so a part mapped again is never hidden by an older merge (a resume
 * writes the run before's merged parts over parts that stay under the new run: carryMergedParts).
 * It ends in PART_SUFFIX, so writing it wakes the reducer as a part does.
 */
export const mergedPrefix = (jobId: string, generation: number): string => `${workPrefix(jobId)}merged/${generation}/`;
export const mergedKey = (jobId: string, generation: number, level: number, group: number): string =>
  `${mergedPrefix(jobId, generation)}${level}-${pad(group)}${PART_SUFFIX}`;
/**
 * Written by the reducer once it has queued a merge task, named by when (epoch ms), so a later
 * call queues it no more until the lease runs out (a listing tells when, without a read).
 */
export const mergeQueuedKey = (jobId: string, generation: number, level: number, group: number, at: number): string =>
  `${mergedPrefix(jobId, generation)}${level}-${pad(group)}.queued-${at}.json`;
/** A merge task's latest error (the dead-letter handler reads it). */
export const mergeErrorKey = (jobId: string, generation: number, level: number, group: number): string =>
  `${errorsPrefix(jobId)}merged-${generation}-${level}-${pad(group)}.json`;

/** What a merged part's key (or its queued marker's) names; `queuedAt`: a marker's time. */
export const parseMergedKey = (
  key: string,
): { jobId: string; generation: number; level: number; group: number; queuedAt?: number } | undefined => {
  const m = /^_work\/([^/]+)\/merged\/(\d+)\/(\d+)-(\d{7,})(?:\.part|\.queued-(\d+))\.json$/.exec(key);
  if (!m) return undefined;
  const named = { jobId: m[1]!, generation: Number(m[2]), level: Number(m[3]), group: Number(m[4]) };
  return m[5] === undefined ? named : { ...named, queuedAt: Number(m[5]) };
};

/** The chunk index a part key names, or undefined when the key is not a part key. */
export const parsePartKey = (key: string): { jobId: string; index: number } | undefined => {
  const m = /^_work\/([^/]+)\/parts\/(\d{7,})\.part\.json$/.exec(key);
  return m ? { jobId: m[1]!, index: Number(m[2]) } : undefined;
};
