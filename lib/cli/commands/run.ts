/** `cloudmill run`: the embedded default — the whole pipeline on this machine's cores. */
import os from "node:os";
import { hiddenNotice } from "../../core/hiddenNames.js";
import { Command, Option } from "commander";
import * as z from "zod";
import { kebabCase } from "../../core/kebabCase.js";
import { runLocal } from "../../local/localEngine.js";
import { checkWritableDir, checkWritableFile, writeResult } from "./result.js";
import { CloudmillError, ErrorCode } from "../../core/errors.js";
import { describeZodError, FORMATS, parseJobSpec } from "../../core/job/spec.js";
import { OpRegistry } from "../../core/ops/registry.js";
import { loadOpsModule } from "../../core/ops/opModules.js";
import { readFile } from "node:fs/promises";
import { isTaskOp } from "../../core/ops/defineTask.js";
import { isShuffled } from "../../core/ops/types.js";
import { batchSizeFor, itemsChunkSize } from "../../core/pipeline/items.js";
import { FsBlobStore } from "../../fs/FsBlobStore.js";
import { resolveLocalInputs } from "../../local/localInputs.js";
import { jsonLogger, warningsOnly } from "../../core/log.js";
import type { CliIO } from "../io.js";
import { reportLine, writeReportHtml } from "./report.js";
import { collect, collectParam, LIMIT_FLAGS, limitFlag, numberFlag } from "../options.js";
import { progressView } from "../progress.js";

const RunFlags = z.object({
  op: z.string(),
  param: z.record(z.string(), z.string()).default({}),
  format: z.enum(FORMATS).optional(),
  workers: numberFlag("a whole number", { min: 0, max: 1024 }).optional(),
  chunkSize: z.string().optional(),
  maxAttempts: limitFlag.maxAttempts,
  out: z.string().optional(),
  ops: z.array(z.string()).default([]),
  skipBadRecords: z.boolean().default(false),
  progress: z.boolean().default(true),
  verbose: z.boolean().default(false),
  batchSize: numberFlag("a whole number", { min: 1 }).optional(),
  taskTimeout: limitFlag.taskTimeout,
  taskMemory: limitFlag.taskMemory,
  maxRecordBytes: limitFlag.maxRecordBytes,
  outDir: z.string().optional(),
  report: z.string().optional(),
  partitions: numberFlag("a whole number", { min: 1 }).optional(),
  backupAfter: numberFlag("whole seconds").optional(),
});

/** Chunks per worker thread a local task run aims for by default: enough to even out uneven items. */
const LOCAL_CHUNKS_PER_WORKER = 8;

/**
 * A task's chunk size: as many items per chunk as the batch size over all the inputs' lines. By
 * default a local run makes 8 chunks per thread: a chunk costs a few milliseconds here, where
 * on the fleet one item per message (up to 1,000) buys the most parallel workers.
 */
const taskChunkSize = async (inputs: readonly string[], batchSize: number | undefined, workers: number): Promise<number> => {
  const root = new FsBlobStore("/");
  let bytes = 0;
  let items = 0;
  for (const input of await resolveLocalInputs(inputs, root)) {
    const text = await readFile(input.key.startsWith("/") ? input.key : `/${input.key}`, "utf8");
    bytes += Buffer.byteLength(text);
    for (const line of text.split("\n")) if (line.trim() !== "") items++;
  }
  const batch = batchSize ?? Math.max(1, Math.ceil(items / (Math.max(1, workers) * LOCAL_CHUNKS_PER_WORKER)));
  return itemsChunkSize(bytes, items, batchSizeFor(items, batch));
};

/** Spec fields as the flags that set them: `--chunk-size: must be ...` rather than `chunkSize: ...`. */
const FLAG_OF_FIELD: Readonly<Record<string, string>> = {
  chunkSize: "--chunk-size",
  maxAttempts: "--max-attempts",
  maxRecordBytes: "--max-record-bytes",
  partitions: "--partitions",
  backupAfterSeconds: "--backup-after",
  format: "--format",
  op: "--op",
  inputs: "inputs",
};

