/**
 * The flags every command on the cloud shares: which pipeline (`--stack` or `--endpoint`, or
 * explicit buckets) and the region. `--endpoint` alone means `cloudmill dev`: its buckets
 * (cloudmill-input, cloudmill-output) are the defaults.
 */
import type { Command } from "commander";
import { warningsOnly } from "../core/log.js";
import * as z from "zod";
import { CloudmillError, ErrorCode } from "../core/errors.js";
import { describeZodError } from "../core/job/spec.js";
import { kebabCase } from "../core/kebabCase.js";
import type { Cloudmill } from "../sdk/Cloudmill.js";
import type { CliIO } from "./io.js";

/** Environment variables the cloud commands fall back on (the CLI's own; the SDK reads none). */
export const CLOUD_ENV = {
  STACK: "CLOUDMILL_STACK",
  ENDPOINT: "CLOUDMILL_ENDPOINT",
} as const;

export const CloudFlags = z.object({
  stack: z
    .string()
    .regex(/^[A-Za-z][A-Za-z0-9-]{0,127}$/, { error: "a CloudFormation stack name, e.g. Cloudmill-mylab" })
    .optional(),
  endpoint: z.url({ protocol: /^https?$/, error: "a URL like http://127.0.0.1:4566" }).optional(),
  region: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, { error: "a region like eu-west-1" })
    .optional(),
  inputBucket: z.string().min(3).optional(),
  outputBucket: z.string().min(3).optional(),
});
export type CloudFlags = z.infer<typeof CloudFlags>;

/** Adds --stack, --endpoint, --region, --input-bucket and --output-bucket to a command. */
export const withCloudOptions = (cmd: Command): Command =>
  cmd
    .option("--stack <name>", `the lab's stack, e.g. Cloudmill-mylab (default: $${CLOUD_ENV.STACK})`)
    .option("--endpoint <url>", `an emulated AWS, e.g. http://127.0.0.1:4566 from \`cloudmill dev\` (default: $${CLOUD_ENV.ENDPOINT})`)
    .option("--region <region>", "AWS region (default: AWS_REGION or your profile's)")
    .option("--input-bucket <name>", "input bucket (default: the stack's, or cloudmill-input with --endpoint)")
    .option("--output-bucket <name>", "output bucket (default: the stack's, or cloudmill-output with --endpoint)");

/** Parses a command's flags with a zod schema; an invalid flag is one INVALID_SPEC line naming it. */
export const parseFlags = <S extends z.ZodType>(schema: S, raw: unknown): z.output<S> => {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const { field, message } = describeZodError(parsed.error, "");
  throw new CloudmillError(ErrorCode.INVALID_SPEC, field ? `--${kebabCase(field)}${message.slice(field.length)}` : message, { field });
};

/**
 * The SDK client the flags (or CLOUDMILL_STACK / CLOUDMILL_ENDPOINT) name. The SDK (and the
 * AWS clients under it) is loaded here, on first use: `cloudmill run` never pays for it.
 */
const cloudmillFrom = async (raw: Record<string, unknown>, io: CliIO): Promise<Cloudmill> => {
  const flags = parseFlags(CloudFlags, {
    stack: raw["stack"] ?? (raw["endpoint"] ? undefined : io.env[CLOUD_ENV.STACK] || undefined),
    endpoint: raw["endpoint"] ?? (raw["stack"] ? undefined : io.env[CLOUD_ENV.ENDPOINT] || undefined),
    region: raw["region"],
    inputBucket: raw["inputBucket"],
    outputBucket: raw["outputBucket"],
  });
  if (!flags.stack && !flags.endpoint && !(flags.inputBucket && flags.outputBucket)) {
    throw new CloudmillError(
      ErrorCode.INVALID_SPEC,
      `which pipeline? Pass --stack Cloudmill-<lab> (or set ${CLOUD_ENV.STACK}), or --endpoint http://127.0.0.1:4566 for \`cloudmill dev\``,
    );
  }
  const { Cloudmill } = await import("../sdk/Cloudmill.js");
  return new Cloudmill(
    {
      ...(flags.stack ? { stack: flags.stack } : {}),
      ...(flags.endpoint ? { endpoint: flags.endpoint } : {}),
      ...(flags.region ? { region: flags.region } : {}),
      ...(flags.inputBucket ? { inputBucket: flags.inputBucket } : {}),
      ...(flags.outputBucket ? { outputBucket: flags.outputBucket } : {}),
      // The SDK's warnings (what a folder's upload left out) as the CLI's own lines.
      log: warningsOnly((l) => void io.stderr.write(l)),
    },
    io.env,
  );
};

/** Runs fn with a client, closing it afterwards (so the process can exit). */
export const usingCloudmill = async <T>(raw: Record<string, unknown>, io: CliIO, fn: (mill: Cloudmill) => Promise<T>): Promise<T> => {
  const mill = await cloudmillFrom(raw, io);
  try {
    return await fn(mill);
  } finally {
    mill.close();
  }
};

/** An interrupted wait (Ctrl-C): the job goes on. */
export const stoppedWaiting = (jobIds: readonly string[]): CloudmillError =>
  new CloudmillError(
    ErrorCode.CANCELLED,
    `stopped waiting; ` +
      `${jobIds.length === 1 ? `job ${jobIds[0]} goes on (\`cloudmill cancel ${jobIds[0]}\` stops it)` : `${jobIds.length} jobs go on`}`,
  );
