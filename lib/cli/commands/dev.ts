/** `cloudmill dev`: the emulated cloud on 127.0.0.1, until Ctrl-C. */
import { Command } from "commander";
import * as z from "zod";
import { DEV_DEFAULT_PORT } from "../../core/constants.js";
import { CloudmillError, ErrorCode } from "../../core/errors.js";
import { describeZodError } from "../../core/job/spec.js";
import { parseSize } from "../../core/job/size.js";
import { jsonLogger } from "../../core/log.js";
import type { CliIO } from "../io.js";
import { collect, numberFlag } from "../options.js";

const DevFlags = z.object({
  port: numberFlag("a port number", { min: 0, max: 65535 }),
  workers: numberFlag("a whole number", { min: 0, max: 64 }),
  maxWorkers: numberFlag("a whole number", { min: 0, max: 64 }).optional(),
  spotWorkers: numberFlag("a whole number", { min: 0, max: 64 }).optional(),
  inlineMaxBytes: z.string().refine((s) => s.trim() === "0" || parseSize(s) !== undefined, { error: "expected a size like 64MiB, or 0" }),
  chunkSize: z.string().refine((s) => (parseSize(s) ?? 0) >= 1, { error: "expected a size like 16MiB" }),
  verbose: z.boolean().default(false),
  ops: z.array(z.string()).default([]),
  extraInputBucket: z.array(z.string().min(1)).default([]),
});

export const devCommand = (io: CliIO): Command =>
  new Command("dev")
    .description("serve an emulated AWS (S3 + SQS) on 127.0.0.1 with the whole pipeline running locally")
    .option("--port <port>", "port of the S3/SQS endpoint", String(DEV_DEFAULT_PORT))
    .option("-w, --workers <n>", "worker processes running from the start", "2")
    .option("--max-workers <n>", "worker processes an idle fleet is woken to (default: --workers; 2 with --workers 0)")
    .option(
      "--spot-workers <n>",
      "a spot lane, as a stack deployed with -c spot=per-job has: its own queue and n workers (0: woken by a cheapest job)",
    )
    .option("--inline-max-bytes <size>", "jobs up to this size are mapped by the splitter, as the stack's are (0: none)", "64MiB")
    .option("-c, --chunk-size <size>", "chunk size for uploads", "16MiB")
    .option("--ops <module>", "serve the ops a module exports (made with defineOp), repeatable", collect)
    .option(
      "--extra-input-bucket <name>",
      "a bucket besides cloudmill-input that jobs may read, as the stack's extraInputBuckets (make it with aws s3 mb), repeatable",
      collect,
    )
    .option("-v, --verbose", "log every step of the handlers and workers")
    .addHelpText(
      "after",
      `\nExample:\n  $ cloudmill dev --port 4566 --workers 2\n  $ aws --endpoint-url http://127.0.0.1:4566 s3 cp data.txt ` +
        `s3://cloudmill-input/wordcount/data.txt\n\n` +
        `An idle lab, as deployed: no worker until work arrives, small jobs mapped where they start:\n` +
        `  $ cloudmill dev --workers 0 --max-workers 2`,
    )
    .action(async (raw: Record<string, unknown>) => {
      const parsed = DevFlags.safeParse(raw);
      if (!parsed.success) throw new CloudmillError(ErrorCode.INVALID_SPEC, `--${describeZodError(parsed.error, "").message}`);
      const flags = parsed.data;
      const write = (l: string) => void io.stderr.write(l);
      const log = jsonLogger(write, flags.verbose ? "debug" : "warn");
      // Loaded here, not with the CLI: the emulator and its AWS clients are for `dev` alone.
      const { startDevCloud } = await import("../../dev/devCloud.js");
      const cloud = await startDevCloud({
        port: flags.port,
        workers: flags.workers,
        // An idle lab (--workers 0) wakes workers when a job needs the fleet, as a deployed one does.
        maxWorkers: flags.maxWorkers ?? (flags.workers === 0 ? 2 : flags.workers),
        ...(flags.spotWorkers !== undefined ? { spotWorkers: flags.spotWorkers } : {}),
        inlineMaxBytes: flags.inlineMaxBytes.trim() === "0" ? 0 : parseSize(flags.inlineMaxBytes)!,
        chunkSize: parseSize(flags.chunkSize)!,
        opsModules: flags.ops,
        extraInputBuckets: flags.extraInputBucket,
        log,
        ...(flags.verbose ? { onWorkerOutput: (i: number, line: string) => write(`[worker ${i}] ${line}\n`) } : {}),
      }).catch((err: unknown) => {
        const code = (err as { code?: string }).code;
        if (code === "EADDRINUSE")
          throw new CloudmillError(ErrorCode.ENVIRONMENT, `port ${flags.port} is in use: try --port 0 or another port`);
        throw err;
      });
      const e = cloud.endpoint;
      io.stdout.write(
        [
          `cloudmill dev: emulated S3 and SQS at ${e} (buckets ${cloud.inputBucket}, ${cloud.outputBucket}; ${flags.workers} worker(s))`,
          "",
          "Try it (any credentials work):",
          `  export AWS_ACCESS_KEY_ID=cloudmill AWS_SECRET_ACCESS_KEY=cloudmill AWS_DEFAULT_REGION=us-east-1`,
          `  aws --endpoint-url ${e} s3 cp examples/words.txt s3://${cloud.inputBucket}/wordcount/words.txt`,
          `  aws --endpoint-url ${e} s3 cp s3://${cloud.outputBucket}/wordcount/words.txt/status.json -`,
          `  aws --endpoint-url ${e} s3 cp s3://${cloud.outputBucket}/wordcount/words.txt/result.json -`,
          "",
          "Ctrl-C stops it.",
          "",
        ].join("\n"),
      );
      await new Promise<void>((resolve) => {
        if (io.signal?.aborted) return resolve();
        io.signal?.addEventListener("abort", () => resolve(), { once: true });
      });
      io.stderr.write("cloudmill dev: stopping…\n");
      await cloud.stop();
    });
