/** `cloudmill wait <job>`: a progress bar on stderr until the job ends, then its result on stdout. */
import { Command } from "commander";
import { hiddenNotice } from "../../core/hiddenNames.js";
import * as z from "zod";
import { CloudmillError } from "../../core/errors.js";
import type { JobFuture } from "../../sdk/JobFuture.js";
import type { JobStatus } from "../../sdk/types.js";
import { parseFlags, stoppedWaiting, usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import type { CliIO } from "../io.js";
import { numberFlag } from "../options.js";
import { bar, barWidth, statusLine } from "../progress.js";
import { checkWritableFile, writeResult } from "./result.js";
import { reportLine } from "./report.js";

const clock = (ms: number): string => {
  const s = Math.floor(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
};

/** One line of a job's progress: `[#####-----] 12/40 chunks  30%  running  1m02s`. */
export const describeJobProgress = (s: JobStatus, elapsedMs: number, width = 30): string => {
  const fraction = s.state === "succeeded" ? 1 : s.chunks > 0 ? Math.min(1, s.done / s.chunks) : 0;
  const done = s.state === "succeeded" ? s.chunks : s.done;
  return `${bar(fraction, width)} ${done}/${s.chunks} chunks  ${Math.round(fraction * 100)}%  ${s.state}  ${clock(elapsedMs)}`;
};

export interface JobProgressView {
  update(status: JobStatus): void;
  done(): void;
}

/** A redrawn bar on a TTY; otherwise a line when the progress changes, at most every 2 s (and the last). */
export const jobProgressView = (io: CliIO, label: string, enabled = true): JobProgressView => {
  const out = statusLine(io, { enabled });
  const width = io.stderr.isTTY === true ? barWidth(io, 50 + label.length) : 30;
  const started = Date.now();
  return {
    update(s) {
      const ended = s.state !== "pending" && s.state !== "running";
      out.show(`${label} ${describeJobProgress(s, Date.now() - started, width)}`, ended, `${s.state} ${s.done}`);
    },
    done: () => out.done(),
  };
};

/** Waits for one job with a progress view, mapping Ctrl-C to "stopped waiting". */
export const waitWithProgress = async <R>(
  future: JobFuture<R>,
  io: CliIO,
  options: { progress: boolean; timeoutMs?: number },
): Promise<R> => {
  const view = jobProgressView(io, future.id, options.progress);
  let skipped = 0;
  let hidden: JobStatus["hidden"];
  try {
    const result = await future.result({
      onStatus: (s) => {
        skipped = s.skipped ?? skipped;
        hidden = s.hidden ?? hidden;
        view.update(s);
      },
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      ...(io.signal ? { signal: io.signal } : {}),
    });
    view.done();
    // As `cloudmill run` says it: the result alone does not show what was left out.
    if (skipped > 0) io.stderr.write(`cloudmill: ${future.id}: skipped ${skipped} bad record(s)\n`);
    if (hidden) io.stderr.write(`cloudmill: ${future.id}: ${hiddenNotice(hidden)}\n`);
    return result;
  } catch (err) {
    if (io.signal?.aborted && !(err instanceof CloudmillError)) throw stoppedWaiting([future.id]);
    throw err;
  } finally {
    view.done();
  }
};

const WaitFlags = z.object({
  timeout: numberFlag("seconds", { above: 0, fraction: true }).optional(),
  progress: z.boolean().default(true),
  out: z.string().optional(),
});

export const waitCommand = (io: CliIO): Command =>
  withCloudOptions(
    new Command("wait")
      .description("wait for a job to end, with a progress bar on stderr; then print its result")
      .argument("<job>", "the job id (cloudmill submit prints it)")
      .option("--timeout <seconds>", "give up waiting after this long (the job goes on)")
      .option("-o, --out <file>", "write the result JSON here instead of stdout")
      .option("--no-progress", "no progress on stderr"),
  )
    .addHelpText("after", "\nExample:\n  $ cloudmill wait job-20261121T101500-9f1c02ab5e7d4c21 --endpoint http://127.0.0.1:4566")
    .action(async (jobId: string, raw: Record<string, unknown>) => {
      const flags = parseFlags(WaitFlags, raw);
      await checkWritableFile("--out", flags.out);
      await usingCloudmill(raw, io, async (mill) => {
        const result = await waitWithProgress(mill.job(jobId), io, {
          progress: flags.progress,
          ...(flags.timeout !== undefined ? { timeoutMs: flags.timeout * 1000 } : {}),
        });
        // One line of what the job took: its report, when the reducer has written it.
        const report = flags.progress ? await mill.report(jobId).catch(() => undefined) : undefined;
        if (report) io.stderr.write(`${reportLine(report)}\n`);
        await writeResult(io, result, flags.out);
      });
    });
