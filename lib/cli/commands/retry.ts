/** `cloudmill retry <job>`: resume a failed or cancelled job; only its tasks with no part run again. */
import { Command } from "commander";
import * as z from "zod";
import { parseFlags, usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import type { CliIO } from "../io.js";
import { numberFlag } from "../options.js";

const RetryFlags = z.object({
  taskTimeout: numberFlag("whole seconds", { min: 1, max: 86_400 }).optional(),
  taskMemory: numberFlag("whole MiB", { min: 64, max: 65_536 }).optional(),
  maxRecordBytes: z.string().optional(),
  maxCostUsd: numberFlag("dollars", { above: 0, max: 1_000_000, fraction: true }).optional(),
  deadline: numberFlag("whole seconds", { min: 1, max: 7 * 86_400 }).optional(),
});

export const retryCommand = (io: CliIO): Command =>
  withCloudOptions(
    new Command("retry")
      .description("resume a failed or cancelled job: only its chunks with no part run again, every part written is kept")
      .argument("<job>", "the job id")
      .option("--task-timeout <seconds>", "a new time limit per chunk")
      .option("--task-memory <MiB>", "a new heap limit per chunk")
      .option("--max-record-bytes <size>", "a new longest record, e.g. 256MiB")
      .option("--max-cost-usd <dollars>", "a new price ceiling (for a job that stopped with COST_LIMIT)")
      .option("--deadline <seconds>", "a new deadline for the job, counted from now (default: the stack's)")
      .addHelpText(
        "after",
        `
Examples:
  $ cloudmill retry job-20261203T101500-9f1c02ab5e7d4c21 --task-timeout 3600
  $ cloudmill retry job-20261203T101500-9f1c02ab5e7d4c21 --task-memory 4096 && cloudmill wait job-20261203T101500-9f1c02ab5e7d4c21`,
      ),
  ).action(async (jobId: string, raw: Record<string, unknown>) => {
    const flags = parseFlags(RetryFlags, raw);
    await usingCloudmill(raw, io, async (mill) => {
      const s = await mill.job(jobId).retry({
        ...(flags.taskTimeout !== undefined ? { taskTimeoutSeconds: flags.taskTimeout } : {}),
        ...(flags.taskMemory !== undefined ? { taskMemoryMiB: flags.taskMemory } : {}),
        ...(flags.maxRecordBytes !== undefined ? { maxRecordBytes: flags.maxRecordBytes } : {}),
        ...(flags.maxCostUsd !== undefined ? { maxCostUsd: flags.maxCostUsd } : {}),
        ...(flags.deadline !== undefined ? { deadlineSeconds: flags.deadline } : {}),
      });
      const tasks = s.resumed?.tasks ?? 0;
      io.stdout.write(
        `job ${jobId} resumed: ${tasks} of ${s.chunks} tasks to run again (${s.chunks - tasks} kept); ` +
          `\`cloudmill wait ${jobId}\` waits for it\n`,
      );
    });
  });
