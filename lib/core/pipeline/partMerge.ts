/** Merging a job's parts in chunk order, reading ahead, in bounded memory. */
import { partKey } from "../keys.js";
import { CloudmillError, ErrorCode } from "../errors.js";
import type { Manifest } from "../job/manifest.js";
import { RunLog } from "../report/jobReport.js";
import type { AnyOp } from "../ops/types.js";
import { isTaskOp } from "../ops/defineTask.js";
import type { RemoteFolder } from "./mappers.js";
import type { PipelineDeps } from "./deps.js";
import { raiseKept, type SniffedSeparator } from "./part.js";
import type { Span } from "./spans.js";
import { mergeTaskIndex, readPartSpan, treeOf, type MergeLevel } from "./mergeTree.js";
import { TaskStarts, type WhereRan } from "./status.js";

/** Parts merged elsewhere already (the local engine's task threads): their chunks and merged partial. */
export interface MergedParts {
  readonly chunks: readonly number[];
  readonly partial: unknown;
  readonly skipped: number;
}

/** Parts read ahead of the one being merged. */
const READ_AHEAD = 16;

/** What a merge reads, in order: a job's map parts, or (a merge tree's top) its merged parts. */
export interface SpanSource {
  readonly count: number;
  read(index: number, key: string): Promise<Span>;
}

/** A job's map parts, one per chunk. */
const mapParts = (deps: PipelineDeps, manifest: Manifest): SpanSource => ({
  count: manifest.chunks,
  read: (index, key) => readPartSpan(deps, manifest.jobId, index, key),
});

/**
 * Merges a job's parts strictly in chunk order (so the result's bytes never depend on
 * which chunk finished first), reading a few parts ahead and holding at most READ_AHEAD
 * at once. Going in order, it knows each CSV chunk's quote state and picks its reading.
 * The local engine tells it of each part as its chunk finishes, so merging overlaps
 * mapping; or, for an order-free op, seeds it with what its task threads merged
 * themselves, which is merged first. reduceJob merges whatever is still left.
 */
export class OrderedPartMerge {
  readonly #jobId: string;
  readonly #chunks: number;
  /** The job's merge levels (merge tasks' runs are numbered by them in the report). */
  readonly #levels: readonly MergeLevel[];
  readonly #source: SpanSource;
  readonly #op: AnyOp;
  readonly #params: unknown;
  /** The op's merger here, or, for a lab op where the role has mapper threads, its fold there. */
  readonly #merger: { add(partial: unknown): Promise<void> | void; value(): unknown };
  /**
   * A lab op's merges and finalize run on a mapper thread where the role has them (the local
   * engine, the dev cloud, the reducer function): each call under the job's time and heap limits,
   * so that op code that never returns fails the job rather than hanging the process that reduces it.
   */
  readonly #folder: RemoteFolder | undefined;
  /** Keys of parts that exist but are not merged yet. */
  readonly #ready = new Map<number, string>();
  /** Chunks whose partials are in `seed`: merged already. */
  readonly #seeded = new Set<number>();
  /**
   * A lone seed, not fed to the merger until a part must join it: a merger fed one partial
   * gives back the same (merging is associative, and starts from nothing), and feeding it
   * costs as much as the merge that made it (wordcount hashes every word again).
   */
  #loneSeed: { readonly partial: unknown } | undefined;
  #next = 0;
  #skipped = 0;
  /** A CSV input's quote state before the next part's first byte (see QuoteSpeculation). */
  #insideQuotes = false;
  /** Separators `separator=auto` chose, by input. */
  readonly #sniffed: SniffedSeparator[] = [];
  readonly #starts = new TaskStarts();
  /** Each part's run, for the job's report. */
  readonly #runs = new RunLog();
  #merging: Promise<void> = Promise.resolve();

