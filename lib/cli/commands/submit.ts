/**
 * `cloudmill submit`: a job on the lab's pipeline (or `cloudmill dev`) from the SDK client.
 * Local files are uploaded first; s3:// URIs and prefixes are used in place. Prints the job id
 * (or, with --wait, waits with a progress bar and prints the result, like `cloudmill run`).
 */
import { Command, Option } from "commander";
import { setMaxListeners } from "node:events";
import * as z from "zod";
import { readFile } from "node:fs/promises";
import { CloudmillError, ErrorCode, invalidSpec } from "../../core/errors.js";
import { FORMATS, PREFERENCES } from "../../core/job/spec.js";
import { ON_ITEM_ERROR } from "../../core/ops/defineTask.js";
import { waitAll } from "../../sdk/futures.js";
import type { JobFuture } from "../../sdk/JobFuture.js";
import type { SubmitSpec, UploadProgress } from "../../sdk/types.js";
import { parseFlags, stoppedWaiting, usingCloudmill, withCloudOptions } from "../cloudOptions.js";
import type { CliIO } from "../io.js";
import { mb, statusLine } from "../progress.js";
import { collectParam, LIMIT_FLAGS, limitFlag, limitsOf, numberFlag } from "../options.js";
import { checkWritableFile, writeResult } from "./result.js";
import { waitWithProgress } from "./wait.js";

const SubmitFlags = z.object({
  op: z.string(),
  param: z.record(z.string(), z.string()).default({}),
  format: z.enum(FORMATS).optional(),
  chunkSize: z.string().optional(),
  maxAttempts: limitFlag.maxAttempts,
  taskTimeout: limitFlag.taskTimeout,
  taskMemory: limitFlag.taskMemory,
  maxRecordBytes: limitFlag.maxRecordBytes,
  maxCostUsd: limitFlag.maxCostUsd,
  deadline: limitFlag.deadline,
  skipBadRecords: z.boolean().default(false),
  partitions: numberFlag("a whole number", { min: 1 }).optional(),
  backupAfter: numberFlag("whole seconds").optional(),
  fanIn: numberFlag("a whole number").optional(),
  prefer: z.enum(PREFERENCES).optional(),
  each: z.boolean().default(false),
  wait: z.boolean().default(false),
  timeout: numberFlag("seconds", { above: 0, fraction: true }).optional(),
  out: z.string().optional(),
  progress: z.boolean().default(true),
  items: z.string().optional(),
  batchSize: numberFlag("a whole number", { min: 1 }).optional(),
  onItemError: z.enum(ON_ITEM_ERROR).optional(),
});

/** The items of a JSONL file, one JSON value per non-blank line; a bad line is refused, naming it. */
export const readItemsFile = async (file: string): Promise<unknown[]> => {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch {
    throw new CloudmillError(ErrorCode.INPUT_NOT_FOUND, "no such file", { input: file });
  }
  let text: string;
  try {
    // As `cloudmill run` reads JSONL: a starting byte-order mark is not data, and bytes that are not UTF-8 are refused, not replaced.
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new CloudmillError(ErrorCode.BAD_RECORD, "not UTF-8 text: JSON items must be UTF-8", { input: file });
  }
  const items: unknown[] = [];
  for (const [i, line] of text.split("\n").entries()) {
    if (line.trim() === "") continue;
    try {
      items.push(JSON.parse(line));
    } catch (err) {
      throw new CloudmillError(ErrorCode.BAD_RECORD, `not JSON (${(err as Error).message})`, { input: file, line: i + 1 });
    }
  }
  return items;
};

/** Upload progress on stderr: redrawn on a TTY, a line per finished file otherwise. */
const uploadView = (io: CliIO, enabled: boolean): { update(p: UploadProgress): void; done(): void } => {
  const out = statusLine(io, { enabled });
  return {
    update: (p) => out.show(`uploading ${p.file} → ${p.uri}  ${mb(p.loaded)}/${mb(p.total)} MB`, p.loaded >= p.total),
    done: () => out.done(),
  };
};

