/**
 * The manifest (what the splitter decided), the task message (one per chunk) and the
 * status object users read. All three cross a process boundary, so all three have schemas.
 */
import * as z from "zod";
import { CODECS } from "../records/codecs.js";
import { Format, JobId, OnBadRecord, OpName, Params, PREFERENCES } from "./spec.js";

/** One input object as the splitter saw it: its ETag pins every read of the job. */
export const InputObject = z.strictObject({
  bucket: z.string(),
  key: z.string(),
  size: z.number().int().nonnegative(),
  etag: z.string(),
  /** How users name it in messages (`data.txt`, `s3://b/k`). */
  name: z.string(),
  /** How it is compressed, for an input of more than one chunk (a smaller one's task sees for itself). */
  codec: z.enum(CODECS).optional(),
  /**
   * An entry of a zip archive (`key` is the archive's, `size` the entry's compressed bytes): read
   * by range from its local header at `at`, decoded, checked against `size` and `crc32`.
   */
  member: z
    .strictObject({
      at: z.number().int().nonnegative(),
      method: z.enum(["stored", "deflate"]),
      crc32: z.number().int().nonnegative(),
      /** Decoded bytes. */
      size: z.number().int().nonnegative(),
      nameBytes: z.number().int().nonnegative(),
      /** The entry's name as the directory has it: its local header must repeat it (absent in jobs planned by 0.1). */
      entry: z.string().optional(),
      /** Where the next entry's local header (or the central directory) starts: its data must end by then (0.1: absent). */
      end: z.number().int().nonnegative().optional(),
      archiveSize: z.number().int().nonnegative(),
    })
    .optional(),
});
export type InputObject = z.infer<typeof InputObject>;

/** What every task of a job needs to know to map its chunk. */
export const TaskJob = z.strictObject({
  op: OpName,
  /** The digest of the op's code when the job started; a worker whose op differs refuses the task. */
  opDigest: z.string().optional(),
  params: Params,
  format: Format,
  onBadRecord: OnBadRecord,
  maxAttempts: z.number().int().min(1),
  /** Epoch milliseconds after which the job is failed (DEADLINE) by whichever worker meets one of its tasks. */
  deadline: z.number().optional(),
  /** The job's own time limit per chunk (else the worker's). */
  taskTimeoutSeconds: z.number().int().positive().optional(),
  /** A chunk running this long and 3× the median is given a backup (0: never). Else DEFAULTS.backupAfterSeconds. */
  backupAfterSeconds: z.number().int().nonnegative().optional(),
  /** The job's own heap limit per chunk, in MiB (else the worker's). */
  taskMemoryMiB: z.number().int().positive().optional(),
  /** The job's own longest record (else DEFAULTS.maxRecordBytes). */
  maxRecordBytes: z.number().int().positive().optional(),
  /** How many times the job had been resumed when this task was queued: a task of an earlier run is stale (resume.ts). */
  generation: z.number().int().positive().optional(),
  /** The job's price ceiling: the reducer fails it with COST_LIMIT once what it has done costs more. */
  maxCostUsd: z.number().positive().optional(),
  /** A keyed op's partition count: its map tasks split their pairs this many ways. */
  partitions: z.number().int().positive().optional(),
});
export type TaskJob = z.infer<typeof TaskJob>;

export const OutputLocation = z.strictObject({
  result: z.string(),
  status: z.string(),
});

