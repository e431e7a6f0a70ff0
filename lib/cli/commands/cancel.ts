/** `cloudmill cancel <job>`: stop a job's queued chunks and mark it cancelled. */
import { Command } from "commander";
import { usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import type { CliIO } from "../io.js";

export const cancelCommand = (io: CliIO): Command =>
  withCloudOptions(
    new Command("cancel")
      .description("cancel a job: workers skip its queued chunks and its state becomes cancelled")
      .argument("<job>", "the job id"),
  ).action(async (jobId: string, raw: Record<string, unknown>) => {
    await usingCloudmill(raw, io, async (mill) => {
      const future = mill.job(jobId);
      await future.status(); // an unknown job id is an error, not a cancel marker
      const s = await future.cancel();
      io.stdout.write(
        s.state === "cancelled"
          ? `job ${jobId} cancelled (${s.done} of ${s.chunks} chunks were done)\n`
          : `job ${jobId} had already ${s.state}; nothing to cancel\n`,
      );
    });
  });
