/**
 * The reduce role: once every part exists, merge them in chunk order and write
 * result.json, then the final status. Deterministic, so two reducers finishing at once
 * write the same bytes; repeated or concurrent calls are harmless.
 */
import { z } from "zod";
import { cancelKey, failureKey, manifestKey, parsePartKey, partKey, partsPrefix, succeededKey } from "../keys.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../errors.js";
import { JobStatus, Manifest } from "../job/manifest.js";
import type { AnyOp, Merger } from "../ops/types.js";

import { nowOf, type PipelineDeps } from "./deps.js";
import { exists, readJson, readJsonIfExists, writeJson } from "./blobJson.js";
import { failJob } from "./deadLetter.js";
import { logFieldsOf, succeededStatus, superseded, writeProgress } from "./status.js";

export const PartSchema = z.object({
  v: z.literal(1),
  jobId: z.string(),
  index: z.number().int().nonnegative(),
  partial: z.unknown(),
  skipped: z.number().int().nonnegative(),
});

/** Parts merged elsewhere already (the local engine's task threads): their chunks and merged partial. */
export interface MergedParts {
  readonly chunks: readonly number[];
  readonly partial: unknown;
  readonly skipped: number;
}

/** Parts read ahead of the one being merged. */
const READ_AHEAD = 16;

/**
 * Merges a job's parts strictly in chunk order (so the result's bytes never depend on
 * which chunk finished first), reading a few parts ahead and holding at most READ_AHEAD
 * at once. The local engine tells it of each part as its chunk finishes, so merging
 * overlaps mapping; or, for an order-free op, seeds it with what its task threads merged
 * themselves, which is merged first. reduceJob merges whatever is still left.
 */
export class OrderedPartMerge {
  readonly #deps: PipelineDeps;
  readonly #jobId: string;
  readonly #chunks: number;
  readonly #op: AnyOp;
  readonly #params: unknown;
  readonly #merger: Merger<unknown>;
  /** Keys of parts that exist but are not merged yet. */
  readonly #ready = new Map<number, string>();
  /** Chunks whose partials are in `seed`: merged already. */
  readonly #seeded = new Set<number>();
  /**
   * A lone seed, not fed to the merger until a part must join it: a merger fed one partial
   * gives back the same (merging is associative, and starts from nothing), and feeding it
   * costs as much as the merge that made it (wordcount hashes every word again).
   */
  #lone: { readonly partial: unknown } | undefined;
  #next = 0;
  #skipped = 0;
  #merging: Promise<void> = Promise.resolve();