/** Read loosely (unknown fields kept out, not refused), so a newer splitter's manifest stays readable. */
export const Manifest = z.object({
  v: z.literal(1),
  jobId: JobId,
  job: TaskJob,
  /**
   * Every input, in order; absent for a job of more than fit one piece (manifestInputs.ts): they
   * are then `inputCount` inputs in `inputPieces` objects beside the manifest.
   */
  inputs: z.array(InputObject).optional(),
  inputCount: z.number().int().positive().optional(),
  inputPieces: z.number().int().positive().optional(),
  /** Inputs in each piece but the last (absent: INPUTS_PER_PIECE), so that input i is found in piece ⌊i ÷ it⌋. */
  inputsPerPiece: z.number().int().positive().optional(),
  /** The digest of that list: its pieces' folder. */
  inputsDigest: z.string().optional(),
  /** The spec's inputs as given (a prefix, a manifest list): what a job of pieces shows for its inputs. */
  given: z.array(z.string()).optional(),
  /** Files its folders' or prefixes' listings left out (hiddenNames.ts): how many, and the first. */
  hidden: z.object({ count: z.number().int().positive(), first: z.array(z.string()) }).optional(),
  chunkSize: z.number().int().positive(),
  chunks: z.number().int().nonnegative(),
  output: OutputLocation,
  createdAt: z.string(),
  /** Epoch milliseconds after which the job is failed if not finished. */
  deadline: z.number(),
  /** What triggered the job (`s3://bucket/key`, `cli`, `sdk`). */
  trigger: z.string(),
  /** When the object that triggered the job was created (the S3 event's time), if known. */
  triggeredAt: z.string().optional(),
  /** Times the job was resumed after it failed or was cancelled (`cloudmill retry`). */
  retries: z.number().int().positive().optional(),
  /**
   * An order-free job's merge fan-in on the fleet (mergeTree.ts), fixed when it starts; absent (a
   * job whose op merges in chunk order, or planned by 0.2): no tree. Not in the task job: a
   * worker of 0.2 would refuse a task with a field it does not know.
   */
  fanIn: z.number().int().min(2).optional(),
  /** The spec's `prefer`: how far an idle fleet is woken for the job (its resumes too). */
  prefer: z.enum(PREFERENCES).optional(),
  /** When it was last resumed, and how many of its tasks that resume queued. */
  resumed: z.object({ at: z.string(), tasks: z.number().int().nonnegative() }).optional(),
});
export type Manifest = z.infer<typeof Manifest>;

/** Inputs a status or report names one by one: a job of more shows the spec's inputs as given, and the count. */
export const NAMED_INPUTS = 1000;

/** How many inputs a job has. */
export const inputCountOf = (m: Manifest): number => m.inputs?.length ?? m.inputCount ?? 0;

/**
 * The inputs a job's status and report show: each input's name (at most NAMED_INPUTS), or for a
 * job of pieces its spec's inputs as given; with `inputCount` wherever that is not every input.
 */
export const shownInputs = (m: Manifest): { inputs: string[]; inputCount?: number } => {
  const inputs = (m.inputs ? m.inputs.map((i) => i.name) : [...(m.given ?? [])]).slice(0, NAMED_INPUTS);
  return m.inputs && m.inputs.length <= NAMED_INPUTS ? { inputs } : { inputs, inputCount: inputCountOf(m) };
};

/** A whole input read by a chunk after its first (small objects are packed many per task). */
export const PackedInput = z.strictObject({
  inputIndex: z.number().int().nonnegative(),
  input: InputObject,
});
export type PackedInput = z.infer<typeof PackedInput>;

/** One chunk: a byte range of one input, or several whole small inputs. */
export const Chunk = z
  .strictObject({
    index: z.number().int().nonnegative(),
    /** Position of the input in the job's input list. */
    inputIndex: z.number().int().nonnegative(),
    input: InputObject,
    start: z.number().int().nonnegative(),
    end: z.number().int().nonnegative(),
    /** The whole inputs that follow `input` in this chunk, in input order; `input` is then whole too. */
    more: z.array(PackedInput).min(1).optional(),
  })
  .refine((c) => c.more === undefined || (c.start === 0 && c.end === c.input.size), {
    message: "a packed chunk reads its first input whole",
  });
export type Chunk = z.infer<typeof Chunk>;

/** The input bytes a chunk covers. */
export const chunkBytes = (chunk: Chunk): number => chunk.end - chunk.start + (chunk.more ?? []).reduce((n, m) => n + m.input.size, 0);