export const submitCommand = (io: CliIO): Command =>
  withCloudOptions(
    new Command("submit")
      .description("submit a job to the lab's pipeline (or cloudmill dev): local files are uploaded, s3:// URIs used in place")
      .argument("[inputs...]", "local files or directories, s3://bucket/key objects, s3://bucket/prefix/ prefixes, or manifest:<list>")
      .requiredOption(
        "--op <name>",
        "the op to run: count, stats, wordcount, histogram, grep, groupby, distinct, sort, checksum, or one built into the workers",
      )
      .option("-p, --param <name=value>", "an op param, repeatable (e.g. --param k=20)", collectParam)
      .addOption(new Option("--format <format>", "record format (default: the op's own)").choices(FORMATS))
      .option("-c, --chunk-size <size>", "bytes per chunk, e.g. 16MiB (default: the deployment's)")
      .option(LIMIT_FLAGS.maxAttempts, "tries per chunk before the job fails (default: the deployment's)")
      .option(
        LIMIT_FLAGS.taskTimeout,
        "longest one chunk may take before its attempt fails with TASK_TIMEOUT (default: the deployment's, 900)",
      )
      .option(LIMIT_FLAGS.taskMemory, "heap one chunk may use before its attempt fails with OUT_OF_MEMORY (default: the worker's share)")
      .option(LIMIT_FLAGS.maxRecordBytes, "longest record to read, e.g. 256MiB; a longer one is a bad record (default 64MiB)")
      .option(
        LIMIT_FLAGS.maxCostUsd,
        "the most the job's work may cost at list prices: refused with COST_LIMIT if estimated over it, stopped once past it",
      )
      .option(LIMIT_FLAGS.deadline, "fail the job if it has not finished this long after it starts (default: the deployment's, 6 h)")
      .option("--skip-bad-records", "count and skip records that cannot be parsed instead of failing")
      .option("--partitions <n>", "a keyed op's reduce tasks and output parts (default: one per 256 MiB of input)")
      .option("--backup-after <seconds>", "a chunk running longer than this and 3x the median gets a backup copy (default 60; 0: none)")
      .option("--fan-in <n>", "parts one merge task reads: a job of more chunks merges in a tree (default 64; not keyed ops)")
      .option(
        "--prefer <cheapest|fastest>",
        "wake an idle fleet with one worker (cheapest) or all it can use at once (fastest, the default)",
      )
      .option("--each", "one job per input (like the SDK's map) instead of one job over all inputs")
      .option("--items <file>", "run a task (defineTask) once per line of this JSONL file, instead of an op over inputs")
      .option("--batch-size <n>", "with --items: items per task message (default: 1, or enough for at most 1,000 messages)")
      .addOption(
        new Option("--on-item-error <mode>", "with --items: list failed items in the result (collect) or fail the job").choices(
          ON_ITEM_ERROR,
        ),
      )
      .option("--wait", "wait for the result (progress on stderr) and print it")
      .option("--timeout <seconds>", "with --wait: give up waiting after this long (the job goes on)")
      .option("-o, --out <file>", "with --wait: write the result JSON here instead of stdout")
      .option("--no-progress", "no upload or job progress on stderr"),
  )
    .addHelpText(
      "after",
      `
Examples:
  $ cloudmill submit examples/words.txt --op wordcount -p k=5 --endpoint http://127.0.0.1:4566 --wait
  $ cloudmill submit s3://lab-data/runs/ --op stats --stack Cloudmill-mylab
  $ cloudmill submit a.txt b.txt --op count --each --stack Cloudmill-mylab
  $ cloudmill submit --items sweep.jsonl --op simulate --batch-size 50 --stack Cloudmill-mylab --wait

Without --wait it prints the job id(s), one per line: \`cloudmill wait <job>\` follows one.`,
    )
    .action(async (inputs: string[], raw: Record<string, unknown>) => {
      const flags = parseFlags(SubmitFlags, raw);
      await checkWritableFile("--out", flags.out);
      const spec: Omit<SubmitSpec, "inputs"> = {
        op: flags.op,
        params: flags.param,
        ...(flags.format ? { format: flags.format } : {}),
        ...(flags.chunkSize ? { chunkSize: flags.chunkSize } : {}),
        ...(flags.maxAttempts ? { maxAttempts: flags.maxAttempts } : {}),
        ...limitsOf(flags),
        ...(flags.skipBadRecords ? { onBadRecord: "skip" as const } : {}),
        ...(flags.partitions ? { partitions: flags.partitions } : {}),
        ...(flags.backupAfter !== undefined ? { backupAfterSeconds: flags.backupAfter } : {}),
        ...(flags.fanIn !== undefined ? { fanIn: flags.fanIn } : {}),
        ...(flags.prefer ? { prefer: flags.prefer } : {}),
      };
      if ((flags.items === undefined) === (inputs.length === 0))
        throw invalidSpec(flags.items === undefined ? "give inputs, or --items <file>" : "give inputs or --items, not both", "inputs");
      // Flags of a job over inputs would be dropped without a word: refused instead.
      const overInputs = {
        "--each": flags.each,
        "--format": flags.format,
        "--chunk-size": flags.chunkSize,
        "--partitions": flags.partitions,
        "--backup-after": flags.backupAfter !== undefined,
        "--fan-in": flags.fanIn !== undefined,
        "--prefer": flags.prefer,
        "--task-timeout": flags.taskTimeout !== undefined,
        "--task-memory": flags.taskMemory !== undefined,
        "--max-record-bytes": flags.maxRecordBytes,
        "--max-cost-usd": flags.maxCostUsd !== undefined,
      };
      const unused = Object.entries({ ...overInputs, "--skip-bad-records": flags.skipBadRecords }).filter(([, v]) => v);
      if (flags.items !== undefined && unused.length > 0)
        throw invalidSpec(
          `${unused.map(([name]) => name).join(", ")}: not with --items, which runs a task per item and takes none of them`,
          "items",
        );
      const items = flags.items === undefined ? undefined : await readItemsFile(flags.items);
      await usingCloudmill(raw, io, async (mill) => {
        const uploads = uploadView(io, flags.progress);
        // Each submission listens on Ctrl-C's signal until it is written: --each holds one per input at once.
        if (io.signal && flags.each) setMaxListeners(Math.max(10, inputs.length + 2), io.signal);
        const options = { onUpload: (p: UploadProgress) => uploads.update(p), ...(io.signal ? { signal: io.signal } : {}) };
        const futures: JobFuture<unknown>[] = items
          ? [
              mill.mapItems(flags.op, items, {
                params: flags.param,
                ...(flags.batchSize ? { batchSize: flags.batchSize } : {}),
                ...(flags.onItemError ? { onItemError: flags.onItemError } : {}),
                ...(flags.maxAttempts ? { maxAttempts: flags.maxAttempts } : {}),
                ...(flags.deadline !== undefined ? { deadlineSeconds: flags.deadline } : {}),
              }),
            ]
          : flags.each
            ? inputs.map((input) => mill.submit({ ...spec, inputs: [input] }, options))
            : [mill.submit({ ...spec, inputs }, options)];
        const failed = new Map<JobFuture<unknown>, unknown>();
        try {
          // In turn, so their upload progress lines do not interleave; every one, so that the
          // ids of the jobs that did start are printed whatever became of the others.
          for (const f of futures) await f.submitted.catch((err: unknown) => void failed.set(f, err));
        } finally {
          uploads.done();
        }
        if (failed.size > 0) {
          const submitted = futures.filter((f) => !failed.has(f)).map((f) => f.id);
          if (submitted.length > 0) {
            io.stdout.write(`${submitted.join("\n")}\n`);
            io.stderr.write(`${submitted.length} of ${futures.length} jobs submitted (their ids above); the first that was not:\n`);
          }
          throw failed.values().next().value;
        }
        if (!flags.wait) {
          io.stdout.write(`${futures.map((f) => f.id).join("\n")}\n`);
          if (flags.progress)
            io.stderr.write(`submitted; \`cloudmill wait ${futures[0]!.id}\` follows ${futures.length > 1 ? "one" : "it"}\n`);
          return;
        }
        const timeout = flags.timeout !== undefined ? { timeoutMs: flags.timeout * 1000 } : {};
        if (futures.length === 1) {
          await writeResult(io, await waitWithProgress(futures[0]!, io, { progress: flags.progress, ...timeout }), flags.out);
          return;
        }
        if (flags.progress) io.stderr.write(`waiting for ${futures.length} jobs: ${futures.map((f) => f.id).join(", ")}\n`);
        try {
          const results = await waitAll(futures, { ...timeout, ...(io.signal ? { signal: io.signal } : {}) });
          await writeResult(io, results, flags.out);
        } catch (err) {
          if (io.signal?.aborted) throw stoppedWaiting(futures.map((f) => f.id));
          throw err;
        }
      });
    });
