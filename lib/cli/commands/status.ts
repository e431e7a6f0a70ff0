/** `cloudmill status <job>`: where a job is, in one line (or its status JSON with --json). */
import { Command } from "commander";
import * as z from "zod";
import type { JobStatus } from "../../sdk/types.js";
import { parseFlags, usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import type { CliIO } from "../io.js";

const when = (iso: string | undefined): string => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "-");

/** `job-…  running  12/40 chunks (30%)  wordcount  started 2026-11-21 10:15:00Z`, and the error of a failed job. */
export const describeStatus = (s: JobStatus): string => {
  const pct = s.chunks > 0 ? ` (${Math.floor(((s.state === "succeeded" ? s.chunks : s.done) / s.chunks) * 100)}%)` : "";
  // While the splitter still lists its inputs, there are no chunks yet: how far the listing got.
  const progress = s.listing
    ? `listing: ${s.listing.objects.toLocaleString("en-US")} objects so far`
    : `${s.state === "succeeded" ? s.chunks : s.done}/${s.chunks} chunks${pct}`;
  const parts = [s.jobId, s.state, progress];
  if (s.op) parts.push(s.op);
  if (s.startedAt) parts.push(`started ${when(s.startedAt)}`);
  if (s.finishedAt) parts.push(`ended ${when(s.finishedAt)}`);
  let line = parts.join("  ");
  if (s.skipped) line += `  (${s.skipped} bad records skipped)`;
  if (s.missing) line += `  (${s.missing} records without the field skipped)`;
  if (s.error) line += `\n  error: ${s.error.code}: ${s.error.message}`;
  return line;
};

const StatusFlags = z.object({ json: z.boolean().default(false) });

export const statusCommand = (io: CliIO): Command =>
  withCloudOptions(
    new Command("status")
      .description("show a job's state and progress (chunks done of total)")
      .argument("<job>", "the job id")
      .option("--json", "print status.json as it is"),
  ).action(async (jobId: string, raw: Record<string, unknown>) => {
    const flags = parseFlags(StatusFlags, raw);
    await usingCloudmill(raw, io, async (mill) => {
      const status = await mill.job(jobId).status();
      io.stdout.write(flags.json ? `${JSON.stringify(status, null, 2)}\n` : `${describeStatus(status)}\n`);
    });
  });