/** A chunk's inputs, each as a chunk of its own (whole, for a packed chunk): the chunk itself otherwise. */
export const chunkParts = (chunk: Chunk): Chunk[] =>
  chunk.more
    ? [
        { index: chunk.index, inputIndex: chunk.inputIndex, input: chunk.input, start: 0, end: chunk.input.size },
        ...chunk.more.map((m) => ({ index: chunk.index, inputIndex: m.inputIndex, input: m.input, start: 0, end: m.input.size })),
      ]
    : [chunk];

/** A map task: one chunk. Self-contained, so a worker never reads the manifest. */
export const MapTask = z.strictObject({
  v: z.literal(1),
  jobId: JobId,
  chunk: Chunk,
  job: TaskJob,
  /** A second copy of a straggling chunk (backups.ts): whichever copy writes the part first wins. */
  backup: z.literal(true).optional(),
  /** Map the chunk even though it has a part, and replace it (a resumed job's chunk whose kept reading failed it). */
  redo: z.literal(true).optional(),
});
export type MapTask = z.infer<typeof MapTask>;

/**
 * A keyed job's reduce task: one partition, once every map task is done. Its part has index
 * `chunks + partition`, beside the map parts, so one listing counts both stages and the
 * reducer hears of both.
 */
export const ReduceTask = z.strictObject({
  v: z.literal(1),
  jobId: JobId,
  reduce: z.strictObject({
    partition: z.number().int().nonnegative(),
    /** The job's map chunks. */
    chunks: z.number().int().nonnegative(),
  }),
  job: TaskJob,
  /** A copy of a straggling reduce task (backups.ts): dropped if it fails, never failing its job. */
  backup: z.literal(true).optional(),
});
export type ReduceTask = z.infer<typeof ReduceTask>;

/**
 * A merge of consecutive parts of a job with many chunks (mergeTree.ts): at level 1 map parts
 * `from`…`to - 1`, above it merged parts of the level below. Its output is merged part
 * (level, group) of the job's run `job.generation`.
 */
export const MergeTask = z.strictObject({
  v: z.literal(1),
  jobId: JobId,
  merge: z
    .strictObject({
      level: z.number().int().positive(),
      group: z.number().int().nonnegative(),
      from: z.number().int().nonnegative(),
      to: z.number().int().positive(),
    })
    .refine((m) => m.from < m.to, { message: "a merge reads at least one part" }),
  job: TaskJob,
  /** A copy of a straggling merge task (backups.ts): dropped if it fails, never failing its job. */
  backup: z.literal(true).optional(),
});
export type MergeTask = z.infer<typeof MergeTask>;

/** The body of one task message. */
export const TaskMessage = z.union([MapTask, ReduceTask, MergeTask]);
export type TaskMessage = z.infer<typeof TaskMessage>;

export const isMapTask = (task: TaskMessage): task is MapTask => "chunk" in task;
export const isReduceTask = (task: TaskMessage): task is ReduceTask => "reduce" in task;
export const isMergeTask = (task: TaskMessage): task is MergeTask => "merge" in task;

/** The index of a map or reduce task's part: its chunk's, or (a reduce task) chunks + partition. */
export const taskIndex = (task: MapTask | ReduceTask): number =>
  isReduceTask(task) ? task.reduce.chunks + task.reduce.partition : task.chunk.index;

/** A keyed job's tasks: its chunks and then a reduce task per partition. */
export const taskCount = (m: { readonly chunks: number; readonly job: TaskJob }): number => m.chunks + (m.job.partitions ?? 0);

export const JobState = z.enum(["running", "succeeded", "failed", "cancelled"]);
export type JobState = z.infer<typeof JobState>;

/** Where a task ran: in the splitter's function (a small job, inline), on the worker fleet, or on this machine (`cloudmill run`). */
export const RanOn = z.enum(["lambda", "fleet", "local"]);
export type RanOn = z.infer<typeof RanOn>;