  constructor(deps: PipelineDeps, manifest: Manifest, seed: readonly MergedParts[] = []) {
    this.#deps = deps;
    this.#jobId = manifest.jobId;
    this.#chunks = manifest.chunks;
    this.#op = deps.registry.get(manifest.job.op);
    this.#params = this.#op.parseParams(manifest.job.params);
    this.#merger = this.#op.merger(this.#params);
    for (const s of seed) {
      for (const i of s.chunks) {
        if (this.#seeded.has(i)) throw new CloudmillError(ErrorCode.INTERNAL, `chunk ${i} of job ${this.#jobId} was merged twice`);
        this.#seeded.add(i);
      }
      if (seed.length === 1) this.#lone = { partial: s.partial };
      else this.#merger.add(s.partial);
      this.#skipped += s.skipped;
    }
  }

  /** Part `index` exists now: merges it, and those after it that exist, once every earlier part is merged. */
  ready(index: number, key = partKey(this.#jobId, index)): void {
    if (index < this.#next) return;
    this.#ready.set(index, key);
    if (index === this.#next) this.#schedule();
  }

  /** Merges every remaining part of `parts` (all of the job's), and reads out the merged partial. */
  async complete(parts: ReadonlyMap<number, string>): Promise<{ readonly partial: unknown; readonly skipped: number }> {
    for (const [index, key] of parts) if (index >= this.#next) this.#ready.set(index, key);
    this.#schedule();
    await this.#merging;
    if (this.#next !== this.#chunks) throw new CloudmillError(ErrorCode.INTERNAL, `part ${this.#next} of job ${this.#jobId} is missing`);
    return { partial: this.#lone ? this.#lone.partial : this.#merger.value(), skipped: this.#skipped };
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

  #schedule(): void {
    // One merge at a time; after a failure nothing more is merged and complete() throws it.
    this.#merging = this.#merging.then(() => this.#drain());
    this.#merging.catch(() => undefined);
  }

  async #drain(): Promise<void> {
    // A seeded chunk is merged already: its slot in the read-ahead is a settled undefined.
    const read = async (i: number) => (this.#seeded.has(i) ? undefined : readJson(this.#deps.output, this.#ready.get(i)!, PartSchema));
    const ahead: ReturnType<typeof read>[] = [];
    let queued = this.#next;
    const fill = (): void => {
      while (ahead.length < READ_AHEAD && queued < this.#chunks && (this.#seeded.has(queued) || this.#ready.has(queued))) {
        const p = read(queued++);
        // A read that fails while an earlier one is awaited must not go unhandled: it is awaited in turn.
        p.catch(() => undefined);
        ahead.push(p);
      }
    };
    fill();
    while (ahead.length > 0) {
      const part = await ahead.shift()!;
      fill();
      const i = this.#next;
      if (part) {
        if (part.jobId !== this.#jobId || part.index !== i) throw new CloudmillError(ErrorCode.INTERNAL, `part ${i} of job ${this.#jobId} holds job ${part.jobId} chunk ${part.index}`);
        if (this.#lone) this.#merger.add(this.#lone.partial);
        this.#lone = undefined;
        this.#merger.add(part.partial);
        this.#skipped += part.skipped;
      }
      this.#ready.delete(i);
      this.#next = i + 1;
    }
  }
}

export type ReduceOutcome =
  | { readonly kind: "incomplete"; readonly done: number; readonly chunks: number }
  | { readonly kind: "succeeded"; readonly result: unknown; readonly status: JobStatus }
  | { readonly kind: "already-succeeded"; readonly status: JobStatus }
  | { readonly kind: "ended" }
  | { readonly kind: "unknown-job" };

/** Indexes of the parts that exist, from one listing. */
const listParts = async (deps: PipelineDeps, jobId: string): Promise<Map<number, string>> => {
  const parts = new Map<number, string>();
  for await (const info of deps.output.list(partsPrefix(jobId))) {
    const p = parsePartKey(info.key);
    if (p && p.jobId === jobId) parts.set(p.index, info.key);
  }
  return parts;
};

/** `merged`: parts already merged as they arrived (the local engine); the rest are read here. */
export const reduceJob = async (deps: PipelineDeps, jobId: string, merged?: OrderedPartMerge): Promise<ReduceOutcome> => {
  const manifest = await readJsonIfExists(deps.output, manifestKey(jobId), Manifest);
  if (!manifest) return { kind: "unknown-job" };
  const log = deps.log.child({ jobId });

  const succeeded = await readJsonIfExists(deps.output, succeededKey(jobId), JobStatus);
  if (succeeded) {
    // Make sure the status users read says so (a late progress write may have raced it).
    await writeJson(deps.output, manifest.output.status, succeeded);
    return { kind: "already-succeeded", status: succeeded };
  }
  if ((await exists(deps.output, failureKey(jobId))) || (await exists(deps.output, cancelKey(jobId)))) return { kind: "ended" };

  const parts = await listParts(deps, jobId);
  // Chunks merged on the local engine's task threads may have no part.
  const done = merged ? merged.covered(parts) : parts.size;
  if (done < manifest.chunks) {
    if (nowOf(deps) > manifest.deadline) {
      await failJob(deps, { jobId, output: manifest.output, chunks: manifest.chunks, done, startedAt: manifest.createdAt }, new CloudmillError(
        ErrorCode.DEADLINE,
        `job did not finish before its deadline (${done} of ${manifest.chunks} chunks done)`,
        { jobId },
      ));
      return { kind: "ended" };
    }
    await writeProgress(deps, manifest, done);
    return { kind: "incomplete", done, chunks: manifest.chunks };
  }

  try {
    const merge = merged ?? new OrderedPartMerge(deps, manifest);
    const { partial, skipped } = await merge.complete(parts);
    const { op, params } = merge;
    const result = op.finalize(partial, params, { inputs: manifest.inputs.map((i) => i.name) });
    const status = succeededStatus(manifest, skipped, nowOf(deps));
    if (await superseded(deps, manifest.output.status, jobId, manifest.createdAt)) {
      await writeJson(deps.output, succeededKey(jobId), status);
      log.info("job succeeded but a later job owns its output; result not written", { chunks: manifest.chunks });
      return { kind: "succeeded", result, status };
    }
    // Result first: whoever sees the succeeded marker may rely on result.json being there.
    await writeJson(deps.output, manifest.output.result, result);
    await writeJson(deps.output, succeededKey(jobId), status);
    await writeJson(deps.output, manifest.output.status, status);
    log.info("job succeeded", { chunks: manifest.chunks, skipped });
    return { kind: "succeeded", result, status };
  } catch (err) {
    const error = toCloudmillError(err).withContext({ jobId });
    // S3 failing us (throttling, 5xx, a reset connection) is not the job's fault: throw, and
    // the reducer's event is retried (SQS redelivers it), rather than failing an exact job.
    if (error.code === ErrorCode.ENVIRONMENT) throw error;
    log.error("reduce failed", logFieldsOf(error));
    await failJob(deps, { jobId, output: manifest.output, chunks: manifest.chunks, done, startedAt: manifest.createdAt }, error);
    return { kind: "ended" };
  }
};