  constructor(deps: PipelineDeps, manifest: Manifest, seed: readonly MergedParts[] = [], source = mapParts(deps, manifest)) {
    this.#jobId = manifest.jobId;
    this.#chunks = manifest.chunks;
    this.#levels = treeOf(manifest)?.levels ?? [];
    this.#source = source;
    this.#op = deps.registry.get(manifest.job.op);
    this.#params = this.#op.parseParams(manifest.job.params);
    const { job } = manifest;
    const op = this.#op;
    this.#folder =
      deps.mappers && op.digest !== undefined && !isTaskOp(op) && !op.keyed && !op.sorts
        ? deps.mappers.fold({
            op: op.name,
            params: job.params,
            what: `job ${this.#jobId}`,
            ...(job.taskTimeoutSeconds !== undefined ? { timeoutSeconds: job.taskTimeoutSeconds } : {}),
            ...(job.taskMemoryMiB !== undefined ? { memoryMiB: job.taskMemoryMiB } : {}),
          })
        : undefined;
    this.#merger = this.#folder ?? this.#op.merger(this.#params);
    const seeds: unknown[] = [];
    for (const s of seed) {
      for (const i of s.chunks) {
        if (this.#seeded.has(i)) throw new CloudmillError(ErrorCode.INTERNAL, `chunk ${i} of job ${this.#jobId} was merged twice`);
        this.#seeded.add(i);
      }
      if (seed.length === 1) this.#loneSeed = { partial: s.partial };
      else seeds.push(s.partial);
      this.#skipped += s.skipped;
    }
    if (seeds.length > 0)
      this.#schedule(async () => {
        for (const p of seeds) await this.#merger.add(p);
      });
  }

  /**
   * The op's result of the merged partial (its finalize); `names` are the inputs' names its
   * `namedInputs` asked for (read by the caller: they may be in the job's input pieces).
   */
  async finalize(partial: unknown, inputCount: number, names: ReadonlyMap<number, string>): Promise<unknown> {
    if (this.#folder) return this.#folder.finalize(partial, inputCount, names);
    return this.#op.finalize(partial, this.#params, { inputCount, inputName: (i: number) => names.get(i) ?? String(i) });
  }

  /** Gives back the thread a lab op's merges ran on. */
  close(): void {
    this.#folder?.close();
  }

  /** Part `index` exists now: merges it, and those after it that exist, once every earlier part is merged. */
  ready(index: number, key = partKey(this.#jobId, index)): void {
    if (index < this.#next) return;
    this.#ready.set(index, key);
    if (index === this.#next) this.#schedule();
  }

  /** Merges every remaining part of `parts` (all of the job's), and reads out the merged partial. */
  async complete(parts: ReadonlyMap<number, string>): Promise<{
    readonly partial: unknown;
    readonly skipped: number;
    readonly sniffed: readonly SniffedSeparator[];
    readonly ran: WhereRan;
    readonly runs: RunLog;
  }> {
    for (const [index, key] of parts) if (index >= this.#next) this.#ready.set(index, key);
    this.#schedule();
    await this.#merging;
    if (this.#next !== this.#source.count)
      throw new CloudmillError(ErrorCode.INTERNAL, `part ${this.#next} of job ${this.#jobId} is missing`);
    return {
      partial: this.#loneSeed ? this.#loneSeed.partial : await this.#merger.value(),
      skipped: this.#skipped,
      sniffed: this.#sniffed,
      ran: this.#starts.summary(),
      runs: this.#runs,
    };
  }

  /** How many chunks are merged already or have a part in `parts`. */
  covered(parts: ReadonlyMap<number, string>): number {
    let n = parts.size;
    for (const i of this.#seeded) if (!parts.has(i)) n++;
    return n;
  }

  get op(): AnyOp {
    return this.#op;
  }

  get params(): unknown {
    return this.#params;
  }

  #schedule(step: () => Promise<void> = () => this.#drain()): void {
    // One merge at a time; after a failure nothing more is merged and complete() throws it.
    this.#merging = this.#merging.then(step);
    this.#merging.catch(() => undefined);
  }

  async #drain(): Promise<void> {
    // A seeded chunk is merged already: its slot in the read-ahead is a settled undefined.
    const read = async (i: number) => (this.#seeded.has(i) ? undefined : this.#source.read(i, this.#ready.get(i)!));
    const ahead: ReturnType<typeof read>[] = [];
    let queued = this.#next;
    const fill = (): void => {
      while (ahead.length < READ_AHEAD && queued < this.#source.count && (this.#seeded.has(queued) || this.#ready.has(queued))) {
        const p = read(queued++);
        // A read that fails while an earlier one is awaited must not go unhandled: it is awaited in turn.
        p.catch(() => undefined);
        ahead.push(p);
      }
    };
    fill();
    while (ahead.length > 0) {
      const span = await ahead.shift()!;
      fill();
      const i = this.#next;
      if (span) {
        const { reading, insideAfter } = span.readingFrom(this.#insideQuotes);
        if (reading.error) throw raiseKept(reading.error);
        this.#insideQuotes = insideAfter;
        if (this.#loneSeed) await this.#merger.add(this.#loneSeed.partial);
        this.#loneSeed = undefined;
        await this.#merger.add(reading.partial);
        this.#skipped += reading.skipped;
        for (const s of span.sniffed) this.#sniffed.push(s);
        for (const [chunk, run] of span.runs) {
          this.#starts.add(run);
          this.#runs.add(chunk, run);
        }
        for (const [level, group, run] of span.merges) this.#runs.add(mergeTaskIndex(this.#levels, this.#chunks, level, group), run);
      }
      this.#ready.delete(i);
      this.#next = i + 1;
    }
  }
}
