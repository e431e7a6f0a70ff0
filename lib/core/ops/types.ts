/** What an op is, internally: a chunk mapper, an n-way merger and a finalizer over JSON partials. */
import type { CloudmillError } from "../errors.js";
import type { Format, Params } from "../job/spec.js";
import type { RecordBlock } from "../records/alignedBlocks.js";

export interface MapContext {
  /** Position of this chunk's input in the job's input list. */
  readonly inputIndex: number;
  /** How users name the input (`data.txt`, `s3://bucket/key`). */
  readonly inputName: string;
  readonly format: Format;
  /** Column names of a CSV input whose header is on. */
  readonly header?: readonly string[];
  /**
   * Reports a record that cannot be parsed. Throws it (the default, onBadRecord: fail)
   * or counts it and returns (onBadRecord: skip).
   */
  bad(error: CloudmillError): void;
}

/** Maps the records of one chunk to a partial. Blocks always hold whole records. */
export interface ChunkMapper<A> {
  /** Called once per block; the block's bytes are reused after it returns (copy what is kept). */
  block(block: RecordBlock): void;
  finish(): A;
}

/** Merges partials; `add` is called in chunk order, and the result may not depend on that order. */
export interface Merger<A> {
  add(partial: A): void;
  value(): A;
}

export interface FinalizeContext {
  /** How many inputs the job has. */
  readonly inputCount: number;
  /** The name of input `index`, for the indices the op's `namedInputs` gave (any other reads as its index). */
  inputName(index: number): string;
}

/** A finalize context that knows every input's name (a job whose inputs are at hand). */
export const namesContext = (names: readonly string[]): FinalizeContext => ({
  inputCount: names.length,
  inputName: (i) => names[i] ?? String(i),
});

/**
 * An op. Partials are plain JSON values (they are stored as part objects); merging is
 * associative and commutative, so any chunking and any merge order give the same result.
 */
export interface Op<P = unknown, A = unknown, R = unknown> {
  readonly name: string;
  /**
   * A digest of the op's code: a job records it, and a worker whose op differs refuses the job's
   * tasks. User ops get one from defineOp; built-ins are versioned with the package.
   */
  readonly digest?: string;
  readonly description: string;
  /** Formats the op accepts; the first is its default. */
  readonly formats: readonly Format[];
  /** One line per param, for `--help` and `cloudmill ops`. */
  readonly paramsHelp: readonly string[];
  /** Validates params (strings from the CLI, JSON values from a spec); throws INVALID_SPEC. */
  parseParams(raw: Params): P;
  mapper(params: P, ctx: MapContext): ChunkMapper<A>;
  merger(params: P): Merger<A>;
  /**
   * True when partials merged in any order and grouping give the very same result (integer
   * counts, exact sums): the local engine may then merge on its task threads as chunks finish,
   * rather than in chunk order on one thread. Leave it unset when rounding could depend on order.
   */
  readonly orderFreeMerge?: boolean;
  finalize(partial: A, params: P, ctx: FinalizeContext): R;
  /**
   * The inputs whose names `finalize` gives (grep's matches): a job of a million inputs keeps
   * their names in pieces, and only these are read. Absent: it names none.
   */
  namedInputs?(partial: A): Iterable<number>;
  /**
   * Records the op left out because the value it reads was not there (a JSONL field absent or
   * null), as SQL's aggregates leave out NULL: the job's status counts them as `missing`, so that
   * a result over fewer records than were read says so. Absent: it leaves none out.
   */
  missingValues?(partial: A): number;
  /**
   * Set on a keyed op (keyedOp.ts): its mapper's partial is a table of pairs, which the map task
   * writes to the shuffle partitioned by key; reduce tasks then combine each key's values and
   * write one line per key to the job's parts. `finalize` is never called.
   */
  readonly keyed?: KeyedReduce<P>;
  /**
   * Set on `sort`: its mapper's partial is its chunk's lines sorted (sortRun.ts), written to the
   * shuffle as one run; reduce tasks merge key ranges chosen from the runs' samples.
   */
  readonly sorts?: boolean;
  /**
   * Set on an op of the blob format that reads an object in the pieces it arrives in (a hash):
   * its mapper's `block` is called with each piece, so an object of any size is read in bounded
   * memory. Otherwise a blob op gets each object whole, as one block of at most maxRecordBytes.
   */
  readonly streamsBlobs?: boolean;
  /**
   * A lab op sets this when it is cheap enough (linear in its input, no dependency of the image
   * alone) to map a small job in the splitter's function, where the job starts. Built-ins are.
   */
  readonly inline?: boolean;
}

/** Ops whose result is partitioned into parts by reduce tasks: keyed ones and `sort`. */
export const isShuffled = (op: AnyOp): boolean => op.keyed !== undefined || op.sorts === true;

/** The reduce side of a keyed op. */
export interface KeyedReduce<P> {
  /** Combines two values of one key; associative and commutative. */
  combine(a: unknown, b: unknown, params: P): unknown;
  /** The output line (a JSON value) of a key once all its values are combined. */
  row(key: string, value: unknown, params: P): unknown;
  /** Combining keeps every value (a lab's `reduce`): held values grow by all they read. */
  readonly gathers?: boolean;
  /**
   * A value as JSON carries it, where `combine` keeps a cheaper form in memory: applied where a
   * value leaves (a map partial, a shuffle or spilled run). `combine` and `row` take either form.
   * Absent: values are JSON as they are.
   */
  toJson?(value: unknown): unknown;
}

/** An op with its types erased, as the registry holds it (methods are bivariant, so any Op fits). */
export type AnyOp = Op<unknown, unknown, unknown>;
