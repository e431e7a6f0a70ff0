/**
 * The reduce role: once every part exists, merge them in chunk order and write
 * result.json, then the final status. Deterministic, so two reducers finishing at once
 * write the same bytes; repeated or concurrent calls are harmless.
 */
import { z } from "zod";
import { cancelKey, failureKey, manifestKey, parsePartKey, partsPrefix, succeededKey } from "../config/keys.js";
import { CloudmillError, ErrorCode, toCloudmillError } from "../errors.js";
import { JobStatus, Manifest } from "../job/manifest.js";
import { nowOf, type PipelineDeps } from "./deps.js";
import { exists, readJson, readJsonIfExists, writeJson } from "./io.js";
import { failJob } from "./fail.js";
import { logFieldsOf, succeededStatus, superseded, writeProgress } from "./status.js";

export const PartSchema = z.object({
  v: z.literal(1),
  jobId: z.string(),
  index: z.number().int().nonnegative(),
  partial: z.unknown(),
  skipped: z.number().int().nonnegative(),
});

/** Parts read ahead of the one being merged. */
const READ_AHEAD = 16;

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

export const reduceJob = async (deps: PipelineDeps, jobId: string): Promise<ReduceOutcome> => {
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
  if (parts.size < manifest.chunks) {
    if (nowOf(deps) > manifest.deadline) {
      await failJob(deps, { jobId, output: manifest.output, chunks: manifest.chunks, done: parts.size, startedAt: manifest.createdAt }, new CloudmillError(
        ErrorCode.DEADLINE,
        `job did not finish before its deadline (${parts.size} of ${manifest.chunks} chunks done)`,
        { jobId },
      ));
      return { kind: "ended" };
    }
    await writeProgress(deps, manifest, parts.size);
    return { kind: "incomplete", done: parts.size, chunks: manifest.chunks };
  }

  const op = deps.registry.get(manifest.job.op);
  const params = op.parseParams(manifest.job.params);
  const merger = op.merger(params);
  let skipped = 0;
  try {
    // Parts are read a few at a time but merged strictly in chunk order (deterministic bytes);
    // at most READ_AHEAD parts are held at once.
    const read = (i: number) => readJson(deps.output, parts.get(i)!, PartSchema);
    const ahead: ReturnType<typeof read>[] = [];
    for (let i = 0; i < Math.min(READ_AHEAD, manifest.chunks); i++) ahead.push(read(i));
    // A read that fails while an earlier one is awaited must not go unhandled: it is awaited in turn.
    for (const p of ahead) p.catch(() => undefined);
    for (let i = 0; i < manifest.chunks; i++) {
      const part = await ahead.shift()!;
      if (i + READ_AHEAD < manifest.chunks) {
        const next = read(i + READ_AHEAD);
        next.catch(() => undefined);
        ahead.push(next);
      }
      if (part.jobId !== jobId || part.index !== i) throw new CloudmillError(ErrorCode.INTERNAL, `part ${i} of job ${jobId} holds job ${part.jobId} chunk ${part.index}`);
      merger.add(part.partial);
      skipped += part.skipped;
    }
    const result = op.finalize(merger.value(), params, { inputs: manifest.inputs.map((i) => i.name) });
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
    await failJob(deps, { jobId, output: manifest.output, chunks: manifest.chunks, done: parts.size, startedAt: manifest.createdAt }, error);
    return { kind: "ended" };
  }
};
