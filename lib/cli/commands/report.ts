/** `cloudmill report <job>`: a finished job's report, as one line, JSON, or a self-contained HTML page. */
import { Command } from "commander";
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../../core/errors.js";
import type { JobReport } from "../../core/report/jobReport.js";
import { reportHtml } from "../../core/report/html.js";
import { parseFlags, usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import type { CliIO } from "../io.js";
import { pricedAs } from "./estimate.js";
import { type OutputStreams, writeOutputFile } from "./result.js";

/** One line: tasks, workers, wall time, stragglers and cost. */
export const reportLine = (r: JobReport): string => {
  const wall = (Date.parse(r.finishedAt) - Date.parse(r.startedAt)) / 1000;
  const slowest = r.stragglers[0];
  const stragglers = slowest
    ? `${r.straggling} straggler(s), slowest chunk ${slowest.index} on ${slowest.worker} at ${slowest.timesMedian}× the median`
    : "no stragglers";
  const lost = r.backups?.lostSeconds !== undefined ? `, the losing copies ran ${r.backups.lostSeconds.toFixed(1)} s` : "";
  const backups = r.backups ? ` (${r.backups.launched} backed up, ${r.backups.won} of them finished first${lost})` : "";
  const cost = r.cost.fleetPriced
    ? `task-time cost $${r.cost.total.toFixed(6)} ` +
      `(${r.cost.instanceType ?? "no instance"} ${pricedAs(r.cost.capacity)} of ${r.cost.pricesAsOf})`
    : `fleet time unpriced (${r.cost.instanceType} is not in the price table)`;
  return (
    `job ${r.jobId}: ${r.taskCount} tasks on ${r.workers.length} worker(s) in ${wall.toFixed(1)} s; ${stragglers}${backups}; ` +
    (r.workers.every((w) => w.on === "local") ? "on this machine (no AWS cost)" : cost)
  );
};

/** Writes the page as writeOutputFile writes a file (this process's stdout through `io`); an unwritable path is one clear line. */
export const writeReportHtml = (file: string, report: JobReport, io?: OutputStreams): Promise<void> =>
  writeOutputFile(file, reportHtml(report), io);

const ReportFlags = z.object({ html: z.string().optional(), json: z.boolean().default(false) });

export const reportCommand = (io: CliIO): Command =>
  withCloudOptions(
    new Command("report")
      .description("a finished job's report: tasks per worker, stragglers, throughput and cost")
      .argument("<job>", "the job id")
      .option("--html <file>", "write it as one self-contained HTML page (no script, no fetch)")
      .option("--json", "print report.json"),
  ).action(async (jobId: string, raw: Record<string, unknown>) => {
    const flags = parseFlags(ReportFlags, raw);
    await usingCloudmill(raw, io, async (mill) => {
      const report = await mill.report(jobId, io.signal ? { signal: io.signal } : {});
      if (!report) {
        // Only a job that succeeds gets one: a job that ended otherwise never will.
        const { state } = await mill.job(jobId).status();
        const why =
          state === "failed" || state === "cancelled"
            ? `job ${jobId} has no report: it ${state === "failed" ? "failed" : "was cancelled"}, and only a job that succeeds gets one ` +
              `(\`cloudmill status ${jobId}\` says why it ended)`
            : state === "succeeded"
              ? `job ${jobId} succeeded without a report (a job of no tasks has none; see the reducer's log if it had tasks)`
              : `job ${jobId} has no report yet: the reducer writes one when the job succeeds (\`cloudmill wait ${jobId}\`)`;
        throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, why, { jobId });
      }
      if (flags.html) await writeReportHtml(flags.html, report, io);
      if (flags.json) io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else io.stdout.write(`${reportLine(report)}${flags.html ? `\nwrote ${flags.html}` : ""}\n`);
    });
  });
