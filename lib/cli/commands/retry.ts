/** `cloudmill retry <job>`: resume a failed or cancelled job; only its tasks with no part run again. */
import { Command } from "commander";
import * as z from "zod";
import { parseFlags, usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import type { CliIO } from "../io.js";
import { LIMIT_FLAGS, limitFlag, limitsOf } from "../options.js";

const RetryFlags = z.object({
  taskTimeout: limitFlag.taskTimeout,
  taskMemory: limitFlag.taskMemory,
  maxRecordBytes: limitFlag.maxRecordBytes,
  maxCostUsd: limitFlag.maxCostUsd,
  deadline: limitFlag.deadline,
});

export const retryCommand = (io: CliIO): Command =>
  withCloudOptions(
    new Command("retry")
      .description("resume a failed or cancelled job: only its chunks with no part run again, every part written is kept")
      .argument("<job>", "the job id")
      .option(LIMIT_FLAGS.taskTimeout, "a new time limit per chunk")
      .option(LIMIT_FLAGS.taskMemory, "a new heap limit per chunk")
      .option(LIMIT_FLAGS.maxRecordBytes, "a new longest record, e.g. 256MiB")
      .option(LIMIT_FLAGS.maxCostUsd, "a new price ceiling (for a job that stopped with COST_LIMIT)")
      .option(LIMIT_FLAGS.deadline, "a new deadline for the job, counted from now (default: the stack's)")
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
      const s = await mill.job(jobId).retry(limitsOf(flags));
      const tasks = s.resumed?.tasks ?? 0;
      io.stdout.write(
        `job ${jobId} resumed: ${tasks} of ${s.chunks} tasks to run again (${s.chunks - tasks} kept); ` +
          `\`cloudmill wait ${jobId}\` waits for it\n`,
      );
    });
  });