const withFlagNames = <T>(parse: () => T): T => {
  try {
    return parse();
  } catch (err) {
    const field = err instanceof CloudmillError ? err.context.field : undefined;
    const flag = field === undefined ? undefined : FLAG_OF_FIELD[field];
    if (!(err instanceof CloudmillError) || flag === undefined || !err.message.startsWith(`${field}:`)) throw err;
    throw new CloudmillError(err.code, `${flag}${err.message.slice(field!.length)}`, err.context);
  }
};

export const runCommand = (io: CliIO): Command =>
  new Command("run")
    .description("run a job on this machine's cores (no AWS needed)")
    .argument("<inputs...>", "files or directories (read recursively), or manifest:<list> for the paths a list names")
    .requiredOption(
      "--op <name>",
      "the op to run: count, stats, wordcount, histogram, grep, groupby, distinct, sort, checksum, or one from --ops",
    )
    .option("-p, --param <name=value>", "an op param, repeatable (e.g. --param k=20)", collectParam)
    .addOption(new Option("--format <format>", "record format (default: the op's own)").choices(FORMATS))
    .option("-w, --workers <n>", `worker threads (default: all ${os.availableParallelism()} cores; 0 runs on the main thread)`)
    .option("-c, --chunk-size <size>", "bytes per chunk, e.g. 16MiB, 1GB, 65536 (default 16MiB; for a task, --batch-size)")
    .option("--batch-size <n>", "for a task (defineTask): items per chunk (default: 8 chunks per worker thread)")
    .option(LIMIT_FLAGS.maxAttempts, "tries per chunk before the job fails", "3")
    .option("-o, --out <file>", "write the result JSON here instead of stdout")
    .option(
      "--out-dir <dir>",
      "ops with parts (groupby, distinct, sort, checksum): where the parts go; tasks: where items' stored objects go, under files/ " +
        "(default cloudmill-out/<job id>)",
    )
    .option("--partitions <n>", "keyed ops: how many parts (and reduce tasks); default one per 256MiB of input")
    .option(
      "--backup-after <seconds>",
      "a chunk running longer than this and 3x the median (once 3/4 are mapped) gets a backup copy on an idle thread (default: none)",
    )
    .option("--ops <module>", "load user ops from a module (exports made with defineOp), repeatable", collect)
    .option("--skip-bad-records", "count and skip records that cannot be parsed instead of failing")
    .option(
      LIMIT_FLAGS.taskTimeout,
      "longest one chunk may take before its thread is ended and the attempt fails (default 900; a task's items have their own)",
    )
    .option(LIMIT_FLAGS.taskMemory, "heap one chunk may use before its thread is ended and the attempt fails with OUT_OF_MEMORY")
    .option(LIMIT_FLAGS.maxRecordBytes, "longest record to read, e.g. 256MiB; a longer one is a bad record (default 64MiB)")
    .option("--report <file>", "write the job's report (tasks per thread, stragglers, throughput) as one HTML page")
    .option("--no-progress", "no progress on stderr")
    .option("-v, --verbose", "log each step as JSON lines on stderr")
    .addHelpText(
      "after",
      `
Examples:
  $ cloudmill run examples/words.txt --op wordcount --param k=5
  $ cloudmill run examples/numbers.txt --op stats --chunk-size 64KiB
  $ cloudmill run examples/numbers.txt --op histogram -p bins=5 -p min=0 -p max=1000
  $ cloudmill run examples/access.log --op grep -p pattern=" 5[0-9][0-9] " -p k=3
  $ cloudmill run examples/measurements.csv --op stats -p column=temperature
  $ cloudmill run data/ --op count --out counts.json
  $ cloudmill run examples/measurements.csv --op groupby -p key=station -p value=temperature --out-dir by-station

The result JSON alone goes to stdout (or --out); progress and logs go to stderr.`,
    )
    .action(async (inputs: string[], raw: Record<string, unknown>) => {
      const parsed = RunFlags.safeParse(raw);
      if (!parsed.success) {
        const { field, message } = describeZodError(parsed.error, "");
        throw new CloudmillError(ErrorCode.INVALID_SPEC, `--${kebabCase(field)}${message.slice(field.length)}`);
      }
      const flags = parsed.data;
      const registry = new OpRegistry();
      for (const m of flags.ops) await loadOpsModule(m, registry);
      const isTask = registry.has(flags.op) && isTaskOp(registry.get(flags.op));
      if (flags.outDir !== undefined && registry.has(flags.op) && !isTask && !isShuffled(registry.get(flags.op)))
        throw new CloudmillError(
          ErrorCode.INVALID_SPEC,
          `--out-dir: op ${flags.op} has one result and writes no parts (keyed ops and tasks do); give --out FILE for the result`,
        );
      if (isTask && flags.backupAfter !== undefined)
        throw new CloudmillError(ErrorCode.INVALID_SPEC, "--backup-after: not for a task (its items have their own time limit)");
      const chunkSize =
        flags.chunkSize ?? (isTask ? await taskChunkSize(inputs, flags.batchSize, flags.workers ?? os.availableParallelism()) : undefined);
      const spec = withFlagNames(() =>
        parseJobSpec(
          {
            op: flags.op,
            inputs,
            params: flags.param,
            ...(flags.format ? { format: flags.format } : {}),
            ...(chunkSize !== undefined ? { chunkSize } : {}),
            ...(flags.maxAttempts ? { maxAttempts: flags.maxAttempts } : {}),
            ...(flags.maxRecordBytes !== undefined ? { maxRecordBytes: flags.maxRecordBytes } : {}),
            ...(flags.taskMemory !== undefined ? { taskMemoryMiB: flags.taskMemory } : {}),
            ...(flags.partitions !== undefined ? { partitions: flags.partitions } : {}),
            ...(flags.backupAfter !== undefined ? { backupAfterSeconds: flags.backupAfter } : {}),
            onBadRecord: flags.skipBadRecords ? "skip" : "fail",
          },
          "",
        ),
      );
      await checkWritableFile("--out", flags.out);
      await checkWritableFile("--report", flags.report);
      await checkWritableDir("--out-dir", flags.outDir);
      const view = progressView(io, flags.progress);
      // Quietly, only warnings: the CLI reports a failure itself, in one line.
      const log = flags.verbose ? jsonLogger((l) => io.stderr.write(l), "debug") : warningsOnly((l) => io.stderr.write(l));
      try {
        const { result, status, report } = await runLocal({
          spec,
          registry,
          opsModules: flags.ops,
          ...(flags.workers !== undefined ? { workers: flags.workers } : {}),
          ...(flags.taskTimeout !== undefined ? { taskTimeoutSeconds: flags.taskTimeout } : {}),
          ...(flags.outDir !== undefined ? { outDir: flags.outDir } : {}),
          ...(flags.report !== undefined ? { report: true } : {}),
          log,
          threadLog: flags.verbose ? "debug" : "warnings",
          onProgress: (p) => view.update(p),
          ...(io.signal ? { signal: io.signal } : {}),
        });
        view.done();
        if (status.skipped) io.stderr.write(`cloudmill: skipped ${status.skipped} bad record(s)\n`);
        if (status.missing) io.stderr.write(`cloudmill: skipped ${status.missing} record(s) without the field (absent or null)\n`);
        if (status.hidden) io.stderr.write(`cloudmill: ${hiddenNotice(status.hidden)}\n`);
        for (const { input, separator } of status.csv ?? [])
          io.stderr.write(`cloudmill: ${input}: separator ${JSON.stringify(separator)} (sniffed)\n`);
        await writeResult(io, result, flags.out);
        if (flags.report && report) {
          await writeReportHtml(flags.report, report, io);
          io.stderr.write(`cloudmill: ${reportLine(report)}; wrote ${flags.report}\n`);
        }
      } finally {
        view.done();
      }
    });
