/** `cloudmill jobs`: recent jobs, newest first, with their states. */
import { Command } from "commander";
import * as z from "zod";
import { DEFAULT_JOBS_LIMIT } from "../../sdk/constants.js";
import type { JobSummary } from "../../sdk/types.js";
import type { JobStatus } from "../../core/job/manifest.js";
import { parseFlags, usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import { numberFlag } from "../options.js";
import type { CliIO } from "../io.js";

/** Rows padded into columns. */
export const table = (rows: readonly (readonly string[])[]): string => {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
};

const short = (inputs: readonly string[] | undefined, inputCount?: number): string => {
  if (!inputs?.length) return "-";
  const first = inputs[0]!.replace(/^s3:\/\/[^/]+\/_uploads\/[^/]+\//, "");
  // A job of more inputs than its status names: the count, not what the status names less one.
  if (inputCount !== undefined) return `${first}${inputs.length > 1 ? " …" : ""} (${inputCount} inputs)`;
  return inputs.length > 1 ? `${first} +${inputs.length - 1}` : first;
};

/** From the upload (or the job's start) to its first chunk's start, and where that ran: `1.8s lambda`. */
export const firstChunkAfter = (j: Pick<JobStatus, "triggeredAt" | "startedAt" | "firstChunk">): string => {
  const from = Date.parse(j.triggeredAt ?? j.startedAt ?? "");
  const to = Date.parse(j.firstChunk?.at ?? "");
  if (!Number.isFinite(from) || !Number.isFinite(to)) return "-";
  const s = Math.max(0, to - from) / 1000;
  return `${s < 10 ? s.toFixed(1) : Math.round(s)}s ${j.firstChunk!.on}`;
};

export const jobsTable = (jobs: readonly JobSummary[]): string =>
  table([
    ["JOB", "STATE", "CHUNKS", "OP", "FIRST CHUNK", "UPDATED", "INPUTS"],
    ...jobs.map((j) => [
      j.jobId,
      j.state,
      `${j.state === "succeeded" ? j.chunks : j.done}/${j.chunks}`,
      j.op ?? "-",
      firstChunkAfter(j),
      j.updatedAt
        ? j.updatedAt
            .toISOString()
            .replace("T", " ")
            .replace(/\.\d+Z$/, "Z")
        : "-",
      short(j.inputs, j.inputCount),
    ]),
  ]);

const JobsFlags = z.object({
  limit: numberFlag("a whole number", { min: 1, max: 1000 }).default(DEFAULT_JOBS_LIMIT),
  json: z.boolean().default(false),
});

export const jobsCommand = (io: CliIO): Command =>
  withCloudOptions(
    new Command("jobs")
      .description("list recent jobs and their states, newest first")
      .option("-n, --limit <n>", `how many (default ${DEFAULT_JOBS_LIMIT})`)
      .option("--json", "print them as JSON"),
  ).action(async (raw: Record<string, unknown>) => {
    const flags = parseFlags(JobsFlags, raw);
    await usingCloudmill(raw, io, async (mill) => {
      const jobs = await mill.jobs({ limit: flags.limit, ...(io.signal ? { signal: io.signal } : {}) });
      if (flags.json) io.stdout.write(`${JSON.stringify(jobs, null, 2)}\n`);
      else io.stdout.write(jobs.length ? `${jobsTable(jobs)}\n` : "no jobs yet (cloudmill submit starts one)\n");
    });
  });