/** When and where a task started. */
export const TaskStart = z.object({ on: RanOn, at: z.string() });
export type TaskStart = z.infer<typeof TaskStart>;

/** What a task's part records of its run: where, when, for how long, on which worker, over how many bytes. */
export const TaskRun = TaskStart.extend({
  ms: z.number().nonnegative().optional(),
  /** The process that ran it: `<host>/<pid>` on the fleet, `splitter` for an inline run. */
  worker: z.string().optional(),
  /** Input bytes the task read (its chunk's range or objects). */
  bytes: z.number().int().nonnegative().optional(),
  /** Objects it read, when more than one (a packed chunk). */
  objects: z.number().int().positive().optional(),
  /** The run was a straggler's backup, and its part won. */
  backup: z.literal(true).optional(),
});
export type TaskRun = z.infer<typeof TaskRun>;

export const JobStatus = z.object({
  jobId: JobId,
  state: JobState,
  chunks: z.number().int().nonnegative(),
  done: z.number().int().nonnegative(),
  op: z.string().optional(),
  /** The digest of the op's code the job runs (see Op.digest). */
  opDigest: z.string().optional(),
  /** Its inputs' names (at most NAMED_INPUTS), or for a job of more, its spec's inputs as given (a prefix, a list). */
  inputs: z.array(z.string()).optional(),
  /** How many inputs it has, when `inputs` does not name each. */
  inputCount: z.number().int().nonnegative().optional(),
  /** Files its folders' or prefixes' listings left out (names starting with . or _): how many, and the first. */
  hidden: z.object({ count: z.number().int().positive(), first: z.array(z.string()) }).optional(),
  /** While the splitter still lists the job's inputs (no chunk planned yet): objects listed so far, and the pieces stored. */
  listing: z.object({ objects: z.number().int().nonnegative(), pieces: z.number().int().positive() }).optional(),
  startedAt: z.string().optional(),
  /** When the upload or job spec that started the job was created. */
  triggeredAt: z.string().optional(),
  /** Times the job was resumed after it failed or was cancelled, and when last, with the tasks that resume queued. */
  retries: z.number().int().positive().optional(),
  resumed: z.object({ at: z.string(), tasks: z.number().int().nonnegative() }).optional(),
  /** The first task to start (while running: the first to finish's start), and where it ran. */
  firstChunk: TaskStart.optional(),
  /** Where the job's tasks ran (once it succeeded): `lambda`, `fleet`, or `lambda+fleet`. */
  ranOn: z.enum(["lambda", "fleet", "lambda+fleet", "local"]).optional(),
  finishedAt: z.string().optional(),
  /** Records skipped as bad (only with onBadRecord: skip). */
  skipped: z.number().int().nonnegative().optional(),
  /** Records left out because the value the op reads was not there (a JSONL field absent or null), only when some were. */
  missing: z.number().int().nonnegative().optional(),
  /** Backups queued for straggling chunks, and how many of them wrote the chunk's part first. */
  backups: z.object({ launched: z.number().int().nonnegative(), won: z.number().int().nonnegative() }).optional(),
  /** The separator `separator=auto` chose for each CSV input. */
  csv: z.array(z.object({ input: z.string(), separator: z.string() })).optional(),
  error: z
    .object({
      code: z.string(),
      message: z.string(),
      input: z.string().optional(),
      range: z.tuple([z.number(), z.number()]).optional(),
      offset: z.number().optional(),
      /** `offset` counts decoded bytes of a compressed input. */
      decoded: z.boolean().optional(),
      /** `offset` counts from the decoded start of the BGZF block at this compressed byte. */
      block: z.number().optional(),
      /** With `block`: `offset` counts the decoded bytes of the plain gzip members that start there, after BGZF blocks. */
      gzipTail: z.boolean().optional(),
      line: z.number().optional(),
      chunk: z.number().optional(),
      partition: z.number().optional(),
    })
    .optional(),
});
export type JobStatus = z.infer<typeof JobStatus>;
